# SPDX-License-Identifier: GPL-3.0-or-later
"""SING-INN's invertible degradation model f_θ(x; snr) = (c, d)  (docs/ALGORITHMS.md §5).

Architecture (multi-scale, as in FrEIA / Glow / i-RevNet; written here, see "Why not FrEIA"):

    for level l = 1 … L:
        h ← Haar(h)                          (B, 4C, H/2^l, W/2^l), bands [LL, LH, HL, HH]; log|det| = 0
        h ← K_l conditional affine couplings (below)
        d_l ← bands LH, HL, HH of h          split off: the "null" (detail) part at this scale
        h ← band LL of h                     carried on
    c ← h                                     (B, C, H/2^L, W/2^L): the coarse "range" part
    d ← concat(flatten(d_1), …, flatten(d_L)) (B, n − C·H·W/4^L)

Conditional affine coupling (Real NVP, Dinh et al. arXiv 1605.08803 Eq. 7–9; Glow's joint (s, t)
subnet, arXiv 1807.03039; FrEIA GLOWCouplingBlock with conditions): the 4C channels are split into
two fixed groups of bands (u1, u2), cycling through {LL,LH|HL,HH}, {LL,HL|LH,HH}, {LL,HH|LH,HL}, and

    v1 = u1 ⊙ exp(s2(u2, e)) + t2(u2, e)          v2 = u2 ⊙ exp(s1(v1, e)) + t1(v1, e)
    inverse: u2 = (v2 − t1(v1, e)) ⊙ exp(−s1(v1, e)),  u1 = (v1 − t2(u2, e)) ⊙ exp(−s2(u2, e))
    log|det J| = Σ s2 + Σ s1,    s = κ·(2/π)·atan(s_raw/κ)  (soft clamp, |s| < κ)

e = E(snr) is an embedding of the normalised SNR (Fourier features → MLP) that enters *every*
subnet by FiLM (per-channel scale and shift of both hidden layers). The last conv of each subnet
and the FiLM layers start at zero, so an untrained f is exactly the L-level orthonormal Haar
transform: c(x) = g(x), and SING-INN then reduces to DDNM with the Haar low-pass (2^L average
pooling) operator. Channels keep their band meaning (no permutation), so the "LL slot" is what
is carried on and what c is.

Why not FrEIA: FrEIA 0.2 (PyPI, 2022, sdist only) installs and imports with torch 2.13 and its
Haar + GLOW blocks invert to 2e-7 here (checked). It is not used because (1) a multi-scale (c, d)
split with a condition at each scale needs its GraphINN with one ConditionNode per scale plus a
wrapper to expose (c, d) anyway, which is about as long as this file; (2) its PermuteRandom
reseeds numpy's *global* RNG at construction; (3) the worker would gain an unmaintained dependency
for ~150 lines. The conventions (soft clamp, joint (s, t) subnet, conditions into each subnet) are
FrEIA's.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ..channel import snr_vector
from ..checkpoint import load_config, load_into, load_state, save_model
from ..errors import CheckpointError, InputError
from .haar import haar_down, haar_up

KIND = "sing.inn"
VERSION = 1

# band groups (indices into [LL, LH, HL, HH]) used by successive couplings
_PARTITIONS = (((0, 1), (2, 3)), ((0, 2), (1, 3)), ((0, 3), (1, 2)))


@dataclass
class INNConfig:
    image_size: int = 64
    channels: int = 3
    levels: int = 2                      # Haar levels L: c is (C, H/2^L, W/2^L)
    blocks: list = field(default_factory=lambda: [2, 4])   # couplings per level (fine → coarse)
    hidden: int = 32                     # subnet width
    emb_dim: int = 32                    # SNR embedding size
    clamp: float = 1.5                   # soft clamp κ of the log-scales
    snr_min: float = -5.0                # trained SNR range (dB); outside it: clamped + warning
    snr_max: float = 15.0
    jscc_model_id: str = ""              # the DeepJSCC whose degradation this models
    jscc_bcr: str = ""
    dataset: str = ""
    lambda_d: float = 0.0                # weights of the detail regulariser and of the
    lambda_inv: float = 0.0              # inverse-consistency term used in training (train.py)
    # σ_c(snr): residual std of c(x; snr) − g(x̂) per SNR and channel (c units: Haar coefficients
    # of diffusion-scale images); the sampler's observation noise. {"snr_db": [...], "std": [[C]...]}
    sigma_c: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)
    kind: str = KIND
    version: int = VERSION

    def __post_init__(self):
        if self.levels < 1 or self.image_size % (2 ** self.levels):
            raise InputError(f"image_size {self.image_size} must be divisible by 2^levels "
                             f"(levels = {self.levels} ≥ 1)")
        if isinstance(self.blocks, int):
            self.blocks = [self.blocks] * self.levels
        self.blocks = [int(b) for b in self.blocks]
        if len(self.blocks) != self.levels:
            raise InputError(f"blocks needs one count per level ({self.levels}), got {self.blocks}")
        if self.channels < 1 or min(self.blocks) < 1 or self.hidden < 1:
            raise InputError("channels, blocks and hidden must be ≥ 1")
        if not self.snr_min < self.snr_max:
            raise InputError(f"snr_min ({self.snr_min}) must be below snr_max ({self.snr_max})")

    @property
    def coarse_shape(self) -> tuple[int, int, int]:
        s = self.image_size // 2 ** self.levels
        return (self.channels, s, s)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "config") -> "INNConfig":
        if d.get("kind") != KIND:
            raise CheckpointError(f"{where} holds a {d.get('kind')!r} model, expected {KIND!r}")
        if int(d.get("version", 0)) > VERSION:
            raise CheckpointError(f"{where} is a sing.inn version {d['version']} model; this code reads "
                                  f"up to version {VERSION}: update sing")
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})

    @classmethod
    def tiny(cls, image_size: int = 16, channels: int = 3, **kw) -> "INNConfig":
        """A few-thousand-parameter INN for tests."""
        kw = {"levels": 2, "blocks": [2, 2], "hidden": 8, "emb_dim": 8, **kw}
        return cls(image_size=image_size, channels=channels, **kw)


class SNREmbedding(nn.Module):
    """e(snr): u = normalised SNR in [−1, 1]; [u, sin(kπu/2), cos(kπu/2)]_{k=1..3} → MLP."""

    def __init__(self, dim: int, snr_min: float, snr_max: float):
        super().__init__()
        self.mid, self.half = (snr_min + snr_max) / 2, (snr_max - snr_min) / 2
        self.mlp = nn.Sequential(nn.Linear(7, dim), nn.SiLU(), nn.Linear(dim, dim), nn.SiLU())

    def forward(self, snr: torch.Tensor) -> torch.Tensor:
        u = ((snr - self.mid) / self.half).unsqueeze(1)
        k = torch.arange(1, 4, device=snr.device, dtype=u.dtype) * (math.pi / 2)
        return self.mlp(torch.cat([u, torch.sin(u * k), torch.cos(u * k)], dim=1))


class Subnet(nn.Module):
    """conv3×3 → FiLM(e) → SiLU → conv1×1 → FiLM(e) → SiLU → conv3×3 (zero-init) → (s_raw, t)."""

    def __init__(self, cin: int, cout: int, hidden: int, emb: int):
        super().__init__()
        self.c1 = nn.Conv2d(cin, hidden, 3, padding=1)
        self.c2 = nn.Conv2d(hidden, hidden, 1)
        self.c3 = nn.Conv2d(hidden, 2 * cout, 3, padding=1)
        self.f1, self.f2 = nn.Linear(emb, 2 * hidden), nn.Linear(emb, 2 * hidden)
        for m in (self.c3, self.f1, self.f2):
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)
        self.act = nn.SiLU()

    @staticmethod
    def _film(h, p):
        g, b = p[:, :, None, None].chunk(2, dim=1)
        return h * (1 + g) + b

    def forward(self, x, e):
        h = self.act(self._film(self.c1(x), self.f1(e)))
        h = self.act(self._film(self.c2(h), self.f2(e)))
        return self.c3(h)


class ConditionalCoupling(nn.Module):
    """Glow-style affine coupling on two fixed groups of channels, conditioned on e (module doc)."""

    def __init__(self, channels: int, partition: int, hidden: int, emb: int, clamp: float):
        super().__init__()
        C = channels
        g1, g2 = _PARTITIONS[partition % len(_PARTITIONS)]
        i1 = [b * C + j for b in g1 for j in range(C)]
        i2 = [b * C + j for b in g2 for j in range(C)]
        self.register_buffer("i1", torch.tensor(i1), persistent=False)
        self.register_buffer("i2", torch.tensor(i2), persistent=False)
        self.register_buffer("inv", torch.argsort(torch.tensor(i1 + i2)), persistent=False)
        self.n1, self.n2 = len(i1), len(i2)
        self.sub2 = Subnet(self.n2, self.n1, hidden, emb)    # u2 → (s, t) for u1
        self.sub1 = Subnet(self.n1, self.n2, hidden, emb)    # v1 → (s, t) for u2
        self.clamp = float(clamp)

    def _st(self, net, u, e):
        s, t = net(u, e).chunk(2, dim=1)
        return self.clamp * (2 / math.pi) * torch.atan(s / self.clamp), t

    def forward(self, h, e):
        u1, u2 = h[:, self.i1], h[:, self.i2]
        s2, t2 = self._st(self.sub2, u2, e)
        v1 = u1 * torch.exp(s2) + t2
        s1, t1 = self._st(self.sub1, v1, e)
        v2 = u2 * torch.exp(s1) + t1
        logdet = s2.flatten(1).sum(1) + s1.flatten(1).sum(1)
        return torch.cat([v1, v2], dim=1)[:, self.inv], logdet

    def inverse(self, h, e):
        v1, v2 = h[:, self.i1], h[:, self.i2]
        s1, t1 = self._st(self.sub1, v1, e)
        u2 = (v2 - t1) * torch.exp(-s1)
        s2, t2 = self._st(self.sub2, u2, e)
        u1 = (v1 - t2) * torch.exp(-s2)
        return torch.cat([u1, u2], dim=1)[:, self.inv]


class InvertibleDegradation(nn.Module):
    """f_θ(x; snr) → (c, d, log|det J|) and its inverse (module doc). x on diffusion scale [−1, 1]."""

    def __init__(self, cfg: INNConfig):
        super().__init__()
        self.config = cfg
        C = cfg.channels
        self.embed = SNREmbedding(cfg.emb_dim, cfg.snr_min, cfg.snr_max)
        self.levels = nn.ModuleList(
            nn.ModuleList(ConditionalCoupling(C, i, cfg.hidden, cfg.emb_dim, cfg.clamp)
                          for i in range(nb))
            for nb in cfg.blocks)
        self._model_id = f"untrained-inn-{cfg.image_size}"

    # -- identity / checks -----------------------------------------------------------------
    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def jscc_model_id(self) -> str:
        return self.config.jscc_model_id

    def check_jscc(self, model_id: str | None) -> None:
        """Refuse to serve a DeepJSCC other than the one this INN was trained for."""
        want = self.config.jscc_model_id
        if model_id is not None and want and model_id != want:
            raise CheckpointError(f"this SING-INN ({self.model_id}) models the degradation of DeepJSCC "
                                  f"{want!r}, not {model_id!r}: train one for that model with "
                                  f"`sing train-inn --jscc DIR --out DIR`")

    def snr(self, snr_db, batch: int, device=None, warn: bool = True) -> torch.Tensor:
        """(B,) SNR tensor, clamped to the trained range with a warning naming the range."""
        s = snr_vector(snr_db, batch, device=device)
        lo, hi = self.config.snr_min, self.config.snr_max
        out = (s < lo) | (s > hi)
        if warn and bool(out.any()):
            bad = sorted({round(float(v), 2) for v in s[out]})
            warnings.warn(f"SNR {bad} dB is outside SING-INN's trained range [{lo:g}, {hi:g}] dB: "
                          f"clamped to the range", UserWarning, stacklevel=3)
        return s.clamp(lo, hi)

    def check_images(self, x: torch.Tensor) -> None:
        """(B, C, H, W) with H and W multiples of 2^levels: the map is convolutional (Haar steps and
        convolutional couplings), so it runs at any such size, not only the trained image_size."""
        cfg = self.config
        m = 2 ** cfg.levels
        if not torch.is_tensor(x) or x.dim() != 4 or x.shape[1] != cfg.channels \
                or x.shape[2] % m or x.shape[3] % m or min(x.shape[2:]) < m:
            raise InputError(f"this SING-INN takes images (B, {cfg.channels}, H, W) with H and W multiples of "
                             f"2^levels = {m} (trained at {cfg.image_size}×{cfg.image_size}), got "
                             f"{tuple(getattr(x, 'shape', ()))}")

    def _shapes(self, hw: tuple[int, int] | None = None) -> list[tuple[int, int, int]]:
        """(3C, h, w) of the detail part split off at each level, for H×W images (default: the
        trained size)."""
        cfg = self.config
        h, w = (cfg.image_size, cfg.image_size) if hw is None else hw
        return [(3 * cfg.channels, h // 2 ** lv, w // 2 ** lv) for lv in range(1, cfg.levels + 1)]

    def d_size_at(self, hw: tuple[int, int] | None = None) -> int:
        return sum(a * b * c for a, b, c in self._shapes(hw))

    # -- the map ---------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, snr_db, warn: bool = True):
        """x (B, C, H, W) diffusion scale → (c (B, C, h, w), d (B, D), logdet (B,))."""
        self.check_images(x)
        e = self.embed(self.snr(snr_db, x.shape[0], x.device, warn).to(x.dtype))
        C = self.config.channels
        h, parts = x, []
        logdet = x.new_zeros(x.shape[0])
        for level in self.levels:
            h = haar_down(h)
            for blk in level:
                h, ld = blk(h, e)
                logdet = logdet + ld
            parts.append(h[:, C:].flatten(1))
            h = h[:, :C]
        return h, torch.cat(parts, dim=1), logdet

    def inverse(self, c: torch.Tensor, d: torch.Tensor, snr_db, warn: bool = True) -> torch.Tensor:
        """f⁻¹(c, d; snr) → x (B, C, H, W), H×W = c's size × 2^levels."""
        C, m = self.config.channels, 2 ** self.config.levels
        hw = (int(c.shape[2]) * m, int(c.shape[3]) * m) if c.dim() == 4 else None
        if c.dim() != 4 or c.shape[1] != C or d.dim() != 2 or d.shape[1] != self.d_size_at(hw) \
                or d.shape[0] != c.shape[0]:
            raise InputError(f"inverse needs c (B, {C}, h, w) and d (B, D) with D = 3C·(h·w)·(4^levels − 1)/3 "
                             f"for that h×w, got {tuple(c.shape)} and {tuple(d.shape)}")
        e = self.embed(self.snr(snr_db, c.shape[0], c.device, warn).to(c.dtype))
        shapes = self._shapes(hw)
        parts = d.split([math.prod(s) for s in shapes], dim=1)
        h = c
        for li in reversed(range(len(self.levels))):
            h = torch.cat([h, parts[li].view(-1, *shapes[li])], dim=1)
            for blk in reversed(self.levels[li]):
                h = blk.inverse(h, e)
            h = haar_up(h)
        return h

    # -- σ_c(snr) -----------------------------------------------------------------------------
    def sigma_c(self, snr: torch.Tensor, key: str = "std") -> torch.Tensor:
        """Calibrated residual std of c − g(x̂) at each SNR, (B, C, 1, 1) (linear interpolation).
        key "std_haar": the same for the untrained f (c = g(x)), when the calibration has it."""
        tab = self.config.sigma_c
        if key not in tab:
            key = "std"
        if not tab or not tab.get("snr_db"):
            raise CheckpointError("this SING-INN has no σ_c calibration in its config: re-run "
                                  "`sing train-inn` (it calibrates at every checkpoint)")
        grid = torch.tensor(tab["snr_db"], dtype=torch.float64)
        std = torch.tensor(tab[key], dtype=torch.float64)                  # (G, C)
        s = snr.detach().to("cpu", torch.float64).clamp(float(grid[0]), float(grid[-1]))
        j = torch.searchsorted(grid, s).clamp(1, len(grid) - 1)
        w = ((s - grid[j - 1]) / (grid[j] - grid[j - 1])).unsqueeze(1)
        out = std[j - 1] * (1 - w) + std[j] * w
        return out.to(snr.device, torch.float32)[:, :, None, None]


def build_inn(cfg: INNConfig, seed: int | None = None) -> InvertibleDegradation:
    """A fresh INN; with `seed`, initialised from it without touching the global RNG."""
    with torch.random.fork_rng(enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        return InvertibleDegradation(cfg)


def save_inn(directory: str | Path, inn: InvertibleDegradation, card: str | None = None) -> Path:
    return save_model(directory, inn.state_dict(), inn.config.to_dict(), card=card)


def load_inn(directory: str | Path, device: str | torch.device = "cpu",
             jscc_model_id: str | None = None) -> InvertibleDegradation:
    """Load a sing.inn directory; with `jscc_model_id`, refuse an INN trained for another JSCC."""
    from ..checkpoint import model_id as dir_model_id
    cfg = INNConfig.from_dict(load_config(directory, kind=KIND), where=str(directory))
    m = InvertibleDegradation(cfg)
    load_into(m, load_state(directory), str(directory))
    m._model_id = dir_model_id(directory)
    m.check_jscc(jscc_model_id)
    return m.to(device).eval()
