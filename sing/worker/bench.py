"""Worker speed (BENCHMARKS.md, Speed): images/s at batch 1, 4, 16; ZeroMQ round trip ÷ in-process
call for the same job, direct and through the broker with 2 workers.

    sing bench worker [--jscc DIR --prior DIR --calibration DIR] [--methods deepjscc sing-zero]
                      [--out sim/results/worker/bench.json]

Without model directories it builds stand-ins of the real shapes (64×64 RGB, BCR 1/48, k = 256;
an untrained JSCC, the tiny random prior and a calibration fitted on noise images): speed does not
depend on the weights, but the UNet size does, so the result file says which prior was used.
Every process (in-process baseline, workers, broker) gets the same --threads.
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

from .protocol import WorkerError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--jscc", default=None, metavar="DIR")
    p.add_argument("--prior", default=None, metavar="DIR")
    p.add_argument("--calibration", default=None, metavar="DIR")
    p.add_argument("--methods", nargs="+", default=["deepjscc", "sing-zero"])
    p.add_argument("--batches", nargs="+", type=int, default=[1, 4, 16])
    p.add_argument("--steps", type=int, default=None, help="diffusion steps (default: the method's)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--max-wait-ms", type=float, default=5.0)
    p.add_argument("--no-broker", action="store_true")
    p.add_argument("--out", default="sim/results/worker/bench.json")


def _free_ep() -> str:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def _assets(args, tmp: Path) -> dict:
    """Model directories to serve (built stand-ins where none were given)."""
    import torch
    from ..checkpoint import save_model
    from ..jscc import JSCCConfig, build_jscc, load_jscc
    out = {"jscc": args.jscc, "prior": args.prior, "calibration": args.calibration, "stand_ins": []}
    if out["jscc"] is None:
        torch.manual_seed(0)
        m = build_jscc(JSCCConfig(image_size=64, channels=3, bcr="1/48"))
        out["jscc"] = str(tmp / "jscc-natural64-untrained")
        save_model(out["jscc"], m.state_dict(), m.config.to_dict())
        out["stand_ins"].append("jscc: untrained JSCCConfig(64, 3, '1/48')")
    if "sing-zero" in args.methods:
        from ..prior.model import save_prior, tiny_prior
        jscc = load_jscc(out["jscc"])
        c, s = jscc.config.channels, jscc.config.image_size
        if out["prior"] is None:
            pr = tiny_prior(s, c)
            out["prior"] = str(tmp / "prior-tiny")
            save_prior(out["prior"], pr, pr.config)
            out["stand_ins"].append(f"prior: tiny_prior({s}, {c}) (random)")
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


def _remote(client, ys, snr, method, params, batch, repeats) -> dict:
    """Bursts of `batch` concurrent requests; images/s and mean seconds per burst."""
    times = []
    for r in range(repeats + 1):
        t0 = time.perf_counter()
        futs = [client.submit(ys[i], snr, method, {"image_id": f"b{batch}-{i}"}, params=params)
                for i in range(batch)]
        replies = [f.result() for f in futs]
        if r:                                   # the first burst is a warm-up
            times.append(time.perf_counter() - t0)
    sizes = sorted({rep.header["timings"]["batch_size"] for rep in replies})
    t = float(np.median(times))
    return {"seconds": t, "images_per_s": batch / t, "worker_batch_sizes": sizes}


def run(args) -> int:
    import torch
    from .client import WorkerClient
    from .engine import Engine, device_name
    torch.set_num_threads(args.threads)
    result = {"schema": "sing.bench.worker/1", "command": "sing bench worker " + " ".join(sys.argv[2:]),
              "host": platform.node(), "torch_threads": args.threads, "load_avg_start": os.getloadavg(),
              "max_wait_ms": args.max_wait_ms, "repeats": args.repeats, "results": {}}
    procs: list[_Proc] = []
    with tempfile.TemporaryDirectory(prefix="sing-bench-") as tmp:
        a = _assets(args, Path(tmp))
        engine = Engine([a["jscc"]], a["prior"], a["calibration"], None, args.device)
        mid, info = next(iter(engine.info.items()))
        result["device"] = device_name(engine.device)
        result["setup"] = {"jscc": a["jscc"] if args.jscc else "stand-in", "model_id": mid, "k": info.k,
                           "image": list(info.shape), "prior": args.prior or "stand-in",
                           "calibration": args.calibration or "stand-in", "stand_ins": a["stand_ins"]}
        ys = _symbols(max(args.batches), info.k)
        wargs = ["--jscc", a["jscc"], "--device", args.device, "--threads", str(args.threads),
                 "--max-batch", str(max(args.batches)), "--max-wait-ms", str(args.max_wait_ms)]
        if a["prior"]:
            wargs += ["--prior", a["prior"]]
        if a["calibration"]:
            wargs += ["--calibration", a["calibration"]]
        try:
            direct = _free_ep()
            procs.append(_Proc("worker", "--bind", direct, *wargs, threads=args.threads))
            setups = [("direct", direct)]
            if not args.no_broker:
                front, back = _free_ep(), _free_ep()
                procs.append(_Proc("broker", "--frontend", front, "--backend", back,
                                   threads=args.threads))
                for i in range(2):
                    procs.append(_Proc("worker", "--connect", back, "--name", f"bench{i}", *wargs,
                                       threads=args.threads))
                setups.append(("broker_2_workers", front))
            clients = {name: WorkerClient(e, timeout_s=600, retries=0) for name, e in setups}
            if "broker_2_workers" in clients:       # wait until both workers registered
                for _ in range(100):
                    if len(clients["broker_2_workers"].ping()["workers"]) == 2:
                        break
                    time.sleep(0.1)
            for method in args.methods:
                if method not in engine.methods():
                    result["results"][method] = {"skipped": f"not served (have {engine.methods()})"}
                    continue
                params = {"steps": args.steps} if args.steps and method != "deepjscc" else {}
                res = {"params": params, "in_process": {}}
                for b in args.batches:
                    y = torch.from_numpy(ys[:b])
                    snr = torch.zeros(b)
                    ids = [f"b{b}-{i}" for i in range(b)]
                    engine.restore(mid, method, y, snr, ids, 0, params)         # warm-up
                    ts = []
                    for _ in range(args.repeats):
                        t0 = time.perf_counter()
                        engine.restore(mid, method, y, snr, ids, 0, params)
                        ts.append(time.perf_counter() - t0)
                    t = float(np.median(ts))
                    res["in_process"][str(b)] = {"seconds": t, "images_per_s": b / t}
                for name, c in clients.items():
                    res[name] = {str(b): _remote(c, ys, 0.0, method, params, b, args.repeats)
                                 for b in args.batches}
                    one = res[name][str(args.batches[0])]["seconds"]
                    res[f"{name}_round_trip_over_in_process_batch{args.batches[0]}"] = (
                        one / res["in_process"][str(args.batches[0])]["seconds"])
                result["results"][method] = res
                print(json.dumps({method: {k: v for k, v in res.items() if "round_trip" in k}}))
            for c in clients.values():
                c.close()
        except WorkerError as e:
            result["error"] = str(e)
            raise
        finally:
            for p in reversed(procs):
                p.close()
    result["load_avg_end"] = os.getloadavg()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_arguments(p)
    sys.exit(run(p.parse_args()))
