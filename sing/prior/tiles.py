# SPDX-License-Identifier: GPL-3.0-or-later
"""The diffusion prior on images of any H×W (docs/ALGORITHMS.md §3, "Images of another size"):
`at_size(prior, (H, W))` is what every method calls; it returns

- the prior itself at its native size (bit-identical to before);
- a `WholeImagePrior` when the padded image has at most WHOLE_MAX_TOKENS positions at the UNet's
  lowest level ((Hp/s)·(Wp/s), s = the UNet's stride; 256×256 for the shipped 64×64 prior, s = 8):
  the UNet is convolutional, so ε_θ runs on the whole image, reflect-padded at the bottom and right
  to a multiple of s and cropped back. Cost linear in pixels up to that bound (the self-attention
  at the lowest level is quadratic in its positions: measured on one CPU core, shipped prior, one
  image, 0.050 s at 64², 0.80 s at 256² = 16.1×, 7.0 s at 512² = 141×);
- above it, a `TiledPrior` of whole-image tiles of at most that bound's side (256 for the shipped
  prior; `tile_side` picks the fewest such tiles and then the smallest tile that covers the image
  with them), overlapping by a quarter of the bound's side (64) and blended as below.

Peak memory is bounded by images × pixels per UNet call (MAX_CALL_PIXELS; a batch is split into
calls of at most that many pixels): one UNet call on 4·256² pixels, no gradients, is ≈ 0.25 GB
of activations above the model for the shipped prior (sim/results/size/bench.json measures it).

`TiledPrior(prior, (H, W))`, like `WholeImagePrior` a prior for the sampler core (sing.prior.ddim.sample)
with `image_size = (H, W)`, computes ε_θ tile-wise with overlap and blended; its `eps(x_t, t)`

1. cuts x_t into tiles of the prior's native size T×T on a grid that covers the image: along a side
   of length L ≥ T, n = ceil((L − T)/(T − O)) + 1 tiles at positions round(i·(L − T)/(n − 1)), so
   neighbours overlap by at least O pixels (O = `overlap`) and the last tile ends at the border
   (a side shorter than T is reflect-padded to T and cropped back);
2. runs the prior's ε_θ on at most `max_batch` tiles per call (bounded memory, below);
3. blends: ε(p) = Σ_j w_j(p)·ε_j(p) / Σ_j w_j(p), with the separable window w_j = w(y)·w(x) that
   rises as sin²(π/2·(i + ½)/O) over the first and last O pixels of a tile (flat 1 on a side that
   touches the image border, so the border is not down-weighted), and 1 elsewhere.

Every DDIM step therefore sees one seamless x_t (the tiles only shape how ε is computed, as in
MultiDiffusion, Bar-Tal et al. 2023), and the correction of the step (DDNM's range-null-space,
SING-Zero, DPS's gradient) acts on the whole image: every method built on `sample` runs at any size
with no change. When one tile covers the image, ε is the prior's ε exactly.

Peak memory: one UNet call on max_batch tiles of T×T (the prior's own per-image activation memory
× max_batch, as `sing bench prior` measures at batch max_batch) plus three (B, C, H, W) float32
buffers (the blended ε, the weight sum, the tile stack input): independent of H×W apart from those
buffers. Cost: B × (tiles per image) UNet evaluations per step, ≈ B·H·W/(T − O)² for large images.

Spectral SING-Zero's calibration (per-DCT-frequency h(f), N(f) at one H×W) is carried to another
size by resampling over normalised frequency (sing/zero/calibration.py, `Calibration.for_shape`).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..errors import InputError
from .ddim import prior_shape
from .model import batch_timesteps

MIN_SIDE = 8        # the JSCC's limits (sing/jscc/model.py): one home for what an image may be
MAX_SIDE = 1024
WHOLE_MAX_TOKENS = 1024          # whole-image UNet up to this many lowest-level positions (module doc)
MAX_CALL_PIXELS = 4 * 256 * 256  # images × pixels per UNet call (bounded memory, module doc)


def _hw(image_size) -> tuple[int, int]:
    h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    h, w = int(h), int(w)
    if not (MIN_SIDE <= h <= MAX_SIDE and MIN_SIDE <= w <= MAX_SIDE):
        raise InputError(f"image size {h}×{w} is outside the supported range: each side must lie in "
                         f"[{MIN_SIDE}, {MAX_SIDE}]")
    return h, w


def _stride(prior) -> int:
    return int(getattr(prior, "stride", 1))


def _pad_to(x: torch.Tensor, hp: int, wp: int) -> torch.Tensor:
    """x reflect-padded at the bottom and right to (hp, wp) (replicate where reflect cannot reach)."""
    H, W = x.shape[-2:]
    if (hp, wp) == (H, W):
        return x
    mode = "reflect" if hp - H < H and wp - W < W else "replicate"
    return F.pad(x, (0, wp - W, 0, hp - H), mode=mode)


class _SizedPrior:
    """What the sampler core reads, delegated to the underlying prior; `image_size` is (H, W). A
    subclass sets `padded` (the size ε is computed at) and `_eps_padded`."""

    def __init__(self, prior, image_size):
        self.prior = prior
        self.image_size = _hw(image_size)
        self.channels = int(prior.channels)
        self.num_train_timesteps = prior.num_train_timesteps
        self.alphas_cumprod = prior.alphas_cumprod

    @property
    def device(self) -> torch.device:
        return self.prior.device

    @property
    def dtype(self) -> torch.dtype:
        return self.prior.dtype

    def ddim_timesteps(self, steps: int) -> torch.Tensor:
        return self.prior.ddim_timesteps(steps)

    def check_images(self, x: torch.Tensor) -> None:
        want = (self.channels, *self.image_size)
        if not torch.is_tensor(x) or x.ndim != 4 or tuple(x.shape[1:]) != want:
            got = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
            raise InputError(f"this {type(self).__name__} takes (B, {want[0]}, {want[1]}, {want[2]}) "
                             f"images, got {got}: use sing.prior.tiles.at_size for that size")

    def eps(self, x_t: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        """ε for (B, C, H, W) x_t (module doc): x_t reflect-padded at the bottom and right to `padded`,
        ε of that, cropped back; x_t's dtype and device. Differentiable (DPS takes gradients through it)."""
        self.check_images(x_t)
        H, W = self.image_size
        out = self._eps_padded(_pad_to(x_t, *self.padded), batch_timesteps(t, x_t.shape[0]))
        return out if tuple(self.padded) == (H, W) else out[:, :, :H, :W]

    def __call__(self, x_t, t):
        return self.eps(x_t, t)


