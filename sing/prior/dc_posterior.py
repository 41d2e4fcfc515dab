# SPDX-License-Identifier: GPL-3.0-or-later
"""Gaussian posterior of the image's channel means (its DC component) during DDIM sampling.

Why: with ε-prediction, the clean-image estimate x̂_0 = (x_t − √(1−ᾱ_t)·ε_θ) / √ᾱ_t divides the
network's error by √ᾱ_t (≈ 0.007 at t = 980 with the linear schedule). The per-channel mean of x_t
is almost pure noise there, and a small, CPU-trained UNet does not learn to cancel it to the
1e-3 precision needed: its x̂_0 means land far outside [−1, 1], clipping sends them to the corners
of the RGB cube, and the samples come out as flat, saturated colour fields (models/prior-natural-64,
sim/results/prior-samples). The mean is one number per channel out of H·W, so it gets almost no weight in the
training loss; but it has an exact, closed-form Bayes estimate, used here instead of the UNet's.

Model (per image; C channels, N = H·W pixels, diffusion scale [−1, 1]):

    m_0 = mean_{pixels}(x_0) ∈ R^C,   m_0 ~ N(μ, Σ)                (μ, Σ: train-split statistics)
    m_t = mean_{pixels}(x_t) = √ᾱ_t·m_0 + √(1−ᾱ_t)·n̄,   n̄ = mean(ε) ~ N(0, I/N)    (exact)

    E[m_0 | m_t] = μ + √ᾱ_t·Σ·(ᾱ_t·Σ + (1−ᾱ_t)/N·I)⁻¹·(m_t − √ᾱ_t·μ)                    (1)

(the linear-Gaussian posterior mean, e.g. Bishop, PRML Eq. 2.116 with A = √ᾱ_t·I, L⁻¹ = (1−ᾱ_t)/N·I).
The sampler keeps the UNet's x̂_0 minus its own channel means and adds (1):

    x̂_0 ← x̂_0 − mean_{pixels}(x̂_0) + E[m_0 | m_t]                                         (2)

The only approximation is that (1) ignores what the rest of x_t says about m_0. At small t the
noise term (1−ᾱ_t)/N vanishes, (1) becomes m_t/√ᾱ_t and (2) changes nothing the UNet would not
have done; at large t it pulls the mean to the data's, which is what the UNet should have learnt.
Nothing in the UNet changes; the statistics live in the prior's config.json under "dc_prior".

    python -m sing.prior.dc_posterior --prior models/prior-natural-64 --data natural
"""
from __future__ import annotations

import argparse
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..errors import CheckpointError, InputError
from .ddim import Correction


@dataclass
class DCPrior:
    """N(μ, Σ) of the per-image channel means on the diffusion scale [−1, 1] (Eq. 1)."""
    mean: list            # μ, length C
    cov: list             # Σ, C×C
    n_images: int = 0     # how many images the statistics come from
    data: str = ""        # the data set (train split) they come from

    @property
    def channels(self) -> int:
        return len(self.mean)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict, where: str = "dc_prior") -> "DCPrior":
        try:
            out = cls(mean=[float(v) for v in d["mean"]],
                      cov=[[float(v) for v in row] for row in d["cov"]],
                      n_images=int(d.get("n_images", 0)), data=str(d.get("data", "")))
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{where} is malformed ({e}): it needs 'mean' (C numbers) and "
                                  f"'cov' (C×C); rebuild it with python -m sing.prior.dc_posterior")
        c = out.channels
        if c < 1 or len(out.cov) != c or any(len(r) != c for r in out.cov):
            raise CheckpointError(f"{where}: 'cov' must be {c}×{c} for a {c}-channel 'mean'")
        if not all(math.isfinite(v) for v in out.mean + [x for r in out.cov for x in r]):
            raise CheckpointError(f"{where} holds non-finite numbers; rebuild it")
        return out

    @classmethod
    def estimate(cls, images01: torch.Tensor, data: str = "") -> "DCPrior":
        """Statistics of a batch of images (N, C, H, W) in [0, 1]."""
        if images01.dim() != 4 or images01.shape[0] < 2:
            raise InputError(f"need a batch (N ≥ 2, C, H, W) of images, got {tuple(images01.shape)}")
        m = (images01.double() * 2 - 1).mean(dim=(2, 3))             # (N, C)
        mu = m.mean(0)
        cov = ((m - mu).T @ (m - mu)) / (m.shape[0] - 1)
        return cls(mean=mu.tolist(), cov=cov.tolist(), n_images=int(m.shape[0]), data=data)

    def posterior_mean(self, x_t: torch.Tensor, alpha_bar: float) -> torch.Tensor:
        """E[m_0 | m_t] of Eq. 1 for every image of x_t (B, C, H, W) → (B, C)."""
        B, C, H, W = x_t.shape
        if C != self.channels:
            raise InputError(f"the DC prior is for {self.channels}-channel images, x_t has {C}")
        a = float(alpha_bar)
        mu = torch.tensor(self.mean, dtype=torch.float64)
        S = torch.tensor(self.cov, dtype=torch.float64)
        noise = (1.0 - a) / (H * W)
        K = math.sqrt(a) * S @ torch.linalg.inv(a * S + noise * torch.eye(C, dtype=torch.float64))
        m_t = x_t.double().mean(dim=(2, 3))
        m0 = mu + (m_t - math.sqrt(a) * mu) @ K.T
        return m0.to(x_t.dtype)

    def correct(self, x0: torch.Tensor, x_t: torch.Tensor, alpha_bar: float) -> torch.Tensor:
        """Eq. 2: x̂_0 with its channel means replaced by the posterior mean (1)."""
        m0 = self.posterior_mean(x_t, alpha_bar).to(x0.device, x0.dtype)
        return x0 - x0.mean(dim=(2, 3), keepdim=True) + m0[:, :, None, None]


