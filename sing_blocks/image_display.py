"""Qt image display: sent / DeepJSCC / SING side by side, for GNU Radio Companion flowgraphs.

Three message inputs (``sent``, ``deepjscc``, ``sing``) take image PDUs (u8vector HWC with
height/width/channels in the metadata — what ``jscc_image_source.image`` and
``sing_receiver.images`` publish). Each column shows the latest image, enlarged by ``zoom``, with
its image id, status and SNR underneath. Message handlers only emit a Qt signal (the widget is
updated in the GUI thread), so the display never slows the flowgraph down.
"""
from __future__ import annotations

import numpy as np
import pmt
from gnuradio import gr
from PyQt5 import QtCore, QtGui, QtWidgets

from .pdu_util import BadPDU, parse_image_pdu

COLUMNS = ("sent", "deepjscc", "sing")
TITLES = {"sent": "sent", "deepjscc": "DeepJSCC", "sing": "SING"}


def to_qimage(a: np.ndarray) -> QtGui.QImage:
    a = np.ascontiguousarray(a, dtype=np.uint8)
    h, w, c = a.shape
    if c == 1:
        q = QtGui.QImage(a.data, w, h, w, QtGui.QImage.Format_Grayscale8)
    else:
        a = np.ascontiguousarray(a[..., :3])
        q = QtGui.QImage(a.data, w, h, 3 * w, QtGui.QImage.Format_RGB888)
    return q.copy()        # own the pixels (a goes out of scope)


class _Panel(QtWidgets.QWidget):
    image_ready = QtCore.pyqtSignal(str, object, str)

    def __init__(self, title: str, zoom: int, parent=None):
        super().__init__(parent)
        self.zoom = max(1, int(zoom))
        lay = QtWidgets.QGridLayout(self)
        if title:
            t = QtWidgets.QLabel(f"<b>{title}</b>")
            t.setAlignment(QtCore.Qt.AlignCenter)
            lay.addWidget(t, 0, 0, 1, len(COLUMNS))
        self.images, self.captions, self.shown = {}, {}, {}
        for j, col in enumerate(COLUMNS):
            head = QtWidgets.QLabel(TITLES[col])
            head.setAlignment(QtCore.Qt.AlignCenter)
            img = QtWidgets.QLabel("(waiting)")
            img.setAlignment(QtCore.Qt.AlignCenter)
            img.setMinimumSize(64, 64)
            cap = QtWidgets.QLabel("")
            cap.setAlignment(QtCore.Qt.AlignCenter)
            lay.addWidget(head, 1, j)
            lay.addWidget(img, 2, j)
            lay.addWidget(cap, 3, j)
            self.images[col], self.captions[col] = img, cap
        self.image_ready.connect(self._show, QtCore.Qt.QueuedConnection)

    @QtCore.pyqtSlot(str, object, str)
    def _show(self, col: str, a, caption: str) -> None:
        q = to_qimage(a)
        pm = QtGui.QPixmap.fromImage(q).scaled(q.width() * self.zoom, q.height() * self.zoom,
                                              QtCore.Qt.KeepAspectRatio, QtCore.Qt.FastTransformation)
        self.images[col].setPixmap(pm)
        self.captions[col].setText(caption)
        self.shown[col] = caption


class image_display(gr.basic_block):
    def __init__(self, title: str = "SING", zoom: int = 4, parent=None):
        gr.basic_block.__init__(self, name="sing_image_display", in_sig=None, out_sig=None)
        self._panel = _Panel(title, zoom, parent)
        self.n_shown = {c: 0 for c in COLUMNS}
        for col in COLUMNS:
            self.message_port_register_in(pmt.intern(col))
        # bound methods only (a lambda fails at run time, gnuradio#6447)
        self.set_msg_handler(pmt.intern("sent"), self.handle_sent)
        self.set_msg_handler(pmt.intern("deepjscc"), self.handle_deepjscc)
        self.set_msg_handler(pmt.intern("sing"), self.handle_sing)

    def qwidget(self) -> QtWidgets.QWidget:
        return self._panel

    def handle_sent(self, msg):
        self._handle("sent", msg)

    def handle_deepjscc(self, msg):
        self._handle("deepjscc", msg)

    def handle_sing(self, msg):
        self._handle("sing", msg)

    def _handle(self, col: str, msg) -> None:
        try:
            meta, a = parse_image_pdu(msg)
        except BadPDU as e:
            self.logger.warn(f"display {col}: image {e.image_id or '?'} ignored ({e.reason}): {e}")
            return
        parts = [str(meta.get("image_id", ""))]
        if meta.get("status"):
            parts.append(str(meta["status"]) + ("" if meta.get("restored", True) else " (unrestored)"))
        if isinstance(meta.get("snr_db"), (int, float)):
            parts.append(f"{meta['snr_db']:.1f} dB ({meta.get('snr_source', '?')})")
        self.n_shown[col] += 1
        self._panel.image_ready.emit(col, a, "\n".join(parts))
