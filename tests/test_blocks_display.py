"""image_display (Qt) offscreen: image PDUs posted to sent/deepjscc/sing in a running flowgraph
show up as pixmaps (nearest-neighbour, zoom×) with captions (metrics, running means, SNR estimated
vs true, latency); a worker that is unreachable shows in the status line; the window grows to
fit the three images; bad PDUs are ignored with a log line."""
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


def _wait(app, cond, timeout=10):
    t0 = time.monotonic()
    while not cond() and time.monotonic() - t0 < timeout:
        app.processEvents()
        time.sleep(0.01)


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
    _wait(app, lambda: len(w.shown) >= 3)
    tb.stop()
    tb.wait()
    assert set(w.shown) == {"sent", "deepjscc", "sing"}
    assert "unrestored" in w.shown["deepjscc"] and "1.5 dB" in w.shown["deepjscc"]
    pm = w.images["sent"].pixmap()
    assert pm is not None and (pm.width(), pm.height()) == (16, 16)
    assert disp.n_shown["deepjscc"] == 1 and disp.n_shown["sing"] == 1 and disp.n_shown["sent"] >= 1


def test_metrics_running_means_status_and_window_size():
    """Two SING images with metrics, then one decoded locally because the worker is down: the
    caption shows the last PSNR/LPIPS, the running means over all three, estimated vs true SNR and
    the latency; the status line says the worker is unreachable. A 64×64 image at zoom 4 is shown
    256×256 with nearest-neighbour pixels, and the panel's window (a GRC-style scroll area that
    starts at 263×189) grows to what the panel asks for, at least 900 px wide (capped at the
    screen: the offscreen platform's is 800 px)."""
    from PyQt5 import QtGui
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    win = QtWidgets.QWidget()
    lay = QtWidgets.QVBoxLayout(win)
    area = QtWidgets.QScrollArea()
    area.setWidgetResizable(True)
    lay.addWidget(area)
    inner = QtWidgets.QWidget()
    area.setWidget(inner)
    disp = sing.image_display("SING loopback", zoom=4)
    QtWidgets.QVBoxLayout(inner).addWidget(disp.qwidget())
    win.resize(263, 189)
    win.show()
    p = disp.qwidget()
    avail = QtWidgets.QApplication.primaryScreen().availableGeometry().width()   # offscreen: 800
    assert p.sizeHint().width() >= 900, p.sizeHint()
    _wait(app, lambda: win.width() >= min(900, avail), timeout=5)
    assert win.width() >= min(900, avail) and win.height() >= 189 + 200, (win.size(), avail)
    a = np.zeros((64, 64, 3), np.uint8)
    a[::2, ::2] = 255                                        # checkerboard: smoothing would grey it
    common = {"snr_db": 4.2, "snr_source": "estimated", "snr_true_db": 5.0}
    metas = [dict(common, image_id="x0", status="restored", method_used="sing-zero", psnr=20.0,
                  lpips=0.30, latency_s=0.25),
             dict(common, image_id="x1", status="restored", method_used="sing-zero", psnr=22.0,
                  lpips=0.20, latency_s=0.35),
             dict(common, image_id="x2", status="local", restored=False, method_used="deepjscc",
                  psnr=24.0, lpips=0.40, fallback_reason="worker unavailable: no reply")]
    sent_x2 = np.full((64, 64, 3), 7, np.uint8)
    disp.to_basic_block()._post(pmt.intern("sent"), image_pdu({"image_id": "x2"}, sent_x2))
    for m in metas:
        disp.to_basic_block()._post(pmt.intern("sing"), image_pdu(m, a))
    tb = gr.top_block()
    from gnuradio import blocks
    strobe = blocks.message_strobe(image_pdu({"image_id": "s"}, a), 1000)
    tb.msg_connect(strobe, "strobe", disp, "sent")
    tb.start()
    _wait(app, lambda: disp.n_shown["sing"] == 3 and "x2" in p.shown.get("sing", ""))
    tb.stop()
    tb.wait()
    cap = p.shown["sing"]
    assert "PSNR 24.00 dB" in cap and "LPIPS 0.400" in cap
    assert "mean of 3: PSNR 22.00 dB   LPIPS 0.300" in cap
    assert "SNR 4.2 dB (estimated)   true 5.0 dB" in cap and "unrestored" in cap
    assert disp.means("sing")["n"] == 3
    _wait(app, lambda: "unreachable" in p.status.text())
    assert "unreachable" in p.status.text() and "DeepJSCC" in p.status.text()
    img = p.images["sing"].pixmap().toImage()
    assert (img.width(), img.height()) == (256, 256)
    px = {QtGui.QColor(img.pixel(x, y)).red() for x in range(0, 16) for y in range(0, 16)}
    assert px == {0, 255}                                    # nearest neighbour: no grey
    # the sent column shows the sent image of the id the receivers showed last, not the newest
    assert p.shown["sent"] == "x2"
    assert QtGui.QColor(p.images["sent"].pixmap().toImage().pixel(5, 5)).red() == 7
