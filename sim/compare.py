#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Paired comparison of two methods from `sing.eval/1` result files, with bootstrap confidence intervals.

Two result files of one operating point (same data, split, images, channel seeds) are paired per
image. For each metric the script reports

    ratio  = mean_i m_A(i) / mean_i m_B(i)          (e.g. LPIPS(SING-INN) / LPIPS(DeepJSCC))
    diff   = mean_i m_A(i) − mean_i m_B(i)          (e.g. LPIPS(SING-INN) − LPIPS(SING-Zero))

and a 95 % percentile-bootstrap interval for both, for PSNR, SSIM, LPIPS and any other LPIPS
backbone both files carry (`sing eval --lpips-extra vgg`: `lpips_vgg`, its ratio in a column of its
own). The resampling unit is the *source image*, not the crop: the natural splits hold several
64×64 crops of each photograph (id `file#k`), and crops of one photograph are not independent
samples, so resampling crops would understate the spread (cluster bootstrap; Field & Welsh 2007).
Ids without `#` are their own cluster.

    .venv/bin/python sim/compare.py --grid sim/results/paper --a sing-inn --b deepjscc
    .venv/bin/python sim/compare.py --grid sim/results/inn-natural --grid sim/results/zero-natural \
        --a sing-inn --b deepjscc --b sing-zero@spectral --out sim/results/inn/compare-natural

With --out P it writes P.json (machine-readable), P.md (the table) and, where a group has several
SNRs, P.png (LPIPS of each method and the ratio with its band vs SNR), and the command that made them. Points are matched on (data, split, n, BCR, channel, SNR, SNR source, SNR offset); when a grid
holds several files of one method at one point (tuning grids, several operators), --a-match TEXT,
--b-match TEXT or --b METHOD@TEXT pick by file name:

    .venv/bin/python sim/compare.py --grid sim/results/paper --a sing-inn --b sing-zero@spectral
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
METRICS = ("psnr", "ssim", "lpips")


class CompareError(ValueError):
    pass


def load_result(path: Path) -> dict:
    try:
        r = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CompareError(f"cannot read result file {path}: {e}") from e
    if r.get("schema") != "sing.eval/1" or "per_image" not in r:
        raise CompareError(f"{path} is not a sing.eval/1 result with per-image metrics")
    return r


def point_key(r: dict) -> tuple:
    s = r["setup"]
    return (s["dataset"], s["split"], s["n_images"], s["bcr"], s["channel"], float(s["snr_db"]),
            s.get("snr_source", "true"), float(s.get("snr_offset_db", 0.0)))


def cluster_of(image_id: str) -> str:
    return image_id.split("#", 1)[0]


