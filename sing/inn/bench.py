# SPDX-License-Identifier: GPL-3.0-or-later
"""Guidance overhead of SING-INN: seconds per guided sampling step ÷ seconds per plain DDIM step,
same UNet, same batch, same loop (sing.prior.ddim.sample with and without the INNGuidance
correction). docs/BENCHMARKS.md, Speed.

Medians of interleaved runs (sing.prior.bench.timed_runs); JSON result (schema
sing.bench.inn-guidance/1). Without --prior / --inn, a random UNet of --preset and an INN of the
default architecture: the cost does not depend on the weights.
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from ..errors import InputError
from ..prior.bench import add_guidance_arguments, guidance_prior

DEFAULT_OUT = Path(__file__).resolve().parents[2] / "sim" / "results" / "inn" / "guidance_overhead.json"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_guidance_arguments(p, batch=16, steps=4, repeats=3, out=str(DEFAULT_OUT))
    p.add_argument("--inn", default=None, help="SING-INN directory (default: random default INN)")
    p.add_argument("--grad-scale", type=float, default=0.0, help="also time the INDIGO+ term (> 0)")


def measure(prior, inn, batch: int, steps: int = 4, repeats: int = 3, grad_scale: float = 0.0) -> dict:
    """{'plain_s_per_step', 'guided_s_per_step', 'ratio', …} for one prior/INN/batch."""
    from ..prior.bench import timed_runs
    from ..prior.ddim import sample
    from .guidance import INNGuidance, observation
    if steps < 1 or repeats < 1 or batch < 1:
        raise InputError("batch, steps and repeats must be ≥ 1")
    dev = torch.device(prior.device)
    inn = inn.to(dev).eval()
    x_hat = torch.rand(batch, prior.channels, prior.image_size, prior.image_size, device=dev)
    snr = inn.snr(0.0, batch, dev)
    gy = observation(inn, x_hat)

    def chain(guided):
        sample(prior, batch, steps, 0.85, None, INNGuidance(inn, gy, snr, grad_scale=grad_scale)
               if guided else None, progress=False)

    t = timed_runs({"plain": lambda: chain(False), "guided": lambda: chain(True)}, repeats, dev, per=steps)
    p, g = statistics.median(t["plain"]), statistics.median(t["guided"])
    return {"plain_s_per_step": round(p, 5), "guided_s_per_step": round(g, 5),
            "ratio": round(g / p, 4), "plain_all": [round(v, 5) for v in t["plain"]],
            "guided_all": [round(v, 5) for v in t["guided"]]}


def run(args) -> int:
    from ..checkpoint import write_json
    from ..commands.eval import device_name
    from .model import INNConfig, build_inn, load_inn
    prior, src = guidance_prior(args)
    if args.inn:
        inn, isrc = load_inn(args.inn, device=args.device), args.inn
    else:
        cfg = INNConfig(image_size=prior.image_size, channels=prior.channels)
        cfg.sigma_c = {"snr_db": [-5.0, 15.0], "std": [[0.1] * prior.channels] * 2}
        inn, isrc = build_inn(cfg, seed=0), "random INN (default architecture)"
    res = measure(prior, inn, args.batch, args.steps, args.repeats, args.grad_scale)
    out = {"schema": "sing.bench.inn-guidance/1",
           "setup": {"prior": src, "inn": isrc, "inn_config": {k: v for k, v in inn.config.to_dict().items()
                                                               if k not in ("sigma_c", "training")},
                     "unet_params": sum(p.numel() for p in prior.parameters()),
                     "inn_params": sum(p.numel() for p in inn.parameters()),
                     "image": [prior.channels, prior.image_size, prior.image_size],
                     "batch": args.batch, "steps_per_chain": args.steps, "repeats": args.repeats,
                     "grad_scale": args.grad_scale, "device": device_name(args.device),
                     "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                     "target_ratio": 1.3},
           "result": res}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, out)
    print(json.dumps(res))
    print(f"guided ÷ plain step: {res['ratio']:.3f} (target ≤ 1.3) → {args.out}")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
