"""OFDM JSCC transmitter (GNU Radio): image PDUs in, complex baseband out. Thin wrapper of sing.phy.

Message port `in`: PDUs `pmt.cons(meta, c32vector)` (CONVENTIONS.md keys image_id, k, model_id,
height, width, channels, bcr). Stream out: frames (mean power `amplitude`²), see sing/phy/tx.py.
idle="wait": output only frames (+ `gap` zeros each), tagged tx_sob/tx_eob for burst-mode radios;
idle="zeros": a continuous stream, zeros between frames (for sinks that need steady samples).
"""
from __future__ import annotations

import collections
import threading

import numpy as np
import pmt
from gnuradio import blocks, gr

from sing.phy import HeaderFields, OfdmParams, build_frame

_SOB, _EOB = pmt.intern("tx_sob"), pmt.intern("tx_eob")


def _py(meta):
    return pmt.to_python(meta) if pmt.is_dict(meta) else {}


class ofdm_framer(gr.sync_block):
    def __init__(self, header_mod="qpsk", gap=64, idle="wait", burst_tags=True, max_queue=256):
        gr.sync_block.__init__(self, name="sing_ofdm_framer", in_sig=None, out_sig=[np.complex64])
        if idle not in ("wait", "zeros"):
            raise ValueError(f"idle must be 'wait' or 'zeros', got {idle!r}")
        self.p = OfdmParams(header_mod=header_mod)
        self.gap, self.idle, self.burst_tags = int(gap), idle, bool(burst_tags)
        self.q = collections.deque()
        self.max_queue = int(max_queue)
        self.cv = threading.Condition()
        self.cur, self.cur_pos = None, 0
        self.sent = self.dropped = 0
        self.message_port_register_in(pmt.intern("in"))
        self.set_msg_handler(pmt.intern("in"), self.handle)

    def handle(self, msg):
        try:
            if not pmt.is_pair(msg) or not pmt.is_c32vector(pmt.cdr(msg)):
                raise ValueError("not a PDU of complex symbols (pmt.cons(dict, c32vector))")
            meta = _py(pmt.car(msg))
            z = np.asarray(pmt.to_python(pmt.cdr(msg)), np.complex64)
            h = HeaderFields(image_id=str(meta.get("image_id", self.sent)), k=int(meta.get("k", z.size)),
                             model_id=str(meta.get("model_id", "")), height=int(meta.get("height", 0)),
                             width=int(meta.get("width", 0)), channels=int(meta.get("channels", 0)),
                             bcr=str(meta.get("bcr", "")))
            frame = build_frame(self.p, z, h)
        except Exception as e:                         # bad PDU: count, one line, keep running
            self.dropped += 1
            self.logger.error(f"OFDM TX: dropped a PDU: {e}")
            return
        if self.gap:
            frame = np.concatenate([frame, np.zeros(self.gap, np.complex64)])
        with self.cv:
            if len(self.q) >= self.max_queue:
                self.dropped += 1
                self.logger.warn("OFDM TX: queue full, dropped the oldest frame")
                self.q.popleft()
            self.q.append(frame)
            self.cv.notify()

    def work(self, input_items, output_items):
        out = output_items[0]
        n, i = len(out), 0
        while i < n:
            if self.cur is None:
                with self.cv:
                    if not self.q and i == 0 and self.idle == "wait":
                        self.cv.wait(0.01)
                    if not self.q:
                        break
                    self.cur, self.cur_pos = self.q.popleft(), 0
                if self.burst_tags:
                    self.add_item_tag(0, self.nitems_written(0) + i, _SOB, pmt.PMT_T)
            m = min(n - i, self.cur.size - self.cur_pos)
            out[i:i + m] = self.cur[self.cur_pos:self.cur_pos + m]
            i += m
            self.cur_pos += m
            if self.cur_pos >= self.cur.size:
                if self.burst_tags:
                    self.add_item_tag(0, self.nitems_written(0) + i - 1, _EOB, pmt.PMT_T)
                self.cur = None
                self.sent += 1
        if i < n and self.idle == "zeros":
            out[i:] = 0
            i = n
        return i


class ofdm_jscc_tx(gr.hier_block2):
    """Hierarchical OFDM JSCC TX: message `in` (image PDUs) → complex stream out."""

    def __init__(self, header_mod="qpsk", amplitude=1.0, gap=64, idle="wait", burst_tags=True):
        gr.hier_block2.__init__(self, "sing_ofdm_jscc_tx", gr.io_signature(0, 0, 0),
                                gr.io_signature(1, 1, gr.sizeof_gr_complex))
        self.message_port_register_hier_in("in")
        self.framer = ofdm_framer(header_mod, gap, idle, burst_tags)
        self.gain = blocks.multiply_const_cc(amplitude)
        self.msg_connect(self, "in", self.framer, "in")
        self.connect(self.framer, self.gain, self)

    def set_amplitude(self, a):
        self.gain.set_k(a)
