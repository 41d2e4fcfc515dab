# SPDX-License-Identifier: GPL-3.0-or-later
"""Orthonormal 2-D Haar transform (one level), its exact inverse, and the fixed map g of SING-INN.

One level on (B, C, H, W), H and W even, with a, b, c, d the four pixels of each 2×2 block
(a top-left, b top-right, c bottom-left, d bottom-right):

    LL = (a + b + c + d)/2   LH = (a − b + c − d)/2   HL = (a + b − c − d)/2   HH = (a − b − c + d)/2

output channels ordered by band: [LL (C), LH (C), HL (C), HH (C)] → (B, 4C, H/2, W/2). The matrix is
orthonormal (its own transpose is its inverse), so the log-determinant is 0 and white noise stays
white in the Haar domain (used by the sampler's noise budget, guidance.py). As in FrEIA's
`HaarDownsampling(order_by_wavelet=True, rebalance=1)` and i-RevNet's invertible down-sampling.

g (docs/ALGORITHMS.md §5) is the Haar low-pass at L levels: g(x) = LL^L(x) = 2^L · avgpool_{2^L}(x).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import InputError


def haar_down(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) → (B, 4C, H/2, W/2), bands [LL, LH, HL, HH]."""
    if x.shape[-1] % 2 or x.shape[-2] % 2:
        raise InputError(f"the Haar transform needs even height and width, got {tuple(x.shape[-2:])}")
    a, b = x[..., 0::2, 0::2], x[..., 0::2, 1::2]
    c, d = x[..., 1::2, 0::2], x[..., 1::2, 1::2]
    return 0.5 * torch.cat([a + b + c + d, a - b + c - d, a + b - c - d, a - b - c + d], dim=1)


def haar_up(y: torch.Tensor) -> torch.Tensor:
    """Exact inverse of haar_down: (B, 4C, h, w) → (B, C, 2h, 2w)."""
    if y.shape[1] % 4:
        raise InputError(f"haar_up needs 4·C channels, got {y.shape[1]}")
    ll, lh, hl, hh = y.chunk(4, dim=1)
    a = 0.5 * (ll + lh + hl + hh)
    b = 0.5 * (ll - lh + hl - hh)
    c = 0.5 * (ll + lh - hl - hh)
    d = 0.5 * (ll - lh - hl + hh)
    B, C, h, w = ll.shape                     # pixel shuffle puts [a, b, c, d] into each 2×2 block
    return F.pixel_shuffle(torch.stack([a, b, c, d], dim=2).reshape(B, 4 * C, h, w), 2)


def haar_lowpass(x: torch.Tensor, levels: int) -> torch.Tensor:
    """g(x) = LL band after `levels` Haar levels = 2^levels · avgpool(2^levels)."""
    return haar_multilevel(x, levels)[0]


def haar_multilevel(x: torch.Tensor, levels: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(LL^L, [details of level 1, …, L]) with details (B, 3C, h_l, w_l): an orthonormal basis."""
    det = []
    for _ in range(levels):
        C = x.shape[1]
        x, d = haar_down(x).split([C, 3 * C], dim=1)
        det.append(d)
    return x, det


def haar_multilevel_inv(ll: torch.Tensor, det: list[torch.Tensor]) -> torch.Tensor:
    x = ll
    for d in reversed(det):
        x = haar_up(torch.cat([x, d], dim=1))
    return x
