"""Writes each received image PDU as one JSON line: metadata + symbols (base64 of complex64 LE).
Vector metadata (``symbol_noise_var``) becomes a JSON list.

For headless runs and tests of the OFDM flowgraphs (e.g. zmq_rx as a separate process).
"""
from __future__ import annotations

import base64
import json
import os

import numpy as np
import pmt
from gnuradio import gr


def read_records(path):
    out = []
    with open(path) as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                r["symbols"] = np.frombuffer(base64.b64decode(r.pop("symbols_b64")), "<c8")
                out.append(r)
    return out


class ofdm_pdu_file_sink(gr.basic_block):
    def __init__(self, path="rx_pdus.jsonl"):
        gr.basic_block.__init__(self, name="sing_ofdm_pdu_file_sink", in_sig=None, out_sig=None)
        path = os.path.expanduser(str(path))        # "~/sing-radio/…" (flowgraph defaults)
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        self.f = open(path, "a", buffering=1)
        self.message_port_register_in(pmt.intern("in"))
        self.set_msg_handler(pmt.intern("in"), self.handle)

    def handle(self, msg):
        meta = pmt.to_python(pmt.car(msg)) if pmt.is_dict(pmt.car(msg)) else {}
        meta = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in meta.items()}
        z = np.asarray(pmt.to_python(pmt.cdr(msg)), "<c8")
        meta["symbols_b64"] = base64.b64encode(z.tobytes()).decode()
        self.f.write(json.dumps(meta) + "\n")

    def stop(self):
        self.f.flush()
        return True
