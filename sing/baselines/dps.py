# SPDX-License-Identifier: GPL-3.0-or-later
"""DPS through the known DeepJSCC encoder (docs/ALGORITHMS.md §6, "DiffCom-style").

Diffusion posterior sampling (Chung, Kim, Mccann, Klasky, Ye, "Diffusion Posterior Sampling for
General Noisy Inverse Problems", arXiv 2209.14687, Alg. 1) with the forward operator being the
transmitter itself, as in DiffCom (Wang et al., arXiv 2406.07390): the receiver knows the DeepJSCC
model, the received (equalised) symbols y ∈ C^k and the SNR, and treats

    y = E(x, SNR) + w,   w ~ CN(0, σ² I)          (E = the JSCC encoder incl. power normalisation)

as a non-linear noisy inverse problem. The DeepJSCC decoder is not used at all.

One step from x_t (ᾱ_t) to x_{t'} (ᾱ_{t'}, t' the next DDIM timestep, ᾱ = 1 after the last), on the
diffusion scale x = 2·x01 − 1:

    ε̂      = ε_θ(x_t, t)
    x0_t   = (x_t − √(1−ᾱ_t)·ε̂) / √ᾱ_t                        DPS Eq. 10 / DDIM Eq. 9 (clipped to [-1, 1])
    r      = y − E((x0_t + 1)/2, SNR)                          residual in symbol space (channel-free)
    x'     = √ᾱ_{t'}·x0_t + σ_t·(η·z + √(1−η²)·ε̂),  σ_t = √(1−ᾱ_{t'}),  z ~ N(0, I)
    x_{t'} = x' − ζ·∇_{x_t} ‖r‖₂                                DPS Alg. 1 line 7

The gradient goes through the UNet and the encoder (autograd w.r.t. x_t; no weight gradients).
∇‖r‖ = ∇‖r‖² / (2‖r‖): this is DPS's step size ζ_i = ζ'/‖y − A(x̂0)‖ on the gradient of the
squared norm (DPS App. C.2) with ζ' = ζ/2, and exactly what the DPS reference code does
(`norm_grad = grad(‖y − A(x̂0)‖)`, `x_t −= scale·norm_grad`). ‖·‖ is taken **per image** (over the
2k real numbers of its symbols), so each image gets its own step size and no gradient crosses
between the images of a batch (the UNet and the encoder have no batch-coupling layers).

The DDIM update is the sampler core's (sing/prior/ddim.py; η = fraction of fresh noise in the step's
noise σ_t, 0.85 by default); this file is the correction `DPSGradient` plugged into it, so
`dps_restore(..., zeta=0)` is the same chain, draw for draw, as `sing.prior.ddim.ddim_sample` with
the same generators: plain unconditional DDIM.

Start. We start from pure noise x_T ~ N(0, I) drawn from the image's generator, as DPS Alg. 1 and
DiffCom do: everything the receiver learns about the image enters through y (the received symbols)
and the known encoder. The DeepJSCC output x̂ = D(y) is *not* used as a starting point; that keeps
the baseline a pure "conditioning on the symbols" method, distinct from SING, which restores x̂.
(Starting from a noised x̂ would mix in SING's own information path and its artefacts.)

SNR. `snr_db` is the SNR the receiver believes (the same value the decoder would be given). The
transmitter encoded at its own nominal SNR; pass it as `encoder_snr_db` when it differs (Rayleigh
fading: the effective |h|²·SNR is not the encoder's SNR). It is only the encoder's conditioning:
the noise level σ² does not enter DPS's update (ζ is a step size, not a likelihood weight).

Cost per step: one UNet forward + backward and one encoder forward + backward.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

from ..channel import check_symbols, snr_vector
from ..errors import InputError
from ..prior.ddim import Correction, prior_shape, sample
from ..prior.tiles import at_size


def _check_pair(prior, jscc, shape: tuple[int, int] | None = None):
    """The prior at the image size (H, W) (default: the JSCC's native size), via
    sing.prior.tiles.at_size; refuses a prior with another channel count."""
    c = jscc.config
    if int(prior.channels) != c.channels:
        raise InputError(f"the prior generates {prior_shape(prior)} images but the DeepJSCC model "
                         f"{jscc.model_id} encodes {c.channels}-channel images: use a prior with the "
                         f"JSCC's channel count")
    if shape is None:        # a prior already sized (sing.prior.tiles) keeps its size
        shape = prior.image_size if isinstance(prior.image_size, (tuple, list)) else (c.image_size,) * 2
    return at_size(prior, tuple(int(v) for v in shape))


def _residual_norm(jscc, x01: torch.Tensor, y_ri: torch.Tensor, snr_enc: torch.Tensor) -> torch.Tensor:
    """‖y − E(x01, SNR)‖₂ per image (B,), differentiable w.r.t. x01. y_ri: view_as_real(y)."""
    dev = next(jscc.parameters()).device
    z = jscc.encode(x01.to(dev), snr_enc.to(dev))
    d = y_ri.to(dev) - torch.view_as_real(z)
    return (d.square().flatten(1).sum(1) + 1e-20).sqrt()


def dps_residual(jscc, x01: torch.Tensor, y: torch.Tensor, snr_db) -> torch.Tensor:
    """The DPS data term of finished images: ‖y − E(x01, SNR)‖₂ per image, (B,) on the CPU.

    x01 (B, C, H, W) in [0, 1]; y complex (B, k); snr_db the encoder's SNR (float or (B,))."""
    check_symbols(y, "received symbols")
    jscc.check_images(x01)
    with torch.no_grad():
        s = snr_vector(snr_db, x01.shape[0], device="cpu").detach()
        return _residual_norm(jscc, x01.float(), torch.view_as_real(y), s).cpu()


def dps_restore(prior, jscc, y: torch.Tensor, snr_db, steps: int = 50, eta: float = 0.85,
                zeta: float = 1.0, generators: Sequence[torch.Generator] | None = None,
                progress: bool = False, encoder_snr_db=None, clip_x0: bool = True,
                return_info: bool = False, shape: tuple[int, int] | None = None):
    """Restore images from received symbols y with DPS through the known JSCC encoder (module doc).

    prior:          sing.prior DiffusionPrior at the JSCC's resolution/channels.
    jscc:           the DeepJSCC model that encoded the images (only `.encode` is used).
    y:              received, equalised symbols, complex (B, k), k = jscc.k.
    snr_db:         the receiver's SNR in dB, float or (B,); conditions the encoder unless
                    `encoder_snr_db` (the transmitter's nominal SNR) is given.
    steps, eta:     DDIM steps and η (the sampler core's, sing/prior/ddim.py; default 50, 0.85).
    zeta:           DPS step size ζ on ∇_{x_t}‖y − E(x0_t)‖ per image (0 = unguided DDIM).
    generators:     one torch.Generator per image (sing.channel.generator_for): x_T and every
                    step's noise come from it, so an image's result does not depend on its batch.
    clip_x0:        clip x0_t to [-1, 1] before the data term and the update (DPS's clip_denoised).
    shape:          the sent images' (H, W) (default: the JSCC's native size); k must be the
                    JSCC's k at that size. The prior runs at it through sing.prior.tiles.at_size;
                    the gradient goes through the whole image (memory: one UNet backward per image).
    return_info:    also return {"residual": (S, B) ‖y − E(x0_t)‖ at each step, "residual_out":
                    (B,) for the returned images, "unet_evals": S, "start": "noise"}.
    Returns x01 (B, C, H, W) float32 in [0, 1] on the prior's device (and info).
    """
    check_symbols(y, "received symbols")
    if not (isinstance(zeta, (int, float)) and math.isfinite(zeta) and zeta >= 0):
        raise InputError(f"zeta (the DPS step size) must be a finite number ≥ 0, got {zeta!r}")
    prior = _check_pair(prior, jscc, shape)
    k = jscc.k_at(*prior_shape(prior)[1:])
    if y.shape[1] != k:
        raise InputError(f"model {jscc.model_id} sends k={k} symbols per image, got {y.shape[1]}: "
                         f"the symbols come from another BCR, model or image size")
    # The guidance needs autograd even when the caller runs under no_grad / inference_mode (the
    # worker's Engine.restore is @torch.no_grad): gradients are switched on here, w.r.t. x_t only.
    with torch.inference_mode(False), torch.enable_grad():
        batch = y.shape[0]
        snr_enc = snr_vector(snr_db if encoder_snr_db is None else encoder_snr_db, batch,
                             "snr_db" if encoder_snr_db is None else "encoder_snr_db", "cpu").detach().clone()
        y_ri = torch.view_as_real(y.clone().to(torch.complex64)).to(torch.device(prior.device))
        corr = DPSGradient(jscc, y_ri, snr_enc, float(zeta), return_info)
        x = sample(prior, batch, steps, eta, generators, corr, clip_x0=clip_x0,
                   progress=progress)                              # from x_T ~ N(0, I)
        x01 = ((x + 1.0) / 2.0).clamp(0.0, 1.0)
        if not return_info:
            return x01
        with torch.no_grad():
            r_out = _residual_norm(jscc, x01, y_ri, snr_enc).cpu()
        S = len(prior.ddim_timesteps(int(steps)))
        info = {"residual": torch.stack(corr.hist) if corr.hist else torch.empty(0, batch),
                "residual_out": r_out, "unet_evals": S, "start": "noise", "zeta": float(zeta),
                "eta": float(eta), "steps": S}
        return x01, info


class DPSGradient(Correction):
    """DPS Alg. 1 line 7 as a correction of the DDIM step (module doc): x_{t'} −= ζ·∇_{x_t}‖r‖ per
    image. Also records ‖y − E(x0_t)‖ at each step when `record` is set."""

    def __init__(self, jscc, y_ri: torch.Tensor, snr_enc: torch.Tensor, zeta: float, record: bool):
        self.jscc, self.y_ri, self.snr_enc, self.zeta, self.record = jscc, y_ri, snr_enc, zeta, record
        self.needs_grad = zeta > 0                              # graph only when guiding
        self.name = f"DPS ζ={zeta:g}"
        self.hist: list[torch.Tensor] = []
        self.grad: torch.Tensor | None = None

    def x0(self, x0, x_t, eps, step):
        if self.zeta > 0 or self.record:
            r = _residual_norm(self.jscc, (x0 + 1.0) / 2.0, self.y_ri, self.snr_enc)  # ‖y − E(x0_t)‖
            if self.zeta > 0:
                (self.grad,) = torch.autograd.grad(r.sum(), x_t)          # per image: no cross terms
            self.hist.append(r.detach().cpu())
        return x0.detach()

    def update(self, x0, eps, z, step):
        x = super().update(x0, eps, z, step)                                      # DDIM
        return x - self.zeta * self.grad.to(x.dtype) if self.zeta > 0 else x      # DPS Alg. 1 line 7

