# SPDX-License-Identifier: GPL-3.0-or-later
"""The diffusion prior: ε_θ(x_t, t), the ᾱ schedule and DDIM timesteps over a diffusers UNet2DModel.

DDPM (Ho et al. 2020, arXiv 2006.11239), ε-prediction, docs/ALGORITHMS.md §3:

    q(x_t | x_0) = N(√ᾱ_t · x_0, (1 − ᾱ_t) I),   ᾱ_t = ∏_{s≤t} (1 − β_s),   β linear 1e-4 … 0.02, T = 1000
    x̂_0(x_t, t) = (x_t − √(1−ᾱ_t) · ε_θ(x_t, t)) / √ᾱ_t                      (DDPM Eq. 15 / DDIM Eq. 9)

`DiffusionPrior` is the one object the rest of the project talks to (docs/CONVENTIONS.md):
`.eps(x_t, t)`, `.alphas_cumprod` (float64, CPU), `.ddim_timesteps(steps)` ("leading" spacing as in
DDIM and diffusers' DDIMScheduler), `.image_size`, `.channels`, `.num_train_timesteps`, `.device`,
`.dtype`, `.config`. `load_prior` reads our model directories (kind "sing.prior") and local
diffusers-format unconditional models (flat, as google/ddpm-celebahq-256 ships, or pipeline layout).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError, InputError

KIND = "sing.prior"
VERSION = 1

DIFFUSERS_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")


# ----------------------------------------------------------------------------------------------
# configuration
def unet_preset(preset: str, image_size: int, channels: int) -> dict[str, Any]:
    """UNet2DModel arguments for a named size. The UNet halves the resolution down to 8×8
    (log2(size/8)+1 levels: 3 at 32×32, 4 at 64×64, 6 at 256×256) with self-attention at 8×8 and
    residual blocks above; channels per level from the preset's list (last value repeated):
    tiny  (16, 32)             — tests only;
    small (32, 64, 64)         — ~1 M parameters, fast on one CPU core;
    small2 (32, 64, 128), 2 layers per block;
    base  (32, 64, 128, 128)   — ~4–6 M, the docs/OFFLINE.md prototype size;
    wide  (64, 128, 128, 256), 2 layers — ~20 M, for a GPU."""
    table = {
        "tiny": ((16, 32), 1, 8),
        "small": ((32, 64, 64), 1, 8),
        "small2": ((32, 64, 128), 2, 16),
        "base": ((32, 64, 128, 128), 1, 32),
        "wide": ((64, 128, 128, 256), 2, 32),
    }
    if preset not in table:
        raise InputError(f"unknown UNet preset {preset!r}: choose one of {sorted(table)}")
    if image_size < 8 or image_size & (image_size - 1):
        raise InputError(f"image_size must be a power of two ≥ 8, got {image_size}")
    base, layers, groups = table[preset]
    levels = int(math.log2(image_size // 8)) + 1
    chans = [base[min(i, len(base) - 1)] for i in range(levels)]
    down = ["DownBlock2D"] * (levels - 1) + ["AttnDownBlock2D"]
    up = ["AttnUpBlock2D"] + ["UpBlock2D"] * (levels - 1)
    return {
        "sample_size": image_size, "in_channels": channels, "out_channels": channels,
        "block_out_channels": chans, "layers_per_block": layers,
        "down_block_types": down, "up_block_types": up,
        "attention_head_dim": 8, "norm_num_groups": groups,
    }


@dataclass
class PriorConfig:
    """Config saved as config.json next to model.safetensors (the EMA UNet weights)."""
    image_size: int = 64
    channels: int = 3
    unet: dict[str, Any] = field(default_factory=dict)   # UNet2DModel arguments
    beta_start: float = 1e-4
    beta_end: float = 0.02
    beta_schedule: str = "linear"
    num_train_timesteps: int = 1000
    prediction_type: str = "epsilon"
    dataset: str = ""
    notes: str = ""
    training: dict[str, Any] = field(default_factory=dict)  # recipe/steps, informational
    # N(μ, Σ) of the train images' channel means, for the sampler's DC posterior
    # (sing/prior/dc_posterior.py); {} = none stored
    dc_prior: dict[str, Any] = field(default_factory=dict)
    kind: str = KIND
    version: int = VERSION

    @classmethod
    def preset(cls, preset: str, image_size: int, channels: int, **kw) -> "PriorConfig":
        return cls(image_size=image_size, channels=channels,
                   unet=unet_preset(preset, image_size, channels), **kw)

    def scheduler_config(self) -> dict[str, Any]:
        return {"num_train_timesteps": self.num_train_timesteps, "beta_start": self.beta_start,
                "beta_end": self.beta_end, "beta_schedule": self.beta_schedule,
                "prediction_type": self.prediction_type}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "config") -> "PriorConfig":
        known = {f for f in cls.__dataclass_fields__}
        cfg = cls(**{k: v for k, v in d.items() if k in known})
        if cfg.kind != KIND:
            raise CheckpointError(f"{where} holds a {cfg.kind!r} model, expected {KIND!r}")
        if cfg.version > VERSION:
            raise CheckpointError(f"{where} is a sing.prior version {cfg.version} model; this code "
                                  f"reads up to version {VERSION}: update sing")
        return cfg


def alphas_cumprod_from(sched: dict[str, Any]) -> torch.Tensor:
    """ᾱ_t in float64 from a diffusers scheduler config (linear, scaled_linear, squaredcos_cap_v2,
    or trained_betas) — the same formulas as diffusers, without its float32 rounding."""
    T = int(sched.get("num_train_timesteps", 1000))
    b0, b1 = float(sched.get("beta_start", 1e-4)), float(sched.get("beta_end", 0.02))
    kind = sched.get("beta_schedule", "linear")
    if sched.get("trained_betas") is not None:
        betas = torch.tensor(sched["trained_betas"], dtype=torch.float64)
    elif kind == "linear":
        betas = torch.linspace(b0, b1, T, dtype=torch.float64)
    elif kind == "scaled_linear":
        betas = torch.linspace(b0 ** 0.5, b1 ** 0.5, T, dtype=torch.float64) ** 2
    elif kind == "squaredcos_cap_v2":
        f = lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
        betas = torch.tensor([min(1 - f((i + 1) / T) / f(i / T), 0.999) for i in range(T)],
                             dtype=torch.float64)
    else:
        raise CheckpointError(f"beta_schedule {kind!r} is not supported: use linear, scaled_linear "
                              f"or squaredcos_cap_v2")
    return torch.cumprod(1.0 - betas, dim=0)


def batch_timesteps(t: torch.Tensor | int, batch: int) -> torch.Tensor:
    """t as a (batch,) LongTensor on the CPU: an int for every image, or one per image."""
    tt = torch.as_tensor(t, dtype=torch.long).cpu()
    tt = tt.expand(batch) if tt.ndim == 0 else tt
    if tuple(tt.shape) != (batch,):
        raise InputError(f"t must be an int or a LongTensor of shape ({batch},), got {tuple(tt.shape)}")
    return tt


# ----------------------------------------------------------------------------------------------
class DiffusionPrior(torch.nn.Module):
    """ε_θ over a diffusers UNet2DModel plus its noise schedule (see module docstring)."""

    def __init__(self, unet: torch.nn.Module, scheduler_config: dict[str, Any],
                 config: dict[str, Any] | None = None, source: str = ""):
        super().__init__()
        self.unet = unet
        self.scheduler_config = dict(scheduler_config)
        pred = self.scheduler_config.get("prediction_type", "epsilon")
        if pred != "epsilon":
            raise CheckpointError(f"{source or 'this prior'} predicts {pred!r}; sing needs an "
                                  f"ε-prediction model (prediction_type 'epsilon')")
        self.alphas_cumprod = alphas_cumprod_from(self.scheduler_config)
        self.num_train_timesteps = int(self.alphas_cumprod.shape[0])
        uc = unet.config
        size = uc.sample_size
        self.image_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        self.channels = int(uc.in_channels)
        self._out_channels = int(uc.out_channels)
        self.config = config if config is not None else {
            "kind": KIND, "version": VERSION, "image_size": self.image_size,
            "channels": self.channels, "unet": dict(uc), **self.scheduler_config}
        self.source = source
        self.autocast_dtype: torch.dtype | None = None   # set_autocast(): mixed-precision UNet calls
        self.eval()
        self.requires_grad_(False)

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    def _t(self, t: torch.Tensor | int, batch: int) -> torch.Tensor:
        t = batch_timesteps(t, batch)
        if int(t.min()) < 0 or int(t.max()) >= self.num_train_timesteps:
            raise InputError(f"t must lie in [0, {self.num_train_timesteps - 1}], got "
                             f"{int(t.min())}…{int(t.max())}")
        return t.to(self.device)

    def set_autocast(self, dtype: torch.dtype | str | None) -> "DiffusionPrior":
        """Run the UNet under torch.autocast(dtype) (weights stay as they are); None turns it off.
        bf16 halves the UNet time on CPUs with AVX512-BF16 (see `sing bench prior`)."""
        if isinstance(dtype, str):
            dtype = None if dtype in ("", "none", "off", "fp32") else _default_dtype(self.device, dtype)
        if dtype is not None and dtype not in (torch.bfloat16, torch.float16):
            raise InputError(f"autocast dtype must be bf16 or fp16, got {dtype}")
        if dtype == torch.float16 and self.device.type == "cpu":
            raise InputError("fp16 autocast needs a GPU; use bf16 on a CPU")
        self.autocast_dtype = dtype
        return self

    @property
    def stride(self) -> int:
        """The UNet's total downsampling: 2^(levels − 1). An image side must be a multiple of it."""
        return 2 ** (len(self.unet.config.block_out_channels) - 1)

    def check_images(self, x: torch.Tensor, any_size: bool = False) -> None:
        """(B, C, image_size, image_size); with `any_size`, (B, C, H, W) with H and W multiples of
        `stride` (the UNet is convolutional: docs/ALGORITHMS.md §3, "Images of another size";
        sing.prior.tiles.at_size pads an image to that and bounds the size)."""
        if any_size and x.ndim == 4 and x.shape[1] == self.channels \
                and x.shape[2] % self.stride == 0 and x.shape[3] % self.stride == 0 and min(x.shape[2:]) > 0:
            return
        if x.ndim != 4 or x.shape[1:] != (self.channels, self.image_size, self.image_size):
            also = f" or sides that are multiples of {self.stride}" if any_size else ""
            raise InputError(f"the prior takes (B, {self.channels}, {self.image_size}, "
                             f"{self.image_size}) images{also}, got {tuple(x.shape)}: resize/convert the "
                             f"images or load a prior trained at that size")

    def eps(self, x_t: torch.Tensor, t: torch.Tensor | int, any_size: bool = False) -> torch.Tensor:
        """ε_θ(x_t, t); x_t in diffusion scale [-1, 1]-ish, returned in x_t's dtype and device.
        any_size: accept any H×W that is a multiple of `stride` (check_images); the size policy
        (padding, whole image or tiles, memory) is sing.prior.tiles.at_size's."""
        self.check_images(x_t, any_size)
        tt = self._t(t, x_t.shape[0])
        with torch.autocast(self.device.type, dtype=self.autocast_dtype or torch.bfloat16,
                            enabled=self.autocast_dtype is not None):
            out = self.unet(x_t.to(self.device, self.dtype), tt).sample
        out = out.to(self.dtype)
        if self._out_channels == 2 * self.channels:   # learned-variance models: keep the ε half
            out = out[:, : self.channels]
        return out.to(x_t.device, x_t.dtype)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        return self.eps(x_t, t)

    def alpha_bar(self, t: torch.Tensor | int) -> torch.Tensor:
        """ᾱ_t as float64 CPU tensor; t = −1 gives ᾱ = 1 (the clean end of a DDIM chain)."""
        t = torch.as_tensor(t, dtype=torch.long).cpu()
        one = torch.ones((), dtype=torch.float64)
        return torch.where(t >= 0, self.alphas_cumprod[t.clamp(min=0)], one)

    def predict_x0(self, x_t: torch.Tensor, t: torch.Tensor | int,
                   eps: torch.Tensor | None = None) -> torch.Tensor:
        """x̂_0 = (x_t − √(1−ᾱ_t) ε_θ) / √ᾱ_t  (DDIM Eq. 9)."""
        if eps is None:
            eps = self.eps(x_t, t)
        a = self.alpha_bar(self._t(t, x_t.shape[0]).cpu()).to(x_t.device, torch.float32)
        a = a.view(-1, 1, 1, 1).to(x_t.dtype)
        return (x_t - (1 - a).sqrt() * eps) / a.sqrt()

    def ddim_timesteps(self, steps: int) -> torch.Tensor:
        """Descending timesteps, "leading" spacing (DDIM; diffusers DDIMScheduler default):
        t_i = i · (T // S) + steps_offset for i = S−1 … 0."""
        steps = int(steps)
        if not 1 <= steps <= self.num_train_timesteps:
            raise InputError(f"steps must be between 1 and {self.num_train_timesteps}, got {steps}")
        from diffusers import DDIMScheduler
        cfg = {k: v for k, v in self.scheduler_config.items()
               if k in ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule",
                        "trained_betas", "steps_offset")}
        sch = DDIMScheduler(timestep_spacing="leading", **cfg)
        sch.set_timesteps(steps)
        return sch.timesteps.to(torch.long).cpu()


