# SPDX-License-Identifier: GPL-3.0-or-later
"""jscc_image_source in a real flowgraph: one PDU per image with the conventions' metadata and
unit-power symbols equal to the DeepJSCC encoder's on the fitted image (size policy crop here; the
native size: test_anysize_e2e.py); finishes by itself."""
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
import pmt  # noqa: E402
import torch  # noqa: E402
from gnuradio import blocks, gr  # noqa: E402
from gnuradio.sing import qa_helpers as qa  # noqa: E402


def test_source_emits_one_pdu_per_image_and_finishes(tmp_path):
    from sing.data import fit_image, read_image, to_tensor
    from sing.jscc import load_jscc
    jd = qa.tiny_jscc_dir(tmp_path / "jscc", image_size=16, bcr="1/12")
    files = qa.write_images(tmp_path / "imgs", 4, size=(30, 20))
    (tmp_path / "imgs" / "notes.txt").write_text("not an image")
    tb = gr.top_block()
    src = sing.jscc_image_source(str(jd), str(tmp_path / "imgs"), snr_db=2.0, interval_s=0.0,
                                 finish_delay_s=0.1, size_policy="crop")    # the model's 16×16
    d_sym, d_img = blocks.message_debug(), blocks.message_debug()
    tb.msg_connect(src, "pdus", d_sym, "store")
    tb.msg_connect(src, "image", d_img, "store")
    tb.start()
    tb.wait()                                  # returns: the source finished after the last image
    assert d_sym.num_messages() == 4 and d_img.num_messages() == 4
    model = load_jscc(jd)
    for i, f in enumerate(files):
        m = d_sym.get_message(i)
        meta, y = pmt.to_python(pmt.car(m)), pmt.to_python(pmt.cdr(m))
        assert y.dtype == np.complex64 and y.shape == (model.k,)
        assert meta == {**meta, "image_id": f"folder/{f.name}", "k": model.k, "bcr": "1/12",
                        "model_id": model.model_id, "height": 16, "width": 16, "channels": 3, "seq": i}
        assert np.mean(np.abs(y) ** 2) == pytest.approx(1.0, rel=1e-4)
        a = fit_image(read_image(f, 3), 16)
        with torch.no_grad():
            ref = model.encode(to_tensor(a[None]), 2.0)[0].numpy()
        np.testing.assert_allclose(y, ref, atol=1e-5)
        img = d_img.get_message(i)
        np.testing.assert_array_equal(np.asarray(pmt.u8vector_elements(pmt.cdr(img)), np.uint8),
                                      a.reshape(-1))


def test_glob_max_images_and_loop(tmp_path):
    jd = qa.tiny_jscc_dir(tmp_path / "jscc", image_size=16, channels=1, bcr="1/4")
    qa.write_images(tmp_path / "imgs", 3)
    tb = gr.top_block()
    src = sing.jscc_image_source(str(jd), str(tmp_path / "imgs" / "img00[01].png"), interval_s=0.0,
                                 loop=True, finish_delay_s=0.1)
    dbg = blocks.message_debug()
    tb.msg_connect(src, "pdus", dbg, "store")
    tb.start()
    import time
    t0 = time.monotonic()
    while dbg.num_messages() < 5 and time.monotonic() - t0 < 30:
        time.sleep(0.05)
    tb.stop()
    tb.wait()
    ids = [pmt.to_python(pmt.car(dbg.get_message(i)))["image_id"] for i in range(5)]
    assert ids == ["folder/img000.png", "folder/img001.png", "folder/img000.png#1",
                   "folder/img001.png#1", "folder/img000.png#2"]
    assert pmt.to_python(pmt.car(dbg.get_message(0)))["channels"] == 1


def test_no_images_is_a_clear_error(tmp_path):
    from sing.errors import DataError
    jd = qa.tiny_jscc_dir(tmp_path / "jscc")
    with pytest.raises(DataError, match="no images"):
        sing.jscc_image_source(str(jd), str(tmp_path / "nothing-*.png"))


def test_only_bad_files_with_loop_ends_instead_of_spinning(tmp_path):
    """Every file unusable (corrupt, empty) and loop on: one warning per file, one error line, and
    the source finishes (a run-to-completion flowgraph ends) instead of retrying in a tight loop."""
    jd = qa.tiny_jscc_dir(tmp_path / "jscc")
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    (tmp_path / "imgs" / "b.jpg").write_bytes(b"")
    tb = gr.top_block()
    src = sing.jscc_image_source(str(jd), str(tmp_path / "imgs"), interval_s=0.0, loop=True,
                                 finish_delay_s=0.0)
    dbg = blocks.message_debug()
    tb.msg_connect(src, "pdus", dbg, "store")
    qa.run_with_timeout(tb, 30)
    assert (src.n_sent, src.n_failed, dbg.num_messages()) == (0, 2, 0)
