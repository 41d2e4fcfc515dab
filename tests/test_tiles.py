# SPDX-License-Identifier: GPL-3.0-or-later
"""The diffusion prior at any image size, tile-wise (sing/prior/tiles.py): exactness when one tile
covers the image, tile grids, translation consistency, no visible seams, restoration through the one
sampler core, gradients for DPS, bad input. Tiny random UNet priors (real diffusers models)."""
from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

from sing.errors import InputError
from sing.prior import tiny_prior
from sing.prior.tiles import (TiledPrior, WholeImagePrior, at_size, tile_side, tile_starts,
                              whole_image_bound)
from sing.zero.ddnm import restore
from sing.zero.operators import make_operator


@pytest.fixture(scope="module")
def prior16():
    return tiny_prior(16, 3, seed=0)


@pytest.fixture(scope="module")
def prior32():
    return tiny_prior(32, 3, seed=0)


def gradient_image(h: int, w: int) -> torch.Tensor:
    """A smooth colour ramp (1, 3, H, W) in [0, 1]."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    return torch.stack([0.2 + 0.6 * xx, 0.2 + 0.6 * yy, 0.5 * (xx + yy)])[None]


def seam_ratios(img: torch.Tensor, ys, xs, tile: int) -> tuple[float, float]:
    """Mean |pixel difference| across the tile borders (between the last pixel before and the first
    after each tile edge inside the image) divided by the mean |difference| between all other
    neighbours; columns (horizontal gradient) and rows (vertical) apart. 1 = no seam."""
    H, W = img.shape[-2:]
    gx = (img[..., :, 1:] - img[..., :, :-1]).abs().mean(dim=(0, 1, 2))     # between column c and c+1
    gy = (img[..., 1:, :] - img[..., :-1, :]).abs().mean(dim=(0, 1, 3))
    bx = sorted({s - 1 for s in xs if s > 0} | {s + tile - 1 for s in xs if s + tile < W})
    by = sorted({s - 1 for s in ys if s > 0} | {s + tile - 1 for s in ys if s + tile < H})
    mx = torch.ones_like(gx, dtype=torch.bool)
    mx[bx] = False
    my = torch.ones_like(gy, dtype=torch.bool)
    my[by] = False
    return float(gx[bx].mean() / gx[mx].mean()), float(gy[by].mean() / gy[my].mean())


def test_one_tile_is_the_prior_exactly(prior16):
    tp = TiledPrior(prior16, (16, 16))
    assert tp.tiles_per_image == 1
    x = torch.randn(3, 3, 16, 16)
    t = torch.tensor([10, 500, 999])
    assert torch.equal(tp.eps(x, t), prior16.eps(x, t))


def test_small_and_odd_sizes_and_bounded_batches(prior16):
    """Sides shorter than the tile are padded and cropped back; the tile batch is bounded and does
    not change the result."""
    for hw in [(9, 13), (37, 53), (16, 40)]:
        x = torch.randn(2, 3, *hw)
        e = TiledPrior(prior16, hw, max_batch=64).eps(x, 400)
        assert e.shape == x.shape and torch.isfinite(e).all()
        assert torch.allclose(TiledPrior(prior16, hw, max_batch=3).eps(x, 400), e, atol=1e-5)


@settings(max_examples=40, deadline=None)
@given(length=st.integers(8, 400), tile=st.sampled_from([8, 16, 32, 64]), frac=st.integers(0, 4))
def test_tile_grid_covers_with_overlap(length, tile, frac):
    overlap = tile * frac // 8
    s = tile_starts(length, tile, overlap)
    if length <= tile:
        assert s == [0]
        return
    assert s[0] == 0 and s[-1] == length - tile and s == sorted(s)
    assert all(b - a <= tile - overlap for a, b in zip(s, s[1:]))      # overlap ≥ O: no gaps


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(1, 3), m=st.integers(1, 2), h=st.sampled_from([16, 24]), t=st.integers(0, 999),
       seed=st.integers(0, 2 ** 16))
def test_translation_consistent(prior16, n, m, h, t, seed):
    """On a regular grid (width T + n·(T − O)), prepending m tile strides of columns moves every
    tile by m strides: away from the new left part (and its window ramps) ε is the same, shifted."""
    T, O = 16, 4
    stride = T - O
    w = T + n * stride
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 3, h, w + m * stride, generator=g)
    big = TiledPrior(prior16, (h, w + m * stride), overlap=O, max_batch=64).eps(x, t)
    small = TiledPrior(prior16, (h, w), overlap=O, max_batch=64).eps(x[..., m * stride:], t)
    assert torch.allclose(big[..., m * stride + O:], small[..., O:], atol=1e-5)


@pytest.mark.parametrize("t", [100, 300, 600])
def test_no_visible_seams_in_eps(prior32, t):
    """ε of a noisy smooth ramp at 96×80 with 32×32 tiles: mean |gradient| across tile borders is
    within 10 % of elsewhere. Tiles cut hard, or averaged without the window, are outside it (so the
    measure sees seams)."""
    img = gradient_image(96, 80)
    g = torch.Generator().manual_seed(t)
    xt = (img * 2 - 1).expand(6, -1, -1, -1) + (t / 1000) * torch.randn(6, 3, 96, 80, generator=g)
    tp = TiledPrior(prior32, (96, 80), overlap=8)
    rx, ry = seam_ratios(tp.eps(xt, t), tp.ys, tp.xs, 32)
    assert abs(rx - 1) <= 0.10 and abs(ry - 1) <= 0.10, (rx, ry)
    if t >= 300:
        box = TiledPrior(prior32, (96, 80), overlap=0)                 # plain average of overlaps
        bx, by = seam_ratios(box.eps(xt, t), box.ys, box.xs, 32)
        assert max(abs(bx - 1), abs(by - 1)) > 0.10, (bx, by)
    x2 = xt[..., :64]                                                  # hard cut: 3×2 tiles, no overlap
    hard = torch.cat([torch.cat([prior32.eps(x2[..., y:y + 32, c:c + 32], t) for c in (0, 32)], -1)
                      for y in (0, 32, 64)], -2)
    hx, hy = seam_ratios(hard, [0, 32, 64], [0, 32], 32)
    assert max(abs(hx - 1), abs(hy - 1)) > 0.10, (hx, hy)


@pytest.mark.parametrize("op_name,sigma_y", [("avgpool-4", 0.0), ("identity", 0.05)])
def test_restoration_at_size_without_seams(prior32, op_name, sigma_y):
    """SING-Zero's core (DDNM/DDNM+ through the one sampler) restores a 96×80 smooth ramp with the
    32×32 prior tiled: the right shape, consistent with the observation, no seams."""
    img = gradient_image(96, 80)
    op = make_operator(op_name, (3, 96, 80))
    tp = TiledPrior(prior32, (96, 80), overlap=8)
    y = op.A(img)
    gens = [torch.Generator().manual_seed(1)]
    out = restore(tp, op, y, sigma_y=sigma_y, steps=10, generators=gens, progress=False, start=0.5,
                  x_init01=img, clamp=False)
    assert out.shape == img.shape and torch.isfinite(out).all()
    if sigma_y == 0:
        assert torch.allclose(op.A(out), y, atol=1e-4)               # DDNM: A·x = y exactly
    rx, ry = seam_ratios(out, tp.ys, tp.xs, 32)
    assert abs(rx - 1) <= 0.10 and abs(ry - 1) <= 0.10, (rx, ry)


def test_gradients_flow_for_dps(prior16):
    tp = TiledPrior(prior16, (20, 28))
    x = torch.randn(1, 3, 20, 28, requires_grad=True)
    with torch.enable_grad():
        tp.eps(x, 500).square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_bad_input_is_clear(prior16):
    with pytest.raises(InputError, match="outside the supported range"):
        TiledPrior(prior16, (4, 64))
    with pytest.raises(InputError, match="outside the supported range"):
        TiledPrior(prior16, (64, 5000))
    with pytest.raises(InputError, match="overlap"):
        TiledPrior(prior16, (64, 64), overlap=9)
    with pytest.raises(InputError, match="max_batch"):
        TiledPrior(prior16, (64, 64), max_batch=0)
    tp = TiledPrior(prior16, (24, 40))
    with pytest.raises(InputError, match=r"takes \(B, 3, 24, 40\)"):
        tp.eps(torch.randn(1, 3, 40, 24), 10)
    with pytest.raises(InputError, match="t must"):
        tp.eps(torch.randn(2, 3, 24, 40), torch.tensor([1, 2, 3]))


# ---------------------------------------------------------------------------------------------
# at_size: the prior itself, the whole-image UNet up to the bound, whole-image tiles above it
def test_at_size_modes(prior16):
    tokens, side = whole_image_bound(prior16)
    assert prior16.stride == 2 and tokens == 1024 and side == 64      # tiny preset: 2 levels
    assert at_size(prior16, 16) is prior16
    w = at_size(prior16, (37, 53))
    assert isinstance(w, WholeImagePrior) and w.padded == (38, 54)
    big = at_size(prior16, (150, 70))                                   # 75·35 > 1024 positions
    # 3 tiles of ≤ 64 along 150 (overlap 16): the smallest that covers is ⌈(150 + 2·16)/3⌉ → 62
    assert isinstance(big, TiledPrior) and big.tile == 62 and big.overlap == 16 and big.tiles_per_image == 6
    assert at_size(big, (150, 70)) is big
    with pytest.raises(InputError, match="already sized"):
        at_size(w, (16, 16))
    with pytest.raises(InputError, match="outside the supported range"):
        at_size(prior16, (4, 64))


def test_whole_image_is_the_unet_on_the_whole_image(prior16):
    """At a multiple of the stride: exactly the UNet on the whole image; otherwise padded and
    cropped; splitting the batch into calls does not change the result."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(3, 3, 40, 24, generator=g)
    t = torch.tensor([5, 400, 900])
    e = at_size(prior16, (40, 24)).eps(x, t)
    assert torch.equal(e, prior16.eps(x, t, any_size=True))
    one_per_call = WholeImagePrior(prior16, (40, 24), max_call_pixels=1)
    assert one_per_call.per_call == 1 and torch.allclose(one_per_call.eps(x, t), e, atol=1e-5)
    xo = torch.randn(2, 3, 37, 53, generator=g)
    eo = at_size(prior16, (37, 53)).eps(xo, 300)
    assert eo.shape == xo.shape and torch.isfinite(eo).all()
    with pytest.raises(InputError, match="multiples of 2"):
        prior16.eps(xo, 300, any_size=True)
    with pytest.raises(InputError, match="takes"):
        prior16.eps(x, 300)                                            # strict by default


