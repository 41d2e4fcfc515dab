#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""`make demo`: bundled test images through the GNU Radio loopback flowgraph to a worker process.

1. starts `sing worker` on a free loopback port with the shipped models (DeepJSCC at BCR 1/48, and the
   prior / calibration / INN where they are shipped);
2. compiles `flowgraphs/loopback_awgn_no_gui.grc` with `grcc` and runs it once per available method
   (image source → PDU channel, AWGN 0 dB, seeded → SING receiver → PNG per image);
3. writes a side-by-side grid (original | DeepJSCC | SING-Zero | SING-INN) and a metrics table;
4. sends one whole test photograph at 256×256 (`natural-256`, k = 4096) through the same flowgraph
   with DeepJSCC and SING-Zero (`--photo256 0` skips it) → <out>/photo256/{grid.png,metrics.md}.

Falls back to the in-process path (`sing demo --path direct`) where GNU Radio is not installed.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "sim"))

from radio import compile_grc, free_port, read_outputs, write_images, run_flowgraph, start_worker, stop_worker, wait_ready  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="out/demo")
    ap.add_argument("--n-images", type=int, default=6)
    ap.add_argument("--snr-db", type=float, default=0.0)
    ap.add_argument("--bcr", default="1/48")
    ap.add_argument("--data", default="natural")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--photo256", type=int, default=1,
                    help="whole 256×256 test photographs (natural-256) also sent, DeepJSCC and SING-Zero (0: none)")
    args = ap.parse_args(argv)
    args.path = "radio"

    import torch
    from sing import data as D
    from sing.commands.demo import available_methods, run_direct, write_outputs
    from sing.errors import CheckpointError

    out = Path(args.out)
    methods, paths = available_methods(args)
    if not (paths["jscc"] / "config.json").exists():
        raise CheckpointError(f"the demo needs {paths['jscc']} (shipped in git)")
    x, ids = D.spread_subset(args.data, "test", args.n_images)
    t0 = time.time()
    try:
        from gnuradio import gr  # noqa: F401
        import sing_blocks  # noqa: F401
    except ImportError as e:
        print(f"GNU Radio path unavailable ({e}); running the same chain in-process")
        results = run_direct(args, methods, paths, x, ids)
        write_outputs(out, x, ids, results, args, "direct (in-process; GNU Radio not importable)", time.time() - t0)
        return 0
    work = Path(tempfile.mkdtemp(prefix="sing-demo-"))
    imgs = work / "images"
    names = write_images(x, ids, imgs)
    script = compile_grc("loopback_awgn_no_gui", work)
    port = free_port()
    endpoint = f"tcp://127.0.0.1:{port}"
    out.mkdir(parents=True, exist_ok=True)
    worker = start_worker(paths, port, out / "worker.log")
    results = {}
    try:
        status = wait_ready(endpoint, worker)
        print(f"worker ready on {endpoint}: methods {status.get('methods')}")
        for m in methods:
            results[m] = send(args, paths, script, endpoint, m, imgs, names, x.shape[1], out / "radio")
        photo = photo256(args, methods, paths, script, endpoint, out, work) if args.photo256 > 0 else None
    finally:
        stop_worker(worker)
        shutil.rmtree(work, ignore_errors=True)
    write_outputs(out, x, ids, results, args, "radio (GNU Radio loopback_awgn_no_gui + worker process)",
                  time.time() - t0)
    if photo is not None:
        x2, ids2, res2, secs = photo
        write_outputs(out / "photo256", x2, ids2, res2, argparse.Namespace(**{**vars(args), "data": "natural-256"}),
                      "radio (GNU Radio loopback_awgn_no_gui + worker process), photographs at their size",
                      secs, zoom=1)
    return 0


def photo256(args, methods, paths, script, endpoint, out: Path, work: Path):
    """The first `args.photo256` natural-256 test views (whole photographs, 256×256, k = 4096 at BCR
    1/48) through the same flowgraph and worker, DeepJSCC and SING-Zero where available: the image
    source sends them at their own size, the receiver restores at that size (docs/ALGORITHMS.md §3)."""
    from sing import data as D
    t0 = time.time()
    x, ids = D.load_split("natural-256", "test", n=args.photo256, progress=False)   # view 0s: whole photos
    imgs = work / "images256"
    names = write_images(x, ids, imgs)
    res = {m: send(args, paths, script, endpoint, m, imgs, names, x.shape[1], out / "radio256")
           for m in ("deepjscc", "sing-zero") if m in methods}
    return x, ids, res, time.time() - t0


def send(args, paths, script, endpoint, method: str, imgs: Path, names: list[str], channels: int,
         out_root: Path):
    """The images in `imgs` once through the compiled loopback with `method`; the restored images
    (read from <out_root>/<method>, where the flowgraph writes them) as a tensor."""
    rdir = out_root / method
    shutil.rmtree(rdir, ignore_errors=True)
    t1 = time.time()
    run_flowgraph(script, {"snr_db": args.snr_db, "method": method, "images": imgs, "jscc": paths["jscc"],
                           "endpoint": endpoint, "out_dir": out_root, "seed": args.seed,
                           "interval": 0.01, "worker_timeout": 600})
    summary = json.loads((rdir / "summary.json").read_text())
    print(f"  {method}: {summary.get('counts', '')} through the flowgraph in {time.time() - t1:.1f} s")
    return read_outputs(rdir, names, channels)


if __name__ == "__main__":
    sys.exit(main())
