# SPDX-License-Identifier: GPL-3.0-or-later
"""Frame detection, timing and carrier-frequency-offset estimation (batched over candidates).

Schmidl & Cox, "Robust frequency and timing synchronization for OFDM", IEEE Trans. Commun. 1997:
with a training field of period L (here the STF, L = 16, repeated R times) and a window W = (R-1)·L,

    P(d) = Σ_{m=0}^{W-1} r*(d+m) · r(d+m+L)                         (S&C eq. 5)
    R(d) = ½ Σ_{m=0}^{W-1} (|r(d+m)|² + |r(d+m+L)|²)                  (energy, eq. 7, symmetrised)
    M(d) = |P(d)|² / R(d)²                                             (timing metric, eq. 8)
    f̂_coarse = ∠P(d̂) / (2π L)   [cycles/sample, |f| < 1/(2L)]          (eq. 9 with lag L)

At the true start M ≈ (s/(1+s))² for a per-sample SNR s; noise alone gives M ~ Exp(1/W).
The receiver computes M once per sample (running sums over each new chunk, double precision) and
keeps it.

Fine timing: cross-correlate with the known 64-sample LTF, each of its two copies separately, and
add the normalised magnitudes (non-coherently, robust to residual CFO):
ρ(τ) = ½ Σ_{i=0,1} |Σ_m y(τ+64i+m) l*(m)|² / (‖l‖² Σ_m |y(τ+64i+m)|²) ∈ [0, 1].
The coarse CFO is removed from the short search segment first (its common phase drops out of |·|²).
Fine CFO (Moose 1994): f̂_fine = ∠(Σ_m y*(τ+m) y(τ+64+m) · e^{-j2π f̂_coarse 64}) / (2π·64),
|f̂_fine| < 1/128, over the LTF including the part of its CP that multipath cannot reach.

Integer CFO (Schmidl & Cox §IV use a second training symbol; here the LTF plays that part): the
lag-16 estimate is ambiguous by multiples of 1/16 cycle/sample, so ρ(τ) is computed for every
hypothesis f_c + m/16 with |f| ≤ max_cfo (`cfo_hypotheses`) and the best (τ, m) kept. A wrong m
leaves a residual offset of ≥ 4 subcarriers, which decorrelates the known LTF (ρ ≈ 1/52), so the
choice is clear wherever the frame is detectable at all.
CW / DC check: a periodic interferer correlates with itself at every lag, the STF (tones on every
4th bin, ±1 … ±6 × 4 with equal magnitudes) has Σ_k |S_k|² e^{j2πk·8/64} = 0 at lag 8:
`lag_corr_at(x, d, 8, ·)` large against P(d) marks a CW, not a preamble.
"""
from __future__ import annotations

import numpy as np
import scipy.fft


def _moving_sum(v: np.ndarray, win: int) -> np.ndarray:
    """Σ_{m<win} v[d+m] for d = 0 … len(v) - win (running sum in v's precision)."""
    cs = np.cumsum(v)
    out = cs[win - 1:].copy()
    out[1:] -= cs[:-win]
    return out


def sc_metric(x: np.ndarray, lag: int, win: int) -> tuple[np.ndarray, np.ndarray]:
    """M(d) (float32) and P(d) (complex64) for d = 0 … len(x) - win - lag.
    The window sums are differences of running sums, kept in double precision: in single
    precision, a quiet stretch next to a loud one (a burst ×1000 before a frame) loses its window
    sums to the rounding of the running sum (2⁻²⁴ of it) and the metric turns to noise there.
    Where even double precision cannot resolve a window (10⁻¹² of the chunk's energy), M = 0;
    M ≤ 1 (Cauchy-Schwarz)."""
    x = np.asarray(x, np.complex64)
    n_out = x.size - win - lag + 1
    if n_out <= 0:
        return np.zeros(0, np.float32), np.zeros(0, np.complex64)
    xd = x.astype(np.complex128)
    P = _moving_sum(np.conj(xd[:-lag]) * xd[lag:], win)          # (S&C eq. 5)
    e = xd.real * xd.real + xd.imag * xd.imag
    E = _moving_sum(e, win)                                       # Σ_{m<W} |x(d+m)|²
    R = 0.5 * (E[:n_out] + E[lag:lag + n_out])
    M = (P.real * P.real + P.imag * P.imag) / np.maximum(R * R, 1e-300)
    M = np.where(R > 1e-12 * e.sum(), np.minimum(M, 1.0), 0.0)
    return M.astype(np.float32), P.astype(np.complex64)


