# SPDX-License-Identifier: GPL-3.0-or-later
"""Any image size end to end in real GNU Radio flowgraphs with a real worker process (tiny model):
photos of 37×53, 64×64, 256×256 and 300×200, colour and greyscale, made here, go
JSCC Image Source (size policy native) → PDU channel → SING Receiver, and
JSCC Image Source → OFDM JSCC TX → channel_model → OFDM JSCC RX → SING Receiver,
and come back as restored PNGs of the same shape (greyscale as 1-channel PNGs). The shape travels
in the PDU metadata and in the OFDM frame header: the receivers are given nothing else. Bad files
among them are skipped with a warning and the flowgraph goes on; CMYK, alpha, animated and
16-bit files are converted (docs/CONVENTIONS.md, "Images") and restored at their shape."""
import json
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.gnuradio
pytest.importorskip("gnuradio.gr")
ROOT = Path(__file__).resolve().parents[1]
SIZES = [(37, 53), (64, 64), (256, 256), (300, 200)]

from gr_shim import gr_sing as _gr_sing  # noqa: E402

sing = _gr_sing()
from gnuradio import blocks, channels, gr  # noqa: E402
from gnuradio.sing import qa_helpers as qa  # noqa: E402
from test_worker_helpers import Procs, ep  # noqa: E402


