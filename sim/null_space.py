#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""What moves SING-Zero's LPIPS: the null-space filling studied one lever at a time, on the *val*
split at the headline point (natural 64×64, BCR 1/48, AWGN 0 dB, 64 images), on both DeepJSCC
decoders. Each decoder starts from its val-chosen setting (sim/results/tune-zero-natural/ and
tune-zero-perceptual/ choice.json) and one lever is moved while the others stay there:

  eta       η, the fresh-noise fraction of each step: how stochastic the null-space filling is
  start     the warm start t₀/T: how much of x̂ the chain re-noises (noise level of the filling)
  sigma     σ_y scale: how far the range space may move away from x̂ (observation noise level)
  rank      the spectral operator's threshold τ on |h(f)| (operators.Spectral): components with
            |h| ≤ τ go to the null space, filled by the prior alone; the range fraction is reported
  steps     DDIM steps over [0, T] (the grid's fineness at a fixed warm start: 50 → Δt = 20)
  ensemble  the mean of K chains with K seeds (K = 1: the receiver's own seed)
  alone     the steps lever with the data term off: plain DDIM from the same warm start (SDEdit),
            i.e. what the prior alone does to x̂ at these t
  fine, alone-fine
            η at 1000 DDIM steps (Δt = 1: every t below the warm start is a step), with and without
            the data term. At 50 steps the chain jumps from t = 20 to the end in one step, so its
            output is the UNet's x̂₀ there, a posterior mean; at Δt = 1 with η = 0 it follows the
            probability-flow ODE to t = 0 and keeps what that mean averages away

Besides PSNR, SSIM and LPIPS each point records each output's high-pass energy; the table's
`detail` is their mean over the originals' (below 1: smoother than the photographs; above: more fine
structure than they had, e.g. artefacts). With the steps lever it also draws study_steps_<decoder>.png
(four val images evenly spaced over the split: original | decoder | SING-Zero at each steps value).

The channel noise and the per-image restoration seed are those of `sing eval` (K = 1 at the chosen
setting is the tuning sweep's point). Each point is one JSON under <out>/runs/<decoder>/<prior>/
(resumable: a point whose file exists is read, not run); then <out>/study.json (per point: PSNR, SSIM, LPIPS, LPIPS ratio
to the decoder alone with a 95 % cluster-bootstrap interval over source photographs), study.md and
study.png.

    .venv/bin/python sim/null_space.py                       # both decoders, every lever (~1 h, 2 cores)
    .venv/bin/python sim/null_space.py --decoders perceptual --levers eta rank --out /tmp/ns
    # (study.* describe the levers of that run: a subset written to the default --out replaces the full study)
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "sim"))

from compare import _rel                  # noqa: E402  (sim/ scripts: paths relative to the repo)
from decoder_grid import zero_settings    # noqa: E402  (a decoder's val-chosen SING-Zero settings)
from prior_data_size import DECODERS      # noqa: E402  (decoder → its SING-Zero tuning grid)

NAME = {"mse": "DeepJSCC (MSE decoder)", "perceptual": "perceptual DeepJSCC"}
LEVERS = {
    "eta": ("η (fresh noise per step)", [0.0, 0.5, 0.85, 1.0]),
    "start": ("warm start t₀/T", [0.02, 0.05, 0.1, 0.2, 0.3]),
    "sigma": ("σ_y scale", [0.25, 0.5, 1.0, 1.5, 2.0, 3.0]),
    "rank": ("operator threshold τ on |h|", [0.003, 0.01, 0.03, 0.1, 0.3]),
    "steps": ("DDIM steps over [0, T]", [50, 100, 250]),
    "ensemble": ("chains averaged (K)", [1, 2, 4, 8]),
    "alone": ("DDIM steps, prior alone (no data term)", [50, 100, 250]),
    "fine": ("η at 1000 DDIM steps (Δt = 1)", [0.0, 0.5, 0.85]),
    "alone-fine": ("η at 1000 DDIM steps (Δt = 1), prior alone", [0.0, 0.5, 0.85]),
}
KEY = {"eta": "eta", "start": "start", "sigma": "sigma_scale", "rank": "tau", "steps": "steps", "ensemble": "k",
       "alone": "steps", "fine": "eta", "alone-fine": "eta"}
