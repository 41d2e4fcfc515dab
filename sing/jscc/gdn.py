# SPDX-License-Identifier: GPL-3.0-or-later
"""Generalised divisive normalisation (Ballé, Laparra, Simoncelli, ICLR 2016, Eq. 6).

    GDN:   y_i = x_i / sqrt(β_i + Σ_j γ_ij x_j²)
    IGDN:  y_i = x_i · sqrt(β_i + Σ_j γ_ij x_j²)      (the approximate inverse used in decoders)

β and γ are kept non-negative by a squared reparametrisation with a small pedestal, as in the
reference implementation (tensorflow_compression).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class GDN(nn.Module):
    def __init__(self, channels: int, inverse: bool = False, beta_min: float = 1e-6,
                 gamma_init: float = 0.1, reparam_offset: float = 2 ** -18):
        super().__init__()
        self.inverse = inverse
        self.pedestal = reparam_offset ** 2
        self.beta_bound = (beta_min + self.pedestal) ** 0.5
        self.gamma_bound = reparam_offset
        self.beta = nn.Parameter(torch.sqrt(torch.ones(channels) + self.pedestal))
        self.gamma = nn.Parameter(torch.sqrt(gamma_init * torch.eye(channels) + self.pedestal))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        C = x.shape[1]
        beta = torch.clamp(self.beta, min=self.beta_bound) ** 2 - self.pedestal
        gamma = torch.clamp(self.gamma, min=self.gamma_bound) ** 2 - self.pedestal
        norm = F.conv2d(x * x, gamma.view(C, C, 1, 1), beta)
        norm = torch.sqrt(norm)
        return x * norm if self.inverse else x / norm
