# SPDX-License-Identifier: GPL-3.0-or-later
"""SING-Zero (docs/ALGORITHMS.md §4): operators, calibration, DDNM/DDNM+ sampler.

The sampler properties hold for any ε-network, so a random tiny UNet (sing.prior.tiny_prior) is
enough: σ_y = 0 ⇒ A·x_out = y; A = I, σ_y = 0 ⇒ x_out = y; σ_y > 0 ⇒ not forced onto y.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.fft
import torch
from hypothesis import given, settings, strategies as st

from sing.channel import generator_for
from sing.errors import CheckpointError, InputError
from sing.prior import tiny_prior
from sing.zero import (AvgPool, Calibration, Identity, Spectral, blind_sigma, fit_calibration, fit_pairs,
                       load_calibration, make_operator, restore, sing_zero, travel_schedule)
from sing.zero.dct import dct2, dct_matrix, idct2

SIZE = 16
STEPS = 8


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def prior3():
    return tiny_prior(SIZE, 3, seed=0)


@pytest.fixture(scope="module")
def prior1():
    return tiny_prior(SIZE, 1, seed=1)


def _rand(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def _ops(c: int, h: int, w: int, seed: int = 0):
    gains = _rand(c, h, w, seed=seed)
    gains[gains < 0.2] = 0.0                   # some null space
    return [Identity((c, h, w)), AvgPool((c, h, w), 2), AvgPool((c, h, w), 4), Spectral(gains)]


# ---------------------------------------------------------------------------------------------
# DCT
@pytest.mark.parametrize("shape", [(1, 1, 8, 8), (2, 3, 16, 12), (1, 3, 5, 7), (3, 1, 64, 64)])
def test_dct_matches_scipy(shape):
    x = torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    ref = scipy.fft.dctn(x.numpy(), type=2, norm="ortho", axes=(-2, -1))
    np.testing.assert_allclose(dct2(x).numpy(), ref, atol=1e-12)
    np.testing.assert_allclose(idct2(dct2(x)).numpy(), x.numpy(), atol=1e-12)
    d = dct_matrix(shape[-1], dtype=torch.float64)
    assert torch.allclose(d @ d.T, torch.eye(shape[-1], dtype=torch.float64), atol=1e-12)


# ---------------------------------------------------------------------------------------------
# operators: pseudo-inverse and SVD-layout properties (hypothesis over shapes and channels)
@settings(max_examples=25, deadline=None)
@given(c=st.sampled_from([1, 3]), hb=st.integers(1, 6), wb=st.integers(1, 6), b=st.integers(1, 3),
       seed=st.integers(0, 10_000))
def test_operator_pinv_properties(c, hb, wb, b, seed):
    h, w = 4 * hb, 4 * wb
    x = torch.randn(b, c, h, w, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    for op in _ops(c, h, w, seed):
        A, Ap = (lambda v: op.A(v.float()).double()), (lambda v: op.A_pinv(v.float()).double())
        y = A(x)
        assert tuple(y.shape[1:]) == op.observation_shape()
        assert torch.allclose(A(Ap(y)), y, atol=1e-4), op.name                 # A A† A = A
        assert torch.allclose(Ap(A(Ap(y))), Ap(y), atol=1e-4), op.name         # A† A A† = A†
        # V is orthonormal and the singular-value layout matches the operator: A†A = V·P·Vᵀ
        v = op.to_spectral(x.float())
        assert torch.allclose(op.from_spectral(v).double(), x, atol=1e-4), op.name
        assert torch.allclose(v.double().norm(), x.norm(), rtol=1e-4), op.name
        proj = op.from_spectral(op.range_mask() * v).double()
        assert torch.allclose(proj, Ap(A(x)), atol=1e-4), op.name
        # Vᵀ A† y shortcut = the slow path
        assert torch.allclose(op.pinv_spectral(y.float()), op.to_spectral(op.A_pinv(y.float())), atol=1e-4)


def test_avgpool_singular_values_are_one_over_s():
    op = AvgPool((1, 8, 8), 4)
    v = torch.zeros(1, 1, 8, 8)
    v[..., 0, 0] = 1.0                         # the block-DC basis vector of the first block
    img = op.from_spectral(v)
    assert torch.allclose(img[..., :4, :4], torch.full((4, 4), 0.25))   # constant 1/s
    assert math.isclose(float(op.A(img).norm()), 1 / 4, rel_tol=1e-6)   # ‖A v‖ = s_i = 1/s
    assert float(op.singular_values.max()) == pytest.approx(0.25)
    assert int((op.singular_values > 0).sum()) == 4                      # one per block
    y = torch.arange(4.0).view(1, 1, 2, 2)
    assert torch.equal(op.A_pinv(y)[0, 0, :4, :4], torch.zeros(4, 4))   # replicate up-sampling
    assert torch.equal(op.A_pinv(y)[0, 0, 4:, 4:], torch.full((4, 4), 3.0))


def test_spectral_is_diagonal_in_dct_and_truncates():
    h = torch.tensor([[[1.0, 0.5], [0.005, -0.25]]])
    op = Spectral(h, tau=0.01)
    x = torch.randn(2, 1, 2, 2)
    assert torch.allclose(dct2(op.A(x)), dct2(x) * torch.tensor([[[1.0, 0.5], [0.0, -0.25]]]), atol=1e-6)
    assert torch.allclose(op.singular_values, torch.tensor([[[[1.0, 0.5], [0.0, 0.25]]]]))


def test_make_operator_names_and_errors():
    assert make_operator("avgpool-4", (3, 16, 16)).name == "avgpool-4"
    assert make_operator("avgpool4", (3, 16, 16)).factor == 4
    with pytest.raises(InputError, match="unknown SING-Zero operator"):
        make_operator("fft", (3, 16, 16))
    with pytest.raises(InputError, match="divisible"):
        make_operator("avgpool-3", (3, 16, 16))
    with pytest.raises(InputError, match="calibration"):
        make_operator("spectral", (3, 16, 16))


# ---------------------------------------------------------------------------------------------
# the sampler
def _residual(op, x, y):
    return float((op.A(x) - y).norm() / y.norm())


@pytest.mark.parametrize("name", ["avgpool-2", "avgpool-4", "spectral"])
@pytest.mark.parametrize("channels", [1, 3])
def test_ddnm_noiseless_is_consistent(name, channels, prior1, prior3):
    prior = prior3 if channels == 3 else prior1
    shape = (channels, SIZE, SIZE)
    op = make_operator(name, shape, h=_rand(*shape, seed=3).clamp(0, 1))
    x_true = _rand(2, *shape, seed=4)
    y = op.A(x_true)                              # in the range of A
    gens = [generator_for(0, i) for i in range(2)]
    # Clamping to [0, 1] is a box projection, not a projection onto {Ax = y}: check unclamped.
    out = restore(prior, op, y, 0.0, steps=STEPS, generators=gens, clamp=False, progress=False)
    assert _residual(op, out, y) < 1e-4
    # and with time-travel
    out = restore(prior, op, y, 0.0, steps=STEPS, travel=(2, 2), clamp=False, progress=False)
    assert _residual(op, out, y) < 1e-4


def test_identity_noiseless_returns_y(prior3):
    y = _rand(3, 3, SIZE, SIZE, seed=5)
    out = restore(prior3, Identity((3, SIZE, SIZE)), y, 0.0, steps=STEPS, progress=False)
    assert torch.allclose(out, y, atol=1e-5)


@pytest.mark.parametrize("name", ["identity", "avgpool-2", "spectral"])
def test_ddnm_plus_is_not_forced_onto_y(name, prior3):
    shape = (3, SIZE, SIZE)
    op = make_operator(name, shape, h=(0.5 + 0.5 * _rand(*shape, seed=6)))
    x_true = _rand(2, *shape, seed=7)
    clean = op.A(x_true)
    sigma = 0.1
    y = clean + sigma * torch.randn(clean.shape, generator=torch.Generator().manual_seed(8))
    out = restore(prior3, op, y, sigma, steps=STEPS, clamp=False, progress=False)
    rms = float((op.A(out) - y).pow(2).mean().sqrt())
    assert 0.2 * sigma < rms < 5 * sigma, rms     # residual of the order of σ_y, not 0
    # a per-frequency σ map of the same level behaves the same way
    out = restore(prior3, op, y, torch.full((1, *shape), sigma), steps=STEPS, clamp=False, progress=False)
    assert 0.2 * sigma < float((op.A(out) - y).pow(2).mean().sqrt()) < 5 * sigma


def test_seeded_per_image_independent_of_batch(prior3):
    op = Identity((3, SIZE, SIZE))
    y = _rand(2, 3, SIZE, SIZE, seed=9)
    both = restore(prior3, op, y, 0.05, steps=STEPS, progress=False,
                   generators=[generator_for(1, "a"), generator_for(1, "b")])
    one = restore(prior3, op, y[1:], 0.05, steps=STEPS, progress=False, generators=[generator_for(1, "b")])
    assert torch.allclose(both[1:], one, atol=1e-4)
    again = restore(prior3, op, y, 0.05, steps=STEPS, progress=False,
                    generators=[generator_for(1, "a"), generator_for(1, "b")])
    assert torch.equal(both, again)


def test_warm_start_consistency_cost_and_errors(prior3):
    """start < 1 (SDEdit/CCDF warm start from x̂): still exactly consistent at σ_y = 0, costs only the
    steps below start·T, and begins from x_init (a chain started at t ≈ 0 barely moves it)."""
    from sing.prior.ddim import start_position, unet_evals
    shape = (3, SIZE, SIZE)
    op = make_operator("avgpool-2", shape)
    x_true = _rand(2, *shape, seed=11)
    y = op.A(x_true)
    x_init = _rand(2, *shape, seed=12)
    out = restore(prior3, op, y, 0.0, steps=STEPS, clamp=False, progress=False, start=0.4, x_init01=x_init)
    assert _residual(op, out, y) < 1e-4
    out = restore(prior3, op, y, 0.0, steps=STEPS, travel=(1, 2), clamp=False, progress=False, start=0.4,
                  x_init01=x_init)
    assert _residual(op, out, y) < 1e-4
    # cost: only the DDIM timesteps t ≤ start·T are evaluated
    calls = []
    real_eps = prior3.eps
    prior3.eps = lambda x, t: calls.append(int(t[0])) or real_eps(x, t)
    try:
        restore(prior3, op, y, 0.0, steps=STEPS, progress=False, start=0.4, x_init01=x_init)
    finally:
        del prior3.eps
    T = prior3.num_train_timesteps
    ts = prior3.ddim_timesteps(STEPS).tolist()
    assert calls == [t for t in ts if t <= 0.4 * T] and 0 < len(calls) < STEPS
    assert unet_evals(prior3, STEPS, 0.4) == len(calls) and unet_evals(prior3, STEPS) == STEPS
    assert unet_evals(None, STEPS, 0.4, num_train_timesteps=T) == len(calls)      # worker-side count
    assert start_position(ts, 1.0, T) == 0
    # a chain begun at the last timestep, with an observation it is not forced onto, stays near x_init
    far = restore(prior3, Identity(shape), torch.zeros(2, *shape), 10.0, steps=1000, clamp=False,
                  progress=False, start=1.5 / T, x_init01=x_init)
    assert float((far - x_init).abs().max()) < 0.05
    with pytest.raises(InputError, match="x_init"):
        restore(prior3, op, y, 0.0, steps=STEPS, progress=False, start=0.5)
    with pytest.raises(InputError, match="start must lie"):
        restore(prior3, op, y, 0.0, steps=STEPS, progress=False, start=0.0, x_init01=x_init)
    with pytest.raises(InputError, match="x_init has shape"):
        restore(prior3, op, y, 0.0, steps=STEPS, progress=False, start=0.5, x_init01=x_init[:, :1])


def test_travel_schedule():
    assert travel_schedule(4) == [0, 1, 2, 3, 4]
    seq = travel_schedule(10, (3, 2))
    assert seq[0] == 0 and seq[-1] == 10
    assert all(abs(b - a) in (1, 3) for a, b in zip(seq, seq[1:]))
    assert sum(1 for a, b in zip(seq, seq[1:]) if b > a) == 10 + 3 * 3   # 3 jump points × l steps redone
    with pytest.raises(InputError):
        travel_schedule(4, (4, 2))


def test_bad_inputs(prior3):
    op = AvgPool((3, SIZE, SIZE), 4)
    with pytest.raises(InputError, match="observation of shape"):
        restore(prior3, op, _rand(1, 3, SIZE, SIZE), 0.0, steps=2, progress=False)   # not pooled
    with pytest.raises(InputError, match="observation of shape"):
        restore(prior3, Identity((3, SIZE, SIZE)), _rand(1, 1, SIZE, SIZE), 0.0, steps=2, progress=False)
    with pytest.raises(InputError, match="prior generates"):
        restore(prior3, Identity((1, SIZE, SIZE)), _rand(1, 1, SIZE, SIZE), 0.0, steps=2, progress=False)
    with pytest.raises(InputError, match="NaN"):
        restore(prior3, Identity((3, SIZE, SIZE)), torch.full((1, 3, SIZE, SIZE), float("nan")), 0.0,
                steps=2, progress=False)
    with pytest.raises(InputError, match="sigma_y"):
        restore(prior3, Identity((3, SIZE, SIZE)), _rand(1, 3, SIZE, SIZE), -1.0, steps=2, progress=False)
    with pytest.raises(InputError, match="generator"):
        restore(prior3, Identity((3, SIZE, SIZE)), _rand(2, 3, SIZE, SIZE), 0.0, steps=2, progress=False,
                generators=[generator_for(0, 0)])


# ---------------------------------------------------------------------------------------------
# calibration
def test_fit_pairs_recovers_a_known_linear_degradation():
    g = torch.Generator().manual_seed(11)
    x = torch.rand(64, 3, SIZE, SIZE, generator=g)
    h0 = torch.linspace(1.0, 0.2, SIZE)[:, None] * torch.linspace(1.0, 0.5, SIZE)[None, :]
    h0 = h0.expand(3, SIZE, SIZE)
    noise = 0.02
    xh = idct2(h0 * dct2(x)) + noise * torch.randn(x.shape, generator=g)
    r = fit_pairs([(x[:32], xh[:32]), (x[32:], xh[32:])], pool_factors=[2, 4])
    assert (r["h"] - h0).abs().mean() < 0.02
    assert r["noise"].sqrt().mean() == pytest.approx(noise, rel=0.15)
    assert r["sigma_pool"][4] < r["sigma_pool"][2] < r["sigma_identity"]


def test_blind_sigma_on_white_noise():
    g = torch.Generator().manual_seed(12)
    y = 0.5 + 0.05 * torch.randn(4, 3, 32, 32, generator=g)
    assert torch.allclose(blind_sigma(y), torch.full((4,), 0.05), rtol=0.15)


def _cal(model_id="jscc-a", snrs=(0.0, 10.0)):
    s = len(snrs)
    h = torch.stack([torch.full((3, SIZE, SIZE), 0.5 + 0.04 * v) for v in snrs])
    return Calibration(model_id=model_id, snr_db=list(snrs), h=h, noise=torch.full_like(h, 0.01),
                       sigma_identity=torch.tensor([0.2 - 0.01 * v for v in snrs]),
                       sigma_pool={4: torch.tensor([0.1] * s)})


def test_calibration_interpolates_and_clamps_with_warning():
    cal = _cal()
    p = cal.at([5.0, 0.0], batch=2)
    assert torch.allclose(p.sigma_identity, torch.tensor([0.15, 0.2]))
    assert torch.allclose(p.h[0], torch.full((3, SIZE, SIZE), 0.7))
    with pytest.warns(UserWarning, match=r"calibrated range \[0, 10\] dB"):
        p = cal.at([20.0, -3.0], batch=2)
    assert p.snr_db.tolist() == [10.0, 0.0]
    assert torch.allclose(p.sigma_identity, torch.tensor([0.1, 0.2]))


@settings(max_examples=25, deadline=None)
@given(h=st.integers(8, 80), w=st.integers(8, 80), seed=st.integers(0, 2 ** 16))
def test_calibration_for_another_size_keeps_the_frequency_response(h, w, seed):
    """for_shape evaluates h and N at the same normalised frequency k/(2N): a response that is a
    linear function of frequency is carried exactly (up to the clamp at the top frequency); a flat
    one stays flat; the σ's are kept; its own shape gives itself."""
    n0 = SIZE
    fy = torch.arange(n0, dtype=torch.float64) / (2 * n0)                   # cycles/pixel per row index
    g = torch.Generator().manual_seed(seed)
    a, b = float(torch.rand(1, generator=g)), float(torch.rand(1, generator=g))
    resp = lambda fr, fc: (0.2 + 0.5 * a * fr[:, None] + 0.5 * b * fc[None, :]).float()
    hh = torch.stack([resp(fy, fy).expand(3, -1, -1)] * 2)
    cal = Calibration(model_id="m", snr_db=[0.0, 10.0], h=hh, noise=torch.full_like(hh, 0.03),
                      sigma_identity=torch.tensor([0.2, 0.1]), sigma_pool={2: torch.tensor([0.1, 0.05])})
    assert cal.for_shape((3, n0, n0)) is cal
    big = cal.for_shape((3, h, w))
    assert big.image_shape == (3, h, w) and big.snr_db == cal.snr_db
    top = (n0 - 1) / (2 * n0)
    fr = (torch.arange(h, dtype=torch.float64) / (2 * h)).clamp(max=top)
    fc = (torch.arange(w, dtype=torch.float64) / (2 * w)).clamp(max=top)
    assert torch.allclose(big.h[1, 0], resp(fr, fc), atol=1e-5)
    assert torch.allclose(big.noise, torch.full((2, 3, h, w), 0.03), atol=1e-6)
    assert torch.equal(big.sigma_identity, cal.sigma_identity) and torch.equal(big.sigma_pool[2], cal.sigma_pool[2])
    with pytest.raises(InputError, match="3-channel"):
        cal.for_shape((1, h, w))


