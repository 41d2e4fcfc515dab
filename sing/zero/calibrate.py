# SPDX-License-Identifier: GPL-3.0-or-later
"""`sing calibrate`: fit SING-Zero's linear operators (calibration.py) to a DeepJSCC model.

    sing calibrate --jscc models/jscc-natural-1-48 --snr-db -5 0 5 10 15 --n-images 64 \
        --out models/jscc-natural-1-48/calibration [--data natural --split train --seed 0]
"""
from __future__ import annotations

import argparse
import logging
import shlex
import sys

from ..errors import InputError

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--jscc", required=True, help="DeepJSCC model directory")
    p.add_argument("--snr-db", type=float, nargs="+", default=[-5.0, 0.0, 5.0, 10.0, 15.0],
                   help="SNRs to calibrate (dB); interpolated linearly in between")
    p.add_argument("--n-images", type=int, default=64, help="calibration images (default 64)")
    p.add_argument("--out", required=True, help="output directory (model.safetensors + config.json)")
    p.add_argument("--data", default=None, help="data set (default: the one the JSCC was trained on)")
    p.add_argument("--split", default="train", choices=["train", "val"],
                   help="split to calibrate on (never test)")
    p.add_argument("--seed", type=int, default=0, help="channel-noise seed")
    p.add_argument("--channel", default="awgn", choices=["awgn", "rayleigh"])
    p.add_argument("--pool", type=int, nargs="*", default=None,
                   help="avgpool factors to fit σ_y for (default: 2 4 8 where they divide the size)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default="cpu")


def run(args) -> int:
    from ..data import load_split
    from ..jscc import load_jscc
    from .calibration import fit_calibration
    if args.n_images < 2:
        raise InputError("--n-images must be ≥ 2 (a few dozen are enough)")
    jscc = load_jscc(args.jscc, device=args.device)
    cfg = jscc.config
    data = args.data or getattr(cfg, "dataset", None) or "natural"
    x, ids = load_split(data, args.split, args.n_images)
    if x.shape[1] != cfg.channels:
        raise InputError(f"data set {data!r} gives {tuple(x.shape[1:])} images but JSCC {args.jscc} takes "
                         f"{cfg.channels}-channel images: pass --data with a matching set")
    # images of another size than the JSCC's native one give a calibration at that size (a
    # calibration is also carried to other sizes by Calibration.for_shape: docs/ALGORITHMS.md §4)
    cal = fit_calibration(jscc, x, args.snr_db, ids=ids, channel=args.channel, seed=args.seed,
                          batch_size=args.batch_size, pool_factors=args.pool,
                          meta={"data": data, "split": args.split, "jscc": str(args.jscc),
                                "command": "sing " + " ".join(shlex.quote(a) for a in sys.argv[1:])})
    out = cal.save(args.out)
    for s, si in zip(cal.snr_db, cal.sigma_identity):
        log.info("SNR %5.1f dB: σ_identity %.4f, mean h %.3f", s, float(si), float(cal.h[cal.snr_db.index(s)].mean()))
    print(f"calibration for {cal.model_id} written to {out}")
    return 0
