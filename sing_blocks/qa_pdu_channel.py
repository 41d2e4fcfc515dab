#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""QA for sing.pdu_channel: AWGN adds noise of the set power and tags the SNR; a bad PDU fails that
image only; the SNR callback changes the channel of the following images."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))   # qa_helpers (not installed)
import numpy as np  # noqa: E402
import pmt  # noqa: E402
from gnuradio import gr_unittest  # noqa: E402

import qa_helpers as qa  # noqa: E402
from gnuradio import sing  # noqa: E402
from gnuradio.sing.pdu_util import symbols_pdu  # noqa: E402


def _pdu(i, k=512):
    rng = np.random.default_rng(i)
    z = ((rng.standard_normal(k) + 1j * rng.standard_normal(k)) / np.sqrt(2)).astype(np.complex64)
    meta = {"image_id": f"qa/im{i}", "k": k, "bcr": "1/12", "model_id": "m@1", "height": 16,
            "width": 16, "channels": 3}
    return z, symbols_pdu(meta, z)


class qa_pdu_channel(gr_unittest.TestCase):
    def test_001_awgn_noise_power_and_snr_tag(self):
        blk = sing.pdu_channel("awgn", snr_db=10.0, seed=1)
        zs, pdus = zip(*[_pdu(i) for i in range(3)])
        dbg, _ = qa.post_and_run(blk, "pdus", list(pdus), "pdus")
        msgs = qa.stored(dbg)
        self.assertEqual(len(msgs), 3)
        for z, m in zip(zs, msgs):
            meta = pmt.to_python(pmt.car(m))
            y = np.asarray(pmt.to_python(pmt.cdr(m)))
            self.assertAlmostEqual(meta["snr_db"], 10.0)
            noise = np.mean(np.abs(y - z) ** 2)
            self.assertTrue(0.07 < noise < 0.13, noise)          # σ² = 10^(−10/10) = 0.1

    def test_002_bad_pdu_fails_that_image_only(self):
        blk = sing.pdu_channel("awgn", snr_db=10.0, seed=1)
        bad = pmt.cons(pmt.make_dict(), pmt.init_u8vector(4, [1, 2, 3, 4]))
        dbg, _ = qa.post_and_run(blk, "pdus", [_pdu(0)[1], bad, _pdu(1)[1]], "pdus")
        self.assertEqual(len(qa.stored(dbg)), 2)

    def test_003_snr_callback(self):
        blk = sing.pdu_channel("awgn", snr_db=10.0, seed=1)
        blk.set_snr_db(30.0)
        z, p = _pdu(0)
        dbg, _ = qa.post_and_run(blk, "pdus", [p], "pdus")
        y = np.asarray(pmt.to_python(pmt.cdr(qa.stored(dbg)[0])))
        self.assertLess(np.mean(np.abs(y - z) ** 2), 0.002)


if __name__ == "__main__":
    gr_unittest.run(qa_pdu_channel)
