# SPDX-License-Identifier: GPL-3.0-or-later
"""Every flowgraphs/*.grc compiles with grcc; the headless loopbacks run to completion with a real
worker process, and the radio path reproduces `sing eval` (same seeded sing.channel noise)."""
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.gnuradio
ROOT = Path(__file__).resolve().parents[1]
GRAPHS = sorted((ROOT / "flowgraphs").glob("*.grc"))
PY = sys.executable


def _env():
    shim = ROOT / ".cache" / "gr-shim" / "gnuradio"
    shim.mkdir(parents=True, exist_ok=True)
    if not (shim / "sing").exists():
        (shim / "sing").symlink_to(ROOT / "sing_blocks", target_is_directory=True)
    env = dict(os.environ, GRC_BLOCKS_PATH=str(ROOT / "sing_blocks" / "grc"))
    # GNU Radio's own blocks only: an installed gr-sing (e.g. /usr/local) would otherwise replace
    # this tree's block YAML (GRC loads the global paths last, and the last definition wins)
    from gnuradio import gr
    env["GR_CONF_GRC_GLOBAL_BLOCKS_PATH"] = str(Path(gr.prefix()) / "share" / "gnuradio" / "grc" / "blocks")
    env["PYTHONPATH"] = os.pathsep.join([str(shim.parent), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    if shutil.which("grcc") is None:
        pytest.skip("grcc not installed (apt-get install gnuradio)")
    out = tmp_path_factory.mktemp("grcc")
    return out


@pytest.mark.parametrize("grc", GRAPHS, ids=[g.name for g in GRAPHS])
def test_grcc_compiles(grc, compiled):
    r = subprocess.run(["grcc", "-o", str(compiled), str(grc)], env=_env(), capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and "rror" not in r.stdout + r.stderr, r.stdout + r.stderr
    assert list(compiled.glob("*.py")), "grcc wrote no Python"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def setup64(tmp_path_factory):
    """A tiny 64×64 BCR 1/48 DeepJSCC (the folder: data set's size), 6 images, and a worker."""
    sys.path.insert(0, str(_env()["PYTHONPATH"].split(os.pathsep)[0]))
    import gnuradio
    gnuradio.__path__.insert(0, str(ROOT / ".cache" / "gr-shim" / "gnuradio"))
    from gnuradio.sing import qa_helpers as qa
    d = tmp_path_factory.mktemp("fg")
    jd = qa.tiny_jscc_dir(d / "jscc", image_size=64, bcr="1/48")
    # 64×64: the source sends photos at their own size (size policy native) and `sing eval` on a
    # folder crops to the model's size; at the model's size the two send the same pixels
    qa.write_images(d / "imgs", 6, size=(64, 64))
    port = _free_port()
    p = subprocess.Popen([PY, "-m", "sing.cli", "worker", "--bind", f"tcp://127.0.0.1:{port}",
                          "--jscc", str(jd), "--device", "cpu", "--threads", "1"], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in p.stdout:
        if line.startswith("READY"):
            break
    yield d, jd, f"tcp://127.0.0.1:{port}"
    p.kill()
    p.wait(timeout=10)
    p.stdout.close()


def _run(compiled, name, args, timeout=180):
    py = compiled / f"{name}.py"
    if not py.exists():
        r = subprocess.run(["grcc", "-o", str(compiled), str(ROOT / "flowgraphs" / f"{name}.grc")],
                           env=_env(), capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run([PY, str(py), *args], env=_env(), capture_output=True, text=True,
                       timeout=timeout, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r


def _psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0 ** 2 / mse)


def test_loopback_awgn_matches_sing_eval(compiled, setup64):
    d, jd, ep = setup64
    out = d / "awgn"
    fg = _run(compiled, "loopback_awgn_no_gui",
             ["--snr-db", "0", "--method", "deepjscc", "--images", str(d / "imgs"), "--jscc", str(jd),
              "--endpoint", ep, "--out-dir", str(out), "--seed", "3"])
    lines = {ln.split(":")[0]: ln for ln in fg.stdout.splitlines() if ln.startswith("folder/")}
    summ = json.loads((out / "deepjscc" / "summary.json").read_text())
    assert summ["counts"]["restored"] == 6 and summ["counts"]["dropped"] == 0, summ["counts"]
    ev = d / "eval"
    r = subprocess.run([PY, "-m", "sing.cli", "eval", "--method", "deepjscc", "--data",
                        f"folder:{d / 'imgs'}", "--split", "all", "--n-images", "6", "--bcr", "1/48",
                        "--snr-db", "0", "--jscc", str(jd), "--seed", "3", "--out", str(ev / "r.json"),
                        "--save-images", str(ev), "--no-progress"], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((ev / "r.json").read_text())
    from PIL import Image
    from sing.data import fit_image, list_images, read_image
    psnr = []
    for f in list_images(d / "imgs"):
        x = fit_image(read_image(f, 3), 64)
        radio = np.asarray(Image.open(out / "deepjscc" / f"folder_{f.stem}.png"))
        evimg = np.asarray(Image.open(ev / f"folder_{f.name}.png"))
        assert np.abs(radio.astype(int) - evimg.astype(int)).max() <= 1     # same noise, same decoder
        psnr.append(_psnr(radio, x))
        # one line per image: id, outcome, PSNR (against the sent image), LPIPS, SNR
        line = lines[f"folder/{f.name}"]
        assert f"PSNR {psnr[-1]:.2f} dB" in line and "LPIPS 0." in line and "SNR 0.0 dB (true)" in line
    assert np.mean(psnr) == pytest.approx(res["metrics"]["psnr"], rel=0.01)
    assert len(lines) == 6
    summary = [ln for ln in fg.stdout.splitlines() if ln.startswith("summary")]
    assert len(summary) == 1 and "6 images, 6 restored" in summary[0], fg.stdout[-2000:]
    assert f"mean PSNR {np.mean(psnr):.2f} dB" in summary[0]


def test_loopback_awgn_gnuradio_noise_runs(compiled, setup64):
    d, jd, ep = setup64
    out = d / "grnoise"
    _run(compiled, "loopback_awgn_grnoise_no_gui",
         ["--snr-db", "5", "--method", "deepjscc", "--images", str(d / "imgs"), "--jscc", str(jd),
          "--endpoint", ep, "--out-dir", str(out)])
    summ = json.loads((out / "deepjscc" / "summary.json").read_text())
    assert summ["counts"]["restored"] == 6, summ["counts"]
    side = json.loads((out / "deepjscc" / "folder_img000.json").read_text())
    assert side["snr_db"] == 5.0 and side["snr_source"] == "true" and side["k"] == 256


def test_loopback_fading_runs(compiled, setup64):
    d, jd, ep = setup64
    out = d / "fading"
    _run(compiled, "loopback_fading_no_gui",
         ["--snr-db", "10", "--method", "deepjscc", "--images", str(d / "imgs"), "--jscc", str(jd),
          "--endpoint", ep, "--out-dir", str(out), "--n-pilots", "16"])
    summ = json.loads((out / "deepjscc" / "summary.json").read_text())
    assert summ["counts"]["restored"] == 6, summ["counts"]
    side = json.loads((out / "deepjscc" / "folder_img001.json").read_text())
    assert side["snr_source"] == "estimated" and side["channel"] == "rayleigh"


def test_ofdm_loopback_no_gui_ends_by_itself(compiled, tmp_path):
    """The OFDM loopback with test symbols finishes on its own once its images are through."""
    out = tmp_path / "rx.jsonl"
    t0 = time.monotonic()
    _run(compiled, "ofdm_loopback_no_gui", ["--n-images", "4", "--snr-db", "15", "--out", str(out)],
         timeout=120)
    assert time.monotonic() - t0 < 60
    assert len(out.read_text().splitlines()) == 4
