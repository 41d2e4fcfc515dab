# SPDX-License-Identifier: GPL-3.0-or-later
"""SING-INN (docs/ALGORITHMS.md §5): invertible degradation model, guided sampler, training, bench.

The properties hold for any weights, so INNs with random (non-zero) coupling weights and a random
tiny UNet prior are used; training runs on a tiny random DeepJSCC for Fashion-MNIST.
"""
from __future__ import annotations

import argparse
import json
import math
import warnings

import pytest
import torch
from hypothesis import given, settings, strategies as st

from sing.channel import generator_for
from sing.checkpoint import save_model
from sing.errors import CheckpointError, InputError
from sing.inn import (INNConfig, build_inn, guided_x0, haar_down, haar_lowpass, haar_up, load_inn,
                      observation, save_inn, sing_inn)
from sing.inn.haar import haar_multilevel, haar_multilevel_inv
from sing.prior import tiny_prior

SIZE = 16


pytestmark = pytest.mark.usefixtures("one_thread")


def _randomize(inn, std=0.05, seed=0):
    """Give every coupling (and FiLM) non-zero weights so that f is far from the plain Haar map."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for level in inn.levels:
            for blk in level:
                for sub in (blk.sub1, blk.sub2):
                    for m in (sub.c3, sub.f1, sub.f2):
                        m.weight.copy_(torch.randn(m.weight.shape, generator=g) * std)
                        m.bias.copy_(torch.randn(m.bias.shape, generator=g) * std)
    return inn


def _sigma_table(C, v=0.1):
    return {"snr_db": [-5.0, 5.0, 15.0], "std": [[v] * C, [v / 2] * C, [v / 4] * C]}


@pytest.fixture(scope="module")
def inn3():
    cfg = INNConfig.tiny(SIZE, 3, jscc_model_id="jscc-A@123")
    cfg.sigma_c = _sigma_table(3)
    return _randomize(build_inn(cfg, seed=0)).eval()


@pytest.fixture(scope="module")
def prior3():
    return tiny_prior(SIZE, 3, seed=0)


def _x(b, c=3, size=SIZE, seed=0):
    return torch.rand(b, c, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# ---------------------------------------------------------------------------------------------
# Haar
def test_haar_orthonormal_and_exact():
    x = _x(2, 3, 8)
    y = haar_down(x)
    assert y.shape == (2, 12, 4, 4)
    assert torch.allclose(y.norm(), x.norm(), atol=1e-5)
    assert (haar_up(y) - x).abs().max() < 1e-6
    ll, det = haar_multilevel(x, 3)
    assert (haar_multilevel_inv(ll, det) - x).abs().max() < 1e-6
    for L in (1, 2, 3):
        ref = 2 ** L * torch.nn.functional.avg_pool2d(x, 2 ** L)
        assert (haar_lowpass(x, L) - ref).abs().max() < 1e-5


def test_untrained_inn_is_haar():
    f = build_inn(INNConfig.tiny(SIZE, 3), seed=0)
    x = _x(2)
    c, d, ld = f(x, 0.0)
    assert (c - haar_lowpass(x, 2)).abs().max() < 1e-6
    assert ld.abs().max() < 1e-6


# ---------------------------------------------------------------------------------------------
# invertibility and log-determinant
@settings(max_examples=25, deadline=None)
@given(snr=st.floats(-5.0, 15.0, allow_nan=False), seed=st.integers(0, 2 ** 16),
       scale=st.floats(0.1, 3.0))
def test_inverse_of_forward_is_identity(inn3, snr, seed, scale):
    x = _x(3, seed=seed) * scale
    s = torch.tensor([snr, -5.0, 15.0])
    with torch.no_grad():
        c, d, ld = inn3(x, s)
        xr = inn3.inverse(c, d, s)
    assert (xr - x).abs().max().item() < 1e-4
    assert torch.isfinite(ld).all()
    # and the other way round: f(f⁻¹(c, d)) = (c, d)
    with torch.no_grad():
        c2, d2, _ = inn3(xr, s)
    assert (c2 - c).abs().max().item() < 1e-4 and (d2 - d).abs().max().item() < 1e-4


def test_logdet_matches_autograd_jacobian():
    cfg = INNConfig(image_size=4, channels=1, levels=2, blocks=[2, 2], hidden=6, emb_dim=4)
    f = _randomize(build_inn(cfg, seed=1), std=0.2, seed=3).double()
    x = torch.rand(1, 1, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))

    def flat(v):
        c, d, _ = f(v.view(1, 1, 4, 4), torch.tensor([2.0], dtype=torch.float64))
        return torch.cat([c.flatten(), d.flatten()])

    J = torch.autograd.functional.jacobian(flat, x.flatten())
    _, logabs = torch.linalg.slogdet(J)
    with torch.no_grad():
        _, _, ld = f(x, torch.tensor([2.0], dtype=torch.float64))
    assert abs(float(logabs) - float(ld)) < 1e-8
    assert abs(float(ld)) > 1e-3          # a non-trivial map


def test_snr_conditions_the_map(inn3):
    x = _x(1)
    with torch.no_grad():
        c_lo, _, _ = inn3(x, -5.0)
        c_hi, _, _ = inn3(x, 15.0)
    assert (c_lo - c_hi).abs().max() > 1e-4


# ---------------------------------------------------------------------------------------------
# guided step
def test_guided_step_with_true_c_is_exact(inn3):
    x0 = _x(2, seed=5)
    s = torch.tensor([0.0, 10.0])
    with torch.no_grad():
        c, d, _ = inn3(x0, s)
        x0h, c2, d2 = guided_x0(inn3, x0, c, s, lam=1.0)      # observation = the true c(x0)
        c3, d3, _ = inn3(x0h, s)
    assert (x0h - x0).abs().max() < 1e-4                       # nothing to correct
    assert (c3 - c).abs().max() < 1e-4                         # range part exact
    assert (d3 - d).abs().max() < 1e-4


def test_guided_step_replaces_range_keeps_null(inn3):
    x0, other = _x(2, seed=6), _x(2, seed=7)
    s = torch.tensor([3.0, -2.0])
    with torch.no_grad():
        gy, _, _ = inn3(other, s)
        _, d, _ = inn3(x0, s)
        x0h, _, _ = guided_x0(inn3, x0, gy, s, lam=1.0)
        c_out, d_out, _ = inn3(x0h, s)
        half, _, _ = guided_x0(inn3, x0, gy, s, lam=0.5)
        c_half, _, _ = inn3(half, s)
        c0, _, _ = inn3(x0, s)
    assert (c_out - gy).abs().max() < 1e-4                     # c' = g(y) exactly (λ = 1)
    assert (d_out - d).abs().max() < 1e-4                      # d kept
    assert (c_half - (c0 + gy) / 2).abs().max() < 1e-4         # λ weighting


def _gens(n, seed=0):
    return [generator_for(seed, f"t{i}") for i in range(n)]


def test_sing_inn_noiseless_is_consistent(prior3):
    """σ_c = 0 ⇒ λ = 1 at every step, including the last: c(x_out) = g(y)."""
    cfg = INNConfig.tiny(SIZE, 3, jscc_model_id="jscc-A@123")
    cfg.sigma_c = _sigma_table(3, 0.0)
    f = _randomize(build_inn(cfg, seed=2), seed=4).eval()
    x_hat = (_x(2, seed=9) + 1) / 2
    out = sing_inn(prior3, f, x_hat, torch.tensor([0.0, 8.0]), steps=4, eta=0.85, generators=_gens(2),
                   progress=False, clamp=False, clip_x0_hat=False)
    with torch.no_grad():
        c, _, _ = f(2 * out - 1, torch.tensor([0.0, 8.0]))
    gy = observation(f, x_hat)
    assert ((c - gy).norm() / gy.norm()).item() < 1e-4


def test_sing_inn_warm_start_is_consistent_and_short(prior3):
    """start < 1: the chain begins from x̂ at start·T, runs only the steps below it, and σ_c = 0 still
    gives c(x_out) = g(y) exactly."""
    cfg = INNConfig.tiny(SIZE, 3, jscc_model_id="jscc-A@123")
    cfg.sigma_c = _sigma_table(3, 0.0)
    f = _randomize(build_inn(cfg, seed=2), seed=4).eval()
    x_hat = (_x(2, seed=11) + 1) / 2
    calls = []
    real_eps = prior3.eps
    prior3.eps = lambda x, t: calls.append(int(t[0])) or real_eps(x, t)
    try:
        out = sing_inn(prior3, f, x_hat, 3.0, steps=8, generators=_gens(2), progress=False, clamp=False,
                       clip_x0_hat=False, start=0.3)
    finally:
        del prior3.eps
    T = prior3.num_train_timesteps
    assert calls == [t for t in prior3.ddim_timesteps(8).tolist() if t <= 0.3 * T] and 0 < len(calls) < 8
    with torch.no_grad():
        c, _, _ = f(2 * out - 1, torch.tensor([3.0, 3.0]))
    gy = observation(f, x_hat)
    assert ((c - gy).norm() / gy.norm()).item() < 1e-4
    with pytest.raises(InputError, match="start must lie"):
        sing_inn(prior3, f, x_hat, 3.0, steps=8, progress=False, start=0.0)


def test_sing_inn_runs_and_is_reproducible(prior3, inn3):
    x_hat = (_x(2, seed=10) + 1) / 2
    a = sing_inn(prior3, inn3, x_hat, 5.0, steps=3, generators=_gens(2), progress=False)
    b = sing_inn(prior3, inn3, x_hat, 5.0, steps=3, generators=_gens(2), progress=False)
    assert a.shape == x_hat.shape and a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b)
    g = sing_inn(prior3, inn3, x_hat, 5.0, steps=3, generators=_gens(2), progress=False, grad_scale=0.1)
    assert torch.isfinite(g).all()
    for frac in (0.0, 1.0):                                     # Haar-only and INN-only schedules
        o = sing_inn(prior3, inn3, x_hat, 5.0, steps=3, generators=_gens(2), progress=False, inn_from=frac)
        assert torch.isfinite(o).all() and not torch.equal(o, a)
    with pytest.raises(InputError):
        sing_inn(prior3, inn3, x_hat, 5.0, steps=3, progress=False, inn_from=1.5)
    # σ_c > 0: the result is not forced onto g(y)
    with torch.no_grad():
        c, _, _ = inn3(2 * a - 1, 5.0)
    assert (c - observation(inn3, x_hat)).abs().max() > 1e-3


# ---------------------------------------------------------------------------------------------
# bad input
def test_snr_outside_range_is_clamped_with_warning(inn3, prior3):
    with pytest.warns(UserWarning, match=r"\[-5, 15\] dB"):
        s = inn3.snr(torch.tensor([-9.0, 20.0]), 2)
    assert s.tolist() == [-5.0, 15.0]
    x_hat = (_x(1, seed=11) + 1) / 2
    with pytest.warns(UserWarning, match=r"outside SING-INN's trained range"):
        sing_inn(prior3, inn3, x_hat, 25.0, steps=2, generators=_gens(1), progress=False)
    with pytest.warns(UserWarning, match=r"\[16\.0\] dB"):       # estimate off by +2 dB → 16 dB
        sing_inn(prior3, inn3, x_hat, 14.0, steps=1, generators=_gens(1), progress=False,
                 snr_offset_db=2.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        inn3.snr(3.0, 1)                                        # in range: silent
    with pytest.raises(InputError):
        inn3.snr(float("nan"), 1)


def test_inn_for_another_jscc_is_refused(tmp_path, inn3, prior3):
    d = tmp_path / "inn"
    save_inn(d, inn3)
    m = load_inn(d, jscc_model_id="jscc-A@123")                 # its own JSCC: fine
    x = _x(1)
    assert torch.allclose(m(x, 0.0)[0], inn3(x, 0.0)[0])
    with pytest.raises(CheckpointError, match="jscc-A@123"):
        load_inn(d, jscc_model_id="jscc-B@456")
    with pytest.raises(CheckpointError, match="train-inn"):
        sing_inn(prior3, inn3, (x + 1) / 2, 0.0, steps=2, progress=False, model_id="jscc-B@456")
    save_model(tmp_path / "notinn", {"w": torch.zeros(1)}, {"kind": "sing.jscc", "version": 1})
    with pytest.raises(CheckpointError, match="expected 'sing.inn'"):
        load_inn(tmp_path / "notinn")


def test_shape_errors(inn3, prior3):
    with pytest.raises(InputError, match="multiples of"):
        inn3(torch.zeros(1, 3, 10, 12), 0.0)                    # not divisible by 2^levels
    with pytest.raises(InputError):
        inn3(torch.zeros(1, 1, 16, 16), 0.0)                    # wrong channel count
    with pytest.raises(InputError):
        inn3.inverse(torch.zeros(1, 3, 4, 4), torch.zeros(1, 5), 0.0)
    with pytest.raises(InputError, match="blocks"):
        INNConfig(image_size=16, levels=2, blocks=[1, 2, 3])
    with pytest.raises(InputError):
        INNConfig(image_size=12, levels=3)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2 ** 16), snr=st.floats(-5.0, 15.0))
def test_untrained_loss_terms_equal_the_haar_baseline(seed, snr):
    """c = g(x) and f⁻¹ = Haar⁻¹ at init: loss_c = baseline, loss_d = 0, loss_inv = baseline·m/n."""
    from sing.inn.train import inn_loss
    f = build_inn(INNConfig.tiny(SIZE, 3), seed=0)
    x, xh = (_x(2, seed=seed) + 1) / 2, (_x(2, seed=seed + 1) + 1) / 2
    _, parts = inn_loss(f, x, xh, torch.full((2,), snr), lambda_d=0.1, lambda_inv=1.0)
    assert math.isclose(parts["loss_c"], parts["baseline"], rel_tol=1e-5)
    assert parts["loss_d"] < 1e-12
    m_over_n = (SIZE // 4) ** 2 / SIZE ** 2
    assert math.isclose(parts["loss_inv"], parts["baseline"] * m_over_n, rel_tol=1e-4)


# ---------------------------------------------------------------------------------------------
# training (tiny random DeepJSCC for Fashion-MNIST 32×32) and resume
@pytest.fixture(scope="module")
def fmnist_jscc_dir(tmp_path_factory):
    from sing.data import FMNIST_DIR
    import os
    if not os.path.isdir(FMNIST_DIR):
        pytest.skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
    from sing.jscc import JSCCConfig, build_jscc
    torch.manual_seed(0)
    cfg = JSCCConfig.tiny(image_size=32, channels=1, bcr="1/12", dataset="fmnist")
    d = tmp_path_factory.mktemp("models") / "jscc-fm-tiny"
    save_model(d, build_jscc(cfg).state_dict(), cfg.to_dict())
    return d


def _train_args(jscc, out, steps, **kw):
    from sing.inn import train
    p = argparse.ArgumentParser()
    train.add_arguments(p)
    argv = ["--jscc", str(jscc), "--out", str(out), "--steps", str(steps), "--batch", "8",
            "--blocks", "1,1", "--hidden", "8", "--lr", "3e-3", "--calib-images", "8",
            "--log-every", "5", "--ckpt-every", "1000", "--no-progress", "--seed", "1"]
    for k, v in kw.items():
        argv += [f"--{k.replace('_', '-')}", str(v)]
    return p.parse_args(argv)


def cfg_lambda_inv(out):
    return json.loads((out / "config.json").read_text())["lambda_inv"]


def test_training_decreases_loss_and_resumes(tmp_path, fmnist_jscc_dir, capsys):
    from sing.inn import train
    from sing.jscc import load_jscc
    out = tmp_path / "inn"
    assert train.run(_train_args(fmnist_jscc_dir, out, 40)) == 0
    hist = json.loads((out / "history.json").read_text())
    assert hist[-1]["step"] == 40
    assert hist[-1]["loss_c"] < hist[0]["loss_c"]
    assert hist[-1]["loss_c"] < hist[-1]["baseline"]
    assert "loss_inv" in hist[-1] and cfg_lambda_inv(out) == 1.0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["kind"] == "sing.inn" and cfg["jscc_model_id"] == load_jscc(fmnist_jscc_dir).model_id
    sc = cfg["sigma_c"]
    assert len(sc["snr_db"]) == len(sc["std"]) == 9 and len(sc["std"][0]) == 1
    mean = lambda rows: sum(r[0] for r in rows) / len(rows)
    assert mean(sc["std"]) < mean(sc["std_haar"])               # better than the Haar/avgpool model
    assert "SING-INN for" in (out / "README.md").read_text()
    # resume: same arguments, more steps
    capsys.readouterr()
    assert train.run(_train_args(fmnist_jscc_dir, out, 50)) == 0
    assert "resuming" in capsys.readouterr().out
    state = json.loads((out / "run" / "train_state.json").read_text())
    assert state["step"] == 50
    hist2 = json.loads((out / "history.json").read_text())
    assert hist2[: len(hist)] == hist and hist2[-1]["step"] == 50
    inn = load_inn(out, jscc_model_id=load_jscc(fmnist_jscc_dir).model_id)
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    c, d, _ = inn(x, 0.0)
    assert (inn.inverse(c, d, 0.0) - x).abs().max() < 1e-4
    # another architecture in the same directory is refused
    with pytest.raises(InputError, match="hidden"):
        train.run(_train_args(fmnist_jscc_dir, out, 60, hidden=16))


def test_two_process_accelerate_training(tmp_path, fmnist_jscc_dir):
    """`--num-processes 2`: two real CPU processes, each its own data/SNR stream, gradients
    averaged; the model written once, recording 2 processes."""
    import subprocess
    import sys
    from pathlib import Path
    repo = Path(__file__).resolve().parents[1]
    py = repo / ".venv" / "bin" / "python"
    out = tmp_path / "inn2"
    argv = [str(py if py.exists() else sys.executable), "-m", "sing.cli", "train-inn", "--jscc",
            str(fmnist_jscc_dir), "--out", str(out), "--steps", "6", "--batch", "8", "--blocks", "1,1",
            "--hidden", "8", "--calib-images", "8", "--log-every", "3", "--no-progress",
            "--num-processes", "2", "--threads", "1"]
    r = subprocess.run(argv, cwd=repo, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["training"]["processes"] == 2 and cfg["training"]["steps"] == 6
    assert "--num-processes 2" in cfg["training"]["command"]
    assert [h["step"] for h in json.loads((out / "history.json").read_text())] == [3, 6]
    assert r.stdout.count('"step": 6') == 1                     # rank 0 logs, once
    # it differs from one process with the same global batch (each rank draws its own pairs)
    from sing.inn import train
    one = tmp_path / "inn1"
    assert train.run(_train_args(fmnist_jscc_dir, one, 6, blocks="1,1", lr="5e-4", seed=0)) == 0
    a, b = load_inn(out), load_inn(one)
    assert not all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


# ---------------------------------------------------------------------------------------------
# CLI and bench
def test_cli_and_bench(tmp_path, prior3, inn3):
    from sing.cli import build_parser
    from sing.inn import bench
    args = build_parser("train-inn").parse_args(["train-inn", "--jscc", "J", "--out", "O"])
    assert args.snr_min == -5.0 and args.snr_max == 15.0 and args.steps > 0
    res = bench.measure(prior3, inn3, batch=2, steps=2, repeats=1)
    assert res["plain_s_per_step"] > 0 and res["ratio"] > 0
    p = argparse.ArgumentParser()
    bench.add_arguments(p)
    out = tmp_path / "bench.json"
    a = p.parse_args(["--preset", "tiny", "--size", "16", "--batch", "2", "--steps", "1",
                      "--repeats", "1", "--out", str(out)])
    assert bench.run(a) == 0
    r = json.loads(out.read_text())
    assert r["schema"] == "sing.bench.inn-guidance/1" and r["result"]["ratio"] > 0
    assert r["setup"]["batch"] == 2 and "device" in r["setup"]


def test_receiver_runs_sing_inn(tiny_jscc_dir):
    """The receiver's `sing-inn` method (sing.methods) drives this sampler end to end."""
    from sing.jscc import load_jscc
    from sing.methods import Receiver
    jscc = load_jscc(tiny_jscc_dir)
    cfg = INNConfig.tiny(32, 3, jscc_model_id=jscc.model_id)
    cfg.sigma_c = _sigma_table(3)
    rx = Receiver(jscc, prior=tiny_prior(32, 3, seed=0), inn=_randomize(build_inn(cfg, seed=0)).eval())
    assert "sing-inn" in rx.methods()
    with torch.no_grad():
        y = jscc.encode(torch.rand(2, 3, 32, 32), 0.0)
    out = rx.restore("sing-inn", y, 0.0, ["a", "b"], steps=2)
    assert out.shape == (2, 3, 32, 32) and 0 <= out.min() and out.max() <= 1


def test_inn_and_sing_inn_at_another_size(inn3, prior3):
    """f is convolutional: at 24×40 (trained at the prior's size) it inverts exactly, c is the
    coarse 6×10 map, and SING-INN restores a 24×40 x̂ with the prior run at that size."""
    g = torch.Generator().manual_seed(5)
    x = torch.rand(2, 3, 24, 40, generator=g) * 2 - 1
    with torch.no_grad():
        c, d, _ = inn3(x, 3.0)
        back = inn3.inverse(c, d, 3.0)
    assert c.shape == (2, 3, 6, 10) and d.shape == (2, inn3.d_size_at((24, 40)))
    assert torch.allclose(back, x, atol=1e-5)
    x_hat = (x[:1] + 1) / 2
    out = sing_inn(prior3, inn3, x_hat, 5.0, steps=3, generators=_gens(1), progress=False)
    assert out.shape == x_hat.shape and torch.isfinite(out).all()
