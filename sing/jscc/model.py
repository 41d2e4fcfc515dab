# SPDX-License-Identifier: GPL-3.0-or-later
"""DeepJSCC encoder/decoder with SNR-adaptive attention (docs/ALGORITHMS.md §2).

Bourtsoulatze, Kurka, Gündüz (IEEE TCCN 2019) with the attention-feature modules of ADJSCC
(Xu et al., TCSVT 2021) so that one model serves SNR ∈ [snr_min, snr_max]:

    z = normalize_power(E(x, SNR)) ∈ C^k,   (1/k)‖z‖² = 1
    x̂ = D(y, SNR) ∈ [0, 1]^{C×H×W},          y = channel(z)

The encoder downsamples by 4 (two stride-2 convolutions), ends in `latent_channels` feature maps of
(H/4)·(W/4) pixels, and the first 2k of those reals become the k complex symbols (real part then
imaginary part); the decoder zero-fills the unused latent reals. This serves any BCR:
latent_channels = ceil(2k / (H/4 · W/4)).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, asdict, field
from pathlib import Path

import torch
import torch.nn as nn

from ..channel import bcr_str, check_symbols, k_for, normalize_power, parse_bcr, snr_vector
from ..checkpoint import load_config, load_into, load_state, model_id as dir_model_id
from ..errors import CheckpointError, InputError
from .attention import AttentionFeature
from .gdn import GDN

KIND = "sing.jscc"
VERSION = 1


@dataclass
class JSCCConfig:
    image_size: int = 64
    channels: int = 3
    bcr: str = "1/48"
    features: int = 64
    blocks: int = 2                  # residual 3×3 blocks at the latent resolution, per side
    snr_min: float = -5.0
    snr_max: float = 15.0
    loss: str = "mse"                # "mse" | "mse+lpips"
    lpips_weight: float = 0.0
    dataset: str = "natural"
    kind: str = KIND
    version: int = VERSION
    notes: dict = field(default_factory=dict)

    def __post_init__(self):
        self.bcr = bcr_str(parse_bcr(self.bcr))
        if self.image_size % 4:
            raise InputError(f"image_size must be a multiple of 4 (the encoder downsamples by 4), "
                             f"got {self.image_size}")
        if self.channels not in (1, 3):
            raise InputError(f"channels must be 1 or 3, got {self.channels}")

    @property
    def n(self) -> int:
        return self.channels * self.image_size * self.image_size

    @property
    def k(self) -> int:
        return k_for(self.bcr, self.n)

    @property
    def latent_hw(self) -> int:
        return self.image_size // 4

    @property
    def latent_channels(self) -> int:
        return math.ceil(2 * self.k / self.latent_hw ** 2)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["k"] = self.k
        d["n"] = self.n
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "JSCCConfig":
        if d.get("kind") != KIND:
            raise CheckpointError(f"config kind {d.get('kind')!r} is not {KIND!r}")
        if int(d.get("version", 0)) > VERSION:
            raise CheckpointError(f"JSCC config version {d['version']} is newer than this sing "
                                  f"({VERSION}); upgrade sing")
        known = {f for f in cls.__dataclass_fields__}
        cfg = cls(**{k: v for k, v in d.items() if k in known})
        if "k" in d and int(d["k"]) != cfg.k:
            raise CheckpointError(f"config says k={d['k']} but BCR {cfg.bcr} of {cfg.n} gives {cfg.k}")
        return cfg

    @classmethod
    def tiny(cls, image_size: int = 16, channels: int = 3, bcr: str = "1/12", **kw) -> "JSCCConfig":
        """A few-thousand-parameter model for tests."""
        return cls(image_size=image_size, channels=channels, bcr=bcr, features=8, blocks=1, **kw)


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, stride: int, inverse: bool, residual: bool):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, k // 2)
        self.gdn = GDN(cout, inverse=inverse)
        self.act = nn.PReLU(cout)
        self.af = AttentionFeature(cout)
        self.residual = residual and cin == cout and stride == 1

    def forward(self, x, snr):
        h = self.af(self.act(self.gdn(self.conv(x))), snr)
        return x + h if self.residual else h


class _Up(nn.Module):
    """3×3 conv to 4·cout channels + pixel shuffle (×2), then IGDN/PReLU/AF."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, 4 * cout, 3, 1, 1)
        self.shuffle = nn.PixelShuffle(2)
        self.gdn = GDN(cout, inverse=True)
        self.act = nn.PReLU(cout)
        self.af = AttentionFeature(cout)

    def forward(self, x, snr):
        return self.af(self.act(self.gdn(self.shuffle(self.conv(x)))), snr)


