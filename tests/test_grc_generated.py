# SPDX-License-Identifier: GPL-3.0-or-later
"""grcc's generated code holds every SING block its .grc uses. GRC does not refuse a flowgraph
whose block definition (.block.yml) it cannot find: it loads a disabled "Missing Block", exits 0
and generates code without it (docs/GNURADIO.md), so "grcc said nothing bad" proves nothing. Here
each SING block of each flowgraph must appear in the generated Python as the call its yml makes;
a flowgraph compiled with one yml withheld must be caught by the same check."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.gnuradio
ROOT = Path(__file__).resolve().parents[1]
GRAPHS = sorted((ROOT / "flowgraphs").glob("*.grc"))
YML_DIR = ROOT / "sing_blocks" / "grc"
INSTALLED_YML = Path("/usr/local/share/gnuradio/grc/blocks")


def make_calls() -> dict[str, str]:
    """block id → the constructor its yml's make template calls (e.g. 'sing.pdu_channel')."""
    out = {}
    for f in YML_DIR.glob("*.block.yml"):
        d = yaml.safe_load(f.read_text())
        out[d["id"]] = re.search(r"\b(sing\.\w+)\s*\(", d["templates"]["make"]).group(1)
    return out


def sing_blocks_of(grc: Path) -> set[str]:
    return {b["id"] for b in yaml.safe_load(grc.read_text())["blocks"]
            if b["id"].startswith("sing_") and b.get("states", {}).get("state", "enabled") == "enabled"}


def missing_in_generated(grc: Path, py: Path) -> list[str]:
    """SING block ids the .grc uses whose constructor call is not in the generated code."""
    calls = make_calls()
    code = py.read_text()
    return sorted(b for b in sing_blocks_of(grc) if f"{calls.get(b, b)}(" not in code)


def _env_for(blocks_path: Path) -> dict:
    shim = ROOT / ".cache" / "gr-shim" / "gnuradio"
    return dict(os.environ, GRC_BLOCKS_PATH=str(blocks_path),
                PYTHONPATH=os.pathsep.join([str(shim.parent), str(ROOT), str(ROOT / "tests")]))


def _grcc(grc: Path, out: Path, blocks_path: Path):
    shim = ROOT / ".cache" / "gr-shim" / "gnuradio"
    shim.mkdir(parents=True, exist_ok=True)
    if not (shim / "sing").exists():
        (shim / "sing").symlink_to(ROOT / "sing_blocks", target_is_directory=True)
    env = dict(os.environ, GRC_BLOCKS_PATH=str(blocks_path), PYTHONPATH=str(shim.parent))
    r = subprocess.run(["grcc", "-o", str(out), str(grc)], env=env, capture_output=True, text=True,
                       timeout=120)
    return r, out / (grc.stem + ".py")


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    if shutil.which("grcc") is None:
        pytest.skip("grcc not installed (apt-get install gnuradio)")
    return tmp_path_factory.mktemp("gen")


@pytest.mark.parametrize("grc", GRAPHS, ids=[g.name for g in GRAPHS])
def test_generated_code_has_every_sing_block(grc, out):
    r, py = _grcc(grc, out, YML_DIR)
    assert r.returncode == 0 and py.exists(), r.stdout + r.stderr
    used = sing_blocks_of(grc)
    assert used, f"{grc.name} uses no SING block"
    missing = missing_in_generated(grc, py)
    assert not missing, (f"{grc.name}: grcc left out {missing}: their .block.yml was not found; "
                         f"run `make install` (or add sing_blocks/grc to GRC_BLOCKS_PATH)")


