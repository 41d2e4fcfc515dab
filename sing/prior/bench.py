# SPDX-License-Identifier: GPL-3.0-or-later
"""`sing bench prior`: UNet seconds per image (one ε_θ evaluation) at batch 1 and 16.

This is the floor of every sampler: DDIM/SING-Zero/SING-INN each cost (steps × this) per image
plus their guidance overhead. Median over repeats after a warm-up; no_grad; the device named.
Result file: sim/results/prior/bench-<prior>-<device>.json (schema sing.bench.prior/1).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--prior", default="models/prior-natural-64",
                   help="prior directory (ours or a local diffusers model)")
    p.add_argument("--batches", default="1,16", help="comma-separated batch sizes")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default=None, help="fp32 | fp16 | bf16 (default fp16 on GPU, fp32 on CPU)")
    p.add_argument("--autocast", default=None, choices=("bf16", "fp16"),
                   help="also time the UNet under torch.autocast (DiffusionPrior.set_autocast)")
    p.add_argument("--out-dir", default="sim/results/prior")


def add_guidance_arguments(p: argparse.ArgumentParser, batch: int, steps: int, repeats: int,
                           out: str) -> None:
    """The options of the guidance-overhead benches (`sing bench guidance`, `sing bench inn-guidance`)."""
    p.add_argument("--prior", default=None, help="prior directory (default: a random UNet of --preset)")
    p.add_argument("--preset", default="base", help="UNet preset when no --prior (default base: the "
                   "docs/OFFLINE.md prototype size)")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--channels", type=int, default=3)
    p.add_argument("--batch", type=int, default=batch)
    p.add_argument("--steps", type=int, default=steps, help="DDIM steps per timed run")
    p.add_argument("--repeats", type=int, default=repeats)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=out)


def guidance_prior(args) -> tuple:
    """(prior, description) for the guidance benches: --prior, else a random UNet of --preset (the
    cost does not depend on the weights, only on the architecture). Sets --threads first."""
    from .model import PriorConfig, build_prior, load_prior
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.prior:
        return load_prior(args.prior, device=args.device), args.prior
    prior = build_prior(PriorConfig.preset(args.preset, args.size, args.channels), seed=0).to(args.device)
    return prior, f"random {args.preset} UNet {args.channels}×{args.size}²"


def timed_runs(fns: dict, repeats: int, device="cpu", per: float = 1.0) -> dict[str, list[float]]:
    """Seconds per call ÷ `per` of each function, `repeats` rounds after one warm-up call each
    (allocations, cudnn autotune, lazy caches). The functions are interleaved within a round, so that
    load from other processes hits all alike; CUDA is synchronised around each call. The one timing
    loop of `sing bench prior`, `guidance` and `inn-guidance`."""
    dev = torch.device(device)
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    for f in fns.values():
        f()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, f in fns.items():
            sync()
            t0 = time.perf_counter()
            f()
            sync()
            times[name].append((time.perf_counter() - t0) / per)
    return times


@torch.no_grad()
def bench_unet(prior, batches=(1, 16), repeats: int = 5) -> list[dict]:
    rows = []
    dev = prior.device
    for b in batches:
        x = torch.randn(b, prior.channels, prior.image_size, prior.image_size, device=dev,
                        dtype=prior.dtype)
        t = torch.full((b,), 500, dtype=torch.long, device=dev)
        times = timed_runs({"eps": lambda: prior.eps(x, t)}, repeats, dev)["eps"]
        med = statistics.median(times)
        rows.append({"batch": b, "seconds_per_call": med, "seconds_per_image": med / b,
                     "images_per_second": b / med, "repeats": repeats,
                     "min_s": min(times), "max_s": max(times)})
    return rows


def run(args: argparse.Namespace) -> int:
    from ..commands.eval import device_name, git_commit
    from .model import load_prior
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    prior = load_prior(args.prior, device=args.device, dtype=args.dtype)
    batches = [int(b) for b in str(args.batches).split(",") if b.strip()]
    rows = [dict(r, autocast=None) for r in bench_unet(prior, batches, args.repeats)]
    if args.autocast:
        prior.set_autocast(args.autocast)
        rows += [dict(r, autocast=args.autocast) for r in bench_unet(prior, batches, args.repeats)]
    dev = prior.device
    dev_name = device_name(str(dev))
    res = {"schema": "sing.bench.prior/1",
           "setup": {"prior": str(args.prior), "image_size": prior.image_size,
                     "channels": prior.channels,
                     "parameters": sum(p.numel() for p in prior.unet.parameters()),
                     "dtype": str(prior.dtype).replace("torch.", ""), "device": dev_name,
                     "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                     "load_average_1min": os.getloadavg()[0],
                     "commit": git_commit(), "date": _dt.datetime.now().isoformat(timespec="seconds"),
                     "command": " ".join(sys.argv)},
           "results": rows}
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    f = out / f"bench-{Path(args.prior).name}-{dev.type}.json"
    f.write_text(json.dumps(res, indent=2) + "\n")
    for r in rows:
        print(f"batch {r['batch']:3d}: {r['seconds_per_image'] * 1e3:8.2f} ms/image "
              f"({r['images_per_second']:.1f} images/s) on {dev_name}, {res['setup']['dtype']}"
              f"{' autocast ' + r['autocast'] if r['autocast'] else ''}, "
              f"{res['setup']['torch_threads']} threads")
    print(f"wrote {f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sing.prior.bench", description=__doc__.split("\n")[0])
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
