#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""What the prior's training data and size do for SING: priors trained on nested fractions of the
natural train sources (`sing train-prior --source-fraction`) and of two UNet sizes, each measured on
the *val* split at the headline point (BCR 1/48, AWGN 0 dB) by

  * SING-Zero on the MSE decoder and on the perceptual decoder, each with its val-chosen settings
    (sim/results/tune-zero-natural/choice.json, tune-zero-perceptual/choice.json), LPIPS and PSNR;
  * the prior alone: one-step x̂₀ PSNR on noisy val images at t = 200 and 500 (sing.prior.denoise_table),
    i.e. how well the prior has learnt photographs it never saw, with no guidance in the way.

    # F in 0.25 0.5 1.0 with P = base, F in 0.25 1.0 with P = small; 600 steps each (1 thread, ~20 min):
    sing train-prior --data natural --source-fraction F --unet-preset P --steps 600 --batch 16 --threads 1 \\
        --mixed-precision bf16 --seed 0 --sample-every 100000 --out runs/curve/run-P-fF \\
        --export runs/curve/s600/prior-P-fF
    # the base priors continued from their 600-step checkpoints (same --out) to 1200 steps:
    sing train-prior … --steps 1200 --out runs/curve/run-base-fF --export runs/curve/s1200/prior-base-fF
    # the wide UNet on all sources, one run exported at each stage (S in 600 1200 3000; 2 processes):
    sing train-prior --data natural --unet-preset wide --steps S --batch 16 --lr 0.0002 --ema-decay 0.999 \
        --threads 1 --num-processes 2 --mixed-precision bf16 --seed 0 --sample-every 100000 \
        --out runs/wide/run --export runs/wide/sS/prior-wide-f1.0
    .venv/bin/python sim/prior_data_size.py --priors runs/curve/s600 runs/curve/s1200 \
        runs/wide/s600 runs/wide/s1200 runs/wide/s3000 [--n 64]

Every `prior-<preset>-f<fraction>/` exported prior under the --priors folders is one point (the shipped
models/prior-natural-64 is added as the longest-trained base point). Writes one sing.eval/1 file per
point and decoder, curve.json, curve.md and curve.png to sim/results/prior-data-size/.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DECODERS = {"mse": "tune-zero-natural", "perceptual": "tune-zero-perceptual"}


def describe(prior: Path) -> dict:
    """Preset, parameters, source fraction, train sources and steps of an exported prior."""
    from safetensors import safe_open
    from sing import data as D
    cfg = json.loads((prior / "config.json").read_text())
    tr = cfg["training"]
    with safe_open(str(prior / "model.safetensors"), "pt") as f:
        params = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
    frac = float(tr.get("source_fraction", 1.0))
    n_sources = sum(s["split"] == "train" for s in D.load_manifest()["sources"])
    return {"prior": str(prior.relative_to(REPO) if prior.is_relative_to(REPO) else prior),
            "preset": tr["unet_preset"], "params": params, "source_fraction": frac,
            "train_sources": math.ceil(frac * n_sources),
            "train_pyramid_images": len(D._NaturalTrain(False, frac).shapes),
            "steps": tr["steps"], "batch": tr["batch"], "train_gflop_per_image": train_gflop(cfg)}