class DeepJSCC(nn.Module):
    def __init__(self, cfg: JSCCConfig):
        super().__init__()
        self.config = cfg
        F, C, L = cfg.features, cfg.channels, cfg.latent_channels
        self.enc = nn.ModuleList([_Block(C, F, 5, 2, False, False), _Block(F, F, 5, 2, False, False)]
                                 + [_Block(F, F, 3, 1, False, True) for _ in range(cfg.blocks)])
        self.enc_out = nn.Conv2d(F, L, 3, 1, 1)
        self.dec_in = _Block(L, F, 3, 1, True, False)
        self.dec = nn.ModuleList([_Block(F, F, 3, 1, True, True) for _ in range(cfg.blocks)])
        self.up1 = _Up(F, F)
        self.up2 = nn.Sequential(nn.Conv2d(F, 4 * C, 3, 1, 1), nn.PixelShuffle(2))
        self._model_id = f"untrained-{cfg.dataset}-{cfg.image_size}-bcr{cfg.bcr.replace('/', '_')}"

    # -- identity --------------------------------------------------------------------------
    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def k(self) -> int:
        return self.config.k

    # -- checks ----------------------------------------------------------------------------
    def check_images(self, x: torch.Tensor) -> torch.Tensor:
        c = self.config
        want = (c.channels, c.image_size, c.image_size)
        if not torch.is_tensor(x) or x.dim() != 4 or tuple(x.shape[1:]) != want:
            got = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
            raise InputError(f"this DeepJSCC model ({self.model_id}) takes images (B, {want[0]}, "
                             f"{want[1]}, {want[2]}) in [0, 1], got {got}; resize/crop with "
                             f"sing.data.fit_image (shorter side to {c.image_size}, centre crop)")
        if not torch.isfinite(x).all():
            raise InputError("images contain NaN or Inf")
        return x

    def _snr(self, snr_db, batch: int, device) -> torch.Tensor:
        # Outside the trained range the attention modules extrapolate badly: clamp.
        return snr_vector(snr_db, batch, device=device).clamp(self.config.snr_min, self.config.snr_max)

    # -- the two halves --------------------------------------------------------------------
    def encode(self, x: torch.Tensor, snr_db) -> torch.Tensor:
        """Images (B, C, H, W) in [0, 1] → unit-power complex64 symbols (B, k)."""
        self.check_images(x)
        snr = self._snr(snr_db, x.shape[0], x.device)
        h = x * 2 - 1
        for blk in self.enc:
            h = blk(h, snr)
        lat = self.enc_out(h).flatten(1)[:, :2 * self.k]
        z = torch.complex(lat[:, :self.k].float(), lat[:, self.k:].float())
        return normalize_power(z)

    def decode(self, y: torch.Tensor, snr_db) -> torch.Tensor:
        """Received (equalised) symbols (B, k) → images (B, C, H, W) in [0, 1]."""
        check_symbols(y, "received symbols")
        if y.shape[1] != self.k:
            raise InputError(f"model {self.model_id} expects k={self.k} symbols per image, got "
                             f"{y.shape[1]}: the transmitter used another BCR or model")
        c = self.config
        snr = self._snr(snr_db, y.shape[0], y.device)
        dt = next(self.parameters()).dtype
        lat = torch.cat([y.real, y.imag], dim=1).to(dt)
        full = c.latent_channels * c.latent_hw ** 2
        if full > lat.shape[1]:
            lat = torch.cat([lat, lat.new_zeros(lat.shape[0], full - lat.shape[1])], dim=1)
        h = lat.view(-1, c.latent_channels, c.latent_hw, c.latent_hw)
        h = self.dec_in(h, snr)
        for blk in self.dec:
            h = blk(h, snr)
        h = self.up1(h, snr)
        return torch.sigmoid(self.up2(h))

    def forward(self, x: torch.Tensor, snr_db, channel=None) -> torch.Tensor:
        """Encode, pass through `channel(z) -> y` (identity if None), decode."""
        z = self.encode(x, snr_db)
        y = channel(z) if channel is not None else z
        return self.decode(y, snr_db)


def build_jscc(cfg: JSCCConfig) -> DeepJSCC:
    return DeepJSCC(cfg)


def load_jscc(directory: str | Path, device: str | torch.device = "cpu") -> DeepJSCC:
    """Load a DeepJSCC model directory (config.json + model.safetensors)."""
    cfg = JSCCConfig.from_dict(load_config(directory, kind=KIND))
    m = DeepJSCC(cfg)
    load_into(m, load_state(directory), str(directory))
    m._model_id = dir_model_id(directory)
    return m.to(device).eval()
