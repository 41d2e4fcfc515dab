# SPDX-License-Identifier: GPL-3.0-or-later
"""`sing sample`: unconditional samples from a prior with the sampler core (sing/prior/ddim.py: DDIM
with DDNM's η, the same chain the restoration methods run without their correction).

With a DC prior (the default when the prior's config.json has one), x̂_0's channel means are
replaced by their Gaussian posterior mean given x_t before clipping (sing/prior/dc_posterior.py,
Eq. 1–2): without it, a small prior's samples drift to saturated flat colours.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch

from ..data import to_uint8
from ..errors import InputError
from .dc_posterior import DCPrior, from_data, of_prior
from .ddim import ddim_sample
from .model import DiffusionPrior

# Unconditional samples use η = 0.5: on prior-natural-64 (16 samples, sim/prior_samples.py) it gives
# the statistics the earlier sampler gave with the DDIM paper's η = 0.85 (DDNM's 0.85, the restoration
# default, injects more fresh noise: flatter samples).
SAMPLE_ETA = 0.5


def sample_images(prior: DiffusionPrior, n: int, steps: int = 50, eta: float = SAMPLE_ETA,
                  generator: torch.Generator | None = None, batch: int = 16,
                  progress: bool = True, dc: "DCPrior | str | None" = "auto") -> torch.Tensor:
    """n unconditional samples, float32 (n, C, H, W) in [0, 1] on the CPU, in batches drawn from one
    generator (default: seed 0). dc: "auto" = the DC prior stored with the prior (none: no
    correction), None = no correction, or a DCPrior."""
    if n < 1:
        raise InputError(f"n must be ≥ 1, got {n}")
    if isinstance(dc, str):
        if dc != "auto":
            raise InputError(f"dc must be 'auto', None or a DCPrior, got {dc!r}")
        dc = of_prior(prior)
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    return torch.cat([ddim_sample(prior, min(batch, n - i), steps, eta, g, progress, dc=dc).cpu()
                      for i in range(0, n, batch)])


def image_grid(x01: torch.Tensor, nrow: int | None = None, pad: int = 2, rgb: bool = True) -> np.ndarray:
    """(N, C, H, W) in [0, 1] → uint8 (H', W', 3) grid, row-major, with white padding (rgb=False:
    C channels kept)."""
    n, c, h, w = x01.shape
    nrow = nrow or int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / nrow))
    arr = to_uint8(x01.float())
    if rgb and c == 1:
        arr = arr.repeat(3, axis=-1)
    grid = np.full((rows * (h + pad) + pad, nrow * (w + pad) + pad, arr.shape[-1]), 255, np.uint8)
    for i in range(n):
        r, q = divmod(i, nrow)
        grid[pad + r * (h + pad): pad + r * (h + pad) + h, pad + q * (w + pad): pad + q * (w + pad) + w] = arr[i]
    return grid


def save_grid(x01: torch.Tensor, path: str | Path, nrow: int | None = None, scale: int = 1) -> Path:
    from PIL import Image
    img = Image.fromarray(image_grid(x01, nrow))
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--prior", required=True, help="prior directory (ours or a local diffusers model)")
    p.add_argument("--n", type=int, default=16, help="number of samples")
    p.add_argument("--steps", type=int, default=50, help="DDIM steps")
    p.add_argument("--eta", type=float, default=SAMPLE_ETA,
                   help="DDIM η: fraction of fresh noise in each step's noise (DDNM's; 0 = deterministic)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default=None, help="fp32 | fp16 | bf16 (default: fp16 on GPU, fp32 on CPU)")
    p.add_argument("--scale", type=int, default=0, help="upscale the grid (default: 4 below 64 px, 2 at 64)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    p.add_argument("--dc", choices=("auto", "off"), default="auto",
                   help="DC posterior of x̂_0 (sing/prior/dc_posterior.py): auto = use the statistics "
                        "stored with the prior, off = plain DDIM")
    p.add_argument("--dc-data", default=None,
                   help="estimate the DC statistics from this data set's train split (for priors "
                        "without stored ones, e.g. a diffusers model)")
    p.add_argument("--out", default="samples.png", help="output PNG grid")


def run(args: argparse.Namespace) -> int:
    from .model import load_prior
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    prior = load_prior(args.prior, device=args.device, dtype=args.dtype)
    dc = None
    if args.dc == "auto":
        dc = from_data(args.dc_data) if args.dc_data else of_prior(prior)
    x = sample_images(prior, args.n, args.steps, args.eta,
                      torch.Generator().manual_seed(args.seed), batch=args.batch, dc=dc)
    scale = args.scale or (4 if prior.image_size < 64 else 2 if prior.image_size < 128 else 1)
    path = save_grid(x, args.out, scale=scale)
    print(f"wrote {path} ({args.n} samples, {args.steps} DDIM steps, eta {args.eta}, "
          f"{prior.image_size}×{prior.image_size}×{prior.channels}, DC posterior "
          f"{'on (' + (dc.data or '?') + ')' if dc is not None else 'off'})")
    return 0
