# SPDX-License-Identifier: GPL-3.0-or-later
"""The sampler's DC posterior (sing/prior/dc_posterior.py): the closed form, its limits, the config
round trip, and what it does to samples of a prior whose DC estimate is wrong."""
from __future__ import annotations

import json
import math

import pytest
import torch

from sing.errors import CheckpointError, InputError
from sing.prior import load_prior, save_prior, tiny_prior
from sing.prior.dc_posterior import DCPrior, main as dc_main, of_prior
from sing.prior.sample import sample_images


def _dc(c=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(c, c, generator=g) * 0.3
    return DCPrior(mean=(torch.randn(c, generator=g) * 0.2).tolist(),
                   cov=(a @ a.T + 0.05 * torch.eye(c)).tolist(), n_images=100, data="synthetic")


def test_posterior_mean_is_the_bayes_estimate():
    """Draw m_0 ~ N(μ, Σ), x_t from the forward process: Eq. 1 has a lower error than both the
    naive m_t/√ᾱ and the prior mean μ, and matches a least-squares fit on the samples."""
    dc, C, H = _dc(), 3, 8
    mu, S = torch.tensor(dc.mean), torch.tensor(dc.cov)
    L = torch.linalg.cholesky(S)
    g = torch.Generator().manual_seed(1)
    n = 4000
    m0 = mu + torch.randn(n, C, generator=g) @ L.T
    for a in (0.999, 0.05, 2e-4):
        x0 = m0[:, :, None, None] + 0.1 * torch.randn(n, C, H, H, generator=g)
        x0 = x0 - x0.mean((2, 3), keepdim=True) + m0[:, :, None, None]
        xt = math.sqrt(a) * x0 + math.sqrt(1 - a) * torch.randn(n, C, H, H, generator=g)
        post = dc.posterior_mean(xt, a)
        err_post = (post - m0).pow(2).mean()
        err_naive = (xt.mean((2, 3)) / math.sqrt(a) - m0).pow(2).mean()
        err_mu = (mu - m0).pow(2).mean()
        assert err_post <= min(err_naive, err_mu) * 1.02, (a, err_post, err_naive, err_mu)
        # the linear least-squares estimator of m_0 from m_t on the same samples
        A = torch.cat([xt.mean((2, 3)), torch.ones(n, 1)], 1)
        w = torch.linalg.lstsq(A, m0).solution
        err_ls = (A @ w - m0).pow(2).mean()
        assert err_post <= err_ls * 1.05, (a, err_post, err_ls)


def test_limits_and_correct_keeps_the_rest():
    dc = _dc()
    x = torch.randn(2, 3, 16, 16)
    # ᾱ → 1: the measured mean; ᾱ → 0: the prior mean
    torch.testing.assert_close(dc.posterior_mean(x, 1.0), x.mean((2, 3)), atol=1e-5, rtol=0)
    torch.testing.assert_close(dc.posterior_mean(x, 1e-12), torch.tensor(dc.mean).expand(2, 3).float(),
                               atol=1e-4, rtol=0)
    x0 = torch.randn(2, 3, 16, 16) * 3 + 5
    y = dc.correct(x0, x, 0.3)
    torch.testing.assert_close(y - y.mean((2, 3), keepdim=True), x0 - x0.mean((2, 3), keepdim=True))
    torch.testing.assert_close(y.mean((2, 3)), dc.posterior_mean(x, 0.3))
    with pytest.raises(InputError, match="3-channel"):
        dc.posterior_mean(torch.randn(1, 1, 8, 8), 0.5)


def test_estimate_and_malformed_dicts():
    imgs = torch.rand(50, 3, 8, 8) * 0.2 + torch.tensor([0.1, 0.5, 0.9])[:, None, None]
    dc = DCPrior.estimate(imgs, data="x")
    assert dc.n_images == 50 and dc.channels == 3
    assert torch.allclose(torch.tensor(dc.mean, dtype=torch.float64), (imgs.double() * 2 - 1).mean((0, 2, 3)), atol=1e-6)
    assert DCPrior.from_dict(dc.to_dict()) == dc
    with pytest.raises(CheckpointError, match="needs 'mean'"):
        DCPrior.from_dict({"cov": [[1.0]]})
    with pytest.raises(CheckpointError, match="3×3"):
        DCPrior.from_dict({"mean": [0, 0, 0], "cov": [[1.0]]})
    with pytest.raises(CheckpointError, match="non-finite"):
        DCPrior.from_dict({"mean": [float("nan")], "cov": [[1.0]]})
    with pytest.raises(InputError, match="batch"):
        DCPrior.estimate(torch.rand(1, 3, 8, 8))


def test_samples_of_a_biased_prior_keep_the_data_means():
    """Data: flat images whose channel levels m ~ N(μ, s²I). Its exact ε (Eq. 1 is then the true
    posterior) plus a small constant offset δ, as a small trained UNet has: plain DDIM drives the
    image means to the clip limits (the flat saturated colours plain DDIM gave); with the DC posterior
    the sampler is the exact one again and the means follow N(μ, s²). (δ = 0.1 alone drifts less.)"""
    prior = tiny_prior(16, 3, seed=0)
    dc = DCPrior(mean=[-0.1, 0.0, -0.2], cov=[[0.04, 0, 0], [0, 0.04, 0], [0, 0, 0.04]])
    delta = torch.tensor([0.2, -0.2, 0.1])[None, :, None, None]
    inner = prior.unet

    class Biased(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = inner
            self.config = inner.config

        def forward(self, x, t, **kw):
            out = self.inner(x, t, **kw)
            a = float(prior.alpha_bar(int(t.flatten()[0])))
            m0 = dc.posterior_mean(x, a)[:, :, None, None]
            out.sample = (x - math.sqrt(a) * m0) / math.sqrt(1 - a) + delta
            return out

    prior.unet = Biased()
    g = lambda: torch.Generator().manual_seed(0)
    plain = sample_images(prior, 16, 20, 0.0, g(), progress=False, dc=None).mean((2, 3)) * 2 - 1
    fixed = sample_images(prior, 16, 20, 0.0, g(), progress=False, dc=dc).mean((2, 3)) * 2 - 1
    mu = torch.tensor(dc.mean)
    # the channels with |δ| = 0.2 mostly saturated, far from the data's means
    assert (plain[:, :2].abs() > 0.9).float().mean() > 0.6 and (plain.mean(0) - mu).abs().max() > 0.5, plain
    assert (fixed.mean(0) - mu).abs().max() < 0.15, fixed.mean(0)     # the data's mean …
    assert 0.1 < fixed.std(0).mean() < 0.3, fixed.std(0)              # … and spread (s = 0.2)


def test_stored_with_the_prior_and_used_by_default(tmp_path, monkeypatch):
    prior = tiny_prior(16, 1, seed=3)
    d = save_prior(tmp_path / "p", prior, prior.config)
    assert of_prior(load_prior(d)) is None
    monkeypatch.setattr("sing.prior.dc_posterior.from_data",
                        lambda name, n=4096, progress=False: DCPrior([0.3], [[0.01]], 7, name))
    assert dc_main(["--prior", str(d), "--data", "fmnist"]) == 0
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["dc_prior"]["n_images"] == 7 and cfg["kind"] == "sing.prior"
    back = load_prior(d)
    dc = of_prior(back)
    assert dc is not None and dc.mean == [0.3]
    g = lambda: torch.Generator().manual_seed(0)
    auto = sample_images(back, 2, 3, 0.0, g(), progress=False)
    explicit = sample_images(back, 2, 3, 0.0, g(), progress=False, dc=dc)
    off = sample_images(back, 2, 3, 0.0, g(), progress=False, dc=None)
    torch.testing.assert_close(auto, explicit)
    assert not torch.allclose(auto, off)
    with pytest.raises(InputError, match="1-channel"):
        sample_images(back, 1, 2, 0.0, g(), progress=False, dc=_dc(3))
    with pytest.raises(CheckpointError, match="does not exist"):
        dc_main(["--prior", str(tmp_path / "nope"), "--data", "fmnist"])