def ltf_timing(seg: np.ndarray, ref: np.ndarray, f_c: np.ndarray, shifts=(0,)) -> np.ndarray:
    """seg (B, S) samples, ref (64,) LTF, f_c (B,) coarse CFO → ρ (B, H, S - 127) (module doc) for
    the CFO hypotheses f_c + s/nfft, s in `shifts` (multiples of nfft/16 for the integer search).
    The correlations Σ_m y(τ+m) l*(m) of all lags come from one FFT per candidate (zero-padded to
    nfft ≥ S, so the circular correlation does not wrap for the lags kept); removing a further CFO
    of s/nfft cycles/sample is a circular shift of that FFT by s bins, so each hypothesis costs one
    inverse FFT."""
    n = ref.size
    B, S = seg.shape
    nfft = ltf_nfft(S)
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

    The offset is estimated from the means m_j of blocks of `block` samples, each weighted by the
    inverse of its power P_j (the variance of a block mean is ≈ P_j / B, so a loud burst or a
    strong frame hardly moves the estimate while quiet stretches pin it down), with exponential
    forgetting λ = 1 - α per block:
        S_j = λ S_{j-1} + 1/P_j,   T_j = λ T_{j-1} + m_j/P_j,   d̂_j = T_j / S_j,  var d̂_j ≈ 1/(B S_j)
    and subtracted only as far as it is significant (James-Stein shrinkage towards no offset):
        dc_j = d̂_j · max(0, 1 - c / (B S_j |d̂_j|²)),   c = 4.
    Why: after a frequency offset f the receiver turns the residual of dc_j into a tone on
    subcarrier -64 f (a data bin for |f| > 1/128); without the shrinkage the estimate's own noise
    (≈ -30 dB of the signal in the first blocks of a stream) put an error floor there. An offset
    of 0.05 (-26 dBc) is removed to 98 % in steady state (α = 1/64: S ≈ 64/P), a noise-only
    estimate mostly not at all. The notch is ~α/B cycles/sample wide, far below a subcarrier.
    Per-block means rather than a per-sample IIR filter: ~10× cheaper in numpy."""

    def __init__(self, block: int = 1024, alpha: float = 1 / 64, c: float = 4.0):
        self.block, self.lam, self.c = int(block), 1.0 - float(alpha), float(c)
        self.S = 0.0
        self.T = 0j
        self.dc = 0j

    def _step(self, mean: complex, power: float, frac: float = 1.0) -> complex:
        lam = self.lam ** frac
        w = frac / max(power, 1e-30)
        self.S = lam * self.S + w
        self.T = lam * self.T + w * mean
        d = self.T / self.S
        a2 = abs(d) ** 2
        shrink = max(0.0, 1.0 - self.c / (self.block * self.S * a2)) if a2 > 0 else 0.0
        self.dc = d * shrink
        return self.dc

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """x (complex64) → x minus its offset; blocks start at each call's first sample."""
        B = self.block
        nb, r = divmod(x.size, B)
        out = np.empty(x.size, np.complex64)
        if nb:
            xb = x[:nb * B].reshape(nb, B)
            means = xb.mean(axis=1, dtype=np.complex128)
            pw = np.mean(xb.real.astype(np.float64) ** 2 + xb.imag.astype(np.float64) ** 2, axis=1)
            dc = np.array([self._step(m, q) for m, q in zip(means.tolist(), pw.tolist())], np.complex64)
            np.subtract(xb, dc[:, None], out=out[:nb * B].reshape(nb, B))
        if r:
            t = x[nb * B:]
            q = float(np.mean(t.real.astype(np.float64) ** 2 + t.imag.astype(np.float64) ** 2))
            self._step(complex(t.mean(dtype=np.complex128)), q, r / B)
            np.subtract(t, np.complex64(self.dc), out=out[nb * B:])
        return out


