#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Image grids of SING on each DeepJSCC decoder: per row one crop, columns original | DeepJSCC (MSE
decoder) | SING-Zero on it | perceptual DeepJSCC | SING-Zero on the perceptual decoder.

The crops are chosen by a fixed rule, not by hand: `sing.data.spread_subset` (one crop from each of
n source photos spread evenly over the split's fixed order). Each image goes through the same seeded
channel as in `sing eval` (`sing.channel.channel_generator(seed, id)`) and the same per-image
restoration seed, so the pictures are the very images behind the result files of the `unseen` grid.
SING-Zero's settings are the val-chosen ones (tune-zero-natural, tune-zero-perceptual choice.json).

    .venv/bin/python sim/decoder_grid.py --data natural-unseen --out sim/results/unseen/grid_natural-unseen.png
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def zero_settings(grid: str) -> dict:
    c = json.loads((REPO / "sim" / "results" / grid / "choice.json").read_text())
    return {"operator": c["operator"], "sigma_scale": c["sigma_scale"], "start": c["start"], "eta": c["eta"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="natural-unseen")
    ap.add_argument("--split", default="test")
    ap.add_argument("--n", type=int, default=6, help="rows: crops from n photos spread over the split")
    ap.add_argument("--snr-db", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--autocast", default="bf16", choices=("bf16", "fp16", "none"))
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    from PIL import Image, ImageDraw
    from sing import data as D
    from sing.channel import ChannelConfig
    from sing.commands.eval import transmit
    from sing.methods import load_receiver, model_dir_for, prior_dir_for
    from sing.metrics import compute_metrics, load_lpips

    x, ids = D.spread_subset(a.data, a.split, a.n)
    lp = load_lpips("alex")
    cols, names = [x], ["original"]
    for dec, grid in (("mse", "tune-zero-natural"), ("perceptual", "tune-zero-perceptual")):
        jdir = model_dir_for(a.data, "1/48", dec == "perceptual")
        rx = load_receiver([jdir], prior_dir_for(a.data), jdir / "calibration",
                           autocast=None if a.autocast == "none" else a.autocast)
        co = transmit(rx.model(), x, ids, ChannelConfig("awgn", a.snr_db), a.seed, a.snr_db)
        own = "deepjscc" if dec == "mse" else "deepjscc-perceptual"
        cols.append(rx.decode(co.y, co.snr_true_db).cpu())
        cols.append(rx.restore("sing-zero", co.y, co.snr_true_db, ids, seed=a.seed, **zero_settings(grid)).cpu())
        names += [own, "SING-Zero on " + ("MSE" if dec == "mse" else "percept.")]
    scores = [compute_metrics(c, x, lp)["lpips"] for c in cols]
    s, pad, head = 128, 4, 18
    W, H = len(cols) * (s + pad) + pad, head + a.n * (s + pad) + pad
    sheet = Image.new("RGB", (W, H), "white")
    draw = ImageDraw.Draw(sheet)
    for j, (c, name) in enumerate(zip(cols, names)):
        draw.text((pad + j * (s + pad), 3), name, fill="black")
        for i, img in enumerate(D.to_uint8(c)):
            tile = Image.fromarray(img).resize((s, s), Image.NEAREST)
            y0 = head + pad + i * (s + pad)
            sheet.paste(tile, (pad + j * (s + pad), y0))
            if j:
                draw.text((pad + j * (s + pad) + 3, y0 + s - 12), f"LPIPS {float(scores[j][i]):.3f}", fill="yellow")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    print(f"wrote {out}: {a.n} crops of {a.data}/{a.split} ({', '.join(ids)}); columns {', '.join(names)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