# ----------------------------------------------------------------------------------------------
def _default_dtype(device: torch.device, dtype: torch.dtype | str | None) -> torch.dtype:
    if dtype is None:
        return torch.float16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, str):
        table = {"fp16": torch.float16, "float16": torch.float16, "bf16": torch.bfloat16,
                 "bfloat16": torch.bfloat16, "fp32": torch.float32, "float32": torch.float32}
        if dtype not in table:
            raise InputError(f"dtype {dtype!r}: use one of {sorted(table)}")
        return table[dtype]
    return dtype


def build_unet(unet_kwargs: dict[str, Any]):
    from diffusers import UNet2DModel
    kw = {k: v for k, v in unet_kwargs.items() if not k.startswith("_")}
    try:
        return UNet2DModel.from_config(kw)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"the UNet config could not be built ({e}): the config.json is not "
                              f"that of a diffusers UNet2DModel") from e


def build_prior(cfg: PriorConfig, seed: int | None = None) -> DiffusionPrior:
    """A randomly initialised prior for a config (training starts here)."""
    if seed is not None:
        torch.manual_seed(seed)
    unet = build_unet(cfg.unet)
    return DiffusionPrior(unet, cfg.scheduler_config(), cfg.to_dict(), source="random init")


def tiny_prior(image_size: int, channels: int, seed: int = 0) -> DiffusionPrior:
    """A random tiny UNet prior for tests (a few tens of thousands of parameters)."""
    cfg = PriorConfig.preset("tiny", image_size, channels, notes="random tiny prior for tests")
    with torch.random.fork_rng():
        return build_prior(cfg, seed=seed)


