# SPDX-License-Identifier: GPL-3.0-or-later
"""SING-INN (docs/ALGORITHMS.md §5): an SNR-conditioned invertible model f_θ(x; snr) = (c, d) of the
DeepJSCC degradation (c ≈ g(x̂), g the Haar low-pass) and INN-guided DDIM restoration.

- haar.py      orthonormal Haar transform, g = Haar low-pass
- model.py     INNConfig, InvertibleDegradation (Haar + conditional affine couplings), load/save
- guidance.py  `sing_inn`: range/null-space guided DDIM in the INN's (c, d) space (DDNM+ weighting)
- train.py     `sing train-inn` (pairs on the fly, resumable, σ_c calibration)
- bench.py     guidance overhead (guided step ÷ plain DDIM step), result JSON
"""
from .guidance import guided_x0, observation, sing_inn
from .haar import haar_down, haar_lowpass, haar_up
from .model import INNConfig, InvertibleDegradation, build_inn, load_inn, save_inn

__all__ = ["INNConfig", "InvertibleDegradation", "build_inn", "guided_x0", "haar_down",
           "haar_lowpass", "haar_up", "load_inn", "observation", "save_inn", "sing_inn"]
