# SPDX-License-Identifier: GPL-3.0-or-later
"""Digital separation bound (docs/ALGORITHMS.md §6): an image codec over an ideal channel code.

Separate source and channel coding with a capacity-achieving channel code: over k uses of an AWGN
channel at SNR (linear, the receiver's effective SNR) an ideal code delivers, error-free,

    R = k · log2(1 + SNR)  bits per image                              (Shannon capacity × k)

The image is compressed with JPEG or WebP (Pillow) at the **largest quality q whose coded size fits
R**; the receiver decodes it. If even the lowest quality does not fit, the image is lost and the
receiver shows mid-grey (0.5 everywhere) — the "cliff" of digital systems. This is optimistic for
any real digital system (no real code reaches capacity at finite k, and there is no cliff margin),
so it is a **bound, not a receiver**: it needs the original image x, not the received symbols.

What is counted (`header`):
- "file" (default): the **whole file** Pillow writes, headers included: JPEG = SOI, JFIF APP0,
  quantisation and (optimised, image-specific) Huffman tables, frame and scan headers, EOI;
  WebP = RIFF container + VP8 chunk. No EXIF/ICC/XMP is written. Honest but heavy at small sizes:
  a 64×64 JPEG needs ≥ ~300 bytes whatever its content.
- "stripped": only what a receiver that already knows the codec, its settings and the image size
  cannot infer: JPEG with the standard (Annex K) Huffman tables (`optimize=False`), counting the
  entropy-coded scan bytes + 1 byte for the quality index (the quantisation tables follow from it);
  WebP counting the VP8 bitstream (the file minus its 20-byte RIFF/chunk headers; the VP8 frame
  header with size and quantisers stays counted). The more optimistic bound.

Quality search (`search`): "binary" bisects q over [q_min, 100] (JPEG 1…100, WebP 0…100) on the
coded size, then also tries the few qualities just above the result, because WebP's size is not
exactly monotone in q (dips of a few bytes); "exhaustive" tries every q (exact, ~50× slower for
WebP). The returned quality always fits: every candidate is actually encoded and measured.

Chroma (`subsampling`): JPEG "4:2:0" (libjpeg's default), "4:2:2", "4:4:4", or "best" (each is tried
and the fitting one with the highest PSNR is kept — an oracle choice, in the bound's spirit). Lossy
WebP (VP8) is always 4:2:0. Greyscale images (C = 1) are coded as mode "L" by JPEG; WebP has no
greyscale mode, so Pillow codes them as RGB (grey chroma costs almost nothing) and the decoded image
is converted back to L.

Images are quantised to 8 bits before coding (the source the codec sees); the result is float32 in
[0, 1]. Everything is deterministic (libjpeg/libwebp have no randomness here).
"""
from __future__ import annotations

import io
import math
from typing import Any

import numpy as np
import torch

from ..channel import snr_vector
from ..data import to_uint8
from ..errors import InputError

CODECS = ("jpeg", "webp")
HEADERS = ("file", "stripped")
SEARCHES = ("binary", "exhaustive")
JPEG_SUBSAMPLING = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}
_Q_MIN = {"jpeg": 1, "webp": 0}
_WEBP_METHOD = 6          # libwebp effort 0…6: the slowest, smallest files (it is a bound)
_LOCAL_WINDOW = 4         # qualities above the bisection result that are also tried


def rate_bits(k: int, snr_db) -> torch.Tensor:
    """Ideal-code rate per image, R = k·log2(1 + 10^(SNR_dB/10)) bits; snr_db float or (B,)."""
    s = torch.as_tensor(snr_db, dtype=torch.float64)
    return k * torch.log2(1.0 + torch.pow(10.0, s / 10.0))


def _check_codec(codec: str) -> None:
    if codec not in CODECS:
        raise InputError(f"unknown codec {codec!r} for digital separation; choose one of "
                         f"{', '.join(CODECS)} (i.e. methods digital-jpeg / digital-webp)")
    if codec == "webp":
        from PIL import features
        if not features.check("webp"):
            raise InputError("this Pillow was built without WebP support: install libwebp and a Pillow "
                             "with WebP (Debian: python3-pil with libwebp7), or use codec='jpeg'")


def _subsampling_options(codec: str, subsampling: str | None) -> list[str | None]:
    if codec == "webp":
        if subsampling not in (None, "4:2:0"):
            raise InputError(f"lossy WebP is always 4:2:0; subsampling {subsampling!r} applies to JPEG "
                             f"only (use None or '4:2:0' with webp)")
        return [None]
    if subsampling is None:
        return ["4:2:0"]
    if subsampling == "best":
        return list(JPEG_SUBSAMPLING)
    if subsampling not in JPEG_SUBSAMPLING:
        raise InputError(f"unknown JPEG chroma subsampling {subsampling!r}; choose one of "
                         f"{', '.join(JPEG_SUBSAMPLING)} or 'best'")
    return [subsampling]


def _jpeg_scan_bytes(data: bytes) -> int:
    """Bytes of the entropy-coded data of a baseline JPEG (after the SOS header, before EOI)."""
    i = 2                                                   # after SOI (FF D8)
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            break
        marker = data[i + 1]
        length = int.from_bytes(data[i + 2:i + 4], "big")
        if marker == 0xDA:                                  # SOS: scan data follows its header
            end = len(data) - 2 if data[-2:] == b"\xff\xd9" else len(data)
            return end - (i + 2 + length)
        i += 2 + length
    raise InputError("Pillow wrote a JPEG without a scan segment: cannot count its payload "
                     "(use header='file')")


