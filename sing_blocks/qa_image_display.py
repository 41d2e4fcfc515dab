#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""QA for sing.image_display (Qt, offscreen): image PDUs posted to its three inputs in a running
flowgraph are shown; a malformed one is ignored."""
import os
import sys
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))   # qa_helpers (not installed)
import numpy as np  # noqa: E402
import pmt  # noqa: E402
from gnuradio import blocks, gr, gr_unittest  # noqa: E402

from gnuradio import sing  # noqa: E402
from gnuradio.sing.pdu_util import image_pdu  # noqa: E402


class qa_image_display(gr_unittest.TestCase):
    def test_001_three_columns(self):
        from PyQt5 import QtWidgets
        app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
        disp = sing.image_display("qa", zoom=2)
        disp.qwidget().show()
        tb = gr.top_block()
        a = (np.arange(8 * 8 * 3) % 256).astype(np.uint8).reshape(8, 8, 3)
        strobe = blocks.message_strobe(image_pdu({"image_id": "a"}, a), 100)
        tb.msg_connect(strobe, "strobe", disp, "sent")    # a message block needs a connection
        tb.start()
        b = disp.to_basic_block()
        b._post(pmt.intern("deepjscc"), image_pdu({"image_id": "a", "status": "local",
                                                   "restored": False}, a))
        b._post(pmt.intern("sing"), pmt.cons(pmt.make_dict(), pmt.init_u8vector(5, [1] * 5)))
        b._post(pmt.intern("sing"), image_pdu({"image_id": "a", "status": "restored"}, a))
        t0 = time.monotonic()
        while min(disp.n_shown.values()) < 1 and time.monotonic() - t0 < 10:
            app.processEvents()
            time.sleep(0.01)
        tb.stop()
        tb.wait()
        self.assertEqual(disp.n_shown["deepjscc"], 1)
        self.assertEqual(disp.n_shown["sing"], 1)
        self.assertGreaterEqual(disp.n_shown["sent"], 1)


if __name__ == "__main__":
    gr_unittest.run(qa_image_display)
