# SPDX-License-Identifier: GPL-3.0-or-later
"""OFDM JSCC receiver (GNU Radio): complex baseband in, one image PDU out per frame.

Thin wrapper of sing.phy.OfdmReceiver (sync, CFO, header-aided channel estimate, CPE, ZF
equalisation, SNR estimate), which processes all frames of each chunk it is given at once, so its
cost per frame falls with the chunk size. Throughput therefore comes from large chunks:
- a 128k-sample buffer in front of the deframer (a `skiphead(0)` pass-through: in GNU Radio 3.10.5
  `blocks.copy` and `blocks.delay` ignore `set_min_output_buffer`, their readers never see more than
  8191 items), so a receiver that falls behind gets everything that piled up in one call;
- adaptive batching: while fewer than `_BATCH` samples are waiting, work() consumes nothing, sleeps
  `_POLL_S` (letting the producers run) and looks again, until `_BATCH` samples have arrived or the
  oldest of them has waited `_MAX_WAIT_S`; then everything waiting is processed in one call (also
  at the end of a finite stream: the scheduler keeps calling work() while input is left).
  Latency added: at most `_MAX_WAIT_S` (20 ms); at 1 MS/s the receiver needs about 1/4 core.
PDU metadata: CONVENTIONS.md keys with snr_db = estimated post-equalisation SNR of the payload,
snr_source = "estimated", plus seq, snr_channel_db, cfo_hz, noise_var, ofdm_symbols,
interfered_subcarriers, tone_cancelled_subcarriers, drift_samples and, where some subcarriers are
much worse than others, symbol_noise_var (f32vector, one variance per symbol; docs/over_the_air.md).
Ids (docs/over_the_air.md): the header carries CRC32(model_id); `model_dirs` (model directories,
comma separated) and/or `model_ids` give the ids to map it back to, so the receiver downstream gets
the real model_id (else "#xxxxxxxx"). Non-numeric image ids come back as "ota/<seq>-<crc32>"
unless `image_dir` lists the images (ids "folder/<file name>", as the JSCC Image Source names them).
Drops (rejected preambles, false syncs, bad headers, truncated frames, frames hit by NaN/Inf
input) are counted (`counters()`), bad headers and dropped frames logged with one line each; the
counters are published as a PMT dict on the message port `counters` when a frame is delivered or
dropped (changes of the noise counters alone at most every `_COUNTERS_S`; once more at stop, which
a flowgraph that is shutting down may no longer deliver); a summary line is logged at stop.
"""
from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path

import numpy as np
import pmt
from gnuradio import blocks, gr

from sing.phy import OfdmParams, OfdmReceiver

from .ofdm_pmt import c32_pmt, dict_pmt
from .pdu_util import message_ports

_BATCH = 1 << 15           # samples: process at once from this many (≈ 20 frames of k = 256)
_MAX_WAIT_S = 0.02         # ... or when the oldest waiting sample has waited this long
_POLL_S = 0.001            # sleep between looks while waiting
_BUFFER = 1 << 17          # items in front of the deframer
_COUNTERS_S = 0.5          # counters message at most this often


class BlockLog:
    """A GNU Radio block logger behind the `logging.Logger` calls sing.phy makes (`warning(msg,
    *args)` etc.): the gr logger has `warn`, not `warning`, and takes one finished string."""

    def __init__(self, gr_logger):
        self.gr_logger = gr_logger

    def _emit(self, gr_level: str, msg, args) -> None:
        getattr(self.gr_logger, gr_level)(str(msg) % args if args else str(msg))

    def debug(self, msg, *args):
        self._emit("debug", msg, args)

    def info(self, msg, *args):
        self._emit("info", msg, args)

    def warning(self, msg, *args):
        self._emit("warn", msg, args)

    def error(self, msg, *args):
        self._emit("error", msg, args)


def _split(v) -> list[str]:
    if isinstance(v, str):
        return [s.strip() for s in v.split(",") if s.strip()]
    return [str(s) for s in (v or ())]


def known_models(model_dirs) -> tuple[list[str], dict]:
    """(model ids, {model id: bcr}) of model directories (ids as sing.checkpoint.model_id)."""
    ids, bcr = [], {}
    for d in _split(model_dirs):
        from sing.checkpoint import model_dir, model_id
        from sing.errors import CheckpointError
        p = model_dir(os.path.expanduser(d))           # a folder, or a name on the model search path
        if not (p / "config.json").is_file():
            raise CheckpointError(f"{p} is not a model directory (no config.json); give the DeepJSCC "
                                  f"model folder(s) the transmitter uses")
        mid = model_id(p)
        ids.append(mid)
        with contextlib.suppress(OSError, ValueError):
            b = json.loads((p / "config.json").read_text()).get("bcr")
            if b:
                bcr[mid] = str(b)
    return ids, bcr


