# SPDX-License-Identifier: GPL-3.0-or-later
"""The first contact of a user, for real: `make install` into /usr/local, then from a folder
outside the checkout with a clean environment (env -i HOME=… PATH=/usr/local/bin:/usr/bin:/bin)
Debian's /usr/bin/python3 imports `sing` and `gnuradio.sing`, and `grcc -r` runs every installed
loopback no_gui example to its end with no traceback (a local worker serves the default method);
then `make uninstall` leaves nothing behind and `from gnuradio import sing` fails.

It writes to /usr/local, so it holds a lock, always uninstalls, and is skipped where /usr/local is
not writable or a gr-sing install is already there (never touches someone else's install)."""
import contextlib
import fcntl
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

# the per-image line of the SING receiver (sing.rx_sink.ImageRecord.line) and the per-frame line of
# the OFDM PDU file sink (ofdm_pdu_file_sink.frame_line), and their summaries
PER_IMAGE = re.compile(r"^\S+( \(seq \d+\))?: (restored|local|received) ", re.M)
SUMMARY = re.compile(r"^summary[ :]", re.M)

pytestmark = [pytest.mark.gnuradio, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[1]
PREFIX = Path("/usr/local")
PYDIR = PREFIX / "lib" / f"python3.{sys.version_info.minor}" / "dist-packages"
EXAMPLES = PREFIX / "share" / "gr-sing" / "examples"
CLEAN = {"PATH": "/usr/local/bin:/usr/bin:/bin"}
# no_gui examples that need something besides this host: a radio (usrp_*) or a second process (zmq_*)
NEEDS_MORE = ("usrp_", "zmq_")
PER_FLOWGRAPH_S = 180          # the loopbacks take 10–20 s here


def _clean_env(home):
    return dict(CLEAN, HOME=str(home))


def _installed_paths():
    return [PYDIR / "gnuradio" / "sing", PYDIR / "gr-sing.pth", PYDIR / "_gr_sing_site.py",
            PREFIX / "share" / "gr-sing", PREFIX / "lib" / "gr-sing"]


def _dirs_under(root: Path):
    return {p for p in root.rglob("*") if p.is_dir()} if root.exists() else set()


@contextlib.contextmanager
def _lock():
    with open("/tmp/gr-sing-usr-local.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def _port_free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    if shutil.which("grcc") is None or shutil.which("cmake") is None:
        pytest.skip("needs grcc and cmake (apt-get install gnuradio gnuradio-dev cmake)")
    if not os.access(PREFIX, os.W_OK):
        pytest.skip("/usr/local is not writable (run as root, as CI does)")
    tmp = tmp_path_factory.mktemp("usr-local")
    build = tmp / "build"
    with _lock():
        if any(p.exists() for p in _installed_paths()):
            pytest.skip("a gr-sing install is already in /usr/local: not touching it")
        dirs_before = _dirs_under(PREFIX)
        try:
            r = subprocess.run(["make", "-o", "setup", "install", f"BUILD={build}",
                                f"VENV={sys.prefix}"], cwd=ROOT, capture_output=True, text=True,
                               timeout=600)
            assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
            t0 = time.monotonic()
            r2 = subprocess.run(["make", "-o", "setup", "install", f"BUILD={build}",
                                 f"VENV={sys.prefix}"], cwd=ROOT, capture_output=True, text=True,
                                timeout=600)
            assert r2.returncode == 0, r2.stdout[-3000:] + r2.stderr[-3000:]   # idempotent
            yield {"tmp": tmp, "build": build, "install_s": time.monotonic() - t0}
        finally:
            r = subprocess.run(["make", "uninstall", f"BUILD={build}"], cwd=ROOT, capture_output=True,
                               text=True, timeout=300)
            left = [str(p) for p in _installed_paths() if p.exists()]
            new_dirs = sorted(str(d) for d in _dirs_under(PREFIX) - dirs_before)
            assert r.returncode == 0 and not left and not new_dirs, (r.stdout, left, new_dirs)


def test_clean_env_imports_and_uninstall(installed, tmp_path):
    """env -i … /usr/bin/python3 from a folder outside the checkout imports both packages; the
    installed copy of the library is used, models resolve by name from the share folder."""
    code = ("import sing, sing.paths; from gnuradio import sing as gs; "
            "print(sing.__file__); print(gs.__file__); "
            "print(sing.paths.resolve_model('natural64-bcr1_48')); import torch; print(torch.__file__)")
    r = subprocess.run(["env", "-i", f"HOME={tmp_path}", "PATH=" + CLEAN["PATH"],
                        "/usr/bin/python3", "-c", code], cwd=tmp_path, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    lib, blocks, model, torch_file = r.stdout.split()
    assert lib.startswith(str(PREFIX / "lib" / "gr-sing")), lib
    assert blocks.startswith(str(PYDIR / "gnuradio" / "sing")), blocks
    assert model == str(PREFIX / "share" / "gr-sing" / "models" / "jscc-natural64-bcr1_48")
    assert not (PYDIR / "sing_blocks").exists() and not (PYDIR / "sing").exists()
    assert not list((PYDIR / "gnuradio" / "sing").glob("qa_*.py"))      # test helpers not installed
    # the venv is left alone: its own (editable) sing wins over the installed copy
    r = subprocess.run([sys.executable, "-c", "import sing; print(sing.__file__)"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120, env=dict(os.environ, PYTHONPATH=""))
    assert r.returncode == 0 and not r.stdout.startswith(str(PREFIX)), r.stdout + r.stderr
    assert installed["install_s"] < 120
    # GRC's block library, built as GRC and grcc build it with no environment, has every SING block
    # of every installed example
    r = subprocess.run(["env", "-i", f"HOME={tmp_path}", "PATH=" + CLEAN["PATH"], "/usr/bin/python3",
                        "-m", "gnuradio.sing.grc_check"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0 and f"of {len(list(EXAMPLES.glob('*.grc')))} flowgraph" in r.stdout, \
        r.stdout[-2000:] + r.stderr[-2000:]
    # a QA file runs against the installed module (not the build tree), as an OOT module's do
    r = subprocess.run(["env", "-i", f"HOME={tmp_path}", "PATH=" + CLEAN["PATH"], "/usr/bin/python3",
                        str(ROOT / "sing_blocks" / "qa_pdu_channel.py")], cwd=tmp_path,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "OK" in r.stderr, r.stdout[-2000:] + r.stderr[-2000:]


def _worker(home):
    """A worker on the examples' default endpoint with the shipped models, by name."""
    if not _port_free(5555):
        pytest.skip("port 5555 (the examples' default worker endpoint) is in use")
    log = open(home / "worker.log", "w")
    p = subprocess.Popen([sys.executable, "-m", "sing.cli", "worker", "--bind", "tcp://127.0.0.1:5555",
                          "--jscc", "jscc-natural64-bcr1_48", "--prior", "prior-natural-64",
                          "--device", "cpu", "--threads", "2"], cwd=home,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=log, stderr=subprocess.STDOUT)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 120 and p.poll() is None:
        if "READY" in (home / "worker.log").read_text():
            return p
        time.sleep(0.2)
    p.kill()
    raise RuntimeError("worker did not start: " + (home / "worker.log").read_text()[-2000:])


def test_grcc_run_installed_no_gui_examples(installed, tmp_path):
    """`grcc -r` (what GRC's Run button does) on every installed no_gui example that needs
    nothing but this host, with a clean environment, from a folder outside the checkout: each
    runs to its end (bounded time) with no traceback, printing a line per image (or frame) and a
    summary."""
    graphs = [g for g in sorted(EXAMPLES.glob("*.grc")) if "generate_options: no_gui" in g.read_text()
              and not g.name.startswith(NEEDS_MORE)]
    assert len(graphs) >= 4, graphs
    home = tmp_path / "home"
    home.mkdir()
    worker = _worker(home)
    report = {}
    try:
        for g in graphs:
            t0 = time.monotonic()
            p = subprocess.Popen(["env", "-i", f"HOME={home}", "PATH=" + CLEAN["PATH"], "grcc", "-r",
                                  str(g)], cwd=tmp_path, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True, start_new_session=True)
            try:
                so, _ = p.communicate(timeout=PER_FLOWGRAPH_S)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, 9)                  # grcc and the flowgraph it started
                so, _ = p.communicate()
                report[g.name] = {"ended": False, "s": PER_FLOWGRAPH_S, "tail": so[-800:]}
                continue
            r = subprocess.CompletedProcess(p.args, p.returncode, so, "")
            out = r.stdout + r.stderr
            report[g.name] = {"ended": True, "rc": r.returncode, "s": round(time.monotonic() - t0, 1),
                              "traceback": "Traceback" in out,
                              "per_image_lines": len(PER_IMAGE.findall(out)),
                              "summary": bool(SUMMARY.search(out)), "tail": out[-1500:]}
    finally:
        worker.kill()
        worker.wait(timeout=10)
    print(json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "tail"} for k, v in report.items()}, indent=1))
    bad = {k: v for k, v in report.items() if not v["ended"] or v.get("rc") or v.get("traceback")
           or not v.get("per_image_lines") or not v.get("summary")}
    assert not bad, json.dumps(bad, indent=1)
    # the image loopbacks wrote their results under ~/sing-radio (the default, from any folder)
    summaries = list((home / "sing-radio").rglob("summary.json"))
    assert summaries, sorted(str(p) for p in home.rglob("*"))[:30]
    for f in summaries:
        c = json.loads(f.read_text())["counts"]
        print(f.relative_to(home), c)
        assert c.get("dropped", 0) == 0 and c.get("restored", 0) + c.get("local", 0) > 0, (f, c)
    assert not list(EXAMPLES.glob("*.py")) and not (EXAMPLES / "out").exists()   # nothing written there


def test_grcc_run_with_a_sing_block_grc_does_not_know(installed, tmp_path):
    """An example using a SING block whose .block.yml is not installed (as with an older install):
    `grcc -r` with a clean environment prints one message naming the block, where GRC looked and
    the fix, and the flowgraph does not run without it (no traceback, no images, bounded time)."""
    src = (EXAMPLES / "loopback_awgn_no_gui.grc").read_text()
    assert src.count("sing_pdu_channel") == 2            # the block and its sing_check snippet
    grc = tmp_path / "newer_example.grc"
    grc.write_text(src.replace("sing_pdu_channel", "sing_pdu_channel_v2"))
    t0 = time.monotonic()
    r = subprocess.run(["env", "-i", f"HOME={tmp_path}", "PATH=" + CLEAN["PATH"], "grcc", "-r",
                        str(grc)], cwd=tmp_path, capture_output=True, text=True, timeout=180)
    out = r.stdout + r.stderr
    assert "Traceback" not in out and not PER_IMAGE.search(out), out[-3000:]
    assert ("GRC has no definition of sing_pdu_channel_v2 (looked in " in out
            and str(PREFIX / "share" / "gnuradio" / "grc" / "blocks") in out
            and "make install" in out and "GRC_BLOCKS_PATH" in out), out[-3000:]
    assert time.monotonic() - t0 < 120
