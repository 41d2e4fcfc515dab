# SPDX-License-Identifier: GPL-3.0-or-later
"""OFDM JSCC transmitter (GNU Radio): image PDUs in, complex baseband out. Thin wrapper of sing.phy.

Message port `in`: PDUs `pmt.cons(meta, c32vector)` (CONVENTIONS.md keys image_id, k, model_id,
height, width, channels; `seq` when the source numbers its images, else the block counts).
Stream out: frames (mean power `amplitude`²), see sing/phy/tx.py.

Throughput: the message handler only queues a PDU; work() takes up to `_BATCH` queued PDUs, reads
their metadata (one serialisation of the dict) and copies their symbols by address into one kept
array (ofdm_pmt.c32_copy: no serialisation of the symbols), checks them for NaN/Inf with one numpy
call, turns them into samples with one array program (sing.phy.tx.build_frames: one gather and one
inverse FFT for all their OFDM symbols, the amplitude folded in, into buffers kept from batch to
batch: FrameWorkspace) and copies them out in large chunks (a 64k-sample output buffer in burst
mode). The block keeps its thread's Python thread state between GNU Radio's calls into Python
(thread_state.py): without that every message delivered cost a fresh thread state and frame stack,
about as much as reading the PDU. About 35 µs of CPU per k = 256 frame (1616 samples) in the
flowgraph. There is no separate gain block: `set_amplitude` applies from the next batch.
idle="wait": output only frames (+ `gap` zeros each), tagged tx_sob/tx_eob for burst-mode radios;
idle="zeros": a continuous stream, zeros between frames (for sinks that need steady samples; a
small output buffer there keeps the latency of a new frame behind the zeros low).
A bad PDU is counted (`dropped`) and logged with one line; the flowgraph keeps running.
"""
from __future__ import annotations

import collections

import numpy as np
import pmt
from gnuradio import gr

from sing.errors import InputError
from sing.phy import HeaderFields, OfdmParams
from sing.phy.header import header_int
from sing.phy.tx import FrameWorkspace, build_frames, check_count

from .ofdm_pmt import c32_bytes, c32_copy, pdu_meta_vector, pdu_parts
from .pdu_util import message_ports, meta_from_pmt
from .thread_state import ThreadStateHold

_SOB, _EOB = pmt.intern("tx_sob"), pmt.intern("tx_eob")
_BATCH = 64                 # PDUs turned into samples per build
_BURST_BUFFER = 1 << 16     # output buffer (items) in idle="wait" mode
_FLUSH = 2048               # zeros sent after the last frame once upstream is done


def _fields(f: dict, n: int, next_seq: int) -> tuple[HeaderFields, int]:
    """Metadata dict of an image with n symbols → (header fields, their header_int). Raises
    InputError naming what is wrong. `next_seq` numbers the image when it has no integer `seq`."""
    seq = f.get("seq")
    seq = next_seq if not isinstance(seq, int) else seq
    h = HeaderFields(image_id=str(f.get("image_id", seq)), k=int(f.get("k", n)),
                     model_id=str(f.get("model_id", "")), height=int(f.get("height", 0)),
                     width=int(f.get("width", 0)), channels=int(f.get("channels", 0)), seq=seq)
    check_count(n, h.k)
    return h, header_int(h)                             # header_int: the range checks


