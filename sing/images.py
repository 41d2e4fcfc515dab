# SPDX-License-Identifier: GPL-3.0-or-later
"""Photographs as the transmitter sends them: one image file → the pixels the DeepJSCC encoder
takes, at a size chosen by a size policy, with every odd file either converted by a stated rule
or refused with an error that names the file and what to do (docs/CONVENTIONS.md, "Images").

Size policies (`SizePolicy`; the JSCC image source's "Size policy" and "Size" parameters):
- ``native`` (default): the image at its own size. ``size`` caps the longest side (0: the largest
  side a model takes, sing.jscc.model.MAX_SIDE = 1024); a larger image is scaled down to fit, aspect
  kept. Smaller images are never enlarged.
- ``fit``: scaled (down or up) so that the longest side is ``size`` (0: the model's image size),
  aspect kept.
- ``crop``: scaled so that the shorter side is ``size`` (0: the model's image size), then
  centre-cropped to size×size (sing.data.fit_image, the rule of ``sing eval`` on folder:PATH).
Scaling uses the area filter when shrinking and bicubic when enlarging. After the policy each side
must lie in [MIN_SIDE, MAX_SIDE] = [8, 1024] (sing/jscc/model.py), else the image is refused
(e.g. a 4×600 strip under ``native``: use ``fit`` or ``crop``).

Conversions (each one noted in `SourceImage.notes`, which the source logs):
- greyscale files (PIL modes 1, L, LA, I, I;16…) stay greyscale: ``channels = 1``. An RGB model
  is sent the grey image as three equal channels; the receiver turns the decoded image back into
  one channel (`to_channels`: the mean of the three) and writes a 1-channel PNG, so the restored
  PNG has the input's shape. A greyscale model is sent the luminance of a colour file
  (ITU-R 601, PIL's ``convert("L")``): ``channels = 1`` too.
- 16-bit greyscale: scaled to 8 bits (v·255/65535, rounded). 16-bit RGB PNGs PIL already reads as
  8-bit RGB. 32-bit float images are refused (no range to scale from).
- alpha (RGBA, LA, palette or RGB/L with a transparent colour): composited over white, then the
  alpha channel is dropped.
- CMYK, YCbCr, LAB, HSV and palette images: converted to RGB by PIL (CMYK without a colour profile).
- animated files (GIF, APNG, WebP, multi-page TIFF): the first frame is sent.
- EXIF orientation: applied, so a phone photo is sent upright.
Refused (sing.errors.DataError naming the file, the problem and what to do): a missing,
unreadable, corrupt or truncated file; an image with no pixels; a file claiming more than
MAX_DECODE_PIXELS pixels (a decompression-bomb guard, checked from the header before any pixel is
decoded; JPEGs are decoded at a reduced scale when the policy needs fewer pixels).
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import DataError, InputError

POLICIES = ("native", "fit", "crop")
MAX_DECODE_PIXELS = 1 << 27          # 134 Mpixel: a 12000×9000 (108 MP) photo passes, 20000² does not
_GREY_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N")
_WHITE = 255


def side_limits() -> tuple[int, int]:
    """(MIN_SIDE, MAX_SIDE) of the DeepJSCC models (sing/jscc/model.py, their one home)."""
    from .jscc.model import MAX_SIDE, MIN_SIDE
    return MIN_SIDE, MAX_SIDE


@dataclass(frozen=True)
class SizePolicy:
    """How an image's size is chosen before encoding (module doc)."""
    mode: str = "native"
    size: int = 0           # native: cap on the longest side (0: MAX_SIDE); fit/crop: N (0: model's size)

    def __post_init__(self):
        if self.mode not in POLICIES:
            raise InputError(f"size policy {self.mode!r} is not one of {', '.join(POLICIES)}")
        lo, hi = side_limits()
        if not (isinstance(self.size, int) and (self.size == 0 or lo <= self.size <= hi)):
            raise InputError(f"size {self.size!r} must be 0 (the default) or an integer in [{lo}, {hi}]")

    def target(self, h: int, w: int, model_size: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """((scaled H, W), (final H, W)) for an h×w image: the size it is resized to, then the
        size after the centre crop (equal except for ``crop``)."""
        hi = side_limits()[1]
        if self.mode == "native":
            cap = self.size or hi
            s = min(1.0, cap / max(h, w))
        elif self.mode == "fit":
            s = (self.size or model_size) / max(h, w)
        else:
            n = self.size or model_size
            return short_side_shape((h, w), n), (n, n)
        scaled = (max(1, round(h * s)), max(1, round(w * s)))
        if self.mode == "fit":         # the longest side is exactly N
            n = self.size or model_size
            scaled = (n, scaled[1]) if h >= w else (scaled[0], n)
        return scaled, scaled


@dataclass
class SourceImage:
    """One image ready for the encoder (module doc)."""
    pixels: np.ndarray                  # uint8 (H, W, model channels): what the encoder takes
    channels: int                       # the image's own channels (1 grey, 3 colour)
    file_size: tuple[int, int]          # (H, W) as decoded (after EXIF orientation, JPEG draft scale)
    notes: tuple[str, ...] = field(default=())

    @property
    def shape(self) -> tuple[int, int, int]:
        """(H, W, channels): the restored PNG's shape."""
        return int(self.pixels.shape[0]), int(self.pixels.shape[1]), self.channels

    @property
    def image(self) -> np.ndarray:
        """uint8 (H, W, channels): the image as the receiver restores it (for displays, metrics)."""
        return to_channels(self.pixels, self.channels)


def to_channels(img_hwc: np.ndarray, channels: int) -> np.ndarray:
    """A decoded uint8 (H, W, C) image as `channels` channels: 3 → 1 is the mean of the three
    (rounded; a grey image sent as three equal channels comes back grey), 1 → 3 repeats, equal
    counts pass unchanged."""
    a = np.asarray(img_hwc)
    c = a.shape[-1]
    if c == channels:
        return a
    if channels == 1 and c == 3:
        return np.round(a.astype(np.float32).mean(axis=-1, keepdims=True)).astype(np.uint8)
    if channels == 3 and c == 1:
        return np.repeat(a, 3, axis=-1)
    raise InputError(f"cannot turn a {c}-channel image into {channels} channels (1 or 3)")


def _fail(path, what: str, todo: str) -> DataError:
    return DataError(f"{path}: {what}; {todo}")


def open_image(path):
    """(path, PIL image) opened lazily (header only), with the size checks done before decoding:
    missing, corrupt, 0-sized, over MAX_DECODE_PIXELS → DataError saying what to do."""
    from PIL import Image, UnidentifiedImageError
    p = Path(os.path.expanduser(str(path)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            im = Image.open(p)
        except FileNotFoundError:
            raise _fail(p, "file not found", "check the path") from None
        except Image.DecompressionBombError:             # PIL's own guard, above ours
            raise _fail(p, f"claims more than the {MAX_DECODE_PIXELS / 1e6:.0f} Mpixel this source decodes "
                           f"(a guard against decompression bombs)",
                        "scale it down with an image editor first") from None
        except UnidentifiedImageError:
            raise _fail(p, "not an image PIL can read (corrupt, empty, 0-sized or an unknown format)",
                        "re-save it as PNG or JPEG, or remove it from the folder") from None
        except (OSError, ValueError, SyntaxError) as e:    # PIL raises SyntaxError for bad headers
            raise _fail(p, f"unreadable image header ({e})",
                        "re-save it as PNG or JPEG, or remove it from the folder") from None
    w, h = im.size
    if w <= 0 or h <= 0:
        im.close()
        raise _fail(p, f"the image has no pixels ({w}×{h})", "remove it from the folder")
    if w * h > MAX_DECODE_PIXELS:
        im.close()
        raise _fail(p, f"{w}×{h} = {w * h / 1e6:.0f} Mpixel is more than the {MAX_DECODE_PIXELS / 1e6:.0f} "
                       f"Mpixel this source decodes (a guard against decompression bombs)",
                    "scale it down with an image editor first")
    return p, im


def _flatten_alpha(a: np.ndarray) -> np.ndarray:
    """uint8 (H, W, C+1) with alpha last → (H, W, C) composited over white."""
    alpha = a[..., -1:].astype(np.float32) / 255.0
    return np.round(a[..., :-1].astype(np.float32) * alpha + _WHITE * (1.0 - alpha)).astype(np.uint8)


def _pixels(p: Path, im, model_channels: int, notes: list[str]) -> np.ndarray:
    """Decoded uint8 (H, W, 1|3) of an opened image (module doc: conversions)."""
    from PIL import Image
    mode = im.mode
    if mode == "F":
        raise _fail(p, "32-bit floating-point pixels have no fixed range",
                    "save it as an 8- or 16-bit PNG")
    if mode.startswith("I"):                     # 16-bit (or 32-bit int) greyscale
        a = np.asarray(im).astype(np.int64)
        notes.append(f"{mode} greyscale scaled from 16 to 8 bits")
        a = np.round(np.clip(a, 0, 65535) * (255.0 / 65535.0)).astype(np.uint8)
        return a[..., None]
    has_alpha = ("A" in mode or "a" in mode or "transparency" in im.info)
    grey = mode in _GREY_MODES
    if mode == "P":
        im = im.convert("RGBA" if has_alpha else "RGB")
        notes.append("palette image converted to RGB")
    elif mode == "1":
        im = im.convert("L")
    elif mode not in ("RGB", "RGBA", "L", "LA"):
        if mode in ("La", "RGBa", "PA"):
            im = im.convert("LA" if grey else "RGBA")
        else:
            notes.append(f"{mode} converted to RGB" + (" (no colour profile)" if mode == "CMYK" else ""))
            im = im.convert("RGBA" if has_alpha else "RGB")
    elif has_alpha and im.mode in ("RGB", "L"):   # a transparent colour key
        im = im.convert("RGBA" if im.mode == "RGB" else "LA")
    a = np.asarray(im, dtype=np.uint8)
    if a.ndim == 2:
        a = a[..., None]
    if a.shape[-1] in (2, 4):
        notes.append("alpha composited over white")
        a = _flatten_alpha(a)
    if model_channels == 1 and a.shape[-1] == 3:
        notes.append("colour converted to luminance for a greyscale model")
        a = np.asarray(Image.fromarray(a).convert("L"), dtype=np.uint8)[..., None]
    return a


def short_side_shape(hw: tuple[int, int], n: int) -> tuple[int, int]:
    """(H, W) of an image scaled so that its shorter side is n, aspect kept (each side ≥ n)."""
    h, w = hw
    s = n / min(h, w)
    return max(n, round(h * s)), max(n, round(w * s))


def resize(a: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """uint8 (H, W, C) resized to hw (module doc: area filter shrinking, bicubic enlarging)."""
    import cv2
    h, w = a.shape[:2]
    if (h, w) == tuple(hw):
        return a
    interp = cv2.INTER_AREA if hw[0] * hw[1] < h * w else cv2.INTER_CUBIC
    r = cv2.resize(a, (hw[1], hw[0]), interpolation=interp)
    return r[..., None] if r.ndim == 2 else r


def load_image(path: str | os.PathLike, model_channels: int = 3, policy: SizePolicy | None = None,
               model_size: int = 64) -> SourceImage:
    """One image file → SourceImage for a model of `model_channels` channels trained at
    `model_size` (what ``fit``/``crop`` default to). Raises DataError naming the file (module doc)."""
    from PIL import ImageOps
    policy = policy or SizePolicy()
    if model_channels not in (1, 3):
        raise InputError(f"model_channels must be 1 or 3, got {model_channels}")
    p, im = open_image(path)
    notes: list[str] = []
    try:
        n_frames = int(getattr(im, "n_frames", 1) or 1)
        if n_frames > 1:
            notes.append(f"animated/multi-frame file ({n_frames} frames): the first frame is sent")
            im.seek(0)
        w0, h0 = im.size
        if im.format == "JPEG":                 # decode at a reduced scale when fewer pixels do
            (sh, sw), _ = policy.target(h0, w0, model_size)
            im.draft(None, (sw, sh))
        try:
            im.load()
            im = ImageOps.exif_transpose(im)
        except (OSError, ValueError, SyntaxError) as e:
            raise _fail(p, f"corrupt or truncated image data ({e})",
                        "re-save it as PNG or JPEG, or remove it from the folder") from None
        a = _pixels(p, im, model_channels, notes)
    finally:
        im.close()
    h, w = a.shape[:2]
    (sh, sw), (th, tw) = policy.target(h, w, model_size)
    lo, hi = side_limits()
    if not (lo <= th <= hi and lo <= tw <= hi):
        raise _fail(p, f"a {h}×{w} image becomes {th}×{tw} under size policy {policy.mode!r}, outside "
                       f"the [{lo}, {hi}] pixels per side the models take",
                    "use size policy 'fit' or 'crop' (or another size)")
    if policy.mode == "crop":                   # the data sets' rule itself (shorter side, centre crop)
        from .data import fit_image
        a = fit_image(a, th)
    else:
        a = resize(a, (sh, sw))
    channels = a.shape[-1]
    if model_channels == 3 and channels == 1:
        a = np.repeat(a, 3, axis=-1)
    return SourceImage(np.ascontiguousarray(a), int(channels), (int(h), int(w)), tuple(notes))


def describe(img: SourceImage) -> str:
    """'300×200 RGB' / '37×53 grey' (H×W) for log lines."""
    h, w, c = img.shape
    return f"{h}×{w} {'grey' if c == 1 else 'RGB'}"


