# SPDX-License-Identifier: GPL-3.0-or-later
"""The digital frame header: fields, CRC32, biorthogonal Reed-Muller code, (de)mapping.

Fields (version 2, 130 bits, MSB first): version 2 | k 20 | id_numeric 1 | seq 15 | image_id 32 |
model_hash 32 | height 12 | width 12 | channels 4, then CRC32 (zlib, over the 17 bytes of the 130
bits zero-padded at the end) → 162 bits = 27 chunks of 6 bits.

Code: first-order Reed-Muller RM(1,5) = biorthogonal [32, 6, 16] (MacWilliams & Sloane ch. 13):
c_j = u0 ⊕ ⊕_{i=1..5} u_i·bit_{i-1}(j), j = 0…31. Soft ML decoding: correlate the 32 soft values of
a chunk with all 64 ±1 codewords and take the largest (one matrix product for a whole batch of
headers). Coded bits (repeated twice in "bpsk-x2") are whitened (XOR a fixed PN) and interleaved
over subcarriers and OFDM symbols.

Identifiers over the air (docs/over_the_air.md, "Image and model ids"):
- image_id: a decimal id < 2³² travels as that number (id_numeric = 1) and comes back unchanged;
  any other string travels as its CRC32 (id_numeric = 0) and comes back as
  ``ota/<seq>-<crc32 hex>``; ``seq`` (15 bits) is the TX's sequence number (the source's ``seq``
  metadata when it has one), returned as metadata ``seq`` with every frame. A receiver that is
  given the candidate ids (``image_ids``) maps the CRC back to the original string.
- model_id travels as CRC32(model_id); the receiver maps it back through the model ids it knows
  (given directly or read from model directories), else reports "#xxxxxxxx".
- bcr is not sent: the receiver takes it from the known model's config, else k / (H·W·C) (C the
  image's channels: for a greyscale image through an RGB model that is 3× the model's BCR; give
  the receiver the model directories for the right one).
- height, width, channels: the sent image's size and its own channels (1 grey, 3 colour), so the
  receiver decodes an image of any size (sing.jscc.model: 8 … 1024 per side, well inside the 12-bit
  fields) and writes it at that shape with no side information; 0 = not given (the model's own size).
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

import numpy as np
import scipy.linalg

from ..errors import InputError
from .blas import matmul_rows
from .params import OfdmParams, tables

VERSION = 2
_FIELDS = (("version", 2), ("k", 20), ("id_numeric", 1), ("seq", 15), ("image_id", 32),
           ("model_hash", 32), ("height", 12), ("width", 12), ("channels", 4))
N_INFO = sum(w for _, w in _FIELDS)          # 130
N_BITS = N_INFO + 32                          # 162
SEQ_MOD = 1 << 15


def crc32_str(s: str) -> int:
    return zlib.crc32(s.encode("utf-8")) & 0xFFFFFFFF


@dataclass
class HeaderFields:
    image_id: str
    k: int
    model_id: str = ""
    height: int = 0
    width: int = 0
    channels: int = 0
    bcr: str = ""          # not transmitted (see module doc); kept for the caller's convenience
    seq: int = 0

    def words(self) -> dict:
        iid = str(self.image_id)
        if iid.isdigit() and int(iid) < 2 ** 32 and str(int(iid)) == iid:
            numeric, iid_num = 1, int(iid)
        else:
            numeric, iid_num = 0, crc32_str(iid)
        if not 1 <= int(self.k) < 2 ** 20:
            raise InputError(f"k = {self.k} does not fit the header (1 … {2 ** 20 - 1} symbols)")
        for name, val, lim in (("height", self.height, 4096), ("width", self.width, 4096),
                               ("channels", self.channels, 16)):
            if not 0 <= int(val) < lim:
                raise InputError(f"{name} = {val} does not fit the header (< {lim})")
        mh = crc32_str(self.model_id) if self.model_id else 0
        return dict(version=VERSION, k=int(self.k), id_numeric=numeric, seq=int(self.seq) % SEQ_MOD,
                    image_id=iid_num, model_hash=mh, height=int(self.height),
                    width=int(self.width), channels=int(self.channels))


def header_int(h: HeaderFields) -> int:
    """The 162 header bits as an integer: info (130 bits) followed by CRC32."""
    w = h.words()
    v = 0
    for name, width in _FIELDS:
        v = (v << width) | w[name]
    crc = zlib.crc32((v << (136 - N_INFO)).to_bytes(17, "big")) & 0xFFFFFFFF   # 17 bytes, zero-padded
    return (v << 32) | crc


def pack_bits(h: HeaderFields) -> np.ndarray:
    return np.unpackbits(np.frombuffer(header_int(h).to_bytes(21, "big"), np.uint8))[-N_BITS:]


def fields_from_int(v: int) -> dict | None:
    """The inverse of `header_int`: 162 bits as an integer → field dict, or None when the CRC fails
    (or the version is not ours)."""
    info, crc = v >> 32, v & 0xFFFFFFFF
    if crc != zlib.crc32((info << (136 - N_INFO)).to_bytes(17, "big")) & 0xFFFFFFFF:
        return None
    out = {}
    for name, width in reversed(_FIELDS):
        out[name] = info & ((1 << width) - 1)
        info >>= width
    if out["version"] != VERSION or out["k"] == 0:
        return None
    return dict(reversed(out.items()))


def unpack_rows(bits: np.ndarray) -> list:
    """(B, 162) bits → a field dict (or None) per row: one packbits for the batch, then integer
    arithmetic per header."""
    B = bits.shape[0]
    padded = np.zeros((B, 168), np.uint8)
    padded[:, 168 - N_BITS:] = bits
    raw = np.packbits(padded, axis=1).tobytes()                # 21 bytes per row, big-endian
    return [fields_from_int(int.from_bytes(raw[21 * i:21 * i + 21], "big")) for i in range(B)]


# --- RM(1,5) ---------------------------------------------------------------------------
_J = np.arange(32)
_G = np.vstack([np.ones(32, np.uint8)] + [((_J >> i) & 1).astype(np.uint8) for i in range(5)])  # 6×32
_U = ((np.arange(64)[:, None] >> np.arange(5, -1, -1)[None, :]) & 1).astype(np.uint8)         # 64×6, MSB first
_CODEBOOK = (_U @ _G) % 2                                                                       # 64×32
_SIGNS = (1.0 - 2.0 * _CODEBOOK).astype(np.float32)


def rm_encode(bits: np.ndarray) -> np.ndarray:
    u = bits.reshape(-1, 6)
    return ((u @ _G) % 2).astype(np.uint8).reshape(-1)


_H32 = scipy.linalg.hadamard(32).astype(np.float32)      # H[a, j] = (-1)^{popcount(a&j)} (Sylvester)
# codeword index for (Hadamard row a, sign): correlation with codeword idx = ±W[a]
_IDX_OF = np.zeros((32, 2), np.int64)
for _i in range(64):
    _r = int(np.argmax(np.abs(_H32 @ _SIGNS[_i])))
    _IDX_OF[_r, int((_H32 @ _SIGNS[_i])[_r] < 0)] = _i


def rm_decode_idx(soft: np.ndarray) -> np.ndarray:
    """soft (..., 32·m): positive ⇒ bit 0. Returns the ML codeword indices (..., m).
    The 64 correlations of a biorthogonal code are ±(Walsh-Hadamard transform): ML = the row with
    the largest |W|, its sign gives the complement bit (one 32×32 matrix product for the batch)."""
    W = matmul_rows(soft.reshape(-1, 32).astype(np.float32), _H32)   # H symmetric: rows·H = H·rows
    a = np.argmax(np.abs(W), axis=1)
    neg = W[np.arange(W.shape[0]), a] < 0
    return _IDX_OF[a, neg.astype(np.int64)].reshape(soft.shape[:-1] + (-1,))


# --- mapping onto the header OFDM symbols -------------------------------------------------
_W6 = (1 << np.arange(5, -1, -1)).astype(np.int64)        # 6 bits, MSB first → codeword index


@lru_cache(maxsize=8)
def _slot_map(p: OfdmParams) -> tuple[np.ndarray, np.ndarray]:
    """Per header slot (a real value; for qpsk the re, im halves of a symbol in turn): the coded
    bit it carries (before repetition) and its factor: whitening sign (1-2pn) [× 1/√2 for qpsk]."""
    t = tables(p)
    perm = t["hdr_perm"]                                    # slot i carries repeated bit perm[i]
    scale = 1 / np.sqrt(2) if p.header_mod == "qpsk" else 1.0
    return perm % p.n_header_bits, (t["hdr_sign"][perm] * np.float32(scale)).astype(np.float32)


def _map_signs(p: OfdmParams, signs: np.ndarray) -> np.ndarray:
    """±1 coded bits (B, n_header_bits) float32, +1 ⇔ bit 0 (before repetition) → (B, n_header_syms,
    48) symbols. Whitening c ⊕ pn is the sign product (1-2c)(1-2pn); slot i carries bit perm[i];
    qpsk slots are the interleaved (re, im) floats of the complex symbols."""
    src, fac = _slot_map(p)
    B = signs.shape[0]
    vals = np.multiply(np.take(signs, src, axis=1), fac, out=np.empty((B, src.size), np.float32))
    if p.header_mod == "qpsk":
        out = vals.view(np.complex64)
    else:
        out = np.zeros((B, src.size), np.complex64)
        out.real = vals
    return out.reshape(B, p.n_header_syms, 48)


def encode_header(p: OfdmParams, h: HeaderFields) -> np.ndarray:
    """Header → (n_header_syms, 48) complex data-subcarrier values."""
    return encode_headers(p, [h])[0]


def encode_headers(p: OfdmParams, hs) -> np.ndarray:
    """A batch of headers (HeaderFields, or their `header_int` values) → (B, n_header_syms, 48):
    162 bits → 27 six-bit chunks → the RM(1,5) codewords as ±1 rows of a table (no per-bit work)."""
    B = len(hs)
    ints = (h if isinstance(h, int) else header_int(h) for h in hs)
    raw = np.frombuffer(b"".join(v.to_bytes(21, "big") for v in ints), np.uint8)
    info = np.unpackbits(raw.reshape(B, 21), axis=1)[:, -N_BITS:].reshape(B, -1, 6)
    return _map_signs(p, _SIGNS[info @ _W6].reshape(B, -1))


def symbols_from_idx(p: OfdmParams, idx: np.ndarray) -> np.ndarray:
    """Decoded codeword indices (B, 27) → the header symbols that were sent (B, n_h, 48)."""
    return _map_signs(p, _SIGNS[idx].reshape(idx.shape[0], -1))


def decode_headers(p: OfdmParams, soft_syms: np.ndarray):
    """soft_syms (B, n_header_syms, 48) matched-filter outputs Y·conj(Ĥ)·e^{-jθ} (MRC-weighted).
    Returns (list of field dicts or None per header, codeword indices (B, 27))."""
    t = tables(p)
    B = soft_syms.shape[0]
    s = soft_syms.reshape(B, -1)
    if p.header_mod == "qpsk":
        soft = np.empty((B, 2 * s.shape[1]), np.float32)
        soft[:, 0::2], soft[:, 1::2] = s.real, s.imag
    else:
        soft = s.real.astype(np.float32)
    coded_soft = soft[:, t["hdr_perm_inv"]] * t["hdr_sign"][None, :]     # de-interleave, de-whiten
    coded_soft = coded_soft.reshape(B, p.header_rep, -1).sum(axis=1)      # combine repetitions
    idx = rm_decode_idx(coded_soft)
    return unpack_rows(_U[idx].reshape(B, -1)), idx


def decode_header(p: OfdmParams, soft_syms: np.ndarray) -> dict | None:
    return decode_headers(p, soft_syms[None])[0][0]


def bcr_of(k: int, h: int, w: int, c: int) -> str:
    n = int(h) * int(w) * int(c)
    if n <= 0:
        return ""
    f = Fraction(int(k), n)
    return f"{f.numerator}/{f.denominator}"


def fields_to_meta(f: dict, model_ids=(), image_ids=(), model_bcr=None) -> dict:
    """Header fields → PDU metadata (CONVENTIONS keys + ``seq``; see the module doc for ids).
    model_ids / image_ids: known ids (or precomputed {crc32: id} dicts) to map hashes back."""
    models = model_ids if isinstance(model_ids, dict) else {crc32_str(m): m for m in model_ids}
    images = image_ids if isinstance(image_ids, dict) else {crc32_str(i): i for i in image_ids}
    if f["id_numeric"]:
        iid = str(f["image_id"])
    else:
        iid = images.get(f["image_id"], f"ota/{f['seq']}-{f['image_id']:08x}")
    mid = models.get(f["model_hash"], f"#{f['model_hash']:08x}") if f["model_hash"] else ""
    meta = {"image_id": iid, "k": f["k"], "model_id": mid, "height": f["height"],
            "width": f["width"], "channels": f["channels"], "seq": f["seq"]}
    if not f["id_numeric"]:
        meta["image_id_crc32"] = f"{f['image_id']:08x}"
    bcr = (model_bcr or {}).get(mid) or bcr_of(f["k"], f["height"], f["width"], f["channels"])
    if bcr:
        meta["bcr"] = bcr
    return meta
