# SPDX-License-Identifier: GPL-3.0-or-later
"""Worker speed (docs/BENCHMARKS.md, Speed): images/s at batch 1, 4, 16; ZeroMQ round trip ÷ in-process
call for the same job, direct and through the broker with 2 workers.

    sing bench worker [--jscc DIR --prior DIR --calibration DIR] [--methods deepjscc sing-zero]
                      [--steps 10] [--repeats 5] [--out sim/results/worker/bench-cpu.json]

Models: the shipped ones by default (models/jscc-natural64-bcr1_48 with its `calibration`,
models/prior-natural-64) when present; otherwise stand-ins of the real shapes (64×64 RGB, BCR 1/48,
k = 256; an untrained JSCC, the tiny random prior, a calibration fitted on noise images) — speed
does not depend on the weights but does on the UNet size, so the result names what was used.

Method (the same job on every side): the same symbols, SNR, image ids, seed and parameters. For
each method and batch size the three setups (in-process `Engine.restore`, one worker over ZeroMQ,
two workers behind `sing broker`) run interleaved, round by round, in a rotating order (A/B/C,
B/C/A, …) after one warm-up each, so that load drifts hit all of them alike. Reported: median,
min/max and quartiles of the seconds per burst of `batch` concurrent requests, images/s from the
median, and the round-trip ratio both as the median of per-round ratios (paired) and as the ratio
of medians. Every process gets the same --threads; the load average is sampled every round.
A Markdown table generated from the JSON is written next to it (`--out` with `.md`).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
SHIPPED = {"jscc": REPO / "models" / "jscc-natural64-bcr1_48", "prior": REPO / "models" / "prior-natural-64"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--jscc", default=None, metavar="DIR",
                   help="DeepJSCC model (default: models/jscc-natural64-bcr1_48 when present)")
    p.add_argument("--prior", default=None, metavar="DIR",
                   help="diffusion prior (default: models/prior-natural-64 when present)")
    p.add_argument("--calibration", default=None, metavar="DIR",
                   help="SING-Zero calibration (default: <jscc>/calibration when present)")
    p.add_argument("--stand-ins", action="store_true", help="use stand-in models even if shipped ones exist")
    p.add_argument("--methods", nargs="+", default=["deepjscc", "sing-zero"])
    p.add_argument("--batches", nargs="+", type=int, default=[1, 4, 16])
    p.add_argument("--steps", type=int, default=None, help="diffusion steps (default: the method's)")
    p.add_argument("--repeats", type=int, default=5, help="timed rounds per batch size (> 1)")
    p.add_argument("--repeats-batch1", type=int, default=None,
                   help="timed rounds at batch 1 (default 3 × --repeats: the ratio is read there)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--max-wait-ms", type=float, default=0.0, help="workers' --max-wait-ms")
    p.add_argument("--no-broker", action="store_true")
    p.add_argument("--out", default="sim/results/worker/bench.json")
    p.add_argument("--render", default=None, metavar="JSON",
                   help="only (re)write the Markdown table for an existing result file")


def _free_ep() -> str:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def _rel(p) -> str:
    try:
        return str(Path(p).resolve().relative_to(REPO))
    except ValueError:
        return str(p)


def _assets(args, tmp: Path) -> dict:
    """Model directories to serve (the shipped ones, or built stand-ins)."""
    import torch
    from ..checkpoint import save_model
    from ..jscc import JSCCConfig, build_jscc, load_jscc
    shipped = not args.stand_ins
    out = {"jscc": args.jscc, "prior": args.prior, "calibration": args.calibration, "stand_ins": []}
    if out["jscc"] is None and shipped and (SHIPPED["jscc"] / "config.json").exists():
        out["jscc"] = str(SHIPPED["jscc"])
    if out["jscc"] is None:
        torch.manual_seed(0)
        m = build_jscc(JSCCConfig(image_size=64, channels=3, bcr="1/48"))
        out["jscc"] = str(tmp / "jscc-natural64-untrained")
        save_model(out["jscc"], m.state_dict(), m.config.to_dict())
        out["stand_ins"].append("jscc: untrained JSCCConfig(64, 3, '1/48')")
    if any(m != "deepjscc" for m in args.methods):
        from ..prior.model import save_prior, tiny_prior
        jscc = load_jscc(out["jscc"])
        c, s = jscc.config.channels, jscc.config.image_size
        if out["prior"] is None and shipped and (SHIPPED["prior"] / "config.json").exists():
            out["prior"] = str(SHIPPED["prior"])
        if out["prior"] is None:
            pr = tiny_prior(s, c)
            out["prior"] = str(tmp / "prior-tiny")
            save_prior(out["prior"], pr, pr.config)
            out["stand_ins"].append(f"prior: tiny_prior({s}, {c}) (random)")
        found = Path(out["jscc"]) / "calibration"
        if out["calibration"] is None and (found / "config.json").exists():
            out["calibration"] = str(found)
        if out["calibration"] is None:
            from ..zero import fit_calibration
            g = torch.Generator().manual_seed(0)
            imgs = torch.rand(16, c, s, s, generator=g)
            cal = fit_calibration(jscc, imgs, [0.0, 10.0], progress=False)
            out["calibration"] = str(tmp / "calibration")
            cal.save(out["calibration"])
            out["stand_ins"].append("calibration: fitted on 16 uniform-noise images at 0/10 dB")
    return out


class _Proc:
    def __init__(self, *args: str, threads: int):
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
        self.p = subprocess.Popen([sys.executable, "-m", "sing.cli", *args], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.p.stdout.readline()
        if not line.startswith("READY"):
            self.close()
            raise RuntimeError(f"sing {args[0]} did not start (rc={self.p.poll()})")

    def close(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.p.stdout.close()


def _symbols(n: int, k: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y = rng.standard_normal((n, k)) + 1j * rng.standard_normal((n, k))
    return (y / np.sqrt(np.mean(np.abs(y) ** 2, axis=1, keepdims=True))).astype(np.complex64)


def _stats(ts: list[float], batch: int) -> dict:
    a = np.asarray(ts, dtype=float)
    med = float(np.median(a))
    return {"seconds": med, "images_per_s": batch / med, "min": float(a.min()), "max": float(a.max()),
            "q1": float(np.percentile(a, 25)), "q3": float(np.percentile(a, 75)),
            "spread_pct": 100.0 * float(a.max() - a.min()) / med, "samples": [round(float(t), 6) for t in a]}


def _device(engine) -> dict:
    from .engine import device_name
    d = {"name": device_name(engine.device), "host": platform.node(), "os_cpus": os.cpu_count(),
         "platform": platform.platform()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                d["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return d


def _setup_record(a: dict, mid: str, info) -> dict:
    """What was served: model paths (or "stand-in"), ids and shapes."""
    from ..checkpoint import model_id as dir_model_id

    def source(part: str) -> str | None:
        if not a[part]:
            return None
        return "stand-in" if any(s.startswith(part) for s in a["stand_ins"]) else _rel(a[part])

    return {"jscc": source("jscc"), "model_id": mid, "k": info.k, "image": list(info.shape),
            "prior": source("prior"), "prior_model_id": dir_model_id(a["prior"]) if a["prior"] else None,
            "calibration": source("calibration"), "stand_ins": a["stand_ins"], "snr_db": 0.0, "seed": 0}


def _worker_args(args, a: dict) -> list[str]:
    wargs = ["--jscc", a["jscc"], "--device", args.device, "--threads", str(args.threads),
             "--max-batch", str(max(args.batches)), "--max-wait-ms", str(args.max_wait_ms),
             "--no-discover"]
    for part in ("prior", "calibration"):
        if a[part]:
            wargs += [f"--{part}", a[part]]
    return wargs


def _start_servers(args, wargs: list[str], procs: list) -> dict:
    """A worker bound directly, and (unless --no-broker) a broker with two workers: the WorkerClient
    for each setup, by name."""
    from .client import WorkerClient
    direct = _free_ep()
    procs.append(_Proc("worker", "--bind", direct, *wargs, threads=args.threads))
    setups = [("direct", direct)]
    if not args.no_broker:
        front, back = _free_ep(), _free_ep()
        procs.append(_Proc("broker", "--frontend", front, "--backend", back, threads=args.threads))
        for i in range(2):
            procs.append(_Proc("worker", "--connect", back, "--name", f"bench{i}", *wargs,
                               threads=args.threads))
        setups.append(("broker_2_workers", front))
    clients = {name: WorkerClient(e, timeout_s=3600, retries=0) for name, e in setups}
    if "broker_2_workers" in clients:       # wait until both workers registered
        for _ in range(300):
            if len(clients["broker_2_workers"].ping()["workers"]) == 2:
                break
            time.sleep(0.1)
    return clients


def _burst(engine, clients: dict, mid: str, method: str, ys: np.ndarray, b: int, params: dict):
    """One timed burst of `b` concurrent requests (the same job on every setup): a function of the
    setup's name returning (seconds, replies or None in-process)."""
    import torch
    y, snr, ids = torch.from_numpy(ys[:b]), torch.zeros(b), [f"b{b}-{i}" for i in range(b)]

    def once(name: str):
        t0 = time.perf_counter()
        if name == "in_process":
            engine.restore(mid, method, y, snr, ids, 0, params)
            return time.perf_counter() - t0, None
        futs = [clients[name].submit(ys[i], 0.0, method, {"image_id": ids[i]}, params=params) for i in range(b)]
        reps = [f.result() for f in futs]
        return time.perf_counter() - t0, reps
    return once


