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


_BLOCK = 1 << 12


def _moving_sum(v: np.ndarray, win: int) -> np.ndarray:
    """Σ_{m<win} v[d+m] for d = 0 … len(v) - win (float32/complex64 running sum)."""
    cs = np.cumsum(v)
    out = cs[win - 1:].copy()
    out[1:] -= cs[:-win]
    return out


def sc_metric(x: np.ndarray, lag: int, win: int) -> tuple[np.ndarray, np.ndarray]:
    """M(d) (float32) and P(d) (complex64) for d = 0 … len(x) - win - lag (running sums in single
    precision, restarted every 4096 outputs so that a loud stretch (a burst ×1000) spoils the
    rounding of at most one block)."""
    x = np.asarray(x, np.complex64)
    n_out = x.size - win - lag + 1
    if n_out <= 0:
        return np.zeros(0, np.float32), np.zeros(0, np.complex64)
    if n_out > _BLOCK:
        parts = [sc_metric(x[s:s + _BLOCK + win + lag - 1], lag, win) for s in range(0, n_out, _BLOCK)]
        return np.concatenate([q[0] for q in parts]), np.concatenate([q[1] for q in parts])
    P = _moving_sum(np.conj(x[:-lag]) * x[lag:], win)            # (S&C eq. 5)
    e = x.real * x.real + x.imag * x.imag
    E = _moving_sum(e, win)                                       # Σ_{m<W} |x(d+m)|²
    R = 0.5 * (E[:n_out] + E[lag:lag + n_out])
    # Window sums are differences of running sums: where a window is quiet next to a loud stretch
    # of the same block, rounding (2⁻²⁴ of the running sum) dominates them. There M is set to 0
    # (nothing can be detected that far below the block's level), and M ≤ 1 (Cauchy-Schwarz).
    floor = np.float32(1e-6) * np.float32(e.sum(dtype=np.float64))
    M = (P.real * P.real + P.imag * P.imag) / np.maximum(R * R, np.float32(1e-30))
    M = np.where(R > floor, np.minimum(M, np.float32(1)), np.float32(0))
    return M, P


def ltf_timing(seg: np.ndarray, ref: np.ndarray, f_c: np.ndarray, shifts=(0,)) -> np.ndarray:
    """seg (B, S) samples, ref (64,) LTF, f_c (B,) coarse CFO → ρ (B, H, S - 127) (module doc) for
    the CFO hypotheses f_c + s/nfft, s in `shifts` (multiples of nfft/16 for the integer search).
    The correlations Σ_m y(τ+m) l*(m) of all lags come from one FFT per candidate (zero-padded to
    nfft ≥ S, so the circular correlation does not wrap for the lags kept); removing a further CFO
    of s/nfft cycles/sample is a circular shift of that FFT by s bins, so each hypothesis costs one
    inverse FFT."""
    n = ref.size
    B, S = seg.shape
    nfft = 1 << int(np.ceil(np.log2(S)))
    y = seg * np.exp(-2j * np.pi * f_c[:, None] * np.arange(S)[None, :]).astype(np.complex64)
    R = np.conj(scipy.fft.fft(ref.astype(np.complex64), nfft))
    Yf = scipy.fft.fft(y, nfft, axis=1)
    prod = np.stack([np.roll(Yf, -int(s), axis=1) * R[None, :] for s in shifts], axis=1)
    c = scipy.fft.ifft(prod, axis=2)[:, :, :S - n + 1]
    a2 = seg.real * seg.real + seg.imag * seg.imag
    cs = np.concatenate([np.zeros((B, 1)), np.cumsum(a2, axis=1, dtype=np.float64)], axis=1)
    e = (cs[:, n:] - cs[:, :-n])[:, None, :]
    r = (c.real ** 2 + c.imag ** 2) / np.maximum(e * float(np.vdot(ref, ref).real), 1e-30)
    return 0.5 * (r[:, :, :-n] + r[:, :, n:])


def ltf_nfft(S: int) -> int:
    return 1 << int(np.ceil(np.log2(S)))


def fine_cfo(a: np.ndarray, b: np.ndarray, f_c: np.ndarray, n: int = 64) -> np.ndarray:
    """a, b (B, m): the samples and the same samples n later (LTF copies); returns f̂_fine (B,)."""
    v = np.sum(np.conj(a) * b, axis=1) * np.exp(-2j * np.pi * f_c * n)
    return np.angle(v) / (2 * np.pi * n)


def rotate(x: np.ndarray, f: float, n0: int = 0) -> np.ndarray:
    """x(n)·e^{-j2π f (n + n0)}: removes a CFO of f cycles/sample."""
    ph = np.exp(-2j * np.pi * f * (np.arange(x.size) + n0))
    return (x * ph).astype(np.complex64)


def lag_corr_at(x: np.ndarray, d: np.ndarray, lag: int, win: int) -> np.ndarray:
    """Σ_{m<win} x*(d+m) x(d+m+lag) at the positions d (C,) → (C,) complex."""
    i = d[:, None] + np.arange(win)[None, :]
    return np.sum(np.conj(x[i]) * x[i + lag], axis=1)


def cfo_hypotheses(lag: int, max_cfo: float) -> np.ndarray:
    """The integer ambiguities m of a lag-`lag` CFO estimate f_c (the offset is f_c + m/lag) to try:
    |m| ≤ M = ceil(max_cfo·lag - ½), so that every |f| ≤ max_cfo is within 1/(2·lag) of one."""
    m = int(np.ceil(max(max_cfo * lag - 0.5, 0.0)))
    return np.arange(-m, m + 1)


class DcBlocker:
    """Removes a constant offset (LO leakage, ADC offset) before anything else sees the samples.

    The offset is the mean of blocks of `block` samples, smoothed over blocks by a one-pole filter
    dc_j = dc_{j-1} + α (mean_j - dc_{j-1}) (α = 1/j for the first blocks: a running mean), and
    dc_j is subtracted from block j. The signal itself has no DC (the DC bin is empty), so it adds
    only the block mean's noise: variance α/(2-α)/block of the signal power (≈ -42 dB with 1024 and
    1/8), steps far below the noise. A notch of about α/block cycles/sample, ~1/500 of a subcarrier.
    Per-block means instead of a per-sample IIR: ~10× cheaper in numpy."""

    def __init__(self, block: int = 1024, alpha: float = 0.125):
        self.block, self.alpha = int(block), float(alpha)
        self.dc = 0j
        self.n = 0.0                   # blocks seen (a partial block counts its fraction)

    def _step(self, mean: complex, frac: float = 1.0) -> complex:
        self.n += frac
        a = min(1.0, frac * max(self.alpha, 1.0 / self.n))
        self.dc = self.dc + a * (mean - self.dc)
        return self.dc

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """x (complex64) → x minus its offset; blocks start at each call's first sample."""
        B = self.block
        nb, r = divmod(x.size, B)
        out = np.empty(x.size, np.complex64)
        if nb:
            means = x[:nb * B].reshape(nb, B).mean(axis=1, dtype=np.complex128)
            dc = np.array([self._step(m) for m in means.tolist()], np.complex64)
            np.subtract(x[:nb * B].reshape(nb, B), dc[:, None], out=out[:nb * B].reshape(nb, B))
        if r:
            self._step(complex(x[nb * B:].mean(dtype=np.complex128)), r / B)
            np.subtract(x[nb * B:], np.complex64(self.dc), out=out[nb * B:])
        return out
