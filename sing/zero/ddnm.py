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
and the null space is always plain DDIM. η follows DDNM's code (fraction of fresh noise in the step's
noise σ_t = √(1−ᾱ_{t'}); default 0.85), not the η of the DDIM paper. Deviation from DDNM's reference
code, on purpose: it multiplies λ by √(1−η²) and drops ε̂ from range components when σ_y > 0, which
makes λ jump at σ_t = a_t·ν_i; we keep Eq. 19 as printed and split the remaining budget r_i by η,
which is continuous in σ_y and reduces to DDNM at σ_y = 0. At the last step (a = 1, σ_t = 0) this
gives λ = 1 where σ_y = 0 (output exactly consistent) and λ = 0 where σ_y > 0 (not forced onto y).

Affine map. Operators are linear on images; the observation is given on the [0, 1] scale,
y01 = A·x01 + n. Diffusion works on x = 2·x01 − 1, so y_d := 2·y01 − A·1 = A·x + 2n exactly
(A·1 = 1 for identity/avgpool; = h(DC)·1 for spectral), and σ_y (given on [0, 1]) becomes 2σ_y.
Then A·x01_out − y01 = (A·x_out − y_d)/2: consistency holds on both scales. The output is converted
back with (x + 1)/2 and clamped to [0, 1] only if `clamp=True` (clamping is a projection onto a box,
not onto {x: Ax = y}, so it can break exact consistency; tests check with clamp=False).

Time-travel (RePaint / DDNM §3.4): with travel=(l, r), each time the chain reaches a position
q = l, 2l, … (< S) it is re-noised back l positions with the exact forward kernel
x_hi = √(ᾱ_hi/ᾱ_lo)·x_lo + √(1 − ᾱ_hi/ᾱ_lo)·z, r − 1 times; the guided steps are then redone.

Warm start (SDEdit, Meng et al. 2022; "Come-Closer-Diffuse-Faster", Chung, Sim & Ye, CVPR 2022,
Eq. 5): with start < 1 the chain begins at the first DDIM timestep t₀ ≤ start·T, from the forward
kernel applied to an initial estimate x_init (here: the DeepJSCC output x̂),

    x_{t₀} = √ᾱ_{t₀}·x_init + √(1 − ᾱ_{t₀})·z,

and runs the guided steps from there. CCDF shows the error contracts from a good x_init, so a short
chain suffices; it also keeps a weak prior from inventing the image from pure noise (its weakest
regime), which is where PSNR is lost. start = 1 is plain DDNM from x_T ~ N(0, I).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from tqdm.auto import tqdm

from ..errors import InputError
from .operators import LinearOperator


def travel_schedule(steps: int, travel: tuple[int, int] | None = None) -> list[int]:
    """Positions 0..steps visited by the sampler (0 = pure noise, steps = clean image).

    Without travel: [0, 1, …, steps]. With (l, r): after reaching q ∈ {l, 2l, …} (q < steps) go back
    to q − l and come down again, r − 1 times at each such q.
    """
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


def _randn(shape: Sequence[int], generators, device) -> torch.Tensor:
    if generators is None:
        return torch.randn(*shape, device=device)
    return torch.stack([torch.randn(*shape[1:], generator=g) for g in generators]).to(device)


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


def _prior_shape(prior) -> tuple[int, int, int]:
    size = prior.image_size
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    return (int(prior.channels), int(h), int(w))


def check_sampling_args(steps: int, eta: float, generators, batch: int) -> None:
    """The arguments every DDIM-style sampler here takes (SING-Zero, SING-INN, DPS), checked once."""
    if not 0.0 <= float(eta) <= 1.0:
        raise InputError(f"eta must lie in [0, 1], got {eta}")
    if int(steps) < 1:
        raise InputError(f"steps must be ≥ 1, got {steps}")
    if generators is not None and len(generators) != batch:
        raise InputError(f"need one generator per image: got {len(generators)} for a batch of {batch}")


def start_position(timesteps: Sequence[int], start: float, T: int) -> int:
    """Index of the first DDIM timestep t ≤ start·T (0 for start = 1: begin at pure noise)."""
    if not 0.0 < float(start) <= 1.0:
        raise InputError(f"start must lie in (0, 1] (fraction of T at which the chain begins), got {start}")
    if start >= 1.0:
        return 0
    for q, t in enumerate(timesteps):
        if int(t) <= start * T:
            return q
    return len(timesteps) - 1


def unet_evals(prior, steps: int, start: float = 1.0, travel: tuple[int, int] | None = None,
               num_train_timesteps: int = 1000) -> int:
    """How many ε_θ evaluations one restoration costs (per image) with these settings. prior = None
    (the restoration runs in a worker): DDIM "leading" timesteps of a num_train_timesteps schedule."""
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
    """The chain's state at t₀ from the initial estimate (module doc, warm start):
    x_{t₀} = √ᾱ_{t₀}·x_init + √(1 − ᾱ_{t₀})·z, z the chain's starting noise (diffusion scale)."""
    if x_init is None:
        raise InputError("a warm start (start < 1) needs an initial estimate x_init")
    if tuple(x_init.shape) != tuple(z.shape):
        raise InputError(f"x_init has shape {tuple(x_init.shape)}, the chain needs {tuple(z.shape)}")
    return math.sqrt(abar0) * x_init.to(device=z.device, dtype=torch.float32) + math.sqrt(1.0 - abar0) * z


@torch.no_grad()
def _sample(prior, batch: int, steps: int, eta: float, generators, travel, progress: bool,
            guide: dict | None, clip_x0: bool, desc: str, start: float = 1.0,
            x_init: torch.Tensor | None = None) -> torch.Tensor:
    """The DDIM loop on diffusion scale; `guide` = None is plain (unconditional) DDIM.
    start < 1: begin at t₀ ≤ start·T from x_init (diffusion scale) noised by the forward kernel."""
    check_sampling_args(steps, eta, generators, batch)
    device = torch.device(prior.device)
    shape = (batch, *_prior_shape(prior))
    ts = prior.ddim_timesteps(int(steps)).to("cpu").long()
    steps = len(ts)
    abar_all = prior.alphas_cumprod.to("cpu", torch.float64)
    abar = [float(abar_all[t]) for t in ts] + [1.0]          # ᾱ at positions 0..S (ᾱ = 1 after the end)
    c_eps = math.sqrt(max(0.0, 1.0 - eta * eta))
    q0 = start_position(ts.tolist(), start, len(abar_all))
    seq = [q0 + p for p in travel_schedule(steps - q0, travel)]

    if guide is not None:
        op: LinearOperator = guide["op"]
        P, Y, nu = guide["P"], guide["Y"], guide["nu"]
    x = _randn(shape, generators, device)
    if q0 > 0:
        x = warm_start(x, x_init, abar[q0])
    pdtype = getattr(prior, "dtype", torch.float32)
    for q, q_next in tqdm(list(zip(seq[:-1], seq[1:])), desc=desc, disable=not progress, leave=False):
        if q_next < q:                                         # time-travel: forward kernel q → q_next
            ratio = abar[q_next] / abar[q]
            x = math.sqrt(ratio) * x + math.sqrt(1.0 - ratio) * _randn(shape, generators, device)
            continue
        at = abar[q]
        t = torch.full((batch,), int(ts[q]), dtype=torch.long, device=device)
        eps = prior.eps(x.to(pdtype), t).float()
        x0 = (x - math.sqrt(1.0 - at) * eps) / math.sqrt(at)                          # Eq. 12
        if clip_x0:
            x0 = x0.clamp(-1.0, 1.0)
        a, sig = math.sqrt(abar[q_next]), math.sqrt(max(0.0, 1.0 - abar[q_next]))
        if guide is None:
            x = a * x0 + sig * (eta * _randn(shape, generators, device) + c_eps * eps)
            continue
        X0, E = op.to_spectral(x0), op.to_spectral(eps)
        an = a * nu
        big = an > sig
        lam = torch.where(big, sig / torch.where(big, an, torch.ones_like(an)), torch.ones_like(an)) * P  # Eq. 19
        X0h = X0 - lam * (P * X0 - Y)                                                  # Eq. 17
        r = (sig * sig - (a * lam * nu) ** 2).clamp_min(0.0).sqrt()                    # Φ_t, Eq. 18
        Z = _randn(shape, generators, device)       # white in any orthonormal basis
        x = op.from_spectral(a * X0h + r * (eta * Z + c_eps * E))
    return x


def restore(prior, operator: LinearOperator, y01: torch.Tensor, sigma_y=0.0, steps: int = 50,
            eta: float = 0.85, generators: Sequence[torch.Generator] | None = None,
            travel: tuple[int, int] | None = None, progress: bool = True, clamp: bool = True,
            clip_x0: bool = True, start: float = 1.0, x_init01: torch.Tensor | None = None) -> torch.Tensor:
    """Restore images from y01 ≈ A·x01 + n with DDNM (σ_y = 0) or DDNM+ (σ_y > 0).

    prior:      a sing.prior DiffusionPrior (eps, alphas_cumprod, ddim_timesteps, image_size, channels).
    operator:   a LinearOperator on the prior's image shape (operators.make_operator).
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
    shape = _prior_shape(prior)
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
    s = op.singular_values.to(device)
    P = (s > 0).float()
    nu = torch.where(s > 0, sig / torch.where(s > 0, s, torch.ones_like(s)), torch.zeros_like(s * sig))
    guide = {"op": op, "P": P, "Y": op.pinv_spectral(y_d), "nu": nu}
    plus = bool((sig > 0).any())
    x_init = None if x_init01 is None else 2.0 * x_init01.to(device=device, dtype=torch.float32) - 1.0
    x = _sample(prior, batch, steps, eta, generators, travel, progress, guide, clip_x0,
                desc=f"{'DDNM+' if plus else 'DDNM'} {op.name}", start=start, x_init=x_init)
    x01 = (x + 1.0) / 2.0
    return x01.clamp(0.0, 1.0) if clamp else x01


def ddim_sample(prior, batch: int, steps: int = 50, eta: float = 0.85,
                generators: Sequence[torch.Generator] | None = None, progress: bool = True,
                clamp: bool = True) -> torch.Tensor:
    """Plain unconditional DDIM with the same loop and η convention (the guidance-overhead floor)."""
    x = _sample(prior, batch, steps, eta, generators, None, progress, None, True, desc="DDIM")
    x01 = (x + 1.0) / 2.0
    return x01.clamp(0.0, 1.0) if clamp else x01


ddnm_restore = restore   # the name used in docs/CONVENTIONS.md
