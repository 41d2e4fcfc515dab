# SPDX-License-Identifier: GPL-3.0-or-later
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
    # the ports' queues are served in no fixed order: the sent x2 may be handled after the SING x2
    _wait(app, lambda: disp.n_shown["sing"] == 3 and "x2" in p.shown.get("sing", "")
          and p.shown.get("sent") == "x2")
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


def test_lpips_weights_missing_is_said_with_the_fix(tmp_path, monkeypatch, capfd):
    """No LPIPS weights (a HOME without ~/.cache/sing; here SING_CACHE names an empty folder): a
    real SING receiver still gives PSNR, logs once that LPIPS is unavailable and how to get the
    weights, marks its image PDUs so, and the display's status line says it."""
    import torch
    from gnuradio.sing import qa_helpers as qa
    from gnuradio.sing.pdu_util import symbols_pdu
    from sing.jscc import load_jscc
    monkeypatch.setenv("SING_CACHE", str(tmp_path / "empty-cache"))
    jd = qa.tiny_jscc_dir(tmp_path / "jscc32", image_size=32, bcr="1/12")
    model = load_jscc(jd)
    xs = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    rx = sing.sing_receiver("", "deepjscc", str(tmp_path / "out"), jscc_dir=str(jd), print_lines=True)
    pdus = []
    for i in range(2):
        with torch.no_grad():
            z = model.encode(xs[i:i + 1], 5.0)[0].numpy()
        pdus.append(symbols_pdu({"image_id": f"t/im{i}", "k": model.k, "bcr": "1/12",
                                 "model_id": model.model_id, "height": 32, "width": 32, "channels": 3,
                                 "snr_db": 5.0, "snr_source": "true", "seq": i}, z))
        a = (xs[i].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        rx.handle_sent(image_pdu({"image_id": f"t/im{i}"}, a))     # known before any PDU arrives
    dbg, _ = qa.post_and_run(rx, "pdus", pdus, "images")
    cap = capfd.readouterr()
    assert dbg.num_messages() == 2
    metas = [pmt.to_python(pmt.car(dbg.get_message(i))) for i in range(2)]
    assert all("psnr" in m and "lpips" not in m for m in metas), [sorted(m) for m in metas]
    assert all("lpips_weights install" in m["lpips_unavailable"] for m in metas), metas
    err = cap.out + cap.err
    assert err.count("LPIPS unavailable, PSNR only") == 1 and "lpips_weights install" in err, err
    assert [s for s in cap.out.splitlines() if s.startswith("summary")][0].endswith(
        "To get the weights: python3 -m sing.metrics.lpips_weights install")
    # the display: images shown, the status line says LPIPS is unavailable and how to get it
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    disp = sing.image_display("SING", zoom=2)
    p = disp.qwidget()
    for i in range(2):
        disp.to_basic_block()._post(pmt.intern("sing"), dbg.get_message(i))
    tb = gr.top_block()
    from gnuradio import blocks
    strobe = blocks.message_strobe(image_pdu({"image_id": "s"}, np.zeros((8, 8, 3), np.uint8)), 1000)
    tb.msg_connect(strobe, "strobe", disp, "sent")
    tb.start()
    _wait(app, lambda: disp.n_shown["sing"] == 2 and "LPIPS unavailable" in p.status.text())
    tb.stop()
    tb.wait()
    st = p.status.text()
    assert "unreachable" in st and "LPIPS unavailable" in st and "PSNR only" in st, st
    assert "python3 -m sing.metrics.lpips_weights install" in st, st
    assert "PSNR" in p.shown["sing"] and "LPIPS" not in p.shown["sing"]


def test_any_size_fits_the_column_and_the_window_keeps_its_size():
    """Zoom 4 (columns of 256 px): a 16×16 image is shown 4× and a 37×53 greyscale one 4× with
    nearest-neighbour pixels; 300×200 and 1024×768 photos are scaled down to fit 256 px, aspect
    kept; the panel asks for the same size before and after (no window that grows with a photo)."""
    from gnuradio.sing.image_display import shown_size
    assert shown_size(16, 16, 4, 256) == (64, 64, False)
    assert shown_size(37, 53, 4, 256) == (148, 212, False)
    assert shown_size(100, 120, 4, 256) == (200, 240, False)      # 2× is the largest that fits
    assert shown_size(300, 200, 4, 256) == (256, 171, True)
    assert shown_size(768, 1024, 4, 256) == (192, 256, True)
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    disp = sing.image_display("sizes", zoom=4)
    p = disp.qwidget()
    p.show()
    hint0 = p.sizeHint()
    rng = np.random.default_rng(0)
    imgs = {"sent": rng.integers(0, 256, (37, 53, 1), dtype=np.uint8),
            "deepjscc": rng.integers(0, 256, (300, 200, 3), dtype=np.uint8),
            "sing": rng.integers(0, 256, (768, 1024, 3), dtype=np.uint8)}
    tb = gr.top_block()
    from gnuradio import blocks
    strobe = blocks.message_strobe(image_pdu({"image_id": "a"}, imgs["sent"]), 1000)
    tb.msg_connect(strobe, "strobe", disp, "sent")
    tb.start()
    for col in ("deepjscc", "sing"):
        disp.to_basic_block()._post(pmt.intern(col), image_pdu({"image_id": "a", "status": "restored"},
                                                                imgs[col]))
    _wait(app, lambda: disp.n_shown["sing"] == 1 and disp.n_shown["deepjscc"] == 1
          and disp.n_shown["sent"] >= 1)
    tb.stop()
    tb.wait()
    app.processEvents()
    sizes = {c: (p.images[c].pixmap().width(), p.images[c].pixmap().height()) for c in imgs}
    assert sizes == {"sent": (212, 148), "deepjscc": (171, 256), "sing": (256, 192)}, sizes
    assert p.sizeHint() == hint0, (hint0, p.sizeHint())
