"""Channel estimation from the long training field, smoothed in a delay basis.

LS per used bin (two LTF copies averaged):  H̃_k = (Y1_k + Y2_k) / (2 L_k),  error var σ²/2.
Smoothing: the channel (plus the FFT window back-off b) is a short impulse response with delays in
[-b, D-b), D = smooth_taps ≤ CP, so H_k = Σ_d h_d e^{-j2πkd/N}. The LS fit in that basis is the
projection Ĥ = B (BᴴB)⁻¹ Bᴴ H̃ (DFT-based estimation, van de Beek et al. 1995); its error variance on
bin k is σ²/2 · lev_k with lev_k = [B (BᴴB)⁻¹ Bᴴ]_kk (mean D/52 instead of 1).
Noise from the repetition: Y1 - Y2 has variance 2σ² per bin (the data-free part of the SNR estimate).
"""
from __future__ import annotations

import numpy as np

from .params import OfdmParams, tables


def estimate(p: OfdmParams, Y1: np.ndarray, Y2: np.ndarray, smooth: bool = True):
    """Y1, Y2: unitary FFTs (64,) of the two LTF copies. Returns (H (64,) complex with zeros off the
    used bins, lev (52,), noise_sum, noise_dof) where noise_sum/noise_dof estimates σ²."""
    t = tables(p)
    u = t["used"]
    Ht = (Y1[u] + Y2[u]) / (2 * t["ltf_vals"])
    if smooth:
        Hu, lev = t["proj"] @ Ht, t["lev"]
    else:
        Hu, lev = Ht, np.ones(u.size)
    H = np.zeros(p.fft_len, complex)
    H[u] = Hu
    d = Y1[u] - Y2[u]
    return H, lev, 0.5 * float(np.vdot(d, d).real), u.size
