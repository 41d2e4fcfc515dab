# SPDX-License-Identifier: GPL-3.0-or-later
"""Sanity table: the digital separation bound vs DeepJSCC on a few natural test images.

    .venv/bin/python sim/results/baselines/digital_sanity.py [--n-images 16] [--jscc DIR]

Natural test split (first n images), 64×64 RGB, AWGN with the true SNR, seed 0 (the channel
realisation of each image is sing.channel.channel_generator(0, id), as in `sing eval`). Digital
separation (sing.baselines.digital) at R = k·log2(1 + SNR) bits per image for the JSCC's k (BCR 1/48:
k = 256) and, for context, k = 1024 (BCR 1/12, no JSCC row there); JPEG and WebP, whole-file and
header-stripped counting. DeepJSCC: the model in --jscc (default models/jscc-natural64-bcr1_48; it may
still be training: its model id and training step are recorded). Cheap: no diffusion.
Writes digital_sanity.json (per-point means, per-image info) and digital_sanity.md next to itself.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
sys.path.insert(0, str(REPO))

from sing import data as D                                     # noqa: E402
from sing.baselines import digital_separation                  # noqa: E402
from sing.channel import ChannelConfig, apply_channel, channel_generator  # noqa: E402
from sing.commands.eval import device_name, git_commit         # noqa: E402
from sing.jscc import load_jscc                                # noqa: E402
from sing.metrics import compute_metrics, load_lpips           # noqa: E402

SNRS = (-5.0, 0.0, 5.0, 10.0, 15.0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-images", type=int, default=16)
    p.add_argument("--jscc", default=str(REPO / "models" / "jscc-natural64-bcr1_48"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(HERE / "digital_sanity"))
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.time()
    x, ids = D.load_split("natural", "test", n=a.n_images, progress=False)
    lp = load_lpips("alex")
    jdir = Path(a.jscc)
    jscc = load_jscc(jdir) if (jdir / "config.json").exists() else None
    rows = []

    def add(method, k, snr, rec, extra):
        m = compute_metrics(rec, x, lp)
        rows.append({"method": method, "k": k, "snr_db": snr,
                     **{n: float(v.mean()) for n, v in m.items()}, **extra})

    for snr in SNRS:
        if jscc is not None:
            with torch.no_grad():
                z = jscc.encode(x, snr)
                co = apply_channel(z, ChannelConfig("awgn", snr), [channel_generator(a.seed, i) for i in ids])
                rec = jscc.decode(co.y, co.snr_true_db).float()
            add("deepjscc", jscc.k, snr, rec, {"lost_fraction": 0.0})
        for k in (256, 1024):
            for codec in ("jpeg", "webp"):
                for header in ("file", "stripped"):
                    rec, info = digital_separation(x, k, snr, codec=codec, header=header)
                    kept = [d for d in info if not d["lost"]]
                    add(f"digital-{codec}/{header}", k, snr, rec, {
                        "lost_fraction": 1 - len(kept) / len(info),
                        "bits_budget": info[0]["bits_budget"],
                        "mean_bits_used_kept": (sum(d["bits_used"] for d in kept) / len(kept)) if kept else None,
                        "mean_quality_kept": (sum(d["quality"] for d in kept) / len(kept)) if kept else None})
    cfg = json.loads((jdir / "config.json").read_text()) if jscc is not None else {}
    setup = {"dataset": "natural", "split": "test", "resolution": 64, "n_images": len(ids),
             "channel": "awgn", "snr_source": "true", "seed": a.seed, "snrs_db": list(SNRS),
             "jscc_model": str(jdir.relative_to(REPO)) if jdir.is_relative_to(REPO) else str(jdir),
             "jscc_model_id": jscc.model_id if jscc is not None else None,
             "jscc_train_step": cfg.get("notes", {}).get("history", {}).get("step"),
             "digital": "sing.baselines.digital: largest quality by bisection; file = whole file bytes, "
                        "stripped = JPEG scan bytes + 1 (std Huffman tables) / WebP VP8 bitstream",
             "commit": git_commit(), "device": device_name("cpu"), "torch_threads": 1,
             "seconds": round(time.time() - t0, 1)}
    out = Path(a.out)
    out.with_suffix(".json").write_text(json.dumps({"schema": "sing.baselines.digital_sanity/1",
                                                    "setup": setup, "rows": rows}, indent=1) + "\n")
    lines = [f"# Digital separation vs DeepJSCC (sanity, {len(ids)} natural test images, 64×64, AWGN, true SNR)",
             "", f"Made by `.venv/bin/python sim/results/baselines/digital_sanity.py --n-images {a.n_images}` "
             f"at commit {setup['commit']}; JSCC {setup['jscc_model_id']} (training step "
             f"{setup['jscc_train_step']}: not final). R = k·log2(1+SNR) bits/image. Lost images are "
             f"mid-grey. PSNR dB / LPIPS-Alex / lost fraction.", "",
             "| method | k | " + " | ".join(f"{s:g} dB" for s in SNRS) + " |",
             "|---|---|" + "---|" * len(SNRS)]
    keys = sorted({(r["method"], r["k"]) for r in rows}, key=lambda t: (t[1], t[0]))
    for m, k in keys:
        cells = []
        for s in SNRS:
            r = next(r for r in rows if r["method"] == m and r["k"] == k and r["snr_db"] == s)
            cells.append(f"{r['psnr']:.2f} / {r['lpips']:.3f} / {r['lost_fraction']:.2f}")
        lines.append(f"| {m} | {k} | " + " | ".join(cells) + " |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
