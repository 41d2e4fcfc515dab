#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""How much of the DeepJSCC degradation can *any* SING-INN model? (docs/ALGORITHMS.md §5)

SING-INN learns c(x; snr) ≈ g(x̂), x̂ = D(C(E(x), snr)), with g the L-level Haar low-pass. c is a
deterministic function of x, but x̂ is not: it also depends on the channel noise. So the smallest
mean-squared error any c can reach is the conditional variance

    σ²_irr(snr) = E_x Var_n[ g(x̂(x, n)) | x ]          (the MMSE of predicting g(x̂) from x)

This script estimates, per SNR and colour channel, on the val split (R channel realisations per
image; σ²_irr with the R/(R−1) correction):

    irreducible  √σ²_irr                               the floor for every INN
    inn          RMS of g(x̂) − c(x; snr)                the shipped (or --inn) model
    haar         RMS of g(x̂) − g(x)                     the linear model (c = g(x), untrained f)
    explained    (haar² − inn²) / (haar² − irr²)         the fraction of the *reducible* error the INN removes

An INN near the floor cannot sharpen the guidance further: what is left is channel noise, and the
restoration then rests on the diffusion prior. With --prior, the script also measures what that prior
does with *perfect* range information: DDNM (σ_y = 0, docs/ALGORITHMS.md §3) restoring from the true s×s
block means A·x, warm-started at --oracle-start from their bilinear up-sampling, next to the
up-sampling alone and to DeepJSCC at 0 dB on the same images.

    .venv/bin/python sim/inn_ceiling.py --prior models/prior-natural-64 --out sim/results/inn/ceiling
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import torch
from tqdm.auto import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def ceiling(jscc, inn, x: torch.Tensor, ids: list[str], snrs: list[float], realisations: int,
            seed: int = 0, progress: bool = True) -> list[dict]:
    from sing.channel import ChannelConfig, apply_channel, channel_generator
    from sing.inn.haar import haar_lowpass
    if realisations < 2:
        raise ValueError("need at least 2 channel realisations per image")
    L = inn.config.levels
    gx = haar_lowpass(2 * x - 1, L)
    rows = []
    for snr in tqdm(snrs, desc="SNR", disable=not progress):
        with torch.no_grad():
            z = jscc.encode(x, snr)
            snr_t = inn.snr(torch.full((x.shape[0],), float(snr)), x.shape[0], "cpu")
            c, _, _ = inn(2 * x - 1, snr_t, warn=False)
            G = []
            for r in range(realisations):
                co = apply_channel(z, ChannelConfig(kind="awgn", snr_db=snr, csi="perfect"),
                                   [channel_generator(seed + 1000 * r, j) for j in ids])
                G.append(haar_lowpass(2 * jscc.decode(co.y, co.snr_true_db).float() - 1, L))
        G = torch.stack(G)                                              # (R, B, C, h, w)
        dims = (0, 1, 3, 4)
        irr2 = ((G - G.mean(0)) ** 2).mean(dim=dims) * realisations / (realisations - 1)
        inn2 = ((G - c) ** 2).mean(dim=dims)
        haar2 = ((G - gx) ** 2).mean(dim=dims)
        expl = (haar2 - inn2) / (haar2 - irr2).clamp_min(1e-12)
        rows.append({"snr_db": float(snr), "irreducible": irr2.sqrt().tolist(), "inn": inn2.sqrt().tolist(),
                     "haar": haar2.sqrt().tolist(), "explained": expl.tolist(),
                     "mean": {"irreducible": float(irr2.mean().sqrt()), "inn": float(inn2.mean().sqrt()),
                              "haar": float(haar2.mean().sqrt()),
                              "explained": float((haar2.mean() - inn2.mean()) /
                                                 (haar2.mean() - irr2.mean()).clamp_min(1e-12))}})
    return rows


def oracle(prior, jscc, x: torch.Tensor, ids: list[str], factors: list[int], start: float, steps: int,
           seed: int = 0) -> list[dict]:
    """LPIPS/PSNR/SSIM of DDNM from the true s×s block means (and of their bilinear up-sampling)."""
    import torch.nn.functional as F
    from sing.channel import ChannelConfig, apply_channel, channel_generator, generator_for
    from sing.metrics import compute_metrics, load_lpips
    from sing.zero.ddnm import restore
    from sing.zero.operators import AvgPool
    lp = load_lpips("alex")

    def mean(m):
        return {k: float(v[torch.isfinite(v)].mean()) for k, v in m.items()}
    with torch.no_grad():
        z = jscc.encode(x, 0.0)
        co = apply_channel(z, ChannelConfig(kind="awgn", snr_db=0.0, csi="perfect"),
                           [channel_generator(seed, j) for j in ids])
        xh = jscc.decode(co.y, co.snr_true_db).float()
    rows = [{"what": "deepjscc at 0 dB", **mean(compute_metrics(xh.clamp(0, 1), x, lp))}]
    for s in factors:
        op = AvgPool(tuple(x.shape[1:]), s)
        y = op.A(x)
        up = F.interpolate(y, scale_factor=s, mode="bilinear", align_corners=False).clamp(0, 1)
        rows.append({"what": f"true {s}×{s} block means, bilinear", "factor": s, **mean(compute_metrics(up, x, lp))})
        gens = [generator_for(seed, f"restore:{i}") for i in ids]
        out = restore(prior, op, y, sigma_y=0.0, steps=steps, eta=0.0, generators=gens, progress=False,
                      start=start, x_init01=up)
        rows.append({"what": f"true {s}×{s} block means, DDNM + prior", "factor": s, "start": start,
                     "steps": steps, **mean(compute_metrics(out.clamp(0, 1).cpu(), x, lp))})
    return rows


