"""Noise and SNR estimate, from known or unused resources only (no decisions on the payload).
Batched over frames (leading axis B).

Noise variance σ² per bin (unitary FFT), pooled:
    LTF repetition:   Σ_k |Y1_k - Y2_k|² / 2                     dof 52
    header residuals: Σ_{n,k∈data} |Y_{n,k} e^{-jθ_n} - Ĥ_k X_{n,k}|²   dof Σ_k n_h (1 - lev_k/N_t)
                      (X: the CRC-checked header symbols; Ĥ contains each observation with weight
                      lev_k/N_t, hence the reduced dof)
    pilot residuals:  Σ_{n,p} |u_{n,p} - ū_p|², u = Y_p e^{-jθ_n} P*   dof 4(n-1)
                      (per-pilot-bin mean over symbols removes the channel, no Ĥ bias)
    null bins:        Σ |Y_null|² over the guard bins of all OFDM symbols (optional: over the air
                      the radio's anti-alias filter can colour the band edges)
    σ̂² = Σ sums / Σ dof.
What the decoder sees after zero-forcing with Ĥ (ŷ = z + n/Ĥ - z e/Ĥ - jδθ z), N_t training symbols:
    σ_eff² = σ̂² · mean_{k∈data} (1 + lev_k/N_t) / |Ĥ_k|²  +  σ̂² / (2 W Σ_p |Ĥ_p|²)
    snr_db = -10 log10 σ_eff²        (post-equalisation SNR, what `snr_db` means downstream)
    snr_channel_db = 10 log10(mean_k |Ĥ_k|² / σ̂²)   (average per-subcarrier SNR before equalising)
"""
from __future__ import annotations

import numpy as np


def pilot_residuals(Yp: np.ndarray, theta: np.ndarray, P: np.ndarray):
    """Yp (B, n, 4), θ (B, n), P (n, 4) → (sums (B,), dof)."""
    n = Yp.shape[1]
    if n < 2:
        return np.zeros(Yp.shape[0]), 0
    u = Yp * np.exp(-1j * theta)[:, :, None] * P[None]
    r = u - u.mean(axis=1, keepdims=True)
    return np.sum(r.real ** 2 + r.imag ** 2, axis=(1, 2)), Yp.shape[2] * (n - 1)


def snr_estimate(noise_sum, noise_dof, Hd: np.ndarray, lev_d: np.ndarray, n_train: float,
                 Hp: np.ndarray, cpe_len: float):
    """Arrays over B frames: noise_sum (B,), Hd (B, 48), Hp (B, 4); noise_dof scalar or (B,).
    Returns (snr_db, snr_channel_db, σ̂²), each (B,)."""
    s2 = noise_sum / np.maximum(noise_dof, 1e-9)
    h2 = np.maximum(np.abs(Hd) ** 2, 1e-30)
    eff = s2 * np.mean((1 + lev_d[None, :] / n_train) / h2, axis=1)
    eff = eff + s2 / (2 * max(cpe_len, 1.0) * np.maximum(np.sum(np.abs(Hp) ** 2, axis=1), 1e-30))
    snr_db = -10 * np.log10(np.maximum(eff, 1e-30))
    snr_ch = 10 * np.log10(np.maximum(np.mean(h2, axis=1) / np.maximum(s2, 1e-30), 1e-30))
    return snr_db, snr_ch, s2
