# SPDX-License-Identifier: GPL-3.0-or-later
"""LPIPS v0.1 (Zhang et al., CVPR 2018, "The Unreasonable Effectiveness of Deep Features as a
Perceptual Metric"), AlexNet and VGG16 variants, in plain torch (no `lpips`, no torchvision).

    d(x0, x1) = sum_l mean_{h,w} || w_l ⊙ (ŷ0_l[h,w] − ŷ1_l[h,w]) ||²      (paper eq. 1)

with ŷ_l the channel-unit-normalised activations of tap l (AlexNet relu1..relu5; VGG16
relu1_2, relu2_2, relu3_3, relu4_3, relu5_3) and w_l the learnt 1×1 linear heads. Inputs are
scaled to [-1, 1] and then by the ScalingLayer constants of the reference implementation.
Weights: the real ImageNet backbone + v0.1 heads, converted by `sing.metrics.lpips_weights`.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointError, InputError
from .lpips_weights import INSTALL_HINT, NETS, default_cache_dir, weights_path
from .psnr_ssim import check_pair

# ScalingLayer of richzhang/PerceptualSimilarity (lpips/lpips.py)
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)


class Backbone(nn.Module):
    """torchvision `alexnet().features` up to relu5 or `vgg16().features` up to relu5_3, returning the
    LPIPS taps: AlexNet relu1..relu5, VGG16 relu1_2, 2_2, 3_3, 4_3, 5_3."""
    # per tap: (max-pool (kernel, stride) before it or None, the convs (out, kernel, stride, padding)
    # each followed by a ReLU)
    STAGES = {"alex": [(None, [(64, 11, 4, 2)]), ((3, 2), [(192, 5, 1, 2)]), ((3, 2), [(384, 3, 1, 1)]),
                       (None, [(256, 3, 1, 1)]), (None, [(256, 3, 1, 1)])],
              "vgg": [(None if i == 0 else (2, 2), [(c, 3, 1, 1)] * n)
                      for i, (c, n) in enumerate([(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)])]}
    # smallest side: AlexNet conv1 (k11 s4 p2) + two 3/2 pools; VGG16 four 2×2 pools before relu5_3
    MIN_SIZE = {"alex": 31, "vgg": 16}

    def __init__(self, net: str):
        super().__init__()
        self.stages, self.min_size = self.STAGES[net], self.MIN_SIZE[net]
        self.channels = tuple(convs[-1][0] for _, convs in self.stages)
        specs = [c for _, convs in self.stages for c in convs]
        c_in = [3] + [c[0] for c in specs[:-1]]
        self.convs = nn.ModuleList(nn.Conv2d(i, o, k, stride=s, padding=p) for i, (o, k, s, p) in zip(c_in, specs))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        taps, convs = [], iter(self.convs)
        for pool, specs in self.stages:
            if pool:
                x = F.max_pool2d(x, kernel_size=pool[0], stride=pool[1])
            for _ in specs:
                x = F.relu(next(convs)(x))
            taps.append(x)
        return taps


def _unit_normalize(f: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """lpips.normalize_tensor: divide by the L2 norm over channels (+eps)."""
    return f / (torch.sqrt(torch.sum(f * f, dim=1, keepdim=True)) + eps)


class LPIPS(nn.Module):
    """LPIPS v0.1 distance. ``forward(a, b)``: (B, C, H, W) in [0, 1], C ∈ {1, 3} → (B,).

    Parameters are frozen; gradients still flow to the inputs (usable as a loss).
    Raises ``CheckpointError`` when the converted weights are not installed.
    """

    def __init__(self, net: str = "alex", device: str | torch.device = "cpu",
                 cache_dir: str | os.PathLike | None = None):
        super().__init__()
        if net not in Backbone.STAGES:
            raise InputError(f"unknown LPIPS net {net!r}: use one of {list(NETS)}")
        self.net_name = net
        self.net = Backbone(net)
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in self.net.channels)
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)
        self.weights_file = weights_path(net, cache_dir)
        try:
            self.load_state_dict(_load_state(self.weights_file, net))
        except RuntimeError as e:  # wrong keys or shapes
            raise CheckpointError(f"{self.weights_file} does not hold LPIPS-{net} weights ({e}); "
                                  f"delete it and {INSTALL_HINT}") from e
        self.requires_grad_(False)
        self.eval()
        self.to(device)

    @property
    def min_size(self) -> int:
        """Smallest height/width the backbone accepts."""
        return self.net.min_size

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        check_pair(a, b, "LPIPS")
        if a.shape[1] not in (1, 3):
            raise InputError(f"LPIPS takes 1- or 3-channel images, got C={a.shape[1]}")
        h, w = a.shape[-2:]
        if min(h, w) < self.min_size:
            raise InputError(f"LPIPS-{self.net_name} needs images of at least {self.min_size}×"
                             f"{self.min_size} pixels, got {h}×{w}; upsample both images first "
                             f"(e.g. F.interpolate(x, scale_factor=2, mode='bilinear')) and say so "
                             f"in the results table")
        dev, dt = self.shift.device, self.shift.dtype
        x = torch.cat([a, b], 0).to(device=dev, dtype=dt)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = ((2 * x - 1) - self.shift) / self.scale
        n = a.shape[0]
        d = torch.zeros(n, device=dev, dtype=dt)
        for f, lin in zip(self.net(x), self.lins):
            f = _unit_normalize(f)
            diff = (f[:n] - f[n:]) ** 2
            d = d + lin(diff).mean(dim=(1, 2, 3))
        return d


def _load_state(path: Path, net: str) -> dict[str, torch.Tensor]:
    if not path.exists():
        raise CheckpointError(f"LPIPS-{net} weights not found at {path}: {INSTALL_HINT} "
                              f"(add --cache-dir DIR if you keep them elsewhere; $SING_CACHE sets "
                              f"the default)")
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{path} is unreadable ({e}): delete it and {INSTALL_HINT}") from e


@functools.lru_cache(maxsize=8)
def _cached(net: str, device: str, cache_dir: str | None) -> LPIPS:
    return LPIPS(net, device=device, cache_dir=cache_dir)


def load_lpips(net: str = "alex", device: str | torch.device = "cpu",
               cache_dir: str | os.PathLike | None = None) -> LPIPS:
    """A shared, frozen LPIPS model per (net, device, cache dir): loaded once per process."""
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    base = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return _cached(net, str(dev), str(base.resolve()))
