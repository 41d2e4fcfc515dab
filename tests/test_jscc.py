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
    with pytest.raises(InputError, match=r"takes images \(B, 3, 16, 16\)"):
        m.encode(torch.rand(1, 3, 20, 20), 0.0)
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
