"""Pilot common-phase-error (CPE) tracking, decision-free, batched over frames.

Per OFDM symbol n the ML common phase from the pilots is the angle of
    c_n = Σ_p conj(Ĥ_p P_{n,p}) Y_{n,p}            (Speth et al. 1999; 802.11 pilot tracking)
and |c_n| / Σ_p |Ĥ_p|² ≈ 1 on a real symbol. Residual CFO makes θ_n linear in n, oscillator phase
noise makes it wander; both are tracked without decisions on the analog payload:
    ω̂ = ∠ Σ_n c_{n+1} c_n*                                (per-symbol phase slope, Kay 1989)
    s_n = moving average over `window` symbols of c_n e^{-jω̂n}
    θ̂_n = ω̂ n + ∠ s_n
"""
from __future__ import annotations

import numpy as np


def track(Yp: np.ndarray, Hp: np.ndarray, P: np.ndarray, window: int = 9):
    """Yp (B, n, 4) received pilots, Hp (B, 4) channel at the pilots, P (n, 4) known pilot values.
    Returns θ (B, n), per-symbol gain g (B, n) ≈ 1 on real symbols, and the averaging length."""
    c = np.sum(Yp * np.conj(Hp[:, None, :] * P[None, :, :]), axis=2)          # (B, n)
    B, n = c.shape
    w = np.zeros(B)
    if n >= 2:
        w = np.angle(np.sum(np.conj(c[:, :-1]) * c[:, 1:], axis=1))
    ar = np.arange(n)
    cd = c * np.exp(-1j * w[:, None] * ar[None, :])
    h = max(0, min(window, n) // 2)
    cs = np.concatenate([np.zeros((B, 1), cd.dtype), np.cumsum(cd, axis=1)], axis=1)
    lo = np.clip(ar - h, 0, n)
    hi = np.clip(ar + h + 1, 0, n)
    s = cs[:, hi] - cs[:, lo]
    theta = w[:, None] * ar[None, :] + np.angle(s)
    norm = np.maximum(np.sum(np.abs(Hp) ** 2, axis=1), 1e-30)
    g = np.real(c * np.exp(-1j * theta)) / norm[:, None]
    return theta, g, float(np.mean(hi - lo))
