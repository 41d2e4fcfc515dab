# SPDX-License-Identifier: GPL-3.0-or-later
"""Restoration methods: registry.py declares each one once (name, parameters, needs, cost, how it
runs; standard library only), receiver.py runs them (`Receiver`, `bound`, `load_receiver`; torch,
imported on first use so that the broker and the radio host can read the registry without torch)."""
from ..paths import MODELS_DIR, model_dir_for, prior_dir_for  # noqa: F401  (where the shipped models are)
from .registry import (DEFAULT_MAX_COST, METHODS, REGISTRY, SERVED, Cost, Method, Param, cost_of,  # noqa: F401
                       get)

_RECEIVER = ("Receiver", "bound", "load_receiver")


def __getattr__(name: str):
    if name in _RECEIVER:
        from . import receiver
        return getattr(receiver, name)
    raise AttributeError(f"module 'sing.methods' has no attribute {name!r}")