class IqBalancer:
    """Blind receiver IQ-imbalance correction from the circularity of the received signal.

    An unbalanced quadrature mixer gives y = μ r + ν r* (gain ε and phase φ mismatch between I and
    Q: μ = cos φ + j ε sin φ …, |ν/μ|² the image-rejection ratio, −29 dB at 0.5 dB / 2°): every
    subcarrier k gets a copy of subcarrier −k, which moves against it under a carrier offset and
    so cannot be equalised. The wanted signal r (OFDM data, noise) is proper, E r² = 0, so
        c = E y² / E |y|² = 2 μν / (|μ|² + |ν|²),   w = ν / μ* = c / (1 + sqrt(1 - |c|²))
    and z = y − w y* = (μ − |ν|²/μ*) r has no image left (Anttila, Valkama, Renfors 2008,
    circularity-based I/Q compensation). E y² and E |y|² are sums over blocks of `block` samples
    with exponential forgetting λ = 1 − α per block (α = 1/256: a memory of ~2.6·10⁵ samples; an
    imbalance drifts with temperature, far slower), and w is applied only as far as it is
    significant (the same James-Stein shrinkage as DcBlocker: the estimate of c from N samples has
    variance ≈ 2/N, w is scaled by max(0, 1 − 4·2/(N |c|²))), so a balanced radio is left alone.
    Runs after DcBlocker (an offset is no image). Limits: a signal that is itself improper biases
    c. Ours is nearly proper: the pilot pairs' products cancel, the preamble's do not (c = 0.14
    over the preamble, 0.03 over a stream of 256-symbol frames at zero carrier offset, an image
    at −36 dB after correction); any carrier offset turns that part at 2f and it averages out.
    A strong CW at a nonzero frequency is proper too; a real-valued interferer (a tone pair
    symmetric about the carrier) is not, and would pass for a huge imbalance: an estimate beyond
    |w| = `w_max` (0.1, an image at −20 dB, ≈ 1.7 dB / 10°, worse than any working mixer) is
    not applied (w = 0), since correcting by it would put an image of the wanted signal there."""

    def __init__(self, block: int = 1024, alpha: float = 1 / 256, c: float = 4.0, on: bool = True,
                 w_max: float = 0.1):
        self.block, self.lam, self.c, self.on = int(block), 1.0 - float(alpha), float(c), bool(on)
        self.w_max = float(w_max)
        self.S2 = 0j                  # Σ y² (forgetting)
        self.P = 0.0                  # Σ |y|²
        self.N = 0.0                  # samples (forgetting)
        self.w = 0j

    def _update(self, x: np.ndarray) -> complex:
        B = self.block
        lam = self.lam ** (x.size / B)
        aa = bb = ab = 0.0
        v = x.view(np.float32)
        for s in range(0, v.size, 1 << 17):      # float32 dots (BLAS), summed in double per slice
            a, b = v[s:s + (1 << 17):2], v[s + 1:s + (1 << 17):2]
            aa += float(np.dot(a, a))
            bb += float(np.dot(b, b))
            ab += float(np.dot(a, b))
        self.S2 = lam * self.S2 + complex(aa - bb, 2 * ab)        # Σ y²
        self.P = lam * self.P + aa + bb                            # Σ |y|²
        self.N = lam * self.N + x.size
        c = self.S2 / self.P if self.P > 0 and self.N >= B else 0j
        a2 = abs(c) ** 2
        w = 0j                                 # nothing seen yet, c = 0, or |c| ≥ 1 (no imbalance)
        if 0 < a2 < 1:
            w = c / (1.0 + np.sqrt(1.0 - a2)) * max(0.0, 1.0 - self.c * 2.0 / (self.N * a2))
        self.w = w if abs(w) <= self.w_max else 0j
        return self.w

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """x (complex64) → x − w x*, w from everything seen so far including x."""
        if not self.on or x.size == 0:
            return x
        w = self._update(x)
        if w == 0:
            return x
        out = np.conj(x)
        out *= np.complex64(-w)
        out += x
        return out
