# SPDX-License-Identifier: GPL-3.0-or-later
"""`cmake -B build && cmake --build build && cmake --install build` into a fresh prefix: the blocks,
their GRC YAML, the examples, the models, the sample images, the library copy and its import hook
land where docs/gnuradio.md says, nothing else does (no QA files, no top-level sing_blocks); one
QA file per block is registered with ctest; uninstall removes every file and every folder it made."""
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


def _have_gr_dev():
    return Path("/usr/lib/x86_64-linux-gnu/cmake/gnuradio/GnuradioConfig.cmake").exists() or \
        bool(list(Path("/usr").glob("lib*/**/cmake/gnuradio/GnuradioConfig.cmake")))


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not installed")
def test_install_into_fresh_prefix_and_uninstall(tmp_path):
    if not _have_gr_dev():
        pytest.skip("gnuradio-dev not installed")
    prefix, build = tmp_path / "prefix", tmp_path / "build"
    pydir = prefix / "lib" / "python3" / "dist-packages"
    run = lambda *a: subprocess.run(a, capture_output=True, text=True, timeout=300)  # noqa: E731
    r = run("cmake", "-S", str(ROOT), "-B", str(build), f"-DCMAKE_INSTALL_PREFIX={prefix}",
            f"-DGR_PYTHON_DIR={pydir}", f"-DSING_VENV={sys.prefix}", f"-DSING_TEST_PYTHON={sys.executable}")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    import sing
    assert f"gr-sing {sing.__version__}:" in r.stdout                   # one version, sing/__init__.py
    r = run("cmake", "--build", str(build))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    r = run("cmake", "--install", str(build))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    r = run("cmake", "--install", str(build))                          # idempotent
    assert r.returncode == 0 and "Up-to-date" in r.stdout

    yml = {p.name for p in (prefix / "share" / "gnuradio" / "grc" / "blocks").glob("*.block.yml")}
    assert {p.name for p in (ROOT / "sing_blocks" / "grc").glob("*.block.yml")} <= yml
    gs = pydir / "gnuradio" / "sing"
    assert not list(gs.glob("qa_*.py")), "QA files and their helpers must not be installed"
    assert len(list((gs / "sample_images").glob("*.png"))) >= 4
    assert sorted(p.name for p in (prefix / "share" / "gr-sing" / "examples").glob("*.grc")) == \
        sorted(p.name for p in (ROOT / "flowgraphs").glob("*.grc"))
    models = prefix / "share" / "gr-sing" / "models"
    assert (models / "jscc-natural64-bcr1_48" / "model.safetensors").exists()
    assert (models / "prior-natural-64" / "config.json").exists()
    lib = prefix / "lib" / "gr-sing" / "python" / "sing"
    assert (lib / "__init__.py").exists() and (lib / "natural_manifest.json").exists()
    assert (lib / "_install_prefix.txt").read_text().strip() == str(prefix)
    assert (pydir / "gr-sing.pth").read_text().strip() == "import _gr_sing_site"
    assert {p.name for p in pydir.iterdir()} == {"gnuradio", "gr-sing.pth", "_gr_sing_site.py"}

    # Debian's python3 with only this prefix's site folder, from a folder outside the repo: the hook
    # loads the installed copy of the library, the blocks import, a model resolves by name there
    code = (f"import site; site.addsitedir({str(pydir)!r}); import sing, sing.paths; "
            "from gnuradio import sing as gs; print(sing.__file__); print(gs.__file__); "
            "print(sing.paths.resolve_model('natural64-bcr1_48')); print(gs.jscc_image_source)")
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    r = subprocess.run(["/usr/bin/python3", "-c", code], env=env, cwd=tmp_path, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout.split("\n")
    assert out[0].startswith(str(lib)) and out[1].startswith(str(gs)), r.stdout
    assert out[2] in (str(models / "jscc-natural64-bcr1_48"),
                      "/usr/local/share/gr-sing/models/jscc-natural64-bcr1_48")
    # a venv is left alone: with the same site folder its own sing (editable / PYTHONPATH) wins
    r = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=str(ROOT)),
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.split("\n")[0].startswith(str(ROOT / "sing")), r.stdout + r.stderr

    # ctest: one QA file per block (every block yml has sing_blocks/qa_<make call>.py)
    r = run("ctest", "--test-dir", str(build), "-N")
    listed = set(re.findall(r"Test\s+#\d+: (\S+)", r.stdout))
    for f in (ROOT / "sing_blocks" / "grc").glob("*.block.yml"):
        make = yaml.safe_load(f.read_text())["templates"]["make"]
        name = re.search(r"\bsing\.(\w+)\s*\(", make).group(1)
        assert f"qa_{name}" in listed, (f.name, sorted(listed))

    # uninstall: every file, the byte code Python wrote, and the folders it made
    r = run("cmake", "--build", str(build), "--target", "uninstall")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    left = sorted(str(p.relative_to(prefix)) for p in prefix.rglob("*"))
    # only the standard folders the prefix had to have (uninstall never removes those) remain
    assert left == ["lib", "lib/python3", "lib/python3/dist-packages", "share"], left[:20]
    r = subprocess.run(["/usr/bin/python3", "-c", f"import site; site.addsitedir({str(pydir)!r}); "
                        "from gnuradio import sing"], env=env, cwd=tmp_path, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode != 0 and "cannot import name 'sing'" in r.stderr, r.stderr[-2000:]
    r = run("cmake", "--build", str(build), "--target", "uninstall")    # again: nothing to do
    assert r.returncode == 0 and "nothing to uninstall" in r.stdout
