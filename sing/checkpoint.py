# SPDX-License-Identifier: GPL-3.0-or-later
"""Model directories: `model.safetensors` + `config.json` (+ optional `README.md` model card).

No pickle anywhere: weights are safetensors, configs are JSON. Every config carries a `kind`
(e.g. "sing.jscc") and a `version`, so that loading a checkpoint into the wrong kind of model is
refused with a clear message.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .errors import CheckpointError

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
# Model cards are regenerated on every save; what follows this line in a card is hand-written
# (results, caveats) and survives regeneration.
NOTES_MARKER = "<!-- notes: everything below is hand-written and kept by write_card -->"


def card_with_notes(card_path: str | os.PathLike, card: str) -> str:
    """`card` plus the hand-written tail (from NOTES_MARKER on) of the card now at card_path, if any."""
    p = Path(card_path)
    if p.exists():
        old = p.read_text()
        if NOTES_MARKER in old:
            return card.rstrip("\n") + "\n\n" + NOTES_MARKER + old.split(NOTES_MARKER, 1)[1]
    return card


def save_model(directory: str | os.PathLike, state: dict[str, torch.Tensor], config: dict[str, Any],
               card: str | None = None) -> Path:
    """Write weights and config atomically (temp file + rename) so a kill never leaves half a file."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    save_tensors(state, d / WEIGHTS, metadata={"kind": str(config.get("kind", ""))})
    write_json(d / CONFIG, config)
    if card is not None:
        (d / "README.md").write_text(card_with_notes(d / "README.md", card))
    return d


def save_tensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict | None = None) -> None:
    """save_file (of contiguous CPU copies) through a temp file + rename: a kill never leaves half a file."""
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    os.replace(tmp, path)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


def model_dir(directory: str | os.PathLike) -> Path:
    """An existing model path as is; otherwise a model *name* resolved through the search path
    (sing.paths: $SING_MODEL_PATH, the checkout's models/, ~/.cache/sing/models, the installed
    <prefix>/share/gr-sing/models). A missing model raises one CheckpointError that names it, where
    it was looked for and the command that makes it."""
    from .paths import resolve_model
    return resolve_model(directory)


def load_config(directory: str | os.PathLike, kind: str | None = None) -> dict[str, Any]:
    d = model_dir(directory)
    f = d / CONFIG if d.is_dir() else d
    if not f.exists():
        raise CheckpointError(f"{d} has no {CONFIG}: a model directory needs its config next to its "
                              f"weights; re-save the model with sing's save_model or restore the file")
    try:
        cfg = json.loads(f.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{f} is not valid JSON ({e}); the file is corrupted") from e
    if kind is not None and cfg.get("kind") != kind:
        raise CheckpointError(f"{d} holds a {cfg.get('kind')!r} model, expected {kind!r}: "
                              f"point to a {kind} checkpoint")
    return cfg


def load_state(directory: str | os.PathLike, weights_name: str = WEIGHTS) -> dict[str, torch.Tensor]:
    f = model_dir(directory) / weights_name
    if not f.exists():
        raise CheckpointError(f"{f} is missing: the model directory has a config but no weights")
    try:
        return load_file(str(f))                       # on the CPU
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{f} could not be read as safetensors ({e}); the file is corrupted or "
                              f"truncated: re-download or re-train it") from e


def load_into(module: torch.nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """load_state_dict with an error that names the mismatch instead of a 200-line traceback."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    bad = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or extra or bad:
        detail = [f"{what} {keys[:3]}{'…' if len(keys) > 3 else ''}"
                  for what, keys in (("missing", missing), ("unexpected", extra)) if keys]
        if bad:
            detail.append("shape mismatch " + ", ".join(
                f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}" for k in bad[:3]))
        raise CheckpointError(f"weights in {where} do not match its config ({'; '.join(detail)}): "
                              f"the config.json and model.safetensors come from different models")
    module.load_state_dict(state)


def file_digest(path: str | os.PathLike, n: int = 16) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:n]


def model_id(directory: str | os.PathLike) -> str:
    """A stable id for a model directory: its name + a digest of its weights (used on the wire)."""
    d = model_dir(directory)
    return f"{d.name}@{file_digest(d / WEIGHTS, 12)}"


# ---------------------------------------------------------------------------------------------
# Training state (for resume): model + EMA + optimizer tensors in one safetensors file, scalars in
# JSON. Optimizer state is flattened as "opt.<param index>.<name>"; no pickle is involved.
TRAIN_STATE = "train_state.safetensors"
TRAIN_META = "train_state.json"


def save_train_state(directory: str | os.PathLike, *, model: torch.nn.Module,
                     optimizer: torch.optim.Optimizer | None = None,
                     ema: torch.nn.Module | None = None, step: int = 0,
                     extra: dict[str, Any] | None = None) -> None:
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    tensors = {"model." + k: v for k, v in model.state_dict().items()}
    if ema is not None:
        tensors.update({"ema." + k: v for k, v in ema.state_dict().items()})
    opt_meta: dict[str, Any] = {}
    if optimizer is not None:
        sd = optimizer.state_dict()
        for idx, st in sd["state"].items():
            for name, val in st.items():
                if torch.is_tensor(val):
                    tensors[f"opt.{idx}.{name}"] = val
                else:
                    opt_meta.setdefault(str(idx), {})[name] = val
        opt_meta["param_groups"] = sd["param_groups"]
    save_tensors({k: v.detach().clone() for k, v in tensors.items()}, d / TRAIN_STATE)
    write_json(d / TRAIN_META, {"step": int(step), "optimizer": opt_meta, "extra": extra or {}})


def has_train_state(directory: str | os.PathLike) -> bool:
    d = Path(directory)
    return (d / TRAIN_STATE).exists() and (d / TRAIN_META).exists()


def load_train_state(directory: str | os.PathLike, *, model: torch.nn.Module,
                     optimizer: torch.optim.Optimizer | None = None,
                     ema: torch.nn.Module | None = None) -> dict[str, Any]:
    """Restore what save_train_state wrote; returns {"step", "extra"}."""
    d = Path(directory)
    tensors = load_state(d, TRAIN_STATE)
    try:
        meta = json.loads((d / TRAIN_META).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{d / TRAIN_META} is unreadable ({e}); delete the run directory "
                              f"to start over") from e
    pick = lambda prefix: {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    load_into(model, pick("model."), str(d))
    if ema is not None:
        load_into(ema, pick("ema."), str(d))
    if optimizer is not None and meta.get("optimizer"):
        om = meta["optimizer"]      # the non-tensor entries, then the tensors "opt.<index>.<name>"
        state = {int(idx): dict(st) for idx, st in om.items() if idx != "param_groups"}
        for k, v in tensors.items():
            if k.startswith("opt."):
                _, idx, name = k.split(".", 2)
                state.setdefault(int(idx), {})[name] = v
        optimizer.load_state_dict({"state": state, "param_groups": om["param_groups"]})
    return {"step": int(meta.get("step", 0)), "extra": meta.get("extra", {})}