def parse_pdu(msg, next_seq: int) -> tuple[bytes, HeaderFields, int]:
    """An image PDU → (its symbols as big-endian '>c8' bytes, header fields, their header_int).
    Raises ValueError / InputError naming what is wrong (NaN/Inf symbols are checked per batch).
    `next_seq` numbers the image when its metadata has no integer `seq`."""
    parts = pdu_parts(msg)                              # the usual PDU, read off serialisations
    if parts is None:                                   # anything else: pmt's generic functions
        if not pmt.is_pair(msg) or not pmt.is_c32vector(pmt.cdr(msg)):
            raise ValueError("not a PDU of complex symbols (pmt.cons(dict, c32vector))")
        meta = pmt.car(msg)
        parts = (meta_from_pmt(meta) if pmt.is_dict(meta) else {}), c32_bytes(pmt.cdr(msg))
    f, blob = parts
    h, hint = _fields(f, len(blob) // 8, next_seq)
    return blob, h, hint


def read_pdu(msg, next_seq: int):
    """An image PDU → (symbols, n, header fields, header_int) where symbols is the c32vector PMT
    itself (copied later by address: `ofdm_pmt.c32_copy`) for the usual PDU, or '>c8' bytes
    (`parse_pdu`) for anything else. Same errors as `parse_pdu`."""
    fast = pdu_meta_vector(msg)
    if fast is None:
        blob, h, hint = parse_pdu(msg, next_seq)
        return blob, len(blob) // 8, h, hint
    f, v = fast
    n = pmt.length(v)
    return (v, n) + _fields(f, n, next_seq)


class ofdm_framer(gr.sync_block):
    """PDUs → frames. Message handling and work() run in the block's one thread, so no locks."""

    def __init__(self, header_mod="qpsk", gap=64, idle="wait", burst_tags=True, max_queue=256,
                 amplitude=1.0):
        gr.sync_block.__init__(self, name="sing_ofdm_framer", in_sig=None, out_sig=[np.complex64])
        if idle not in ("wait", "zeros"):
            raise ValueError(f"idle must be 'wait' or 'zeros', got {idle!r}")
        self.p = OfdmParams(header_mod=header_mod)
        self.gap, self.idle, self.burst_tags = int(gap), idle, bool(burst_tags)
        self.amplitude = float(amplitude)
        self.q = collections.deque()
        self.max_queue = int(max_queue)
        self.ts = ThreadStateHold()                    # this block thread's Python state, kept
        self.ws = FrameWorkspace()                     # build buffers, reused batch after batch
        self.zbuf = np.zeros(0, np.complex64)          # the symbols of the batch being built
        self.cur = np.zeros(0, np.complex64)           # samples of the batch being sent (in ws)
        self.cur_pos = 0
        self.starts, self.ends = [], []                # frame (+ gap) bounds in cur
        self.sob_i = self.eob_i = 0                    # next frame to tag SOB / EOB
        self.sent = self.dropped = 0
        self.seq = 0
        self.done, self.flush = False, _FLUSH
        if idle == "wait":
            self.set_min_output_buffer(_BURST_BUFFER)
        message_ports(self, {"in": self.handle, "system": self.handle_system})

    def set_amplitude(self, a):
        self.amplitude = float(a)

    def start(self):
        """In the block's thread: keep its Python thread state between calls (thread_state.py)."""
        self.ts.hold()
        return True

    def stop(self):
        self.ts.release()
        return True

    def handle_system(self, msg):
        """Upstream finished ('done'): send what is queued, then `_FLUSH` zeros (so that delays and
        filters downstream pass the last frame on), then finish."""
        if pmt.is_pair(msg) and pmt.eq(pmt.car(msg), pmt.intern("done")):
            self.done = True
            return
        self.to_basic_block().system_handler(msg)

    def handle(self, msg):
        if len(self.q) >= self.max_queue:
            self.dropped += 1
            self.logger.warn("OFDM TX: queue full, dropped the oldest frame")
            self.q.popleft()
        self.q.append(msg)

    def _drop(self, what: str, e: Exception) -> None:
        """A bad PDU: count it, one log line, keep running."""
        self.dropped += 1
        self.logger.error(f"OFDM TX: dropped {what}: {e}")

    def _parse_batch(self):
        """Up to `_BATCH` queued PDUs → (symbols: a (B, k) array or a list of arrays, header ints),
        bad ones dropped. The symbols go straight into a buffer kept between batches (build_frames
        copies them before the next batch overwrites it)."""
        recs = []
        while self.q and len(recs) < _BATCH:
            try:
                src, n, h, hint = read_pdu(self.q.popleft(), self.seq)
            except Exception as e:
                self._drop("a PDU", e)
                continue
            self.seq = h.seq + 1
            recs.append((src, n, h, hint))
        if not recs:
            return [], []
        ks, hints = [r[1] for r in recs], [r[3] for r in recs]
        total = sum(ks)
        if self.zbuf.size < total:
            self.zbuf = np.empty(total, np.complex64)
        z = self.zbuf[:total]
        base, o = z.ctypes.data, 0
        for src, n, _, _ in recs:
            if isinstance(src, bytes):
                z[o:o + n] = np.frombuffer(src, ">c8")
            else:
                c32_copy(base + 8 * o, src, n)
            o += n
        # sing.phy.tx.check_symbols's NaN test, once for the whole batch (build_frames(checked=True))
        if not np.isfinite(z.view(np.float32)).all():       # rare: find and drop the bad ones
            zs = np.split(z, np.cumsum(ks)[:-1])
            good = [i for i, zi in enumerate(zs) if np.isfinite(zi.view(np.float32)).all()]
            for i in sorted(set(range(len(zs))) - set(good)):
                self._drop(f"image {recs[i][2].image_id}",
                           InputError("symbols contain NaN or Inf; the encoder output is broken"))
            return [zs[i] for i in good], [hints[i] for i in good]
        if min(ks) == max(ks):                              # the usual case: one (B, k) array
            return z.reshape(len(ks), ks[0]), hints
        return np.split(z, np.cumsum(ks)[:-1]), hints

    def _next_batch(self) -> bool:
        """Build the next batch of queued PDUs into `cur`; False when nothing is left to send."""
        zs = []
        while self.q and not len(zs):
            zs, hints = self._parse_batch()
        if not len(zs):
            return False
        try:
            # cur is spent, so its buffer (the workspace's) can take the next batch
            x, lens = build_frames(self.p, zs, hints, self.gap, self.amplitude, checked=True,
                                   workspace=self.ws)
        except Exception as e:                         # should not happen (all checked above)
            self._drop(f"{len(zs)} PDUs", e)
            return bool(self.q) and self._next_batch()
        ends = np.cumsum(np.asarray(lens) + self.gap).tolist()
        self.cur, self.cur_pos = x, 0
        self.starts, self.ends = [0] + ends[:-1], ends
        self.sob_i = self.eob_i = 0
        return True

    def _tag_and_count(self, hi: int, w0: int) -> None:
        """Frames of `cur` that start / end before cur[hi] (cur[x] is written at stream index
        w0 + x): tx_sob on their first sample, tx_eob on the last sample of their gap; count the
        frames sent."""
        starts, ends, n = self.starts, self.ends, len(self.ends)
        i, j = self.sob_i, self.eob_i
        while i < n and starts[i] < hi:
            i += 1
        while j < n and ends[j] <= hi:
            j += 1
        if self.burst_tags:
            add, true = self.add_item_tag, pmt.PMT_T
            for a in starts[self.sob_i:i]:
                add(0, w0 + a, _SOB, true)
            for b in ends[self.eob_i:j]:
                add(0, w0 + b - 1, _EOB, true)
        self.sent += j - self.eob_i
        self.sob_i, self.eob_i = i, j

    def work(self, input_items, output_items):
        out = output_items[0]
        n, i = len(out), 0
        while i < n:
            if self.cur_pos >= self.cur.size and not self._next_batch():
                break
            m = min(n - i, self.cur.size - self.cur_pos)
            out[i:i + m] = self.cur[self.cur_pos:self.cur_pos + m]
            self._tag_and_count(self.cur_pos + m, self.nitems_written(0) + i - self.cur_pos)
            i += m
            self.cur_pos += m
        if i < n and self.done and not self.q:         # all sent: flush zeros, then finish
            m = min(n - i, self.flush)
            out[i:i + m] = 0
            self.flush -= m
            i += m
            return i if i > 0 else -1                  # -1: WORK_DONE
        if i < n and self.idle == "zeros":
            out[i:] = 0
            i = n
        return i                 # 0 in burst mode: the scheduler sleeps until the next message


class ofdm_jscc_tx(gr.hier_block2):
    """Hierarchical OFDM JSCC TX: message `in` (image PDUs) → complex stream out."""

    def __init__(self, header_mod="qpsk", amplitude=1.0, gap=64, idle="wait", burst_tags=True):
        gr.hier_block2.__init__(self, "sing_ofdm_jscc_tx", gr.io_signature(0, 0, 0),
                                gr.io_signature(1, 1, gr.sizeof_gr_complex))
        self.message_port_register_hier_in("in")
        self.framer = ofdm_framer(header_mod, gap, idle, burst_tags, amplitude=amplitude)
        self.msg_connect(self, "in", self.framer, "in")
        self.connect(self.framer, self)

    def set_amplitude(self, a):
        self.framer.set_amplitude(a)