def _encode(img, codec: str, q: int, sub: str | None, header: str) -> tuple[bytes, int]:
    """Encode one PIL image; returns (file bytes, counted bytes)."""
    buf = io.BytesIO()
    if codec == "jpeg":
        kw: dict[str, Any] = {"quality": int(q), "optimize": header == "file"}
        if img.mode != "L":
            kw["subsampling"] = JPEG_SUBSAMPLING[sub]
        img.save(buf, "JPEG", **kw)
        data = buf.getvalue()
        counted = len(data) if header == "file" else _jpeg_scan_bytes(data) + 1   # +1: quality index
    else:
        img.save(buf, "WEBP", quality=int(q), method=_WEBP_METHOD, lossless=False)
        data = buf.getvalue()
        plain_vp8 = data[:4] == b"RIFF" and data[8:16] == b"WEBPVP8 "
        counted = len(data) - 20 if (header == "stripped" and plain_vp8) else len(data)
    return data, counted


def _decode(data: bytes, mode: str) -> np.ndarray:
    from PIL import Image
    with Image.open(io.BytesIO(data)) as im:
        a = np.asarray(im.convert(mode))
    return a[..., None] if a.ndim == 2 else a


def _fit_one(img, codec: str, sub: str | None, budget_bytes: float, header: str, search: str):
    """Largest quality whose counted size ≤ budget_bytes: (q, file bytes, counted) or None."""
    cache: dict[int, tuple[bytes, int]] = {}

    def enc(q: int):
        if q not in cache:
            cache[q] = _encode(img, codec, q, sub, header)
        return cache[q]

    def fits(q: int) -> bool:
        return enc(q)[1] <= budget_bytes

    qmin = _Q_MIN[codec]
    if search == "exhaustive":
        best = max((q for q in range(qmin, 101) if fits(q)), default=None)
    elif not fits(qmin):
        best = None
    elif fits(100):
        best = 100
    else:
        lo, hi = qmin, 100                                  # fits(lo), not fits(hi)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if fits(mid) else (lo, mid)
        # non-monotone dips: the highest fitting quality of the few just above lo
        best = max([lo] + [q for q in range(lo + 2, min(100, lo + _LOCAL_WINDOW) + 1) if fits(q)])
    return None if best is None else (best, *enc(best))


def digital_separation(x01: torch.Tensor, k: int, snr_db, codec: str = "jpeg",
                       subsampling: str | None = None, header: str = "file", search: str = "binary",
                       lost_value: float = 0.5) -> tuple[torch.Tensor, list[dict]]:
    """The digital separation bound for images x01 (B, C, H, W) in [0, 1], C = 1 or 3.

    k:           complex channel uses per image (the JSCC's k, so both use the same bandwidth).
    snr_db:      SNR in dB, float or (B,) (the effective SNR the ideal code would see).
    codec:       "jpeg" | "webp".  subsampling, header, search: see the module doc.
    lost_value:  what a lost image shows (mid-grey 0.5).
    Returns (x01_rec (B, C, H, W) float32 on x01's device, info) with one dict per image:
    {"codec", "quality" (None if lost), "subsampling", "header", "bits_budget" (R, float),
     "bits_used" (8·counted bytes; 0 if lost), "file_bytes", "lost" (bool)}.
    """
    _check_codec(codec)
    if header not in HEADERS:
        raise InputError(f"header must be one of {', '.join(HEADERS)} (what is counted against the "
                         f"budget), got {header!r}")
    if search not in SEARCHES:
        raise InputError(f"search must be one of {', '.join(SEARCHES)}, got {search!r}")
    subs = _subsampling_options(codec, subsampling)
    if not torch.is_tensor(x01) or x01.dim() != 4 or x01.shape[1] not in (1, 3):
        raise InputError(f"digital_separation takes images (B, C, H, W) with C = 1 or 3 in [0, 1], got "
                         f"{tuple(getattr(x01, 'shape', ())) or type(x01).__name__}")
    if not x01.is_floating_point() or not torch.isfinite(x01).all():
        raise InputError("images must be finite float tensors in [0, 1] (convert uint8 with x.float()/255)")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or int(k) < 1:
        raise InputError(f"k (complex channel uses per image) must be a positive int, got {k!r}")
    B, C = x01.shape[:2]
    if C == 1:
        subs = subs[:1]                                      # no chroma to subsample
    R = rate_bits(int(k), snr_vector(snr_db, B, device="cpu", dtype=torch.float64).detach())

    from PIL import Image
    mode = "L" if C == 1 else "RGB"
    arr = to_uint8(x01.float())
    out = np.empty_like(arr)
    info: list[dict] = []
    for b in range(B):
        img = Image.fromarray(arr[b, ..., 0] if C == 1 else arr[b], mode)
        budget_bytes = float(R[b]) / 8.0
        best = None                                          # (psnr, q, sub, data, counted, rec)
        for sub in subs:
            r = _fit_one(img, codec, sub, budget_bytes, header, search)
            if r is None:
                continue
            q, data, counted = r
            rec = _decode(data, mode)
            mse = float(np.mean((rec.astype(np.float64) - arr[b].astype(np.float64)) ** 2))
            p = math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)
            if best is None or p > best[0]:
                best = (p, q, sub, data, counted, rec)
        lost = best is None
        _, q, sub, data, counted, out[b] = (None, None, None, b"", 0, 0) if lost else best
        info.append({"codec": codec, "quality": q,
                     "subsampling": None if lost else (sub or "4:2:0") if C == 3 else "grey",
                     "header": header, "bits_budget": float(R[b]), "bits_used": 8 * counted,
                     "file_bytes": len(data), "lost": lost})
    rec = torch.from_numpy(out).permute(0, 3, 1, 2).float().div_(255.0)
    rec[torch.tensor([d["lost"] for d in info], dtype=torch.bool)] = float(lost_value)
    return rec.to(x01.device), info
