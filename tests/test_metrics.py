# SPDX-License-Identifier: GPL-3.0-or-later
"""Metrics (docs/ALGORITHMS.md §7): PSNR, SSIM vs scikit-image, LPIPS v0.1 with the real ImageNet
weights against the reference pairs in shared/data/lpips_reference/."""
from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sing.errors import CheckpointError, InputError
from sing.metrics import LPIPS, compute_metrics, load_lpips, psnr, ssim
from sing.metrics import cli as lpips_cli
from sing.metrics.lpips_weights import restricted_load_numpy_pickle, weights_path

REPO = Path(__file__).resolve().parents[1]
REF = next((p for p in (REPO / "shared/data/lpips_reference", REPO.parent / "shared/data/lpips_reference",
                        Path("/work/shared/data/lpips_reference")) if (p / "expected.json").exists()), None)
# VGG values of the official PyTorch model, as quoted by the TF port (moono/lpips-tf2.x, example).
VGG_EXPECTED = {"ex_p0.png": 0.569, "ex_p1.png": 0.422}


def _need_weights(net: str = "alex") -> None:
    if not weights_path(net).exists():
        pytest.fail(f"LPIPS-{net} weights missing at {weights_path(net)}: run `make setup` or "
                    f"`python -m sing.metrics.lpips_weights install`")


@pytest.fixture(scope="module")
def alex() -> LPIPS:
    _need_weights("alex")
    return load_lpips("alex")


@pytest.fixture(scope="module")
def expected() -> dict:
    if REF is None:
        pytest.fail("shared/data/lpips_reference/expected.json not found")
    return json.loads((REF / "expected.json").read_text())


def _rand(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g)


# ---------------------------------------------------------------- PSNR / SSIM

def test_psnr_identity_and_known_value():
    x = _rand((2, 3, 16, 16))
    assert torch.isinf(psnr(x, x)).all()
    a = torch.zeros(2, 3, 8, 8)
    b = torch.cat([torch.full((1, 3, 8, 8), 0.1), torch.full((1, 3, 8, 8), 0.01)])
    torch.testing.assert_close(psnr(a, b), torch.tensor([20.0, 40.0]), rtol=0, atol=1e-4)


@pytest.mark.parametrize("channels", [1, 3])
def test_ssim_matches_skimage(channels):
    from skimage.metrics import structural_similarity
    a = _rand((3, channels, 32, 40), 1)
    noise = 0.2 * (_rand((3, channels, 32, 40), 2) - 0.5)
    b = (a * torch.linspace(0.2, 1, 3).view(3, 1, 1, 1) + noise).clamp(0, 1)
    ours = ssim(a, b)
    ref = [structural_similarity(a[i].permute(1, 2, 0).double().numpy(), b[i].permute(1, 2, 0).double().numpy(),
                                 gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                 data_range=1.0, channel_axis=2) for i in range(3)]
    assert ours.shape == (3,)
    np.testing.assert_allclose(ours.numpy(), ref, atol=2e-5)
    torch.testing.assert_close(ssim(a, a), torch.ones(3))


def test_psnr_ssim_bad_input():
    with pytest.raises(InputError, match="differ in shape"):
        psnr(torch.zeros(1, 3, 16, 16), torch.zeros(1, 3, 16, 15))
    with pytest.raises(InputError, match=r"\(B, C, H, W\)"):
        ssim(torch.zeros(3, 16, 16), torch.zeros(3, 16, 16))
    with pytest.raises(InputError, match="uint8"):
        psnr(torch.zeros(1, 3, 4, 4, dtype=torch.uint8), torch.zeros(1, 3, 4, 4, dtype=torch.uint8))
    with pytest.raises(InputError, match="at least 11"):
        ssim(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8))


# ---------------------------------------------------------------- LPIPS

def test_lpips_reference_pairs_cli(expected, capsys):
    _need_weights("alex")
    for pair in expected["pairs"]:
        args = argparse.Namespace(a=str(REF / pair["a"]), b=str(REF / pair["b"]), net="alex",
                                  cache_dir=None, device="cpu")
        assert lpips_cli.run(args) == 0
        got = float(capsys.readouterr().out.strip())
        assert abs(got - pair["lpips"]) <= pair["tol"], (pair, got)


def test_lpips_reference_pairs_via_sing_cli(expected, capsys):
    _need_weights("alex")
    from sing.cli import main
    pair = expected["pairs"][0]
    assert main(["lpips", str(REF / pair["a"]), str(REF / pair["b"]), "--net", "alex"]) == 0
    assert abs(float(capsys.readouterr().out.strip()) - pair["lpips"]) <= pair["tol"]


