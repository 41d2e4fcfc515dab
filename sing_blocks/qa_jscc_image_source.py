#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""QA for sing.jscc_image_source: one symbols PDU and one image PDU per file; the bundled sample
images when the path is empty; a model by name; clear errors for a missing folder or model."""
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))   # qa_helpers (not installed)
import pmt  # noqa: E402
from gnuradio import blocks, gr, gr_unittest  # noqa: E402

import qa_helpers as qa  # noqa: E402
from gnuradio import sing  # noqa: E402


class qa_jscc_image_source(gr_unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.d = Path(self.tmp.name)
        self.jscc = qa.tiny_jscc_dir(self.d / "models" / "jscc-qa16", image_size=16, bcr="1/12")

    def tearDown(self):
        self.tmp.cleanup()

    def test_001_one_pdu_per_image(self):
        qa.write_images(self.d / "imgs", 3)
        src = sing.jscc_image_source(str(self.jscc), str(self.d / "imgs"), interval_s=0.0,
                                     finish_delay_s=0.0)
        tb = gr.top_block()
        dbg = blocks.message_debug()
        tb.msg_connect(src, "pdus", dbg, "store")
        qa.run_with_timeout(tb, 60)                     # the source ends after its last image
        msgs = qa.stored(dbg)
        self.assertEqual(len(msgs), 3)
        meta = pmt.to_python(pmt.car(msgs[0]))
        self.assertEqual(meta["image_id"], "folder/img000.png")
        self.assertEqual(len(pmt.to_python(pmt.cdr(msgs[0]))), meta["k"])
        # size policy native (default): the 24×20 (W×H) image as it is; BCR 1/12: k = reals / 12
        self.assertEqual((meta["height"], meta["width"], meta["channels"]), (20, 24, 3))
        self.assertEqual(meta["k"], 20 * 24 * 3 // 12)

    def test_002_empty_path_is_the_bundled_samples(self):
        from gnuradio.sing.jscc_image_source import SAMPLE_IMAGES, find_images
        files = find_images("")
        self.assertGreaterEqual(len(files), 4)
        self.assertTrue(all(f.parent == SAMPLE_IMAGES for f in files))

    def test_003_model_by_name(self):
        os.environ["SING_MODEL_PATH"] = str(self.d / "models")
        try:
            src = sing.jscc_image_source("jscc-qa16", "", max_images=1)
            self.assertTrue(src.model.model_id.startswith("jscc-qa16@"))
        finally:
            del os.environ["SING_MODEL_PATH"]

    def test_005_size_policies_and_a_bad_file(self):
        """crop: the model's size; fit: longest side N; a corrupt file is skipped with a warning
        and the next image follows."""
        qa.write_images(self.d / "imgs", 2, size=(40, 30))
        (self.d / "imgs" / "img000b.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
        for policy, size, want in (("crop", 0, (16, 16)), ("fit", 20, (15, 20))):
            src = sing.jscc_image_source(str(self.jscc), str(self.d / "imgs"), interval_s=0.0,
                                         finish_delay_s=0.0, size_policy=policy, size=size)
            tb = gr.top_block()
            dbg = blocks.message_debug()
            tb.msg_connect(src, "pdus", dbg, "store")
            qa.run_with_timeout(tb, 60)
            metas = [pmt.to_python(pmt.car(m)) for m in qa.stored(dbg)]
            self.assertEqual([m["image_id"] for m in metas], ["folder/img000.png", "folder/img001.png"])
            self.assertEqual({(m["height"], m["width"]) for m in metas}, {want})
            self.assertEqual(src.n_failed, 1)

    def test_004_missing_folder_and_model_say_what_to_do(self):
        from sing.errors import CheckpointError, DataError
        with self.assertRaisesRegex(DataError, "does not exist.*bundled sample images"):
            sing.jscc_image_source(str(self.jscc), str(self.d / "no-such-folder"))
        with self.assertRaisesRegex(CheckpointError, "'jscc-nope-bcr1_2' not found; looked in"):
            sing.jscc_image_source("jscc-nope-bcr1_2", "")


if __name__ == "__main__":
    gr_unittest.run(qa_jscc_image_source)
