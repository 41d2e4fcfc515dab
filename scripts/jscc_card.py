#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Write the model card (README.md + training-curve PNG) of each shipped DeepJSCC model from its
config, its training history and the sweep result files in sim/results/deepjscc/.

    .venv/bin/python scripts/jscc_card.py [models/jscc-*]
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def recipe_line(name: str) -> str:
    text = (REPO / "scripts" / "train_jscc_models.sh").read_text().replace("\\\n", " ")
    for line in text.splitlines():
        if f"--out models/{name} " in line + " ":
            return re.sub(r"\s+", " ", line.strip().replace("$S", "sing train-jscc --threads 1"))
    return "(not in scripts/train_jscc_models.sh)"


def metrics_rows(model_rel: str) -> list[dict]:
    rows = []
    for f in sorted((REPO / "sim" / "results" / "deepjscc").glob("*.json")):
        r = json.loads(f.read_text())
        if r["setup"]["jscc_model"] == model_rel:
            rows.append({"channel": r["setup"]["channel"], "snr": r["setup"]["snr_db"], "n": r["setup"]["n_images"],
                         "data": r["setup"]["dataset"], **r["metrics"]})
    return sorted(rows, key=lambda r: (r["channel"], r["snr"]))


def curve(d: Path, hist: list[dict]) -> str | None:
    if not hist:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.2))
    ax[0].plot([h["step"] for h in hist], [h["loss"] for h in hist], marker=".")
    ax[0].set_yscale("log")
    ax[0].set_xlabel("step")
    ax[0].set_ylabel("training loss (EMA)")
    ax[1].plot([h["step"] for h in hist], [h["val_psnr_0db"] for h in hist], marker=".")
    ax[1].set_xlabel("step")
    ax[1].set_ylabel("val PSNR at 0 dB AWGN (dB)")
    for a in ax:
        a.grid(alpha=0.3)
    fig.suptitle(d.name)
    fig.tight_layout()
    fig.savefig(d / "training.png", dpi=100)
    plt.close(fig)
    return "training.png"


def card(d: Path) -> None:
    cfg = json.loads((d / "config.json").read_text())
    hist = json.loads((d / "history.json").read_text()) if (d / "history.json").exists() else []
    notes = cfg.get("notes", {})
    rel = str(d.relative_to(REPO))
    commit = subprocess.run(["git", "-C", str(REPO), "log", "-1", "--format=%h", "--", rel + "/model.safetensors"],
                            capture_output=True, text=True).stdout.strip() or "(not committed yet)"
    rows = metrics_rows(rel)
    img = curve(d, hist)
    L = [f"# {d.name}", "",
         f"DeepJSCC encoder/decoder with SNR-adaptive attention (ADJSCC-style, GDN), `sing.jscc`.", "",
         "| | |", "|---|---|",
         f"| data | `{cfg['dataset']}` train split ({cfg['image_size']}×{cfg['image_size']}, {cfg['channels']} channel(s)); "
         f"natural = crops split by source photo, see sing/natural_manifest.json |",
         f"| BCR, k | {cfg['bcr']}, k = {cfg['k']} complex symbols per image (n = {cfg['n']}) |",
         f"| architecture | features {cfg['features']}, {cfg['blocks']} residual blocks per side, latent "
         f"{(cfg['image_size'] // 4)}×{(cfg['image_size'] // 4)}, unit power per image |",
         f"| training | loss {cfg['loss']}" + (f" (λ_LPIPS = {cfg['lpips_weight']})" if cfg['lpips_weight'] else "") +
         f", SNR ~ U[{cfg['snr_min']:g}, {cfg['snr_max']:g}] dB AWGN, AdamW lr {notes.get('lr')}, batch "
         f"{notes.get('batch')}, {notes.get('steps')} steps, warm-up + cosine"
         + (f", initialised from `{notes['init_from']}`" if notes.get("init_from") else "") + " |",
         f"| command | `{recipe_line(d.name)}` |",
         f"| device | CPU (2 cores, 1 torch thread) |",
         f"| weights commit | {commit} |", ""]
    if hist:
        L += [f"Final validation PSNR at 0 dB (64 val images): {hist[-1]['val_psnr_0db']:.2f} dB after "
              f"{hist[-1]['step']} steps ({hist[-1]['elapsed_s'] / 60:.0f} min of this run)."]
        if img:
            L += ["", f"![training curve]({img})"]
    if rows:
        L += ["", "Test-split metrics (`sim/sweep.py deepjscc`, receiver given the true SNR; Rayleigh with "
              "pilot-estimated CSI):", "", "| channel | SNR (dB) | images | PSNR (dB) | SSIM | LPIPS |", "|---|---|---|---|---|---|"]
        L += [f"| {r['channel']} | {r['snr']:g} | {r['n']} | {r['psnr']:.2f} | {r['ssim']:.4f} | {r['lpips']:.4f} |" for r in rows]
    L += ["", "Load with `sing.jscc.load_jscc(\"" + rel + "\")`. Licence: MIT (weights trained here on data from "
          "Debian packages: opencv-doc, plasma-workspace-wallpapers, scikit-image, dataset-fashion-mnist)."]
    (d / "README.md").write_text("\n".join(L) + "\n")
    print(f"wrote {d / 'README.md'}")


if __name__ == "__main__":
    dirs = [Path(p).resolve() for p in sys.argv[1:]] or sorted((REPO / "models").glob("jscc-*"))
    for d in dirs:
        if (d / "config.json").exists() and json.loads((d / "config.json").read_text()).get("kind") == "sing.jscc":
            card(d)