def from_data(name: str, n: int | None = None, progress: bool = False) -> DCPrior:
    """DC statistics of the first n images of a data set's train split (default: 4096 up to 64 px,
    512 above, ≤ ~0.4 GB of floats)."""
    from ..data import info, load_split
    if n is None:
        n = 4096 if info(name).image_size <= 64 else 512
    x, _ = load_split(name, "train", n=n, progress=progress)
    return DCPrior.estimate(x, data=name)


def of_prior(prior) -> DCPrior | None:
    """The DC prior stored in a loaded prior's config (None for priors without one)."""
    d = (getattr(prior, "config", None) or {}).get("dc_prior")
    return DCPrior.from_dict(d, f"{getattr(prior, 'source', '') or 'prior'} config.json dc_prior") if d else None


class DCPosterior(Correction):
    """The sampler correction (sing/prior/ddim.py): Eq. 2 on x̂_0 before clipping; the step then uses
    ε re-derived from the corrected, clipped x̂_0, ε = (x_t − √ᾱ_t·x̂_0)/√(1−ᾱ_t) (diffusers'
    use_clipped_model_output): with the UNet's own ε the step would re-add the mean error removed."""

    name = "DDIM+DC"

    def __init__(self, dc: DCPrior, channels: int):
        if dc.channels != channels:
            raise InputError(f"the DC prior is for {dc.channels}-channel images, the prior makes "
                             f"{channels}-channel ones")
        self.dc = dc

    def denoised(self, x0, x_t, step):
        return self.dc.correct(x0, x_t, step.abar_t)

    def x0(self, x0, x_t, eps, step):
        return x0, (x_t - math.sqrt(step.abar_t) * x0) / math.sqrt(1.0 - step.abar_t)

    def update(self, x0, eps, z, step):
        return super().update(x0[0], x0[1], z, step)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sing.prior.dc_posterior",
                                description="store the train-split channel-mean statistics (the DC "
                                            "prior of the sampler) in a prior's config.json")
    p.add_argument("--prior", required=True, help="one of our prior directories (config.json)")
    p.add_argument("--data", required=True, help="the data set the prior was trained on")
    p.add_argument("--n", type=int, default=None, help="train images to use (default: 4096 up to 64 px, 512 above)")
    args = p.parse_args(argv)
    from ..checkpoint import CONFIG, load_config, write_json
    cfg = load_config(args.prior)
    f = Path(args.prior) / CONFIG
    if cfg.get("kind") != "sing.prior":
        raise CheckpointError(f"{f} is not a sing.prior config; for a diffusers model pass "
                              f"--dc-data to sing sample instead")
    dc = from_data(args.data, args.n, progress=True)
    if dc.channels != int(cfg.get("channels", dc.channels)):
        raise InputError(f"--data {args.data} has {dc.channels} channels, the prior "
                         f"{cfg.get('channels')}")
    cfg["dc_prior"] = dc.to_dict()
    write_json(f, cfg)
    print(f"wrote dc_prior ({dc.n_images} {args.data} train images) into {f}: μ = "
          f"{[round(v, 4) for v in dc.mean]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
