# SPDX-License-Identifier: GPL-3.0-or-later
"""Channel estimation: LS from the long training field, refined with the decoded header, smoothed
in a delay basis.

LTF (two copies, known ±1 values L_k):  H̃_k = (Y1_k + Y2_k) / (2 L_k),  error variance σ²/2.
Header-aided refinement: once the header's CRC32 has passed, its symbols X_{n,k} are known exactly
(re-encoded from the decoded codewords; digital data, never the analog payload), so the n_h header
symbols are training symbols too. After removing each symbol's common phase θ_n (cpe.py):
    H̃_k = ( Σ_{i=1,2} Y_{i,k} L_k + Σ_n Y_{n,k} e^{-jθ_n} X*_{n,k} ) / (2 + n_h)
(all |X| = |L| = |P| = 1, pilots included with their known values), error variance σ²/(2 + n_h).
Smoothing: the channel (plus the FFT window's offset o = backoff + rx_taper) is a short impulse
response with delays in [o-3, o-3+D), D = smooth_taps ≤ CP, so H_k = Σ_d h_d e^{-j2πkd/N}. The LS
fit in that basis is the projection Ĥ = B (BᴴB)⁻¹ Bᴴ H̃ (DFT-based estimation, van de Beek et al.
1995). Bins hit by interference are left out of the fit (`smooth_weighted`: P_w = B (Bᴴ W B)⁻¹ Bᴴ W).
With per-bin noise σ_j² the estimate's error variance on bin k is ε_k = Σ_j |P_kj|² σ_j² / N_t
(`smooth_error`; σ²/N_t · [P]_kk for white noise, mean D/52 instead of 1), N_t = 2 + n_h.
All functions take a leading batch axis (frames).
"""
from __future__ import annotations

import numpy as np

from .blas import matmul_rows
from .params import OfdmParams, tables


def ltf_ls(p: OfdmParams, Y1: np.ndarray, Y2: np.ndarray) -> np.ndarray:
    """Y1, Y2 (B, 64) unitary FFTs of the LTF copies → LS sum over the used bins (B, 52), not yet
    divided by the count: (Y1 + Y2) L."""
    t = tables(p)
    u = t["used"]
    return (Y1[:, u] + Y2[:, u]) * t["ltf_vals"][None, :].astype(np.float32)


def smooth(p: OfdmParams, Hu: np.ndarray, on: bool = True) -> np.ndarray:
    """(B, 52) used-bin estimate → (B, 64) full grid, projected on the delay basis when `on`."""
    t = tables(p)
    H = np.zeros((Hu.shape[0], p.fft_len), np.complex64)
    if on:      # real float32 product on interleaved (re, im): cgemm is slow/erratic on this BLAS
        Hu = matmul_rows(np.ascontiguousarray(Hu, np.complex64).view(np.float32),
                         t["projR"]).view(np.complex64)
    H[:, t["used"]] = Hu
    return H


def smooth_weighted(p: OfdmParams, Hu: np.ndarray, keep: np.ndarray):
    """Like `smooth`, but the delay-basis fit ignores the bins where keep (B, 52) is False (a CW or
    another interferer there would otherwise leak into every bin through the projection): per frame
    P_w = B (Bᴴ W B)⁻¹ Bᴴ W, W = diag(keep); dropped bins are interpolated from the others.
    Returns (H (B, 64), P_w (B, 52, 52))."""
    t = tables(p)
    Bm = t["basis"]                                            # (52, D)
    W = keep.astype(float)
    G = np.einsum("kd,bk,ke->bde", np.conj(Bm), W, Bm)        # Bᴴ W B  (B, D, D)
    Pw = np.einsum("kd,bde,ej,bj->bkj", Bm, np.linalg.pinv(G), np.conj(Bm.T), W)
    H = np.zeros((Hu.shape[0], p.fft_len), np.complex64)
    H[:, t["used"]] = np.einsum("bkj,bj->bk", Pw, Hu)
    return H, Pw


def smooth_error(p: OfdmParams, noise_used: np.ndarray, n_t: int, on: bool = True, Pw=None):
    """Variance of the channel estimate per used bin (B, 52): ε_k = Σ_j |P_kj|² σ_j² / N_t for the
    projection P (the cached one, a per-frame weighted one, or the identity when not smoothing)."""
    if Pw is not None:
        return np.einsum("bkj,bj->bk", np.abs(Pw) ** 2, noise_used) / n_t
    if not on:
        return noise_used / n_t
    return noise_used @ tables(p)["proj_abs2"].T / n_t
