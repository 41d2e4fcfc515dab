# SPDX-License-Identifier: GPL-3.0-or-later
"""Range-null-space guided DDIM: DDNM (σ_y = 0) and DDNM+ (σ_y > 0), Wang, Yu & Zhang,
"Zero-Shot Image Restoration Using Denoising Diffusion Null-Space Model", arXiv 2212.00490.

One step from x_t (ᾱ_t) to x_{t'} (ᾱ_{t'}, t' the next DDIM timestep, ᾱ = 1 after the last):

    x0_t   = (x_t − √(1−ᾱ_t)·ε_θ(x_t, t)) / √ᾱ_t                       Eq. 12 (clipped to [-1, 1])
    x̂0     = x0_t − Σ_t A†(A x0_t − y)                                 Eq. 17 (Σ_t = I: Eq. 13, DDNM)
    x_{t'} = a_t·x̂0 + noise,  a_t = √ᾱ_{t'},  σ_t = √(1−ᾱ_{t'})        Eq. 18 in DDIM form

In the SVD basis of A (operators.py: v = Vᵀx, singular values s_i, observation noise σ_{y,i} on
component i, i.e. ν_i = σ_{y,i}/s_i in x units) Σ_t = V diag(λ_i) Vᵀ with (Eq. 19, per singular value):

    λ_i = 1                 if σ_t ≥ a_t·ν_i     (the step's noise swamps the observation noise)
    λ_i = σ_t / (a_t·ν_i)   otherwise;           λ_i = 0 in the null space (s_i = 0)

The correction injects observation noise of std a_t·λ_i·ν_i into component i of x_{t'}; the rest of
the step's noise budget, r_i = √(σ_t² − (a_t λ_i ν_i)²)  (Φ_t of Eq. 18), is added as in DDIM with η:

    noise_i = r_i·(η·z_i + √(1−η²)·ε̂_i),   z ~ N(0, I) fresh, ε̂ = Vᵀε_θ

so σ_y = 0 gives exactly DDNM's update x_{t'} = a_t·(A†y + (I − A†A)x0_t) + σ_t(η z + √(1−η²) ε_θ)
and the null space is always plain DDIM (η: the sampler core's, DDNM's). Deviation from DDNM's code,
on purpose: it multiplies λ by √(1−η²) and drops ε̂ from range components when σ_y > 0, which
makes λ jump at σ_t = a_t·ν_i; we keep Eq. 19 as printed and split the remaining budget r_i by η,
which is continuous in σ_y and reduces to DDNM at σ_y = 0. At the last step (a = 1, σ_t = 0) this
gives λ = 1 where σ_y = 0 (output exactly consistent) and λ = 0 where σ_y > 0 (not forced onto y).

Affine map. Operators are linear on images; the observation is given on the [0, 1] scale,
y01 = A·x01 + n. Diffusion works on x = 2·x01 − 1, so y_d := 2·y01 − A·1 = A·x + 2n exactly
(A·1 = 1 for identity/avgpool; = h(DC)·1 for spectral), and σ_y (given on [0, 1]) becomes 2σ_y.
Then A·x01_out − y01 = (A·x_out − y_d)/2: consistency holds on both scales. The output is converted
back with (x + 1)/2 and clamped to [0, 1] only if `clamp=True` (clamping is a projection onto a box,
not onto {x: Ax = y}, so it can break exact consistency; tests check with clamp=False).

Time travel (RePaint / DDNM §3.4) and the warm start from x̂ (SDEdit / CCDF) are the sampler core's
(sing/prior/ddim.py). This file is the correction plugged into it: `RangeNullSpace`.
"""
from __future__ import annotations

from typing import Sequence

import torch

from ..errors import InputError
from ..prior.ddim import Correction, ddim_sample, prior_shape, sample, travel_schedule, unet_evals  # noqa: F401
from ..prior.tiles import at_size
from .operators import LinearOperator


def lambda_weight(a: float, sig: float, nu: torch.Tensor) -> torch.Tensor:
    """DDNM+ Eq. 19: λ = 1 where σ_t ≥ a·ν, σ_t/(a·ν) otherwise."""
    an = a * nu
    big = an > sig
    return torch.where(big, sig / torch.where(big, an, torch.ones_like(an)), torch.ones_like(an))


def noise_budget(a: float, sig: float, lam: torch.Tensor, nu: torch.Tensor) -> torch.Tensor:
    """Φ_t of DDNM+ Eq. 18: r = √(σ_t² − (a·λ·ν)²), the noise left after the injected observation noise."""
    return (sig * sig - (a * lam * nu) ** 2).clamp_min(0.0).sqrt()