def known_images(image_dir: str, prefix: str = "folder/") -> list[str]:
    if not image_dir:
        return []
    from sing.data import list_images
    return [prefix + f.name for f in list_images(Path(image_dir).expanduser())]


class ofdm_deframer(gr.sync_block):
    def __init__(self, header_mod="qpsk", samp_rate=1e6, detect_threshold=0.02, use_nulls=True,
                 model_ids=(), model_dirs="", image_dir="", max_cfo=0.135):
        gr.sync_block.__init__(self, name="sing_ofdm_deframer", in_sig=[np.complex64], out_sig=None)
        self.samp_rate = float(samp_rate)
        mids, bcr = known_models(model_dirs)
        self.rx = OfdmReceiver(OfdmParams(header_mod=header_mod), detect_threshold=detect_threshold,
                               use_nulls=use_nulls, max_cfo=max_cfo, model_ids=_split(model_ids) + mids,
                               image_ids=known_images(image_dir), model_bcr=bcr,
                               logger=BlockLog(self.logger))
        self._waiting_since = None       # when the oldest unprocessed input arrived
        self.port, self.cport = pmt.intern("out"), pmt.intern("counters")
        message_ports(self, outs=["out", "counters"])
        self._sent_counters, self._counters_at = None, 0.0

    def counters(self) -> dict:
        return self.rx.counters.as_dict()

    def _publish_counters(self, force: bool = False):
        """Counters message when they changed: at once when a frame was delivered or dropped, at
        most every _COUNTERS_S when only the noise counters (rejected, detections) moved."""
        c = self.counters()
        now = time.monotonic()
        old = self._sent_counters or {}
        churn_only = all(c[k] == old.get(k) for k in c if k not in ("rejected", "detections"))
        if c != old and (force or not churn_only or now - self._counters_at >= _COUNTERS_S):
            self.message_port_pub(self.cport, dict_pmt(c))
            self._sent_counters, self._counters_at = c, now

    def _wait_for_more(self, n: int) -> bool:
        """Adaptive batching (module doc): True → consume nothing now, look again shortly."""
        now = time.monotonic()
        if self._waiting_since is None:
            self._waiting_since = now
        if n >= _BATCH or now - self._waiting_since >= _MAX_WAIT_S:
            self._waiting_since = None
            return False
        time.sleep(_POLL_S)
        return True

    def work(self, input_items, output_items):
        x = input_items[0]
        if self._wait_for_more(len(x)):
            return 0
        self._publish(self.rx.push(x))
        self._publish_counters()
        return len(x)

    def _publish(self, frames):
        for fr in frames:
            meta = dict(fr.meta)
            meta["cfo_hz"] = float(meta.pop("cfo_cycles_per_sample")) * self.samp_rate
            self.message_port_pub(self.port, pmt.cons(dict_pmt(meta), c32_pmt(fr.symbols)))

    def stop(self):
        self._publish(self.rx.finish())
        self._publish_counters(force=True)
        self.logger.info(f"OFDM RX counters: {self.counters()}")
        return True


class ofdm_jscc_rx(gr.hier_block2):
    """Hierarchical OFDM JSCC RX: complex stream in → message `out` (image PDUs), message
    `counters` (the drop counters as a dict, when they change)."""

    def __init__(self, header_mod="qpsk", samp_rate=1e6, detect_threshold=0.02, use_nulls=True,
                 model_ids="", model_dirs="", image_dir="", max_cfo=0.135):
        gr.hier_block2.__init__(self, "sing_ofdm_jscc_rx",
                                gr.io_signature(1, 1, gr.sizeof_gr_complex), gr.io_signature(0, 0, 0))
        self.deframer = ofdm_deframer(header_mod, samp_rate, detect_threshold, use_nulls, model_ids,
                                      model_dirs, image_dir, max_cfo)
        for port in ("out", "counters"):
            self.message_port_register_hier_out(port)
            self.msg_connect(self.deframer, port, self, port)
        # The large buffer in front of the deframer (module doc: why skiphead, not copy).
        self.buffer = blocks.skiphead(gr.sizeof_gr_complex, 0)
        self.buffer.set_min_output_buffer(_BUFFER)
        self.connect(self, self.buffer, self.deframer)

    def counters(self) -> dict:
        return self.deframer.counters()