ALONE = {"data_term": "none"}     # the `alone` lever's settings: SDEdit from the same warm start, no correction
# what a lever fixes besides the value it moves (its rows are not the chosen setting, whatever the value)
FIXED = {"alone": ALONE, "fine": {"steps": 1000}, "alone-fine": {**ALONE, "steps": 1000}}


def chosen(decoder: str) -> dict:
    import inspect
    from sing.zero import sing_zero
    c = zero_settings(DECODERS[decoder])                                  # spectral, as restore() runs
    tau = inspect.signature(sing_zero).parameters["tau"].default          # the receiver's own threshold
    return {"eta": c["eta"], "start": c["start"], "sigma_scale": c["sigma_scale"], "tau": tau, "steps": 50, "k": 1}


class Point:
    """One decoder's val images through the seeded channel, decoded once; runs SING-Zero settings."""

    def __init__(self, decoder: str, n: int, snr_db: float, seed: int, prior: Path | None = None):
        from sing import data as D
        from sing.channel import ChannelConfig
        from sing.commands.eval import transmit
        from sing.methods import load_receiver, model_dir_for, prior_dir_for
        from sing.metrics import load_lpips
        self.x, self.ids = D.load_split("natural", "val", n=n, progress=False)
        self.seed, self.lp = seed, load_lpips("alex")
        jdir = model_dir_for("natural", "1/48", decoder == "perceptual")
        prior = Path(prior) if prior else prior_dir_for("natural")
        self.rx = load_receiver([jdir], prior, jdir / "calibration", autocast="bf16")
        co = transmit(self.rx.model(), self.x, self.ids, ChannelConfig("awgn", snr_db), seed, snr_db)
        self.snr = co.snr_true_db
        self.x_hat = self.rx.decode(co.y, self.snr).cpu()
        self.calibration = self.rx.parts_for(self.rx.model().model_id)["calibration"]
        self.models = {"jscc": _rel(jdir), "prior": _rel(prior)}

    def metrics(self, images) -> list[dict]:
        from sing.metrics import compute_metrics
        m = compute_metrics(images, self.x, self.lp)
        m["high_pass"] = high_pass(images)
        return [{"id": i, **{k: float(v[j]) for k, v in m.items()}} for j, i in enumerate(self.ids)]

    def range_fraction(self, tau: float) -> float:
        """Fraction of spectral components with |h| > τ (the operator's range), mean over images."""
        h = self.calibration.for_shape(tuple(self.x_hat.shape[1:])).at(self.snr, device="cpu", batch=len(self.ids)).h
        return float((h.abs() > tau).float().mean())

    def restore(self, s: dict, rows: list[int] | None = None):
        """SING-Zero with settings `s` on all images (or the given rows): images (B, C, H, W); with
        `data_term` "none" the same chain without the range-null-space correction (SDEdit)."""
        import torch
        from sing.channel import generator_for
        from sing.baselines import sdedit_restore
        from sing.zero import sing_zero
        rows = list(range(len(self.ids))) if rows is None else rows
        outs = []
        for k in range(int(s["k"])):   # chain k: the receiver's seed + k (k = 0: `sing eval`'s own draws)
            gens = [generator_for(self.seed + k, f"restore:{self.ids[j]}") for j in rows]
            if s.get("data_term") == "none":
                outs.append(sdedit_restore(self.rx.prior, self.x_hat[rows], steps=int(s["steps"]), eta=s["eta"],
                                           start=s["start"], generators=gens, progress=False).float().cpu())
                continue
            outs.append(sing_zero(self.rx.prior, self.calibration, self.x_hat[rows], self.snr[rows],
                                  operator="spectral", sigma_scale=s["sigma_scale"], steps=int(s["steps"]),
                                  eta=s["eta"], start=s["start"], tau=s["tau"], generators=gens,
                                  progress=False).float().cpu())
        return torch.stack(outs).mean(0).clamp(0, 1)


def high_pass(images):
    """Per-image detail: mean |x − box₃(x)| (the image minus its 3×3 local mean), a (B,) tensor."""
    import torch.nn.functional as F
    return (images - F.avg_pool2d(images, 3, 1, 1, count_include_pad=False)).abs().flatten(1).mean(1)


