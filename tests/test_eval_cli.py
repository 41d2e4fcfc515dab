# SPDX-License-Identifier: GPL-3.0-or-later
"""`sing eval` writes a valid sing.eval/1 file; every subcommand has --help; names are validated."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from sing.cli import COMMANDS, main

REPO = Path(__file__).resolve().parents[1]


def _eval(tiny_jscc_dir, tmp_path, *extra):
    out = tmp_path / "r.json"
    rc = main(["eval", "--method", "deepjscc", "--data", f"folder@32:{tmp_path / 'imgs'}", "--split", "all",
               "--bcr", "1/12", "--jscc", str(tiny_jscc_dir), "--n-images", "4", "--out", str(out),
               "--no-progress", *extra])
    return rc, out


@pytest.fixture
def img_folder(tmp_path):
    import numpy as np
    from PIL import Image
    (tmp_path / "imgs").mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(tmp_path / "imgs" / f"{i}.png")
    return tmp_path


def test_eval_result_file_schema(tiny_jscc_dir, img_folder):
    # folder@32: the tiny model takes 32×32 (folder:PATH alone is 64×64)
    rc, out = _eval(tiny_jscc_dir, img_folder, "--channel", "rayleigh", "--snr-source", "estimated")
    assert rc == 0
    r = json.loads(out.read_text())
    assert r["schema"] == "sing.eval/1"
    s = r["setup"]
    for key in ("dataset", "split", "resolution", "n_images", "bcr", "k", "channel", "snr_db", "snr_source",
                "method", "method_config", "jscc_model", "prior_model", "seed", "commit", "device", "torch_threads"):
        assert key in s, key
    assert s["k"] == 256 and s["bcr"] == "1/12" and s["snr_source"] == "estimated" and s["csi"] == "pilot"
    assert set(r["metrics"]) == {"psnr", "ssim", "lpips"} and len(r["per_image"]) == 4
    assert 0 < r["metrics"]["lpips"] < 1.5
    # same seed → same numbers; another seed → other channel noise
    rc, out2 = _eval(tiny_jscc_dir, img_folder, "--channel", "rayleigh", "--snr-source", "estimated")
    assert json.loads(out2.read_text())["metrics"] == r["metrics"]
    rc, out3 = _eval(tiny_jscc_dir, img_folder, "--channel", "rayleigh", "--snr-source", "estimated", "--seed", "1")
    assert json.loads(out3.read_text())["metrics"] != r["metrics"]


def test_eval_scores_another_lpips_backbone_on_request_and_compare_pairs_it(tiny_jscc_dir, img_folder):
    """--lpips-extra vgg adds LPIPS-VGG per image and as a mean, leaves the other metrics as they
    were, and sim/compare.py reports its ratio next to LPIPS-Alex's."""
    import importlib.util
    from sing.metrics import load_lpips
    rc, plain = _eval(tiny_jscc_dir, img_folder)
    r0 = json.loads(plain.read_text())
    out = img_folder / "vgg.json"
    assert main(["eval", "--method", "deepjscc", "--data", f"folder@32:{img_folder / 'imgs'}", "--split", "all",
                 "--bcr", "1/12", "--jscc", str(tiny_jscc_dir), "--n-images", "4", "--out", str(out),
                 "--no-progress", "--lpips-extra", "vgg"]) == 0
    r = json.loads(out.read_text())
    assert set(r["metrics"]) == {"psnr", "ssim", "lpips", "lpips_vgg"}
    assert {k: r["metrics"][k] for k in r0["metrics"]} == r0["metrics"]
    assert all(0 < p["lpips_vgg"] < 1.5 for p in r["per_image"])
    assert r["metrics"]["lpips_vgg"] != r["metrics"]["lpips"]          # another network, another number
    assert load_lpips("vgg") is not load_lpips("alex")
    spec = importlib.util.spec_from_file_location("compare_under_test", REPO / "sim" / "compare.py")
    cmp = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cmp)
    (img_folder / "g").mkdir()
    other = dict(r, setup={**r["setup"], "method": "sdedit"},
                 per_image=[{**p, "lpips_vgg": 2 * p["lpips_vgg"]} for p in r["per_image"]])
    (img_folder / "g" / "a.json").write_text(json.dumps(other))
    (img_folder / "g" / "b.json").write_text(json.dumps(r))
    rows = cmp.compare_grid(img_folder / "g", "sdedit", ["deepjscc"], n_boot=200)
    assert abs(rows[0]["metrics"]["lpips_vgg"]["ratio"] - 2.0) < 1e-9 and rows[0]["metrics"]["lpips"]["ratio"] == 1.0
    assert "LPIPS-VGG ratio" in cmp.to_markdown(rows, "cmd")


