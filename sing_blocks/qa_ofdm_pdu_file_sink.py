#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""QA for sing.ofdm_pdu_file_sink: every PDU becomes one JSON line that read_records gives back
(metadata and the exact symbols); the folder of the file is created; with print_lines, one line
per frame (EVM against the test source's symbols when its seed is given) and a summary at stop."""
import contextlib
import io
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
from gnuradio.sing.ofdm_test_source import test_symbols as ref_symbols  # noqa: E402
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

    def test_002_lines_with_evm_and_summary(self):
        rng = np.random.default_rng(0)
        ref = ref_symbols(5, 3, 64)
        noise = (0.1 * (rng.standard_normal(64) + 1j * rng.standard_normal(64)) / np.sqrt(2))
        z = (ref + noise).astype(np.complex64)
        want = 10 * np.log10(np.mean(np.abs(noise) ** 2))            # ≈ -20 dB
        with tempfile.TemporaryDirectory() as d:
            sink = sing.ofdm_pdu_file_sink(str(Path(d) / "rx.jsonl"), print_lines=True, ref_seed=5)
            pdus = [symbols_pdu({"image_id": "3", "k": 64, "seq": 3, "snr_db": 19.5,
                                 "snr_source": "estimated"}, z),
                    symbols_pdu({"image_id": "ota/9-abc", "k": 64}, z)]
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                qa.run_with_timeout(qa.post_only(sink, "in", pdus), 30)
            del sink
        lines = out.getvalue().splitlines()
        self.assertEqual(len(lines), 3, lines)
        self.assertTrue(lines[0].startswith("3 (seq 3): received 64 symbols  SNR 19.5 dB (estimated)"))
        self.assertIn(f"EVM {want:.1f} dB", lines[0])
        self.assertEqual(lines[1], "ota/9-abc: received 64 symbols  SNR –  EVM –")   # sent unknown
        self.assertEqual(lines[2], f"summary: 2 frames received; mean SNR estimate 19.5 dB; "
                                   f"mean EVM {want:.1f} dB")


if __name__ == "__main__":
    gr_unittest.run(qa_ofdm_pdu_file_sink)
