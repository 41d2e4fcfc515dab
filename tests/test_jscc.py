# SPDX-License-Identifier: GPL-3.0-or-later
"""DeepJSCC: shapes for any BCR, unit power, SNR adaptivity, checkpoints, bad input, training resume."""
import json
import subprocess
import sys

import pytest
import torch

from sing.checkpoint import save_model
from sing.errors import CheckpointError, InputError
from sing.jscc import JSCCConfig, build_jscc, load_jscc
from sing.jscc.model import MAX_SIDE, MIN_SIDE, k_for_shape, padded_shape


@pytest.mark.parametrize("size,ch,bcr,k", [(64, 3, "1/48", 256), (64, 3, "1/12", 1024),
                                           (32, 1, "1/12", 85), (32, 1, "1/48", 21)])
def test_any_bcr_gives_k_unit_power_symbols(size, ch, bcr, k):
    cfg = JSCCConfig(image_size=size, channels=ch, bcr=bcr, features=8, blocks=1)
    m = build_jscc(cfg).eval()
    assert cfg.k == k
    x = torch.rand(3, ch, size, size)
    with torch.no_grad():
        z = m.encode(x, torch.tensor([-5.0, 0.0, 15.0]))
        assert z.shape == (3, k) and z.dtype == torch.complex64
        assert torch.allclose((z.abs() ** 2).mean(-1), torch.ones(3), atol=1e-5)
        xh = m.decode(z, 0.0)
    assert xh.shape == x.shape and float(xh.min()) >= 0 and float(xh.max()) <= 1


def test_save_load_roundtrip_and_model_id(tmp_path):
    cfg = JSCCConfig.tiny()
    m = build_jscc(cfg).eval()
    save_model(tmp_path / "m", m.state_dict(), cfg.to_dict())
    m2 = load_jscc(tmp_path / "m")
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(m.encode(x, 3.0), m2.encode(x, 3.0))
    assert m2.model_id.startswith("m@") and m2.model_id == load_jscc(tmp_path / "m").model_id


def test_bad_inputs_are_clear(tmp_path):
    m = build_jscc(JSCCConfig.tiny())
    with pytest.raises(InputError, match=r"takes RGB images \(B, 3, H, W\)"):
        m.encode(torch.rand(1, 1, 20, 20), 0.0)
    with pytest.raises(InputError, match=r"outside the supported range"):
        m.encode(torch.rand(1, 3, 4, 20), 0.0)
    with pytest.raises(InputError, match="NaN"):
        m.encode(torch.full((1, 3, 16, 16), float("nan")), 0.0)
    with pytest.raises(InputError, match="expects k="):
        m.decode(torch.ones(1, 7, dtype=torch.complex64), 0.0)
    with pytest.raises(InputError, match="NaN"):
        m.decode(torch.full((1, m.k), float("nan"), dtype=torch.complex64), 0.0)
    with pytest.raises(InputError, match="multiple of 4"):
        JSCCConfig(image_size=30)


