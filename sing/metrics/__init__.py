# SPDX-License-Identifier: GPL-3.0-or-later
"""Image quality metrics (docs/ALGORITHMS.md §7): PSNR, SSIM (Gaussian 11×11, σ 1.5) and LPIPS v0.1.

All take float images (B, C, H, W) in [0, 1] and return per-image tensors (B,).

    from sing.metrics import psnr, ssim, LPIPS, load_lpips, compute_metrics

Attributes are imported lazily so that `python -m sing.metrics.lpips_weights install` can return
before torch is imported when the weights are already there.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "psnr": "psnr_ssim", "ssim": "psnr_ssim",
    "LPIPS": "lpips", "load_lpips": "lpips",
    "compute_metrics": "compute",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
