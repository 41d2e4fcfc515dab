# SPDX-License-Identifier: GPL-3.0-or-later
"""docs/celebahq.md (the paper's CelebA-HQ 256×256 setting) run as written, with tiny parts.

The page's ```sh blocks run in bash, unchanged except for these swaps:
- the path settings (CELEBAHQ, DATA, DDPM, M, RESULTS) point into a temp folder, the split sizes
  (N_TRAIN, N_VAL) shrink to 4 + 2 of 8 generated 256×256 images, and `. .venv/bin/activate`
  activates the venv running this test;
- `sing`, `python` and `hf` are shell functions that record their arguments (the split snippet,
  the variables, the `ev` function and the loops run for real).
Then every recorded command runs in this process through the same entry points a user reaches:
`sing.cli.main`, with tiny sizes appended (argparse keeps the last occurrence of an option), and
`sim/report.py`'s `main`. GPU-only options give way to CPU: `--device cpu` is appended, and
`--autocast fp16` is dropped because fp16 autocast needs a GPU.
The `hf download` line is checked, not run (no network). In its place the prior is a random
UNet2DModel with google/ddpm-celebahq-256's published configuration, saved in the same diffusers
pipeline layout (model_index.json, unet/, scheduler/). Only its channel widths are cut,
128-128-256-256-512-512 → 32-32-64-64-128-128. The resolution stays 256, and so do the block
types, self-attention at 16×16, 2 layers per block, 32 norm groups and the DDPM scheduler. 32 is
the narrowest width that keeps 32 norm groups. Even so, one batch-2 UNet call takes ~1.5 s on one
CPU thread here, so the diffusion evaluations run 2 DDIM steps.
Grid points away from the headline point (AWGN 0 dB) are parsed, not run, except DeepJSCC under
Rayleigh fading.
"""
from __future__ import annotations

import importlib.util
import json
import math
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "celebahq.md"

# google/ddpm-celebahq-256, unet/config.json (the 256×256 DDPM of Ho et al., 113.7 M parameters),
# with block_out_channels divided by 4.
CELEBAHQ_UNET = dict(
    sample_size=256, in_channels=3, out_channels=3, layers_per_block=2,
    block_out_channels=(32, 32, 64, 64, 128, 128),          # published: (128, 128, 256, 256, 512, 512)
    down_block_types=("DownBlock2D", "DownBlock2D", "DownBlock2D", "DownBlock2D", "AttnDownBlock2D",
                      "DownBlock2D"),
    up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D"),
    attention_head_dim=None, norm_num_groups=32, norm_eps=1e-6, act_fn="silu", downsample_padding=0,
    flip_sin_to_cos=False, freq_shift=1, center_input_sample=False, time_embedding_type="positional",
    mid_block_scale_factor=1)
CELEBAHQ_SCHEDULER = dict(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
                          clip_sample=True, variance_type="fixed_small")

# appended to each command of the page (the last occurrence of an option wins)
TINY = {
    "sample": ["--n", "2", "--batch", "2", "--steps", "2", "--device", "cpu", "--threads", "1"],
    "train-jscc": ["--steps", "2", "--batch", "2", "--features", "8", "--blocks", "1", "--val-every", "2",
                   "--ckpt-every", "2", "--device", "cpu", "--threads", "1", "--no-progress"],
    "calibrate": ["--n-images", "2", "--device", "cpu"],
    "train-inn": ["--steps", "2", "--batch", "2", "--hidden", "8", "--blocks", "1,1", "--calib-images", "2",
                  "--device", "cpu", "--threads", "1", "--no-progress"],
    "eval": ["--n-images", "2", "--batch", "2", "--device", "cpu", "--no-progress"],
}
DIFFUSION = ("ddnm-avgpool", "sing-zero", "sing-inn", "dps")
METHODS = ("deepjscc", "deepjscc-perceptual", *DIFFUSION, "digital-jpeg", "digital-webp")
SETUP_KEYS = ("dataset", "split", "resolution", "n_images", "bcr", "k", "channel", "snr_db", "snr_source",
              "method", "method_config", "jscc_model", "prior_model", "seed", "commit", "device",
              "torch_threads")


