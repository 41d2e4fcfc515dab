# SPDX-License-Identifier: GPL-3.0-or-later
"""The DDIM sampler core (docs/ALGORITHMS.md §3, "Sampler core and corrections"): the one loop every
diffusion method runs. A method is a `Correction` of the step: DDNM/DDNM+ and SING-Zero
(sing/zero/ddnm.py), SING-INN (sing/inn/guidance.py), DPS (sing/baselines/dps.py), the DC posterior
of unconditional sampling (sing/prior/dc_posterior.py).

One step from x_t (ᾱ_t) to x_{t'} (the next DDIM timestep; ᾱ_{t'} = 1 after the last, diffusers'
"set_alpha_to_one") on the diffusion scale x = 2·x01 − 1 (DDIM, arXiv 2010.02502):

    x̂_0    = (x_t − √(1−ᾱ_t)·ε_θ(x_t, t)) / √ᾱ_t     DDIM Eq. 9 / DDNM Eq. 12; then Correction.denoised,
                                                     clip to [−1, 1], Correction.x0
    x_{t'} = a·x̂_0 + σ·(η·z + √(1−η²)·ε̂),  a = √ᾱ_{t'}, σ = √(1−ᾱ_{t'}), z ~ N(0, I)
                                                     DDIM Eq. 12; Correction.update (this by default)

η is DDNM's (arXiv 2212.00490, its code): the fraction of fresh noise in σ, i.e. DDIM Eq. 12 with
σ_t = η·√(1−ᾱ_{t'}) and direction coefficient √(1−ᾱ_{t'}−σ_t²) = σ·√(1−η²). η = 0: deterministic
DDIM; 0.85 (default): DDNM's. It is the one meaning of η in this package.

diffusers' DDIMScheduler supplies the timesteps ("leading", DiffusionPrior.ddim_timesteps) and ᾱ
follows its formulas (alphas_cumprod_from, float64). Its `step()` does not fit: its η is the DDIM
paper's (σ_t = η·√((1−ᾱ_{t'})/(1−ᾱ_t))·√(1−ᾱ_t/ᾱ_{t'})); DDNM+ and SING-INN split the noise budget
per spectral component (Φ_t of DDNM+ Eq. 18), which needs x̂_0, ε̂ and z apart, not one fused update;
time travel and the warm start need the forward kernel between arbitrary positions.

Noise: every draw goes through `randn`; with one torch.Generator per image (sing.channel.generator_for)
an image's result does not depend on its batch. Draws: x_T, one z per step and per time-travel jump.

Warm start (SDEdit; "Come-Closer-Diffuse-Faster", Chung, Sim & Ye, CVPR 2022, Eq. 5): with start < 1
the chain begins at the first DDIM timestep t₀ ≤ start·T from x_{t₀} = √ᾱ_{t₀}·x_init + √(1−ᾱ_{t₀})·z;
the error contracts from a good x_init, so a short chain suffices, and a weak prior does not have to
invent the image from pure noise. Time travel (RePaint / DDNM §3.4), travel = (l, r): each time the
chain reaches q = l, 2l, … (< S) it is re-noised l positions back with the exact forward kernel
x_hi = √(ᾱ_hi/ᾱ_lo)·x_lo + √(1 − ᾱ_hi/ᾱ_lo)·z, r − 1 times, and the steps are redone.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from tqdm.auto import tqdm

from ..errors import InputError


def randn(shape: Sequence[int], generators, device) -> torch.Tensor:
    """N(0, I): row b from generators[b] (one per image), or all from one Generator, or global (None)."""
    if generators is None:
        return torch.randn(*shape, device=device)
    if isinstance(generators, torch.Generator):
        return torch.randn(*shape, generator=generators).to(device)
    return torch.stack([torch.randn(*shape[1:], generator=g) for g in generators]).to(device)


@dataclass(frozen=True)
class Step:
    """One step's constants: timestep t (of T), ᾱ_t, a = √ᾱ_{t'}, σ = √(1−ᾱ_{t'}), η, √(1−η²)."""
    t: int
    T: int
    abar_t: float
    a: float
    sigma: float
    eta: float
    c_eps: float

    def noise(self, z: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """w = η·z + √(1−η²)·ε̂: the step's noise in units of σ (DDIM Eq. 12, DDNM's η)."""
        return self.eta * z + self.c_eps * eps


class Correction:
    """What a method changes in the DDIM step (module doc). The base class is plain DDIM."""

    needs_grad = False          # True: ε̂ and x̂_0 are computed with autograd w.r.t. x_t (DPS)
    name = "DDIM"

    def denoised(self, x0: torch.Tensor, x_t: torch.Tensor, step: Step) -> torch.Tensor:
        """x̂_0 before clipping (the DC posterior replaces its channel means)."""
        return x0

    def x0(self, x0: torch.Tensor, x_t: torch.Tensor, eps: torch.Tensor, step: Step):
        """x̂_0 after clipping → the corrected estimate handed to `update` (any representation)."""
        return x0

    def update(self, x0, eps: torch.Tensor, z: torch.Tensor, step: Step) -> torch.Tensor:
        """x_{t'} = a·x̂_0 + σ·(η·z + √(1−η²)·ε̂)   (DDIM Eq. 12 with DDNM's η)."""
        return step.a * x0 + step.sigma * step.noise(z, eps)


def travel_schedule(steps: int, travel: tuple[int, int] | None = None) -> list[int]:
    """Positions 0..steps visited (0 = pure noise, steps = clean image): [0, 1, …, steps]; with travel
    (l, r), after reaching q ∈ {l, 2l, …} (q < steps) go back to q − l, r − 1 times at each such q."""
    if travel is None:
        return list(range(steps + 1))
    l, r = (int(v) for v in travel)
    if l < 1 or r < 1:
        raise InputError(f"time-travel (l, r) needs l ≥ 1 and r ≥ 1, got {travel}")
    if l >= steps:
        raise InputError(f"time-travel length l = {l} must be smaller than the number of steps ({steps})")
    left = {q: r - 1 for q in range(l, steps, l)}
    seq, q = [0], 0
    while q < steps:
        q += 1
        seq.append(q)
        if left.get(q, 0) > 0:
            left[q] -= 1
            seq.append(q - l)       # jump back
            q -= l
    return seq


def start_position(timesteps: Sequence[int], start: float, T: int) -> int:
    """Index of the first DDIM timestep t ≤ start·T (0 for start = 1: begin at pure noise)."""
    if not 0.0 < float(start) <= 1.0:
        raise InputError(f"start must lie in (0, 1] (fraction of T at which the chain begins), got {start}")
    if start >= 1.0:
        return 0
    return next((q for q, t in enumerate(timesteps) if int(t) <= start * T), len(timesteps) - 1)


def unet_evals(prior, steps: int, start: float = 1.0, travel: tuple[int, int] | None = None,
               num_train_timesteps: int = 1000) -> int:
    """ε_θ evaluations per image with these settings; prior None (the restoration runs in a worker):
    DDIM "leading" timesteps of a num_train_timesteps schedule."""
    if prior is None:
        T = int(num_train_timesteps)
        ts = [i * (T // int(steps)) for i in range(int(steps) - 1, -1, -1)]
    else:
        T = int(prior.num_train_timesteps)
        ts = prior.ddim_timesteps(int(steps)).tolist()
    q0 = start_position(ts, start, T)
    seq = travel_schedule(len(ts) - q0, travel)
    return sum(1 for a, b in zip(seq, seq[1:]) if b > a)


def warm_start(z: torch.Tensor, x_init: torch.Tensor | None, abar0: float) -> torch.Tensor:
    """x_{t₀} = √ᾱ_{t₀}·x_init + √(1 − ᾱ_{t₀})·z (module doc, warm start; diffusion scale)."""
    if x_init is None:
        raise InputError("a warm start (start < 1) needs an initial estimate x_init")
    if tuple(x_init.shape) != tuple(z.shape):
        raise InputError(f"x_init has shape {tuple(x_init.shape)}, the chain needs {tuple(z.shape)}")
    return math.sqrt(abar0) * x_init.to(device=z.device, dtype=torch.float32) + math.sqrt(1.0 - abar0) * z


def prior_shape(prior) -> tuple[int, int, int]:
    """(C, H, W) of the prior's images."""
    size = prior.image_size
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    return (int(prior.channels), int(h), int(w))


@torch.no_grad()
def sample(prior, batch: int, steps: int = 50, eta: float = 0.85, generators=None,
           correction: Correction | None = None, travel: tuple[int, int] | None = None,
           start: float = 1.0, x_init: torch.Tensor | None = None, clip_x0: bool = True,
           progress: bool = True, desc: str | None = None) -> torch.Tensor:
    """The DDIM loop (module doc) on the diffusion scale; returns x (B, C, H, W) float32 on the
    prior's device. correction None = plain DDIM. start < 1: begin at t₀ ≤ start·T from x_init
    (diffusion scale). generators: see `randn`."""
    if not 0.0 <= float(eta) <= 1.0 or int(steps) < 1:
        raise InputError(f"eta must lie in [0, 1] and steps be ≥ 1, got eta {eta}, steps {steps}")
    if generators is not None and not isinstance(generators, torch.Generator) and len(generators) != batch:
        raise InputError(f"need one generator per image: got {len(generators)} for a batch of {batch}")
    corr = correction if correction is not None else Correction()
    device = torch.device(prior.device)
    shape = (batch, *prior_shape(prior))
    ts = prior.ddim_timesteps(int(steps)).to("cpu").long()
    abar_all = prior.alphas_cumprod.to("cpu", torch.float64)
    T = len(abar_all)
    abar = [float(abar_all[t]) for t in ts] + [1.0]          # ᾱ at positions 0..S (ᾱ = 1 after the end)
    eta = float(eta)
    c_eps = math.sqrt(max(0.0, 1.0 - eta * eta))
    q0 = start_position(ts.tolist(), start, T)
    seq = [q0 + p for p in travel_schedule(len(ts) - q0, travel)]
    pdtype = getattr(prior, "dtype", torch.float32)

    x = randn(shape, generators, device)                     # x_T ~ N(0, I)
    if q0 > 0:
        x = warm_start(x, x_init, abar[q0])
    for q, q_next in tqdm(list(zip(seq[:-1], seq[1:])), desc=desc or corr.name, disable=not progress,
                          leave=False):
        if q_next < q:                                         # time travel: forward kernel q → q_next
            ratio = abar[q_next] / abar[q]
            x = math.sqrt(ratio) * x + math.sqrt(1.0 - ratio) * randn(shape, generators, device)
            continue
        at = abar[q]
        step = Step(t=int(ts[q]), T=T, abar_t=at, a=math.sqrt(abar[q_next]),
                    sigma=math.sqrt(max(0.0, 1.0 - abar[q_next])), eta=eta, c_eps=c_eps)
        t = torch.full((batch,), step.t, dtype=torch.long, device=device)
        xt = x.detach().requires_grad_(corr.needs_grad)
        with torch.enable_grad() if corr.needs_grad else torch.no_grad():
            eps = prior.eps(xt.to(pdtype), t).float()
            x0 = corr.denoised((xt - math.sqrt(1.0 - at) * eps) / math.sqrt(at), xt, step)  # Eq. 9
            if clip_x0:
                x0 = x0.clamp(-1.0, 1.0)
            x0 = corr.x0(x0, xt, eps, step)
        x = corr.update(x0, eps.detach(), randn(shape, generators, device), step)       # Eq. 12
    return x


def ddim_sample(prior, batch: int, steps: int = 50, eta: float = 0.85, generators=None,
                progress: bool = True, clamp: bool = True, dc=None) -> torch.Tensor:
    """Unconditional DDIM samples x01 (B, C, H, W) in [0, 1]: the plain chain, the guidance-overhead
    floor. dc: None, or a sing.prior.dc_posterior.DCPrior whose posterior replaces x̂_0's channel
    means before clipping (dc_posterior.py, Eq. 1–2)."""
    corr = None
    if dc is not None:
        from .dc_posterior import DCPosterior
        corr = DCPosterior(dc, prior_shape(prior)[0])
    x = sample(prior, batch, steps, eta, generators, corr, progress=progress, desc="DDIM")
    x01 = (x + 1.0) / 2.0
    return x01.clamp(0.0, 1.0) if clamp else x01