@pytest.mark.parametrize("t", [100, 300, 600])
def test_no_visible_seams_above_the_whole_image_bound(prior32, t):
    """Above the bound at_size tiles with whole-image tiles (≤ 128×128 for the tiny 32×32 prior,
    stride 4, overlap 32: here 2×2 tiles of 112×112). A restoration of a 192×160 smooth ramp through it: mean |gradient| across
    the tile borders within 10 % of elsewhere. ε of a noisy ramp: the border/elsewhere ratio within
    10 % of the same ratio of the untiled whole-image ε (a random tiny UNet has structure of its own
    at its stride, so even without tiles those columns need not read 1; tiling must add nothing)."""
    H, W = 192, 160
    tp = at_size(prior32, (H, W))
    assert isinstance(tp, TiledPrior) and tp.tile == 112 and tp.tiles_per_image == 4
    img = gradient_image(H, W)
    g = torch.Generator().manual_seed(t)
    xt = (img * 2 - 1).expand(4, -1, -1, -1) + (t / 1000) * torch.randn(4, 3, H, W, generator=g)
    rx, ry = seam_ratios(tp.eps(xt, t), tp.ys, tp.xs, tp.tile)
    wx, wy = seam_ratios(WholeImagePrior(prior32, (H, W)).eps(xt, t), tp.ys, tp.xs, tp.tile)
    assert abs(rx / wx - 1) <= 0.10 and abs(ry / wy - 1) <= 0.10, (rx, wx, ry, wy)
    op = make_operator("identity", (3, H, W))
    out = restore(prior32, op, op.A(img), sigma_y=0.05, steps=6, generators=[torch.Generator().manual_seed(t)],
                  progress=False, start=0.5, x_init01=img, clamp=False)          # restore sizes the prior
    rx, ry = seam_ratios(out, tp.ys, tp.xs, tp.tile)
    assert out.shape == img.shape and abs(rx - 1) <= 0.10 and abs(ry - 1) <= 0.10, (rx, ry)


@settings(max_examples=60, deadline=None)
@given(h=st.integers(8, 1024), w=st.integers(8, 1024), stride=st.sampled_from([1, 2, 4, 8]))
def test_tile_side_covers_with_the_fewest_tiles(h, w, stride):
    """tile_side: a multiple of the stride, at most the bound's side, and the grid it gives covers
    each side with overlap ≥ O using no more tiles than tiles of the full bound's side would."""
    side, o = 32 * stride, 8 * stride
    t = tile_side(h, w, side, o, stride)
    assert t % stride == 0 and 2 * o <= t <= side
    for L in (h, w):
        if L > t:
            assert len(tile_starts(L, t, o)) <= len(tile_starts(L, side, o))
