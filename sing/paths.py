# SPDX-License-Identifier: GPL-3.0-or-later
"""Where models are found by name, independent of the working directory.

A model is a directory (``config.json`` + ``model.safetensors``). Anything that takes a model
accepts either a path to such a directory or a bare *name* (``jscc-natural64-bcr1_48``; the kind
prefix may be left out: ``natural64-bcr1_48``). A name is looked up in these folders, first hit
wins (docs/gnuradio.md, "Models by name"):

1. every folder in ``$SING_MODEL_PATH`` (``:``-separated) — the explicit choice;
2. the ``models/`` folder of the checkout this library runs from (absent in an installed copy);
3. the user cache ``$XDG_CACHE_HOME/sing/models`` (default ``~/.cache/sing/models``);
4. the installed share folders ``<prefix>/share/gr-sing/models`` for the prefix ``make install``
   used (recorded next to an installed copy), ``/usr/local``, ``/usr`` and ``sys.prefix``.

A name that is found nowhere raises one ``CheckpointError`` that names the model, every folder
searched and the command that makes (or installs) it.

A JSCC model's own parts sit next to it (`parts_of`): SING-Zero's calibration in ``<jscc>/calibration``,
SING-INN in ``<jscc>-inn``. The checkout's shipped models per data set: `model_dir_for`, `prior_dir_for`.
"""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from .errors import CheckpointError

PACKAGE_DIR = Path(__file__).resolve().parent
MODELS_DIR = PACKAGE_DIR.parent / "models"          # the checkout's shipped models
SHARE_SUBDIR = Path("share") / "gr-sing" / "models"
KIND_PREFIXES = ("jscc-", "prior-")
# Written by `make install` next to the installed copy of this package: the install prefix.
INSTALL_PREFIX_FILE = PACKAGE_DIR / "_install_prefix.txt"


def cache_dir() -> Path:
    """Where derived data (data caches, converted LPIPS weights) lives: ``$SING_CACHE`` with ``~``
    expanded (an empty value counts as unset), else ``~/.cache/sing``."""
    env = os.environ.get("SING_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "sing"


def user_model_dir() -> Path:
    """The per-user model cache: ``$XDG_CACHE_HOME/sing/models`` (``~/.cache/sing/models``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "sing" / "models"


def installed_model_dirs() -> list[Path]:
    """``<prefix>/share/gr-sing/models`` for the recorded install prefix and the usual ones."""
    prefixes: list[Path] = []
    if INSTALL_PREFIX_FILE.is_file():
        prefixes.append(Path(INSTALL_PREFIX_FILE.read_text().strip()))
    prefixes += [Path("/usr/local"), Path("/usr"), Path(sys.prefix)]
    return list(dict.fromkeys(p / SHARE_SUBDIR for p in prefixes))      # in order, once each


def model_search_path() -> list[Path]:
    """The folders a model name is looked up in, in order (module docstring)."""
    dirs = [Path(p).expanduser() for p in os.environ.get("SING_MODEL_PATH", "").split(os.pathsep) if p]
    if (PACKAGE_DIR.parent / "pyproject.toml").is_file():      # running from a checkout
        dirs.append(MODELS_DIR)
    dirs.append(user_model_dir())
    dirs += installed_model_dirs()
    return list(dict.fromkeys(dirs))


def is_model_name(s: str | os.PathLike) -> bool:
    """A bare name (no folder part, not '.'/'..', not starting with '~')."""
    s = str(s)
    return bool(s) and os.sep not in s and "/" not in s and s not in (".", "..") and not s.startswith("~")


def _candidates(name: str) -> list[str]:
    if name.startswith(KIND_PREFIXES):
        return [name]
    return [name] + [p + name for p in KIND_PREFIXES]


def make_hint(name: str) -> str:
    """The command that makes (or installs) a model of this name."""
    full = name if name.startswith(KIND_PREFIXES) else "jscc-" + name
    dest = f"{user_model_dir()}/{full}"
    shipped = "the shipped models are installed by `make install` in a gr-sing checkout; to make this one: "
    m = re.fullmatch(r"jscc-([a-z]+?)(\d+)-bcr(\d+)_(\d+)(-perceptual)?", full)
    if m:
        data, _, a, b, perc = m.groups()
        lpips = " --lpips-weight 0.1" if perc else ""
        return shipped + f"`sing train-jscc --data {data} --bcr {a}/{b} --out {dest}{lpips}`"
    m = re.fullmatch(r"prior-([a-z]+)-(\d+)", full)
    if m:
        return shipped + f"`sing train-prior --data {m.group(1)} --out runs/{full} --export {dest}`"
    return (f"`make install` in a gr-sing checkout installs the shipped models; a model of your own "
            f"goes into {user_model_dir()}/<name> or a folder on SING_MODEL_PATH (sing train-jscc / "
            f"train-prior / train-inn --out)")


def resolve_model(name_or_path: str | os.PathLike) -> Path:
    """The model directory for a path (returned as is when it exists) or a name (searched).

    Raises CheckpointError naming the model, the folders searched and the command that makes it."""
    p = Path(os.path.expanduser(str(name_or_path)))
    if p.exists():
        return p
    s, searched = str(name_or_path), model_search_path()
    if not is_model_name(s):
        raise CheckpointError(
            f"model directory {s} does not exist (relative paths count from the working directory "
            f"{os.getcwd()}): give an existing directory, or a model name such as "
            f"'{Path(s).name}' to search {', '.join(map(str, searched))}")
    for d in searched:
        for c in _candidates(s):
            if (d / c).is_dir():
                return d / c
    raise CheckpointError(
        f"model '{s}' not found; looked in: {', '.join(map(str, searched))} "
        f"(set SING_MODEL_PATH to add a folder). {make_hint(s)}")


def parts_of(jscc_dir: str | os.PathLike) -> dict[str, Path]:
    """Where a JSCC model's own parts live (module doc): {"calibration": <jscc>/calibration,
    "inn": <jscc>-inn}."""
    d = Path(jscc_dir)
    return {"calibration": d / "calibration", "inn": d.parent / (d.name + "-inn")}


def model_dir_for(dataset: str, bcr: str, perceptual: bool = False) -> Path:
    """The shipped JSCC model for a data set (mismatch sets use the other domain's model)."""
    domain = "fmnist32" if dataset in ("fmnist", "natural-gray32") else "natural64"
    return MODELS_DIR / f"jscc-{domain}-bcr{bcr.replace('/', '_')}{'-perceptual' if perceptual else ''}"


def prior_dir_for(dataset: str) -> Path:
    return MODELS_DIR / ("prior-fmnist-32" if dataset in ("fmnist", "natural-gray32") else "prior-natural-64")
