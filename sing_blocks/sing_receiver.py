# SPDX-License-Identifier: GPL-3.0-or-later
"""SING receiver (sink) block: symbols PDUs → worker (DeepJSCC decoder + SING restoration) → PNG.

A thin adapter over ``sing.rx_sink.RxSink`` (validation, worker calls, local DeepJSCC fallback,
PNG + JSON per image, metrics, summary.json: see its docstring). This block only converts PMT to
and from the sink's records and handles GNU Radio's message ports:
- ``pdus`` in: symbols PDUs (the handler validates and queues; it never blocks the scheduler);
- ``sent`` in (optional): the sent image PDUs (``jscc_image_source.image``), for per-image
  PSNR / LPIPS;
- ``images`` out: one image PDU (u8vector HWC + metadata with status, metrics, SNR) per image, at
  the sent image's shape (height × width × channels of its metadata; rx_sink: any size).
When upstream finishes (``('done', n)`` on ``system``), the block finishes only once every queued
image has been accounted for (≤ ``drain_timeout_s``), so its PDU still reaches downstream blocks.
"""
from __future__ import annotations

import time

import pmt
from gnuradio import gr

from sing.rx_sink import ImageRecord, RxConfig, RxSink, scalars

from .pdu_util import BadPDU, image_pdu, message_ports, parse_image_pdu, parse_symbols_pdu


class sing_receiver(gr.basic_block):
    def __init__(self, endpoint: str = RxConfig.endpoint, method: str = "sing-zero",
                 out_dir: str = "out/radio", **settings):
        """``settings``: the other ``sing.rx_sink.RxConfig`` fields (jscc_dir, local_fallback,
        timeout_s, retries, queue_size, drain_timeout_s, retry_after_s, assumed_snr_db, seed,
        write_files, max_in_flight, steps, metrics, print_lines), with its defaults."""
        gr.basic_block.__init__(self, name="sing_receiver", in_sig=None, out_sig=None)
        cfg = RxConfig(str(endpoint), str(method), str(out_dir), **settings)
        self.sink = RxSink(cfg, deliver=self._publish, log=lambda lvl, m: getattr(self.logger, lvl)(m),
                           on_tick=self._maybe_finish)
        self._done_msg, self._done_at = None, 0.0
        message_ports(self, {"pdus": self.handle_pdu, "sent": self.handle_sent, "system": self.handle_system},
                      outs=["images"])

    # ---- the sink's API, for tests and GRC callbacks ------------------------------------------
    def counts(self) -> dict:
        return self.sink.counts()

    def records(self) -> list[dict]:
        return self.sink.records()

    def wait_idle(self, timeout_s: float) -> bool:
        return self.sink.wait_idle(timeout_s)

    def set_method(self, method: str) -> None:
        self.sink.set_method(method)

    def set_steps(self, steps: int) -> None:
        self.sink.set_steps(steps)

    # ---- message ports ------------------------------------------------------------------------
    def handle_pdu(self, msg) -> None:
        try:
            meta, y = parse_symbols_pdu(msg)
        except BadPDU as e:
            self.sink.reject(e)
            return
        self.sink.offer(meta, y)

    def handle_sent(self, msg) -> None:
        try:
            meta, a = parse_image_pdu(msg)
        except BadPDU as e:
            self.logger.warn(f"sent image {e.image_id or '?'} ignored ({e.reason}): {e}")
            return
        if isinstance(meta.get("image_id"), str):
            self.sink.set_reference(meta["image_id"], a)

    def _publish(self, rec: ImageRecord) -> None:
        self.message_port_pub(pmt.intern("images"), image_pdu(scalars(rec.info), rec.image))

    def handle_system(self, msg) -> None:
        """('done', n) from upstream: defer it until the sink is idle (see the module docstring);
        the sink's thread passes it on, the scheduler re-checks `finished()` every 250 ms."""
        if pmt.is_pair(msg) and pmt.eq(pmt.car(msg), pmt.intern("done")) and self.sink.running():
            self._done_msg, self._done_at = msg, time.monotonic()
            return
        self.to_basic_block().system_handler(msg)

    def _maybe_finish(self) -> None:
        """Pass a deferred 'done' on once idle (or timed out). The short grace lets PDUs handled
        in the same scheduler pass as 'done' enqueue first."""
        if self._done_msg is None:
            return
        waited = time.monotonic() - self._done_at
        if (waited > 0.2 and self.sink.pending() == 0) or waited > self.sink.cfg.drain_timeout_s:
            msg, self._done_msg = self._done_msg, None
            self.to_basic_block().system_handler(msg)

    # ---- lifecycle ----------------------------------------------------------------------------
    def start(self) -> bool:
        self.sink.start()
        return True

    def stop(self) -> bool:
        self.sink.stop()
        return True
