"""Frame detection, timing and carrier-frequency-offset estimation.

Schmidl & Cox, "Robust frequency and timing synchronization for OFDM", IEEE Trans. Commun. 1997:
with a training field of period L (here the STF, L = 16, repeated R times) and a window W = (R-1)·L,

    P(d) = Σ_{m=0}^{W-1} r*(d+m) · r(d+m+L)                         (S&C eq. 5)
    R(d) = ½ Σ_{m=0}^{W-1} (|r(d+m)|² + |r(d+m+L)|²)                  (energy, eq. 7, symmetrised)
    M(d) = |P(d)|² / R(d)²                                             (timing metric, eq. 8)
    f̂_coarse = ∠P(d̂) / (2π L)   [cycles/sample, |f| < 1/(2L)]          (eq. 9 with lag L)

At the true start M ≈ (s/(1+s))² for a per-sample SNR s; noise alone gives M ~ Exp(1/W).

Fine timing: cross-correlate the coarse-corrected signal with the known 64-sample LTF, each of its
two copies separately, and add the normalised magnitudes (non-coherently, robust to residual CFO):
ρ(τ) = ½ Σ_{i=0,1} |Σ_m y(τ+64i+m) l*(m)|² / (‖l‖² Σ_m |y(τ+64i+m)|²) ∈ [0, 1].
Fine CFO (Moose 1994): f̂_fine = ∠Σ_m y(τ+64+m) y*(τ+m) / (2π·64), |f| < 1/128, over the LTF
including the part of its CP that multipath cannot reach.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def sc_metric(x: np.ndarray, lag: int, win: int) -> tuple[np.ndarray, np.ndarray]:
    """M(d) and P(d) for d = 0 … len(x) - win - lag (vectorised with cumulative sums)."""
    x = x.astype(np.complex128, copy=False)
    prod = np.conj(x[:-lag]) * x[lag:]
    cp = np.concatenate(([0], np.cumsum(prod)))
    P = cp[win:] - cp[:-win]
    e = np.concatenate(([0.0], np.cumsum(x.real ** 2 + x.imag ** 2)))
    E = e[win:] - e[:-win]                           # Σ_{m<W} |x(d+m)|²
    R = 0.5 * (E[:-lag] + E[lag:])
    n = P.size
    R = R[:n]
    M = (P.real ** 2 + P.imag ** 2) / np.maximum(R * R, 1e-30)
    return M, P


def ltf_timing(y: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """ρ(τ) for τ = 0 … len(y) - 128 (see module doc). ref: the 64-sample LTF."""
    n = ref.size
    w = sliding_window_view(y, n)                      # (len-63, 64) view
    c = w @ np.conj(ref)
    e = np.einsum("ij,ij->i", w.real, w.real) + np.einsum("ij,ij->i", w.imag, w.imag)
    r = (c.real ** 2 + c.imag ** 2) / np.maximum(e * float(np.vdot(ref, ref).real), 1e-30)
    return 0.5 * (r[:-n] + r[n:])


def fine_cfo(y: np.ndarray, t1: int, n: int = 64, pre: int = 24) -> float:
    """Moose estimate over the two LTF copies starting at t1 (plus `pre` samples of their CP)."""
    a = y[t1 - pre:t1 + n]
    b = y[t1 - pre + n:t1 + 2 * n]
    return float(np.angle(np.vdot(a, b)) / (2 * np.pi * n))


def rotate(x: np.ndarray, f: float, n0: int = 0) -> np.ndarray:
    """x(n)·e^{-j2π f (n + n0)}: removes a CFO of f cycles/sample."""
    ph = np.exp(-2j * np.pi * f * (np.arange(x.size) + n0))
    return (x * ph).astype(np.complex64)