def paired_arrays(a: dict, b: dict, metric: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Per-image values of `metric` in A and B, in A's image order; the image sets must be equal."""
    ia = {p["id"]: p for p in a["per_image"]}
    ib = {p["id"]: p for p in b["per_image"]}
    if set(ia) != set(ib):
        only_a, only_b = sorted(set(ia) - set(ib))[:3], sorted(set(ib) - set(ia))[:3]
        raise CompareError(f"the two results are on different images (only in A: {only_a}, only in B: "
                           f"{only_b}): re-run both with the same --data/--split/--n-images")
    ids = [p["id"] for p in a["per_image"]]
    va = np.array([ia[i][metric] for i in ids], dtype=np.float64)
    vb = np.array([ib[i][metric] for i in ids], dtype=np.float64)
    return va, vb, ids


def bootstrap(va: np.ndarray, vb: np.ndarray, ids: list[str], n_boot: int = 10000, seed: int = 0,
              level: float = 0.95) -> dict:
    """Ratio and difference of means with a cluster (source-image) percentile bootstrap interval.

    Infinite values (PSNR of a perfect reconstruction) are dropped pairwise before resampling."""
    ok = np.isfinite(va) & np.isfinite(vb)
    va, vb = va[ok], vb[ok]
    ids = [i for i, k in zip(ids, ok) if k]
    if len(va) == 0:
        raise CompareError("no image has finite values in both results")
    clusters = sorted({cluster_of(i) for i in ids})
    index = {c: k for k, c in enumerate(clusters)}
    cid = np.array([index[cluster_of(i)] for i in ids])
    n_c = len(clusters)
    # per-cluster sums and counts: a resample of clusters is a weighted sum of these
    sa = np.bincount(cid, weights=va, minlength=n_c)
    sb = np.bincount(cid, weights=vb, minlength=n_c)
    cnt = np.bincount(cid, minlength=n_c).astype(np.float64)
    rng = np.random.default_rng(seed)
    w = rng.multinomial(n_c, np.full(n_c, 1.0 / n_c), size=n_boot).astype(np.float64)  # (n_boot, n_c)
    ma, mb = (w @ sa) / (w @ cnt), (w @ sb) / (w @ cnt)
    lo, hi = (1 - level) / 2 * 100, (1 + level) / 2 * 100
    mean_a, mean_b = float(va.mean()), float(vb.mean())
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = ma / mb
    return {"mean_a": mean_a, "mean_b": mean_b,
            "ratio": mean_a / mean_b if mean_b != 0 else float("nan"),
            "ratio_ci": [float(np.nanpercentile(ratios, lo)), float(np.nanpercentile(ratios, hi))],
            "diff": mean_a - mean_b,
            "diff_ci": [float(np.percentile(ma - mb, lo)), float(np.percentile(ma - mb, hi))],
            "n_images": int(len(va)), "n_clusters": n_c, "n_boot": n_boot, "level": level, "seed": seed}


def _rel(p: Path) -> str:
    try:
        return str(Path(p).resolve().relative_to(REPO))
    except ValueError:
        return str(p)


def pick(files: list[Path], method: str, match: str | None) -> dict[tuple, tuple[Path, dict]]:
    """The result of `method` at each operating point (file names containing `match`, if given)."""
    out: dict[tuple, tuple[Path, dict]] = {}
    for f in files:
        try:
            r = load_result(f)
        except CompareError:
            continue
        if r["setup"]["method"] != method or (match and match not in f.name):
            continue
        k = point_key(r)
        if k in out:
            raise CompareError(f"two {method} results at one point: {out[k][0].name} and {f.name}; "
                               f"pick one with --a-match/--b-match TEXT (a part of the file name)")
        out[k] = (f, r)
    return out


def compare_grid(grid, a: str, bs: list[str], a_match: str | None = None, b_match: str | None = None,
                 metrics=METRICS, n_boot: int = 10000, seed: int = 0) -> list[dict]:
    grids = [grid] if isinstance(grid, (str, Path)) else list(grid)
    files = sorted(f for g in grids for f in Path(g).glob("*.json"))
    if not files:
        raise CompareError(f"no result files in {', '.join(map(str, grids))}")
    pa = pick(files, a, a_match)
    if not pa:
        raise CompareError(f"no {a} results in {', '.join(map(str, grids))}")
    rows = []
    for spec in bs:
        b, _, own = spec.partition("@")          # METHOD@TEXT: this B's files must contain TEXT
        pb = pick(files, b, own or b_match)
        for k in sorted(set(pa) & set(pb), key=lambda k: (k[0], k[4], k[6], k[7], k[5])):
            (fa, ra), (fb, rb) = pa[k], pb[k]
            row = {"data": k[0], "split": k[1], "n_images": k[2], "bcr": k[3], "channel": k[4],
                   "snr_db": k[5], "snr_source": k[6], "snr_offset_db": k[7], "a": a, "b": b,
                   "file_a": _rel(fa), "file_b": _rel(fb), "metrics": {}}
            extra = [m for m in ra["per_image"][0] if m.startswith("lpips_") and m in rb["per_image"][0]]
            for m in (*metrics, *extra):       # + other LPIPS backbones both files carry (eval --lpips-extra)
                va, vb, ids = paired_arrays(ra, rb, m)
                row["metrics"][m] = bootstrap(va, vb, ids, n_boot=n_boot, seed=seed)
            rows.append(row)
    if not rows:
        raise CompareError(f"{a} and {', '.join(bs)} share no operating point in {', '.join(map(str, grids))}")
    return rows


def to_markdown(rows: list[dict], command: str) -> str:
    lines = [f"# Paired comparison: {rows[0]['a']} vs {', '.join(dict.fromkeys(r['b'] for r in rows))}", "",
             f"Generated by `{command}`.", "",
             "ratio = mean(A)/mean(B), diff = mean(A) − mean(B) over the same images and channel noise; "
             "[lo, hi]: 95 % cluster-bootstrap interval (resampling source photographs, not crops).", "",
             "| data | split | channel | SNR (dB) | receiver SNR | SNR error (dB) | A | B | LPIPS A | LPIPS B | LPIPS ratio [95 %] "
             "| LPIPS diff [95 %] | PSNR diff (dB) [95 %] | images / photos |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    extra = sorted({m for r in rows for m in r["metrics"] if m.startswith("lpips_")})
    if extra:                                   # other LPIPS backbones: their ratio, one column each
        lines[-2] = lines[-2][:-len(" images / photos |")] + "".join(
            f" LPIPS-{m.removeprefix('lpips_').upper()} ratio [95 %] |" for m in extra) + \
            " images / photos |"
        lines[-1] += "---|" * len(extra)
    for r in rows:
        lp, ps = r["metrics"]["lpips"], r["metrics"]["psnr"]
        ex = "".join(f" {r['metrics'][m]['ratio']:.3f} [{r['metrics'][m]['ratio_ci'][0]:.3f}, "
                     f"{r['metrics'][m]['ratio_ci'][1]:.3f}] |" if m in r["metrics"] else " – |" for m in extra)
        lines.append(
            f"| {r['data']} | {r['split']} | {r['channel']} | {r['snr_db']:g} | {r['snr_source']} | {r['snr_offset_db']:+g} | "
            f"{r['a']} | {r['b']} | {lp['mean_a']:.4f} | {lp['mean_b']:.4f} | "
            f"{lp['ratio']:.3f} [{lp['ratio_ci'][0]:.3f}, {lp['ratio_ci'][1]:.3f}] | "
            f"{lp['diff']:+.4f} [{lp['diff_ci'][0]:+.4f}, {lp['diff_ci'][1]:+.4f}] | "
            f"{ps['diff']:+.2f} [{ps['diff_ci'][0]:+.2f}, {ps['diff_ci'][1]:+.2f}] |{ex} "
            f"{lp['n_images']} / {lp['n_clusters']} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path, metric: str = "lpips") -> Path | None:
    """Per (data, channel, receiver SNR, SNR error) group with ≥ 2 SNRs: the metric of A and each B
    vs SNR, and the ratio A/B with its bootstrap band. None when no group has two SNRs."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["data"], r["split"], r["channel"], r["snr_source"], r["snr_offset_db"]), []).append(r)
    groups = {k: g for k, g in groups.items() if len({r["snr_db"] for r in g}) >= 2}
    if not groups:
        return None
    fig, axes = plt.subplots(len(groups), 2, figsize=(11, 4 * len(groups)), squeeze=False)
    for (ax0, ax1), ((data, split, ch, src, off), g) in zip(axes, sorted(groups.items())):
        a = g[0]["a"]
        seen_a = False
        for b in dict.fromkeys(r["b"] for r in g):
            pts = sorted((r for r in g if r["b"] == b), key=lambda r: r["snr_db"])
            snr = [r["snr_db"] for r in pts]
            m = [r["metrics"][metric] for r in pts]
            if not seen_a:
                ax0.plot(snr, [v["mean_a"] for v in m], marker="o", lw=2, label=a)
                seen_a = True
            ax0.plot(snr, [v["mean_b"] for v in m], marker="s", label=b)
            ax1.plot(snr, [v["ratio"] for v in m], marker="o", label=f"{a} / {b}")
            ax1.fill_between(snr, [v["ratio_ci"][0] for v in m], [v["ratio_ci"][1] for v in m], alpha=0.2)
        ax1.axhline(1.0, color="k", lw=0.8)
        ax0.set_ylabel(f"{metric.upper()} (mean over images)")
        ax1.set_ylabel(f"{metric.upper()} ratio, 95 % cluster bootstrap")
        for ax in (ax0, ax1):
            ax.set_xlabel("SNR (dB)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        ax0.set_title(f"{data} ({split}), {ch}, receiver SNR {src}" + (f" {off:+g} dB" if off else ""), fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--grid", required=True, action="append",
                   help="folder of sing.eval/1 result files (repeatable: the union is searched)")
    p.add_argument("--a", required=True, help="method A (the numerator)")
    p.add_argument("--b", required=True, action="append",
                   help="method B (repeatable); METHOD@TEXT takes only B files whose name contains TEXT")
    p.add_argument("--a-match", default=None, help="only A files whose name contains this")
    p.add_argument("--b-match", default=None, help="only B files whose name contains this")
    p.add_argument("--n-boot", type=int, default=10000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="write OUT.json and OUT.md")
    args = p.parse_args(argv)
    if args.n_boot < 100:
        p.error("--n-boot must be ≥ 100")
    try:
        rows = compare_grid([Path(g) for g in args.grid], args.a, args.b, args.a_match, args.b_match,
                            n_boot=args.n_boot, seed=args.seed)
    except CompareError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    argv_list = sys.argv[1:] if argv is None else list(argv)
    command = ".venv/bin/python sim/compare.py " + " ".join(shlex.quote(a) for a in argv_list)
    md = to_markdown(rows, command)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".json").write_text(json.dumps({"schema": "sing.compare/1", "command": command,
                                                        "rows": rows}, indent=1) + "\n")
        out.with_suffix(".md").write_text(md)
        plot(rows, out.with_suffix(".png"))
    print(md, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
