#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Speed and peak memory of the receiver at image sizes (docs/ALGORITHMS.md §3, "Images of another
size"): CPU, one image, the shipped natural models (BCR 1/48, AWGN 0 dB), torch threads = --threads.

Cases (each in a fresh subprocess, so that its peak resident memory is its own):
- `jscc`: DeepJSCC encode + decode of one image;
- `sing-zero`: Receiver.restore("sing-zero", y) at the shipped preset (decoder + restoration), with
  the prior run as sing.prior.tiles.at_size chooses (whole image up to its bound, tiles above);
- `sing-zero-tiled64`: the same at 256×256 with 64×64 tiles (the prior's native size, overlap 16):
  the tiled alternative the whole-image mode replaced;
- `dps-2steps`: two DPS steps (UNet forward + backward through the whole image): the memory of a
  method with gradients, and its time per step.

Each case runs --repeats timed calls (5× as many at 64×64) after one warm-up; rounds alternate the cases, so load from
other processes falls on all alike; medians are reported. Peak memory: the subprocess's maximum
resident set size (ru_maxrss) minus the same after loading the models and one warm-up call at
64×64 (the baseline), i.e. what the image size adds. Writes OUT.json and OUT.md.

    PYTHONPATH=. python sim/size_bench.py --out sim/results/size/bench
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = {"jscc": (64, 256), "sing-zero": (64, 256, 512), "sing-zero-tiled64": (256,), "dps-2steps": (64, 256)}


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def one(case: str, size: int, repeats: int, threads: int) -> dict:
    """Run one case in this process; returns its timings and memory."""
    import torch
    torch.set_num_threads(threads)
    from sing.channel import ChannelConfig, apply_channel, channel_generator
    from sing.methods import load_receiver
    from sing.prior.tiles import TiledPrior
    models = ROOT / "models"
    jdir = models / "jscc-natural64-bcr1_48"
    rx = load_receiver([jdir], prior_dir=models / "prior-natural-64", calibration=jdir / "calibration")
    jscc = rx.model()

    def link(s):
        x = torch.rand(1, 3, s, s, generator=torch.Generator().manual_seed(s))
        with torch.no_grad():
            z = jscc.encode(x, 0.0)
        co = apply_channel(z, ChannelConfig(kind="awgn", snr_db=0.0), [channel_generator(0, "bench")])
        return x, co

    def call(s):
        x, co = link(s)
        shape = {} if s == 64 else {"shape": (s, s)}
        if case == "jscc":
            with torch.no_grad():
                return jscc.decode(jscc.encode(x, 0.0), 0.0, shape=(s, s))
        if case == "dps-2steps":
            return rx.restore("dps", co.y, co.snr_true_db, ["bench"], steps=2, encoder_snr_db=0.0, **shape)
        return rx.restore("sing-zero", co.y, co.snr_true_db, ["bench"], **shape)

    if case == "sing-zero-tiled64":            # the prior's native tiles instead of at_size's choice
        import sing.prior.tiles as T
        T.at_size = lambda prior, hw, overlap=None: prior if tuple(hw) == (64, 64) else TiledPrior(prior, hw)
        import sing.zero.ddnm as Z
        Z.at_size = T.at_size
    call(64)                                    # warm-up at the native size: the baseline
    base = _rss_mb()
    call(size)                                  # warm-up at the size
    times, cpu = [], []
    for _ in range(repeats * 5 if size <= 64 else repeats):    # cheap cases: more samples
        t0, c0 = time.perf_counter(), time.process_time()
        call(size)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return {"case": case, "size": size, "seconds": times, "median_s": statistics.median(times),
            "cpu_seconds": cpu, "median_cpu_s": statistics.median(cpu),
            "peak_rss_mb": _rss_mb(), "baseline_rss_mb": base, "added_peak_mb": _rss_mb() - base}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(ROOT / "sim/results/size/bench"))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--rounds", type=int, default=2, help="subprocess rounds per case (alternating)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    p.add_argument("--one", nargs=2, metavar=("CASE", "SIZE"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(one(args.one[0], int(args.one[1]), args.repeats, args.threads)))
        return 0
    runs: dict[str, list[dict]] = {}
    for r in range(args.rounds):
        for case in args.cases:
            for size in CASES[case]:
                cmd = [sys.executable, __file__, "--one", case, str(size), "--repeats", str(args.repeats),
                       "--threads", str(args.threads)]
                out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
                if out.returncode:
                    raise SystemExit(f"{case} {size}: failed\n{out.stderr[-3000:]}")
                res = json.loads(out.stdout.strip().splitlines()[-1])
                runs.setdefault(f"{case}@{size}", []).append(res)
                print(f"round {r}: {case} {size}×{size}: median {res['median_s']:.3f} s wall, "
                      f"{res['median_cpu_s']:.3f} s CPU, +{res['added_peak_mb']:.0f} MB", flush=True)
    summary = {}
    for key, rs in runs.items():
        ts = [t for x in rs for t in x["seconds"]]
        cs = [t for x in rs for t in x["cpu_seconds"]]
        summary[key] = {"median_s": statistics.median(ts), "min_s": min(ts), "n": len(ts),
                        "median_cpu_s": statistics.median(cs), "min_cpu_s": min(cs),
                        "added_peak_mb": max(x["added_peak_mb"] for x in rs),
                        "peak_rss_mb": max(x["peak_rss_mb"] for x in rs)}
    # the checks use CPU time: on a machine shared with other jobs, wall time measures the others'
    # load (one thread: CPU time is what the call costs; wall = CPU on an idle core)
    ratio = lambda a, b: summary[a]["median_cpu_s"] / summary[b]["median_cpu_s"] if a in summary and b in summary else None
    checks = {
        "jscc_256_s": summary.get("jscc@256", {}).get("median_cpu_s"), "jscc_256_limit_s": 0.5,
        "sing_zero_256_over_64": ratio("sing-zero@256", "sing-zero@64"), "sing_zero_ratio_limit": 16.0,
        "sing_zero_tiled64_256_over_64": ratio("sing-zero-tiled64@256", "sing-zero@64"),
        "sing_zero_512_over_256": ratio("sing-zero@512", "sing-zero@256"),
        "dps_step_256_over_64": ratio("dps-2steps@256", "dps-2steps@64"),
    }
    import torch
    from sing.commands.eval import git_commit
    res = {"schema": "sing.size.bench/1", "commit": git_commit(),
           "device": f"cpu:{platform.processor() or platform.machine()}",
           "torch_threads": args.threads, "torch": torch.__version__, "cases": summary, "checks": checks,
           "runs": runs, "command": "python " + " ".join(shlex.quote(a) for a in sys.argv)}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(res, indent=1) + "\n")
    md = ["# Receiver speed and memory at image sizes (CPU, one image)", "",
          f"Generated by `{res['command']}`; {res['device']}, {args.threads} torch thread(s), medians over "
          f"{args.rounds} alternating rounds × {args.repeats} calls. Added peak: max RSS minus the same after the "
          "models and one 64×64 call (what the size adds).", "",
          "Times: CPU seconds of the process (one thread; the checks use these: the machine is shared, "
          "so wall time also measures other jobs) and wall seconds.", "",
          "| case | size | median CPU s | min CPU s | median wall s | added peak MB | peak RSS MB |",
          "|---|---|---|---|---|---|---|"]
    for key, v in summary.items():
        case, size = key.split("@")
        md.append(f"| {case} | {size}×{size} | {v['median_cpu_s']:.3f} | {v['min_cpu_s']:.3f} | {v['median_s']:.3f} | "
                  f"{v['added_peak_mb']:.0f} | {v['peak_rss_mb']:.0f} |")
    f = lambda v: "—" if v is None else f"{v:.2f}"
    md += ["", f"- DeepJSCC encode+decode at 256×256: {f(checks['jscc_256_s'])} s (limit 0.5 s)",
           f"- SING-Zero 256×256 / 64×64 time: {f(checks['sing_zero_256_over_64'])}× (limit 16×; pixels 16×); "
           f"with 64×64 tiles instead: {f(checks['sing_zero_tiled64_256_over_64'])}×",
           f"- SING-Zero 512×512 / 256×256 (3×3 whole-image tiles of 216²): {f(checks['sing_zero_512_over_256'])}× (pixels 4×)",
           f"- DPS step 256×256 / 64×64: {f(checks['dps_step_256_over_64'])}×"]
    out.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
