"""OFDM JSCC transmitter (GNU Radio): image PDUs in, complex baseband out. Thin wrapper of sing.phy.

Message port `in`: PDUs `pmt.cons(meta, c32vector)` (CONVENTIONS.md keys image_id, k, model_id,
height, width, channels; `seq` when the source numbers its images, else the block counts).
Stream out: frames (mean power `amplitude`²), see sing/phy/tx.py.
The message handler only checks and queues the PDU; work() builds every queued frame in one batch
(one inverse FFT for all of them) and copies samples out.
idle="wait": output only frames (+ `gap` zeros each), tagged tx_sob/tx_eob for burst-mode radios;
idle="zeros": a continuous stream, zeros between frames (for sinks that need steady samples).
A bad PDU is counted (`dropped`) and logged with one line; the flowgraph keeps running.
"""
from __future__ import annotations

import collections
import threading

import numpy as np
import pmt
from gnuradio import blocks, gr

from sing.phy import HeaderFields, OfdmParams
from sing.phy.tx import build_frames, check_symbols

_SOB, _EOB = pmt.intern("tx_sob"), pmt.intern("tx_eob")
_KEYS = {k: pmt.intern(k) for k in ("image_id", "k", "model_id", "height", "width", "channels", "seq")}
_BATCH = 16


def _get(meta, key, default):
    v = pmt.dict_ref(meta, _KEYS[key], pmt.PMT_NIL)
    if pmt.is_symbol(v):
        return pmt.symbol_to_string(v)
    if pmt.is_integer(v):
        return pmt.to_long(v)
    return default if pmt.is_null(v) else pmt.to_python(v)


def c32_array(v) -> np.ndarray:
    """complex64 array of a c32vector PMT (via its serialisation: 8-byte header, big-endian
    float32 pairs; 4× faster than c32vector_elements, which builds a Python list)."""
    n = pmt.length(v)
    s = pmt.serialize_str(v)
    if len(s) != 8 * n + 8:
        return np.asarray(pmt.c32vector_elements(v), np.complex64)
    return np.frombuffer(s, ">f4", count=2 * n, offset=8).astype(np.float32).view(np.complex64)


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
        self.cur, self.cur_pos, self.bounds = None, 0, []
        self.sent = self.dropped = 0
        self.seq = 0
        self.done, self.flush = False, 2048
        self.message_port_register_in(pmt.intern("in"))
        self.set_msg_handler(pmt.intern("in"), self.handle)
        self.set_msg_handler(pmt.intern("system"), self.handle_system)

    def handle_system(self, msg):
        """Upstream finished ('done'): send what is queued, then `flush` zeros (so that delays and
        filters downstream pass the last frame on), then finish."""
        if pmt.is_pair(msg) and pmt.eq(pmt.car(msg), pmt.intern("done")):
            with self.cv:
                self.done = True
                self.cv.notify()
            return
        self.to_basic_block().system_handler(msg)

    def handle(self, msg):
        try:
            if not pmt.is_pair(msg) or not pmt.is_c32vector(pmt.cdr(msg)):
                raise ValueError("not a PDU of complex symbols (pmt.cons(dict, c32vector))")
            meta = pmt.car(msg)
            if not pmt.is_dict(meta):
                meta = pmt.make_dict()
            z = c32_array(pmt.cdr(msg))
            seq = _get(meta, "seq", None)
            seq = self.seq if not isinstance(seq, int) else seq
            self.seq = seq + 1
            h = HeaderFields(image_id=str(_get(meta, "image_id", seq)), k=int(_get(meta, "k", z.size)),
                             model_id=str(_get(meta, "model_id", "")), height=int(_get(meta, "height", 0)),
                             width=int(_get(meta, "width", 0)), channels=int(_get(meta, "channels", 0)),
                             seq=seq)
            h.words()                                  # range checks now, not in work()
            z = check_symbols(z, h.k)
        except Exception as e:                         # bad PDU: count, one line, keep running
            self.dropped += 1
            self.logger.error(f"OFDM TX: dropped a PDU: {e}")
            return
        with self.cv:
            if len(self.q) >= self.max_queue:
                self.dropped += 1
                self.logger.warn("OFDM TX: queue full, dropped the oldest frame")
                self.q.popleft()
            self.q.append((z, h))
            self.cv.notify()

    def _next_batch(self) -> bool:
        with self.cv:
            items = [self.q.popleft() for _ in range(min(_BATCH, len(self.q)))]
        if not items:
            return False
        try:
            x, lens = build_frames(self.p, [z for z, _ in items], [h for _, h in items], self.gap)
        except Exception as e:                         # should not happen (checked in handle)
            self.dropped += len(items)
            self.logger.error(f"OFDM TX: dropped {len(items)} PDUs: {e}")
            return False
        self.cur, self.cur_pos = x, 0
        self.bounds = collections.deque()
        o = 0
        for n in lens:
            self.bounds.append((o, o + n + self.gap))
            o += n + self.gap
        return True

    def work(self, input_items, output_items):
        out = output_items[0]
        n, i = len(out), 0
        while i < n:
            if self.cur is None or self.cur_pos >= self.cur.size:
                self.cur = None
                if not self._next_batch():
                    if self.done and not self.q:
                        m = min(n - i, self.flush)
                        out[i:i + m] = 0
                        self.flush -= m
                        i += m
                        return i if i > 0 else -1          # -1: WORK_DONE
                    if i == 0 and self.idle == "wait":
                        with self.cv:
                            if not self.q:
                                self.cv.wait(0.01)
                        if self._next_batch():
                            continue
                    break
            m = min(n - i, self.cur.size - self.cur_pos)
            out[i:i + m] = self.cur[self.cur_pos:self.cur_pos + m]
            w0 = self.nitems_written(0) + i - self.cur_pos     # stream index of cur[0]
            while self.bounds and self.bounds[0][0] < self.cur_pos + m:
                a, b = self.bounds[0]                          # frame (+ gap) = cur[a:b]
                if a >= self.cur_pos and self.burst_tags:
                    self.add_item_tag(0, w0 + a, _SOB, pmt.PMT_T)
                if b > self.cur_pos + m:
                    break
                if self.burst_tags:
                    self.add_item_tag(0, w0 + b - 1, _EOB, pmt.PMT_T)
                self.bounds.popleft()
                self.sent += 1
            i += m
            self.cur_pos += m
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
