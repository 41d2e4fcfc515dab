"""image_display (Qt) offscreen: image PDUs posted to sent/deepjscc/sing in a running flowgraph
show up as pixmaps with captions; bad PDUs are ignored with a log line."""
os_env = __import__("os").environ
os_env.setdefault("QT_QPA_PLATFORM", "offscreen")
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
from gnuradio import gr  # noqa: E402
from gnuradio.sing.pdu_util import image_pdu  # noqa: E402

QtWidgets = pytest.importorskip("PyQt5.QtWidgets")


def test_display_shows_three_columns():
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    disp = sing.image_display("test", zoom=2)
    w = disp.qwidget()
    w.show()
    tb = gr.top_block()
    from gnuradio import blocks
    a = (np.arange(8 * 8 * 3) % 256).astype(np.uint8).reshape(8, 8, 3)
    # a live source on `sent` (a message-only block with no connection would be dropped)
    strobe = blocks.message_strobe(image_pdu({"image_id": "a"}, a), 100)
    tb.msg_connect(strobe, "strobe", disp, "sent")
    g = np.full((8, 8, 1), 128, np.uint8)
    tb.start()
    b = disp.to_basic_block()
    b._post(pmt.intern("sent"), image_pdu({"image_id": "a"}, a))
    b._post(pmt.intern("deepjscc"), image_pdu({"image_id": "a", "status": "local", "restored": False,
                                                "snr_db": 1.5, "snr_source": "true"}, a))
    b._post(pmt.intern("sing"), image_pdu({"image_id": "a", "status": "restored"}, g))
    b._post(pmt.intern("sing"), pmt.cons(pmt.make_dict(), pmt.init_u8vector(5, [1] * 5)))   # bad
    t0 = time.monotonic()
    while len(w.shown) < 3 and time.monotonic() - t0 < 10:
        app.processEvents()
        time.sleep(0.01)
    tb.stop()
    tb.wait()
    assert set(w.shown) == {"sent", "deepjscc", "sing"}
    assert "unrestored" in w.shown["deepjscc"] and "1.5 dB" in w.shown["deepjscc"]
    pm = w.images["sent"].pixmap()
    assert pm is not None and (pm.width(), pm.height()) == (16, 16)
    assert disp.n_shown["deepjscc"] == 1 and disp.n_shown["sing"] == 1 and disp.n_shown["sent"] >= 1
