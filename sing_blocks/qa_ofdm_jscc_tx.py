#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""QA for sing.ofdm_jscc_tx: symbols PDUs in, one OFDM burst per image out (sample stream with
tx_sob/tx_eob tags at the set amplitude)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))   # qa_helpers (not installed)
import numpy as np  # noqa: E402
import pmt  # noqa: E402
from gnuradio import blocks, gr, gr_unittest  # noqa: E402

import qa_helpers as qa  # noqa: E402
from gnuradio import sing  # noqa: E402


class qa_ofdm_jscc_tx(gr_unittest.TestCase):
    def test_001_bursts_with_tags(self):
        src = sing.ofdm_test_source(k=64, n_images=3, interval_s=0.0, start_delay_s=0.0)
        tx = sing.ofdm_jscc_tx(amplitude=0.5, gap=16)
        sink = blocks.vector_sink_c()
        tb = gr.top_block()
        tb.msg_connect(src, "out", tx, "in")
        tb.connect(tx, sink)
        qa.run_until(tb, lambda: sum(pmt.symbol_to_string(t.key) == "tx_eob" for t in sink.tags()) >= 3, 60)
        x = np.asarray(sink.data())
        self.assertGreater(x.size, 3 * 64)
        self.assertLessEqual(np.abs(x).max(), 0.5 * 8)              # amplitude scales the burst
        keys = [pmt.symbol_to_string(t.key) for t in sink.tags()]
        self.assertEqual(keys.count("tx_sob"), 3)
        self.assertEqual(keys.count("tx_eob"), 3)


if __name__ == "__main__":
    gr_unittest.run(qa_ofdm_jscc_tx)