def test_check_catches_a_withheld_yml(out, tmp_path):
    if list(INSTALLED_YML.glob("sing_*.block.yml")):
        pytest.skip("gr-sing's yml is installed in /usr/local: GRC would find it there")
    part = tmp_path / "yml"
    shutil.copytree(YML_DIR, part)
    (part / "sing_pdu_channel.block.yml").unlink()
    grc = ROOT / "flowgraphs" / "loopback_awgn_no_gui.grc"
    r, py = _grcc(grc, tmp_path, part)
    assert r.returncode == 0 and py.exists()              # GRC itself does not refuse it
    assert missing_in_generated(grc, py) == ["sing_pdu_channel"]
    # what a user runs to find out (docs/gnuradio.md): names the block, where GRC looked, the fix
    env = dict(_env_for(part), HOME=str(tmp_path))
    r = subprocess.run([sys.executable, "-c", "import sys; from gr_shim import gr_sing; gr_sing(); "
                        "from gnuradio.sing import grc_check; sys.exit(grc_check.main(sys.argv[1:]))",
                        str(grc)], env=env, cwd=ROOT / "tests", capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "sing_pdu_channel" in r.stderr and str(part) in r.stderr and "make install" in r.stderr
    # and what Run does with it: the flowgraph's sing_check snippet stops it before it starts, with
    # the same message and exit status 1 (not a run without the channel)
    r = subprocess.run([sys.executable, "-c", "import sys, runpy; from gr_shim import gr_sing; gr_sing(); "
                        "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')",
                        str(py)], env=env, cwd=ROOT / "tests", capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stderr and "PSNR" not in r.stdout, r.stdout + r.stderr
    assert "GRC has no definition of sing_pdu_channel" in r.stderr and str(part) in r.stderr
    assert "make install" in r.stderr and "GRC_BLOCKS_PATH" in r.stderr


def snippet_blocks(grc: Path) -> list[str] | None:
    """The SING block ids the .grc's sing_check snippet requires (None: no such snippet)."""
    for b in yaml.safe_load(grc.read_text())["blocks"]:
        if b["id"] == "snippet" and b["name"] == "sing_check":
            assert b["parameters"]["section"] == "main_after_init"
            code = b["parameters"]["code"]
            assert "require_blocks(self, sing_blocks)" in code and "make install" in code
            return re.search(r"sing_blocks = '([^']*)'", code).group(1).split()
    return None


@pytest.mark.parametrize("grc", GRAPHS, ids=[g.name for g in GRAPHS])
def test_sing_check_snippet_lists_the_blocks_of_its_grc(grc):
    """Every shipped example checks at start that it holds each SING block it uses; the list in
    its snippet is exactly the .grc's enabled SING blocks (a stale list would miss a block)."""
    assert snippet_blocks(grc) == sorted(sing_blocks_of(grc)), grc.name


def test_grcc_run_without_gr_sing_says_what_to_do(tmp_path):
    """No SING yml where GRC looks and no gnuradio.sing for Debian's python3 (never installed):
    `grcc -r`, which runs a flowgraph as GRC's Run button does, prints the fix, no traceback."""
    if shutil.which("grcc") is None or not Path("/usr/bin/python3").exists():
        pytest.skip("grcc not installed (apt-get install gnuradio)")
    if list(INSTALLED_YML.glob("sing_*.block.yml")) or list(
            Path("/usr/local/lib").glob("python3*/dist-packages/gr-sing.pth")):
        pytest.skip("gr-sing is installed in /usr/local")
    (tmp_path / "yml").mkdir()
    grc = ROOT / "flowgraphs" / "loopback_awgn_no_gui.grc"
    r = subprocess.run(["env", "-i", f"HOME={tmp_path}", "PATH=/usr/bin:/bin",
                        f"GRC_BLOCKS_PATH={tmp_path / 'yml'}", "grcc", "-r", "-o", str(tmp_path),
                        str(grc)], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    out = r.stdout + r.stderr
    assert "Traceback" not in out, out[-3000:]
    assert ("uses the SING blocks sing_jscc_image_source sing_pdu_channel sing_receiver, but "
            "gnuradio.sing does not import" in out and "make install" in out), out[-3000:]

