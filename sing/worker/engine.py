"""What the worker computes with: the models loaded once, and one call per batch.

`Engine.restore(model_id, method, y, snr_db, ids, seed, params)` → float (B, C, H, W) in [0, 1].
It delegates to `sing.methods.Receiver` (the one place that chooses methods).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from ..errors import InputError

log = logging.getLogger("sing.worker")


def pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        d = torch.device(device)
    except RuntimeError as e:
        raise InputError(f"--device {device!r} is not a device: use auto, cpu, cuda or cuda:N") from e
    if d.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {device}: CUDA is not available on this host; use --device cpu")
    return d


def device_name(d: torch.device) -> str:
    if d.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(d)}"
    return "cpu"


@dataclass(frozen=True)
class ModelInfo:
    model_id: str
    k: int
    shape: tuple[int, int, int]       # (C, H, W)


def _cfg(model, name, default=None):
    cfg = getattr(model, "config", None)
    if isinstance(cfg, dict):
        return cfg.get(name, default)
    return getattr(cfg, name, default)


class Engine:
    """The models, loaded once through `sing.methods.load_receiver`."""

    def __init__(self, jscc_dirs: list[str], prior: str | None = None,
                 calibration: str | None = None, inn: str | None = None, device: str = "auto"):
        from ..methods import load_receiver
        if not jscc_dirs:
            raise InputError("the worker needs at least one --jscc DIR (a DeepJSCC model directory)")
        self.device = pick_device(device)
        self.receiver = load_receiver(jscc_dirs, prior, calibration, inn, device=str(self.device))
        self.info: dict[str, ModelInfo] = {}
        for mid in self.receiver.model_ids():
            m = self.receiver.model(mid)
            k = int(_cfg(m, "k"))
            c, s = int(_cfg(m, "channels", 3)), int(_cfg(m, "image_size", 64))
            self.info[mid] = ModelInfo(mid, k, (c, s, s))
            log.info("loaded JSCC %s (k=%d, %dx%dx%d)", mid, k, c, s, s)
        self.has = {"prior": prior is not None, "calibration": calibration is not None,
                    "inn": inn is not None}

    def methods(self) -> list[str]:
        return list(self.receiver.methods())

    @torch.no_grad()
    def restore(self, model_id: str, method: str, y: torch.Tensor, snr_db: torch.Tensor,
                ids: list[str], seed: int = 0, params: dict | None = None) -> torch.Tensor:
        return self.receiver.restore(method, y, snr_db, ids, seed=seed, model_id=model_id,
                                     **dict(params or {}))

    def status(self) -> dict:
        return {"models": {m: {"k": i.k, "shape": list(i.shape)} for m, i in self.info.items()},
                "methods": self.methods(), "device": device_name(self.device), **self.has}