def _photo(h, w, seed):
    """A smooth picture with some texture (what a tiny random model can pass on)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    a = np.stack([128 + 100 * np.sin(6 * xx + seed), 128 + 100 * np.cos(5 * yy), 255 * (xx * yy)], -1)
    return np.clip(a + rng.normal(0, 8, a.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny 16×16-trained RGB DeepJSCC (BCR 1/12), the eight images, four odd files that are
    converted, three that are refused, a worker."""
    from PIL import Image
    d = tmp_path_factory.mktemp("anysize")
    jd = qa.tiny_jscc_dir(d / "jscc-tiny16", image_size=16, bcr="1/12")
    imgs = d / "imgs"
    imgs.mkdir()
    want = {}
    for i, (h, w) in enumerate(SIZES):
        a = _photo(h, w, i)
        Image.fromarray(a).save(imgs / f"c{h}x{w}.png")
        Image.fromarray(a).convert("L").save(imgs / f"g{h}x{w}.png")
        want[f"c{h}x{w}.png"], want[f"g{h}x{w}.png"] = (h, w, 3), (h, w)
    # odd files: converted by the documented rules (sing.images) and sent ...
    a = _photo(40, 30, 9)
    Image.fromarray(a).convert("CMYK").save(imgs / "odd-cmyk.jpg", quality=95)
    Image.fromarray(np.concatenate([a, np.full((40, 30, 1), 128, np.uint8)], -1), "RGBA").save(
        imgs / "odd-alpha.png")
    frames = [Image.fromarray(np.roll(a, 5 * i, axis=1)) for i in range(3)]
    frames[0].save(imgs / "odd-anim.gif", save_all=True, append_images=frames[1:], duration=40)
    Image.fromarray(a[..., 0].astype(np.uint16) * 257).save(imgs / "odd-grey16.png")
    want.update({"odd-cmyk.jpg": (40, 30, 3), "odd-alpha.png": (40, 30, 3), "odd-anim.gif": (40, 30, 3),
                 "odd-grey16.png": (40, 30)})
    # ... or refused with a warning naming the file, the flowgraph going on with the next one
    (imgs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")           # corrupt
    (imgs / "empty.png").write_bytes(b"")                                        # 0 bytes
    from test_images import png_header_only
    png_header_only(imgs / "bomb.png", 20000, 20000, idat=b"x" * 64)             # 400 Mpixel claimed
    endpoint, procs = ep(), Procs()
    try:
        procs.start("worker", "--bind", endpoint, "--jscc", str(jd), "--device", "cpu", "--threads", "1")
        yield d, jd, imgs, want, endpoint
    finally:
        procs.close()


def _check_out(out: Path, want: dict) -> dict:
    """Every image restored by the worker, each PNG (and its sidecar) of the sent shape."""
    from PIL import Image
    summ = json.loads((out / "summary.json").read_text())
    assert summ["counts"]["restored"] == len(want) and summ["counts"]["dropped"] == 0, summ["counts"]
    got = {}
    for fname, shape in want.items():
        stem = Path(fname).stem
        name = f"folder_{stem}"
        a = np.asarray(Image.open(out / f"{name}.png"))
        assert a.shape == shape, (stem, a.shape, shape)
        side = json.loads((out / f"{name}.json").read_text())
        assert side["status"] == "restored" and side["image_id"] == f"folder/{fname}"
        assert (side["height"], side["width"], side["channels"]) == (shape[0], shape[1], len(shape) == 3 and 3 or 1)
        assert side["psnr"] > 5, side                 # against the sent image: same shape, same scene
        got[fname] = a
    return got


def test_pdu_loopback_any_size(setup, one_thread):
    """Source → pdu_channel (AWGN 10 dB) → sing_receiver → worker. The PNGs equal a local decode of
    the same symbols at the same shape (the channel is seeded per image id, as `sing eval`)."""
    import torch
    from sing.channel import ChannelConfig, apply_channel, channel_generator
    from sing.data import to_tensor, to_uint8
    from sing.images import load_image, to_channels
    from sing.jscc import load_jscc
    d, jd, imgs, want, ep = setup
    out = d / "pdu"
    tb = gr.top_block()
    src = sing.jscc_image_source(str(jd), str(imgs), snr_db=10.0, interval_s=0.0, finish_delay_s=0.3)
    ch = sing.pdu_channel("awgn", 10.0, seed=7)
    rx = sing.sing_receiver(ep, "deepjscc", str(out), jscc_dir="", timeout_s=30)
    tb.msg_connect(src, "pdus", ch, "pdus")
    tb.msg_connect(ch, "pdus", rx, "pdus")
    tb.msg_connect(src, "image", rx, "sent")
    qa.run_with_timeout(tb, 120)
    assert src.n_failed == 3 and src.n_sent == len(want)
    got = _check_out(out, want)
    model = load_jscc(jd)
    for fname, png in got.items():
        s = load_image(imgs / fname, 3)
        iid = f"folder/{fname}"
        with torch.no_grad():
            z = model.encode(to_tensor(s.pixels[None]), 10.0)
            o = apply_channel(z, ChannelConfig("awgn", 10.0), [channel_generator(7, iid)])
            x = model.decode(o.y, o.snr_db, shape=s.shape[:2])
        ref = to_channels(to_uint8(x)[0], s.channels)
        diff = np.abs(png.reshape(ref.shape).astype(int) - ref)
        assert diff.max() <= 1, (fname, diff.max())


def test_ofdm_loopback_any_size(setup, one_thread):
    """Source → OFDM JSCC TX → channel_model (CFO, 20 dB) → OFDM JSCC RX → sing_receiver: the RX
    reads each image's height/width/channels from the frame header."""
    d, jd, imgs, want, ep = setup
    out = d / "ofdm"
    tb = gr.top_block()
    src = sing.jscc_image_source(str(jd), str(imgs), snr_db=15.0, interval_s=0.02, start_delay_s=0.3,
                                 finish_delay_s=0.5)
    tx = sing.ofdm_jscc_tx()
    ch = channels.channel_model(noise_voltage=float(np.sqrt(64 / 52 * 10 ** (-20 / 10))),
                                frequency_offset=0.001, epsilon=1.0, taps=[1.0], noise_seed=3,
                                block_tags=False)
    orx = sing.ofdm_jscc_rx(samp_rate=1e6, model_dirs=str(jd), image_dir=str(imgs))
    rx = sing.sing_receiver(ep, "deepjscc", str(out), jscc_dir="", timeout_s=30)
    tb.msg_connect(src, "pdus", tx, "in")
    tb.connect(tx, blocks.delay(gr.sizeof_gr_complex, 137), ch, orx)
    tb.msg_connect(orx, "out", rx, "pdus")
    tb.msg_connect(src, "image", rx, "sent")
    qa.run_with_timeout(tb, 180)
    assert src.n_failed == 3
    _check_out(out, want)
    summ = json.loads((out / "summary.json").read_text())
    assert all(r["snr_source"] == "estimated" for r in summ["images"])


def test_pdu_loopback_prior_method_on_images_larger_than_the_prior(setup, tmp_path, one_thread):
    """A worker with a tiny 16×16 prior restores 40×56 and 64×64 photos with ddnm-avgpool (2 steps):
    the prior runs tiled over the image (Receiver.prior_at), the PNGs keep the sent shape. (The
    avgpool-4 operator itself needs sides divisible by 4: a 37×53 image is refused by it, with
    bad_request naming the factor.)"""
    import shutil
    import torch
    from PIL import Image
    from sing.prior.model import save_prior, tiny_prior
    d, jd, imgs, want, _ = setup
    few = tmp_path / "few"
    few.mkdir()
    Image.fromarray(_photo(40, 56, 5)).save(few / "c40x56.png")
    shutil.copy(imgs / "g64x64.png", few / "g64x64.png")
    torch.manual_seed(0)
    pr = tiny_prior(16, 3)
    save_prior(tmp_path / "prior", pr, pr.config)
    endpoint, procs = ep(), Procs()
    try:
        procs.start("worker", "--bind", endpoint, "--jscc", str(jd), "--prior", str(tmp_path / "prior"),
                    "--device", "cpu", "--threads", "1")
        out = tmp_path / "out"
        tb = gr.top_block()
        src = sing.jscc_image_source(str(jd), str(few), snr_db=10.0, interval_s=0.0, finish_delay_s=0.3)
        ch = sing.pdu_channel("awgn", 10.0, seed=7)
        rx = sing.sing_receiver(endpoint, "ddnm-avgpool", str(out), jscc_dir="",
                                timeout_s=60, steps=2)
        tb.msg_connect(src, "pdus", ch, "pdus")
        tb.msg_connect(ch, "pdus", rx, "pdus")
        tb.msg_connect(src, "image", rx, "sent")
        qa.run_with_timeout(tb, 120)
    finally:
        procs.close()
    got = _check_out(out, {"c40x56.png": (40, 56, 3), "g64x64.png": (64, 64)})
    side = json.loads((out / "folder_c40x56.json").read_text())
    assert side["method_used"] == "ddnm-avgpool" == side["worker"]["method"]
    assert len(got) == 2