def _bench_batch(once, b: int, names: list[str], rounds: int, loads: list) -> tuple[dict, dict]:
    """Warm-up, then `rounds` interleaved rounds in rotating order: (stats per setup, paired
    ratios per remote setup)."""
    for n in names:                               # warm-up
        once(n)
    ts = {n: [] for n in names}
    sizes = {n: set() for n in names[1:]}
    timings = {n: [] for n in names[1:]}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for n in order:
            t, reps = once(n)
            ts[n].append(t)
            if reps:
                sizes[n] |= {rep.header["timings"]["batch_size"] for rep in reps}
                timings[n].append(reps[0].header["timings"])
        loads.append(os.getloadavg()[0])
    stats = {}
    for n in names:
        st = _stats(ts[n], b)
        if n != "in_process":
            st["worker_batch_sizes"] = sorted(sizes[n])
            tm = timings[n]
            st["reply_timings_median_ms"] = {
                k: float(np.median([x[k] for x in tm if x.get(k) is not None]))
                for k in ("queue_ms", "decode_ms", "restore_ms", "compute_ms", "total_ms")
                if any(x.get(k) is not None for x in tm)}
        stats[n] = st
    ratios = {}
    for n in names[1:]:
        paired = [t / t0 for t, t0 in zip(ts[n], ts["in_process"])]
        ratios[n] = {"median_of_paired": float(np.median(paired)), "min": float(min(paired)),
                     "max": float(max(paired)),
                     "ratio_of_medians": stats[n]["seconds"] / stats["in_process"]["seconds"]}
    return stats, ratios


