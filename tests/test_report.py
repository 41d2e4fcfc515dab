"""sim/report.py's per-grid tables: one row per result file, and a column for each extra metric
(`sing eval --lpips-extra vgg`) in the groups whose files carry it."""
import csv
import importlib.util
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _sim(name: str):
    """sim/<name>.py as a module (sim/ is scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"sim_{name}", REPO / "sim" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _report():
    return _sim("report")


def _result(folder: Path, method: str, lpips: float, **extra) -> None:
    setup = {"dataset": "natural", "split": "test", "n_images": 2, "resolution": 64, "bcr": "1/48", "k": 256,
             "channel": "awgn", "snr_db": 0.0, "snr_source": "true", "method": method, "seed": 0,
             "commit": "abc", "device": "cpu"}
    metrics = {"psnr": 20.0, "ssim": 0.5, "lpips": lpips, **extra}
    (folder / f"{method}.json").write_text(json.dumps(
        {"schema": "sing.eval/1", "setup": setup, "metrics": metrics, "per_image": [], "timing": {}}))


def test_extra_metric_gets_a_column_and_a_dash_where_missing(tmp_path):
    R = _report()
    _result(tmp_path, "deepjscc", 0.5)                       # no extra metric: a dash in its cell
    _result(tmp_path, "sing-zero", 0.4, lpips_vgg=0.5632)
    rows = R.load(tmp_path)
    R.write_tables(tmp_path, rows)
    md = (tmp_path / "table.md").read_text().splitlines()
    head = next(l for l in md if l.startswith("| method"))
    assert "| LPIPS | LPIPS-VGG | s/image |" in head
    zero = next(l for l in md if l.startswith("| sing-zero"))
    dj = next(l for l in md if l.startswith("| deepjscc"))
    assert "| 0.4000 | 0.5632 |" in zero and "| 0.5000 | – |" in dj
    with open(tmp_path / "table.csv") as fh:
        got = {r["method"]: r["lpips_vgg"] for r in csv.DictReader(fh)}
    assert got == {"deepjscc": "", "sing-zero": "0.5632"}


def test_no_extra_metric_no_column(tmp_path):
    R = _report()
    _result(tmp_path, "deepjscc", 0.5)
    R.write_tables(tmp_path, R.load(tmp_path))
    assert "LPIPS-VGG" not in (tmp_path / "table.md").read_text()


def test_remeasured_grid_stays_out_of_the_headline(tmp_path):
    """held-out-metric re-runs the unseen grid's points to add a metric; the headline rows keep the
    unseen grid's files (a tie on image count must not pick the re-run)."""
    R = _report()
    for g in ("held-out-metric", "unseen"):
        (tmp_path / g).mkdir()
        _result(tmp_path / g, "deepjscc", 0.5)
    all_rows = {g: R.load(tmp_path / g) for g in ("held-out-metric", "unseen")}
    assert [r["grid"] for r in R._headline(all_rows, "natural")] == ["unseen"]
    assert R.REMEASURED <= set(_sim("sweep").GRIDS)
