"""Noise and SNR estimate, from known or unused resources only (no decisions on the payload).

Noise variance σ² per bin (unitary FFT), pooled:
    LTF repetition:   Σ_k |Y1_k - Y2_k|² / 2                     dof 52
    pilot residuals:  Σ_{n,p} |u_{n,p} - ū_p|², u = Y_p e^{-jθ_n} P*   dof 4(n-1)
                      (per-pilot-bin mean over symbols removes the channel, no Ĥ bias)
    null bins:        Σ |Y_null|² over the guard bins of all OFDM symbols (optional: over the air
                      the radio's anti-alias filter can colour the band edges)
    σ̂² = Σ sums / Σ dof.
What the decoder sees after zero-forcing with Ĥ (ŷ = z + n/Ĥ - z e/Ĥ - jδθ z):
    σ_eff² = σ̂² · mean_{k∈data} (1 + lev_k/2) / |Ĥ_k|²  +  σ̂² / (2 W Σ_p |Ĥ_p|²)
    snr_db = -10 log10 σ_eff²        (post-equalisation SNR, what `snr_db` means downstream)
    snr_channel_db = 10 log10(mean_k |Ĥ_k|² / σ̂²)   (average per-subcarrier SNR before equalising)
"""
from __future__ import annotations

import numpy as np


def pilot_residuals(Yp: np.ndarray, theta: np.ndarray, P: np.ndarray):
    n = Yp.shape[0]
    if n < 2:
        return 0.0, 0
    u = Yp * np.exp(-1j * theta)[:, None] * P
    r = u - u.mean(axis=0, keepdims=True)
    return float(np.sum(r.real ** 2 + r.imag ** 2)), Yp.shape[1] * (n - 1)


def snr_estimate(noise_sum: float, noise_dof: float, Hd: np.ndarray, lev_d: np.ndarray,
                 Hp: np.ndarray, cpe_len: float):
    s2 = noise_sum / max(noise_dof, 1e-9)
    h2 = np.maximum(np.abs(Hd) ** 2, 1e-30)
    eff = s2 * float(np.mean((1 + 0.5 * lev_d) / h2))
    eff += s2 / (2 * max(cpe_len, 1.0) * max(float(np.sum(np.abs(Hp) ** 2)), 1e-30))
    snr_db = -10 * np.log10(max(eff, 1e-30))
    snr_ch = 10 * np.log10(max(float(np.mean(h2)) / max(s2, 1e-30), 1e-30))
    return float(snr_db), float(snr_ch), float(s2)
