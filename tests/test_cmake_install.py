"""`cmake -B build && cmake --build build && cmake --install build` into a fresh prefix: then
`from gnuradio import sing` and the GRC YAML are found."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.gnuradio
ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not installed")
def test_install_into_fresh_prefix(tmp_path):
    if not Path("/usr/lib/x86_64-linux-gnu/cmake/gnuradio/GnuradioConfig.cmake").exists() and \
            not list(Path("/usr").glob("lib*/**/cmake/gnuradio/GnuradioConfig.cmake")):
        pytest.skip("gnuradio-dev not installed")
    prefix, build = tmp_path / "prefix", tmp_path / "build"
    pydir = prefix / "lib" / "python3" / "dist-packages"
    run = lambda *a: subprocess.run(a, capture_output=True, text=True, timeout=300)  # noqa: E731
    r = run("cmake", "-S", str(ROOT), "-B", str(build), f"-DCMAKE_INSTALL_PREFIX={prefix}",
            f"-DGR_PYTHON_DIR={pydir}")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    r = run("cmake", "--build", str(build))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    r = run("cmake", "--install", str(build))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    yml = {p.name for p in (prefix / "share" / "gnuradio" / "grc" / "blocks").glob("*.block.yml")}
    assert {"sing_jscc_image_source.block.yml", "sing_receiver.block.yml",
            "sing_pdu_channel.block.yml", "sing_image_display.block.yml"} <= yml
    src_yml = {p.name for p in (ROOT / "sing_blocks" / "grc").glob("*.block.yml")}
    assert src_yml <= yml                           # every block definition, OFDM ones included
    # import from a directory outside the repo, with only the fresh prefix added
    env = dict(os.environ, PYTHONPATH=str(pydir))
    r = subprocess.run([sys.executable, "-c", "from gnuradio import sing; print(sing.__file__); "
                        "print(sing.jscc_image_source, sing.sing_receiver, sing.pdu_channel)"],
                       env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    assert str(pydir) in r.stdout
    # the build tree copy that ctest uses
    assert (build / "test_modules" / "gnuradio" / "sing" / "__init__.py").exists()
    r = run("ctest", "--test-dir", str(build), "-N")
    assert "test_blocks_channel" in r.stdout, r.stdout
