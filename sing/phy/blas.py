# SPDX-License-Identifier: GPL-3.0-or-later
"""Matrix products that stay on the calling thread.

OpenBLAS (Debian's numpy) splits a product over its worker threads once it is large enough, and
those workers then spin for a while after each call: in the receiver that spinning cost as much
CPU as the receiver itself and slowed it down (measured: 8.2 → 9.7 MS/s with one BLAS thread).
Two thresholds matter: a GEMM runs on the calling thread up to m·n·k = 2^18 multiply-adds, so the
rows go in blocks that stay under it; a single row goes to GEMV, which already spreads
a 1×104 by 104×104 product over the workers, so one row is computed without BLAS (einsum).
"""
from __future__ import annotations

import numpy as np

MAX_MACS = 1 << 18


def matmul_rows(a: np.ndarray, b: np.ndarray, max_macs: int = MAX_MACS) -> np.ndarray:
    """a (M, K) @ b (K, N), computed in row blocks of at most max_macs / (K·N) rows (> 1)."""
    if a.shape[0] == 1:
        return np.einsum("ik,kj->ij", a, b)
    rows = max(2, max_macs // max(1, a.shape[1] * b.shape[1]))
    if a.shape[0] <= rows:
        return a @ b
    out = np.empty((a.shape[0], b.shape[1]), np.result_type(a, b))
    for s in range(0, a.shape[0], rows):
        e = min(s + rows, a.shape[0])
        if e - s == 1:
            s -= 1                                     # never leave a single row for the end
        np.matmul(a[s:e], b, out=out[s:e])
    return out