def test_checkpoint_errors(tmp_path):
    cfg = JSCCConfig.tiny()
    m = build_jscc(cfg)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_jscc(tmp_path / "missing")
    d = tmp_path / "m"
    save_model(d, m.state_dict(), cfg.to_dict())
    # config of another model next to these weights
    other = JSCCConfig.tiny(bcr="1/4")
    (d / "config.json").write_text(json.dumps(other.to_dict()))
    with pytest.raises(CheckpointError, match="do not match its config"):
        load_jscc(d)
    save_model(d, m.state_dict(), cfg.to_dict())
    (d / "model.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(CheckpointError, match="corrupted"):
        load_jscc(d)
    (d / "config.json").write_text(json.dumps({"kind": "sing.prior"}))
    with pytest.raises(CheckpointError, match="expected 'sing.jscc'"):
        load_jscc(d)


def test_training_learns_and_resumes(tmp_path):
    """A tiny training run improves the val PSNR; a second invocation resumes at the saved step."""
    cmd = [sys.executable, "-m", "sing.cli", "train-jscc", "--data", "fmnist", "--bcr", "1/12",
           "--out", str(tmp_path / "j"), "--batch", "16", "--features", "8", "--blocks", "1",
           "--ckpt-every", "40", "--val-every", "40", "--lr", "3e-3", "--no-progress", "--threads", "1"]
    subprocess.run(cmd + ["--steps", "80"], check=True, capture_output=True, timeout=300)
    hist = json.loads((tmp_path / "j" / "history.json").read_text())
    assert [h["step"] for h in hist] == [40, 80]
    r = subprocess.run(cmd + ["--steps", "120"], check=True, capture_output=True, text=True, timeout=300)
    assert "resuming" in r.stdout and "at step 80" in r.stdout
    hist = json.loads((tmp_path / "j" / "history.json").read_text())
    assert [h["step"] for h in hist] == [40, 80, 120]
    assert hist[-1]["val_psnr_0db"] > hist[0]["val_psnr_0db"]
    m = load_jscc(tmp_path / "j")
    assert m.config.notes["steps"] == 120


def test_model_card_keeps_the_hand_written_tail(tmp_path):
    """save_model regenerates README.md on every save (a retrained model, a resumed run) but keeps what
    follows NOTES_MARKER: results and caveats written by people survive."""
    import torch
    from sing.checkpoint import NOTES_MARKER, save_model
    state = {"w": torch.zeros(2)}
    save_model(tmp_path, state, {"kind": "t"}, card="# card v1\n")
    assert (tmp_path / "README.md").read_text() == "# card v1\n"            # no marker: card as given
    (tmp_path / "README.md").write_text("# card v1\n\n" + NOTES_MARKER + "\n\n## Results\nLPIPS 0.39\n")
    save_model(tmp_path, state, {"kind": "t"}, card="# card v2\nsteps 5000\n")
    text = (tmp_path / "README.md").read_text()
    assert text.startswith("# card v2\nsteps 5000\n") and "card v1" not in text
    assert text.endswith(NOTES_MARKER + "\n\n## Results\nLPIPS 0.39\n")
    save_model(tmp_path, state, {"kind": "t"}, card="# card v3\n")
    assert (tmp_path / "README.md").read_text().count(NOTES_MARKER) == 1    # kept once, not stacked


# -- any image size -----------------------------------------------------------------------------
@pytest.mark.parametrize("ch", [3, 1])
@pytest.mark.parametrize("hw", [(37, 53), (64, 64), (300, 200)])
def test_any_size_round_trip(ch, hw, one_thread):
    """One tiny 16×16-trained model encodes and decodes any H×W: k from the padded size at the
    model's BCR, unit power, output cropped back to H×W, a real (not constant) reconstruction path."""
    m = build_jscc(JSCCConfig.tiny(image_size=16, channels=ch, bcr="1/12")).eval()
    H, W = hw
    x = torch.rand(2, ch, H, W)
    hp, wp = padded_shape(H, W)
    k = k_for_shape(m, H, W)
    assert k == (ch * hp * wp) // 12 == m.k_at(H, W)
    with torch.no_grad():
        z = m.encode(x, 5.0)
        assert z.shape == (2, k) and z.dtype == torch.complex64
        assert torch.allclose((z.abs() ** 2).mean(-1), torch.ones(2), atol=1e-5)
        xh = m.decode(z, 5.0, shape=(H, W))
        assert xh.shape == x.shape and float(xh.min()) >= 0 and float(xh.max()) <= 1
        assert torch.equal(m(x, 5.0), xh)                           # forward decodes at x's size
        # the symbols carry the image: a different image gives different symbols and output
        z2 = m.encode(torch.rand(2, ch, H, W), 5.0)
        assert not torch.allclose(z, z2)


def test_k_formula_and_native_size_unchanged():
    cfg = JSCCConfig(image_size=64, channels=3, bcr="1/48", features=8, blocks=1)
    m = build_jscc(cfg).eval()
    assert k_for_shape(cfg, 64, 64) == cfg.k == 256
    assert k_for_shape(cfg, 256, 256) == 4096                     # 256×256 RGB at BCR 1/48
    assert k_for_shape(cfg, 37, 53) == (3 * 40 * 56) // 48         # padded to 40×56
    assert padded_shape(37, 53) == (40, 56) and padded_shape(64, 64) == (64, 64)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():                                          # native size: default shape
        assert torch.equal(m.decode(m.encode(x, 0.0), 0.0), m.decode(m.encode(x, 0.0), 0.0, shape=(64, 64)))


def test_padding_is_reflect_and_cropped():
    """A 37×53 image gives the same symbols as its explicit reflect-padded 40×56 version."""
    m = build_jscc(JSCCConfig.tiny(image_size=16, channels=3, bcr="1/12")).eval()
    x = torch.rand(1, 3, 37, 53)
    xp = torch.nn.functional.pad(x, (0, 3, 0, 3), mode="reflect")
    with torch.no_grad():
        assert torch.allclose(m.encode(x, 0.0), m.encode(xp, 0.0), atol=1e-6)
        assert torch.allclose(m.decode(m.encode(xp, 0.0), 0.0, shape=(40, 56))[..., :37, :53],
                              m.decode(m.encode(x, 0.0), 0.0, shape=(37, 53)), atol=1e-6)


def test_size_limits_are_clear():
    m = build_jscc(JSCCConfig.tiny(image_size=16, channels=1, bcr="1/12")).eval()
    for h, w in [(MIN_SIDE - 1, 32), (32, MAX_SIDE + 1), (0, 32)]:
        with pytest.raises(InputError, match="outside the supported range"):
            k_for_shape(m, h, w)
        with pytest.raises(InputError, match="outside the supported range"):
            m.decode(torch.ones(1, 8, dtype=torch.complex64), 0.0, shape=(h, w))
    with pytest.raises(InputError, match="outside the supported range"):
        m.encode(torch.rand(1, 1, 32, MAX_SIDE + 4), 0.0)
    z = m.encode(torch.rand(1, 1, 40, 56), 0.0)
    with pytest.raises(InputError, match=r"per 37×40 image"):   # right k needs the right shape
        m.decode(z, 0.0, shape=(37, 40))
    assert m.decode(z, 0.0, shape=(37, 53)).shape == (1, 1, 37, 53)   # same padded size: same k


@pytest.fixture(scope="module")
def tiny_grey():
    return build_jscc(JSCCConfig.tiny(image_size=16, channels=1, bcr="1/12")).eval()


def test_any_size_property(tiny_grey):
    """For every H, W in range: k = floor(BCR·C·Hp·Wp), decode gives H×W back, and the image's
    bottom-right padding only depends on the image (encode of x equals encode of x reflect-padded)."""
    from hypothesis import given, settings, strategies as st

    @settings(max_examples=25, deadline=None)
    @given(h=st.integers(MIN_SIDE, 70), w=st.integers(MIN_SIDE, 70), seed=st.integers(0, 999))
    def check(h, w, seed):
        x = torch.rand(1, 1, h, w, generator=torch.Generator().manual_seed(seed))
        hp, wp = padded_shape(h, w)
        assert hp % 4 == 0 and wp % 4 == 0 and 0 <= hp - h < 4 and 0 <= wp - w < 4
        with torch.no_grad():
            z = tiny_grey.encode(x, 0.0)
            assert z.shape == (1, (hp * wp) // 12)
            assert tiny_grey.decode(z, 0.0, shape=(h, w)).shape == (1, 1, h, w)
            xp = torch.nn.functional.pad(x, (0, wp - w, 0, hp - h), mode="reflect")
            assert torch.allclose(tiny_grey.encode(xp, 0.0), z, atol=1e-6)
    check()