def test_lpips_reference_pairs_module_batched(alex, expected):
    ref = torch.cat([lpips_cli.read_rgb(str(REF / p["a"])) for p in expected["pairs"]])
    oth = torch.cat([lpips_cli.read_rgb(str(REF / p["b"])) for p in expected["pairs"]])
    with torch.no_grad():
        d = alex(ref, oth)
        single = torch.cat([alex(ref[i:i + 1], oth[i:i + 1]) for i in range(len(ref))])
    want = torch.tensor([p["lpips"] for p in expected["pairs"]])
    assert d.shape == (len(want),)
    assert (d - want).abs().max() <= 0.001, d
    torch.testing.assert_close(d, single, rtol=1e-5, atol=1e-6)  # batched == per image
    torch.testing.assert_close(alex(oth, ref), d, rtol=1e-5, atol=1e-6)  # symmetric


def test_lpips_vgg_reference_pairs(expected):
    _need_weights("vgg")
    model = load_lpips("vgg")
    ref = lpips_cli.read_rgb(str(REF / "ex_ref.png"))
    for name, want in VGG_EXPECTED.items():
        with torch.no_grad():
            got = float(model(ref, lpips_cli.read_rgb(str(REF / name)))[0])
        assert abs(got - want) <= 0.001, (name, got)


def test_lpips_identity_grey_and_gradients(alex):
    x = _rand((2, 3, 40, 48), 3)
    with torch.no_grad():
        assert alex(x, x).abs().max() < 1e-6
    g = _rand((2, 1, 40, 48), 4)
    h = _rand((2, 1, 40, 48), 5)
    with torch.no_grad():
        torch.testing.assert_close(alex(g, h), alex(g.expand(-1, 3, -1, -1), h.expand(-1, 3, -1, -1)))
    y = x.clone().requires_grad_(True)  # usable as a loss: gradients reach the input
    alex(y, x.flip(0)).sum().backward()
    assert y.grad is not None and y.grad.abs().sum() > 0
    assert all(not p.requires_grad for p in alex.parameters())


def test_lpips_bad_input(alex):
    with pytest.raises(InputError, match="at least 31"):
        alex(torch.zeros(1, 3, 28, 28), torch.zeros(1, 3, 28, 28))
    with pytest.raises(InputError, match="1- or 3-channel"):
        alex(torch.zeros(1, 2, 64, 64), torch.zeros(1, 2, 64, 64))


def test_lpips_missing_weights_hint(tmp_path, capsys):
    with pytest.raises(CheckpointError, match=r"make setup.*python -m sing\.metrics\.lpips_weights install"):
        LPIPS("alex", cache_dir=tmp_path / "nothing")
    from sing.cli import main
    a = REF / "ex_ref.png"
    assert main(["lpips", str(a), str(a), "--cache-dir", str(tmp_path / "nothing")]) == 2
    assert "lpips_weights install" in capsys.readouterr().err


def test_cli_size_mismatch(tmp_path, alex):
    from PIL import Image
    Image.new("RGB", (64, 64)).save(tmp_path / "a.png")
    Image.new("RGB", (64, 48)).save(tmp_path / "b.png")
    with pytest.raises(InputError, match="differ in size"):
        lpips_cli.lpips_distance(str(tmp_path / "a.png"), str(tmp_path / "b.png"))
    with pytest.raises(InputError, match="does not exist"):
        lpips_cli.lpips_distance(str(tmp_path / "a.png"), str(tmp_path / "nope.png"))


def test_compute_metrics(alex):
    a, b = _rand((3, 3, 32, 32), 6), _rand((3, 3, 32, 32), 7)
    m = compute_metrics(a, b, lpips_model=alex)
    assert set(m) == {"psnr", "ssim", "lpips"}
    assert all(v.shape == (3,) and torch.isfinite(v).all() for v in m.values())
    torch.testing.assert_close(m["psnr"], psnr(a, b))


def test_restricted_unpickler_refuses_code():
    np_ok = pickle.dumps({"w": np.arange(3, dtype=np.float32)}, protocol=4)
    np.testing.assert_array_equal(restricted_load_numpy_pickle(np_ok)["w"], [0, 1, 2])
    with pytest.raises(CheckpointError, match="refusing to unpickle"):
        restricted_load_numpy_pickle(pickle.dumps(os.getcwd))


def test_install_is_fast_noop_without_torch():
    _need_weights("alex")
    _need_weights("vgg")
    code = ("import sys; from sing.metrics.lpips_weights import main; "
            "rc = main(['install', '--quiet']); print(rc, 'torch' in sys.modules, 'numpy' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert r.stdout.split() == ["0", "False", "False"], r.stdout + r.stderr
