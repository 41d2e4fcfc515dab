# SPDX-License-Identifier: GPL-3.0-or-later
"""`compute_metrics`: PSNR, SSIM and LPIPS for a batch in one call (docs/ALGORITHMS.md §7)."""
from __future__ import annotations

import torch

from .lpips import LPIPS, load_lpips
from .psnr_ssim import check_pair, psnr, ssim


@torch.no_grad()
def compute_metrics(a: torch.Tensor, b: torch.Tensor,
                    lpips_model: LPIPS | None = None) -> dict[str, torch.Tensor]:
    """Per-image metrics of a batch: ``{"psnr", "ssim", "lpips"}`` -> (B,) float tensors on CPU.

    ``a``, ``b``: (B, C, H, W) in [0, 1]. ``lpips_model`` defaults to the shared LPIPS-Alex v0.1
    on ``a``'s device (`load_lpips`); raises CheckpointError when its weights are not installed.
    """
    check_pair(a, b, "compute_metrics")
    model = lpips_model if lpips_model is not None else load_lpips("alex", device=a.device)
    return {
        "psnr": psnr(a, b).float().cpu(),
        "ssim": ssim(a, b).float().cpu(),
        "lpips": model(a, b).float().cpu(),
    }
