"""Pilot common-phase-error (CPE) tracking, decision-free.

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
    """Yp (n, 4) received pilots, Hp (4,) channel at the pilots, P (n, 4) known pilot values.
    Returns θ (n,), per-symbol gain g (n,) ≈ 1 on real symbols, and the averaging length."""
    c = (Yp * np.conj(Hp[None, :] * P)).sum(axis=1)
    n = c.size
    w = 0.0
    if n >= 2:
        w = float(np.angle(np.vdot(c[:-1], c[1:])))
    ramp = np.exp(-1j * w * np.arange(n))
    cd = c * ramp
    h = max(0, min(window, n) // 2)
    cs = np.concatenate(([0], np.cumsum(cd)))
    lo = np.clip(np.arange(n) - h, 0, n)
    hi = np.clip(np.arange(n) + h + 1, 0, n)
    s = cs[hi] - cs[lo]
    theta = w * np.arange(n) + np.angle(s)
    norm = max(float(np.sum(np.abs(Hp) ** 2)), 1e-30)
    g = np.real(c * np.exp(-1j * theta)) / norm
    return theta, g, float(np.mean(hi - lo))
