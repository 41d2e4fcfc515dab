# SPDX-License-Identifier: GPL-3.0-or-later
"""Diffusion prior (docs/ALGORITHMS.md §3): ε_θ(x_t, t), the ᾱ schedule, DDIM timesteps, loaders,
training (`sing train-prior`), the DDIM sampler core every diffusion method runs (ddim.py), sampling
(`sing sample`), benchmarks and the denoising table."""
from .model import (DiffusionPrior, PriorConfig, alphas_cumprod_from, build_prior, load_prior,
                    save_prior, tiny_prior, unet_preset)

__all__ = ["DiffusionPrior", "PriorConfig", "alphas_cumprod_from", "build_prior", "load_prior",
           "save_prior", "tiny_prior", "unet_preset"]
