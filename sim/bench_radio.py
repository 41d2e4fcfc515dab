#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Radio path vs pure simulation, on the same images (docs/BENCHMARKS.md).

Three runs on the first N natural test crops (written as PNGs, fed to the flowgraph's image source),
DeepJSCC at BCR 1/48 unless --jscc says otherwise, AWGN at --snr-db:
  A. `sing eval` in-process on `folder:<those PNGs>` (same ids, same seeded channel);
  B. `flowgraphs/loopback_awgn_no_gui.grc`: source → PDU channel (sing.channel, seeded) → receiver → worker;
  C. `flowgraphs/loopback_awgn_grnoise_no_gui.grc`: GNU Radio's own noise (analog.noise_source_c) on the
     burst stream at the same SNR.
Pass criteria: |B − A| ≤ 1 % and |C − A| ≤ 5 % for PSNR, SSIM and LPIPS means.

    .venv/bin/python sim/bench_radio.py --n-images 32 --snr-db 0 [--method deepjscc]
writes sim/results/radio/bench_radio_vs_eval_<method>_<snr>dB.json
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

from radio import compile_grc, eval_on_folder, free_port, read_outputs, write_images, run_flowgraph, start_worker, stop_worker, wait_ready  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-images", type=int, default=32)
    ap.add_argument("--snr-db", type=float, default=0.0)
    ap.add_argument("--method", default="deepjscc")
    ap.add_argument("--jscc", default=str(REPO / "models" / "jscc-natural64-bcr1_48"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(REPO / "sim" / "results" / "radio"))
    args = ap.parse_args(argv)

    from sing import data as D
    from sing.commands.eval import device_name, git_commit
    from sing.metrics import compute_metrics, load_lpips

    x, ids = D.load_split("natural", "test", n=args.n_images, progress=False)
    work = Path(tempfile.mkdtemp(prefix="sing-bench-radio-"))
    imgs = work / "images"
    names = write_images(x, ids, imgs)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # A: sing eval on the same files (ids "folder/<name>" as the flowgraph's source makes them)
    res_a, t_a = eval_on_folder(imgs, args, work)
    lp = load_lpips("alex")
    paths = {"jscc": args.jscc}
    port = free_port()
    endpoint = f"tcp://127.0.0.1:{port}"
    worker = start_worker(paths, port, work / "worker.log")
    rows = {}
    try:
        wait_ready(endpoint, worker)
        for key, grc in (("B_seeded_channel", "loopback_awgn_no_gui"), ("C_gnuradio_noise", "loopback_awgn_grnoise_no_gui")):
            t1 = time.time()
            script = compile_grc(grc, work)
            rroot = work / key
            run_flowgraph(script, {"snr_db": args.snr_db, "method": args.method, "images": imgs, "jscc": args.jscc,
                                   "endpoint": endpoint, "out_dir": rroot, "seed": args.seed, "interval": 0.01,
                                   "worker_timeout": 120})
            rdir = rroot / args.method
            summary = json.loads((rdir / "summary.json").read_text())
            xr = read_outputs(rdir, names, 3)
            m = {k: float(v.mean()) for k, v in compute_metrics(xr, x, lp).items()}
            rows[key] = {"flowgraph": f"flowgraphs/{grc}.grc", "metrics": m, "seconds": time.time() - t1,
                         "summary_counts": {k: v for k, v in summary.items() if k != "images"}}
    finally:
        stop_worker(worker)
        shutil.rmtree(work, ignore_errors=True)
    ref = res_a["metrics"]
    rel = lambda m: {k: abs(m[k] - ref[k]) / abs(ref[k]) for k in ("psnr", "ssim", "lpips")}
    for key, tol in (("B_seeded_channel", 0.01), ("C_gnuradio_noise", 0.05)):
        rows[key]["relative_difference"] = rel(rows[key]["metrics"])
        rows[key]["tolerance"] = tol
        rows[key]["pass"] = all(v <= tol for v in rows[key]["relative_difference"].values())
    result = {"schema": "sing.bench.radio/1",
              "setup": {"dataset": "natural", "split": "test", "n_images": len(x), "resolution": 64,
                        "bcr": res_a["setup"]["bcr"], "k": res_a["setup"]["k"], "channel": "awgn",
                        "snr_db": args.snr_db, "snr_source": "true", "method": args.method,
                        "jscc_model": res_a["setup"]["jscc_model"], "jscc_model_id": res_a["setup"]["jscc_model_id"],
                        "seed": args.seed, "commit": git_commit(), "device": device_name("cpu"),
                        "command": "sim/bench_radio.py " + " ".join(argv or sys.argv[1:])},
              "A_sing_eval": {"metrics": ref, "seconds": t_a}, **rows}
    f = out / f"bench_radio_vs_eval_{args.method}_{args.snr_db:g}dB.json"
    f.write_text(json.dumps(result, indent=1) + "\n")
    for key in ("A_sing_eval", "B_seeded_channel", "C_gnuradio_noise"):
        m = result[key]["metrics"]
        extra = "" if key.startswith("A") else (f"  Δ {', '.join(f'{k} {v * 100:.2f} %' for k, v in result[key]['relative_difference'].items())}"
                                                f"  {'PASS' if result[key]['pass'] else 'FAIL'} (≤ {result[key]['tolerance'] * 100:g} %)")
        print(f"{key:18s} PSNR {m['psnr']:.3f}  SSIM {m['ssim']:.4f}  LPIPS {m['lpips']:.4f}{extra}")
    print(f"→ {f}")
    return 0 if all(rows[k]["pass"] for k in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
