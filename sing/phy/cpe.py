# SPDX-License-Identifier: GPL-3.0-or-later
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


def drift(Yp: np.ndarray, Hp: np.ndarray, P: np.ndarray, kp: np.ndarray, b_max: float) -> np.ndarray:
    """Timing drift (sampling-clock offset) from the pilots, decision-free, batched over frames.

    A window that is τ_n samples off on OFDM symbol n multiplies subcarrier k by e^{jβ_n k},
    β_n = -2π τ_n / N, on top of the common phase θ_n. With a clock offset ε, τ_n = τ_0 + ε·(N+CP)·n:
    β is linear in n. The products of the pilot pairs at ±k_j cancel θ_n (phase noise, residual CFO):
        z_{j,n} = c_{n,+k_j} conj(c_{n,-k_j}),   ∠z_{j,n} = 2 k_j β_n,   c_{n,p} = Y_{n,p} conj(Ĥ_p P_{n,p})
    β_n = a + b n with |b| ≤ b_max (the largest clock offset searched):
    1. b on a grid over [-b_max, b_max] maximising Σ_j |Σ_n z_{j,n} e^{-j2k_j b n}|² (the ML rate of
       a line in noise with free intercepts, non-coherent over the pairs; grid step small enough
       that half a step costs < 0.3 rad at the frame's end on the widest pair);
    2. a from the narrowest pair (unambiguous), then each wider one;
    3. (a, b) refined by least squares on the remaining phases, each pair weighted by (2k_j)²
       (equal phase noise), the refinement kept within one grid step;
    4. β = 0 where the residual phases wrap (low SNR) and the slope is not significant
       (< 5 standard errors of the fit).
    Yp (B, n, 4) pilots (bins ordered as kp), Hp (B, 4), P (n, 4), kp (4,) signed subcarrier indices
    (pairs ±k_j). Returns β (B, n) in radians per subcarrier."""
    c = Yp * np.conj(Hp[:, None, :] * P[None, :, :])
    order = np.argsort(kp)
    kk = np.asarray(kp)[order]
    c = c[:, :, order]
    h = kk.size // 2
    z = c[:, :, h:] * np.conj(c[:, :, :h][:, :, ::-1])                  # (B, n, pairs): +k_j vs -k_j
    two_k = (2.0 * kk[h:]).astype(float)                                 # (pairs,)
    B, n = z.shape[:2]
    if n < 2:
        return np.zeros((B, n))
    ar = np.arange(n, dtype=float)
    n_grid = int(np.clip(np.ceil(2 * b_max * two_k.max() * n / 0.6), 4, 256)) | 1
    grid = np.linspace(-b_max, b_max, n_grid)
    step = grid[1] - grid[0]
    E = np.exp(-1j * two_k[None, None, :] * grid[:, None, None] * ar[None, :, None])   # (G, n, pairs)
    score = np.sum(np.abs(np.einsum("bnj,gnj->bgj", z, E)) ** 2, axis=2)             # (B, G)
    b0 = grid[np.argmax(score, axis=1)]
    a0 = np.zeros(B)
    for j in np.argsort(two_k):
        r = z[:, :, j] * np.exp(-1j * two_k[j] * (a0[:, None] + b0[:, None] * ar[None, :]))
        a0 = a0 + np.angle(np.sum(r, axis=1)) / two_k[j]
    lin = a0[:, None, None] + b0[:, None, None] * ar[None, :, None]
    v = np.angle(z * np.exp(-1j * two_k[None, None, :] * lin)) / two_k   # (B, n, pairs) residual β
    w = two_k ** 2
    vbar = np.sum(v * w, axis=2) / w.sum()                               # (B, n)
    m_t = ar.mean()
    sxx = np.sum((ar - m_t) ** 2)
    b1 = np.clip(np.sum((ar - m_t) * vbar, axis=1) / sxx, -step, step)
    a1 = np.mean(vbar, axis=1) - b1 * m_t
    beta = (a0 + a1)[:, None] + (b0 + b1)[:, None] * ar[None, :]
    # 4. when to trust the line: the residual phases per unit weight have variance s² (≈ 2/SNR of
    #    a pilot while the noise is small, → π²/3 once the phases wrap). Where s² < 0.5 the fit is
    #    in its linear regime, unbiased, with error var b = s² / (Σw Σ(n-n̄)²) far below the
    #    drift it removes: kept. Where the phases wrap (low SNR, short frames) the grid maximum of
    #    step 1 is nearly uniform over ±b_max and correcting by it costs more than the drift:
    #    kept only if the slope exceeds 5 standard errors, else β = 0.
    r = v - (a1[:, None, None] + b1[:, None, None] * ar[None, :, None])
    s2 = np.sum(w * r ** 2, axis=(1, 2)) / max(n * w.size - 2, 1)     # rad², per unit weight
    var_b = s2 / (w.sum() * sxx)
    keep = (s2 < 0.5) | ((b0 + b1) ** 2 > 25 * var_b)
    return np.where(keep[:, None], beta, 0.0)
