# SPDX-License-Identifier: GPL-3.0-or-later
"""Orthonormal 2-D DCT-II as two small matmuls (the basis of the `spectral` operator).

The orthonormal DCT-II matrix of size N is

    D[k, n] = α_k · cos(π (2n + 1) k / (2N)),   α_0 = √(1/N),  α_k = √(2/N) (k ≥ 1),

so D Dᵀ = I, and for an image x (…, H, W) the 2-D transform is X = D_H · x · D_Wᵀ with inverse
x = D_Hᵀ · X · D_W. This equals `scipy.fft.dctn(x, type=2, norm="ortho", axes=(-2, -1))`. The DCT-II
is the transform of the *symmetric* (half-sample mirrored) extension of the image, so a diagonal
filter in this basis has no wrap-around at the image borders (unlike the FFT; docs/ALGORITHMS.md §4).

A matmul DCT costs 2·N multiply-adds per pixel (N = 64: ~128 flops/pixel), negligible next to a UNet.
Matrices are cached per (size, device, dtype).
"""
from __future__ import annotations

import math
from functools import lru_cache

import torch


@lru_cache(maxsize=64)
def _dct_matrix_cached(n: int, device: str, dtype: torch.dtype) -> torch.Tensor:
    k = torch.arange(n, dtype=torch.float64)[:, None]
    i = torch.arange(n, dtype=torch.float64)[None, :]
    d = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    d[0] /= math.sqrt(2.0)
    return d.to(device=device, dtype=dtype)


def dct_matrix(n: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The (n, n) orthonormal DCT-II matrix D (rows = basis vectors): X = D·x."""
    return _dct_matrix_cached(int(n), str(torch.device(device)), dtype)


def dct2(x: torch.Tensor) -> torch.Tensor:
    """Orthonormal 2-D DCT-II over the last two axes of x (…, H, W)."""
    dh = dct_matrix(x.shape[-2], x.device, x.dtype)
    dw = dct_matrix(x.shape[-1], x.device, x.dtype)
    return dh @ x @ dw.T


def idct2(v: torch.Tensor) -> torch.Tensor:
    """Inverse of `dct2` (the transpose: the basis is orthonormal)."""
    dh = dct_matrix(v.shape[-2], v.device, v.dtype)
    dw = dct_matrix(v.shape[-1], v.device, v.dtype)
    return dh.T @ v @ dw