class WholeImagePrior(_SizedPrior):
    """ε_θ of the whole H×W image in one UNet pass per image (module doc): padded to the UNet's
    stride and cropped back; a batch goes in calls of at most `max_call_pixels` pixels.
    Differentiable (DPS)."""

    def __init__(self, prior, image_size, max_call_pixels: int = MAX_CALL_PIXELS):
        super().__init__(prior, image_size)
        s = _stride(prior)
        h, w = self.image_size
        self.padded = (-(-h // s) * s, -(-w // s) * s)
        self.per_call = max(1, int(max_call_pixels) // (self.padded[0] * self.padded[1]))

    @property
    def native_passes(self) -> int:
        """UNet work per image and step in passes at the prior's native size (a cost unit)."""
        nh, nw = prior_shape(self.prior)[1:]
        return -(-(self.padded[0] * self.padded[1]) // (nh * nw))

    def _eps_padded(self, x: torch.Tensor, tt: torch.Tensor) -> torch.Tensor:
        outs = [self.prior.eps(x[i:i + self.per_call], tt[i:i + self.per_call], any_size=True)
                for i in range(0, x.shape[0], self.per_call)]
        return outs[0] if len(outs) == 1 else torch.cat(outs)


def whole_image_bound(prior) -> tuple[int, int]:
    """(largest number of lowest-level UNet positions run whole-image, tile side above it) for a
    prior (module doc): max(WHOLE_MAX_TOKENS, the native size's) positions; the tile side is the
    square of that many positions."""
    s = _stride(prior)
    nh, nw = prior_shape(prior)[1:]
    tokens = max(WHOLE_MAX_TOKENS, (nh // s) * (nw // s))
    return tokens, int(math.isqrt(tokens)) * s


def at_size(prior, image_size, overlap: int | None = None):
    """The prior for H×W images (module doc): the prior itself at its native size, a
    WholeImagePrior up to the whole-image bound, a TiledPrior of whole-image tiles above."""
    h, w = _hw(image_size)
    if (h, w) == prior_shape(prior)[1:]:
        return prior
    if isinstance(prior, _SizedPrior):
        raise InputError(f"at_size takes the model's prior, not a prior already sized to {prior.image_size}")
    if not hasattr(prior, "stride"):          # a prior that cannot run at other sizes: tiles of its own
        return TiledPrior(prior, (h, w), overlap=overlap)
    s = _stride(prior)
    tokens, side = whole_image_bound(prior)
    if (-(-h // s)) * (-(-w // s)) <= tokens:
        return WholeImagePrior(prior, (h, w))
    o = side // 4 if overlap is None else int(overlap)
    tile = tile_side(h, w, side, o, s)
    return TiledPrior(prior, (h, w), overlap=o, tile=tile,
                      max_batch=max(1, MAX_CALL_PIXELS // (tile * tile)))


def tile_side(h: int, w: int, side: int, overlap: int, stride: int) -> int:
    """The whole-image tile for an H×W image above the bound (module doc): along each side the
    fewest tiles of at most `side` pixels that overlap by `overlap`, n = ⌈(L − O)/(side − O)⌉, then
    the smallest tile that covers L with n tiles, ⌈(L + (n−1)·O)/n⌉, rounded up to the stride; the
    larger of the two sides' values. Smaller tiles than `side` keep the overlap's share and the
    attention's quadratic cost down (512×512: 9 tiles of 216² instead of 9 of 256²)."""
    def need(L: int) -> int:
        if L <= side:
            return min(side, -(-L // stride) * stride)
        n = -(-(L - overlap) // (side - overlap))
        return -(-(-(-(L + (n - 1) * overlap) // n)) // stride) * stride
    return max(2 * overlap, min(side, max(need(h), need(w))))


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Tile positions along one side (module doc, step 1); [0] when length ≤ tile."""
    if length <= tile:
        return [0]
    n = math.ceil((length - tile) / (tile - overlap)) + 1
    return [round(i * (length - tile) / (n - 1)) for i in range(n)]


def window_1d(tile: int, overlap: int, first: bool, last: bool) -> torch.Tensor:
    """Blending weights along one side of a tile (module doc, step 3): sin² ramps of length
    `overlap` at the ends that do not touch the image border; all > 0."""
    w = torch.ones(tile, dtype=torch.float64)
    if overlap > 0:
        ramp = torch.sin(0.5 * math.pi * (torch.arange(overlap, dtype=torch.float64) + 0.5) / overlap) ** 2
        if not first:
            w[:overlap] = ramp
        if not last:
            w[tile - overlap:] = ramp.flip(0)
    return w


class TiledPrior(_SizedPrior):
    """A diffusion prior at image size (H, W) from overlapping T×T tiles (module doc); T is the
    prior's native size unless `tile` says otherwise (then each tile runs whole-image)."""

    def __init__(self, prior, image_size: tuple[int, int] | int, overlap: int | None = None,
                 max_batch: int = 16, tile: int | None = None):
        h, w = _hw(image_size)
        th, tw = prior_shape(prior)[1:]
        if th != tw:
            raise InputError(f"tiling needs a prior trained on square images, got {th}×{tw}")
        self.tile = th if tile is None else int(tile)
        if self.tile != th and (not hasattr(prior, "stride") or self.tile % _stride(prior) or self.tile < 8):
            raise InputError(f"a tile of {self.tile} pixels needs a prior that runs at any size and a side "
                             f"that is a multiple of its stride ({_stride(prior)})")
        # the tiles' ε: the prior's own at its native size, else the whole-image UNet on each tile
        self._tile_eps = prior.eps if self.tile == th else \
            (lambda x, t: prior.eps(x, t, any_size=True))
        self.overlap = self.tile // 4 if overlap is None else int(overlap)
        if not 0 <= self.overlap <= self.tile // 2:
            raise InputError(f"overlap must lie in [0, tile/2] = [0, {self.tile // 2}] pixels, got {overlap}")
        if int(max_batch) < 1:
            raise InputError(f"max_batch must be ≥ 1 tile per UNet call, got {max_batch}")
        super().__init__(prior, (h, w))
        self.max_batch = int(max_batch)
        self.padded = (max(h, self.tile), max(w, self.tile))           # a side shorter than the tile is padded
        self.ys = tile_starts(self.padded[0], self.tile, self.overlap)
        self.xs = tile_starts(self.padded[1], self.tile, self.overlap)
        wy = [window_1d(self.tile, self.overlap, i == 0, i == len(self.ys) - 1) for i in range(len(self.ys))]
        wx = [window_1d(self.tile, self.overlap, j == 0, j == len(self.xs) - 1) for j in range(len(self.xs))]
        self._windows = {(i, j): torch.outer(wy[i], wx[j]).float()
                         for i in range(len(self.ys)) for j in range(len(self.xs))}

    @property
    def tiles_per_image(self) -> int:
        return len(self.ys) * len(self.xs)

    @property
    def native_passes(self) -> int:
        """UNet work per image and step in passes at the prior's native size (a cost unit)."""
        nh, nw = prior_shape(self.prior)[1:]
        return self.tiles_per_image * -(-(self.tile * self.tile) // (nh * nw))

    def _eps_padded(self, x: torch.Tensor, tt: torch.Tensor) -> torch.Tensor:
        """ε tile-wise and blended (module doc, steps 1–3)."""
        T, B = self.tile, x.shape[0]
        jobs = [(b, i, j) for b in range(B) for i in range(len(self.ys)) for j in range(len(self.xs))]
        acc = x.new_zeros(B, x.shape[1], *self.padded)
        wsum = torch.zeros(*self.padded, dtype=x.dtype, device=x.device)
        for (i, j), win in self._windows.items():
            y0, x0 = self.ys[i], self.xs[j]
            wsum[y0:y0 + T, x0:x0 + T] += win.to(x.device, x.dtype)
        for s in range(0, len(jobs), self.max_batch):
            chunk = jobs[s:s + self.max_batch]
            crops = torch.stack([x[b, :, self.ys[i]:self.ys[i] + T, self.xs[j]:self.xs[j] + T]
                                 for b, i, j in chunk])
            e = self._tile_eps(crops, tt[[b for b, _, _ in chunk]])
            for n, (b, i, j) in enumerate(chunk):
                y0, x0 = self.ys[i], self.xs[j]
                win = self._windows[(i, j)].to(e.device, e.dtype)
                acc[b, :, y0:y0 + T, x0:x0 + T] += win * e[n]
        return acc / wsum