def test_eval_refuses_bad_names_and_mismatched_models(tiny_jscc_dir, tmp_path, capsys):
    assert main(["eval", "--data", "celeba", "--out", str(tmp_path / "x.json")]) == 2
    assert "choose one of" in capsys.readouterr().err
    assert main(["eval", "--data", "fmnist", "--jscc", str(tiny_jscc_dir), "--bcr", "1/12", "--n-images", "2",
                 "--out", str(tmp_path / "x.json"), "--no-progress"]) == 2
    assert "takes 3-channel images" in capsys.readouterr().err
    # another size than the model's native 32×32 runs at that size (k from the image size)
    assert main(["eval", "--data", "natural", "--jscc", str(tiny_jscc_dir), "--bcr", "1/12", "--n-images", "2",
                 "--out", str(tmp_path / "x.json"), "--no-progress"]) == 0
    s = json.loads((tmp_path / "x.json").read_text())["setup"]
    assert s["resolution"] == 64 and s["k"] == 3 * 64 * 64 // 12
    with pytest.raises(SystemExit):
        main(["eval", "--method", "magic", "--out", "x.json"])
    assert main(["eval", "--data", "natural", "--jscc", str(tmp_path / "none"), "--out", str(tmp_path / "x.json")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("cmd", sorted(COMMANDS))
def test_every_subcommand_has_help(cmd):
    r = subprocess.run([sys.executable, "-m", "sing.cli", cmd, "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "usage: sing " + cmd in r.stdout


def test_decoder_is_a_named_choice_and_parts_refuse_another_decoder(tmp_path, capsys):
    """--decoder picks the shipped MSE or perceptual DeepJSCC model; SING-Zero then uses that model's
    own calibration (recorded in the result), and a calibration or INN made for the other decoder
    is refused with an error that names both models."""
    out = tmp_path / "r.json"
    base = ["eval", "--data", "natural-unseen", "--n-images", "2", "--out", str(out), "--no-progress"]
    assert main(base + ["--method", "sing-zero", "--decoder", "perceptual", "--start", "0.02"]) == 0
    s = json.loads(out.read_text())["setup"]
    assert s["decoder"] == "perceptual" and s["jscc_model_id"].startswith("jscc-natural64-bcr1_48-perceptual@")
    assert s["dataset"] == "natural-unseen" and s["n_images"] == 2
    assert main(base + ["--method", "deepjscc"]) == 0
    assert json.loads(out.read_text())["setup"]["decoder"] == "mse"
    assert main(base + ["--method", "sing-zero", "--decoder", "perceptual",
                        "--calibration", "models/jscc-natural64-bcr1_48/calibration"]) == 2
    err = capsys.readouterr().err
    assert "does not belong to JSCC model 'jscc-natural64-bcr1_48-perceptual@" in err
    assert main(base + ["--method", "sing-inn", "--decoder", "perceptual",
                        "--inn", "models/jscc-natural64-bcr1_48-inn"]) == 2
    assert "not 'jscc-natural64-bcr1_48-perceptual@" in capsys.readouterr().err
    assert main(base + ["--method", "sing-inn", "--decoder", "perceptual", "--inn", str(tmp_path / "none")]) == 2
    assert "sing train-inn --jscc" in capsys.readouterr().err
    assert main(base + ["--method", "deepjscc", "--decoder", "perceptual"]) == 2
    assert "contradicts" in capsys.readouterr().err
    assert main(base + ["--method", "sing-zero", "--decoder", "mse", "--jscc", "models/jscc-natural64-bcr1_48"]) == 2
    assert "not both" in capsys.readouterr().err
