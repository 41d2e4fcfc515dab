# SPDX-License-Identifier: GPL-3.0-or-later
"""End to end over the OFDM PHY with real images, a real worker process and tiny models:
JSCC Image Source → OFDM JSCC TX → channel_model (CFO, timing offset, 3-tap multipath, seeded
noise) → OFDM JSCC RX → SING Receiver → PNGs + summary.json, (a) in one flowgraph
(ofdm_loopback_images_no_gui) and (b) as two processes joined by ZeroMQ (zmq_tx + zmq_rx)."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.gnuradio
pytest.importorskip("gnuradio.gr")
ROOT = Path(__file__).resolve().parents[1]
SHIM = ROOT / ".cache" / "gr-shim"
PY = sys.executable
N_IMAGES = 5

from test_worker_helpers import Procs, free_port  # noqa: E402


def _env():
    d = SHIM / "gnuradio"
    d.mkdir(parents=True, exist_ok=True)
    if not (d / "sing").exists():
        (d / "sing").symlink_to(ROOT / "sing_blocks", target_is_directory=True)
    return dict(os.environ, PYTHONPATH=f"{SHIM}:{ROOT}:" + os.environ.get("PYTHONPATH", ""),
                GRC_BLOCKS_PATH=str(ROOT / "sing_blocks" / "grc"), PYTHONUNBUFFERED="1")


def _stop(p, sig=signal.SIGINT, timeout=30):
    if p.poll() is None:
        p.send_signal(sig)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Tiny 32×32 RGB DeepJSCC at BCR 1/12, N_IMAGES 40×36 images (sent at that size, k = 360), a
    worker, compiled graphs."""
    if shutil.which("grcc") is None:
        pytest.skip("grcc not installed")
    d = tmp_path_factory.mktemp("ota")
    import torch
    from sing.checkpoint import model_id, save_model
    from sing.jscc import JSCCConfig, build_jscc
    torch.manual_seed(0)
    m = build_jscc(JSCCConfig.tiny(image_size=32, channels=3, bcr="1/12"))
    jd = d / "jscc-tiny32"
    save_model(jd, m.state_dict(), m.config.to_dict())
    from PIL import Image
    rng = np.random.default_rng(0)
    (d / "imgs").mkdir()
    for i in range(N_IMAGES):
        Image.fromarray(rng.integers(0, 256, (40, 36, 3), dtype=np.uint8)).save(d / "imgs" / f"img{i:03d}.png")
    for name in ("ofdm_loopback_images_no_gui", "zmq_tx", "zmq_rx"):
        r = subprocess.run(["grcc", "-o", str(d), str(ROOT / "flowgraphs" / f"{name}.grc")], env=_env(),
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr[-2000:]
    endpoint, procs = f"tcp://127.0.0.1:{free_port()}", Procs()
    try:
        procs.start("worker", "--bind", endpoint, "--jscc", str(jd), "--device", "cpu", "--threads", "1")
        yield d, jd, model_id(jd), endpoint
    finally:
        procs.close()


def _check_summary(out: Path, ids: list[str]):
    summ = json.loads((out / "summary.json").read_text())
    assert summ["counts"]["restored"] == N_IMAGES and summ["counts"]["dropped"] == 0, summ["counts"]
    assert sorted(r["image_id"] for r in summ["images"]) == sorted(ids)
    assert all(r["status"] == "restored" for r in summ["images"])
    from PIL import Image
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) == N_IMAGES
    assert all(np.asarray(Image.open(p)).shape == (40, 36, 3) for p in pngs)   # size policy native
    return summ


def test_images_through_ofdm_loopback(setup):
    """One flowgraph, runs to completion; the RX knows the image folder, so ids come back as the
    source named them ("folder/<file>") and the model id as the worker knows it."""
    d, jd, mid, ep = setup
    out = d / "loop"
    r = subprocess.run([PY, str(d / "ofdm_loopback_images_no_gui.py"), "--images", str(d / "imgs"),
                        "--jscc", str(jd), "--endpoint", ep, "--out-dir", str(out), "--method", "deepjscc",
                        "--snr-db", "15", "--cfo", "0.002", "--noise-seed", "42", "--interval", "0.02",
                        "--rx-image-dir", str(d / "imgs")],
                       env=_env(), capture_output=True, text=True, timeout=150, cwd=d)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    summ = _check_summary(out, [f"folder/img{i:03d}.png" for i in range(N_IMAGES)])
    side = json.loads((out / "folder_img000.json").read_text())
    assert side["model_id"] == mid and side["worker"]["model"] == mid and side["snr_source"] == "estimated"
    assert abs(side["cfo_hz"] - 2000) < 100
    assert "frames': %d" % N_IMAGES in r.stdout + r.stderr          # RX counters line at stop
    assert summ["counts"]["received"] == N_IMAGES


def test_images_through_zmq_two_processes(setup):
    """zmq_tx and zmq_rx as two processes; the RX has only the model dir: image ids come back as
    ota/<seq>-<crc32 of the source id>, the model id as the real one, snr_db estimated."""
    d, jd, mid, ep = setup
    out, log = d / "zmq", d / "zmq_rx.jsonl"
    addr = f"tcp://127.0.0.1:{free_port()}"
    rx = subprocess.Popen([PY, str(d / "zmq_rx.py"), "--address", addr, "--jscc", str(jd), "--endpoint", ep,
                           "--out-dir", str(out), "--method", "deepjscc", "--pdu-log", str(log)],
                          env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=d)
    tx = subprocess.Popen([PY, str(d / "zmq_tx.py"), "--address", addr, "--images", str(d / "imgs"),
                           "--jscc", str(jd), "--interval", "0.05"],
                          env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=d)
    try:
        t0 = time.time()
        while time.time() - t0 < 120:
            if out.is_dir() and len(list(out.glob("*.png"))) >= N_IMAGES:
                break
            for p in (tx, rx):
                if p.poll() not in (None, 0):
                    raise AssertionError(f"flowgraph failed:\n{p.stdout.read()[-3000:]}")
            time.sleep(0.3)
    finally:
        _stop(tx)
        _stop(rx)                         # SIGINT: tb.stop(); the SING receiver writes summary.json
        rx_out = rx.stdout.read()
        tx.stdout.close()
        rx.stdout.close()
    crcs = {f"{zlib.crc32(f'folder/img{i:03d}.png'.encode()):08x}": i for i in range(N_IMAGES)}
    recs = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    assert len(recs) == N_IMAGES, rx_out[-3000:]
    for r in recs:
        seq, crc = r["image_id"][len("ota/"):].split("-")
        assert r["image_id"].startswith("ota/") and crc == r["image_id_crc32"]
        assert crcs[crc] == int(seq) == r["seq"]               # the source numbers files in order
        assert r["model_id"] == mid and r["bcr"] == "1/12" and r["k"] == 40 * 36 * 3 // 12
        assert (r["height"], r["width"], r["channels"]) == (40, 36, 3)      # from the frame header
        assert r["snr_source"] == "estimated" and 16 < r["snr_db"] < 23, r["snr_db"]
    _check_summary(out, [r["image_id"] for r in recs])
