# SPDX-License-Identifier: GPL-3.0-or-later
"""Baselines (docs/ALGORITHMS.md §6): DPS through the known JSCC, SDEdit (the prior alone from x̂),
and the digital separation bound.

DPS runs on a random tiny prior and a random tiny DeepJSCC: the properties checked (seeded and
deterministic, ζ = 0 is plain DDIM, guidance lowers the data term ‖y − E(x)‖, no cross-talk
between the images of a batch) hold for any networks. Digital separation uses synthetic smooth
images and the real codecs (Pillow's libjpeg / libwebp).
"""
from __future__ import annotations

import io
import math

import pytest
import torch

from sing.baselines import digital_separation, dps_residual, dps_restore, rate_bits, sdedit_restore
from sing.baselines.digital import _encode
from sing.channel import ChannelConfig, apply_channel, channel_generator, generator_for
from sing.errors import InputError
from sing.jscc import JSCCConfig, build_jscc
from sing.metrics import psnr
from sing.prior import tiny_prior
from sing.prior.ddim import ddim_sample

SIZE = 16
STEPS = 8
SNR = 10.0


pytestmark = pytest.mark.usefixtures("one_thread")


def _jscc(channels: int, seed: int = 0):
    g = torch.random.fork_rng()
    with g:
        torch.manual_seed(seed)
        return build_jscc(JSCCConfig.tiny(image_size=SIZE, channels=channels, bcr="1/12")).eval()


@pytest.fixture(scope="module")
def link3():
    """Tiny prior + tiny JSCC (16×16 RGB, BCR 1/12 → k = 64) and received symbols of 2 images."""
    prior, jscc = tiny_prior(SIZE, 3, seed=0), _jscc(3)
    x = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        z = jscc.encode(x, SNR)
    y = apply_channel(z, ChannelConfig(snr_db=SNR), [channel_generator(0, i) for i in range(2)]).y
    return prior, jscc, y


def _gens(seed: int, n: int = 2, start: int = 0):
    return [generator_for(seed, f"restore:{i}") for i in range(start, start + n)]


# ---------------------------------------------------------------------------------------------
# SDEdit: the prior alone from x̂
def _decoded(b: int = 2, size: int = SIZE) -> torch.Tensor:
    return torch.rand(b, 3, size, size, generator=torch.Generator().manual_seed(7))


def test_sdedit_is_the_range_null_space_chain_with_an_empty_range():
    """SDEdit is SING-Zero's chain without its correction: DDNM with an operator whose range is
    empty (every gain below τ) is the same deterministic chain (η = 0), step for step."""
    from sing.zero.ddnm import restore
    from sing.zero.operators import make_operator
    prior, x_hat = tiny_prior(SIZE, 3, seed=0), _decoded()
    ours = sdedit_restore(prior, x_hat, steps=STEPS, eta=0.0, start=0.3, generators=_gens(0), progress=False)
    empty = make_operator("spectral", (3, SIZE, SIZE), h=torch.zeros(2, 3, SIZE, SIZE))
    ddnm = restore(prior, empty, x_hat, 0.0, steps=STEPS, eta=0.0, start=0.3, generators=_gens(0),
                   progress=False, x_init01=x_hat)
    assert torch.allclose(ours, ddnm, atol=1e-5)
    full = make_operator("identity", (3, SIZE, SIZE))       # and a full range is not the same chain
    guided = restore(prior, full, x_hat, 0.0, steps=STEPS, eta=0.0, start=0.3, generators=_gens(0),
                     progress=False, x_init01=x_hat)
    assert (guided - ours).abs().mean() > 1e-3


def test_sdedit_start_trades_faithfulness_for_the_prior():
    """The later the start, the further the output moves from x̂ (SDEdit's one knob); seeded per image,
    so an image's output does not depend on its batch."""
    prior, x_hat = tiny_prior(SIZE, 3, seed=0), _decoded(3)
    dist = [float((sdedit_restore(prior, x_hat, steps=50, start=s, generators=_gens(0, 3), progress=False)
                   - x_hat).abs().mean()) for s in (0.02, 0.1, 0.3)]
    assert dist[0] < dist[1] < dist[2], dist
    both = sdedit_restore(prior, x_hat, steps=STEPS, start=0.3, generators=_gens(1, 3), progress=False)
    again = sdedit_restore(prior, x_hat, steps=STEPS, start=0.3, generators=_gens(1, 3), progress=False)
    last = sdedit_restore(prior, x_hat[2:], steps=STEPS, start=0.3, generators=_gens(1, 1, start=2),
                          progress=False)
    assert torch.equal(both, again) and torch.allclose(both[2:], last, atol=1e-6)
    assert both.min() >= 0 and both.max() <= 1