def _bench_method(args, method: str, engine, clients: dict, mid: str, ys: np.ndarray, reps1: int,
                  loads: list) -> dict:
    names = ["in_process"] + list(clients)
    params = {"steps": args.steps} if args.steps and method != "deepjscc" else {}
    res = {"params": params, **{n: {} for n in names}, "ratio": {}}
    for b in args.batches:
        once = _burst(engine, clients, mid, method, ys, b, params)
        stats, ratios = _bench_batch(once, b, names, reps1 if b == 1 else args.repeats, loads)
        for n in names:
            res[n][str(b)] = stats[n]
        for n, v in ratios.items():
            res["ratio"].setdefault(n, {})[str(b)] = v
        print(json.dumps({"method": method, "batch": b,
                          **{n: round(res[n][str(b)]["seconds"], 4) for n in names},
                          "ratio": {n: round(v[str(b)]["median_of_paired"], 4)
                                    for n, v in res["ratio"].items()}}), flush=True)
    return res


def run(args) -> int:
    if args.render:
        return _render_file(Path(args.render))
    import torch
    from .engine import Engine
    if args.repeats < 2:
        from ..errors import InputError
        raise InputError("--repeats must be ≥ 2 (medians and spreads need several rounds)")
    torch.set_num_threads(args.threads)
    reps1 = args.repeats_batch1 or 3 * args.repeats
    result = {"schema": "sing.bench.worker/2", "command": "sing bench worker " + " ".join(sys.argv[3:]),
              "torch_threads": args.threads, "load_avg_start": list(os.getloadavg()),
              "max_wait_ms": args.max_wait_ms, "repeats": args.repeats, "repeats_batch1": reps1,
              "order": "interleaved, rotating per round: in_process / direct / broker_2_workers",
              "results": {}}
    procs: list[_Proc] = []
    loads: list[float] = []
    with tempfile.TemporaryDirectory(prefix="sing-bench-") as tmp:
        a = _assets(args, Path(tmp))
        engine = Engine([a["jscc"]], a["prior"], a["calibration"], None, args.device,
                        discover_parts=False)
        mid, info = next(iter(engine.info.items()))
        result["device"] = _device(engine)
        result["setup"] = _setup_record(a, mid, info)
        ys = _symbols(max(args.batches), info.k)
        try:
            clients = _start_servers(args, _worker_args(args, a), procs)
            for method in args.methods:
                if method not in engine.methods():
                    result["results"][method] = {"skipped": f"not served (have {engine.methods()})"}
                    continue
                result["results"][method] = _bench_method(args, method, engine, clients, mid, ys,
                                                          reps1, loads)
            for c in clients.values():
                c.close()
        finally:
            for p in reversed(procs):
                p.close()
    result["load_avg_end"] = list(os.getloadavg())
    if loads:
        result["load_avg_1min_during"] = {"min": min(loads), "median": float(np.median(loads)),
                                          "max": max(loads), "n": len(loads)}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return _render_file(out)


