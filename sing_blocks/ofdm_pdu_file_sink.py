# SPDX-License-Identifier: GPL-3.0-or-later
"""Writes each received image PDU as one JSON line: metadata + symbols (base64 of complex64 LE).
Vector metadata (``symbol_noise_var``) becomes a JSON list.

For headless runs and tests of the OFDM flowgraphs (e.g. zmq_rx as a separate process).
With ``print_lines`` it also prints one line per received frame (id, seq, symbols, the receiver's
SNR estimate and, when ``ref_seed`` >= 0 names the Test PDU Source's seed so that the sent symbols
are known, the EVM against them) and a summary line when the flowgraph stops, as the SING
receiver does for images.
"""
from __future__ import annotations

import base64
import json
import os

import numpy as np
import pmt
from gnuradio import gr

from .ofdm_test_source import test_symbols
from .pdu_util import message_ports


def read_records(path):
    out = []
    with open(path) as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                r["symbols"] = np.frombuffer(base64.b64decode(r.pop("symbols_b64")), "<c8")
                out.append(r)
    return out


def evm_db(z: np.ndarray, ref: np.ndarray) -> float:
    """Error vector magnitude of received symbols against the sent ones, in dB of the sent power."""
    return float(10 * np.log10(np.mean(np.abs(z - ref) ** 2) / np.mean(np.abs(ref) ** 2)))


def frame_line(meta: dict, n: int, evm: float | None) -> str:
    """One line per received frame: id, seq, symbols, SNR estimate, EVM (when the sent is known)."""
    snr = meta.get("snr_db")
    snr = "–" if not isinstance(snr, (int, float)) else f"{snr:.1f} dB ({meta.get('snr_source', '?')})"
    seq = f" (seq {meta['seq']})" if "seq" in meta else ""
    ev = "–" if evm is None else f"{evm:.1f} dB ({100 * 10 ** (evm / 20):.0f} %)"
    return f"{meta.get('image_id', '?')}{seq}: received {n} symbols  SNR {snr}  EVM {ev}"


class ofdm_pdu_file_sink(gr.basic_block):
    def __init__(self, path="rx_pdus.jsonl", print_lines=False, ref_seed=-1):
        gr.basic_block.__init__(self, name="sing_ofdm_pdu_file_sink", in_sig=None, out_sig=None)
        path = os.path.expanduser(str(path))        # "~/sing-radio/…" (flowgraph defaults)
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        self.f = open(path, "a", buffering=1)
        self.print_lines, self.ref_seed = bool(print_lines), int(ref_seed)
        self.n, self.snrs, self.evms, self._summarised = 0, [], [], False
        message_ports(self, {"in": self.handle})

    def _evm(self, meta: dict, z: np.ndarray) -> float | None:
        """EVM against the Test PDU Source's symbols of this id, when its seed is known."""
        try:
            iid = int(meta.get("image_id"))
        except (TypeError, ValueError):
            return None
        if self.ref_seed < 0 or iid < 0 or not len(z):
            return None
        return evm_db(z, test_symbols(self.ref_seed, iid, len(z)))

    def handle(self, msg):
        meta = pmt.to_python(pmt.car(msg)) if pmt.is_dict(pmt.car(msg)) else {}
        meta = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in meta.items()}
        z = np.asarray(pmt.to_python(pmt.cdr(msg)), "<c8")
        if self.print_lines:
            evm = self._evm(meta, z)
            self.n += 1
            if isinstance(meta.get("snr_db"), (int, float)):
                self.snrs.append(float(meta["snr_db"]))
            if evm is not None:
                self.evms.append(evm)
            print(frame_line(meta, len(z), evm), flush=True)
        meta["symbols_b64"] = base64.b64encode(z.tobytes()).decode()
        self.f.write(json.dumps(meta) + "\n")

    def summary_line(self) -> str:
        mean = (lambda xs: sum(xs) / len(xs) if xs else None)
        snr, evm = mean(self.snrs), mean(self.evms)
        return (f"summary: {self.n} frames received"
                + ("" if snr is None else f"; mean SNR estimate {snr:.1f} dB")
                + ("" if evm is None else f"; mean EVM {evm:.1f} dB"))

    def stop(self):
        self.f.flush()
        if self.print_lines and not self._summarised:
            self._summarised = True
            print(self.summary_line(), flush=True)
        return True
