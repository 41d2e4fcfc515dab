# SPDX-License-Identifier: GPL-3.0-or-later
"""PDU channel: one image's symbols through AWGN or flat Rayleigh fading, with sing.channel.

The same code and the same per-image seeding as ``sing eval``
(``sing.channel.channel_generator(seed, image_id)``), so a flowgraph run reproduces the evaluation's
noise bit for bit. Rayleigh: one h ~ CN(0, 1) per
image; with ``csi="pilot"`` the receiver side estimates h and the SNR from ``n_pilots`` known pilots
(LS), equalises y / ĥ and reports the *estimated* effective SNR (``snr_source="estimated"``); with
``csi="perfect"`` it reports the true effective SNR |h|²·SNR (``snr_source="true"``).
"""
from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pmt
from gnuradio import gr

from .pdu_util import BadPDU, message_ports, parse_symbols_pdu, symbols_pdu


class pdu_channel(gr.basic_block):
    """PDU in (meta + c32vector) → PDU out (equalised symbols, snr_db/snr_source in meta)."""

    def __init__(self, kind: str = "awgn", snr_db: float = 0.0, seed: int = 0, csi: str = "perfect",
                 n_pilots: int = 16):
        gr.basic_block.__init__(self, name="sing_pdu_channel", in_sig=None, out_sig=None)
        from sing.channel import ChannelConfig
        self._lock = threading.Lock()
        self._cfg = ChannelConfig(kind=str(kind), snr_db=float(snr_db), csi=str(csi),
                                  n_pilots=int(n_pilots))   # raises InputError on bad settings
        self._seed = int(seed)
        self.n_passed = 0
        self.dropped: dict[str, int] = {}
        message_ports(self, {"pdus": self.handle_pdu}, outs=["pdus"])

    # GRC callbacks
    def set_snr_db(self, snr_db: float) -> None:
        with self._lock:
            self._cfg = dataclasses.replace(self._cfg, snr_db=float(snr_db))   # validated again

    def set_seed(self, seed: int) -> None:
        self._seed = int(seed)

    def handle_pdu(self, msg) -> None:
        import torch
        from sing.channel import apply_channel, channel_generator
        try:
            meta, z = parse_symbols_pdu(msg)
        except BadPDU as e:
            self.dropped[e.reason] = self.dropped.get(e.reason, 0) + 1
            self.logger.warn(f"image {e.image_id or '?'} dropped ({e.reason}): {e}")
            return
        with self._lock:
            cfg = self._cfg
        iid = meta["image_id"]
        out = apply_channel(torch.from_numpy(z)[None], cfg, [channel_generator(self._seed, iid)])
        meta = dict(meta)
        meta.update(snr_db=float(out.snr_db[0]), snr_true_db=float(out.snr_true_db[0]),
                    snr_source="estimated" if cfg.csi == "pilot" else "true",
                    channel=cfg.kind, channel_seed=self._seed)
        if cfg.kind == "rayleigh":
            meta["h_abs"] = float(out.h[0].abs())
        self.n_passed += 1
        self.message_port_pub(pmt.intern("pdus"),
                              symbols_pdu(meta, out.y[0].numpy().astype(np.complex64)))
