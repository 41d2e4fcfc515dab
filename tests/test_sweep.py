# SPDX-License-Identifier: GPL-3.0-or-later
"""The sweep runner's val-tuning rules and grids (sim/sweep.py): choices come from val result files by
the stated rule, test grids cover what the issues ask for."""
import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def sweep(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("sweep_under_test", REPO / "sim" / "sweep.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setattr(mod, "REPO", tmp_path)
    return mod


def _result(folder: Path, name: str, method: str, psnr: float, lpips: float, decoder: str | None = None, **cfg):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps({
        "schema": "sing.eval/1", "setup": {"method": method, "method_config": cfg, "decoder": decoder},
        "metrics": {"psnr": psnr, "ssim": 0.5, "lpips": lpips}, "timing": {"seconds_per_image": 1.0}}))


def test_zero_choice_rule_and_grid(sweep, tmp_path):
    f = tmp_path / "sim" / "results" / "tune-zero-natural"
    _result(f, "ref.json", "deepjscc", 20.0, 0.50)
    _result(f, "a.json", "sing-zero", 17.0, 0.30, operator="spectral", sigma_scale=0.5)   # too far below
    _result(f, "b.json", "sing-zero", 19.5, 0.40, operator="spectral", sigma_scale=1.0)
    _result(f, "c.json", "sing-zero", 19.2, 0.38, operator="identity", sigma_scale=2.0)
    _result(f, "d.json", "sing-zero", 19.9, 0.45, operator="identity", sigma_scale=1.0)
    c = sweep.best_from_tuning("natural")
    assert (c["operator"], c["sigma_scale"]) == ("identity", 2.0)          # min LPIPS within 1 dB
    assert c["per_operator"]["spectral"]["sigma_scale"] == 1.0              # 0.5 is > 1 dB below
    assert json.loads((f / "choice.json").read_text())["operator"] == "identity"
    pts = sweep.grid("zero-natural")
    for snr in sweep.SNRS:
        got = {(p["method"], p.get("operator"), p.get("sigma_scale")) for p in pts if p["snr_db"] == snr}
        assert got == {("deepjscc", None, None), ("ddnm-avgpool", None, None),
                       ("sing-zero", "identity", 2.0), ("sing-zero", "spectral", 1.0)}
    assert all(p["n_images"] >= 64 and p["split"] == "test" for p in pts)


def test_tuning_grids_are_on_val_and_missing_tuning_is_explained(sweep):
    for name in ("tune-zero-natural", "tune-inn-natural", "tune-dps-natural"):
        assert all(p["split"] == "val" for p in sweep.grid(name)), name
    with pytest.raises(SystemExit, match="tune-zero-natural"):
        sweep.grid("zero-natural")
    with pytest.raises(SystemExit, match="unknown grid"):
        sweep.grid("nope")


def test_inn_grid_uses_val_choice_and_offsets(sweep, tmp_path):
    z = tmp_path / "sim" / "results" / "tune-zero-natural"
    _result(z, "ref.json", "deepjscc", 20.0, 0.50)
    _result(z, "b.json", "sing-zero", 19.5, 0.40, operator="spectral", sigma_scale=1.0)
    i = tmp_path / "sim" / "results" / "tune-inn-natural"
    _result(i, "x.json", "sing-inn", 18.0, 0.20, sigma_scale=0.5, inn_from=0.3)    # > 1.5 dB below
    _result(i, "y.json", "sing-inn", 19.0, 0.35, sigma_scale=2.0, inn_from=0.3)
    pts = sweep.grid("inn-natural")
    assert {(p["sigma_scale"], p["inn_from"]) for p in pts} == {(2.0, 0.3)}
    assert sorted(p.get("snr_offset_db", 0.0) for p in pts if p["snr_db"] == 0.0) == [-2.0, 0.0, 2.0]
    assert {p["snr_db"] for p in pts} == set(sweep.SNRS)
    names = [sweep.filename(p) for p in pts]
    assert len(set(names)) == len(names)                  # one result file per point


def test_chosen_eta_travels_to_the_test_points(sweep, tmp_path):
    """η is tuned like σ and start: a val winner with η ≠ 0.85 puts `eta` into every test point (and
    so into the result file name); the default η leaves it out."""
    z = tmp_path / "sim" / "results" / "tune-zero-natural"
    _result(z, "ref.json", "deepjscc", 20.0, 0.50)
    _result(z, "b.json", "sing-zero", 19.5, 0.40, operator="spectral", sigma_scale=1.5, start=0.1, eta=0.85)
    i = tmp_path / "sim" / "results" / "tune-inn-natural"
    _result(i, "y.json", "sing-inn", 19.0, 0.35, sigma_scale=0.5, inn_from=0.3, start=0.1, eta=0.85)
    _result(i, "z.json", "sing-inn", 19.0, 0.33, sigma_scale=0.25, inn_from=0.3, start=0.1, eta=0.0)
    assert sweep.best_inn("natural")["eta"] == 0.0
    pts = sweep.grid("inn-natural")
    assert {(p["sigma_scale"], p["eta"], p["start"]) for p in pts} == {(0.25, 0.0, 0.1)}
    assert all("eta0.0" in sweep.filename(p) for p in pts)
    zp = [p for p in sweep.grid("zero-natural") if p["method"] == "sing-zero"]
    assert zp and all("eta" not in p for p in zp)
    assert any(p.get("eta") == 0.0 for p in sweep.grid("tune-inn-natural"))
    # SING-INN's default η is itself tuned: its points always name η, so a changed default can never
    # re-label a result file
    assert all("eta" in p for p in sweep.grid("tune-inn-natural"))


def _sdedit_tuning(f: Path):
    _result(f, "ref.json", "deepjscc", 20.0, 0.50, decoder="mse")
    _result(f, "refp.json", "deepjscc-perceptual", 21.0, 0.30, decoder="perceptual")
    _result(f, "m1.json", "sdedit", 19.2, 0.38, decoder="mse", start=0.1)
    _result(f, "m2.json", "sdedit", 18.5, 0.36, decoder="mse", start=0.3)          # > 1 dB below DeepJSCC
    _result(f, "p1.json", "sdedit", 20.9, 0.31, decoder="perceptual", start=0.02)
    _result(f, "p2.json", "sdedit", 20.4, 0.29, decoder="perceptual", start=0.1)   # > 0.5 dB below


def test_sdedit_start_is_chosen_per_decoder_on_val_by_that_decoders_rule(sweep, tmp_path):
    assert all(q["split"] == "val" for q in sweep.grid("tune-sdedit"))
    assert {(q["method"], q.get("decoder")) for q in sweep.grid("tune-sdedit")} == {
        ("deepjscc", None), ("deepjscc-perceptual", None), ("sdedit", None), ("sdedit", "perceptual")}
    with pytest.raises(SystemExit, match="tune-sdedit"):
        sweep.best_sdedit()
    _sdedit_tuning(tmp_path / "sim" / "results" / "tune-sdedit")
    c = sweep.best_sdedit()
    assert (c["mse"]["start"], c["perceptual"]["start"]) == (0.1, 0.02)
    assert "− 1 dB" in c["mse"]["rule"] and "− 0.5 dB" in c["perceptual"]["rule"]


def test_unseen_grid_runs_both_splits_and_both_decoders_with_val_choices(sweep, tmp_path):
    """The unseen grid: every headline receiver on the natural test split and on natural-unseen,
    SING-Zero on both decoders (the perceptual one with the setting its own val tuning chose, by the
    0.5 dB PSNR rule), DPS at 0 dB last; nothing tuned on a test split."""
    r = tmp_path / "sim" / "results"
    _result(r / "tune-zero-natural", "ref.json", "deepjscc", 20.0, 0.50)
    _result(r / "tune-zero-natural", "b.json", "sing-zero", 19.5, 0.40, operator="spectral", sigma_scale=1.5,
            start=0.1)
    _result(r / "tune-inn-natural", "y.json", "sing-inn", 19.0, 0.35, sigma_scale=0.25, inn_from=0.3, start=0.1,
            eta=0.0)
    _result(r / "tune-dps-natural", "z.json", "dps", 18.0, 0.45, zeta=10.0)
    _sdedit_tuning(r / "tune-sdedit")
    p = r / "tune-zero-perceptual"
    with pytest.raises(SystemExit, match="tune-zero-perceptual"):
        sweep.grid("unseen")
    assert all(q["split"] == "val" for q in sweep.grid("tune-zero-perceptual"))
    _result(p, "ref.json", "deepjscc-perceptual", 21.0, 0.30)
    _result(p, "a.json", "sing-zero", 20.4, 0.25, operator="spectral", sigma_scale=0.5, start=0.05)  # > 0.5 dB below
    _result(p, "b.json", "sing-zero", 20.6, 0.29, operator="spectral", sigma_scale=1.0, start=0.2)
    pts = sweep.grid("unseen")
    assert json.loads((p / "choice.json").read_text())["sigma_scale"] == 1.0
    assert {q["data"] for q in pts} == {"natural", "natural-unseen"} and all(q["split"] == "test" for q in pts)
    for data in ("natural", "natural-unseen"):
        head = [q for q in pts if q["data"] == data and q["snr_db"] == 0.0]
        assert all(q["n_images"] >= 64 for q in head)
        got = {(q["method"], q.get("decoder"), q.get("sigma_scale"), q.get("start")) for q in head}
        assert got == {("deepjscc", None, None, None), ("deepjscc-perceptual", None, None, None),
                       ("sing-zero", None, 1.5, 0.1), ("sing-zero", "perceptual", 1.0, 0.2),
                       ("sing-inn", None, 0.25, 0.1), ("ddnm-avgpool", None, None, None), ("dps", None, None, None),
                       ("sdedit", None, None, 0.1), ("sdedit", "perceptual", None, 0.02)}
        assert {q["snr_db"] for q in pts if q["data"] == data} == {0.0, 5.0, 10.0}
    assert [q["method"] for q in pts[-2:]] == ["dps", "dps"]
    names = [sweep.filename(q) for q in pts]
    assert len(set(names)) == len(names)
    # once an INN for the perceptual decoder exists, SING-INN runs on that decoder too
    inn = tmp_path / "models" / "jscc-natural64-bcr1_48-perceptual-inn"
    inn.mkdir(parents=True)
    (inn / "config.json").write_text("{}")
    extra = [q for q in sweep.grid("unseen") if q["method"] == "sing-inn" and q.get("decoder") == "perceptual"]
    assert {(q["data"], q["snr_db"]) for q in extra} == {(d, s) for d in ("natural", "natural-unseen")
                                                         for s in (0.0, 5.0, 10.0)}


def test_a_point_claimed_by_another_sweep_is_skipped(sweep, tmp_path, capsys):
    """Sweeps of one grid can run side by side: a point whose <file>.lock exists is left to the
    sweep that claimed it (nothing is run twice, nothing is overwritten)."""
    out = tmp_path / "out"
    out.mkdir()
    pts = sweep.grid("tune-dps-natural")
    for p in pts:
        (out / (sweep.filename(p) + ".lock")).touch()
    assert sweep.main(["tune-dps-natural", "--out", str(out)]) == 0
    assert capsys.readouterr().out.count("another sweep claimed it") == len(pts)
    assert not list(out.glob("*.json")) and len(list(out.glob("*.lock"))) == len(pts)
