# SPDX-License-Identifier: GPL-3.0-or-later
"""Test PDU source for the OFDM flowgraphs: n_images PDUs of k random unit-power symbols.

Symbols of image i are `test_symbols(seed, i, k)` so a receiver (or a test) can check them. Stands in
for the JSCC image source when only the PHY is under test.
"""
from __future__ import annotations

import threading

import numpy as np
import pmt
from gnuradio import gr


def test_symbols(seed: int, image_id: int, k: int) -> np.ndarray:
    g = np.random.default_rng([int(seed), int(image_id)])
    z = g.standard_normal(k) + 1j * g.standard_normal(k)
    return (z / np.sqrt(np.mean(np.abs(z) ** 2))).astype(np.complex64)


class ofdm_test_source(gr.basic_block):
    def __init__(self, k=256, n_images=10, interval_s=0.05, seed=1, start_delay_s=0.5,
                 height=64, width=64, channels=3, bcr="1/48", model_id="test"):
        gr.basic_block.__init__(self, name="sing_ofdm_test_source", in_sig=None, out_sig=None)
        self.args = (int(k), int(n_images), float(interval_s), int(seed), float(start_delay_s))
        self.meta = dict(height=int(height), width=int(width), channels=int(channels), bcr=str(bcr),
                         model_id=str(model_id))
        self.message_port_register_out(pmt.intern("out"))
        self._stop = threading.Event()
        self._th = None

    def start(self):
        self._stop.clear()
        self._th = threading.Thread(target=self._run, daemon=True)
        self._th.start()
        return True

    def stop(self):
        self._stop.set()
        if self._th is not None:
            self._th.join(timeout=2)
        return True

    def _run(self):
        k, n, dt, seed, delay = self.args
        if self._stop.wait(delay):
            return
        for i in range(n):
            meta = dict(self.meta, image_id=str(i), k=k)
            z = test_symbols(seed, i, k)
            self.message_port_pub(pmt.intern("out"), pmt.cons(pmt.to_pmt(meta), pmt.init_c32vector(k, z)))
            if self._stop.wait(dt):
                return
        # all sent: finish this block, so the TX flushes and the flowgraph ends by itself
        self.to_basic_block()._post(pmt.intern("system"), pmt.cons(pmt.intern("done"), pmt.from_long(1)))