def to_markdown(res: dict) -> str:
    s = res["setup"]
    lines = [f"# How much of the degradation can an INN model? (`{s['inn']}`)", "",
             f"Generated by `{res['command']}` on {s['device']}.", "",
             f"{s['data']} {s['split']} split, {s['n_images']} images × {s['realisations']} AWGN realisations, "
             f"Haar low-pass g at L = {s['levels']}; RMS over colour channels (diffusion-scale Haar coefficients).",
             "", "| SNR (dB) | floor √(E Var[g(x̂) given x]) | SING-INN ‖g(x̂) − c(x)‖ | Haar ‖g(x̂) − g(x)‖ | "
             "reducible error removed by the INN |", "|---|---|---|---|---|"]
    for r in res["rows"]:
        m = r["mean"]
        lines.append(f"| {r['snr_db']:g} | {m['irreducible']:.4f} | {m['inn']:.4f} | {m['haar']:.4f} | "
                     f"{100 * m['explained']:.0f} % |")
    lines += ["", "The floor is what is left for any c(x; snr): the channel noise's own share of g(x̂). "
              "Where the INN is near it, a better INN cannot sharpen the guidance; where the gap is wide "
              "(high SNR), a larger or longer-trained INN can."]
    if res.get("oracle"):
        o = res["setup"]["oracle"]
        lines += ["", f"## What the prior does with perfect range information (`{o['prior']}`)", "",
                  f"DDNM, σ_y = 0, η = 0, {o['steps']} DDIM steps, warm start at {o['start']}·T; same images.", "",
                  "| input | PSNR (dB) | SSIM | LPIPS |", "|---|---|---|---|"]
        lines += [f"| {r['what']} | {r['psnr']:.2f} | {r['ssim']:.4f} | {r['lpips']:.4f} |" for r in res["oracle"]]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jscc", default=str(REPO / "models/jscc-natural64-bcr1_48"))
    p.add_argument("--inn", default=None, help="INN dir (default: <jscc>-inn)")
    p.add_argument("--data", default="natural")
    p.add_argument("--split", default="val")
    p.add_argument("--n-images", type=int, default=32)
    p.add_argument("--realisations", type=int, default=16)
    p.add_argument("--snr-db", default="-5,0,5,10,15")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--out", default=None, help="write OUT.json and OUT.md")
    p.add_argument("--prior", default=None, help="also run the perfect-range oracle with this prior")
    p.add_argument("--oracle-factors", default="4,8", help="block sizes s of the oracle's true s×s means")
    p.add_argument("--oracle-start", type=float, default=0.2)
    p.add_argument("--oracle-steps", type=int, default=50)
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    from sing import data as D
    from sing.errors import InputError
    from sing.inn import load_inn
    from sing.jscc import load_jscc
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        snrs = [float(v) for v in args.snr_db.split(",")]
        jscc = load_jscc(args.jscc, "cpu")
        inn_dir = args.inn or str(Path(args.jscc).parent / (Path(args.jscc).name + "-inn"))
        inn = load_inn(inn_dir, device="cpu", jscc_model_id=jscc.model_id)
        x, ids = D.load_split(args.data, args.split, n=args.n_images, progress=not args.no_progress)
        rows = ceiling(jscc, inn, x, ids, snrs, args.realisations, args.seed, not args.no_progress)
        orows = None
        if args.prior:
            from sing.prior import load_prior
            prior = load_prior(args.prior, device="cpu")
            orows = oracle(prior, jscc, x, ids, [int(v) for v in args.oracle_factors.split(",")],
                           args.oracle_start, args.oracle_steps, args.seed)
    except (InputError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    def rel(p):
        try:
            return str(Path(p).resolve().relative_to(REPO))
        except ValueError:
            return str(p)
    cmd = ".venv/bin/python sim/inn_ceiling.py " + " ".join(sys.argv[1:] if argv is None else argv)
    res = {"schema": "sing.inn-ceiling/1", "command": cmd,
           "setup": {"jscc": rel(args.jscc), "jscc_model_id": jscc.model_id, "inn": rel(inn_dir),
                     "data": args.data, "split": args.split, "n_images": len(x),
                     "realisations": args.realisations, "levels": inn.config.levels, "seed": args.seed,
                     "device": f"cpu:{platform.processor() or platform.machine()}",
                     **({"oracle": {"prior": rel(args.prior), "start": args.oracle_start,
                                    "steps": args.oracle_steps}} if args.prior else {})},
           "rows": rows, **({"oracle": orows} if orows else {})}
    md = to_markdown(res)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".json").write_text(json.dumps(res, indent=1) + "\n")
        out.with_suffix(".md").write_text(md)
    print(md, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