# ---- Markdown (generated from the JSON, never typed) ------------------------------------------
def render_markdown(r: dict, source: str = "") -> str:
    s = r.get("setup", {})
    dev = r.get("device", {})
    dev_s = dev if isinstance(dev, str) else f"{dev.get('name')} ({dev.get('cpu', '?')}, {dev.get('os_cpus')} CPUs)"
    la = r.get("load_avg_1min_during", {})
    lines = [f"# Worker speed ({source or 'bench result'})", "",
             f"Generated from `{source}` by `sing bench worker --render {source}`; made by "
             f"`{r.get('command')}`.", "",
             f"- device: {dev_s}, torch threads per process: {r.get('torch_threads')}",
             f"- load average (1 min): start {r.get('load_avg_start', [None])[0]:.2f}, during "
             f"{la.get('min', float('nan')):.2f}…{la.get('max', float('nan')):.2f} (median "
             f"{la.get('median', float('nan')):.2f}), end {r.get('load_avg_end', [None])[0]:.2f}",
             f"- models: JSCC `{s.get('jscc')}` ({s.get('model_id')}, k = {s.get('k')}, image "
             f"{s.get('image')}), prior `{s.get('prior')}`, calibration `{s.get('calibration')}`"
             + (f"; stand-ins: {'; '.join(s['stand_ins'])}" if s.get("stand_ins") else ""),
             f"- rounds: {r.get('repeats_batch1')} at batch 1, {r.get('repeats')} otherwise, "
             f"{r.get('order')}; workers' max wait {r.get('max_wait_ms')} ms (continuous batching)", ""]
    for method, res in r.get("results", {}).items():
        if "skipped" in res:
            lines += [f"## {method}: skipped ({res['skipped']})", ""]
            continue
        names = [n for n in ("in_process", "direct", "broker_2_workers") if n in res]
        lines += [f"## {method} {json.dumps(res.get('params', {}))}", "",
                  "| batch | " + " | ".join(f"{n} s (min…max)" for n in names) + " | "
                  + " | ".join(f"{n} img/s" for n in names) + " | "
                  + " | ".join(f"{n} ÷ in-process (paired median, min…max)" for n in names[1:])
                  + " | worker batch sizes |",
                  "|" + "---|" * (1 + 2 * len(names) + len(names[1:]) + 1)]
        for b in res[names[0]]:
            row = [b]
            row += [f"{res[n][b]['seconds']:.4f} ({res[n][b]['min']:.4f}…{res[n][b]['max']:.4f})" for n in names]
            row += [f"{res[n][b]['images_per_s']:.2f}" for n in names]
            row += [f"**{res['ratio'][n][b]['median_of_paired']:.3f}** ({res['ratio'][n][b]['min']:.3f}…"
                    f"{res['ratio'][n][b]['max']:.3f})" for n in names[1:]]
            row += ["; ".join(f"{n}: {res[n][b].get('worker_batch_sizes')}" for n in names[1:])]
            lines.append("| " + " | ".join(str(x) for x in row) + " |")
        lines.append("")
    return "\n".join(lines)


def _render_file(path: Path) -> int:
    r = json.loads(path.read_text())
    md = path.with_suffix(".md")
    md.write_text(render_markdown(r, _rel(path)) + "\n")
    print(f"wrote {md}")
    return 0