def test_sdedit_at_another_image_size():
    prior = tiny_prior(SIZE, 3, seed=0)
    out = sdedit_restore(prior, _decoded(1, 24), steps=STEPS, start=0.2, generators=_gens(0, 1), progress=False)
    assert out.shape == (1, 3, 24, 24) and torch.isfinite(out).all()


def test_sdedit_refuses_bad_input():
    prior, x_hat = tiny_prior(SIZE, 3, seed=0), _decoded()
    with pytest.raises(InputError, match="start < 1"):
        sdedit_restore(prior, x_hat, start=1.0, progress=False)
    with pytest.raises(InputError, match="0 < start"):
        sdedit_restore(prior, x_hat, start=0.0, progress=False)
    with pytest.raises(InputError, match="NaN"):
        sdedit_restore(prior, x_hat.clone().fill_(float("nan")), progress=False)
    with pytest.raises(InputError, match=r"\(B, C, H, W\)"):
        sdedit_restore(prior, x_hat[0], progress=False)
    with pytest.raises(InputError, match="x_init has shape"):
        sdedit_restore(prior, _decoded()[:, :1], progress=False)


# ---------------------------------------------------------------------------------------------
# DPS through the known JSCC
def test_dps_runs_rgb_and_grey(link3):
    prior, jscc, y = link3
    out = dps_restore(prior, jscc, y, SNR, steps=STEPS, generators=_gens(0))
    assert out.shape == (2, 3, SIZE, SIZE) and out.dtype == torch.float32
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    prior1, jscc1 = tiny_prior(SIZE, 1, seed=1), _jscc(1)
    x1 = torch.rand(1, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        y1 = jscc1.encode(x1, SNR)
    out1 = dps_restore(prior1, jscc1, y1, torch.tensor([SNR]), steps=3, generators=_gens(0, 1))
    assert out1.shape == (1, 1, SIZE, SIZE) and torch.isfinite(out1).all()


def test_dps_deterministic_per_seed(link3):
    prior, jscc, y = link3
    a = dps_restore(prior, jscc, y, SNR, steps=STEPS, generators=_gens(0))
    b = dps_restore(prior, jscc, y, SNR, steps=STEPS, generators=_gens(0))
    c = dps_restore(prior, jscc, y, SNR, steps=STEPS, generators=_gens(1))
    assert torch.equal(a, b)
    assert (a - c).abs().max() > 1e-3


def test_dps_zeta0_is_plain_ddim(link3):
    """DPS is a correction of the sampler core: ζ = 0 gives its plain DDIM exactly, draw for draw."""
    prior, jscc, y = link3
    a = dps_restore(prior, jscc, y, SNR, steps=STEPS, eta=0.85, zeta=0.0, generators=_gens(3))
    b = ddim_sample(prior, 2, steps=STEPS, eta=0.85, generators=_gens(3), progress=False)
    assert torch.equal(a, b)


def test_dps_guidance_lowers_data_term(link3):
    """‖y − E(x_out)‖ with guidance is clearly below unguided DDIM from the same noise."""
    prior, jscc, y = link3
    free, info0 = dps_restore(prior, jscc, y, SNR, steps=10, zeta=0.0, generators=_gens(5),
                              return_info=True)
    guided, info = dps_restore(prior, jscc, y, SNR, steps=10, zeta=2.0, generators=_gens(5),
                               return_info=True)
    r0, r1 = dps_residual(jscc, free, y, SNR), dps_residual(jscc, guided, y, SNR)
    assert torch.allclose(r0, info0["residual_out"]) and torch.allclose(r1, info["residual_out"])
    assert (r1 < 0.9 * r0).all(), (r0, r1)
    assert info["residual"].shape == (10, 2) and info["unet_evals"] == 10 and info["start"] == "noise"
    # over the chain, the guided data term ends below where it started
    assert (info["residual"][-1] < info["residual"][0]).all()


def test_dps_no_cross_talk_between_images(link3):
    """Image 0's result depends on its own symbols only: changing y[1] leaves it unchanged, and
    restoring it alone gives the same image as restoring it in a batch."""
    prior, jscc, y = link3
    a = dps_restore(prior, jscc, y, SNR, steps=5, zeta=2.0, generators=_gens(7))
    y2 = y.clone()
    y2[1] = torch.flip(y[1], dims=[0]) * 1j
    b = dps_restore(prior, jscc, y2, SNR, steps=5, zeta=2.0, generators=_gens(7))
    assert torch.allclose(a[0], b[0], atol=1e-6)
    assert (a[1] - b[1]).abs().max() > 1e-4        # and y does steer image 1
    solo = dps_restore(prior, jscc, y[1:], SNR, steps=5, zeta=2.0, generators=_gens(7, 1, start=1))
    assert torch.allclose(a[1:], solo, atol=1e-4)


def test_dps_guides_under_no_grad_and_inference_mode(link3):
    """Callers run receivers under no_grad (the worker's Engine.restore): the guidance still works."""
    prior, jscc, y = link3
    ref = dps_restore(prior, jscc, y, SNR, steps=4, zeta=2.0, generators=_gens(9))
    with torch.no_grad():
        a = dps_restore(prior, jscc, y, SNR, steps=4, zeta=2.0, generators=_gens(9))
    with torch.inference_mode():
        b = dps_restore(prior, jscc, y, SNR, steps=4, zeta=2.0, generators=_gens(9))
    assert torch.equal(ref, a) and torch.equal(ref, b)


def test_dps_refuses_bad_input(link3):
    prior, jscc, y = link3
    with pytest.raises(InputError, match="k=64"):
        dps_restore(prior, jscc, y[:, :32], SNR, steps=2)
    with pytest.raises(InputError, match="prior generates"):
        dps_restore(tiny_prior(8, 1, seed=0), jscc, y, SNR, steps=2)        # another channel count
    with pytest.raises(InputError, match="zeta"):
        dps_restore(prior, jscc, y, SNR, steps=2, zeta=-1.0)
    with pytest.raises(InputError, match="one generator per image"):
        dps_restore(prior, jscc, y, SNR, steps=2, generators=_gens(0, 1))
    with pytest.raises(InputError, match="complex"):
        dps_restore(prior, jscc, y.real, SNR, steps=2)
    with pytest.raises(InputError, match="one value per image"):
        dps_restore(prior, jscc, y, torch.zeros(3), steps=2)


# ---------------------------------------------------------------------------------------------
# digital separation
def _images(b: int = 3, c: int = 3, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Smooth synthetic images (up-sampled 4×4 noise plus a little texture): JPEG-friendly."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(b, c, 4, 4, generator=g)
    x = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)
    return (x + 0.05 * torch.rand(b, c, size, size, generator=g)).clamp(0, 1)


def _codecs():
    from PIL import features
    webp = pytest.param("webp", marks=pytest.mark.skipif(not features.check("webp"),
                                                         reason="Pillow without WebP"))
    return ["jpeg", webp]


def test_rate_is_capacity_times_k():
    assert float(rate_bits(100, 0.0)) == pytest.approx(100.0)              # log2(1 + 1) = 1
    assert float(rate_bits(256, 10 * math.log10(3))) == pytest.approx(512.0)
    r = rate_bits(10, torch.tensor([-5.0, 0.0, 15.0]))
    assert torch.all(r[1:] > r[:-1])


@pytest.mark.parametrize("codec", _codecs())
def test_cliff_all_lost_at_very_low_snr(codec):
    x = _images()
    rec, info = digital_separation(x, 32, -10.0, codec=codec)
    assert all(d["lost"] and d["quality"] is None and d["bits_used"] == 0 for d in info)
    assert torch.equal(rec, torch.full_like(x, 0.5))


@pytest.mark.parametrize("codec", _codecs())
def test_quality_rises_with_snr_above_the_cliff(codec):
    x = _images()
    k = 1024                                       # 32×32 RGB: BCR 1/3
    means = []
    for snr in (10.0, 15.0, 20.0, 30.0):
        rec, info = digital_separation(x, k, snr, codec=codec)
        assert not any(d["lost"] for d in info), info
        means.append(float(psnr(rec, x).mean()))
    # non-decreasing (a codec at quality 100 saturates), and clearly better at the top
    assert all(a <= b for a, b in zip(means, means[1:])), means
    assert means[-1] > means[0] + 1.0, means
    assert means[0] > 20.0                         # decoded images, not grey (grey is ~10 dB here)


@pytest.mark.parametrize("codec", _codecs())
@pytest.mark.parametrize("header", ["file", "stripped"])
def test_budget_respected_and_quality_maximal(codec, header):
    x = _images(2, seed=3)
    snrs = torch.tensor([8.0, 20.0])
    rec, info = digital_separation(x, 512, snrs, codec=codec, header=header, search="exhaustive")
    _, info_bin = digital_separation(x, 512, snrs, codec=codec, header=header)
    from PIL import Image
    for b, (d, db) in enumerate(zip(info, info_bin)):
        assert d["bits_budget"] == pytest.approx(float(rate_bits(512, snrs[b])))
        assert d["header"] == header and d["codec"] == codec
        for dd in (d, db):
            assert dd["lost"] or dd["bits_used"] <= dd["bits_budget"]
            if header == "file" and not dd["lost"]:
                assert dd["bits_used"] == 8 * dd["file_bytes"]       # the whole file is counted
        if d["lost"]:
            assert db["lost"]
            continue
        assert db["quality"] <= d["quality"]
        # maximal: every higher quality overflows the budget (re-encoded here)
        arr = (x[b].clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        img = Image.fromarray(arr, "RGB")
        for q in range(d["quality"] + 1, 101):
            assert 8 * _encode(img, codec, q, "4:2:0" if codec == "jpeg" else None, header)[1] > d["bits_budget"]


def test_stripped_counts_fewer_bits_than_the_file():
    x = _images(1)
    _, f = digital_separation(x, 2048, 20.0, codec="jpeg", header="file")
    _, s = digital_separation(x, 2048, 20.0, codec="jpeg", header="stripped")
    assert s[0]["quality"] >= f[0]["quality"]
    assert s[0]["bits_used"] < 8 * s[0]["file_bytes"]
    # what "stripped" leaves out is inferable: with the standard tables, everything before the scan
    # data is the same for any two images of this size at the same quality
    from PIL import Image
    from sing.baselines.digital import _jpeg_scan_bytes
    heads = set()
    for seed in (0, 1):
        arr = (_images(1, seed=seed)[0] * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        data, counted = _encode(Image.fromarray(arr, "RGB"), "jpeg", 10, "4:2:0", "stripped")
        assert counted == _jpeg_scan_bytes(data) + 1
        heads.add(data[:len(data) - 2 - _jpeg_scan_bytes(data)])
    assert len(heads) == 1


@pytest.mark.parametrize("codec", _codecs())
def test_greyscale_is_coded_as_grey(codec):
    x = _images(2, c=1)
    rec, info = digital_separation(x, 512, 20.0, codec=codec)
    assert rec.shape == x.shape
    assert not any(d["lost"] for d in info) and all(d["subsampling"] == "grey" for d in info)
    assert float(psnr(rec, x).mean()) > 20.0


def test_jpeg_chroma_options():
    x = _images(2, seed=4)
    res = {s: digital_separation(x, 1024, 15.0, codec="jpeg", subsampling=s)
           for s in ("4:4:4", "4:2:2", "4:2:0", "best")}
    for s in ("4:4:4", "4:2:2", "4:2:0"):
        assert all(d["subsampling"] == s for d in res[s][1])
    best = psnr(res["best"][0], x)
    for s in ("4:4:4", "4:2:2", "4:2:0"):
        assert torch.all(best >= psnr(res[s][0], x) - 1e-9)


def test_deterministic():
    x = _images(2, seed=5)
    a, ia = digital_separation(x, 700, 12.0, codec="jpeg")
    b, ib = digital_separation(x, 700, 12.0, codec="jpeg")
    assert torch.equal(a, b) and ia == ib


def test_refuses_bad_arguments():
    x = _images(1)
    with pytest.raises(InputError, match="unknown codec"):
        digital_separation(x, 256, 0.0, codec="png")
    with pytest.raises(InputError, match="subsampling"):
        digital_separation(x, 256, 0.0, codec="jpeg", subsampling="4:1:1")
    with pytest.raises(InputError, match="4:2:0"):
        digital_separation(x, 256, 0.0, codec="webp", subsampling="4:4:4")
    with pytest.raises(InputError, match="header"):
        digital_separation(x, 256, 0.0, header="none")
    with pytest.raises(InputError, match="positive int"):
        digital_separation(x, 0, 0.0)
    with pytest.raises(InputError, match="C = 1 or 3"):
        digital_separation(x[:, :2], 256, 0.0)
    with pytest.raises(InputError, match="one value per image"):
        digital_separation(x, 256, torch.zeros(2))


def test_dps_at_another_image_size(link3):
    """DPS on the symbols of 24×40 images (k at that size): the prior runs at 24×40, the gradient
    flows through the whole image, and the data term decreases; wrong k for the shape is refused."""
    prior, jscc, _ = link3
    x = torch.rand(1, 3, 24, 40, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        z = jscc.encode(x, SNR)
    assert z.shape[1] == jscc.k_at(24, 40) != jscc.k
    y = apply_channel(z, ChannelConfig(snr_db=SNR), [channel_generator(0, 0)]).y
    out, info = dps_restore(prior, jscc, y, SNR, steps=4, zeta=2.0, generators=_gens(3, 1), shape=(24, 40),
                            return_info=True)
    assert out.shape == (1, 3, 24, 40) and torch.isfinite(out).all()
    assert info["residual"].shape == (4, 1)
    with pytest.raises(InputError, match="k="):
        dps_restore(prior, jscc, y, SNR, steps=2, shape=(16, 16))
