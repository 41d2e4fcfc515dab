# SPDX-License-Identifier: GPL-3.0-or-later
"""Qt image display: sent / DeepJSCC / SING side by side, for GNU Radio Companion flowgraphs.

Three message inputs (``sent``, ``deepjscc``, ``sing``) take image PDUs (u8vector HWC with
height/width/channels in the metadata — what ``jscc_image_source.image`` and
``sing_receiver.images`` publish), of any size and 1 or 3 channels. Each column shows the latest
image (the sent column: the one the receivers showed last, since the source runs ahead of them)
in a box of ``column`` × ``column`` pixels (0: 64 × ``zoom``, the size of a 64×64 image at that zoom),
scaled by `shown_size`: enlarged ``zoom`` times with nearest-neighbour scaling (pixels stay pixels)
when that fits, else by the largest whole factor that fits, and an image larger than the box is
scaled down smoothly to fit, aspect kept. The window therefore has the same size whatever the
images are (a 37×53 thumbnail and a 1024×768 photo alike). Under each: the image id, status, PSNR / LPIPS
against the sent image (and their running means), the SNR the receiver used (estimated vs true)
and the worker latency. A status line on top says whether the worker restores the images or is
unreachable (the SING column then shows the local DeepJSCC decodes, marked unrestored). The panel
widens its window on first show so that the three images fit without scrollbars. Message handlers
only emit a Qt signal (the widget is updated in the GUI thread), so the display never slows the
flowgraph down.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
from gnuradio import gr
from PyQt5 import QtCore, QtGui, QtWidgets

from sing.rx_sink import number

from .pdu_util import BadPDU, message_ports, parse_image_pdu

COLUMNS = ("sent", "deepjscc", "sing")
SENT_BYTES = 32 << 20      # sent images kept until a receiver shows their id (at most 64 of them)
TITLES = {"sent": "sent", "deepjscc": "DeepJSCC", "sing": "SING"}


def shown_size(h: int, w: int, zoom: int, column: int) -> tuple[int, int, bool]:
    """(height, width, smooth) at which an h×w image is shown in a column×column box (module doc):
    a whole zoom factor ≤ `zoom` (nearest-neighbour) when the image fits the box at 1×, else scaled
    down (smooth) so that its longest side is `column`."""
    z = min(max(1, int(zoom)), column // max(h, w))
    if z >= 1:
        return h * z, w * z, False
    s = column / max(h, w)
    return max(1, round(h * s)), max(1, round(w * s)), True


def to_qimage(a: np.ndarray) -> QtGui.QImage:
    a = np.ascontiguousarray(a, dtype=np.uint8)
    h, w, c = a.shape
    if c == 1:
        q = QtGui.QImage(a.data, w, h, w, QtGui.QImage.Format_Grayscale8)
    else:
        a = np.ascontiguousarray(a[..., :3])
        q = QtGui.QImage(a.data, w, h, 3 * w, QtGui.QImage.Format_RGB888)
    return q.copy()        # own the pixels (a goes out of scope)


def caption(meta: dict, means: dict | None = None) -> str:
    """Caption lines under one image: id; status; PSNR/LPIPS (+ running means); SNR; latency (the
    GUI's multi-line form of sing.rx_sink.ImageRecord.line, from the PDU metadata)."""
    lines = [str(meta.get("image_id", ""))]
    if meta.get("status"):
        lines.append(str(meta["status"]) + ("" if meta.get("restored", True) else " (unrestored)"))
    psnr, lp = number(meta, "psnr"), number(meta, "lpips")
    if psnr is not None:
        lines.append(f"PSNR {psnr:.2f} dB" + ("" if lp is None else f"   LPIPS {lp:.3f}"))
    if means and means.get("n"):
        m = f"mean of {means['n']}: PSNR {means['psnr']:.2f} dB"
        lines.append(m + ("" if means.get("lpips") is None else f"   LPIPS {means['lpips']:.3f}"))
    snr, true = number(meta, "snr_db"), number(meta, "snr_true_db")
    if snr is not None:
        src = meta.get("snr_source", "?")
        lines.append(f"SNR {snr:.1f} dB ({src})" + ("" if true is None or src == "true"
                                                    else f"   true {true:.1f} dB"))
    lat = number(meta, "latency_s")
    if lat is not None:
        lines.append(f"worker latency {lat * 1e3:.0f} ms")
    return "\n".join(lines)


def status_text(meta: dict) -> str | None:
    """Status line for an image from the SING receiver, or None when it says nothing new; a second
    line when the receiver could not compute LPIPS (its reason and the fix)."""
    st, text = meta.get("status"), None
    if st == "restored":
        text = (f"worker OK: {meta.get('method_used', meta.get('method', '?'))} restores the images"
                + ("" if number(meta, "latency_s") is None else f" ({meta['latency_s'] * 1e3:.0f} ms)"))
    elif st == "local":
        text = (f"worker unreachable or failing ({meta.get('fallback_reason', '?')}): the SING column "
                f"shows local DeepJSCC decodes (unrestored)")
    if text and meta.get("lpips_unavailable"):
        text += "\n" + str(meta["lpips_unavailable"])
    return text


class _Panel(QtWidgets.QWidget):
    image_ready = QtCore.pyqtSignal(str, object, str)
    status_ready = QtCore.pyqtSignal(str)

    def __init__(self, title: str, zoom: int, parent=None, column: int = 0):
        super().__init__(parent)
        self.zoom = max(1, int(zoom))
        self.column = int(column) if int(column) > 0 else 64 * self.zoom
        lay = QtWidgets.QGridLayout(self)
        lay.setHorizontalSpacing(16)
        if title:
            t = QtWidgets.QLabel(f"<b>{title}</b>")
            t.setAlignment(QtCore.Qt.AlignCenter)
            lay.addWidget(t, 0, 0, 1, len(COLUMNS))
        self.status = QtWidgets.QLabel("waiting for images …")
        self.status.setAlignment(QtCore.Qt.AlignCenter)
        self.status.setWordWrap(True)
        lay.addWidget(self.status, 1, 0, 1, len(COLUMNS))
        self.images, self.captions, self.shown = {}, {}, {}
        for j, col in enumerate(COLUMNS):
            head = QtWidgets.QLabel(f"<b>{TITLES[col]}</b>")
            head.setAlignment(QtCore.Qt.AlignCenter)
            img = QtWidgets.QLabel("(waiting)")
            img.setAlignment(QtCore.Qt.AlignCenter)
            img.setMinimumSize(self.column + 32, self.column)   # every image fits this box
            cap = QtWidgets.QLabel("")
            cap.setAlignment(QtCore.Qt.AlignHCenter | QtCore.Qt.AlignTop)
            cap.setMinimumHeight(6 * cap.fontMetrics().lineSpacing())
            lay.addWidget(head, 2, j)
            lay.addWidget(img, 3, j)
            lay.addWidget(cap, 4, j)
            self.images[col], self.captions[col] = img, cap
        self._fitted = False
        self.image_ready.connect(self._show, QtCore.Qt.QueuedConnection)
        self.status_ready.connect(self.status.setText, QtCore.Qt.QueuedConnection)

    @QtCore.pyqtSlot(str, object, str)
    def _show(self, col: str, a, text: str) -> None:
        q = to_qimage(a)
        h, w, smooth = shown_size(q.height(), q.width(), self.zoom, self.column)
        pm = QtGui.QPixmap.fromImage(q).scaled(w, h, QtCore.Qt.IgnoreAspectRatio,
                                              QtCore.Qt.SmoothTransformation if smooth
                                              else QtCore.Qt.FastTransformation)
        self.images[col].setPixmap(pm)
        self.captions[col].setText(text)
        self.shown[col] = text

    def showEvent(self, e) -> None:
        super().showEvent(e)
        if not self._fitted:
            self._fitted = True
            QtCore.QTimer.singleShot(0, self.fit_window)

    def fit_window(self) -> None:
        """Grow the top-level window to what its content asks for (GRC's QT GUI window is a
        scroll area that otherwise opens at a few hundred pixels), capped at the screen."""
        win, area = self.window(), self.parentWidget()
        while area is not None and not isinstance(area, QtWidgets.QScrollArea):
            area = area.parentWidget()
        inner = area.widget() if area is not None else self
        want = inner.sizeHint() + QtCore.QSize(40, 40)
        scr = QtWidgets.QApplication.primaryScreen()
        if scr is not None:
            want = want.boundedTo(scr.availableGeometry().size())
        if win is not self and (win.width() < want.width() or win.height() < want.height()):
            win.resize(max(win.width(), want.width()), max(win.height(), want.height()))


class image_display(gr.basic_block):
    def __init__(self, title: str = "SING", zoom: int = 4, parent=None, column: int = 0):
        gr.basic_block.__init__(self, name="sing_image_display", in_sig=None, out_sig=None)
        self._panel = _Panel(title, zoom, parent, column)
        self.n_shown = {c: 0 for c in COLUMNS}
        self._sent, self._sent_shown, self._rx_id = OrderedDict(), None, None
        self.sums = {c: {"n": 0, "psnr": 0.0, "lpips": 0.0, "n_lpips": 0} for c in COLUMNS}
        message_ports(self, {"sent": self.handle_sent, "deepjscc": self.handle_deepjscc, "sing": self.handle_sing})

    def qwidget(self) -> QtWidgets.QWidget:
        return self._panel

    def handle_sent(self, msg):
        self._handle("sent", msg)

    def handle_deepjscc(self, msg):
        self._handle("deepjscc", msg)

    def handle_sing(self, msg):
        self._handle("sing", msg)

    def means(self, col: str) -> dict:
        """Running means of PSNR / LPIPS over the images of a column that carried them."""
        s = self.sums[col]
        if not s["n"]:
            return {"n": 0}
        return {"n": s["n"], "psnr": s["psnr"] / s["n"],
                "lpips": s["lpips"] / s["n_lpips"] if s["n_lpips"] else None}

    def _show_sent(self, image_id: str) -> None:
        if image_id in self._sent and image_id != self._sent_shown:
            self._sent_shown = image_id
            m, a = self._sent[image_id]
            self.n_shown["sent"] += 1
            self._panel.image_ready.emit("sent", a, caption(m))

    def _handle(self, col: str, msg) -> None:
        try:
            meta, a = parse_image_pdu(msg)
        except BadPDU as e:
            self.logger.warn(f"display {col}: image {e.image_id or '?'} ignored ({e.reason}): {e}")
            return
        if col == "sent":
            # keep it; show it with the received image of the same id (the source runs ahead of
            # the receivers), or at once while no receiver has shown anything
            self._sent.pop(str(meta.get("image_id")), None)
            self._sent[str(meta.get("image_id"))] = (meta, a)
            while len(self._sent) > 1 and (len(self._sent) > 64 or sum(
                    v[1].nbytes for v in self._sent.values()) > SENT_BYTES):
                self._sent.popitem(last=False)
            if self._rx_id is None or self._rx_id == str(meta.get("image_id")):
                self._show_sent(str(meta.get("image_id")))
            return
        self._rx_id = str(meta.get("image_id"))
        self._show_sent(self._rx_id)
        psnr, lp = number(meta, "psnr"), number(meta, "lpips")
        if psnr is not None:
            s = self.sums[col]
            s["n"], s["psnr"] = s["n"] + 1, s["psnr"] + psnr
            if lp is not None:
                s["n_lpips"], s["lpips"] = s["n_lpips"] + 1, s["lpips"] + lp
        self.n_shown[col] += 1
        self._panel.image_ready.emit(col, a, caption(meta, self.means(col)))
        st = status_text(meta) if col == "sing" else None
        if st:
            self._panel.status_ready.emit(st)
