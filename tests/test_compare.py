# SPDX-License-Identifier: GPL-3.0-or-later
"""sim/compare.py: paired per-image comparison with a source-image (cluster) bootstrap, and
sim/inn_ceiling.py: the floor any SING-INN can reach is below every model's residual."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def _load(name):
    spec = importlib.util.spec_from_file_location(f"{name}_under_test", REPO / "sim" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def compare():
    return _load("compare")


def _write(folder: Path, name: str, method: str, lpips, psnr=None, snr=0.0, ids=None, **cfg):
    ids = ids or [f"photo{i // 4}.png#{i % 4}" for i in range(len(lpips))]
    psnr = psnr if psnr is not None else [20.0] * len(lpips)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps({
        "schema": "sing.eval/1",
        "setup": {"dataset": "natural", "split": "test", "n_images": len(lpips), "bcr": "1/48",
                  "channel": "awgn", "snr_db": snr, "snr_source": "true", "snr_offset_db": 0.0,
                  "method": method, "method_config": cfg},
        "metrics": {"lpips": float(np.mean(lpips)), "psnr": float(np.mean(psnr)), "ssim": 0.5},
        "per_image": [{"id": i, "lpips": float(v), "psnr": float(p), "ssim": 0.5}
                      for i, v, p in zip(ids, lpips, psnr)]}))


def test_identical_results_give_ratio_one_with_zero_width(compare, tmp_path):
    v = np.linspace(0.2, 0.6, 16)
    _write(tmp_path, "a.json", "sing-inn", v)
    _write(tmp_path, "b.json", "deepjscc", v)
    (row,) = compare.compare_grid(tmp_path, "sing-inn", ["deepjscc"], n_boot=500)
    lp = row["metrics"]["lpips"]
    assert lp["ratio"] == pytest.approx(1.0) and lp["ratio_ci"] == pytest.approx([1.0, 1.0])
    assert lp["diff_ci"] == pytest.approx([0.0, 0.0], abs=1e-12)
    assert (lp["n_images"], lp["n_clusters"]) == (16, 4)


def test_scaled_results_ratio_exact_and_interval_covers_it(compare, tmp_path):
    rng = np.random.default_rng(1)
    b = rng.uniform(0.3, 0.7, 32)
    _write(tmp_path, "a.json", "sing-inn", 0.7 * b)
    _write(tmp_path, "b.json", "deepjscc", b)
    lp = compare.compare_grid(tmp_path, "sing-inn", ["deepjscc"], n_boot=500)[0]["metrics"]["lpips"]
    assert lp["ratio"] == pytest.approx(0.7)
    assert lp["ratio_ci"] == pytest.approx([0.7, 0.7])             # a constant ratio in every resample
    assert lp["diff"] < 0 and lp["diff_ci"][0] <= lp["diff"] <= lp["diff_ci"][1]


def test_cluster_bootstrap_is_wider_than_crop_bootstrap(compare):
    """Crops of one photograph share its difficulty: resampling crops would understate the spread."""
    rng = np.random.default_rng(0)
    level = np.repeat(rng.uniform(0.2, 0.8, 8), 8)                   # 8 photos × 8 crops
    b = level + rng.normal(0, 0.01, 64)
    a = level * 0.8 + rng.normal(0, 0.01, 64)
    clustered = compare.bootstrap(a, b, [f"p{i // 8}#{i % 8}" for i in range(64)], n_boot=2000)
    independent = compare.bootstrap(a, b, [f"p{i}" for i in range(64)], n_boot=2000)
    w = lambda r: r["diff_ci"][1] - r["diff_ci"][0]                  # noqa: E731
    assert clustered["n_clusters"] == 8 and independent["n_clusters"] == 64
    assert w(clustered) > 1.5 * w(independent)


def test_order_of_images_does_not_matter(compare, tmp_path):
    v = np.linspace(0.2, 0.6, 8)
    ids = [f"p{i}#0" for i in range(8)]
    _write(tmp_path, "a.json", "sing-inn", v * 0.9, ids=ids)
    _write(tmp_path, "b.json", "deepjscc", v[::-1], ids=ids[::-1])
    lp = compare.compare_grid(tmp_path, "sing-inn", ["deepjscc"], n_boot=200)[0]["metrics"]["lpips"]
    assert lp["ratio"] == pytest.approx(0.9) and lp["ratio_ci"] == pytest.approx([0.9, 0.9])


def test_bad_inputs_are_refused_with_a_reason(compare, tmp_path):
    _write(tmp_path, "a.json", "sing-inn", [0.3] * 4, ids=["x#0", "x#1", "y#0", "y#1"])
    _write(tmp_path, "b.json", "deepjscc", [0.4] * 4, ids=["x#0", "x#1", "y#0", "z#9"])
    with pytest.raises(compare.CompareError, match="different images"):
        compare.compare_grid(tmp_path, "sing-inn", ["deepjscc"], n_boot=200)
    _write(tmp_path, "c.json", "deepjscc", [0.4] * 4, ids=["x#0", "x#1", "y#0", "y#1"])
    with pytest.raises(compare.CompareError, match="two deepjscc results"):
        compare.compare_grid(tmp_path, "sing-inn", ["deepjscc"], n_boot=200)
    rows = compare.compare_grid(tmp_path, "sing-inn", ["deepjscc@c.json"], n_boot=200)   # METHOD@TEXT picks
    assert rows[0]["file_b"].endswith("c.json")
    (tmp_path / "junk.json").write_text("{not json")                  # ignored in a grid, refused by name
    with pytest.raises(compare.CompareError, match="cannot read"):
        compare.load_result(tmp_path / "junk.json")
    with pytest.raises(compare.CompareError, match="share no operating point"):
        compare.compare_grid(tmp_path, "sing-inn", ["sing-zero"], n_boot=200)


def test_cli_writes_json_and_markdown(tmp_path):
    g = tmp_path / "grid"
    _write(g, "a.json", "sing-inn", [0.3, 0.35, 0.2, 0.25])
    _write(g, "b.json", "deepjscc", [0.5, 0.45, 0.4, 0.42])
    _write(g, "a10.json", "sing-inn", [0.2, 0.25, 0.1, 0.15], snr=10.0)
    _write(g, "b10.json", "deepjscc", [0.4, 0.35, 0.3, 0.32], snr=10.0)
    out = tmp_path / "cmp"
    r = subprocess.run([sys.executable, str(REPO / "sim" / "compare.py"), "--grid", str(g), "--a", "sing-inn",
                        "--b", "deepjscc", "--n-boot", "200", "--out", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    res = json.loads(out.with_suffix(".json").read_text())
    assert res["schema"] == "sing.compare/1" and "sim/compare.py" in res["command"]
    assert "| sing-inn | deepjscc |" in out.with_suffix(".md").read_text()
    assert len(res["rows"]) == 2 and out.with_suffix(".png").stat().st_size > 10_000   # two SNRs: a plot
    bad = subprocess.run([sys.executable, str(REPO / "sim" / "compare.py"), "--grid", str(tmp_path / "none"),
                          "--a", "sing-inn", "--b", "deepjscc"], capture_output=True, text=True)
    assert bad.returncode == 2 and "no result files" in bad.stderr


def test_inn_ceiling_floor_is_below_every_model(tiny_jscc_dir):
    """The conditional variance of g(x̂) given x is a floor: neither the untrained (Haar) INN nor any
    other c(x) can have a smaller residual, up to Monte-Carlo error."""
    import torch
    from sing.inn import INNConfig, build_inn
    from sing.jscc import load_jscc
    ceiling = _load("inn_ceiling")
    torch.manual_seed(0)
    jscc = load_jscc(tiny_jscc_dir)
    inn = build_inn(INNConfig(image_size=32, channels=3, levels=2, blocks=[1, 1], hidden=8,
                                          jscc_model_id=jscc.model_id)).eval()
    x = torch.rand(6, 3, 32, 32)
    rows = ceiling.ceiling(jscc, inn, x, [f"p{i}" for i in range(6)], [0.0, 10.0], realisations=8,
                           progress=False)
    for r in rows:
        m = r["mean"]
        assert m["irreducible"] > 0
        assert m["irreducible"] <= m["inn"] * 1.05 and m["irreducible"] <= m["haar"] * 1.05
    assert rows[1]["mean"]["irreducible"] < rows[0]["mean"]["irreducible"]   # less channel noise at 10 dB
    with pytest.raises(ValueError, match="at least 2"):
        ceiling.ceiling(jscc, inn, x, [f"p{i}" for i in range(6)], [0.0], realisations=1, progress=False)


def test_inn_ceiling_oracle_restores_from_true_block_means(tiny_jscc_dir):
    """The perfect-range oracle (DDNM, σ_y = 0, from the true block means A·x) runs for each factor
    next to DeepJSCC at 0 dB, with finite metrics; finer true means are closer to the image."""
    import torch
    from sing.jscc import load_jscc
    from sing.prior.model import tiny_prior
    ceiling = _load("inn_ceiling")
    jscc = load_jscc(tiny_jscc_dir)
    prior = tiny_prior(32, 3, seed=0)
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    rows = ceiling.oracle(prior, jscc, x, [f"p{i}" for i in range(4)], [4, 8], start=0.2, steps=10)
    assert [r["what"] for r in rows] == ["deepjscc at 0 dB", "true 4×4 block means, bilinear",
                                         "true 4×4 block means, DDNM + prior", "true 8×8 block means, bilinear",
                                         "true 8×8 block means, DDNM + prior"]
    for r in rows:
        assert all(np.isfinite(r[k]) for k in ("psnr", "ssim", "lpips"))
    assert rows[1]["psnr"] > rows[3]["psnr"] and rows[1]["lpips"] < rows[3]["lpips"]   # 4×4 vs 8×8 means
    assert rows[2]["start"] == 0.2 and rows[2]["factor"] == 4
