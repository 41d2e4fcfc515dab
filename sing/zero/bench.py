# SPDX-License-Identifier: GPL-3.0-or-later
"""Guidance overhead of SING-Zero: seconds per guided step ÷ seconds per plain DDIM step, same UNet,
batch and loop (docs/BENCHMARKS.md, Speed). The floor is the UNet itself; the target for `spectral` on
the 2-core CPU is ≤ 1.10.

    sing bench guidance [--prior DIR | --preset base --size 64 --channels 3] --batch 4 --steps 10 \
        --operators spectral identity avgpool-4 --repeats 5 --out sim/results/zero/bench_guidance.json

Medians of interleaved runs (sing.prior.bench.timed_runs). Operator parameters and UNet weights are
random: the cost depends on the architecture only.
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from ..channel import generator_for
from ..errors import InputError
from ..prior.bench import add_guidance_arguments, guidance_prior, timed_runs


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_guidance_arguments(p, batch=4, steps=10, repeats=5, out="sim/results/zero/bench_guidance.json")
    p.add_argument("--operators", nargs="+", default=["spectral", "identity", "avgpool-4"])


def measure(prior, operators, batch: int = 4, steps: int = 10, repeats: int = 5) -> dict:
    """Median seconds per step for plain DDIM and for each guided operator (σ_y > 0: DDNM+ path)."""
    from ..prior.ddim import Step, prior_shape, sample
    from .ddnm import RangeNullSpace, restore
    from .operators import make_operator
    shape = prior_shape(prior)
    g = torch.Generator().manual_seed(0)
    ops = {}
    for name in operators:
        op = make_operator(name, shape, h=torch.rand(*shape, generator=g))
        y = op.A(torch.rand(batch, *shape, generator=g))
        ops[name] = (op, y)
    gens = lambda: [generator_for(0, i) for i in range(batch)]
    plain = lambda: sample(prior, batch, steps, 0.85, gens(), progress=False)
    guided = {n: (lambda o=o, y=y: restore(prior, o, y, 0.05, steps=steps, generators=gens(), progress=False))
              for n, (o, y) in ops.items()}
    times = timed_runs({"plain": plain} | guided, repeats, prior.device, per=steps)
    med = {k: statistics.median(v) for k, v in times.items()}
    # The guidance arithmetic alone (the correction's x̂_0 and update: 2 forward + 1 inverse transform,
    # Eq. 17-19 elementwise), timed without the UNet (mean of 20 calls after a warm-up call): much less
    # sensitive to load from other processes.
    iso = {}
    step = Step(t=500, T=1000, abar_t=0.5, a=1.0, sigma=0.5, eta=0.85, c_eps=0.5)
    for name, (op, y) in ops.items():
        x = torch.randn(batch, *shape)
        corr = RangeNullSpace(op, op.range_mask(), op.pinv_spectral(y), torch.full((1, *shape), 0.1), name)
        guidance = lambda: corr.update(corr.x0(x, x, x, step), x, torch.randn_like(x), step)
        iso[name] = statistics.mean(timed_runs({name: guidance}, 20)[name])
    return {"seconds_per_step": med, "runs": times,
            "ratio": {n: med[n] / med["plain"] for n in guided},
            "guidance_seconds_per_step_isolated": iso,
            "ratio_from_isolated": {n: 1 + iso[n] / med["plain"] for n in guided}}


def run(args) -> int:
    from ..cli import command_line
    from ..commands.eval import device_name, git_commit
    if args.batch < 1 or args.steps < 1 or args.repeats < 1:
        raise InputError("--batch, --steps and --repeats must be ≥ 1")
    prior, prior_desc = guidance_prior(args)
    n_params = sum(p.numel() for p in prior.parameters())
    res = measure(prior, args.operators, args.batch, args.steps, args.repeats)
    dev = device_name(args.device)
    out = {"schema": "sing.bench.guidance/1",
           "setup": {"prior": prior_desc, "unet_parameters": n_params, "image": [prior.channels, prior.image_size,
                     prior.image_size], "batch": args.batch, "steps_per_run": args.steps, "repeats": args.repeats,
                     "sigma_y": 0.05, "eta": 0.85, "device": dev, "torch_threads": torch.get_num_threads(),
                     "commit": git_commit(), "command": command_line("bench guidance", args, (
                         "prior", "preset", "size", "channels", "batch", "steps", "repeats", "operators",
                         "threads"))},
           "target": {"operator": "spectral", "max_ratio": 1.10},
           **res}
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1) + "\n")
    plain = res["seconds_per_step"]["plain"]
    print(f"plain DDIM step: {plain * 1e3:.1f} ms (batch {args.batch}, {prior_desc}, {dev})")
    for n, r in res["ratio"].items():
        print(f"  {n:12s} {res['seconds_per_step'][n] * 1e3:8.1f} ms/step   ratio {r:.3f}   (guidance alone "
              f"{res['guidance_seconds_per_step_isolated'][n] * 1e3:.2f} ms → {res['ratio_from_isolated'][n]:.3f})")
    print(f"→ {path}")
    return 0
