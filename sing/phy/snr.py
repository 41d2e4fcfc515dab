# SPDX-License-Identifier: GPL-3.0-or-later
"""Noise per subcarrier and the post-equalisation SNR of the payload, from known resources only (no
decisions on the analog payload). Batched over frames (leading axis B).

Per used bin k, the N_t training observations u_{i,k} = Y_{i,k} e^{-jθ_i} X*_{i,k} (two LTF copies,
then the CRC-checked header symbols re-encoded, pilots included, θ_i their common phase) are
H_k + noise; their sample variance
    σ̂_k² = ( Σ_i |u_{i,k}|² - |Σ_i u_{i,k}|² / N_t ) / (N_t - 1)          (N_t - 1 complex dof)
sees whatever sits on subcarrier k — thermal noise, a CW interferer, a DC leak, the radio's filter
roll-off — where a pooled estimate (null bins, distant pilots) would miss it.
What the decoder sees after zero-forcing with Ĥ and common-phase tracking (ŷ = z + (n - e z)/Ĥ - jδθ z):
    v_k = (σ̂_k² + ε_k) / |Ĥ_k|²  +  σ̄_p² / (2 W Σ_p |Ĥ_p|²)
with ε_k the variance of the channel estimate on bin k (chanest.smooth_error) and the last term the
error of the W-symbol common-phase average (cpe.py). Interleaving spreads each subcarrier's v_k over
scattered symbols, so symbol j of the frame has the variance of the bin it travelled on.
Interference: a bin whose noise is far above the frame's typical noise (σ̂_k² > γ · median_k σ̂_k²:
interference, not fading) is shrunk to its linear MMSE estimate ŷ = ŷ_ZF / (1 + v_k), whose error
variance is v_k / (1 + v_k) < min(v_k, 1): zero-forcing would pass the interference on (v_k ≫ 1
for a strong CW), erasing (ŷ = 0) would err by E|z|² = 1 also where the bin still carries some
signal (a CW between two bins puts v ≈ 2 on each).
    snr_db = -10 log10 mean_j v_j      (over the k payload symbols: what `snr_db` means downstream)
    snr_channel_db = 10 log10(mean_k |Ĥ_k|² / mean_k σ̂_k²)   (per-subcarrier SNR before equalising)
"""
from __future__ import annotations

import numpy as np


def bin_noise(u_sum: np.ndarray, u_sq: np.ndarray, n_t: int) -> np.ndarray:
    """Σ_i u (B, K) complex, Σ_i |u|² (B, K), N_t ≥ 2 → σ̂_k² (B, K) (module doc)."""
    s = u_sum.real.astype(np.float64) ** 2 + u_sum.imag.astype(np.float64) ** 2
    return np.maximum(u_sq - s / n_t, 0.0) / max(n_t - 1, 1)


def flag_interference(noise: np.ndarray, gamma: float) -> np.ndarray:
    """noise (B, K) → bool (B, K): bins whose σ̂² exceeds γ × the frame's median bin."""
    return noise > gamma * np.median(noise, axis=1, keepdims=True)


def bin_variances(noise_d: np.ndarray, err_d: np.ndarray, Hd: np.ndarray, noise_p: np.ndarray,
                  Hp: np.ndarray, cpe_len: float) -> np.ndarray:
    """Post-equalisation error variance per data bin (B, 48) (module doc)."""
    h2 = np.maximum(np.abs(Hd) ** 2, 1e-30)
    cpe = np.mean(noise_p, axis=1) / (2 * max(cpe_len, 1.0) *
                                      np.maximum(np.sum(np.abs(Hp) ** 2, axis=1), 1e-30))
    return (noise_d + err_d) / h2 + cpe[:, None]


def channel_snr_db(H_used: np.ndarray, noise_used: np.ndarray) -> np.ndarray:
    return 10 * np.log10(np.maximum(np.mean(np.abs(H_used) ** 2, axis=1), 1e-30) /
                         np.maximum(np.mean(noise_used, axis=1), 1e-30))
