#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""What the prior's unconditional samples look like, in numbers: plain DDIM vs. DDIM with
the DC posterior of x̂_0 (sing/prior/dc_posterior.py), next to the same statistics of train images.

    .venv/bin/python sim/prior_samples.py --prior models/prior-natural-64 --data natural [--n 64]

Per image: the channel means (their distribution vs. the data's: Fréchet distance between the two
Gaussians, the "DC-FD"); the HSV saturation of the mean colour (flat saturated fields score high);
the pixel standard deviation inside the image and the mean gradient magnitude |∇x| (texture and
edges; a flat field scores ~0). Writes sim/results/prior-samples/<prior>.json (+ .md table).
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _frechet(a, b) -> float:
    """Fréchet distance between Gaussians fitted to the rows of a and b (N, C)."""
    import numpy as np
    from scipy import linalg
    ma, mb = a.mean(0), b.mean(0)
    ca, cb = np.atleast_2d(np.cov(a.T)), np.atleast_2d(np.cov(b.T))
    s = linalg.sqrtm(ca @ cb)
    s = s.real if np.iscomplexobj(s) else s
    return float(((ma - mb) ** 2).sum() + np.trace(ca + cb - 2 * s))


def stats(x01, ref_means=None) -> dict:
    """Statistics of a batch (N, C, H, W) in [0, 1]."""
    import numpy as np
    import torch
    m = x01.mean(dim=(2, 3))                                       # (N, C)
    if x01.shape[1] == 3:
        mx, mn = m.max(1).values, m.min(1).values
        sat = float(((mx - mn) / mx.clamp(min=1e-6)).mean())
    else:
        sat = None
    gx = (x01[..., :, 1:] - x01[..., :, :-1]).abs().mean(dim=(1, 2, 3))
    gy = (x01[..., 1:, :] - x01[..., :-1, :]).abs().mean(dim=(1, 2, 3))
    out = {"n": int(x01.shape[0]),
           "mean_colour": [round(float(v), 4) for v in m.mean(0)],
           "mean_colour_std": [round(float(v), 4) for v in m.std(0)],
           "saturation_of_mean_colour": None if sat is None else round(sat, 4),
           "pixel_std_in_image": round(float(x01.flatten(2).std(2).mean()), 4),
           "mean_abs_gradient": round(float((gx + gy).mean() / 2), 4),
           "flat_fraction": round(float((x01.flatten(2).std(2).mean(1) < 0.03).float().mean()), 4)}
    if ref_means is not None:
        out["dc_frechet_to_train"] = round(_frechet(m.double().numpy(), ref_means), 5)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prior", required=True)
    ap.add_argument("--data", required=True, help="the prior's training data set")
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--eta", type=float, default=0.5, help="DDIM η (DDNM's, sing/prior/ddim.py)")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(REPO / "sim" / "results" / "prior-samples"))
    a = ap.parse_args(argv)
    import torch
    torch.set_num_threads(a.threads)
    from sing.data import load_split
    from sing.prior import load_prior
    from sing.prior.dc_posterior import of_prior
    from sing.prior.sample import sample_images
    prior = load_prior(a.prior)
    dc = of_prior(prior)
    if dc is None:
        raise SystemExit(f"{a.prior} has no DC statistics: python -m sing.prior.dc_posterior "
                         f"--prior {a.prior} --data {a.data}")
    train, _ = load_split(a.data, "train", n=a.n + 2048, progress=False)
    ref = train[a.n:].mean(dim=(2, 3)).double().numpy()      # the reference: other train images
    rows = {"train images": stats(train[: a.n], ref)}
    times = {}
    for name, d in (("plain DDIM", None), ("DDIM + DC posterior", dc)):
        t0 = time.time()
        x = sample_images(prior, a.n, a.steps, a.eta, torch.Generator().manual_seed(a.seed), dc=d)
        times[name] = round(time.time() - t0, 1)
        rows[name] = stats(x, ref)
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                text=True).stdout.strip()
    except OSError:
        commit = ""
    import platform
    device = f"{prior.device.type}:{platform.machine()}" + (f" {torch.cuda.get_device_name()}"
                                                            if prior.device.type == "cuda" else "")
    res = {"format": "sing.prior-samples/1", "prior": str(a.prior), "data": a.data, "device": device,
           "threads": a.threads,
           "sampler": {"steps": a.steps, "eta": a.eta, "seed": a.seed, "n": a.n},
           "dc_prior_images": dc.n_images, "rows": rows, "seconds": times, "commit": commit,
           "command": "python sim/prior_samples.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = Path(a.prior).name
    (out / f"{stem}.json").write_text(json.dumps(res, indent=2) + "\n")
    hdr = ("| | DC-FD to train ↓ | saturation of mean colour | pixel std in image | mean abs gradient "
           "| flat fraction |\n|---|---|---|---|---|---|\n")
    body = "".join(f"| {k} | {r.get('dc_frechet_to_train', 0):.4f} | {'–' if r['saturation_of_mean_colour'] is None else format(r['saturation_of_mean_colour'], '.3f')} | "
                   f"{r['pixel_std_in_image']:.3f} | {r['mean_abs_gradient']:.4f} | {r['flat_fraction']:.2f} |\n"
                   for k, r in rows.items())
    md = (f"Unconditional samples of `{a.prior}` ({a.n} each, DDIM {a.steps} steps, η {a.eta}, seed "
          f"{a.seed}) vs. {a.n} `{a.data}` train images. Flat field: pixel std < 0.03.\n\n" + hdr + body +
          f"\nCommand: `{res['command']}`\n")
    (out / f"{stem}.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
