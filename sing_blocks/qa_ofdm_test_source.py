#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""QA for sing.ofdm_test_source: n_images PDUs of k unit-power symbols each."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))   # qa_helpers (not installed)
import numpy as np  # noqa: E402
import pmt  # noqa: E402
from gnuradio import blocks, gr, gr_unittest  # noqa: E402

import qa_helpers as qa  # noqa: E402
from gnuradio import sing  # noqa: E402


class qa_ofdm_test_source(gr_unittest.TestCase):
    def test_001_n_images(self):
        src = sing.ofdm_test_source(k=64, n_images=3, interval_s=0.0, start_delay_s=0.0)
        tb = gr.top_block()
        dbg = blocks.message_debug()
        tb.msg_connect(src, "out", dbg, "store")
        qa.run_until(tb, lambda: dbg.num_messages() >= 3, 30)
        msgs = qa.stored(dbg)
        self.assertEqual(len(msgs), 3)
        z = np.asarray(pmt.to_python(pmt.cdr(msgs[0])))
        self.assertEqual(z.size, 64)
        self.assertAlmostEqual(float(np.mean(np.abs(z) ** 2)), 1.0, places=2)


if __name__ == "__main__":
    gr_unittest.run(qa_ofdm_test_source)
