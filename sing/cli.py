# SPDX-License-Identifier: GPL-3.0-or-later
"""`sing` command line. Each subcommand lives in its own module exposing
`add_arguments(parser)` and `run(args) -> int`; modules are imported only when needed so that
`sing --help` stays fast and a broken optional part never takes the others down."""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("sing.commands.demo", "send test images through the link and restore them (the main job)"),
    "eval": ("sing.commands.eval", "evaluate a method on a data split; writes a sing.eval/1 result file"),
    "methods": ("sing.commands.methods", "list the restoration methods, their parameters and costs"),
    "train-jscc": ("sing.jscc.train", "train a DeepJSCC encoder/decoder (resumable)"),
    "lpips": ("sing.metrics.cli", "LPIPS-AlexNet v0.1 distance between two images"),
    "data": ("sing.commands.data", "build/inspect the data sets (natural crops, Fashion-MNIST)"),
    "train-prior": ("sing.prior.train", "train a DDPM diffusion prior (resumable, accelerate)"),
    "sample": ("sing.prior.sample", "unconditional samples from a prior"),
    "calibrate": ("sing.zero.calibrate", "fit SING-Zero's linear operators to a DeepJSCC model"),
    "train-inn": ("sing.inn.train", "train SING-INN's invertible degradation model"),
    "worker": ("sing.worker.server", "serve decoding + restoration over ZeroMQ"),
    "broker": ("sing.worker.broker", "load-balance receivers over many workers"),
    "keys": ("sing.worker.keys", "generate ZeroMQ CURVE key pairs"),
    "bench": ("sing.commands.bench", "speed benchmarks (prior, guidance, worker, radio)"),
}


def command_line(name: str, args, keys) -> str:
    """`sing NAME --key value …` for the options of `args` named in `keys` that are set (not None):
    the command a result file or model card records. Lists are space-separated."""
    val = (lambda v: " ".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v))
    return " ".join([f"sing {name}"] + [f"--{k.replace('_', '-')} {val(v)}" for k, v in vars(args).items()
                                        if k in keys and v is not None])


def call_with_options(fn, args, *positional):
    """`fn(*positional, name=args.name, …)` for each further parameter of `fn` that `args` has: a
    command's options are named like the keyword arguments of the class it runs."""
    import inspect
    names = list(inspect.signature(fn).parameters)[len(positional):]
    return fn(*positional, **{n: getattr(args, n) for n in names if hasattr(args, n)})


def _load(name: str):
    mod, _ = COMMANDS[name]
    try:
        return importlib.import_module(mod)
    except ModuleNotFoundError as e:
        if e.name and (e.name == mod or mod.startswith(e.name + ".")):
            return None
        raise


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sing", description="SING: diffusion-restored DeepJSCC image "
                                "transmission over GNU Radio. `sing COMMAND --help` for each command.")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name, (mod, help_) in COMMANDS.items():
        if only is not None and name != only:
            sub.add_parser(name, help=help_, add_help=False)
            continue
        m = _load(name)
        sp = sub.add_parser(name, help=help_, description=help_)
        if m is None:
            sp.set_defaults(_missing=mod)
        else:
            m.add_arguments(sp)
            sp.set_defaults(_run=m.run)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    first = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(first if first in COMMANDS else None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    if not args.command:
        parser.print_help()
        return 0
    if getattr(args, "_missing", None):
        print(f"sing {args.command}: not available in this installation ({args._missing} missing)",
              file=sys.stderr)
        return 2
    from .errors import SingError
    try:
        return int(args._run(args) or 0)
    except SingError as e:
        print(f"sing {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