def train_gflop(cfg: dict) -> float:
    """GFLOP of one training image (UNet forward + backward at the prior's size), counted by torch's
    FlopCounterMode (a multiply-add is 2 FLOP): the unit of docs/gpu.md's compute estimates."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    from sing.prior.model import PriorConfig, build_prior
    unet = build_prior(PriorConfig.from_dict(cfg), seed=0).unet.train().requires_grad_(True)
    x = torch.randn(2, cfg["channels"], cfg["image_size"], cfg["image_size"])
    with FlopCounterMode(display=False) as fc:
        unet(x, torch.tensor([10, 500])).sample.pow(2).mean().backward()
    return fc.get_total_flops() / 2 / 1e9


def sing_zero(prior: Path, label: str, decoder: str, n: int, out: Path) -> dict:
    """SING-Zero on val at 0 dB with the decoder's val-chosen settings: the eval result's metrics."""
    from sing.commands import eval as ev
    from decoder_grid import zero_settings
    c = zero_settings(DECODERS[decoder])
    f = out / f"natural_val_sing-zero_{decoder}_{label}.json"
    if not f.exists():
        p = argparse.ArgumentParser()
        ev.add_arguments(p)
        ev.run(p.parse_args(["--method", "sing-zero", "--data", "natural", "--split", "val", "--n-images", str(n),
                             "--snr-db", "0", "--decoder", decoder, "--operator", c["operator"],
                             "--sigma-scale", str(c["sigma_scale"]), "--start", str(c["start"]),
                             "--eta", str(c["eta"]), "--prior", str(prior), "--out", str(f), "--no-progress"]))
    return json.loads(f.read_text())["metrics"]


def denoise(prior: Path, label: str, n: int, out: Path) -> dict:
    """One-step x̂₀ PSNR (dB) of the prior on noisy val images, keyed by t (kept in denoise_<label>.json)."""
    f = out / f"denoise_{label}.json"
    if f.exists():
        return json.loads(f.read_text())
    from sing import data as D
    from sing.prior import load_prior
    from sing.prior.denoise_table import denoise_table
    x, ids = D.load_split("natural", "val", n, progress=False)
    rows = denoise_table(load_prior(prior), x, ids, timesteps=(200, 500), progress=False)["rows"]
    res = {str(r["t"]): r["psnr_prior"] for r in rows}
    f.write_text(json.dumps(res) + "\n")
    return res


def plot(res: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 4, figsize=(20, 4.2))
    series = sorted({(r["preset"], r["steps"]) for r in res["points"]})
    sources = sorted({r["train_sources"] for r in res["points"]})

    def draw(ax, key):
        for preset, steps in series:
            pts = sorted((r["train_sources"], key(r)) for r in res["points"]
                         if (r["preset"], r["steps"]) == (preset, steps))
            style = dict(marker="*", ms=12, ls="none") if len(pts) == 1 else dict(marker="o")
            ax.plot(*zip(*pts), label=f"{preset} prior ({r_params(res, preset)}), {steps} steps", **style)

    for ax, dec in zip(axes[:2], DECODERS):
        draw(ax, lambda r: r[f"lpips_{dec}"])
        ref = res["reference"][dec]
        ax.axhline(ref["lpips"], color="k", ls="--", label=f"{ref['method']} alone")
        if dec == "perceptual":
            ax.axhline(0.9 * ref["lpips"], color="g", ls=":", label="target: 0.90× the perceptual decoder")
        ax.set_title(f"SING-Zero on the {dec} decoder")
        ax.set_ylabel("val LPIPS ↓")
    draw(axes[2], lambda r: r["denoise_psnr"]["200"])
    axes[2].set_title("the prior alone: one-step x̂₀ at t = 200 on noisy val")
    axes[2].set_ylabel("x̂₀ PSNR (dB) ↑")
    for ax in axes[:3]:
        ax.set_xscale("log", base=2)
        ax.set_xticks(sources, [str(s) for s in sources])
        ax.set_xlabel("train source photographs (log scale)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    # the length and size axes, on all the train sources: the perceptual-decoder ratio against steps per UNet
    ax, ref, most = axes[3], res["reference"]["perceptual"]["lpips"], max(sources)
    for preset in sorted({r["preset"] for r in res["points"]}):
        pts = sorted((r["steps"], r["lpips_perceptual"] / ref) for r in res["points"]
                     if r["preset"] == preset and r["train_sources"] == most)
        ax.plot(*zip(*pts), marker="o", label=f"{preset} prior ({r_params(res, preset)})")
    ax.axhline(1.0, color="k", ls="--", label="the perceptual decoder alone")
    ax.axhline(0.9, color="g", ls=":", label="target: 0.90×")
    ax.set_xscale("log")
    ax.set_xlabel("training steps, batch 16 (log scale)")
    ax.set_ylabel("SING-Zero LPIPS ÷ the perceptual decoder's ↓")
    ax.set_title(f"length and size ({most} train sources)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.suptitle(f"prior training data, size and length vs SING-Zero, natural val ({res['n_images']} images), "
                 "BCR 1/48, AWGN 0 dB")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def r_params(res: dict, preset: str) -> str:
    return f"{next(r['params'] for r in res['points'] if r['preset'] == preset) / 1e6:.1f} M"


def markdown(res: dict) -> str:
    ref = res["reference"]
    lines = [f"# Prior training data and size vs SING-Zero (natural val, {res['n_images']} images, BCR 1/48, "
             "AWGN 0 dB)", "", "Generated by `sim/prior_data_size.py` from curve.json. References on the same "
             f"images: DeepJSCC LPIPS {ref['mse']['lpips']:.4f}, perceptual DeepJSCC {ref['perceptual']['lpips']:.4f}.",
             "", "| prior | params | train sources (pyramid images) | steps | SING-Zero LPIPS, MSE decoder "
             "(ratio to DeepJSCC) | SING-Zero LPIPS, perceptual decoder (ratio to it) | PSNR MSE / perceptual "
             "(dB) | prior x̂₀ PSNR t=200 / 500 (dB) |", "|---|---|---|---|---|---|---|---|"]
    for r in sorted(res["points"], key=lambda r: (r["preset"], r["steps"], r["train_sources"])):
        lines.append(f"| {r['preset']} | {r['params'] / 1e6:.2f} M "
                     f"| {r['train_sources']} ({r['train_pyramid_images']}) "
                     f"| {r['steps']} | {r['lpips_mse']:.4f} ({r['lpips_mse'] / ref['mse']['lpips']:.3f}×) "
                     f"| {r['lpips_perceptual']:.4f} ({r['lpips_perceptual'] / ref['perceptual']['lpips']:.3f}×) "
                     f"| {r['psnr_mse']:.2f} / {r['psnr_perceptual']:.2f} "
                     f"| {r['denoise_psnr']['200']:.2f} / {r['denoise_psnr']['500']:.2f} |")
    return "\n".join(lines) + "\n\n![curve](curve.png)\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--priors", required=True, nargs="+", help="folders of prior-<preset>-f<fraction>/ exported priors")
    ap.add_argument("--n", type=int, default=64, help="val images per point")
    ap.add_argument("--shipped", default=str(REPO / "models" / "prior-natural-64"),
                    help="the shipped prior, added as one more point ('' to leave out)")
    ap.add_argument("--out", default=str(REPO / "sim" / "results" / "prior-data-size"))
    a = ap.parse_args(argv)
    import torch
    torch.set_num_threads(1)
    from sing.commands.eval import device_name, git_commit
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    priors = sorted(p for d in a.priors for p in Path(d).glob("prior-*-f*") if (p / "model.safetensors").exists())
    if a.shipped:
        priors.append(Path(a.shipped).resolve())
    if not priors:
        raise SystemExit(f"no exported prior-<preset>-f<fraction>/ priors under {a.priors}")
    points = []
    for p in priors:
        r = describe(p)
        label = f"{r['preset']}-f{r['source_fraction']:g}-step{r['steps']}"
        for dec in DECODERS:
            m = sing_zero(p, label, dec, a.n, out)
            r[f"lpips_{dec}"], r[f"psnr_{dec}"] = m["lpips"], m["psnr"]
        r["denoise_psnr"] = denoise(p, label, a.n, out)
        points.append(r)
        print(json.dumps(r))
    reference = {}
    for dec, folder in DECODERS.items():
        method = "deepjscc" if dec == "mse" else "deepjscc-perceptual"
        f = REPO / "sim" / "results" / folder / f"natural_val_{method}_1-48_awgn_0dB.json"
        ref = json.loads(f.read_text())
        if ref["setup"]["n_images"] != a.n:
            raise SystemExit(f"{f} has {ref['setup']['n_images']} images, not --n {a.n}: "
                             "the ratios need the same images")
        reference[dec] = {"method": method, **ref["metrics"]}
    res = {"schema": "sing.prior-data-size/1", "n_images": a.n, "points": points,
           "reference": reference, "commit": git_commit(), "device": device_name("cpu"),
           "command": "python sim/prior_data_size.py " + " ".join(sys.argv[1:] if argv is None else argv)}
    (out / "curve.json").write_text(json.dumps(res, indent=1) + "\n")
    (out / "curve.md").write_text(markdown(res))
    plot(res, out / "curve.png")
    print(markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
