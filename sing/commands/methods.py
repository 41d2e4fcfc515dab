# SPDX-License-Identifier: GPL-3.0-or-later
"""`sing methods`: the restoration methods as sing/methods/registry.py declares them."""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--markdown", action="store_true", help="the docs table (docs/methods.md)")


def run(args) -> int:
    from ..methods.registry import REGISTRY, cost_of, markdown
    if args.markdown:
        print(markdown(), end="")
        return 0
    for m in REGISTRY.values():
        prm = ", ".join(f"{p.name}={p.default}" for p in m.params if p.default is not None)
        print(f"{m.name:20s} cost {cost_of(m.name):4d}  {m.summary}" + (f"  [{prm}]" if prm else ""))
    return 0
