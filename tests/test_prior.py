# SPDX-License-Identifier: GPL-3.0-or-later
"""sing.prior: loaders (ours, diffusers flat and pipeline layouts), schedule, DDIM, training resume,
2-process accelerate training, errors. Tiny configs; real diffusers models, real processes."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from sing.errors import CheckpointError, InputError
from sing.prior import PriorConfig, build_prior, load_prior, save_prior, tiny_prior
from sing.prior.sample import sample_images

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def _tiny_unet(size=16, channels=3, seed=0):
    from diffusers import UNet2DModel
    torch.manual_seed(seed)
    return UNet2DModel(sample_size=size, in_channels=channels, out_channels=channels,
                       block_out_channels=(16, 32), layers_per_block=1,
                       down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "UpBlock2D"),
                       norm_num_groups=8, attention_head_dim=8)


@pytest.fixture(scope="module")
def celebahq_like(tmp_path_factory):
    """A random tiny model saved exactly as google/ddpm-celebahq-256 ships: config.json +
    diffusion_pytorch_model.safetensors + scheduler_config.json in one folder."""
    from diffusers import DDPMScheduler
    d = tmp_path_factory.mktemp("ddpm-tiny")
    unet = _tiny_unet()
    unet.save_pretrained(d)
    DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear").save_pretrained(d)
    return d, unet


def test_load_celebahq_layout_and_sample(celebahq_like):
    d, unet = celebahq_like
    assert {"config.json", "diffusion_pytorch_model.safetensors", "scheduler_config.json"} <= \
        {p.name for p in d.iterdir()}
    prior = load_prior(d, expect_size=16, expect_channels=3)
    assert (prior.image_size, prior.channels, prior.num_train_timesteps) == (16, 3, 1000)
    assert prior.dtype == torch.float32 and prior.device.type == "cpu"
    assert prior.alphas_cumprod.dtype == torch.float64 and prior.alphas_cumprod.shape == (1000,)
    x = torch.randn(2, 3, 16, 16)
    t = torch.tensor([10, 700])
    with torch.no_grad():
        ref = unet(x, t).sample
    torch.testing.assert_close(prior.eps(x, t), ref)
    samples = sample_images(prior, 3, steps=4, eta=0.85, generator=torch.Generator().manual_seed(0),
                            progress=False)
    assert samples.shape == (3, 3, 16, 16) and torch.isfinite(samples).all()
    assert samples.min() >= 0 and samples.max() <= 1 and samples.std() > 0.01


def test_bin_pipeline_and_legacy_keys(tmp_path, celebahq_like):
    """The .bin variant (weights-only torch.load), the pipeline layout and the pre-0.x attention
    key names (query/key/value/proj_attn) all load to the same network."""
    from diffusers import DDPMPipeline, DDPMScheduler
    src, unet = celebahq_like
    x, t = torch.randn(1, 3, 16, 16), torch.tensor([300])
    ref = load_prior(src).eps(x, t)
    # .bin
    b = tmp_path / "bin"
    unet.save_pretrained(b, safe_serialization=False)
    DDPMScheduler().save_pretrained(b)
    assert (b / "diffusion_pytorch_model.bin").exists()
    torch.testing.assert_close(load_prior(b).eps(x, t), ref)
    # pipeline layout
    p = tmp_path / "pipe"
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler()).save_pretrained(p)
    assert (p / "model_index.json").exists() and (p / "unet").is_dir()
    torch.testing.assert_close(load_prior(p).eps(x, t), ref)
    # legacy attention names, as in the original google/ddpm-* checkpoints
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    for f in ("config.json", "scheduler_config.json"):
        (legacy / f).write_text((src / f).read_text())
    ren = {".to_q.": ".query.", ".to_k.": ".key.", ".to_v.": ".value.", ".to_out.0.": ".proj_attn."}
    st = {}
    for k, v in unet.state_dict().items():
        for a, b_ in ren.items():
            k = k.replace(a, b_)
        st[k] = v.contiguous()
    assert any(".query." in k for k in st)
    save_file(st, str(legacy / "diffusion_pytorch_model.safetensors"))
    torch.testing.assert_close(load_prior(legacy).eps(x, t), ref)


def test_schedule_matches_diffusers():
    from diffusers import DDIMScheduler, DDPMScheduler
    prior = tiny_prior(16, 1)
    ref = DDPMScheduler(beta_schedule="linear").alphas_cumprod.double()
    assert (prior.alphas_cumprod - ref).abs().max() < 1e-6
    assert prior.alphas_cumprod[0] == pytest.approx(1 - 1e-4)
    for steps in (1, 7, 50, 100):
        s = DDIMScheduler(beta_schedule="linear", timestep_spacing="leading")
        s.set_timesteps(steps)
        ts = prior.ddim_timesteps(steps)
        assert ts.dtype == torch.long and torch.equal(ts, s.timesteps.long())
        assert (ts[:-1] > ts[1:]).all() and len(ts) == steps
    with pytest.raises(InputError):
        prior.ddim_timesteps(0)


def test_predict_x0_inverts_forward_process():
    prior = tiny_prior(16, 3)
    g = torch.Generator().manual_seed(1)
    x0 = torch.rand(2, 3, 16, 16, generator=g) * 2 - 1
    noise = torch.randn(2, 3, 16, 16, generator=g)
    t = torch.tensor([50, 900])
    a = prior.alphas_cumprod[t].float().view(-1, 1, 1, 1)
    x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
    torch.testing.assert_close(prior.predict_x0(x_t, t, eps=noise), x0, atol=1e-4, rtol=1e-4)
    assert float(prior.alpha_bar(-1)) == 1.0


def test_our_dir_roundtrip_and_sample_cli(tmp_path):
    from sing.cli import main
    prior = tiny_prior(16, 1, seed=3)
    d = save_prior(tmp_path / "p", prior, prior.config)
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["kind"] == "sing.prior" and cfg["image_size"] == 16
    back = load_prior(d)
    x = torch.randn(2, 1, 16, 16)
    torch.testing.assert_close(back.eps(x, 123), prior.eps(x, 123))
    out = tmp_path / "grid.png"
    assert main(["sample", "--prior", str(d), "--n", "4", "--steps", "3", "--out", str(out)]) == 0
    from PIL import Image
    im = Image.open(out)
    assert im.size == (4 * (2 * 18 + 2), 4 * (2 * 18 + 2))   # 2×2 grid, pad 2, scaled ×4


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_bad_inputs(tmp_path, celebahq_like):
    src, _ = celebahq_like
    # a directory without config
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "model.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match="no config.json"):
        load_prior(empty)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_prior(tmp_path / "nope")
    # a config for another resolution than the data
    with pytest.raises(CheckpointError, match=r"16×16.*64×64"):
        load_prior(src, expect_size=64)
    with pytest.raises(CheckpointError, match="channel"):
        load_prior(src, expect_channels=1)
    # corrupted weights: truncated safetensors, garbage .bin, ours
    for name in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"):
        bad = tmp_path / ("bad-" + name.split(".")[-1])
        bad.mkdir()
        for f in ("config.json", "scheduler_config.json"):
            (bad / f).write_text((src / f).read_text())
        data = (src / "diffusion_pytorch_model.safetensors").read_bytes()
        (bad / name).write_bytes(data[: len(data) // 2] if name.endswith("safetensors") else b"\x80garbage")
        with pytest.raises(CheckpointError, match="corrupted"):
            load_prior(bad)
    ours = save_prior(tmp_path / "ours", tiny_prior(16, 1), tiny_prior(16, 1).config)
    w = ours / "model.safetensors"
    w.write_bytes(w.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="corrupted"):
        load_prior(ours)
    # weights of another model under a config
    other = save_prior(tmp_path / "other", tiny_prior(16, 3), tiny_prior(16, 3).config)
    cfg = json.loads((other / "config.json").read_text())
    cfg["unet"]["block_out_channels"] = [16, 48]
    (other / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="do not match"):
        load_prior(other)
    # wrong image shape / timestep into eps
    prior = load_prior(src)
    with pytest.raises(InputError, match=r"\(B, 3, 16, 16\)"):
        prior.eps(torch.zeros(1, 3, 32, 32), 0)
    with pytest.raises(InputError, match="t must lie"):
        prior.eps(torch.zeros(1, 3, 16, 16), 1000)


# ----------------------------------------------------------------------------------------------
TRAIN = ["--data", "fmnist", "--batch", "4", "--unet-preset", "tiny", "--sample-every", "100000",
         "--sample-steps", "2", "--ckpt-minutes", "0", "--no-progress", "--threads", "1"]


def _train(out, steps, every, extra=(), subprocess_=False):
    """Run `sing train-prior` in this process (fast: no second import of torch/diffusers), or in a
    child process; returns an object with returncode, stdout, stderr."""
    argv = ["train-prior", *TRAIN, "--out", str(out), "--steps", str(steps), "--ckpt-every",
            str(every), *extra]
    if subprocess_:
        return subprocess.run([PY, "-m", "sing.cli", *argv], cwd=ROOT, capture_output=True,
                              text=True, timeout=300)
    import contextlib
    import io
    from types import SimpleNamespace
    from sing.cli import main
    out_, err_ = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out_), contextlib.redirect_stderr(err_):
        rc = main(argv)
    return SimpleNamespace(returncode=rc, stdout=out_.getvalue(), stderr=err_.getvalue())


def test_resume_after_kill_matches_uninterrupted(tmp_path):
    """SIGKILL a training mid-run, restart it: it resumes at the last checkpoint's step and ends
    bit-identical (weights, EMA, AdamW moments) to a run that was never interrupted."""
    killed = tmp_path / "killed"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([PY, "-m", "sing.cli", "train-prior", *TRAIN, "--out", str(killed),
                             "--steps", "100000", "--ckpt-every", "3"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    latest = killed / "latest.json"
    t0 = time.time()
    try:
        while time.time() - t0 < 120:
            if latest.exists() and json.loads(latest.read_text())["step"] >= 6:
                break
            if proc.poll() is not None:
                pytest.fail("training exited early: " + proc.stderr.read()[-2000:])
            time.sleep(0.2)
        else:
            pytest.fail("no checkpoint within 120 s")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    k = json.loads(latest.read_text())["step"]
    assert k >= 6 and k % 3 == 0
    final = k + 3
    r = _train(killed, final, 3)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"resuming from" in r.stdout + r.stderr and f"at step {k}" in r.stdout + r.stderr
    meta = json.loads((killed / f"ckpt-{final:07d}" / "train_state.json").read_text())
    assert meta["step"] == final
    ref = tmp_path / "ref"
    r2 = _train(ref, final, 3)
    assert r2.returncode == 0, r2.stderr[-3000:]
    a = load_file(str(killed / f"ckpt-{final:07d}" / "train_state.safetensors"))
    b = load_file(str(ref / f"ckpt-{final:07d}" / "train_state.safetensors"))
    assert a.keys() == b.keys() and any(k_.startswith("ema.") for k_ in a)
    assert any(k_.startswith("opt.") for k_ in a)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # the EMA is a real average, not a copy of the weights
    diff = sum(float((a["ema." + n[6:]] - a[n]).abs().sum()) for n in a if n.startswith("model."))
    assert diff > 0
    # the loss log continues without duplicated steps
    steps = [int(line.split(",")[0]) for line in (killed / "loss.csv").read_text().splitlines()[1:]]
    assert steps == sorted(set(steps))


def test_export_and_continue_from_model_dir(tmp_path):
    """The exported model dir alone (no run dir) is enough to continue training later."""
    r = _train(tmp_path / "run", 4, 2, ["--export", str(tmp_path / "model")])
    assert r.returncode == 0, r.stderr[-3000:]
    m = tmp_path / "model"
    for f in ("config.json", "model.safetensors", "train_weights.safetensors", "README.md",
              "loss.csv", "loss.png", "samples.png"):
        assert (m / f).exists(), f
    cfg = json.loads((m / "config.json").read_text())
    assert cfg["training"]["steps"] == 4 and "sing train-prior" in cfg["training"]["command"]
    assert cfg["dc_prior"]["n_images"] > 100 and len(cfg["dc_prior"]["mean"]) == 1   # the sampler's DC prior
    assert "DC posterior" in (m / "README.md").read_text()
    prior = load_prior(m, expect_size=32, expect_channels=1)
    assert prior.image_size == 32
    r = _train(tmp_path / "run2", 6, 2, ["--export", str(m)])
    assert r.returncode == 0, r.stderr[-3000:]
    assert "continuing from the exported model" in r.stdout + r.stderr and "at step 4" in r.stdout + r.stderr
    assert json.loads((m / "config.json").read_text())["training"]["steps"] == 6
    logged = [int(l.split(",")[0]) for l in (m / "loss.csv").read_text().splitlines()[1:]]
    assert logged[0] <= 4 and logged[-1] == 6 and logged == sorted(set(logged))


def test_two_process_accelerate_training(tmp_path):
    r = _train(tmp_path / "ddp", 4, 2, ["--num-processes", "2"], subprocess_=True)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    meta = json.loads((tmp_path / "ddp" / "ckpt-0000004" / "train_state.json").read_text())
    assert meta["step"] == 4 and meta["extra"]["recipe"]["processes"] == 2
    # different from a 1-process run with the same global batch (each rank draws its own data)
    r1 = _train(tmp_path / "one", 4, 2)
    assert r1.returncode == 0
    a = load_file(str(tmp_path / "ddp" / "ckpt-0000004" / "train_state.safetensors"))
    b = load_file(str(tmp_path / "one" / "ckpt-0000004" / "train_state.safetensors"))
    assert not all(torch.equal(a[k], b[k]) for k in a if k.startswith("model."))


def test_denoise_table_and_bench_write_results(tmp_path):
    from sing.prior import bench, denoise_table
    d = save_prior(tmp_path / "tiny-fm", tiny_prior(32, 1), tiny_prior(32, 1).config)
    out = tmp_path / "res"
    assert denoise_table.main(["--prior", str(d), "--data", "fmnist", "--n", "6", "--batch", "4",
                               "--out-dir", str(out)]) == 0
    res = json.loads((out / "denoise-tiny-fm.json").read_text())
    assert res["setup"]["n_images"] == 6 and [r["t"] for r in res["rows"]] == [50, 200, 500]
    for r in res["rows"]:
        # the baseline is a real denoiser: Wiener beats the noisy input at every level
        assert r["psnr_wiener"] > r["psnr_noisy"] + 1
        assert abs(r["gain_db"] - (r["psnr_prior"] - r["psnr_wiener"])) < 1e-9
    assert "prior − Wiener" in (out / "denoise-tiny-fm.md").read_text()
    assert bench.main(["--prior", str(d), "--batches", "1,4", "--repeats", "2",
                       "--out-dir", str(out), "--autocast", "bf16"]) == 0
    b = json.loads((out / "bench-tiny-fm-cpu.json").read_text())
    assert [(r["batch"], r["autocast"]) for r in b["results"]] == [(1, None), (4, None), (1, "bf16"),
                                                                   (4, "bf16")]
    assert all(r["seconds_per_image"] > 0 for r in b["results"])
    assert b["setup"]["device"].startswith("cpu")


def test_bf16_autocast_close_to_fp32_and_refuses_fp16_on_cpu():
    prior = tiny_prior(16, 3)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 16, 16, generator=g)
    ref = prior.eps(x, 500)
    out = prior.set_autocast("bf16").eps(x, 500)
    assert prior.autocast_dtype == torch.bfloat16 and out.dtype == torch.float32
    assert not torch.equal(out, ref)                      # it really ran in bf16 …
    assert (out - ref).abs().max() < 0.05 * ref.abs().max()   # … and stays close to fp32
    assert torch.equal(prior.set_autocast(None).eps(x, 500), ref)
    with pytest.raises(InputError, match="bf16"):
        prior.set_autocast("fp16")
    with pytest.raises(InputError):
        prior.set_autocast("int8")


def test_bf16_mixed_precision_training_records_recipe(tmp_path):
    r = _train(tmp_path / "bf", 2, 2, ["--mixed-precision", "bf16"])
    assert r.returncode == 0, r.stderr[-3000:]
    meta = json.loads((tmp_path / "bf" / "ckpt-0000002" / "train_state.json").read_text())
    assert meta["extra"]["recipe"]["mixed_precision"] == "bf16"
    st = load_file(str(tmp_path / "bf" / "ckpt-0000002" / "train_state.safetensors"))
    assert all(v.dtype == torch.float32 for k, v in st.items() if k.startswith(("model.", "ema.")))
    assert _train(tmp_path / "f16", 2, 2, ["--mixed-precision", "fp16", "--cpu"]).returncode == 2


def test_low_t_mixture_is_recorded_and_checked(tmp_path):
    """--low-t-fraction: part of each batch trains at t < --low-t-max (where a warm-started SING chain
    runs); the recipe records it, nonsense values are refused before any training."""
    r = _train(tmp_path / "lt", 2, 2, ["--low-t-fraction", "0.5", "--low-t-max", "100"])
    assert r.returncode == 0, r.stderr[-3000:]
    recipe = json.loads((tmp_path / "lt" / "ckpt-0000002" / "train_state.json").read_text())["extra"]["recipe"]
    assert recipe["low_t_fraction"] == 0.5 and recipe["low_t_max"] == 100
    bad = _train(tmp_path / "bad", 2, 2, ["--low-t-fraction", "1.5"])
    assert bad.returncode != 0 and "--low-t-fraction" in bad.stdout + bad.stderr
    assert not (tmp_path / "bad" / "ckpt-0000002").exists()
