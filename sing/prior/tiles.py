# SPDX-License-Identifier: GPL-3.0-or-later
"""The diffusion prior on images of any H×W: ε_θ computed tile-wise with overlap and blended
(docs/ALGORITHMS.md §3, "Images larger than the prior").

`TiledPrior(prior, (H, W))` is a prior object for the sampler core (sing.prior.ddim.sample): it has
the prior's schedule (alphas_cumprod, ddim_timesteps, num_train_timesteps), device, dtype and
channels, `image_size = (H, W)`, and an `eps(x_t, t)` that

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

Spectral SING-Zero is not size-free: its operator is per-DCT-frequency gains h(f) and noise N(f)
measured for the JSCC at one H×W (sing/zero/calibration.py); the DCT basis of another size has other
frequencies, so an H×W image needs a calibration at H×W. Identity and avgpool operators, DPS and
unconditional sampling need nothing per size.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..errors import InputError

MIN_SIDE = 8        # the JSCC's limits (sing/jscc/model.py): one home for what an image may be
MAX_SIDE = 1024


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


class TiledPrior:
    """A diffusion prior at image size (H, W) built from a prior trained at T×T (module doc)."""

    def __init__(self, prior, image_size: tuple[int, int] | int, overlap: int | None = None,
                 max_batch: int = 16):
        h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        h, w = int(h), int(w)
        if not (MIN_SIDE <= h <= MAX_SIDE and MIN_SIDE <= w <= MAX_SIDE):
            raise InputError(f"image size {h}×{w} is outside the supported range: each side must lie in "
                             f"[{MIN_SIDE}, {MAX_SIDE}]")
        size = prior.image_size
        th, tw = (size, size) if isinstance(size, int) else tuple(size)
        if th != tw:
            raise InputError(f"tiling needs a prior trained on square images, got {th}×{tw}")
        self.tile = int(th)
        self.overlap = self.tile // 4 if overlap is None else int(overlap)
        if not 0 <= self.overlap <= self.tile // 2:
            raise InputError(f"overlap must lie in [0, tile/2] = [0, {self.tile // 2}] pixels, got {overlap}")
        if int(max_batch) < 1:
            raise InputError(f"max_batch must be ≥ 1 tile per UNet call, got {max_batch}")
        self.prior = prior
        self.image_size = (h, w)
        self.max_batch = int(max_batch)
        self.channels = int(prior.channels)
        self.num_train_timesteps = prior.num_train_timesteps
        self.alphas_cumprod = prior.alphas_cumprod
        self._ph, self._pw = max(h, self.tile), max(w, self.tile)      # after padding short sides
        self.ys = tile_starts(self._ph, self.tile, self.overlap)
        self.xs = tile_starts(self._pw, self.tile, self.overlap)
        wy = [window_1d(self.tile, self.overlap, i == 0, i == len(self.ys) - 1) for i in range(len(self.ys))]
        wx = [window_1d(self.tile, self.overlap, j == 0, j == len(self.xs) - 1) for j in range(len(self.xs))]
        self._windows = {(i, j): torch.outer(wy[i], wx[j]).float()
                         for i in range(len(self.ys)) for j in range(len(self.xs))}

    # -- what the sampler core reads -------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.prior.device

    @property
    def dtype(self) -> torch.dtype:
        return self.prior.dtype

    def ddim_timesteps(self, steps: int) -> torch.Tensor:
        return self.prior.ddim_timesteps(steps)

    @property
    def tiles_per_image(self) -> int:
        return len(self.ys) * len(self.xs)

    def check_images(self, x: torch.Tensor) -> None:
        want = (self.channels, *self.image_size)
        if not torch.is_tensor(x) or x.ndim != 4 or tuple(x.shape[1:]) != want:
            got = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
            raise InputError(f"this tiled prior takes (B, {want[0]}, {want[1]}, {want[2]}) images, got "
                             f"{got}: build a TiledPrior for that size")

    def eps(self, x_t: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        """ε for (B, C, H, W) x_t, tile-wise and blended (module doc); x_t's dtype and device.
        Differentiable (DPS takes gradients through it)."""
        self.check_images(x_t)
        B = x_t.shape[0]
        H, W = self.image_size
        tt = torch.as_tensor(t, dtype=torch.long).cpu()
        tt = tt.expand(B) if tt.ndim == 0 else tt
        if tuple(tt.shape) != (B,):
            raise InputError(f"t must be an int or a LongTensor of shape ({B},), got {tuple(tt.shape)}")
        x = x_t
        if (self._ph, self._pw) != (H, W):                 # a side shorter than the tile
            mode = "reflect" if self._ph - H < H and self._pw - W < W else "replicate"
            x = F.pad(x, (0, self._pw - W, 0, self._ph - H), mode=mode)
        T = self.tile
        jobs = [(b, i, j) for b in range(B) for i in range(len(self.ys)) for j in range(len(self.xs))]
        acc = x.new_zeros(B, x.shape[1], self._ph, self._pw)
        wsum = torch.zeros(self._ph, self._pw, dtype=x.dtype, device=x.device)
        for (i, j), win in self._windows.items():
            y0, x0 = self.ys[i], self.xs[j]
            wsum[y0:y0 + T, x0:x0 + T] += win.to(x.device, x.dtype)
        for s in range(0, len(jobs), self.max_batch):
            chunk = jobs[s:s + self.max_batch]
            crops = torch.stack([x[b, :, self.ys[i]:self.ys[i] + T, self.xs[j]:self.xs[j] + T]
                                 for b, i, j in chunk])
            e = self.prior.eps(crops, tt[[b for b, _, _ in chunk]])
            for n, (b, i, j) in enumerate(chunk):
                y0, x0 = self.ys[i], self.xs[j]
                win = self._windows[(i, j)].to(e.device, e.dtype)
                acc[b, :, y0:y0 + T, x0:x0 + T] += win * e[n]
        out = acc / wsum
        return out[:, :, :H, :W] if (self._ph, self._pw) != (H, W) else out

    def __call__(self, x_t, t):
        return self.eps(x_t, t)


def tiled(prior, image_size: tuple[int, int] | int, overlap: int | None = None, max_batch: int = 16):
    """`prior` itself when image_size is its native size, else a TiledPrior (module doc)."""
    size = prior.image_size
    native = (size, size) if isinstance(size, int) else tuple(size)
    want = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if tuple(int(v) for v in want) == tuple(int(v) for v in native):
        return prior
    return TiledPrior(prior, want, overlap=overlap, max_batch=max_batch)
