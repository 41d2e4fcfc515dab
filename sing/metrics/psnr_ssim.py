# SPDX-License-Identifier: GPL-3.0-or-later
"""PSNR and SSIM per image, batched torch (docs/ALGORITHMS.md §7).

- PSNR with data range 1: ``10·log10(1 / MSE)``, MSE over (C, H, W); identical images give +inf.
- SSIM (Wang, Bovik, Sheikh, Simoncelli, IEEE TIP 2004, eq. 13) with an 11×11 Gaussian window,
  σ = 1.5, K1 = 0.01, K2 = 0.03, population (not sample) covariances, averaged over the valid
  (unpadded) positions and then over channels. This is what
  ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=1, channel_axis=...)`` computes.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import InputError

SSIM_WIN, SSIM_SIGMA, K1, K2 = 11, 1.5, 0.01, 0.03


def check_pair(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    """Raise InputError unless a and b are float tensors of the same (B, C, H, W) shape."""
    for name, t in (("first", a), ("second", b)):
        if not isinstance(t, torch.Tensor):
            raise InputError(f"{what}: the {name} argument must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 4:
            raise InputError(f"{what}: expected images shaped (B, C, H, W), got {tuple(t.shape)} "
                             f"for the {name} argument (add a batch axis with x[None])")
        if not t.is_floating_point():
            raise InputError(f"{what}: expected float images in [0, 1], got dtype {t.dtype} "
                             f"(convert uint8 with x.float() / 255)")
    if a.shape != b.shape:
        raise InputError(f"{what}: the two batches differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")


def psnr(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Per-image PSNR in dB, (B,). Inputs (B, C, H, W) in [0, 1]."""
    check_pair(a, b, "psnr")
    dt = torch.promote_types(torch.promote_types(a.dtype, b.dtype), torch.float32)
    mse = ((a.to(dt) - b.to(dt)) ** 2).flatten(1).mean(1)
    return 10 * torch.log10(data_range ** 2 / mse)


def _gaussian_1d(size: int, sigma: float, dtype, device) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-x * x / (2 * sigma * sigma))
    return (g / g.sum()).to(dtype=dtype, device=device)


def ssim(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Per-image SSIM, (B,): Gaussian 11×11 (σ 1.5), mean over valid positions, then channels."""
    check_pair(a, b, "ssim")
    B, C, H, W = a.shape
    if H < SSIM_WIN or W < SSIM_WIN:
        raise InputError(f"ssim needs images of at least {SSIM_WIN}×{SSIM_WIN}, got {H}×{W}")
    dt = torch.promote_types(torch.promote_types(a.dtype, b.dtype), torch.float32)
    x = a.to(dt).reshape(B * C, 1, H, W)
    y = b.to(dt).reshape(B * C, 1, H, W)
    g = _gaussian_1d(SSIM_WIN, SSIM_SIGMA, dt, a.device)
    gh, gv = g.view(1, 1, 1, -1), g.view(1, 1, -1, 1)

    def blur(t):  # separable Gaussian, valid region only
        return F.conv2d(F.conv2d(t, gh), gv)

    stack = blur(torch.cat([x, y, x * x, y * y, x * y], 0))
    mx, my, exx, eyy, exy = stack.chunk(5, 0)
    vx, vy, cxy = exx - mx * mx, eyy - my * my, exy - mx * my
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.reshape(B, C, -1).mean(2).mean(1)
