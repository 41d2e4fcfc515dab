# SPDX-License-Identifier: GPL-3.0-or-later
"""Behaviour-equivalence check for refactors of the restoration code.

`dump` runs the receiver methods through the public Receiver (sing.methods.load_receiver /
Receiver.restore, the shipped models in models/) on the first N natural test images at one BCR and
AWGN SNR with fixed seeds, in float32 (no autocast), and saves every method's output images to an
.npz. `compare` reports, per method, the largest absolute difference between two dumps and fails
when it exceeds --tol.

    PYTHONPATH=. python sim/equivalence.py dump --out /tmp/before.npz
    ... change the code ...
    PYTHONPATH=. python sim/equivalence.py dump --out /tmp/after.npz
    python sim/equivalence.py compare /tmp/before.npz /tmp/after.npz --tol 1e-5

Run the dump of the old code with PYTHONPATH pointing at a checkout of the old commit: the tool
only uses the public API, so the same file drives both.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

METHODS = ("deepjscc", "sing-zero", "sing-inn", "ddnm-avgpool", "dps")
ROOT = Path(__file__).resolve().parent.parent


def dump(args) -> int:
    import torch
    from sing import data as D
    from sing.channel import ChannelConfig, apply_channel, channel_generator
    from sing.methods import load_receiver

    torch.manual_seed(0)
    models = ROOT / "models"
    jdir = models / f"jscc-natural64-bcr{args.bcr.replace('/', '_')}"
    rx = load_receiver([jdir], prior_dir=models / "prior-natural-64", calibration=jdir / "calibration",
                       inn_dir=jdir.parent / (jdir.name + "-inn"), device="cpu", autocast=None)
    jscc = rx.model()
    x, ids = D.load_split("natural", "test", n=args.n, progress=False)
    with torch.no_grad():
        z = jscc.encode(x, args.snr_db)
    co = apply_channel(z, ChannelConfig(kind="awgn", snr_db=args.snr_db),
                       [channel_generator(args.seed, i) for i in ids])
    out = {"ids": np.array(ids), "x": x.numpy()}
    for m in args.methods:
        t0 = time.perf_counter()
        extra = {"encoder_snr_db": args.snr_db} if m == "dps" else {}
        r = rx.restore(m, co.y, co.snr_true_db, ids, seed=args.seed, progress=False, **extra)
        out[m] = r.float().cpu().numpy()
        print(f"{m}: {tuple(r.shape)} in {time.perf_counter() - t0:.1f} s", flush=True)
    np.savez_compressed(args.out, **out)
    print(f"wrote {args.out}")
    return 0


def compare(args) -> int:
    a, b = np.load(args.a), np.load(args.b)
    if list(a["ids"]) != list(b["ids"]):
        print("the dumps hold different images")
        return 1
    bad, diffs = 0, {}
    for m in METHODS:
        if m not in a.files or m not in b.files:
            print(f"{m:14s} missing in {'A' if m not in a.files else 'B'}")
            continue
        d = diffs[m] = float(np.abs(a[m].astype(np.float64) - b[m].astype(np.float64)).max())
        ok = d <= args.tol
        bad += not ok
        print(f"{m:14s} max |A − B| = {d:.3g}  {'identical' if d == 0 else 'ok' if ok else 'FAIL'}")
    if args.json:
        from sing.commands.eval import device_name, git_commit
        rec = {"schema": "sing.equivalence/1", "a": args.a, "b": args.b, "a_label": args.label_a,
               "b_label": args.label_b, "images": [str(i) for i in a["ids"]], "tol": args.tol,
               "max_abs_diff": diffs, "holds": not bad, "commit": git_commit(), "device": device_name("cpu"),
               "command": "python sim/equivalence.py " + " ".join(sys.argv[1:])}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(rec, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 1 if bad else 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("dump", help="run the methods and save their output images")
    d.add_argument("--out", required=True)
    d.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    d.add_argument("--n", type=int, default=16)
    d.add_argument("--bcr", default="1/48")
    d.add_argument("--snr-db", type=float, default=0.0)
    d.add_argument("--seed", type=int, default=0)
    c = sub.add_parser("compare", help="largest absolute difference per method between two dumps")
    c.add_argument("a")
    c.add_argument("b")
    c.add_argument("--tol", type=float, default=1e-5)
    c.add_argument("--json", default=None, metavar="OUT", help="also write the result as JSON")
    c.add_argument("--label-a", default="", help="what dump A is (e.g. a commit)")
    c.add_argument("--label-b", default="", help="what dump B is")
    args = p.parse_args(argv)
    return dump(args) if args.cmd == "dump" else compare(args)


if __name__ == "__main__":
    sys.exit(main())
