# SPDX-License-Identifier: GPL-3.0-or-later
"""pdu_channel in a real flowgraph: bit-exact with sing.channel as `sing eval` seeds it; the SNR
callback moves the channel while it runs; Rayleigh
with pilots reports an estimated SNR; bad PDUs fail that image only."""
import os
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.gnuradio
gr_mod = pytest.importorskip("gnuradio.gr")
ROOT = Path(__file__).resolve().parents[1]


from gr_shim import gr_sing as _gr_sing  # noqa: E402


sing = _gr_sing()
import time  # noqa: E402

import pmt  # noqa: E402
import torch  # noqa: E402
from gnuradio.sing import qa_helpers as qa  # noqa: E402
from gnuradio.sing.pdu_util import symbols_pdu  # noqa: E402
from sing.channel import ChannelConfig, apply_channel, generator_for, normalize_power  # noqa: E402


def _z(k, seed):
    g = torch.Generator().manual_seed(seed)
    return normalize_power(torch.complex(torch.randn(1, k, generator=g), torch.randn(1, k, generator=g)))[0]


def _meta(i, k, **kw):
    return {"image_id": f"folder/im{i}.png", "k": k, "bcr": "1/12", "model_id": "m@1",
            "height": 16, "width": 16, "channels": 3, **kw}


def test_awgn_matches_sing_eval_noise_exactly():
    k = 64
    zs = [_z(k, i) for i in range(4)]
    blk = sing.pdu_channel("awgn", snr_db=3.0, seed=5)
    dbg, _ = qa.post_and_run(blk, "pdus", [symbols_pdu(_meta(i, k), z.numpy()) for i, z in enumerate(zs)], "pdus")
    msgs = qa.stored(dbg)
    assert len(msgs) == 4
    cfg = ChannelConfig("awgn", 3.0)
    for i, (z, m) in enumerate(zip(zs, msgs)):
        meta = pmt.to_python(pmt.car(m))
        y = pmt.to_python(pmt.cdr(m))
        ref = apply_channel(z[None], cfg, [generator_for(5, f"channel:folder/im{i}.png")])
        np.testing.assert_array_equal(y, ref.y[0].numpy())
        assert meta["snr_db"] == pytest.approx(3.0) and meta["snr_source"] == "true"
        assert meta["image_id"] == f"folder/im{i}.png" and meta["k"] == k


def test_rayleigh_pilots_report_estimated_snr():
    k = 256
    zs = [_z(k, 10 + i) for i in range(3)]
    blk = sing.pdu_channel("rayleigh", snr_db=10.0, seed=1, csi="pilot", n_pilots=32)
    dbg, _ = qa.post_and_run(blk, "pdus", [symbols_pdu(_meta(i, k), z.numpy()) for i, z in enumerate(zs)], "pdus")
    cfg = ChannelConfig("rayleigh", 10.0, csi="pilot", n_pilots=32)
    for i, (z, m) in enumerate(zip(zs, qa.stored(dbg))):
        meta = pmt.to_python(pmt.car(m))
        ref = apply_channel(z[None], cfg, [generator_for(1, f"channel:folder/im{i}.png")])
        np.testing.assert_array_equal(pmt.to_python(pmt.cdr(m)), ref.y[0].numpy())
        assert meta["snr_source"] == "estimated"
        assert meta["snr_db"] == pytest.approx(float(ref.snr_db[0]), abs=1e-4)
        assert meta["snr_db"] != pytest.approx(meta["snr_true_db"], abs=1e-6)
        assert "h_abs" in meta


def test_bad_pdus_fail_that_image_only():
    k = 32
    good = symbols_pdu(_meta(0, k), _z(k, 0).numpy())
    wrong_type = pmt.cons(pmt.car(good), pmt.init_f32vector(k, np.zeros(k, np.float32)))
    wrong_len = symbols_pdu(_meta(2, k), _z(k - 3, 1).numpy())
    nan = _z(k, 2).numpy()
    nan[3] = np.nan
    with_nan = symbols_pdu(_meta(3, k), nan)
    not_pdu = pmt.intern("hello")
    blk = sing.pdu_channel("awgn", snr_db=0.0)
    dbg, _ = qa.post_and_run(blk, "pdus", [wrong_type, good, wrong_len, with_nan, not_pdu, good], "pdus")
    assert dbg.num_messages() == 2
    assert blk.dropped == {"bad_type": 1, "bad_length": 1, "nan_symbols": 1, "bad_pdu": 1}


def test_snr_callback_while_running_moves_the_estimated_snr(tmp_path):
    """The GUI's SNR control calls pdu_channel.set_snr_db while the flowgraph runs: source →
    channel (AWGN, SNR estimated from 64 pilots) → receiver (local DeepJSCC). The receiver's
    estimated SNR follows the new setting within two images."""
    from gnuradio import blocks, gr
    jd = qa.tiny_jscc_dir(tmp_path / "jscc", image_size=16, bcr="1/12")
    qa.write_images(tmp_path / "imgs", 12, size=(16, 16))
    tb = gr.top_block()
    src = sing.jscc_image_source(str(jd), str(tmp_path / "imgs"), snr_db=0.0, interval_s=0.3,
                                 finish_delay_s=0.2)
    chan = sing.pdu_channel("awgn", snr_db=0.0, seed=2, csi="pilot", n_pilots=64)
    rx = sing.sing_receiver("", "deepjscc", str(tmp_path / "out"), jscc_dir=str(jd))
    dbg = blocks.message_debug()
    tb.msg_connect(src, "pdus", chan, "pdus")
    tb.msg_connect(chan, "pdus", rx, "pdus")
    tb.msg_connect(rx, "images", dbg, "store")
    tb.start()
    t0 = time.monotonic()
    while dbg.num_messages() < 4 and time.monotonic() - t0 < 30:
        time.sleep(0.01)
    switched_after = chan.n_passed          # images through the channel before the callback
    chan.set_snr_db(20.0)
    tb.wait()
    metas = sorted((pmt.to_python(pmt.car(m)) for m in qa.stored(dbg)), key=lambda m: m["seq"])
    assert len(metas) == 12 and 4 <= switched_after <= 10, (len(metas), switched_after)
    for m in metas:
        assert m["snr_source"] == "estimated"
        if m["seq"] < switched_after:       # before the move: the pilots say about 0 dB
            assert abs(m["snr_db"]) < 3.0, m
        elif m["seq"] >= switched_after + 1:   # within two images of the move: about 20 dB
            assert abs(m["snr_db"] - 20.0) < 3.0 and m["snr_true_db"] == pytest.approx(20.0), m
