# SPDX-License-Identifier: GPL-3.0-or-later
"""SING-Zero (docs/ALGORITHMS.md §4): a linear approximation y ≈ A·x + n of the DeepJSCC degradation
and range-null-space restoration with a diffusion prior (DDNM / DDNM+, arXiv 2212.00490).

- operators.py   identity, avgpool-s, spectral (DCT-domain gain) in SVD form
- dct.py         orthonormal 2-D DCT-II by matmuls
- calibration.py Calibration (kind sing.zero.calibration): h(f), N(f), σ_y per SNR, per JSCC model
- blind.py       blind σ_y from y alone (fallback)
- ddnm.py        DDNM/DDNM+ as a correction of the sampler core (sing/prior/ddim.py): `restore`
- method.py      `sing_zero`: operator + σ_y from a calibration at per-image SNRs, then `restore`
- calibrate.py   `sing calibrate`;  bench.py  `sing bench guidance`
"""
from .blind import blind_sigma
from .calibration import Calibration, CalibrationPoint, fit_calibration, fit_pairs, load_calibration
from .ddnm import ddim_sample, ddnm_restore, restore, travel_schedule
from .method import sing_zero
from .operators import AvgPool, Identity, LinearOperator, Spectral, make_operator, parse_operator_name

__all__ = ["AvgPool", "Calibration", "CalibrationPoint", "Identity", "LinearOperator", "Spectral",
           "blind_sigma", "ddim_sample", "ddnm_restore", "fit_calibration", "fit_pairs",
           "load_calibration", "make_operator", "parse_operator_name", "restore", "sing_zero",
           "travel_schedule"]
