# SPDX-License-Identifier: GPL-3.0-or-later
"""The link between encoder and decoder (docs/ALGORITHMS.md §1).

- BCR = k / n: complex channel uses per real source dimension, n = C·H·W, k = floor(BCR·n).
- Power: each image's k symbols are scaled so that (1/k)·‖z‖² = 1.
- AWGN: y = z + w, w ~ CN(0, σ²I), σ² = 10^(−SNR_dB/10).
- Rayleigh block fading: y = h·z + w, h ~ CN(0, 1), one h per image (coherence block = one image).
  With CSI the receiver equalises (y / ĥ) and reports the effective SNR |ĥ|²·SNR downstream.
- Pilot estimation: n_p known unit-power pilots go through the same h; LS estimate
  ĥ = (1/n_p) Σ y_p·conj(p), noise estimate σ̂² = Σ|y_p − ĥp|² / (n_p − 1), SNR̂ = |ĥ|²/σ̂².

Every image gets its own noise generator seeded from (seed, image id), so every method, batch size
and process sees the same realisation for the same image.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Sequence

import torch

from .errors import InputError

CHANNELS = ("awgn", "rayleigh")
CSI_MODES = ("perfect", "pilot")


def parse_bcr(bcr: str | float | Fraction) -> Fraction:
    """'1/48', 0.0208…, Fraction(1, 48) → Fraction. Rejects non-positive or > 1 ratios."""
    try:
        f = Fraction(bcr).limit_denominator(10000) if not isinstance(bcr, str) else Fraction(bcr.strip())
    except (ValueError, ZeroDivisionError) as e:
        raise InputError(f"BCR {bcr!r} is not a ratio: write it like '1/48' or 0.0208") from e
    if not 0 < f <= 1:
        raise InputError(f"BCR {bcr!r} must lie in (0, 1]: it counts complex channel uses per real "
                         f"source dimension")
    return f


def bcr_str(bcr: Fraction) -> str:
    return f"{bcr.numerator}/{bcr.denominator}"


def k_for(bcr: str | float | Fraction, n_real: int) -> int:
    """Number of complex symbols for n_real source dimensions: k = floor(BCR·n)."""
    k = math.floor(parse_bcr(bcr) * n_real)
    if k < 1:
        raise InputError(f"BCR {bcr} of {n_real} real dimensions leaves no channel symbol")
    return k


def noise_var(snr_db: float | torch.Tensor) -> float | torch.Tensor:
    """σ² = 10^(−SNR/10) for unit-power symbols."""
    if isinstance(snr_db, torch.Tensor):
        return torch.pow(10.0, -snr_db / 10.0)
    return 10.0 ** (-float(snr_db) / 10.0)


def check_symbols(z: torch.Tensor, name: str = "symbols") -> torch.Tensor:
    if not torch.is_tensor(z) or not z.is_complex():
        raise InputError(f"{name} must be a complex tensor (B, k), got "
                         f"{getattr(z, 'dtype', type(z).__name__)}")
    if z.dim() != 2:
        raise InputError(f"{name} must have shape (B, k), got {tuple(z.shape)}")
    if not torch.isfinite(torch.view_as_real(z)).all():
        raise InputError(f"{name} contain NaN or Inf: the receiver cannot decode them; "
                         f"check the equaliser/SNR estimate upstream")
    return z


def snr_vector(snr_db, batch: int, what: str = "snr_db", device=None,
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """snr_db (a float or one value per image) as a finite (batch,) tensor; InputError otherwise.
    The one SNR check of the receivers (DeepJSCC, SING-INN, DPS, the digital baseline)."""
    s = torch.as_tensor(snr_db, dtype=dtype, device=device)
    if s.dim() == 0:
        s = s.expand(batch)
    if s.shape != (batch,):
        raise InputError(f"{what} must be a float or one value per image ({batch},), got shape "
                         f"{tuple(s.shape)}")
    if not torch.isfinite(s).all():
        raise InputError(f"{what} contains NaN or Inf: pass the receiver's SNR estimate in dB")
    return s


def normalize_power(z: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Scale each row so that (1/k)·‖z‖² = 1."""
    p = (z.real ** 2 + z.imag ** 2).mean(dim=-1, keepdim=True)
    return z / torch.sqrt(p + eps)


def generator_for(seed: int, image_id: str | int) -> torch.Generator:
    """A CPU generator seeded from (seed, image id): the same noise for an image in any batch."""
    h = hashlib.sha256(f"sing-noise:{seed}:{image_id}".encode()).digest()
    g = torch.Generator()
    g.manual_seed(int.from_bytes(h[:8], "little") & ((1 << 63) - 1))
    return g


def channel_generator(seed: int, image_id: str | int) -> torch.Generator:
    """The generator of the channel realisation (fading + noise) of one image. `sing eval`, the
    demo and the GNU Radio PDU channel all draw from this, so their numbers agree exactly."""
    return generator_for(seed, f"channel:{image_id}")


def complex_normal(shape: Sequence[int], generator: torch.Generator | None = None) -> torch.Tensor:
    """CN(0, 1) samples: real and imaginary parts each N(0, 1/2)."""
    re_im = torch.randn(*shape, 2, generator=generator) * math.sqrt(0.5)
    return torch.complex(re_im[..., 0], re_im[..., 1])