def _read_json(f: Path) -> dict[str, Any]:
    try:
        return json.loads(f.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{f} is not readable JSON ({e}); the file is corrupted") from e


def _load_weights(d: Path, names: tuple[str, ...]) -> tuple[dict[str, torch.Tensor], Path]:
    from ..checkpoint import load_state
    for name in names:
        f = d / name
        if not f.exists():
            continue
        if name.endswith(".safetensors"):
            return load_state(d, name), f
        # .bin: a pickle container; torch's weights_only unpickler accepts tensors only
        try:
            state = torch.load(str(f), map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises several kinds here (UnpicklingError, RuntimeError…)
            raise CheckpointError(f"{f} could not be read as a weights-only torch file ({e}); the "
                                  f"file is corrupted, truncated or holds more than tensors: "
                                  f"convert it to safetensors or re-download it") from e
        if not isinstance(state, dict):
            raise CheckpointError(f"{f} does not hold a state dict")
        return state, f
    raise CheckpointError(f"{d} has a config but no weights ({' or '.join(names)}): copy the "
                          f"weights file next to config.json")


def _finish(unet, state, where: str, device, dtype, sched: dict, config, source) -> DiffusionPrior:
    from ..checkpoint import load_into
    if hasattr(unet, "_fix_state_dict_keys_on_load"):   # old diffusers attention key names
        state = unet._fix_state_dict_keys_on_load(dict(state))
    load_into(unet, {k: v.float() if v.is_floating_point() else v for k, v in state.items()}, where)
    prior = DiffusionPrior(unet, sched, config, source=source)
    return prior.to(device=device, dtype=dtype)


def load_prior(path: str | Path, device: str | torch.device = "cpu",
               dtype: torch.dtype | str | None = None, expect_size: int | None = None,
               expect_channels: int | None = None, hub: bool = False) -> DiffusionPrior:
    """Load a prior: our dirs (config.json kind "sing.prior" + model.safetensors), or a local
    diffusers unconditional model, flat (config.json of a UNet2DModel + diffusion_pytorch_model.*
    + scheduler_config.json) or pipeline layout (model_index.json, unet/, scheduler/).
    fp16 on CUDA and fp32 elsewhere unless `dtype` says otherwise. `expect_size`/`expect_channels`
    refuse a prior for another resolution/colour count. A hub name (e.g. "google/ddpm-celebahq-256")
    is downloaded only when `hub=True` is passed explicitly."""
    device = torch.device(device)
    dtype = _default_dtype(device, dtype)
    d = Path(path)
    if not d.exists():
        if hub and "/" in str(path):
            from huggingface_hub import snapshot_download
            d = Path(snapshot_download(str(path)))
        else:                                       # a name through the model search path
            from ..paths import resolve_model
            d = resolve_model(path)
    if not d.is_dir():
        raise CheckpointError(f"prior {d} is a file; pass the directory that holds config.json")

    if (d / "model_index.json").exists():           # pipeline layout
        if not (d / "unet").is_dir():
            raise CheckpointError(f"{d} is a diffusers pipeline without a unet/ folder; sing needs "
                                  f"an unconditional UNet2DModel pipeline (e.g. DDPMPipeline)")
        ucfg_dir, sched_file = d / "unet", d / "scheduler" / "scheduler_config.json"
    else:
        ucfg_dir, sched_file = d, d / "scheduler_config.json"
    cfg_file = ucfg_dir / "config.json"
    if not cfg_file.exists():
        raise CheckpointError(f"{ucfg_dir} has no config.json: a prior directory needs its config "
                              f"next to its weights (ours: config.json + model.safetensors; "
                              f"diffusers: config.json + diffusion_pytorch_model.safetensors + "
                              f"scheduler_config.json)")
    raw = _read_json(cfg_file)

    if raw.get("kind") is not None:                 # one of ours
        cfg = PriorConfig.from_dict(raw, str(d))
        unet = build_unet(cfg.unet)
        _check_expected(d, unet, expect_size, expect_channels)
        state, f = _load_weights(d, ("model.safetensors",))
        sched, config, src = cfg.scheduler_config(), cfg.to_dict(), str(d)
    else:                                           # diffusers format
        cls = raw.get("_class_name", "UNet2DModel")
        if cls != "UNet2DModel":
            raise CheckpointError(f"{cfg_file} describes a {cls}; sing loads unconditional "
                                  f"UNet2DModel priors only")
        unet = build_unet(raw)
        _check_expected(d, unet, expect_size, expect_channels)
        state, f = _load_weights(ucfg_dir, DIFFUSERS_WEIGHTS)
        sched = _read_json(sched_file) if sched_file.exists() else {      # diffusers' DDPM defaults
            "num_train_timesteps": raw.get("num_train_timesteps") or 1000, "beta_start": 1e-4, "beta_end": 0.02,
            "beta_schedule": "linear"}
        sched.setdefault("prediction_type", "epsilon")
        config, src = None, str(d)

    return _finish(unet, state, str(f), device, dtype, sched, config, src)


def _check_expected(d: Path, unet, expect_size: int | None, expect_channels: int | None) -> None:
    size = unet.config.sample_size
    size = int(size[0] if isinstance(size, (tuple, list)) else size)
    if expect_size is not None and size != int(expect_size):
        raise CheckpointError(f"prior {d} was trained at {size}×{size}, but the data are "
                              f"{expect_size}×{expect_size}: use a prior for "
                              f"{expect_size}×{expect_size} images (or resize the data)")
    if expect_channels is not None and int(unet.config.in_channels) != int(expect_channels):
        raise CheckpointError(f"prior {d} models {unet.config.in_channels}-channel images, the "
                              f"data have {expect_channels}: use a matching prior")


def save_prior(directory: str | Path, prior: DiffusionPrior, config: PriorConfig | dict,
               card: str | None = None, fp16: bool = False) -> Path:
    """Write config.json + model.safetensors (+ README.md) for `prior.unet` (pass the EMA UNet)."""
    from ..checkpoint import save_model
    cfg = config.to_dict() if isinstance(config, PriorConfig) else dict(config)
    state = prior.unet.state_dict() if isinstance(prior, DiffusionPrior) else prior.state_dict()
    state = {k: (v.half() if fp16 and v.is_floating_point() else v.float() if v.is_floating_point()
                 else v) for k, v in state.items()}
    return save_model(directory, state, cfg, card=card)
