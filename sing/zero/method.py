# SPDX-License-Identifier: GPL-3.0-or-later
"""SING-Zero as a receiver method: pick the operator and σ_y for a DeepJSCC output x̂, then run
DDNM/DDNM+ (ddnm.restore). docs/ALGORITHMS.md §4 table:

| operator    | y      | σ_y (on [0, 1])                                                     |
|-------------|--------|---------------------------------------------------------------------|
| identity    | x̂      | calibrated σ_identity(SNR), else blind (blind.py)                   |
| avgpool-s   | A·x̂    | calibrated σ_pool[s](SNR), else blind/s (white-noise assumption)    |
| spectral    | x̂      | √N(f) per DCT coefficient from the calibration (required)           |

σ_y is multiplied by `sigma_scale` (a sensitive knob: tune it on the val split, never on test).
The SNR is per image (B,) — the receiver's estimate over the air, or the true value in simulation.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch

from ..errors import InputError
from .calibration import Calibration
from .ddnm import restore
from .operators import make_operator, parse_operator_name


def sing_zero(prior, calibration: Calibration | None, x_hat01: torch.Tensor, snr_db,
              operator: str = "spectral", sigma_scale: float = 1.0, steps: int = 50, eta: float = 0.85,
              generators: Sequence[torch.Generator] | None = None, travel: tuple[int, int] | None = None,
              progress: bool = True, tau: float = 1e-2, model_id: str | None = None,
              clamp: bool = True, return_info: bool = False, start: float = 1.0):
    """Restore DeepJSCC outputs x_hat01 (B, C, H, W) in [0, 1] with SING-Zero.

    calibration: a Calibration for the JSCC that produced x̂ (required for `spectral`); with
                 `model_id` (the JSCC's model_id) a calibration for another model is refused.
                 Fitted at another H×W, it is resampled over frequency (Calibration.for_shape).
    prior:       the diffusion prior, run at x̂'s H×W (sing.prior.tiles.at_size).
    snr_db:      float or (B,) per-image SNR at which x̂ was decoded (clamped to the calibrated
                 range with a warning).
    start:       1 = DDNM from pure noise; < 1 = warm start at start·T from x̂ itself (ddnm.py doc).
    Returns x01 (B, C, H, W), or (x01, info) with return_info=True (operator, σ source, SNRs used,
    mean σ_y per image).
    """
    if not torch.is_tensor(x_hat01) or x_hat01.dim() != 4:
        raise InputError(f"x_hat must be DeepJSCC outputs (B, C, H, W) in [0, 1], got "
                         f"{tuple(getattr(x_hat01, 'shape', ()))}")
    if not (sigma_scale >= 0):
        raise InputError(f"sigma_scale must be ≥ 0, got {sigma_scale}")
    parse_operator_name(operator)                       # an unknown name fails before any work
    b = x_hat01.shape[0]
    shape = tuple(x_hat01.shape[1:])
    x_hat01 = x_hat01.float()
    point = None
    if calibration is not None:
        if model_id is not None:
            calibration.check_model(model_id)
        calibration = calibration.for_shape(shape)      # itself at its size, else resampled (§4)
        point = calibration.at(snr_db, device="cpu", batch=b)
    op = make_operator(operator, shape, h=point.h if point is not None else None, tau=tau)   # spectral: needs h
    y = op.observation(x_hat01)
    sig, source = op.noise_std(point, x_hat01, calibration.describe() if calibration is not None else "")
    sig = sig * float(sigma_scale)
    x = restore(prior, op, y, sig, steps=steps, eta=eta, generators=generators, travel=travel,
                progress=progress, clamp=clamp, start=start, x_init01=x_hat01 if start < 1 else None)
    if not return_info:
        return x
    info: dict[str, Any] = {"operator": op.name, "sigma_source": source, "sigma_scale": float(sigma_scale),
                            "steps": int(steps), "eta": float(eta), "start": float(start), "travel": list(travel) if travel else None,
                            "sigma_y_mean": [float(v) for v in sig.reshape(b, -1).mean(1)]
                            if sig.dim() else [float(sig)] * b}
    if point is not None:
        info["snr_db_used"] = [float(v) for v in point.snr_db]
    return x, info
