# SPDX-License-Identifier: GPL-3.0-or-later
"""Denoising table: how much the prior knows, measured without any sampling loop.

For test images x_0 (diffusion scale [-1, 1]) and t ∈ {50, 200, 500}:

    x_t  = √ᾱ_t x_0 + √(1−ᾱ_t) ε                                 (DDPM Eq. 4, seeded ε per image)
    prior:  x̂_0 = (x_t − √(1−ᾱ_t) ε_θ(x_t, t)) / √ᾱ_t, clipped    (one network evaluation)
    Wiener: y = x_t / √ᾱ_t = x_0 + σ ε with σ² = (1−ᾱ_t)/ᾱ_t known;
            x̂_0 = scipy.signal.wiener(y, mysize=m, noise=σ²) per channel, best m ∈ {3, 5, 7, 9}
            over the whole set (a generous baseline: it is tuned on the same images)

PSNR on [0, 1] images (per image, then mean). Writes JSON + Markdown to sim/results/prior/.

    python -m sing.prior.denoise_table --prior models/prior-natural-64 --data natural --split test
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

from ..channel import generator_for
from .ddim import randn

TIMESTEPS = (50, 200, 500)
WIENER_SIZES = (3, 5, 7, 9)


def psnr01(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR (dB) of [0, 1] images, clamped and with the MSE floored at 1e-12 (the noisy
    input lies outside [0, 1]); sing.metrics.psnr does neither, so the table keeps its own."""
    mse = ((a.clamp(0, 1) - b.clamp(0, 1)) ** 2).flatten(1).mean(1).clamp_min(1e-12)
    return 10 * torch.log10(1.0 / mse)


def wiener(y: np.ndarray, size: int, noise_var: float) -> np.ndarray:
    """scipy.signal.wiener per image and channel; y (N, C, H, W)."""
    from scipy.signal import wiener as _w
    out = np.empty_like(y)
    for i in range(y.shape[0]):
        for c in range(y.shape[1]):
            out[i, c] = _w(y[i, c], mysize=size, noise=noise_var)
    return out


@torch.no_grad()
def denoise_table(prior, x01: torch.Tensor, ids: list[str], timesteps=TIMESTEPS, seed: int = 0,
                  batch: int = 32, progress: bool = True) -> dict:
    from tqdm.auto import tqdm
    prior.check_images(x01)
    rows = []
    for t in timesteps:
        a = float(prior.alpha_bar(t))
        sigma2 = (1 - a) / a
        prior_psnr, noisy_psnr, wien = [], [], {m: [] for m in WIENER_SIZES}
        for s in tqdm(range(0, len(x01), batch), desc=f"t={t}", disable=not progress, leave=False):
            xb = x01[s:s + batch]
            x0 = xb * 2 - 1
            eps = randn(x0.shape, [generator_for(seed, f"{i}/t{t}") for i in ids[s:s + batch]], "cpu")
            x_t = math.sqrt(a) * x0 + math.sqrt(1 - a) * eps
            x0_hat = prior.predict_x0(x_t, t).clamp(-1, 1)
            prior_psnr.append(psnr01((x0_hat + 1) / 2, xb))
            y = x_t / math.sqrt(a)
            noisy_psnr.append(psnr01((y + 1) / 2, xb))
            for m in WIENER_SIZES:
                w = torch.from_numpy(wiener(y.double().numpy(), m, sigma2)).float()
                wien[m].append(psnr01((w + 1) / 2, xb))
        pp = torch.cat(prior_psnr)
        wm = {m: float(torch.cat(v).mean()) for m, v in wien.items()}
        best = max(wm, key=wm.get)
        rows.append({"t": t, "alpha_bar": a, "noise_sigma_01": math.sqrt(sigma2) / 2,
                     "psnr_noisy": float(torch.cat(noisy_psnr).mean()),
                     "psnr_prior": float(pp.mean()), "psnr_prior_std": float(pp.std()),
                     "psnr_wiener": wm[best], "wiener_size": best, "psnr_wiener_by_size": wm,
                     "gain_db": float(pp.mean()) - wm[best]})
    return {"rows": rows}


def to_markdown(res: dict) -> str:
    s = res["setup"]
    lines = [f"Denoising on `{s['dataset']}` {s['split']} ({s['n_images']} images, "
             f"{s['resolution']}×{s['resolution']}), prior `{s['prior']}` "
             f"({s['prior_steps']} training steps), seed {s['seed']}, device {s['device']}, "
             f"commit {s['commit']}.",
             "",
             "| t | ᾱ_t | noise σ ([0,1] scale) | noisy PSNR | Wiener PSNR (window) | prior x̂₀ PSNR | prior − Wiener |",
             "|---|---|---|---|---|---|---|"]
    for r in res["rows"]:
        lines.append(f"| {r['t']} | {r['alpha_bar']:.4f} | {r['noise_sigma_01']:.3f} | "
                     f"{r['psnr_noisy']:.2f} | {r['psnr_wiener']:.2f} ({r['wiener_size']}×{r['wiener_size']}) | "
                     f"{r['psnr_prior']:.2f} | **{r['gain_db']:+.2f} dB** |")
    lines += ["", f"Command: `{s['command']}`", ""]
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--prior", required=True)
    p.add_argument("--data", required=True, help="natural | fmnist | … (sing.data)")
    p.add_argument("--split", default="test")
    p.add_argument("--n", type=int, default=None, help="first n images (default: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out-dir", default="sim/results/prior")
    p.add_argument("--name", default=None, help="file stem (default: denoise-<prior dir name>)")


def run(args: argparse.Namespace) -> int:
    from .. import data as sdata
    from ..commands.eval import git_commit
    from .model import load_prior
    torch.set_num_threads(max(1, args.threads))
    x, ids = sdata.load_split(args.data, args.split, n=args.n)
    prior = load_prior(args.prior, device=args.device, dtype=torch.float32,
                       expect_size=x.shape[-1], expect_channels=x.shape[1])
    res = denoise_table(prior, x, ids, seed=args.seed, batch=args.batch)
    steps = prior.config.get("training", {}).get("steps", "?")      # our priors' config.json; else "?"
    dev = args.device if not args.device.startswith("cuda") else f"cuda:{torch.cuda.get_device_name()}"
    res = {"schema": "sing.prior.denoise/1",
           "setup": {"dataset": args.data, "split": args.split, "n_images": len(ids),
                     "resolution": int(x.shape[-1]), "prior": str(args.prior), "prior_steps": steps,
                     "timesteps": list(TIMESTEPS), "seed": args.seed, "device": dev,
                     "torch_threads": torch.get_num_threads(), "commit": git_commit(),
                     "date": _dt.datetime.now().isoformat(timespec="seconds"),
                     "command": "python -m sing.prior.denoise_table " + " ".join(sys.argv[1:])},
           **res}
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = args.name or f"denoise-{Path(args.prior).name}"
    (out / f"{stem}.json").write_text(json.dumps(res, indent=2) + "\n")
    md = to_markdown(res)
    (out / f"{stem}.md").write_text(md)
    print(md)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sing.prior.denoise_table", description=__doc__.split("\n")[0])
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