def summarise(per_image: list[dict], ref: list[dict], original_high_pass: float) -> dict:
    import numpy as np
    from compare import bootstrap
    ids = [p["id"] for p in per_image]
    out = {k: float(np.mean([p[k] for p in per_image])) for k in ("psnr", "ssim", "lpips")}
    out["detail"] = float(np.mean([p["high_pass"] for p in per_image])) / original_high_pass
    b = bootstrap(np.array([p["lpips"] for p in per_image]), np.array([p["lpips"] for p in ref]), ids)
    d = bootstrap(np.array([p["psnr"] for p in per_image]), np.array([p["psnr"] for p in ref]), ids)
    return {**out, "lpips_ratio": b["ratio"], "lpips_ratio_ci": b["ratio_ci"], "psnr_diff": d["diff"],
            "psnr_diff_ci": d["diff_ci"]}


def study(a) -> dict:
    from tqdm import tqdm
    from sing.commands.eval import git_commit
    res = {"schema": "sing.null-space/1", "split": "val", "n_images": a.n, "bcr": "1/48", "channel": "awgn",
           "snr_db": a.snr_db, "seed": a.seed, "decoders": {}}
    for dec in a.decoders:
        base = chosen(dec)
        pt = Point(dec, a.n, a.snr_db, a.seed, a.prior)
        runs = Path(a.out) / "runs" / dec / Path(pt.models["prior"]).name      # one folder per decoder and prior
        runs.mkdir(parents=True, exist_ok=True)
        ref = pt.metrics(pt.x_hat)
        hp0 = float(high_pass(pt.x).mean())
        entry = {"decoder_alone": summarise(ref, ref, hp0), "original_high_pass": hp0, "chosen": base,
                 **pt.models, "levers": {}}
        todo = [(lv, v) for lv in a.levers for v in LEVERS[lv][1]]
        for lv, v in tqdm(todo, desc=f"null space, {dec} decoder"):
            s = {**base, **FIXED.get(lv, {}), KEY[lv]: v}
            f = runs / ("_".join(f"{k}{s[k]:g}" if not isinstance(s[k], str) else f"{k}-{s[k]}"
                                 for k in sorted(s)) + ".json")
            rec = json.loads(f.read_text()) if f.exists() else None
            if rec is None or "high_pass" not in rec["per_image"][0]:     # new, or from before `high_pass`
                t0 = time.perf_counter()
                per = pt.metrics(pt.restore(s))
                rec = {"settings": s, "seconds_per_image": (time.perf_counter() - t0) / a.n,
                       "commit": git_commit(), "per_image": per}
                f.write_text(json.dumps(rec) + "\n")
            row = {"value": v, "settings": s, **summarise(rec["per_image"], ref, hp0),
                   "seconds_per_image": rec["seconds_per_image"], "file": _rel(f)}
            if lv == "rank":
                row["range_fraction"] = pt.range_fraction(v)
            entry["levers"].setdefault(lv, []).append(row)
        res["decoders"][dec] = entry
        if "steps" in a.levers:
            steps_figure(pt, base, Path(a.out) / f"study_steps_{dec}.png")
    return res


def steps_figure(pt: Point, base: dict, path: Path, n: int = 4) -> None:
    """Rows: n val images evenly spaced over the split's order (a fixed rule); columns: original |
    decoder | SING-Zero at each value of the steps lever (the same seeds as the study)."""
    import torch
    from PIL import Image, ImageDraw
    from sing.prior.sample import image_grid
    rows = [round(j * len(pt.ids) / n) for j in range(n)]
    cols = [pt.x[rows], pt.x_hat[rows]] + [pt.restore({**base, "steps": v}, rows) for v in LEVERS["steps"][1]]
    names = ["original", "decoder"] + [f"{v} steps" for v in LEVERS["steps"][1]]
    grid = Image.fromarray(image_grid(torch.stack(cols, 1).flatten(0, 1), nrow=len(cols)))
    scale, head = 2, 14
    sheet = Image.new("RGB", (grid.width * scale, grid.height * scale + head), "white")
    sheet.paste(grid.resize((grid.width * scale, grid.height * scale), Image.NEAREST), (0, head))
    draw = ImageDraw.Draw(sheet)
    for j, name in enumerate(names):
        draw.text((4 + j * (pt.x.shape[3] + 2) * scale, 1), name, fill="black")
    sheet.save(path)