def sh_blocks(text: str) -> str:
    return "\n".join(re.findall(r"^```sh\n(.*?)^```", text, flags=re.S | re.M))


def swap(script: str, pattern: str, new: str) -> str:
    out, n = re.subn(pattern, new, script, flags=re.M)
    assert n == 1, f"docs/celebahq.md: expected one line matching {pattern!r}, found {n}"
    return out


def make_images(folder: Path, n: int) -> None:
    """Smooth random 256×256 colour images (bicubic up-sampled 8×8 noise) as JPEG, named like
    the CelebA-HQ files."""
    from PIL import Image
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        small = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
        big = np.asarray(small.resize((256, 256), Image.BICUBIC), dtype=np.float32)
        big = np.clip(big + rng.normal(0, 4, big.shape), 0, 255).astype(np.uint8)
        Image.fromarray(big).save(folder / f"{i:05d}.jpg", quality=95)


def make_prior(path: Path) -> None:
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel
    torch.manual_seed(0)
    DDPMPipeline(unet=UNet2DModel(**CELEBAHQ_UNET),
                 scheduler=DDPMScheduler(**CELEBAHQ_SCHEDULER)).save_pretrained(path)


def run_report(argv: list[str]) -> int:
    spec = importlib.util.spec_from_file_location("sim_report", REPO / "sim" / "report.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.main(argv)


@pytest.mark.slow
def test_celebahq_recipe_end_to_end(tmp_path, one_thread):
    from sing.cli import build_parser, main

    # --- the page's shell, with recording stand-ins for sing / python / hf -------------------
    src, data, ddpm = tmp_path / "celebahq", tmp_path / "split", tmp_path / "ddpm-celebahq-256"
    models, results = tmp_path / "runs", tmp_path / "results"
    make_images(src, 8)
    script = sh_blocks(DOC.read_text())
    for name, value in (("CELEBAHQ", src), ("DATA", data), ("DDPM", ddpm), ("M", models), ("RESULTS", results)):
        script = swap(script, rf"^{name}=\S+", f"{name}={value}")
    script = swap(script, r"^N_TRAIN=\d+ N_VAL=\d+", "N_TRAIN=4 N_VAL=2")
    activate = Path(sys.executable).parent / "activate"
    script = swap(script, r"^\. \.venv/bin/activate$", f". {activate}" if activate.exists() else ":")
    rec = tmp_path / "commands.txt"
    q = shlex.quote(str(rec))
    stubs = "\n".join(f'{c}() {{ printf "%q " {c} "$@" >> {q}; echo >> {q}; }}' for c in ("sing", "python", "hf"))
    r = subprocess.run(["bash", "-c", f"set -euo pipefail\n{stubs}\n{script}\necho \"$DS\""], cwd=REPO,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    ds = r.stdout.strip().splitlines()[-1]
    assert ds == f"folder@256:{data}"
    assert sorted(p.name for p in (data / "test").iterdir()) == ["00006.jpg", "00007.jpg"]
    assert len(list((data / "train").iterdir())) == 4 and len(list((data / "val").iterdir())) == 2
    commands = [shlex.split(line) for line in rec.read_text().splitlines() if line.strip()]

    # --- run them ----------------------------------------------------------------------------
    jscc = models / "jscc-celebahq256-bcr1_48"
    grid, seen, ran = set(), set(), []
    for cmd in commands:
        if tuple(cmd) in seen:            # the grid loop repeats the headline points (`ev` skips them)
            continue
        seen.add(tuple(cmd))
        if cmd[0] == "hf":
            assert cmd[1:3] == ["download", "google/ddpm-celebahq-256"] and cmd[-2:] == ["--local-dir", str(ddpm)]
            make_prior(ddpm)              # stands in for the download
            continue
        if cmd[0] == "python":
            assert cmd[1] == "sim/report.py"
            assert run_report(cmd[2:]) == 0
            ran.append("report")
            continue
        assert cmd[0] == "sing", cmd
        sub, argv = cmd[1], cmd[1:]
        if sub == "worker":               # a server: its command line must parse
            a = build_parser("worker").parse_args(argv)
            assert a.jscc == [str(jscc)] and a.prior == str(ddpm) and a.autocast == "fp16"
            continue
        if sub == "eval":
            a = build_parser("eval").parse_args(argv)
            grid.add((a.method, a.channel, a.snr_db))
            headline = (a.channel, a.snr_db) == ("awgn", 0.0)
            if not (headline or (a.method == "deepjscc" and a.channel == "rayleigh" and a.snr_db == 0.0)):
                continue
            i = argv.index("--autocast") if "--autocast" in argv else -1
            if i >= 0:
                assert argv[i + 1] == "fp16"
                argv = argv[:i] + argv[i + 2:]
            argv = argv + TINY["eval"] + (["--steps", "2"] if a.method in DIFFUSION else [])
        else:
            argv = argv + TINY[sub]
        assert main(argv) == 0, cmd
        ran.append(sub if sub != "eval" else f"eval {a.method} {a.channel}")

    assert ran[:1] == ["sample"] and "report" in ran
    assert ran.count("train-jscc") == 2 and "calibrate" in ran and "train-inn" in ran
    assert {f"eval {m} awgn" for m in METHODS} <= set(ran) and "eval deepjscc rayleigh" in ran
    # the grid of docs/BENCHMARKS.md at BCR 1/48: every method × AWGN/Rayleigh × 5 SNRs
    assert grid == {(m, c, s) for m in METHODS for c in ("awgn", "rayleigh")
                    for s in (-5.0, 0.0, 5.0, 10.0, 15.0)}

    # --- what they made ----------------------------------------------------------------------
    assert (ddpm / "model_index.json").exists() and (ddpm / "unet").is_dir() and (ddpm / "scheduler").is_dir()
    assert (models / "prior-samples.png").exists()
    cfg = json.loads((jscc / "config.json").read_text())
    assert (cfg["image_size"], cfg["k"], cfg["bcr"], cfg["dataset"]) == (256, 4096, "1/48", ds)
    assert (jscc / "calibration" / "config.json").exists() and (jscc.parent / (jscc.name + "-inn")).is_dir()
    res = {}
    for f in sorted((results / "celebahq256").glob("*.json")):
        r = json.loads(f.read_text())
        res[(r["setup"]["method"], r["setup"]["channel"])] = r
    assert set(res) == {(m, "awgn") for m in METHODS} | {("deepjscc", "rayleigh")}
    for (method, ch), r in res.items():
        assert r["schema"] == "sing.eval/1"
        s = r["setup"]
        assert all(k in s for k in SETUP_KEYS), (method, set(SETUP_KEYS) - set(s))
        assert (s["dataset"], s["split"], s["resolution"], s["n_images"]) == (ds, "test", 256, 2)
        assert (s["bcr"], s["k"], s["snr_db"], s["method"]) == ("1/48", 4096, 0.0, method)
        assert s["jscc_model"].endswith(jscc.name + ("-perceptual" if method == "deepjscc-perceptual" else ""))
        assert s["prior_model"] == (str(ddpm.resolve()) if method in DIFFUSION else None)
        if method in DIFFUSION:
            # 2 DDIM steps (t = 500, 0); the warm-started restorers (start 0.1 by default) run only t = 0
            assert s["method_config"]["steps"] == 2
            assert r["timing"]["unet_evals_per_image"] == (1 if s["method_config"].get("start", 1.0) < 0.5 else 2), \
                (method, s["method_config"], r["timing"])
        assert set(r["metrics"]) == {"psnr", "ssim", "lpips"}
        assert all(math.isfinite(v) for v in r["metrics"].values()), (method, r["metrics"])
        assert [p["id"] for p in r["per_image"]] == ["folder/00006.jpg", "folder/00007.jpg"]
    assert res[("deepjscc", "rayleigh")]["setup"]["csi"] == "pilot"
    val = [json.loads(f.read_text())["setup"] for f in sorted((results / "celebahq256-val").glob("*.json"))]
    assert sorted(v["method_config"]["sigma_scale"] for v in val) == [0.5, 1.0, 2.0]
    assert {(v["split"], v["method"]) for v in val} == {("val", "sing-zero")}
    table = (results / "celebahq256" / "table.md").read_text()
    assert all(f"| {m} | 1/48 | 4096 |" in table for m in METHODS)
