#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""QA for sing.ofdm_pdu_file_sink: every PDU becomes one JSON line that read_records gives back
(metadata and the exact symbols); the folder of the file is created."""
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))   # qa_helpers (not installed)
import numpy as np  # noqa: E402
from gnuradio import gr_unittest  # noqa: E402

import qa_helpers as qa  # noqa: E402
from gnuradio import sing  # noqa: E402
from gnuradio.sing.ofdm_pdu_file_sink import read_records  # noqa: E402
from gnuradio.sing.pdu_util import symbols_pdu  # noqa: E402


class qa_ofdm_pdu_file_sink(gr_unittest.TestCase):
    def test_001_records_round_trip(self):
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "sub" / "rx.jsonl"
            sink = sing.ofdm_pdu_file_sink(str(path))
            zs = [(np.arange(8) + 1j * i).astype(np.complex64) for i in range(2)]
            pdus = [symbols_pdu({"image_id": f"qa/{i}", "k": 8}, z) for i, z in enumerate(zs)]
            tb = qa.post_only(sink, "in", pdus)
            qa.run_with_timeout(tb, 30)
            del sink
            recs = read_records(path)
            self.assertEqual([r["image_id"] for r in recs], ["qa/0", "qa/1"])
            np.testing.assert_array_equal(recs[1]["symbols"], zs[1])


if __name__ == "__main__":
    gr_unittest.run(qa_ofdm_pdu_file_sink)
