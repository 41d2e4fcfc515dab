#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Run a grid of `sing eval` operating points, one result file per point; resumable (a point whose
file exists is skipped). Grids are named below; `--list` prints a grid's points.

    .venv/bin/python sim/sweep.py deepjscc            # DeepJSCC vs SNR, every shipped BCR, AWGN + Rayleigh
    .venv/bin/python sim/sweep.py deepjscc --list
    .venv/bin/python sim/report.py                    # tables + plots from all result files

Fan out over workers (each point's images are all in flight at once; the broker spreads them):
    sing broker --frontend tcp://127.0.0.1:5555 --backend tcp://127.0.0.1:5556 &
    sing worker --jscc models/jscc-natural64-bcr1_48 --prior models/prior-natural-64 \
                --connect tcp://127.0.0.1:5556 &                      # one per GPU / machine
    .venv/bin/python sim/sweep.py zero-natural --worker tcp://127.0.0.1:5555

Result files: sim/results/<grid>/<data>_<method>_<bcr>_<channel>_<snr>dB[_<extra>].json
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SNRS = [-5.0, 0.0, 5.0, 10.0, 15.0]


# Settings are chosen on val by the lowest LPIPS among those whose PSNR is at most this many dB below
# the decoder's own (the perceptual decoder's bound is the acceptance bound of restoring it)
DECODER_PSNR_SLACK = {"mse": 1.0, "perceptual": 0.5}

BASE_KEYS = ("data", "method", "bcr", "channel", "snr_db", "n_images", "snr_source", "split")
# point keys that are `sing eval` options, not method parameters (every other extra key is a parameter)
EVAL_OPTIONS = ("snr_offset_db", "decoder", "lpips_extra")


def default_eta(method: str) -> float:
    """The η a point runs with when it names none: the method's default in sing/methods/registry.py
    (one source of truth; it differs between methods, e.g. SING-INN's val-chosen 0)."""
    from sing.methods import get
    return float(get(method).defaults()["eta"])


def point(data, method, bcr, channel, snr, n, snr_source="true", split="test", **extra):
    return dict(data=data, method=method, bcr=bcr, channel=channel, snr_db=snr, n_images=n,
                snr_source=snr_source, split=split, **extra)


def tune_zero(data: str, bcr: str, n: int) -> list[dict]:
    """SING-Zero settings chosen on the *val* split at the headline SNR (never tune on test):
    every operator with the σ_y scales worth trying for it (σ_y is the sensitive knob)."""
    pool = "avgpool-2" if data.startswith("fmnist") else "avgpool-4"
    pts = [point(data, "deepjscc", bcr, "awgn", 0.0, n, split="val")]
    # (σ_y scale, start[, η]): start < 1 is the warm start from x̂ at start·T (sing/zero/ddnm.py);
    # without η, SING-Zero's default (DDNM's 0.85)
    cands = (("spectral", ((0.5, 1.0), (1.0, 1.0), (2.0, 1.0), (0.5, 0.1), (1.0, 0.05), (1.0, 0.1),
                           (1.0, 0.2), (1.5, 0.1), (2.0, 0.1), (1.5, 0.1, 0.0), (1.5, 0.1, 0.5))),
             ("identity", ((1.0, 1.0), (2.0, 1.0), (1.0, 0.1), (2.0, 0.1))),
             (pool, ((0.0, 1.0), (0.5, 1.0), (1.0, 1.0), (0.0, 0.3))))
    for op, settings in cands:
        for sc, start, *eta in settings:
            kw = {} if start == 1.0 else {"start": start}
            if eta:
                kw["eta"] = eta[0]
            pts.append(point(data, "sing-zero", bcr, "awgn", 0.0, n, split="val", operator=op, sigma_scale=sc,
                             **kw))
    return pts


def zero_kw(c: dict, op: str | None = None) -> dict:
    """The method settings of a choice (or of its per-operator choice for `op`) as sweep-point extras."""
    src = c if op is None else c.get("per_operator", {}).get(op, {"operator": op})
    kw = {"operator": op or c["operator"], "sigma_scale": src.get("sigma_scale", 1.0)}
    if src.get("start", 1.0) != 1.0:
        kw["start"] = src["start"]
    if src.get("eta", default_eta("sing-zero")) != default_eta("sing-zero"):
        kw["eta"] = src["eta"]
    return kw


def _tuning_rows(data: str) -> tuple[dict, list[dict], Path]:
    folder = REPO / "sim" / "results" / f"tune-zero-{data}"
    rows = [json.loads(f.read_text()) for f in sorted(folder.glob("*.json")) if f.name != "choice.json"]
    ref = [r for r in rows if r["setup"]["method"] == "deepjscc"]
    cand = [r for r in rows if r["setup"]["method"] == "sing-zero"]
    if not ref or not cand:
        raise SystemExit(f"run `sim/sweep.py tune-zero-{data}` first (no tuning results in {folder})")
    return ref[0], cand, folder


def _pick(ref: dict, cand: list[dict]) -> tuple[dict, bool]:
    ok = [r for r in cand if r["metrics"]["psnr"] >= ref["metrics"]["psnr"] - DECODER_PSNR_SLACK["mse"]]
    return min(ok or cand, key=lambda r: r["metrics"]["lpips"]), bool(ok)


def best_from_tuning(data: str) -> dict:
    """The SING-Zero settings picked on the val split (grid tune-zero-<data>): lowest LPIPS among those
    whose PSNR is at most 1 dB below DeepJSCC's; if none qualifies, lowest LPIPS. The same rule picks
    the σ_y scale of each operator (`per_operator`). Written to choice.json and stated in the results."""
    ref, cand, folder = _tuning_rows(data)
    rule = f"min val LPIPS s.t. PSNR ≥ DeepJSCC − {DECODER_PSNR_SLACK['mse']:g} dB"
    best, ok = _pick(ref, cand)
    per_op = {}
    for op in sorted({r["setup"]["method_config"]["operator"] for r in cand}):
        b, o = _pick(ref, [r for r in cand if r["setup"]["method_config"]["operator"] == op])
        per_op[op] = {"sigma_scale": b["setup"]["method_config"]["sigma_scale"],
                      "start": b["setup"]["method_config"].get("start", 1.0),
                      "eta": b["setup"]["method_config"].get("eta", default_eta("sing-zero")), "qualified": o,
                      "val_metrics": b["metrics"]}
    mc = best["setup"]["method_config"]
    choice = {"operator": mc["operator"], "sigma_scale": mc["sigma_scale"], "start": mc.get("start", 1.0),
              "eta": mc.get("eta", default_eta("sing-zero")), "rule": rule + ("" if ok else " (none qualified: min LPIPS)"),
              "val_metrics": best["metrics"], "val_deepjscc": ref["metrics"], "per_operator": per_op}
    (folder / "choice.json").write_text(json.dumps(choice, indent=1) + "\n")
    return choice


def zero_grid(data: str, n: int) -> list[dict]:
    """The SING-Zero sweep: DeepJSCC, DDNM-avgpool and SING-Zero with identity and spectral operators (and
    the val-chosen one, if another), each operator at its val-chosen σ_y scale, over every SNR."""
    c = best_from_tuning(data)
    ops = ["identity", "spectral"] + ([c["operator"]] if c["operator"] not in ("identity", "spectral") else [])
    pts = []
    for s in [0.0] + [v for v in SNRS if v != 0.0]:        # the headline point first
        pts.append(point(data, "deepjscc", "1/48", "awgn", s, n))
        for op in ops:
            pts.append(point(data, "sing-zero", "1/48", "awgn", s, n, **zero_kw(c, op)))
        pts.append(point(data, "ddnm-avgpool", "1/48", "awgn", s, n))
    return pts


def tune_inn(data: str, n: int) -> list[dict]:
    """SING-INN's σ_c scale and INN hand-over point (inn_from) chosen on the val split at 0 dB."""
    # η is named in every point: SING-INN's default η is itself chosen here
    pts = [point(data, "sing-inn", "1/48", "awgn", 0.0, n, split="val", sigma_scale=sc, inn_from=0.3, eta=0.85)
           for sc in (0.5, 1.0, 2.0)]
    pts.append(point(data, "sing-inn", "1/48", "awgn", 0.0, n, split="val", sigma_scale=1.0, inn_from=1.0,
                     eta=0.85))
    # warm start from x̂ (start·T < inn_from·T: the INN guides the whole short chain)
    pts += [point(data, "sing-inn", "1/48", "awgn", 0.0, n, split="val", sigma_scale=sc, inn_from=0.3, start=st,
                  eta=0.85) for sc, st in ((0.5, 0.1), (1.0, 0.1), (2.0, 0.1), (1.0, 0.2))]
    # η: the fresh-noise fraction of each step (0 = deterministic DDIM after the warm start)
    pts += [point(data, "sing-inn", "1/48", "awgn", 0.0, n, split="val", sigma_scale=sc, inn_from=0.3, start=0.1,
                  eta=e) for sc, e in ((0.125, 0.0), (0.25, 0.0), (0.5, 0.0), (1.0, 0.0), (0.5, 0.5))]
    return pts


def best_inn(data: str) -> dict:
    """Lowest val LPIPS among tune-inn-<data> points whose PSNR is ≥ DeepJSCC's (tune-zero's val
    reference) − 1.5 dB; written to choice.json."""
    folder = REPO / "sim" / "results" / f"tune-inn-{data}"
    rows = [json.loads(f.read_text()) for f in sorted(folder.glob("*.json")) if f.name != "choice.json"]
    if not rows:
        raise SystemExit(f"run `sim/sweep.py tune-inn-{data}` first (no tuning results in {folder})")
    ref, _, _ = _tuning_rows(data)
    ok = [r for r in rows if r["metrics"]["psnr"] >= ref["metrics"]["psnr"] - 1.5]
    best = min(ok or rows, key=lambda r: r["metrics"]["lpips"])
    mc = best["setup"]["method_config"]
    choice = {"sigma_scale": mc["sigma_scale"], "inn_from": mc["inn_from"], "start": mc.get("start", 1.0),
              "eta": mc.get("eta", default_eta("sing-inn")), "rule": "min val LPIPS s.t. PSNR ≥ DeepJSCC − 1.5 dB" + ("" if ok else " (none qualified)"),
              "val_metrics": best["metrics"], "val_deepjscc": ref["metrics"]}
    (folder / "choice.json").write_text(json.dumps(choice, indent=1) + "\n")
    return choice


def inn_grid(data: str, n: int) -> list[dict]:
    """The SING-INN sweep: SING-INN (val-chosen settings) over every SNR, and at 0 dB with the SNR given to
    the INN off by ±2 dB."""
    kw = _inn_kw(data)
    pts = [point(data, "sing-inn", "1/48", "awgn", s, n, **kw) for s in [0.0] + [v for v in SNRS if v != 0.0]]
    pts += [point(data, "sing-inn", "1/48", "awgn", 0.0, n, snr_offset_db=o, **kw) for o in (-2.0, 2.0)]
    return pts


def _inn_kw(data: str) -> dict:
    c = best_inn(data)
    kw = {"sigma_scale": c["sigma_scale"], "inn_from": c["inn_from"]}
    if c.get("start", 1.0) != 1.0:
        kw["start"] = c["start"]
    kw["eta"] = c.get("eta", default_eta("sing-inn"))     # always named, as in tune_inn
    return kw


def mismatch_grid(n: int) -> list[dict]:
    """The mismatch set: Fashion-MNIST (as 64×64 RGB) through the models trained on natural images
    (JSCC, calibration, INN and prior all natural), with the settings chosen on natural val."""
    c = best_from_tuning("natural")
    pts = [point("fmnist-rgb64", "deepjscc", "1/48", "awgn", 0.0, n),
           point("fmnist-rgb64", "deepjscc-perceptual", "1/48", "awgn", 0.0, n),
           point("fmnist-rgb64", "ddnm-avgpool", "1/48", "awgn", 0.0, n),
           point("fmnist-rgb64", "sing-zero", "1/48", "awgn", 0.0, n, **zero_kw(c)),
           point("fmnist-rgb64", "sing-inn", "1/48", "awgn", 0.0, n, **_inn_kw("natural")),
           point("fmnist-rgb64", "dps", "1/48", "awgn", 0.0, n, zeta=best_dps("natural")),
           point("fmnist-rgb64", "digital-jpeg", "1/48", "awgn", 0.0, n),
           point("fmnist-rgb64", "digital-webp", "1/48", "awgn", 0.0, n)]
    return pts


def tune_dps(data: str, n: int) -> list[dict]:
    """DPS's step size ζ chosen on the val split at the headline point (ζ = 1 under-guides)."""
    return [point(data, "dps", "1/48", "awgn", 0.0, n, split="val", zeta=z) for z in (1.0, 3.0, 10.0, 30.0)]


def best_dps(data: str) -> float:
    folder = REPO / "sim" / "results" / f"tune-dps-{data}"
    rows = [json.loads(f.read_text()) for f in sorted(folder.glob("*.json")) if f.name != "choice.json"]
    if not rows:
        raise SystemExit(f"run `sim/sweep.py tune-dps-{data}` first (no tuning results in {folder})")
    best = min(rows, key=lambda r: r["metrics"]["lpips"])
    z = best["setup"]["method_config"]["zeta"]
    (folder / "choice.json").write_text(json.dumps({"zeta": z, "rule": "min val LPIPS",
                                                    "val_metrics": best["metrics"]}, indent=1) + "\n")
    return z


def paper_grid(n: int = 32, n_head: int = 64) -> list[dict]:
    """The paper-style comparison on the natural test split at BCR 1/48: every method × AWGN/Rayleigh × SNR
    (the headline point with n_head images, the rest with n), plus the estimated-SNR variant of the
    receivers that use the SNR. Diffusion settings come from the val tuning grids."""
    c = best_from_tuning("natural")
    zeta = best_dps("natural")
    methods = [("deepjscc", {}), ("deepjscc-perceptual", {}), ("digital-jpeg", {}), ("digital-webp", {}),
               ("ddnm-avgpool", {}), ("sing-inn", _inn_kw("natural")), ("dps", {"zeta": zeta})]
    methods += [("sing-zero", zero_kw(c, op)) for op in ("identity", "spectral")]
    pts = []
    for ch in ("awgn", "rayleigh"):
        for s in SNRS:
            for m, extra in methods:
                nn = n_head if (ch, s) == ("awgn", 0.0) else n
                pts.append(point("natural", m, "1/48", ch, s, nn, **extra))
                if m in ("deepjscc", "sing-inn") or m == "sing-zero" and extra["operator"] == c["operator"]:
                    pts.append(point("natural", m, "1/48", ch, s, nn, snr_source="estimated", **extra))
    return pts


def bcr_grid(n: int = 32) -> list[dict]:
    """The BCR axis of docs/BENCHMARKS.md for the receivers that need no training per JSCC model: BCR 1/12 and
    1/24 (k = 1024, 512), AWGN and Rayleigh, every SNR, natural test split. SING-Zero and DPS use the
    settings chosen on val at BCR 1/48 (not re-tuned per BCR); SING-Zero uses each JSCC's own
    calibration (`sing calibrate`, shipped next to the model). SING-INN needs an INN trained per JSCC
    model and is shipped for BCR 1/48 only; the perceptual DeepJSCC likewise."""
    c = best_from_tuning("natural")
    zeta = best_dps("natural")
    methods = [("deepjscc", {}), ("digital-jpeg", {}), ("digital-webp", {}), ("ddnm-avgpool", {}),
               ("sing-zero", zero_kw(c, "spectral")), ("dps", {"zeta": zeta})]
    return [point("natural", m, b, ch, s, n, **extra)
            for b in ("1/12", "1/24") for ch in ("awgn", "rayleigh") for s in SNRS for m, extra in methods]


def digital_grid(n: int = 32) -> list[dict]:
    """The digital-separation cliff: JPEG/WebP at the ideal-capacity rate next to DeepJSCC (BCR 1/12
    and 1/48) and SING-Zero (BCR 1/48, val-chosen settings) on the natural test split, AWGN, from −5 dB
    up to 30 dB so that the codecs get past their cliff (the JSCC models were trained on −5…15 dB: above
    that they run with their SNR input clamped, the calibration likewise)."""
    c = best_from_tuning("natural")
    pts = []
    for s in (-5.0, 0.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0):
        for b in ("1/12", "1/48"):
            for m in ("deepjscc", "digital-jpeg", "digital-webp"):
                pts.append(point("natural", m, b, "awgn", s, n))
        pts.append(point("natural", "sing-zero", "1/48", "awgn", s, n, **zero_kw(c)))
    return pts


def tune_zero_perceptual(n: int) -> list[dict]:
    """SING-Zero on the perceptual decoder: σ_y scale and warm start chosen on the natural *val*
    split at 0 dB with that decoder's own calibration (the MSE decoder's choice is one candidate)."""
    pts = [point("natural", "deepjscc-perceptual", "1/48", "awgn", 0.0, n, split="val")]
    # (σ_y scale, start[, η]); the second row: closer to x̂ and deterministic, after the first row's
    # trend (lower start and σ_y were better)
    for sc, start, *eta in ((0.5, 0.05), (1.0, 0.05), (0.5, 0.1), (1.0, 0.1), (1.5, 0.1), (2.0, 0.1), (1.0, 0.2),
                            (1.5, 0.2),
                            (0.25, 0.05), (0.5, 0.02), (0.5, 0.05, 0.0)):
        pts.append(point("natural", "sing-zero", "1/48", "awgn", 0.0, n, split="val", operator="spectral",
                         sigma_scale=sc, start=start, decoder="perceptual", **({"eta": eta[0]} if eta else {})))
    return pts


def best_zero_perceptual() -> dict:
    """Lowest val LPIPS among tune-zero-perceptual's SING-Zero points whose PSNR is at most 0.5 dB
    below the perceptual decoder's own (the acceptance bound); written to choice.json."""
    folder = REPO / "sim" / "results" / "tune-zero-perceptual"
    rows = [json.loads(f.read_text()) for f in sorted(folder.glob("*.json")) if f.name != "choice.json"]
    ref = [r for r in rows if r["setup"]["method"] == "deepjscc-perceptual"]
    cand = [r for r in rows if r["setup"]["method"] == "sing-zero"]
    if not ref or not cand:
        raise SystemExit(f"run `sim/sweep.py tune-zero-perceptual` first (no tuning results in {folder})")
    ok = [r for r in cand if r["metrics"]["psnr"] >= ref[0]["metrics"]["psnr"] - DECODER_PSNR_SLACK["perceptual"]]
    best = min(ok or cand, key=lambda r: r["metrics"]["lpips"])
    mc = best["setup"]["method_config"]
    choice = {"operator": mc["operator"], "sigma_scale": mc["sigma_scale"], "start": mc.get("start", 1.0),
              "eta": mc.get("eta", default_eta("sing-zero")),
              "rule": f"min val LPIPS s.t. PSNR ≥ perceptual DeepJSCC − {DECODER_PSNR_SLACK['perceptual']:g} dB"
                      + ("" if ok else " (none qualified)"),
              "val_metrics": best["metrics"], "val_deepjscc_perceptual": ref[0]["metrics"]}
    (folder / "choice.json").write_text(json.dumps(choice, indent=1) + "\n")
    return choice


SDEDIT_STARTS = (0.02, 0.05, 0.1, 0.2, 0.3)


def tune_sdedit(n: int) -> list[dict]:
    """SDEdit's start (its one knob: later = more of the prior) chosen on the natural *val* split at
    0 dB for each decoder, next to that decoder alone."""
    pts = [point("natural", "deepjscc", "1/48", "awgn", 0.0, n, split="val"),
           point("natural", "deepjscc-perceptual", "1/48", "awgn", 0.0, n, split="val")]
    for dec in ("mse", "perceptual"):
        pts += [point("natural", "sdedit", "1/48", "awgn", 0.0, n, split="val", start=st,
                      **({"decoder": dec} if dec != "mse" else {})) for st in SDEDIT_STARTS]
    return pts


def best_sdedit() -> dict[str, dict]:
    """Per decoder, the start with the lowest val LPIPS among tune-sdedit's points whose PSNR is at
    most DECODER_PSNR_SLACK[decoder] dB below the decoder's own (the rule SING-Zero's settings were
    chosen by on that decoder); written to choice.json."""
    folder = REPO / "sim" / "results" / "tune-sdedit"
    rows = [json.loads(f.read_text()) for f in sorted(folder.glob("*.json")) if f.name != "choice.json"]
    choice = {}
    for dec, ref_method in (("mse", "deepjscc"), ("perceptual", "deepjscc-perceptual")):
        ref = [r for r in rows if r["setup"]["method"] == ref_method]
        cand = [r for r in rows if r["setup"]["method"] == "sdedit" and r["setup"].get("decoder") == dec]
        if not ref or not cand:
            raise SystemExit(f"run `sim/sweep.py tune-sdedit` first (no {dec} tuning results in {folder})")
        slack = DECODER_PSNR_SLACK[dec]
        ok = [r for r in cand if r["metrics"]["psnr"] >= ref[0]["metrics"]["psnr"] - slack]
        best = min(ok or cand, key=lambda r: r["metrics"]["lpips"])
        choice[dec] = {"start": best["setup"]["method_config"]["start"],
                       "rule": f"min val LPIPS s.t. PSNR ≥ {ref_method} − {slack:g} dB" + ("" if ok else " (none qualified)"),
                       "val_metrics": best["metrics"], "val_decoder": ref[0]["metrics"]}
    (folder / "choice.json").write_text(json.dumps(choice, indent=1) + "\n")
    return choice


def unseen_grid(n_test: int = 64, n_unseen: int = 70) -> list[dict]:
    """Every headline receiver on the natural test split (n_test crops) and on the unseen-source
    split `natural-unseen` (all its crops) at BCR 1/48, AWGN 0, 5 and 10 dB; DPS (the slow one)
    last. SING-Zero and SDEdit run on both decoders: on the MSE one with the settings
    chosen on val (tune-zero-natural), on the perceptual one with its own calibration and the
    settings chosen for it on val (tune-zero-perceptual). Every setting comes from the natural val
    split: nothing is tuned on either evaluated split."""
    c = best_from_tuning("natural")
    cp = best_zero_perceptual()
    zp = {"operator": cp["operator"], "sigma_scale": cp["sigma_scale"], "decoder": "perceptual"}
    if cp["start"] != 1.0:
        zp["start"] = cp["start"]
    if cp["eta"] != default_eta("sing-zero"):
        zp["eta"] = cp["eta"]
    methods = [("deepjscc", {}), ("deepjscc-perceptual", {}), ("sing-zero", zero_kw(c)), ("sing-zero", zp),
               ("sing-inn", _inn_kw("natural")), ("ddnm-avgpool", {})]
    if (REPO / "models" / "jscc-natural64-bcr1_48-perceptual-inn" / "config.json").exists():
        # SING-INN on the perceptual decoder: its own INN, with the MSE decoder's val-chosen settings
        methods.append(("sing-inn", {**_inn_kw("natural"), "decoder": "perceptual"}))
    # SDEdit (the prior alone, no data term) on each decoder at its val-chosen start: what the
    # range-space correction adds is the gap to SING-Zero on the same decoder
    sd = best_sdedit()
    methods += [("sdedit", {"start": sd["mse"]["start"]}),
                ("sdedit", {"start": sd["perceptual"]["start"], "decoder": "perceptual"})]
    splits = (("natural", n_test), ("natural-unseen", n_unseen))
    pts = [point(d, m, "1/48", "awgn", 0.0, nn, **extra) for d, nn in splits for m, extra in methods]
    pts += [point(d, m, "1/48", "awgn", s, nn, **extra) for s in (5.0, 10.0) for d, nn in splits
            for m, extra in methods]
    zeta = best_dps("natural")
    pts += [point(d, "dps", "1/48", "awgn", s, nn, zeta=zeta) for s in (0.0, 5.0, 10.0) for d, nn in splits]
    return pts


def held_out_metric_grid() -> list[dict]:
    """The unseen grid's headline points (both splits, 0 dB, every receiver with the same val-chosen
    settings) scored also with LPIPS-VGG: the perceptual DeepJSCC was trained on LPIPS-Alex, the
    table's metric, and no part of the project was trained on LPIPS-VGG."""
    return [{**p, "lpips_extra": "vgg"} for p in unseen_grid() if p["snr_db"] == 0.0]


GRIDS = ("deepjscc", "tune-zero-fmnist", "zero-fmnist", "tune-zero-natural", "zero-natural",
         "tune-inn-natural", "inn-natural", "mismatch", "tune-dps-natural", "paper", "digital", "bcr",
         "tune-zero-perceptual", "tune-sdedit", "unseen", "held-out-metric")


def grid(name: str) -> list[dict]:
    if name == "deepjscc":
        pts = [point("natural", "deepjscc", b, c, s, 136)
               for b, c, s in itertools.product(["1/12", "1/24", "1/48"], ["awgn", "rayleigh"], SNRS)]
        pts += [point("natural", "deepjscc-perceptual", "1/48", c, s, 136)
                for c, s in itertools.product(["awgn", "rayleigh"], SNRS)]
        pts += [point("fmnist", "deepjscc", b, c, s, 256)
                for b, c, s in itertools.product(["1/12", "1/48"], ["awgn", "rayleigh"], SNRS)]
        return pts
    if name == "zero-fmnist":
        return zero_grid("fmnist", 64)
    if name == "zero-natural":
        return zero_grid("natural", 64)
    if name == "tune-zero-fmnist":
        return tune_zero("fmnist", "1/48", 64)
    if name == "tune-zero-natural":
        return tune_zero("natural", "1/48", 64)
    if name == "tune-inn-natural":
        return tune_inn("natural", 64)
    if name == "inn-natural":
        return inn_grid("natural", 64)
    if name == "mismatch":
        return mismatch_grid(64)
    if name == "tune-dps-natural":
        return tune_dps("natural", 32)
    if name == "paper":
        return paper_grid()
    if name == "digital":
        return digital_grid()
    if name == "bcr":
        return bcr_grid()
    if name == "tune-zero-perceptual":
        return tune_zero_perceptual(64)
    if name == "tune-sdedit":
        return tune_sdedit(64)
    if name == "unseen":
        return unseen_grid()
    if name == "held-out-metric":
        return held_out_metric_grid()
    raise SystemExit(f"unknown grid {name!r}; known: {', '.join(GRIDS)}")


def filename(p: dict) -> str:
    extra = "".join(f"_{k}{v}" for k, v in sorted(p.items()) if k not in BASE_KEYS)
    src = "" if p["snr_source"] == "true" else "_est"
    split = "" if p.get("split", "test") == "test" else f"_{p['split']}"
    return (f"{p['data']}{split}_{p['method']}_{p['bcr'].replace('/', '-')}_{p['channel']}_{p['snr_db']:g}dB"
            f"{src}{extra}.json")


def _seconds_per_image() -> dict[tuple[str, str], float]:
    """Median restoration seconds per image of each (method, data) over all committed result files."""
    import statistics
    acc: dict[tuple[str, str], list[float]] = {}
    for f in (REPO / "sim" / "results").glob("*/*.json"):
        try:
            r = json.loads(f.read_text())
        except (json.JSONDecodeError, OSError):
            continue
        if r.get("schema") == "sing.eval/1":
            acc.setdefault((r["setup"]["method"], r["setup"]["dataset"]), []).append(
                r["timing"]["seconds_per_image"])
    return {k: statistics.median(v) for k, v in acc.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("grid")
    ap.add_argument("--out", default=None, help="folder (default sim/results/<grid>)")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--force", action="store_true", help="re-run points whose file exists")
    ap.add_argument("--match", default=None, help="only points whose file name contains this text")
    ap.add_argument("--exclude", default=None, help="skip points whose file name contains this text")
    ap.add_argument("--worker", default=None, metavar="ENDPOINT",
                    help="restore through running workers: a `sing broker` endpoint fans every point's "
                    "images out over all its workers (start them with the same models)")
    ap.add_argument("--autocast", default=None, choices=("bf16", "fp16"),
                    help="run the prior's UNet under autocast (recorded in each result's setup)")
    a = ap.parse_args(argv)
    pts = [p for p in grid(a.grid) if (a.match is None or a.match in filename(p))
           and (a.exclude is None or a.exclude not in filename(p))]
    out = Path(a.out or REPO / "sim" / "results" / a.grid)
    if a.list:
        per_img = _seconds_per_image()
        spent = todo_s = 0.0
        unknown: set[str] = set()
        for p in pts:
            f = out / filename(p)
            if f.exists():
                spent += json.loads(f.read_text())["timing"]["seconds_per_image"] * p["n_images"]
            elif (p["method"], p["data"]) in per_img:
                todo_s += per_img[(p["method"], p["data"])] * p["n_images"]
            else:
                unknown.add(p["method"])
            print(filename(p), "(done)" if f.exists() else "")
        print(f"{a.grid}: {len(pts)} points; restoration time of the done ones {spent / 60:.1f} min; the rest "
              f"≈ {todo_s / 60:.1f} min on this machine (median s/image per method from every result file "
              f"under sim/results), plus ≈ 10 s per point for loading"
              + (f"; not counted (never run on this data here): {', '.join(sorted(unknown))}" if unknown else ""))
        return 0
    from sing.commands import eval as ev
    from sing.methods import get
    parser = argparse.ArgumentParser()
    ev.add_arguments(parser)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    todo = [p for p in pts if a.force or not (out / filename(p)).exists()]
    print(f"{a.grid}: {len(pts)} points, {len(pts) - len(todo)} done, {len(todo)} to run")
    for i, p in enumerate(todo):
        # several sweeps of one grid may run at once (one per core): each point is claimed by
        # creating <file>.lock atomically, and a point done or claimed meanwhile is skipped
        lock = out / (filename(p) + ".lock")
        if (out / filename(p)).exists() and not a.force:
            continue
        try:
            os.close(os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            print(f"  skipping {filename(p)}: another sweep claimed it ({lock}; delete it if none runs)")
            continue
        args = ["--method", p["method"], "--data", p["data"], "--bcr", p["bcr"], "--channel", p["channel"],
                "--snr-db", str(p["snr_db"]), "--n-images", str(p["n_images"]), "--snr-source", p["snr_source"],
                "--split", p.get("split", "test"),
                "--out", str(out / filename(p)), "--no-progress"]
        for k, v in p.items():
            if k not in BASE_KEYS:
                args += [f"--{k.replace('_', '-')}", str(v)]
        method = get(p["method"])
        if "start" in {q.name for q in method.params} and "start" not in p:
            args += ["--start", "1.0"]     # a point without `start` is from noise, whatever the defaults
        if a.worker:
            args += ["--worker", a.worker]
        if a.autocast and "prior" in method.needs:
            args += ["--autocast", a.autocast]
        try:
            ev.run(parser.parse_args(args))
        finally:
            lock.unlink(missing_ok=True)
        print(f"  [{i + 1}/{len(todo)}] {time.time() - t0:.0f} s", flush=True)
    print(f"{a.grid}: finished in {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
