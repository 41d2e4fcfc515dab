# SPDX-License-Identifier: GPL-3.0-or-later
"""SNR-adaptive attention feature module (ADJSCC: Xu, Ai, Chen, Zhang, Tao, IEEE TCSVT 2021, §III-B).

    c = [GAP(F), SNR]                      context: channel-wise mean of the features and the SNR
    s = σ(W₂ · ReLU(W₁ · c))               per-channel scaling factors in (0, 1)
    F' = F ⊙ s

One model then serves a range of SNRs: the decoder and encoder re-weight their channels with the
SNR of the current image.
"""
from __future__ import annotations

import torch
import torch.nn as nn


class AttentionFeature(nn.Module):
    def __init__(self, channels: int, hidden: int | None = None):
        super().__init__()
        hidden = hidden or max(16, channels // 2)
        self.mlp = nn.Sequential(nn.Linear(channels + 1, hidden), nn.ReLU(inplace=True),
                                 nn.Linear(hidden, channels), nn.Sigmoid())

    def forward(self, f: torch.Tensor, snr_db: torch.Tensor) -> torch.Tensor:
        ctx = torch.cat([f.mean(dim=(2, 3)), snr_db.view(-1, 1).to(f.dtype) / 10.0], dim=1)
        return f * self.mlp(ctx)[:, :, None, None]
