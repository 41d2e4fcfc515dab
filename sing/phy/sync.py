"""Frame detection, timing and carrier-frequency-offset estimation (batched over candidates).

Schmidl & Cox, "Robust frequency and timing synchronization for OFDM", IEEE Trans. Commun. 1997:
with a training field of period L (here the STF, L = 16, repeated R times) and a window W = (R-1)·L,

    P(d) = Σ_{m=0}^{W-1} r*(d+m) · r(d+m+L)                         (S&C eq. 5)
    R(d) = ½ Σ_{m=0}^{W-1} (|r(d+m)|² + |r(d+m+L)|²)                  (energy, eq. 7, symmetrised)
    M(d) = |P(d)|² / R(d)²                                             (timing metric, eq. 8)
    f̂_coarse = ∠P(d̂) / (2π L)   [cycles/sample, |f| < 1/(2L)]          (eq. 9 with lag L)

At the true start M ≈ (s/(1+s))² for a per-sample SNR s; noise alone gives M ~ Exp(1/W).
The receiver computes M once per sample (running sums over each new chunk) and keeps it.

Fine timing: cross-correlate with the known 64-sample LTF, each of its two copies separately, and
add the normalised magnitudes (non-coherently, robust to residual CFO):
ρ(τ) = ½ Σ_{i=0,1} |Σ_m y(τ+64i+m) l*(m)|² / (‖l‖² Σ_m |y(τ+64i+m)|²) ∈ [0, 1].
The coarse CFO is removed from the short search segment first (its common phase drops out of |·|²).
Fine CFO (Moose 1994): f̂_fine = ∠(Σ_m y*(τ+m) y(τ+64+m) · e^{-j2π f̂_coarse 64}) / (2π·64),
|f̂_fine| < 1/128, over the LTF including the part of its CP that multipath cannot reach.
"""
from __future__ import annotations

import numpy as np
import scipy.fft


_BLOCK = 1 << 16


def _moving_sum(v: np.ndarray, win: int) -> np.ndarray:
    """Σ_{m<win} v[d+m] for d = 0 … len(v) - win (float32/complex64 running sum)."""
    cs = np.cumsum(v)
    out = cs[win - 1:].copy()
    out[1:] -= cs[:-win]
    return out


def sc_metric(x: np.ndarray, lag: int, win: int) -> tuple[np.ndarray, np.ndarray]:
    """M(d) (float32) and P(d) (complex64) for d = 0 … len(x) - win - lag (running sums in single
    precision, restarted every 65536 outputs so that rounding stays < 1e-4 of the window sums)."""
    x = np.asarray(x, np.complex64)
    n_out = x.size - win - lag + 1
    if n_out <= 0:
        return np.zeros(0, np.float32), np.zeros(0, np.complex64)
    if n_out > _BLOCK:
        parts = [sc_metric(x[s:s + _BLOCK + win + lag - 1], lag, win) for s in range(0, n_out, _BLOCK)]
        return np.concatenate([q[0] for q in parts]), np.concatenate([q[1] for q in parts])
    P = _moving_sum(np.conj(x[:-lag]) * x[lag:], win)            # (S&C eq. 5)
    E = _moving_sum(x.real * x.real + x.imag * x.imag, win)       # Σ_{m<W} |x(d+m)|²
    R = 0.5 * (E[:n_out] + E[lag:lag + n_out])
    M = (P.real * P.real + P.imag * P.imag) / np.maximum(R * R, np.float32(1e-30))
    return M, P


def ltf_timing(seg: np.ndarray, ref: np.ndarray, f_c: np.ndarray) -> np.ndarray:
    """seg (B, S) samples, ref (64,) LTF, f_c (B,) coarse CFO → ρ (B, S - 127) (module doc).
    The correlations Σ_m y(τ+m) l*(m) of all lags come from one FFT pair per candidate (zero-padded
    to ≥ S, so the circular correlation does not wrap for the lags kept)."""
    n = ref.size
    B, S = seg.shape
    nfft = 1 << int(np.ceil(np.log2(S)))
    y = seg * np.exp(-2j * np.pi * f_c[:, None] * np.arange(S)[None, :]).astype(np.complex64)
    R = np.conj(scipy.fft.fft(ref.astype(np.complex64), nfft))
    c = scipy.fft.ifft(scipy.fft.fft(y, nfft, axis=1) * R[None, :], axis=1)[:, :S - n + 1]
    a2 = seg.real * seg.real + seg.imag * seg.imag
    cs = np.concatenate([np.zeros((seg.shape[0], 1)), np.cumsum(a2, axis=1, dtype=np.float64)], axis=1)
    e = cs[:, n:] - cs[:, :-n]
    r = (c.real ** 2 + c.imag ** 2) / np.maximum(e * float(np.vdot(ref, ref).real), 1e-30)
    return 0.5 * (r[:, :-n] + r[:, n:])


def fine_cfo(a: np.ndarray, b: np.ndarray, f_c: np.ndarray, n: int = 64) -> np.ndarray:
    """a, b (B, m): the samples and the same samples n later (LTF copies); returns f̂_fine (B,)."""
    v = np.sum(np.conj(a) * b, axis=1) * np.exp(-2j * np.pi * f_c * n)
    return np.angle(v) / (2 * np.pi * n)


def rotate(x: np.ndarray, f: float, n0: int = 0) -> np.ndarray:
    """x(n)·e^{-j2π f (n + n0)}: removes a CFO of f cycles/sample."""
    ph = np.exp(-2j * np.pi * f * (np.arange(x.size) + n0))
    return (x * ph).astype(np.complex64)