def pilot_sequence(n: int) -> torch.Tensor:
    """Unit-modulus Zadoff-Chu pilots (root 1): constant envelope, known to both ends."""
    idx = torch.arange(n, dtype=torch.float64)
    ph = -math.pi * idx * (idx + (n % 2)) / max(n, 1)
    return torch.polar(torch.ones(n, dtype=torch.float64), ph).to(torch.complex64)


@dataclass
class ChannelConfig:
    kind: str = "awgn"          # "awgn" | "rayleigh"
    snr_db: float = 0.0
    csi: str = "perfect"        # "perfect" | "pilot"
    n_pilots: int = 16

    def __post_init__(self):
        if self.kind not in CHANNELS:
            raise InputError(f"unknown channel {self.kind!r}; choose one of {', '.join(CHANNELS)}")
        if self.csi not in CSI_MODES:
            raise InputError(f"unknown CSI mode {self.csi!r}; choose one of {', '.join(CSI_MODES)}")
        if not math.isfinite(self.snr_db):
            raise InputError(f"SNR must be finite, got {self.snr_db}")
        if self.csi == "pilot" and self.n_pilots < 2:
            raise InputError("pilot CSI needs at least 2 pilots to estimate both h and the noise")


@dataclass
class ChannelOutput:
    y: torch.Tensor             # (B, k) equalised symbols, what the decoder sees
    snr_db: torch.Tensor        # (B,) SNR the receiver reports downstream (effective; estimated if pilots)
    snr_true_db: torch.Tensor   # (B,) true effective SNR |h|²·SNR
    h: torch.Tensor             # (B,) true channel gain (1 for AWGN)
    h_est: torch.Tensor         # (B,) the gain the receiver used


def estimate_from_pilots(y_p: torch.Tensor, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """LS channel and SNR estimate from received pilots y_p (B, n_p) of known p (n_p,).

    ĥ = mean(y_p·conj(p)), σ̂² = Σ|y_p − ĥp|²/(n_p − 1) (unbiased), SNR̂ = |ĥ|²/σ̂² (linear).
    """
    n_p = p.numel()
    h = (y_p * p.conj()).mean(dim=-1)
    resid = y_p - h[:, None] * p
    s2 = (resid.abs() ** 2).sum(dim=-1) / max(n_p - 1, 1)
    snr = (h.abs() ** 2) / s2.clamp_min(1e-12)
    return h, snr


def estimate_snr_db(y_p: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    return 10 * torch.log10(estimate_from_pilots(y_p, p)[1].clamp_min(1e-12))


def awgn_per_sample(z: torch.Tensor, snr_db: torch.Tensor,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """y = z + w with a different SNR per row (training: SNR ~ U[snr_min, snr_max]).

    Also the equalised flat-fading channel: with perfect CSI, y/h = z + w/h is AWGN at |h|²·SNR."""
    s2 = noise_var(snr_db.to(torch.float32)).to(z.device)
    w = complex_normal(z.shape, generator).to(z.device)
    return z + w * torch.sqrt(s2)[:, None]


def apply_channel(z: torch.Tensor, cfg: ChannelConfig,
                  generators: Sequence[torch.Generator] | None = None) -> ChannelOutput:
    """Send unit-power symbols z (B, k) through the channel; returns what the receiver sees.

    Gradients flow through z (noise and fading are drawn independently of it), so the same
    function serves DeepJSCC training and evaluation. `generators`: one per row (seeded noise).
    """
    check_symbols(z, "transmitted symbols")
    B, k = z.shape
    if generators is not None and len(generators) != B:
        raise InputError(f"need one generator per image: got {len(generators)} for a batch of {B}")
    gens = list(generators) if generators is not None else [None] * B
    s2 = noise_var(cfg.snr_db)
    n_p = cfg.n_pilots if cfg.csi == "pilot" else 0
    p = pilot_sequence(n_p) if n_p else None
    hs, ws, wps = [], [], []
    for g in gens:
        # Order of draws is fixed (h, payload noise, pilot noise) so realisations are reproducible.
        h = complex_normal((1,), g)[0] if cfg.kind == "rayleigh" else torch.tensor(1 + 0j, dtype=torch.complex64)
        hs.append(h)
        ws.append(complex_normal((k,), g) * math.sqrt(s2))
        if n_p:
            wps.append(complex_normal((n_p,), g) * math.sqrt(s2))
    h = torch.stack(hs).to(z.device)
    w = torch.stack(ws).to(z.device)
    y = h[:, None] * z + w
    snr_lin_true = (h.abs() ** 2) / s2
    h_est, reported = h, snr_lin_true                      # perfect CSI
    if n_p:
        p = p.to(z.device)
        yp = h[:, None] * p + torch.stack(wps).to(z.device)
        h_est, reported = estimate_from_pilots(yp, p)
        if cfg.kind == "awgn":
            # The receiver knows the channel is AWGN (no fading): only the SNR is estimated.
            h_est = torch.ones_like(h_est)
            reported = 1.0 / ((yp - p).abs() ** 2).mean(-1).clamp_min(1e-12)
    y_eq = y / h_est[:, None]
    to_db = lambda v: 10 * torch.log10(v.clamp_min(1e-12)).float()
    return ChannelOutput(y=y_eq, snr_db=to_db(reported), snr_true_db=to_db(snr_lin_true), h=h, h_est=h_est)