def markdown(res: dict, cmd: str) -> str:
    L = [f"# What moves SING-Zero's LPIPS (val, {res['n_images']} images, BCR {res['bcr']}, AWGN "
         f"{res['snr_db']:g} dB)", "", f"Generated by `{cmd}` (sim/null_space.py). One lever moved at a time "
         "from each decoder's val-chosen setting (**bold**); ratio: SING-Zero's LPIPS over the decoder's own, "
         "95 % cluster-bootstrap interval over source photographs; detail: the outputs' high-pass energy "
         "(mean |x − 3×3 local mean| over all images) over the originals' (1 = as much fine structure as "
         "the photographs; it counts structure, not whether it is right).", ""]
    for dec, e in res["decoders"].items():
        d = e["decoder_alone"]
        L += [f"## SING-Zero on {NAME[dec]} (alone: PSNR {d['psnr']:.2f} dB, LPIPS {d['lpips']:.4f}, "
              f"detail {d['detail']:.2f})", "",
              "| lever | value | PSNR (dB) | ΔPSNR | SSIM | LPIPS | LPIPS ratio [95 % CI] | detail | s/image |",
              "|---|---|---|---|---|---|---|---|---|"]
        for lv, rows in e["levers"].items():
            for r in rows:
                v = f"{r['value']:g}" + (f" (range {100 * r['range_fraction']:.0f} %)" if "range_fraction" in r else "")
                if r["value"] == e["chosen"][KEY[lv]] and lv not in FIXED:
                    v = f"**{v}**"
                lo, hi = r["lpips_ratio_ci"]
                L.append(f"| {LEVERS[lv][0]} | {v} | {r['psnr']:.2f} | {r['psnr_diff']:+.2f} | {r['ssim']:.4f} | "
                         f"{r['lpips']:.4f} | {r['lpips_ratio']:.3f} [{lo:.3f}, {hi:.3f}] | {r['detail']:.2f} | "
                         f"{r['seconds_per_image']:.2f} |")
        L.append("")
    return "\n".join(L)


def plot(res: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    levers = [lv for lv in LEVERS if any(lv in e["levers"] for e in res["decoders"].values())]
    cols = min(4, len(levers))
    rows = -(-len(levers) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.9 * rows), sharey=True, squeeze=False)
    for ax in axes.flat[len(levers):]:
        ax.set_visible(False)
    for ax, lv in zip(axes.flat, levers):
        for dec, e in res["decoders"].items():
            rows = e["levers"].get(lv, [])
            if not rows:
                continue
            v = [r["value"] for r in rows]
            ax.errorbar(v, [r["lpips_ratio"] for r in rows],
                        yerr=[[r["lpips_ratio"] - r["lpips_ratio_ci"][0] for r in rows],
                              [r["lpips_ratio_ci"][1] - r["lpips_ratio"] for r in rows]],
                        marker="o", capsize=2, label=f"on {NAME[dec]}")
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.axhline(0.9, color="grey", lw=0.8, ls=":")
        ax.set_xlabel(LEVERS[lv][0])
        if lv in ("rank", "steps", "ensemble", "alone"):
            ax.set_xscale("log")
            ax.set_xticks(LEVERS[lv][1], [f"{v:g}" for v in LEVERS[lv][1]])
            ax.minorticks_off()
    for ax in axes[:, 0]:
        ax.set_ylabel("LPIPS / decoder's own")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"SING-Zero, one lever at a time (val, BCR {res['bcr']}, AWGN {res['snr_db']:g} dB)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--decoders", nargs="+", default=list(DECODERS), choices=list(DECODERS))
    ap.add_argument("--levers", nargs="+", default=list(LEVERS), choices=list(LEVERS))
    ap.add_argument("--n", type=int, default=64, help="val images")
    ap.add_argument("--snr-db", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--prior", default=None, help="prior folder (default: the shipped natural prior)")
    ap.add_argument("--out", default=str(REPO / "sim" / "results" / "null-space"))
    a = ap.parse_args(argv)
    res = study(a)
    out = Path(a.out)
    cmd = "sim/null_space.py " + " ".join(sys.argv[1:] if argv is None else argv)
    res["command"] = cmd.strip()
    (out / "study.json").write_text(json.dumps(res, indent=1) + "\n")
    (out / "study.md").write_text(markdown(res, cmd.strip()) + "\n")
    plot(res, out / "study.png")
    print(f"wrote {out}/study.json, study.md, study.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
