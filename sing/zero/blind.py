# SPDX-License-Identifier: GPL-3.0-or-later
"""Blind noise estimate from the observation alone (fallback when the DeepJSCC is unknown).

Donoho & Johnstone's robust estimator ("Ideal spatial adaptation by wavelet shrinkage", 1994):
the finest diagonal Haar detail coefficients of an image are mostly noise, so

    σ̂ = median(|HH|) / 0.6745,   HH = (x[2i,2j] − x[2i,2j+1] − x[2i+1,2j] + x[2i+1,2j+1]) / 2

(orthonormal Haar, so HH of white noise σ has std σ; 0.6745 = Φ⁻¹(3/4) turns a median absolute
value into a Gaussian std). Per image, pooled over colour channels, on the [0, 1] scale.
DeepJSCC errors are not white (mostly low-pass blur plus coloured noise), so this under-estimates
the error of smooth reconstructions: prefer a calibration (`sing calibrate`) when the JSCC is known.
"""
from __future__ import annotations

import torch

from ..errors import InputError

MAD_TO_STD = 0.6745


def blind_sigma(y01: torch.Tensor) -> torch.Tensor:
    """σ̂ per image (B,) from images (B, C, H, W) on the [0, 1] scale (H, W ≥ 2)."""
    if not torch.is_tensor(y01) or y01.dim() != 4 or y01.shape[-1] < 2 or y01.shape[-2] < 2:
        raise InputError(f"blind_sigma takes images (B, C, H, W) with H, W ≥ 2, got "
                         f"{tuple(getattr(y01, 'shape', ()))}")
    b, c, h, w = y01.shape
    x = y01[..., : h // 2 * 2, : w // 2 * 2].float()
    hh = (x[..., 0::2, 0::2] - x[..., 0::2, 1::2] - x[..., 1::2, 0::2] + x[..., 1::2, 1::2]) / 2
    return hh.reshape(b, -1).abs().median(dim=1).values / MAD_TO_STD
