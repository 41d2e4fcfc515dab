#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""QA for sing.ofdm_jscc_rx: the TX block's bursts, with a little noise, come back as one symbols
PDU per image (ids and k from the header, symbols close to the sent ones)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))   # qa_helpers (not installed)
import numpy as np  # noqa: E402
import pmt  # noqa: E402
from gnuradio import analog, blocks, gr, gr_unittest  # noqa: E402

import qa_helpers as qa  # noqa: E402
from gnuradio import sing  # noqa: E402


class qa_ofdm_jscc_rx(gr_unittest.TestCase):
    def test_001_loopback(self):
        n = 4
        src = sing.ofdm_test_source(k=128, n_images=n, interval_s=0.0, start_delay_s=0.0)
        sent = blocks.message_debug()
        tx = sing.ofdm_jscc_tx(gap=64)
        rx = sing.ofdm_jscc_rx()
        got = blocks.message_debug()
        noise = analog.noise_source_c(analog.GR_GAUSSIAN, 0.01, 7)
        add = blocks.add_cc()
        tb = gr.top_block()
        tb.msg_connect(src, "out", tx, "in")
        tb.msg_connect(src, "out", sent, "store")
        tb.connect(tx, (add, 0))
        tb.connect(noise, (add, 1))
        # leading silence so that the receiver's sync sees the first burst whole
        pre = blocks.vector_source_c(np.zeros(500, np.complex64), False)
        cat = blocks.stream_mux(gr.sizeof_gr_complex, [500, 10 ** 9])
        tb.connect(pre, (cat, 0))
        tb.connect(add, (cat, 1))
        tb.connect(cat, rx)
        tb.msg_connect(rx, "out", got, "store")
        qa.run_until(tb, lambda: got.num_messages() >= n, 120)
        msgs = qa.stored(got)
        self.assertEqual(len(msgs), n)
        for m, s in zip(msgs, qa.stored(sent)):
            z = np.asarray(pmt.to_python(pmt.cdr(m)))
            z0 = np.asarray(pmt.to_python(pmt.cdr(s)))
            self.assertEqual(z.size, z0.size)
            self.assertLess(10 * np.log10(np.mean(np.abs(z - z0) ** 2)), -10)


if __name__ == "__main__":
    gr_unittest.run(qa_ofdm_jscc_rx)
