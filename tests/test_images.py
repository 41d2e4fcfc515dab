# SPDX-License-Identifier: GPL-3.0-or-later
"""sing.images: size policies and odd files (every test image is made here, in tmp_path)."""
import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from PIL import Image

from sing.errors import DataError, InputError
from sing.images import MAX_DECODE_PIXELS, SizePolicy, load_image, to_channels


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_only(path, w: int, h: int, idat: bytes = b"") -> None:
    """A PNG whose header claims w×h (8-bit RGB) with `idat` as its only data: no pixels decoded."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
                     + (_png_chunk(b"IDAT", idat) if idat else b"") + _png_chunk(b"IEND", b""))


def gradient(h, w, c=3):
    yy, xx = np.mgrid[0:h, 0:w]
    a = np.stack([(xx * 255 // max(1, w - 1)), (yy * 255 // max(1, h - 1)), (xx + yy) % 256], -1)
    return a[..., :c].astype(np.uint8)


@pytest.mark.parametrize("hw", [(37, 53), (64, 64), (256, 256), (300, 200)])
def test_native_keeps_shape_colour_and_grey(tmp_path, hw):
    h, w = hw
    Image.fromarray(gradient(h, w)).save(tmp_path / "c.png")
    Image.fromarray(gradient(h, w)[..., 0]).save(tmp_path / "g.png")
    c = load_image(tmp_path / "c.png", 3)
    assert c.shape == (h, w, 3) and c.pixels.shape == (h, w, 3)
    np.testing.assert_array_equal(c.pixels, gradient(h, w))
    g = load_image(tmp_path / "g.png", 3)
    assert g.shape == (h, w, 1) and g.pixels.shape == (h, w, 3) and g.image.shape == (h, w, 1)
    assert (g.pixels == g.pixels[..., :1]).all()                    # three equal channels
    np.testing.assert_array_equal(g.image[..., 0], gradient(h, w)[..., 0])
    g1 = load_image(tmp_path / "c.png", 1)                           # greyscale model: luminance
    assert g1.shape == (h, w, 1) and g1.pixels.shape == (h, w, 1)


def test_policies(tmp_path):
    Image.fromarray(gradient(300, 200)).save(tmp_path / "a.png")
    assert load_image(tmp_path / "a.png", 3, SizePolicy("native", 150)).shape == (150, 100, 3)
    assert load_image(tmp_path / "a.png", 3, SizePolicy("native", 400)).shape == (300, 200, 3)
    assert load_image(tmp_path / "a.png", 3, SizePolicy("fit", 600)).shape == (600, 400, 3)
    assert load_image(tmp_path / "a.png", 3, SizePolicy("fit"), model_size=64).shape == (64, 43, 3)
    assert load_image(tmp_path / "a.png", 3, SizePolicy("crop", 32)).shape == (32, 32, 3)
    from sing.data import fit_image, read_image
    np.testing.assert_array_equal(load_image(tmp_path / "a.png", 3, SizePolicy("crop"), 64).pixels,
                                  fit_image(read_image(tmp_path / "a.png", 3), 64))
    Image.fromarray(gradient(1500, 1200)).save(tmp_path / "big.png")
    assert load_image(tmp_path / "big.png", 3).shape == (1024, 819, 3)     # native: capped at 1024
    with pytest.raises(InputError, match="size policy"):
        SizePolicy("stretch")
    with pytest.raises(InputError, match="size"):
        SizePolicy("fit", 5000)


@settings(max_examples=60, deadline=None)
@given(h=st.integers(1, 5000), w=st.integers(1, 5000), n=st.integers(8, 1024),
       mode=st.sampled_from(["native", "fit", "crop"]))
def test_policy_target_properties(h, w, n, mode):
    """fit: longest side N, aspect within rounding; crop: N×N; native: never enlarges, ≤ cap."""
    scaled, final = SizePolicy(mode, n).target(h, w, 64)
    if mode == "crop":
        assert final == (n, n) and min(scaled) == n and scaled[0] >= n and scaled[1] >= n
    elif mode == "fit":
        assert final == scaled and max(final) == n
        assert abs(final[0] / final[1] - h / w) <= (h / w) / min(final) + 1e-9 or min(final) == 1
    else:
        assert final[0] <= h and final[1] <= w and max(final) <= n
        assert max(final) == min(n, max(h, w))


def test_tiny_strip_is_refused_under_native(tmp_path):
    Image.fromarray(gradient(4, 600)).save(tmp_path / "strip.png")
    with pytest.raises(DataError, match=r"strip\.png.*fit.*crop"):
        load_image(tmp_path / "strip.png", 3)
    assert load_image(tmp_path / "strip.png", 3, SizePolicy("crop", 16)).shape == (16, 16, 3)


def test_zero_sized_bomb_and_corrupt_files_name_the_file(tmp_path):
    png_header_only(tmp_path / "zero.png", 0, 0)
    png_header_only(tmp_path / "bomb.png", 20000, 20000, idat=zlib.compress(b"\0" * 100))
    Image.fromarray(gradient(64, 64)).save(tmp_path / "ok.png")
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "garbage.jpg").write_bytes(b"this is not a jpeg" * 10)
    (tmp_path / "empty.png").write_bytes(b"")
    printf_ppm = tmp_path / "zero.ppm"
    printf_ppm.write_bytes(b"P6\n0 7\n255\n")
    for name, what in [("zero.png", "0-sized"), ("bomb.png", "decompression bomb"),
                       ("truncated.png", "truncated|corrupt"), ("garbage.jpg", "not an image"),
                       ("empty.png", "not an image"), ("missing.png", "not found"),
                       ("zero.ppm", "0-sized")]:
        with pytest.raises(DataError, match=what) as e:
            load_image(tmp_path / name, 3)
        assert name in str(e.value) and ";" in str(e.value), str(e.value)    # file; what to do
    assert 20000 * 20000 > MAX_DECODE_PIXELS


def test_documented_conversions(tmp_path):
    a = gradient(40, 30)
    # CMYK (JPEG): converted to RGB
    Image.fromarray(a).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    c = load_image(tmp_path / "cmyk.jpg", 3)
    assert c.shape == (40, 30, 3) and any("CMYK" in n for n in c.notes)
    assert np.abs(c.pixels.astype(int) - a).mean() < 12
    # 16-bit greyscale: scaled to 8 bits (PIL's own convert("L") would clip at 255)
    g16 = (np.arange(40 * 30).reshape(40, 30) * 54).astype(np.uint16)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    g = load_image(tmp_path / "g16.png", 3)
    assert g.shape == (40, 30, 1)
    np.testing.assert_array_equal(g.image[..., 0], np.round(g16.astype(np.float64) * 255 / 65535).astype(np.uint8))
    # 16-bit RGB PNG (written by OpenCV): 8-bit RGB
    import cv2
    rgb16 = a.astype(np.uint16) * 257
    cv2.imwrite(str(tmp_path / "rgb16.png"), rgb16[..., ::-1])
    r = load_image(tmp_path / "rgb16.png", 3)
    assert r.shape == (40, 30, 3) and np.abs(r.pixels.astype(int) - a).max() <= 1
    # alpha: composited over white
    rgba = np.concatenate([a, np.full((40, 30, 1), 255, np.uint8)], -1)
    rgba[:20, :, 3] = 0                                 # top half transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    t = load_image(tmp_path / "alpha.png", 3)
    assert t.shape == (40, 30, 3) and (t.pixels[:20] == 255).all()
    np.testing.assert_array_equal(t.pixels[20:], a[20:])
    assert any("alpha" in n for n in t.notes)
    la = np.stack([a[..., 0], np.full((40, 30), 0, np.uint8)], -1)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    assert load_image(tmp_path / "la.png", 3).shape == (40, 30, 1)
    # animated GIF: first frame
    frames = [Image.fromarray(np.full((40, 30, 3), v, np.uint8)) for v in (10, 200, 90)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=50)
    f = load_image(tmp_path / "anim.gif", 3)
    assert f.shape == (40, 30, 3) and abs(int(f.pixels.mean()) - 10) <= 2
    assert any("first frame" in n for n in f.notes)
    # float: refused
    Image.fromarray(np.zeros((40, 30), np.float32)).save(tmp_path / "f.tiff")
    with pytest.raises(DataError, match=r"f\.tiff.*floating"):
        load_image(tmp_path / "f.tiff", 3)


def test_exif_orientation_and_jpeg_draft(tmp_path):
    a = gradient(600, 400)
    im = Image.fromarray(a)
    exif = im.getexif()
    exif[0x0112] = 6                                    # rotate 90° CW on display
    im.save(tmp_path / "rot.jpg", exif=exif, quality=95)
    r = load_image(tmp_path / "rot.jpg", 3)
    assert r.shape == (400, 600, 3)
    s = load_image(tmp_path / "rot.jpg", 3, SizePolicy("fit", 100))      # decoded at 1/4, then fitted
    assert s.shape == (67, 100, 3) and s.file_size[0] < 600


def test_to_channels():
    a = np.stack([np.full((4, 5), v, np.uint8) for v in (10, 11, 13)], -1)
    assert to_channels(a, 1).shape == (4, 5, 1) and (to_channels(a, 1) == 11).all()
    assert to_channels(a[..., :1], 3).shape == (4, 5, 3)
    assert to_channels(a, 3) is a


def test_data_sets_read_with_the_same_header_guards(tmp_path):
    """`sing.data.read_image` (folder data sets, `sing eval`) keeps its pixel rule (PIL's RGB / L) but
    refuses what the transmitter refuses, before decoding: a bomb, a corrupt file, a missing one."""
    from sing import data as D
    a = (np.arange(12 * 10 * 3) % 251).astype(np.uint8).reshape(12, 10, 3)
    Image.fromarray(a).save(tmp_path / "ok.png")
    assert (D.read_image(tmp_path / "ok.png") == a).all()
    assert D.read_image(tmp_path / "ok.png", 1).shape == (12, 10, 1)
    png_header_only(tmp_path / "bomb.png", 20000, 20000, idat=zlib.compress(b"\0" * 100))
    (tmp_path / "bad.png").write_bytes(b"not an image")
    for name, what in [("bomb.png", "decompression bomb"), ("bad.png", "re-save"), ("missing.png", "not found")]:
        with pytest.raises(DataError, match=what):
            D.read_image(tmp_path / name)
