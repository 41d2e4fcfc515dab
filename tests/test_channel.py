# SPDX-License-Identifier: GPL-3.0-or-later
"""Channel (ALGORITHMS §1): BCR, power normalisation, AWGN/Rayleigh, pilots, seeded noise."""
import math
from fractions import Fraction

import pytest
import torch

from sing.channel import (ChannelConfig, apply_channel, awgn_per_sample, bcr_str, estimate_snr_db,
                          generator_for, k_for, normalize_power, parse_bcr, pilot_sequence)
from sing.errors import InputError


def test_bcr_k_table():
    n64 = 3 * 64 * 64
    assert [k_for(b, n64) for b in ("1/12", "1/24", "1/48")] == [1024, 512, 256]
    assert [k_for(b, 1024) for b in ("1/12", "1/48")] == [85, 21]   # Fashion-MNIST 32×32 grey
    assert parse_bcr("1/48") == Fraction(1, 48) and bcr_str(parse_bcr(1 / 48)) == "1/48"
    for bad in ("0", "2", "x/3", "-1/4"):
        with pytest.raises(InputError):
            parse_bcr(bad)


def test_unit_power_exact():
    z = torch.randn(8, 1000, dtype=torch.complex64) * 7 + 3
    p = (normalize_power(z).abs() ** 2).mean(-1)
    assert torch.allclose(p, torch.ones(8), atol=1e-6)


@pytest.mark.parametrize("snr_db", [-5.0, 0.0, 10.0, 20.0])
def test_awgn_measured_snr_within_0p1_db(snr_db):
    """Over 10⁶ symbols the measured SNR is within 0.1 dB of the requested one."""
    k = 1_000_000
    z = normalize_power(torch.randn(1, k, dtype=torch.complex64))
    out = apply_channel(z, ChannelConfig("awgn", snr_db), [generator_for(1, "x")])
    noise = out.y - z
    measured = 10 * math.log10(float((z.abs() ** 2).mean()) / float((noise.abs() ** 2).mean()))
    assert abs(measured - snr_db) < 0.1
    # I and Q each carry half the noise power (circular CN)
    assert abs(float(noise.real.var()) / float(noise.imag.var()) - 1) < 0.01


def test_noise_is_seeded_per_image_not_per_batch():
    z = normalize_power(torch.randn(4, 64, dtype=torch.complex64))
    cfg = ChannelConfig("rayleigh", 5.0, csi="pilot")
    full = apply_channel(z, cfg, [generator_for(0, i) for i in "abcd"])
    one = apply_channel(z[2:3], cfg, [generator_for(0, "c")])
    assert torch.equal(full.y[2], one.y[0]) and torch.equal(full.h[2], one.h[0])
    other = apply_channel(z[2:3], cfg, [generator_for(1, "c")])
    assert not torch.equal(other.y[0], one.y[0])


def test_rayleigh_perfect_csi_equalises_and_reports_effective_snr():
    z = normalize_power(torch.randn(2000, 32, dtype=torch.complex64))
    out = apply_channel(z, ChannelConfig("rayleigh", 10.0, csi="perfect"), [generator_for(0, i) for i in range(2000)])
    assert abs(float((out.h.abs() ** 2).mean()) - 1) < 0.1          # E|h|² = 1
    eff = 10 * torch.log10(out.h.abs() ** 2) + 10
    assert torch.allclose(out.snr_db, eff.float(), atol=1e-4)
    # after equalisation the residual noise power is σ²/|h|² per image
    ratio = ((out.y - z).abs() ** 2).mean(-1) / (0.1 / out.h.abs() ** 2)
    assert abs(float(ratio.median()) - 1) < 0.1


@pytest.mark.parametrize("snr_db", [-5.0, 5.0, 20.0])
def test_pilot_snr_estimate_is_unbiased_in_db(snr_db):
    p = pilot_sequence(64)
    assert torch.allclose(p.abs(), torch.ones(64))
    g = torch.Generator().manual_seed(0)
    h = torch.polar(torch.ones(4000), torch.rand(4000, generator=g) * 6.28) * 0.7
    s2 = 10 ** (-snr_db / 10) * 0.49
    w = torch.complex(torch.randn(4000, 64, generator=g), torch.randn(4000, 64, generator=g)) * math.sqrt(s2 / 2)
    est = estimate_snr_db(h[:, None] * p + w, p)
    assert abs(float(est.mean()) - snr_db) < 0.3


def test_awgn_per_sample_matches_per_row_snr():
    z = normalize_power(torch.randn(3, 200_000, dtype=torch.complex64))
    snr = torch.tensor([-5.0, 0.0, 15.0])
    y = awgn_per_sample(z, snr, torch.Generator().manual_seed(3))
    meas = 10 * torch.log10(1 / ((y - z).abs() ** 2).mean(-1))
    assert torch.allclose(meas, snr, atol=0.1)


def test_bad_input_is_refused():
    with pytest.raises(InputError, match="NaN"):
        apply_channel(torch.full((1, 4), float("nan"), dtype=torch.complex64), ChannelConfig())
    with pytest.raises(InputError, match="complex"):
        apply_channel(torch.zeros(1, 4), ChannelConfig())
    with pytest.raises(InputError, match="awgn, rayleigh"):
        ChannelConfig("rician")
    with pytest.raises(InputError, match="one generator per image"):
        apply_channel(torch.ones(2, 4, dtype=torch.complex64), ChannelConfig(), [generator_for(0, 0)])
