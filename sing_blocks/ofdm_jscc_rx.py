"""OFDM JSCC receiver (GNU Radio): complex baseband in, one image PDU out per frame.

Thin wrapper of sing.phy.OfdmReceiver (sync, CFO, channel estimate, CPE, ZF equalisation, SNR
estimate). PDU metadata: CONVENTIONS.md keys with snr_db = estimated post-equalisation SNR,
snr_source = "estimated", plus snr_channel_db, cfo_hz, noise_var, ofdm_symbols.
Drops (false syncs, bad headers, truncated frames) are counted (`counters()`), bad headers and
truncated frames logged with one line each; a summary line is logged at stop.
"""
from __future__ import annotations

import numpy as np
import pmt
from gnuradio import gr

from sing.phy import OfdmParams, OfdmReceiver


class ofdm_deframer(gr.sync_block):
    def __init__(self, header_mod="qpsk", samp_rate=1e6, detect_threshold=0.02, use_nulls=True,
                 model_ids=()):
        gr.sync_block.__init__(self, name="sing_ofdm_deframer", in_sig=[np.complex64], out_sig=None)
        self.samp_rate = float(samp_rate)
        if isinstance(model_ids, str):
            model_ids = [m.strip() for m in model_ids.split(",") if m.strip()]
        self.rx = OfdmReceiver(OfdmParams(header_mod=header_mod), detect_threshold=detect_threshold,
                               use_nulls=use_nulls, model_ids=model_ids, logger=self.logger)
        self.message_port_register_out(pmt.intern("out"))

    def counters(self) -> dict:
        return self.rx.counters.as_dict()

    def work(self, input_items, output_items):
        x = input_items[0]
        for fr in self.rx.push(x):
            meta = dict(fr.meta)
            meta["cfo_hz"] = float(meta.pop("cfo_cycles_per_sample")) * self.samp_rate
            meta = {k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in meta.items()}
            vec = pmt.init_c32vector(fr.symbols.size, fr.symbols)
            self.message_port_pub(pmt.intern("out"), pmt.cons(pmt.to_pmt(meta), vec))
        return len(x)

    def stop(self):
        self.logger.info(f"OFDM RX counters: {self.counters()}")
        return True


class ofdm_jscc_rx(gr.hier_block2):
    """Hierarchical OFDM JSCC RX: complex stream in → message `out` (image PDUs)."""

    def __init__(self, header_mod="qpsk", samp_rate=1e6, detect_threshold=0.02, use_nulls=True,
                 model_ids=""):
        gr.hier_block2.__init__(self, "sing_ofdm_jscc_rx",
                                gr.io_signature(1, 1, gr.sizeof_gr_complex), gr.io_signature(0, 0, 0))
        self.message_port_register_hier_out("out")
        self.deframer = ofdm_deframer(header_mod, samp_rate, detect_threshold, use_nulls, model_ids)
        self.connect(self, self.deframer)
        self.msg_connect(self.deframer, "out", self, "out")

    def counters(self) -> dict:
        return self.deframer.counters()
