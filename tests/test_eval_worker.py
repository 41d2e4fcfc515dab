# SPDX-License-Identifier: GPL-3.0-or-later
"""`sing eval --worker`: the restoration runs in real worker processes behind a real broker and gives
the same numbers as in-process evaluation; a dead endpoint is a clear error, not a hang."""
import json
import time

import numpy as np
import pytest

from sing.cli import main
from sing.worker.client import WorkerClient
from test_worker_helpers import ep, procs, worker_args  # noqa: F401


@pytest.fixture
def small_folder(tmp_path):
    """Six images, read as `folder@32:` at the tiny model's 32×32 (LPIPS needs ≥ 31 px)."""
    from PIL import Image
    d = tmp_path / "imgs"
    d.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(d / f"{i}.png")
    return d


def _eval(jscc_dir, folder, out, *extra):
    return main(["eval", "--method", "deepjscc", "--data", f"folder@32:{folder}", "--split", "all",
                 "--bcr", "1/12", "--jscc", str(jscc_dir), "--n-images", "6", "--batch", "4",
                 "--snr-db", "2", "--channel", "rayleigh", "--out", str(out), "--no-progress", *extra])


def test_eval_through_broker_matches_in_process(procs, tiny_jscc_dir, small_folder, tmp_path):
    front, back = ep(), ep()
    procs.start("broker", "--frontend", front, "--backend", back, "--heartbeat-s", "0.2")
    for name in ("wA", "wB"):
        procs.start(*worker_args(tiny_jscc_dir, "--connect", back, "--heartbeat-s", "0.2",
                                 "--name", name, "--max-batch", "2"))
    with WorkerClient(front, timeout_s=10) as c:      # both workers registered before we start
        t_end = time.monotonic() + 30
        while len(c.ping(timeout_s=2)["workers"]) < 2:
            assert time.monotonic() < t_end, "the broker never saw two workers"
            time.sleep(0.1)
    assert _eval(tiny_jscc_dir, small_folder, tmp_path / "local.json") == 0
    assert _eval(tiny_jscc_dir, small_folder, tmp_path / "remote.json", "--worker", front) == 0
    loc = json.loads((tmp_path / "local.json").read_text())
    rem = json.loads((tmp_path / "remote.json").read_text())
    assert rem["setup"]["restored_by"] == front and "restored_by" not in loc["setup"]
    assert [r["id"] for r in rem["per_image"]] == [r["id"] for r in loc["per_image"]]
    for a, b in zip(loc["per_image"], rem["per_image"]):       # float16 transport only
        assert abs(a["psnr"] - b["psnr"]) < 0.05 and abs(a["lpips"] - b["lpips"]) < 5e-3


def test_eval_worker_down_is_a_clear_error(tiny_jscc_dir, small_folder, tmp_path, capsys):
    t0 = time.monotonic()
    rc = _eval(tiny_jscc_dir, small_folder, tmp_path / "x.json", "--worker", ep(),
               "--worker-timeout-s", "1")
    assert rc == 2 and time.monotonic() - t0 < 30
    assert "no worker or broker answers" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()