class RangeNullSpace(Correction):
    """DDNM / DDNM+ in the SVD basis of A (module doc): P = range mask, Y = Vᵀ A† y, ν = σ_y/s."""

    def __init__(self, op: LinearOperator, P: torch.Tensor, Y: torch.Tensor, nu: torch.Tensor, name: str):
        self.op, self.P, self.Y, self.nu, self.name = op, P, Y, nu, name

    def x0(self, x0, x_t, eps, step):
        lam = lambda_weight(step.a, step.sigma, self.nu) * self.P                    # Eq. 19
        X0 = self.op.to_spectral(x0)
        return X0 - lam * (self.P * X0 - self.Y), lam                                # Eq. 17

    def update(self, x0, eps, z, step):
        X0h, lam = x0
        r = noise_budget(step.a, step.sigma, lam, self.nu)                           # Φ_t, Eq. 18
        # z is white in any orthonormal basis: used as Vᵀz directly
        return self.op.from_spectral(step.a * X0h + r * step.noise(z, self.op.to_spectral(eps)))


def _sigma_tensor(sigma_y, batch: int) -> torch.Tensor:
    s = torch.as_tensor(sigma_y, dtype=torch.float32)
    if s.dim() == 1:
        if s.numel() not in (1, batch):
            raise InputError(f"sigma_y has {s.numel()} values for a batch of {batch}: give one float, "
                             f"one per image (B,), or a map broadcastable to (B, C, H, W)")
        s = s.reshape(-1, 1, 1, 1)
    elif s.dim() not in (0, 4):
        raise InputError(f"sigma_y must be a float, (B,) or broadcastable to (B, C, H, W), got shape "
                         f"{tuple(s.shape)}")
    if not torch.isfinite(s).all() or (s < 0).any():
        raise InputError("sigma_y must be finite and ≥ 0 (0 = noiseless DDNM)")
    return s


def restore(prior, operator: LinearOperator, y01: torch.Tensor, sigma_y=0.0, steps: int = 50,
            eta: float = 0.85, generators: Sequence[torch.Generator] | None = None,
            travel: tuple[int, int] | None = None, progress: bool = True, clamp: bool = True,
            clip_x0: bool = True, start: float = 1.0, x_init01: torch.Tensor | None = None) -> torch.Tensor:
    """Restore images from y01 ≈ A·x01 + n with DDNM (σ_y = 0) or DDNM+ (σ_y > 0).

    prior:      a sing.prior DiffusionPrior (eps, alphas_cumprod, ddim_timesteps, image_size, channels);
                run at the operator's H×W through sing.prior.tiles.at_size (the prior itself at its
                native size).
    operator:   a LinearOperator on (the prior's channels, any H×W) (operators.make_operator).
    y01:        observation (B, *operator.observation_shape()) on the [0, 1] image scale
                (for avgpool: the pooled image A·x̂; otherwise x̂ itself).
    sigma_y:    observation noise std on the [0, 1] scale, in the operator's observation basis
                (Uᵀn): a float, one per image (B,), or a map broadcastable to (B, C, H, W) in the
                spectral layout (for `spectral`: √N(f) per DCT coefficient). 0 → DDNM.
    steps, eta: DDIM steps S and DDNM's η (see module doc). travel: (l, r) time-travel or None.
    generators: one torch.Generator per image (sing.channel.generator_for) for reproducible noise.
    clamp:      clamp the output to [0, 1] (off: exact consistency A·x = y when σ_y = 0).
    clip_x0:    clip the predicted clean image x0_t to [-1, 1] before the correction.
    start:      fraction of T at which the chain begins (module doc, warm start); < 1 needs
    x_init01:   the initial estimate (B, C, H, W) on the [0, 1] scale (SING: the DeepJSCC output x̂).
    Returns x01 (B, C, H, W) float32 on the prior's device.
    """
    if operator is None or not isinstance(operator, LinearOperator):
        raise InputError("restore needs a LinearOperator (sing.zero.make_operator); for unconditional "
                         "samples use ddim_sample")
    if len(operator.image_shape) == 3 and operator.image_shape[0] == prior_shape(prior)[0]:
        prior = at_size(prior, operator.image_shape[1:])       # any H×W (sing/prior/tiles.py)
    shape = prior_shape(prior)
    if tuple(operator.image_shape) != shape:
        raise InputError(f"the operator works on {operator.image_shape} images but the prior generates "
                         f"{shape}: use a prior trained at this size/channel count, or resize")
    operator.check_observation(y01)
    batch = y01.shape[0]
    device = torch.device(prior.device)
    op = operator.to(device)
    y = y01.to(device=device, dtype=torch.float32)
    ones = torch.ones(1, *shape, device=device)
    y_d = 2.0 * y - op.A(ones)                                    # = A·x_diff + 2n (module doc)
    sig = 2.0 * _sigma_tensor(sigma_y, batch).to(device)
    plus = bool((sig > 0).any())
    corr = RangeNullSpace(op, op.range_mask(), op.pinv_spectral(y_d), op.spectral_noise(sig),
                          f"{'DDNM+' if plus else 'DDNM'} {op.name}")
    x_init = None if x_init01 is None else 2.0 * x_init01.to(device=device, dtype=torch.float32) - 1.0
    x = sample(prior, batch, steps, eta, generators, corr, travel=travel, start=start, x_init=x_init,
               clip_x0=clip_x0, progress=progress)
    x01 = (x + 1.0) / 2.0
    return x01.clamp(0.0, 1.0) if clamp else x01


ddnm_restore = restore   # the name used in docs/CONVENTIONS.md
