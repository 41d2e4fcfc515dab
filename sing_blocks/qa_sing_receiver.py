#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""QA for sing.sing_receiver with no worker listening: every image is decoded locally (DeepJSCC,
marked unrestored), written as PNG + JSON and accounted for in summary.json; a bad PDU is dropped
with a reason and costs nothing else; the flowgraph ends."""
import json
import os
import socket
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))   # qa_helpers (not installed)
import pmt  # noqa: E402
from gnuradio import gr_unittest  # noqa: E402

import qa_helpers as qa  # noqa: E402
from gnuradio import sing  # noqa: E402
from gnuradio.sing.pdu_util import symbols_pdu  # noqa: E402


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class qa_sing_receiver(gr_unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.d = Path(self.tmp.name)
        self.jscc = qa.tiny_jscc_dir(self.d / "jscc", image_size=16, bcr="1/12")

    def tearDown(self):
        self.tmp.cleanup()

    def test_001_local_fallback_and_bad_pdu(self):
        import torch
        from sing.jscc import load_jscc
        model = load_jscc(self.jscc)
        pdus = []
        for i in range(2):
            with torch.no_grad():
                z = model.encode(torch.rand(1, 3, 16, 16), 5.0)[0].numpy()
            meta = {"image_id": f"qa/im{i}", "k": model.k, "bcr": "1/12", "model_id": model.model_id,
                    "height": 16, "width": 16, "channels": 3, "snr_db": 5.0, "snr_source": "true",
                    "seq": i}
            pdus.append(symbols_pdu(meta, z))
        pdus.insert(1, pmt.cons(pmt.make_dict(), pmt.init_u8vector(3, [1, 2, 3])))
        out = self.d / "out"
        rx = sing.sing_receiver(f"tcp://127.0.0.1:{_free_port()}", "deepjscc", str(out),
                                jscc_dir=str(self.jscc), timeout_s=1.0, retries=0,
                                drain_timeout_s=20)
        dbg, _ = qa.post_and_run(rx, "pdus", pdus, "images", timeout_s=60)
        c = rx.counts()
        self.assertEqual(c["local"], 2, c)
        self.assertEqual(sum(c["reasons"].values()), 1, c)
        self.assertEqual(len(qa.stored(dbg)), 2)
        self.assertEqual(len(list(out.glob("*.png"))), 2)
        summary = json.loads((out / "summary.json").read_text())
        self.assertEqual(summary["counts"]["local"], 2)


if __name__ == "__main__":
    gr_unittest.run(qa_sing_receiver)
