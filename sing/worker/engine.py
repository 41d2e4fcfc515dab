"""What the worker computes with: the models loaded once, and one call per batch.

`Engine.restore(model_id, method, y, snr_db, ids, seed, params)` → float (B, C, H, W) in [0, 1].
It delegates to `sing.methods.Receiver` (the one place that chooses methods); while that module
is absent it serves `deepjscc` (the plain decoder) only.
"""
from __future__ import annotations

import importlib
import inspect
import logging
from dataclasses import dataclass

import torch

from ..errors import CheckpointError, InputError

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


def _load(module: str, names: tuple[str, ...], path: str, device):
    """Call the first loader that exists: module.name(path, device=…)."""
    try:
        m = importlib.import_module(module)
    except ModuleNotFoundError as e:
        raise CheckpointError(f"cannot load {path}: {module} is not available ({e})") from e
    for n in names:
        fn = getattr(m, n, None)
        if fn is not None:
            try:
                return fn(path, device=device)
            except TypeError:
                return fn(path)
    raise CheckpointError(f"cannot load {path}: {module} has none of {names}")


class Engine:
    def __init__(self, jscc_dirs: list[str], prior: str | None = None,
                 calibration: list[str] | None = None, inn: str | None = None, device: str = "auto"):
        from ..jscc import load_jscc
        if not jscc_dirs:
            raise InputError("the worker needs at least one --jscc DIR (a DeepJSCC model directory)")
        self.device = pick_device(device)
        self.models: dict[str, torch.nn.Module] = {}
        self.info: dict[str, ModelInfo] = {}
        for d in jscc_dirs:
            m = load_jscc(d, device=str(self.device))
            m.eval()
            mid = str(m.model_id)
            self.models[mid] = m
            k = int(_cfg(m, "k"))
            c, s = int(_cfg(m, "channels", 3)), int(_cfg(m, "image_size", 64))
            self.info[mid] = ModelInfo(mid, k, (c, s, s))
            log.info("loaded JSCC %s from %s (k=%d, %dx%dx%d)", mid, d, k, c, s, s)
        self.prior = _load("sing.prior", ("load_prior",), prior, self.device) if prior else None
        self.calibrations = [_load("sing.zero", ("load_calibration",), c, self.device)
                             for c in (calibration or [])]
        self.inn = _load("sing.inn", ("load_inn",), inn, self.device) if inn else None
        self.receivers: dict[str, object] = {}
        try:
            from ..methods import Receiver
        except ModuleNotFoundError as e:
            if e.name not in ("sing.methods",):
                raise
            Receiver = None
            log.warning("sing.methods is not available: serving deepjscc only")
        if Receiver is not None:
            for mid, m in self.models.items():
                cal = [c for c in self.calibrations
                       if getattr(c, "model_id", None) in (None, mid)]
                self.receivers[mid] = Receiver(m, prior=self.prior,
                                               calibration=cal[0] if cal else None, inn=self.inn)
            self._methods = sorted(set().union(*(set(r.methods()) for r in self.receivers.values())))
        else:
            self._methods = ["deepjscc"]

    def methods(self) -> list[str]:
        return list(self._methods)

    @torch.no_grad()
    def restore(self, model_id: str, method: str, y: torch.Tensor, snr_db: torch.Tensor,
                ids: list[str], seed: int = 0, params: dict | None = None) -> torch.Tensor:
        params = dict(params or {})
        y = y.to(self.device)
        snr_db = snr_db.to(self.device)
        r = self.receivers.get(model_id)
        if r is not None:
            return r.restore(method, y, snr_db, ids, seed=seed, **params)
        if method != "deepjscc":
            raise InputError(f"method {method!r} is not served here: available {self.methods()}")
        return self.models[model_id].decode(y, snr_db)

    def status(self) -> dict:
        return {"models": {m: {"k": i.k, "shape": list(i.shape)} for m, i in self.info.items()},
                "methods": self.methods(), "device": device_name(self.device),
                "prior": self.prior is not None, "inn": self.inn is not None,
                "calibrations": len(self.calibrations)}
