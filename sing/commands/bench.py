# SPDX-License-Identifier: GPL-3.0-or-later
"""`sing bench WHAT`: speed benchmarks, each writing a result file (docs/BENCHMARKS.md, Speed).

    sing bench prior     UNet seconds per image at batch 1 and 16            (sing.prior.bench)
    sing bench guidance  guided step ÷ plain step, SING-Zero / SING-INN       (sing.zero.bench)
    sing bench inn-guidance  guided step ÷ plain step, SING-INN           (sing.inn.bench)
    sing bench worker    images/s at batch 1/4/16, ZeroMQ ÷ in-process        (sing.worker.bench)
"""
from __future__ import annotations

import argparse
import importlib

TARGETS = {"prior": "sing.prior.bench", "guidance": "sing.zero.bench", "inn-guidance": "sing.inn.bench",
           "worker": "sing.worker.bench"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="what", metavar="WHAT", required=True)
    for name, mod in TARGETS.items():
        try:
            m = importlib.import_module(mod)
        except ModuleNotFoundError:
            sp = sub.add_parser(name, help=f"({mod} not installed)")
            sp.set_defaults(_bench=None, _mod=mod)
            continue
        sp = sub.add_parser(name, help=(m.__doc__ or name).strip().split("\n")[0])
        m.add_arguments(sp)
        sp.set_defaults(_bench=m.run, _mod=mod)


def run(args) -> int:
    if args._bench is None:
        print(f"sing bench {args.what}: {args._mod} is not available in this installation")
        return 2
    return int(args._bench(args) or 0)
