# SPDX-License-Identifier: GPL-3.0-or-later
"""What the worker computes with: the models loaded once, and one call per batch.

`Engine.run(model_id, method, y, snr_db, ids, seed, params)` → (float (B, C, H, W) in [0, 1],
timings {decode_ms, restore_ms}). It delegates to `sing.methods.Receiver` (the one place that
chooses methods).

Several JSCC models per worker: each may have its own SING-Zero calibration and SING-INN. Besides
the explicit `--calibration DIR` / `--inn DIR` (repeatable), the worker finds them next to each
`--jscc DIR` by the usual layout, `DIR/calibration` and `DIR-inn` (as `sing eval` does); an
explicit one wins over a found one for the same model. Each is matched to its model by the JSCC
model id recorded in its config (`sing.methods.load_receiver`). The methods a model offers
depend on what it has (`Engine.methods_for`); the wire refuses the others with `unknown_method`.
Admission (`Engine.admit`, before queueing): a request costing more than `max_cost` network passes
(`sing.methods.cost_of`; `sing worker --max-cost`) is refused with `too_expensive`.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from ..checkpoint import model_dir
from ..errors import InputError
from ..methods.registry import DEFAULT_MAX_COST
from ..paths import parts_of
from . import protocol as P

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


def _as_list(x) -> list[str]:
    if x is None:
        return []
    if isinstance(x, (str, Path)):
        return [str(x)]
    return [str(a) for a in x]


def _recorded_id(d: Path, key: str) -> str | None:
    try:
        return str(json.loads((d / "config.json").read_text()).get(key) or "") or None
    except (OSError, ValueError):
        return None


def discover(jscc_dirs, calibration=None, inn=None) -> tuple[list[str], list[str]]:
    """Explicit calibration/INN dirs, plus those found next to each JSCC dir (`sing.paths.parts_of`:
    `<jscc>/calibration`, `<jscc>-inn`) for models that no explicit one covers (matched on the model
    id in their configs)."""
    found = []
    for given, part, key in ((calibration, "calibration", "model_id"), (inn, "inn", "jscc_model_id")):
        dirs = _as_list(given)
        have = {_recorded_id(Path(c), key) for c in dirs}
        for c in (parts_of(model_dir(d))[part] for d in jscc_dirs):   # a folder, or a name (sing.paths)
            if (c / "config.json").exists() and _recorded_id(c, key) not in have:
                dirs.append(str(c))
                have.add(_recorded_id(c, key))
        found.append(dirs)
    return found[0], found[1]


class Engine:
    """The models, loaded once through `sing.methods.load_receiver`."""

    def __init__(self, jscc_dirs: list[str], prior: str | None = None,
                 calibration: str | list[str] | None = None, inn: str | list[str] | None = None,
                 device: str = "auto", discover_parts: bool = True, autocast: str | None = None,
                 max_cost: int = DEFAULT_MAX_COST):
        from ..methods import load_receiver
        if not jscc_dirs:
            raise InputError("the worker needs at least one --jscc DIR (a DeepJSCC model directory)")
        self.device = pick_device(device)
        cals, inns = _as_list(calibration), _as_list(inn)
        if discover_parts and prior is not None:
            cals, inns = discover(jscc_dirs, cals, inns)
        self.receiver = load_receiver(jscc_dirs, prior, cals or None, inns or None,
                                      device=str(self.device), autocast=autocast)
        self.info: dict[str, ModelInfo] = {}
        self.views = {}                 # model id -> a Receiver holding that model and its parts only
        self.parts: dict[str, dict] = {}
        for mid in self.receiver.model_ids():
            m = self.receiver.model(mid)
            k, c, s = m.config.k, m.config.channels, m.config.image_size      # a JSCCConfig
            self.info[mid] = ModelInfo(mid, k, (c, s, s))
            own = self.receiver.parts_for(mid)
            self.views[mid] = replace(self.receiver, jscc={mid: m}, **own)
            self.parts[mid] = {p: v is not None for p, v in own.items()}
            log.info("loaded JSCC %s (k=%d, %dx%dx%d): methods %s", mid, k, c, s, s,
                     self.views[mid].methods())
        self.has_prior, self.max_cost = prior is not None, max_cost

    def k_for(self, model_id: str, shape: tuple[int, int] | None) -> int:
        """Symbols per image of `shape` (H, W) through this model (sing.jscc.model.k_for_shape;
        None: the model's own size). Raises ProtocolError(BAD_REQUEST) for a size it cannot take."""
        if shape is None:
            return self.info[model_id].k
        try:
            return int(self.receiver.model(model_id).k_at(*shape))
        except InputError as e:
            raise P.ProtocolError(P.BAD_REQUEST, str(e)) from None

    def methods(self) -> list[str]:
        """Methods offered for at least one model (in order, once each)."""
        return list(dict.fromkeys(m for v in self.views.values() for m in v.methods()))

    def methods_for(self, model_id: str) -> list[str]:
        return list(self.views[model_id].methods())

    def admit(self, req: P.Request) -> None:
        """Refuse a request over the cost budget (ProtocolError too_expensive) before it queues.
        An image larger than the prior costs its cost × the UNet work per step in passes at the
        prior's own size (Receiver.size_factor): the budget bounds the work, whatever the image size."""
        cost = P.check_cost(req.method, req.params, self.max_cost, req.id)
        n = self.views[req.model].size_factor(req.method, req.shape) if req.model in self.views else 1
        if n > 1 and self.max_cost is not None and cost * n > self.max_cost:
            raise P.ProtocolError(P.TOO_EXPENSIVE, f"{req.method} on a {req.shape[0]}×{req.shape[1]} image "
                                                   f"costs {n} prior passes per step at its native size: "
                                                   f"{cost} × {n} = {cost * n} "
                                                   f"network passes, over the limit here ({self.max_cost}); "
                                                   f"send a smaller image, fewer steps, or raise --max-cost",
                                  req.id)

    @torch.no_grad()
    def run(self, model_id: str, method: str, y: torch.Tensor, snr_db: torch.Tensor,
            ids: list[str], seed: int = 0, params: dict | None = None,
            shape: tuple[int, int] | None = None) -> tuple[torch.Tensor, dict]:
        """Restore one batch of H×W images (`shape` from the request meta; None: the model's
        size); also returns {decode_ms, restore_ms} (decode_ms None for a method that decodes
        inside, i.e. dps)."""
        from ..methods import get
        rx = self.views[model_id]
        params = dict(params or {})
        t0 = time.perf_counter()
        m = get(method)
        if m.input == "x_hat" and m.run is not None:
            snr = torch.as_tensor(snr_db, dtype=torch.float32)
            x_hat = rx.decode(y, snr, model_id, shape)
            t1 = time.perf_counter()
            x = rx.restore_from(method, x_hat, snr, ids, seed=seed, model_id=model_id, **params)
            t2 = time.perf_counter()
            return x, {"decode_ms": round((t1 - t0) * 1e3, 3), "restore_ms": round((t2 - t1) * 1e3, 3)}
        x = rx.restore(method, y, snr_db, ids, seed=seed, model_id=model_id, shape=shape, **params)
        t1 = time.perf_counter()
        ms = round((t1 - t0) * 1e3, 3)
        if m.input == "symbols":
            return x, {"decode_ms": None, "restore_ms": ms}
        return x, {"decode_ms": ms, "restore_ms": 0.0}

    def restore(self, model_id: str, method: str, y: torch.Tensor, snr_db: torch.Tensor,
                ids: list[str], seed: int = 0, params: dict | None = None) -> torch.Tensor:
        return self.run(model_id, method, y, snr_db, ids, seed, params)[0]

    def status(self) -> dict:
        return {"models": {m: {"k": i.k, "shape": list(i.shape), "methods": self.methods_for(m),
                               **self.parts[m]} for m, i in self.info.items()},
                "methods": self.methods(), "device": device_name(self.device), "prior": self.has_prior,
                "max_cost": self.max_cost}
