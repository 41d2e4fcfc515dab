# SPDX-License-Identifier: GPL-3.0-or-later
"""SDEdit on the decoder's output: the diffusion prior alone, started from x̂, with no data term
(docs/ALGORITHMS.md §6, "SDEdit").

SDEdit (Meng, He, Song, Song, Wu, Zhu, Ermon, "SDEdit: Guided Image Synthesis and Editing with
Stochastic Differential Equations", arXiv 2108.01073, Alg. 1 with a DDIM sampler): perturb the
guide image to an intermediate time t₀ and run the reverse process from there,

    x_{t₀} = √ᾱ_{t₀}·x̂ + √(1 − ᾱ_{t₀})·z,   z ~ N(0, I)          (SDEdit Eq. 4; x̂ on the diffusion scale)
    x_{t'} = DDIM step of the prior from x_t                       (sing/prior/ddim.py, DDIM Eq. 12)

until t = 0. It is SING-Zero's chain (same warm start, same steps, same noise draws for the same
generators) with the range-null-space correction left out: the difference between the two is
what the data term adds, and SDEdit is what the prior alone does to x̂ at these t. SDEdit's
realism–faithfulness trade-off is `start` (t₀ = start·T): small keeps x̂, large lets the prior
redraw the image.

Cost: one UNet pass per DDIM step with t ≤ start·T (`sing.methods.registry.chain_steps`).
"""
from __future__ import annotations

from typing import Sequence

import torch

from ..errors import InputError
from ..prior.ddim import sample
from ..prior.tiles import at_size


def sdedit_restore(prior, x_hat01: torch.Tensor, steps: int = 50, eta: float = 0.85, start: float = 0.1,
                   generators: Sequence[torch.Generator] | None = None, progress: bool = True) -> torch.Tensor:
    """SDEdit from the decoded images x_hat01 (B, C, H, W) in [0, 1]: the prior (at x̂'s H×W through
    sing.prior.tiles.at_size) runs the DDIM steps with t ≤ start·T from x̂ noised to that time.
    start must be < 1 (at 1 the chain would ignore x̂: an unconditional sample). Returns x01
    (B, C, H, W) float32 in [0, 1] on the prior's device."""
    if not torch.is_tensor(x_hat01) or x_hat01.dim() != 4:
        raise InputError(f"x_hat must be decoded images (B, C, H, W) in [0, 1], got "
                         f"{tuple(getattr(x_hat01, 'shape', ()))}")
    if not 0.0 < float(start) < 1.0:
        raise InputError(f"SDEdit starts from x̂ at start·T with 0 < start < 1, got start = {start} "
                         "(start = 1 would draw an unconditional sample that ignores x̂)")
    if not torch.isfinite(x_hat01).all():
        raise InputError("x_hat holds NaN or infinite values: nothing to start SDEdit from")
    p = at_size(prior, tuple(x_hat01.shape[2:]))
    x = sample(p, x_hat01.shape[0], steps=int(steps), eta=float(eta), generators=generators, correction=None,
               start=float(start), x_init=2.0 * x_hat01.float().clamp(0, 1) - 1.0, progress=progress,
               desc="SDEdit")
    return ((x + 1.0) / 2.0).clamp(0.0, 1.0)
