# SPDX-License-Identifier: GPL-3.0-or-later
"""Cancelling a narrowband (CW) interferer on the subcarriers it hits, decision-free.

After the carrier offset is removed, a CW at f_cw is a tone of ω = 2π(f_cw - f) rad/sample; the FFT
window of OFDM symbol n starts at sample s_n, so on subcarrier k it adds
    I_{n,k} = c_k e^{jω s_n}
with c_k its leakage into bin k (fixed: same window shape every symbol). Observations on the hit
bins K (flagged by their per-bin noise, snr.flag_interference):
    header symbols (known data): R_{n,k} = Y_{n,k} - Ĥ_k X_{n,k} e^{jθ_n} = I_{n,k} + noise, weight 1/σ_k²
    payload symbols:             Y_{n,k} = H_k z + I_{n,k} + noise (z unknown, zero-mean),
                                 weight 1/(σ_k² + |Ĥ_k|²)
ω maximises the weighted periodogram Σ_k |Σ_n w_{n,k} o_{n,k} e^{-jω s_n}|² on a grid over the hit
bins' frequencies ± 1.5 bins (step a quarter of 2π over the span of s), refined by a parabola through
the peak; then c_k = Σ_n w o e^{-jω s_n} / Σ_n w (weighted least squares). The estimate of c_k errs
by about (σ² + |H|²)/N per bin, N the number of symbols: small against a CW that is several
times the signal in its bin, which is when a bin gets flagged.
"""
from __future__ import annotations

import numpy as np


def estimate(obs: np.ndarray, w: np.ndarray, s: np.ndarray, k: np.ndarray, n_fft: int):
    """obs (n, K) observations, w (n, K) weights, s (n,) window starts (samples), k (K,) signed
    subcarrier indices of the hit bins. Returns (c (K,) complex, ω rad/sample)."""
    s = s.astype(float) - float(s[0])
    span = max(float(s[-1]), 1.0)
    lo, hi = (k.min() - 1.5) / n_fft, (k.max() + 1.5) / n_fft
    step = 0.25 / span
    f = np.arange(lo, hi + step, step)
    wo = w * obs
    E = np.exp(-2j * np.pi * np.outer(f, s))                         # (G, n)
    P = np.sum(np.abs(E @ wo) ** 2, axis=1)                           # (G,)
    g = int(np.argmax(P))
    if 0 < g < f.size - 1:                                            # parabola through the peak
        a, b, c = P[g - 1], P[g], P[g + 1]
        den = a - 2 * b + c
        d = 0.5 * (a - c) / den if den < 0 else 0.0
        fg = f[g] + float(np.clip(d, -0.5, 0.5)) * step
    else:
        fg = f[g]
    om = 2 * np.pi * fg
    e = np.exp(-1j * om * s)[:, None]
    c = np.sum(wo * e, axis=0) / np.maximum(np.sum(w, axis=0), 1e-30)
    return c, om


def tone(c: np.ndarray, om: float, s: np.ndarray, s0: float) -> np.ndarray:
    """The interferer c_k e^{jω (s_n - s0)} on windows starting at s (n,) → (n, K)."""
    return np.exp(1j * om * (s.astype(float) - s0))[:, None] * c[None, :]