def test_calibration_save_load_and_model_check(tmp_path):
    cal = _cal()
    cal.save(tmp_path / "cal")
    back = load_calibration(tmp_path / "cal", model_id="jscc-a")
    assert back.snr_db == cal.snr_db and torch.equal(back.h, cal.h) and sorted(back.sigma_pool) == [4]
    assert (tmp_path / "cal" / "README.md").exists()
    with pytest.raises(CheckpointError, match="does not belong to JSCC model 'jscc-b'"):
        load_calibration(tmp_path / "cal", model_id="jscc-b")


def test_calibration_of_a_tiny_jscc_and_sing_zero(tmp_path, prior3):
    from sing.jscc import JSCCConfig, build_jscc
    torch.manual_seed(0)
    jscc = build_jscc(JSCCConfig.tiny(SIZE, 3)).eval()
    x = _rand(8, 3, SIZE, SIZE, seed=13)
    cal = fit_calibration(jscc, x, [10.0, 0.0], batch_size=4, progress=False)
    assert cal.snr_db == [0.0, 10.0] and cal.model_id == jscc.model_id
    assert cal.h.shape == (2, 3, SIZE, SIZE) and 0 <= float(cal.h.min()) and float(cal.h.max()) <= 1
    assert sorted(cal.sigma_pool) == [2, 4, 8]
    cal.save(tmp_path / "cal")
    cal = load_calibration(tmp_path / "cal", model_id=jscc.model_id)

    with torch.no_grad():
        xh = jscc.decode(jscc.encode(x[:2], 5.0), 5.0)
    gens = [generator_for(0, i) for i in range(2)]
    for op in ("spectral", "identity", "avgpool-4"):
        out, info = sing_zero(prior3, cal, xh, torch.tensor([5.0, 3.0]), operator=op, steps=4,
                              generators=gens, progress=False, model_id=jscc.model_id, return_info=True)
        assert out.shape == xh.shape and float(out.min()) >= 0 and float(out.max()) <= 1
        assert info["sigma_source"] == "calibrated" and info["snr_db_used"] == [5.0, 3.0]
    with pytest.raises(CheckpointError, match="does not belong"):
        sing_zero(prior3, cal, xh, 5.0, model_id="another-model", steps=2, progress=False)
    with pytest.warns(UserWarning, match="calibrated range"):
        sing_zero(prior3, cal, xh, 20.0, operator="identity", steps=2, progress=False)
    # another size: the calibration is resampled over frequency and the prior runs at that size
    small = xh[:, :, :8, :12]
    out, info = sing_zero(prior3, cal, small, 5.0, steps=2, progress=False, generators=gens,
                          model_id=jscc.model_id, return_info=True)
    assert out.shape == small.shape and info["sigma_source"] == "calibrated"
    assert cal.for_shape((3, 8, 12)) is cal.for_shape((3, 8, 12))            # cached per shape
    with pytest.raises(InputError, match="3-channel images, not 1"):
        sing_zero(prior3, cal, small[:, :1], 5.0, steps=2, progress=False)
    # no calibration: blind σ for identity / avgpool, refused for spectral
    out, info = sing_zero(prior3, None, xh, 5.0, operator="identity", steps=2, progress=False,
                          return_info=True)
    assert info["sigma_source"] == "blind"
    with pytest.raises(InputError, match="needs a calibration"):
        sing_zero(prior3, None, xh, 5.0, operator="spectral", steps=2, progress=False)


def test_guidance_bench_runs(prior3):
    from sing.zero.bench import measure
    res = measure(prior3, ["spectral", "avgpool-4"], batch=1, steps=2, repeats=1)
    assert set(res["ratio"]) == {"spectral", "avgpool-4"} and res["seconds_per_step"]["plain"] > 0
    assert all(v > 1.0 for v in res["ratio_from_isolated"].values())
