# SPDX-License-Identifier: GPL-3.0-or-later
"""`sing demo`: bundled test images through the link at the headline point (BCR 1/48, AWGN 0 dB),
restored with every method available here; writes a side-by-side PNG grid, a metrics table
(Markdown) and the numbers (JSON).

This is the in-process path (the library never imports GNU Radio). `make demo` runs
`sim/demo_radio.py`, which sends the same images through the GNU Radio loopback flowgraph to a worker
process it starts itself, and falls back to this path where GNU Radio is absent. Both use the seeded
channel of `sing.channel`, so their numbers agree.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="out/demo", help="output folder")
    p.add_argument("--n-images", type=int, default=6)
    p.add_argument("--snr-db", type=float, default=0.0)
    p.add_argument("--bcr", default="1/48")
    p.add_argument("--data", default="natural", help="natural | fmnist")
    p.add_argument("--steps", type=int, default=50, help="DDIM steps for the diffusion methods")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--operator", default=None, help="SING-Zero operator (default: spectral, or the "
                   "val-chosen one with --tuned)")
    p.add_argument("--sigma-scale", type=float, default=None, help="SING-Zero σ_y scale")
    p.add_argument("--tuned", action="store_true", help="use the settings chosen on the val split "
                   "(sim/results/tune-zero-<data>/choice.json, tune-inn-<data>/choice.json)")


def available_methods(args) -> tuple[list[str], dict]:
    """deepjscc always; the diffusion methods when their models are shipped."""
    from ..paths import model_dir_for, parts_of, prior_dir_for
    jdir, pdir = model_dir_for(args.data, args.bcr), prior_dir_for(args.data)
    have_prior = (pdir / "config.json").exists()
    methods = ["deepjscc"]
    paths = {"jscc": jdir, "prior": pdir if have_prior else None, "calibration": None, "inn": None}
    near = parts_of(jdir)
    for method, part in (("sing-zero", "calibration"), ("sing-inn", "inn")):
        if have_prior and (near[part] / "config.json").exists():
            methods.append(method)
            paths[part] = near[part]
    return methods, paths


def run_direct(args, methods, paths, x, ids) -> dict[str, torch.Tensor]:
    from ..channel import ChannelConfig, apply_channel, channel_generator
    from ..methods import load_receiver
    rx = load_receiver([paths["jscc"]], paths["prior"], paths["calibration"], paths["inn"])
    jscc = rx.model()
    with torch.no_grad():
        z = jscc.encode(x, args.snr_db)
    co = apply_channel(z, ChannelConfig("awgn", args.snr_db), [channel_generator(args.seed, i) for i in ids])
    out = {}
    for m in methods:
        kw = {"steps": args.steps, **method_settings(args, m)} if m != "deepjscc" else {}
        out[m] = rx.restore(m, co.y, co.snr_true_db, ids, seed=args.seed, progress=True, **kw)
    return out


def method_settings(args, method: str) -> dict:
    """Explicit --operator/--sigma-scale, else (with --tuned) the val choice files of the sweeps."""
    from ..paths import MODELS_DIR
    kw = {}
    if getattr(args, "tuned", False):
        f = MODELS_DIR.parent / "sim" / "results" / f"tune-{'zero' if method == 'sing-zero' else 'inn'}-{args.data}" / "choice.json"
        if f.exists():
            c = json.loads(f.read_text())
            keys = ("operator", "sigma_scale", "start", "eta") if method == "sing-zero" else ("sigma_scale", "inn_from", "start", "eta")
            kw = {k: c[k] for k in keys if k in c}
    if method == "sing-zero":
        if getattr(args, "operator", None):
            kw["operator"] = args.operator
        if getattr(args, "sigma_scale", None) is not None:
            kw["sigma_scale"] = args.sigma_scale
    return kw


def paths_note(args) -> str:
    """One line on the prior behind the diffusion methods: how long it trained (a weak prior makes
    SING look worse than DeepJSCC; see the model card)."""
    from ..paths import prior_dir_for
    f = prior_dir_for(args.data) / "config.json"
    if not f.exists():
        return ""
    t = json.loads(f.read_text()).get("training", {})
    return (f"Diffusion prior `{f.parent.name}`: {t.get('steps', '?')} training steps, batch {t.get('batch', '?')}, "
            f"{t.get('hours', '?')} h on {t.get('device', '?')} — see its model card; SING's quality is bounded by it.")


def write_outputs(out: Path, x, ids, results: dict, args, path_used: str, seconds: float, zoom: int = 3) -> dict:
    from PIL import Image
    from ..metrics import compute_metrics, load_lpips
    from ..prior.sample import image_grid
    out.mkdir(parents=True, exist_ok=True)
    lp = load_lpips("alex")
    table = {m: {k: float(v.mean()) for k, v in compute_metrics(r, x, lp).items()} for m, r in results.items()}
    cols = [x] + [results[m] for m in results]
    grid = torch.stack(cols, 1).flatten(0, 1)  # rows = images, columns = original + methods
    canvas = image_grid(torch.nn.functional.interpolate(grid, scale_factor=zoom, mode="nearest"), len(cols),
                        pad=4, rgb=False)
    Image.fromarray(canvas[..., 0] if canvas.shape[-1] == 1 else canvas).save(out / "grid.png")
    settings = {m: method_settings(args, m) for m in results if m in ("sing-zero", "sing-inn")}
    lines = [f"# SING demo — {args.data}, BCR {args.bcr}, AWGN {args.snr_db:g} dB, {len(x)} test images, "
             f"path: {path_used}", "", "Columns of grid.png: original | " + " | ".join(results), "",
             f"DDIM steps {args.steps}; settings: " + (", ".join(f"{m} {v}" for m, v in settings.items() if v)
                                                      or "defaults"), "",
             "| method | PSNR (dB) | SSIM | LPIPS |", "|---|---|---|---|"]
    lines += [f"| {m} | {t['psnr']:.2f} | {t['ssim']:.4f} | {t['lpips']:.4f} |" for m, t in table.items()]
    prior = paths_note(args)
    if prior:
        lines += ["", prior]
    (out / "metrics.md").write_text("\n".join(lines) + "\n")
    summary = {"data": args.data, "bcr": args.bcr, "snr_db": args.snr_db, "ids": ids, "path": path_used,
               "metrics": table, "seconds": seconds}
    (out / "metrics.json").write_text(json.dumps(summary, indent=1) + "\n")
    print("\n".join(lines))
    print(f"\nwrote {out / 'grid.png'}, {out / 'metrics.md'} in {seconds:.0f} s")
    return summary


def run(args) -> int:
    from .. import data as D
    from ..errors import CheckpointError
    methods, paths = available_methods(args)
    if not (paths["jscc"] / "config.json").exists():
        raise CheckpointError(f"the demo needs {paths['jscc']}: it is shipped in git; if you removed it, "
                              f"train it with scripts/train_jscc_models.sh")
    x, ids = D.spread_subset(args.data, "test", args.n_images)
    t0 = time.time()
    results = run_direct(args, methods, paths, x, ids)
    write_outputs(Path(args.out), x, ids, results, args, "direct (in-process)", time.time() - t0)
    return 0
