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

Any image size (docs/ALGORITHMS.md §2, "Any image size"): both halves are convolutional, so one
model takes images of any H×W with MIN_SIDE ≤ H, W ≤ MAX_SIDE. The encoder reflect-pads the image at
the bottom and right to the next multiple of STRIDE (Hp × Wp), and the decoder crops its output back
to H×W. The symbol count follows from the padded size at the model's BCR, with the model's fixed
latent channel count: k_for_shape(cfg, H, W) = floor(BCR · C·Hp·Wp) (the native-size k when H = W =
image_size). The first 2k reals of the (latent_channels, Hp/4, Wp/4) latent are sent, as at the native
size; the receiver needs H and W (decode(..., shape=(H, W))) since k alone does not determine them.
At the native size nothing is padded and results are bit-identical to the fixed-size model.
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

STRIDE = 4          # the encoder's total downsampling (two stride-2 convolutions)
MIN_SIDE = 8        # smallest image side accepted (reflect padding by ≤ 3 needs a side ≥ 4; 8 keeps a 2×2 latent)
MAX_SIDE = 1024     # largest image side accepted (bounds a request's symbols and memory)


def padded_shape(h: int, w: int) -> tuple[int, int]:
    """(Hp, Wp): H and W rounded up to a multiple of STRIDE (the encoder's reflect padding)."""
    return (-(-int(h) // STRIDE) * STRIDE, -(-int(w) // STRIDE) * STRIDE)


def check_image_shape(h, w) -> tuple[int, int]:
    """(H, W) as ints, or InputError when a side lies outside [MIN_SIDE, MAX_SIDE]."""
    try:
        hh, ww = int(h), int(w)
    except (TypeError, ValueError):
        raise InputError(f"image height and width must be integers, got {h!r} × {w!r}") from None
    if not (MIN_SIDE <= hh <= MAX_SIDE and MIN_SIDE <= ww <= MAX_SIDE):
        raise InputError(f"image size {hh}×{ww} is outside the supported range: each side must lie in "
                         f"[{MIN_SIDE}, {MAX_SIDE}]; resize larger images (sing.data.fit_image) and "
                         f"upscale or pad smaller ones")
    return hh, ww


def k_for_shape(model_or_config, h: int, w: int) -> int:
    """Complex channel symbols for one H×W image through this model: floor(BCR · C·Hp·Wp), with
    (Hp, Wp) = padded_shape(H, W) (module doc). Raises InputError outside the size limits."""
    cfg = getattr(model_or_config, "config", model_or_config)
    hh, ww = check_image_shape(h, w)
    hp, wp = padded_shape(hh, ww)
    k = k_for(cfg.bcr, cfg.channels * hp * wp)
    room = cfg.latent_channels * (hp // STRIDE) * (wp // STRIDE)
    if 2 * k > room:    # only when floor(BCR·n) at the native size left no slack in latent_channels
        raise InputError(f"BCR {cfg.bcr} of a {hh}×{ww} image needs {k} symbols but this model's latent "
                         f"({cfg.latent_channels} channels at {hp // STRIDE}×{wp // STRIDE}) holds "
                         f"{room // 2}; use a size that is a multiple of {STRIDE}")
    return k


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
    def latent_channels(self) -> int:
        return math.ceil(2 * self.k / (self.image_size // STRIDE) ** 2)

    def to_dict(self) -> dict:
        return {**asdict(self), "k": self.k, "n": self.n}

    @classmethod
    def from_dict(cls, d: dict) -> "JSCCConfig":
        if d.get("kind") != KIND:
            raise CheckpointError(f"config kind {d.get('kind')!r} is not {KIND!r}")
        if int(d.get("version", 0)) > VERSION:
            raise CheckpointError(f"JSCC config version {d['version']} is newer than this sing "
                                  f"({VERSION}); upgrade sing")
        cfg = cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})
        if "k" in d and int(d["k"]) != cfg.k:
            raise CheckpointError(f"config says k={d['k']} but BCR {cfg.bcr} of {cfg.n} gives {cfg.k}")
        return cfg

    @classmethod
    def tiny(cls, image_size: int = 16, channels: int = 3, bcr: str = "1/12", **kw) -> "JSCCConfig":
        """A few-thousand-parameter model for tests."""
        return cls(image_size=image_size, channels=channels, bcr=bcr, features=8, blocks=1, **kw)


class _Block(nn.Module):
    """conv k×k (with `up`: to 4·cout channels + pixel shuffle ×2) → (I)GDN → PReLU → AF, plus the input
    when `residual` and the shapes allow."""

    def __init__(self, cin: int, cout: int, k: int, stride: int, inverse: bool, residual: bool,
                 up: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(cin, 4 * cout if up else cout, k, stride, k // 2)
        self.shuffle = nn.PixelShuffle(2) if up else nn.Identity()
        self.gdn = GDN(cout, inverse=inverse)
        self.act = nn.PReLU(cout)
        self.af = AttentionFeature(cout)
        self.residual = residual and cin == cout and stride == 1 and not up

    def forward(self, x, snr):
        h = self.af(self.act(self.gdn(self.shuffle(self.conv(x)))), snr)
        return x + h if self.residual else h


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
        self.up1 = _Block(F, F, 3, 1, True, False, up=True)
        self.up2 = nn.Sequential(nn.Conv2d(F, 4 * C, 3, 1, 1), nn.PixelShuffle(2))
        self._model_id = f"untrained-{cfg.dataset}-{cfg.image_size}-bcr{cfg.bcr.replace('/', '_')}"

    # -- identity --------------------------------------------------------------------------
    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def k(self) -> int:
        return self.config.k

    def k_at(self, h: int, w: int) -> int:
        """Symbols per H×W image (k_for_shape)."""
        return k_for_shape(self.config, h, w)

    # -- checks ----------------------------------------------------------------------------
    def check_images(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) in [0, 1] with C the model's channels and MIN_SIDE ≤ H, W ≤ MAX_SIDE."""
        c = self.config
        if not torch.is_tensor(x) or x.dim() != 4 or x.shape[1] != c.channels:
            got = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
            what = "greyscale" if c.channels == 1 else "RGB"
            raise InputError(f"this DeepJSCC model ({self.model_id}) takes {what} images (B, "
                             f"{c.channels}, H, W) in [0, 1], got {got}; convert with sing.data")
        check_image_shape(x.shape[2], x.shape[3])
        if not torch.isfinite(x).all():
            raise InputError("images contain NaN or Inf")
        return x

    def _snr(self, snr_db, batch: int, device) -> torch.Tensor:
        # Outside the trained range the attention modules extrapolate badly: clamp.
        return snr_vector(snr_db, batch, device=device).clamp(self.config.snr_min, self.config.snr_max)

    # -- the two halves --------------------------------------------------------------------
    def encode(self, x: torch.Tensor, snr_db) -> torch.Tensor:
        """Images (B, C, H, W) in [0, 1], any H, W in [MIN_SIDE, MAX_SIDE] → unit-power complex64
        symbols (B, k) with k = k_for_shape(self, H, W) (module doc: reflect padding to STRIDE)."""
        self.check_images(x)
        H, W = int(x.shape[2]), int(x.shape[3])
        k = self.k_at(H, W)
        snr = self._snr(snr_db, x.shape[0], x.device)
        h = x * 2 - 1
        hp, wp = padded_shape(H, W)
        if (hp, wp) != (H, W):
            h = torch.nn.functional.pad(h, (0, wp - W, 0, hp - H), mode="reflect")
        for blk in self.enc:
            h = blk(h, snr)
        lat = self.enc_out(h).flatten(1)[:, :2 * k]
        z = torch.complex(lat[:, :k].float(), lat[:, k:].float())
        return normalize_power(z)

    def decode(self, y: torch.Tensor, snr_db, shape: tuple[int, int] | None = None) -> torch.Tensor:
        """Received (equalised) symbols (B, k) → images (B, C, H, W) in [0, 1]. shape: the sent
        image's (H, W) (None: the model's native size); k must equal k_for_shape(self, H, W)."""
        check_symbols(y, "received symbols")
        c = self.config
        H, W = (c.image_size, c.image_size) if shape is None else check_image_shape(*shape)
        k = self.k_at(H, W)
        if y.shape[1] != k:
            raise InputError(f"model {self.model_id} expects k={k} symbols per {H}×{W} image, got "
                             f"{y.shape[1]}: the transmitter used another BCR, model or image size")
        hp, wp = padded_shape(H, W)
        lh, lw = hp // STRIDE, wp // STRIDE
        snr = self._snr(snr_db, y.shape[0], y.device)
        dt = next(self.parameters()).dtype
        lat = torch.cat([y.real, y.imag], dim=1).to(dt)
        lat = torch.nn.functional.pad(lat, (0, c.latent_channels * lh * lw - lat.shape[1]))   # zero-fill
        h = lat.view(-1, c.latent_channels, lh, lw)
        h = self.dec_in(h, snr)
        for blk in self.dec:
            h = blk(h, snr)
        h = self.up1(h, snr)
        out = torch.sigmoid(self.up2(h))
        return out if (hp, wp) == (H, W) else out[:, :, :H, :W]

    def forward(self, x: torch.Tensor, snr_db, channel=None) -> torch.Tensor:
        """Encode, pass through `channel(z) -> y` (identity if None), decode at x's size."""
        z = self.encode(x, snr_db)
        y = channel(z) if channel is not None else z
        return self.decode(y, snr_db, shape=(int(x.shape[2]), int(x.shape[3])))


def build_jscc(cfg: JSCCConfig) -> DeepJSCC:
    return DeepJSCC(cfg)


def load_jscc(directory: str | Path, device: str | torch.device = "cpu") -> DeepJSCC:
    """Load a DeepJSCC model directory (config.json + model.safetensors)."""
    cfg = JSCCConfig.from_dict(load_config(directory, kind=KIND))
    m = DeepJSCC(cfg)
    load_into(m, load_state(directory), str(directory))
    m._model_id = dir_model_id(directory)
    return m.to(device).eval()
