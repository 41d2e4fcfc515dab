# SPDX-License-Identifier: GPL-3.0-or-later
"""Helpers for the block tests (tests/test_blocks_*.py and the QA files sing_blocks/qa_*.py run by
ctest; not installed): tiny models, image folders, and running message blocks headless
(docs/GNURADIO.md: post, then ('system', done))."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pmt
from gnuradio import blocks, gr


def tiny_jscc_dir(directory, image_size: int = 16, channels: int = 3, bcr: str = "1/12",
                  seed: int = 0) -> Path:
    """A randomly initialised tiny DeepJSCC saved as a model directory; returns the directory."""
    import torch
    from sing.checkpoint import save_model
    from sing.jscc import JSCCConfig, build_jscc
    torch.manual_seed(seed)
    m = build_jscc(JSCCConfig.tiny(image_size=image_size, channels=channels, bcr=bcr))
    d = Path(directory)
    save_model(d, m.state_dict(), m.config.to_dict())
    return d


def write_images(directory, n: int, size=(24, 20), seed: int = 0) -> list[Path]:
    from PIL import Image
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        yy, xx = np.mgrid[0:size[1], 0:size[0]]
        a = np.stack([(xx * 9 + i * 30) % 256, (yy * 11) % 256,
                      rng.integers(0, 256, size=yy.shape)], -1).astype(np.uint8)
        p = d / f"img{i:03d}.png"
        Image.fromarray(a).save(p)
        out.append(p)
    return out


def post_and_run(block, port: str, msgs, out_port: str, timeout_s: float = 60.0):
    """Post msgs to block's `port`, then ('system', done); run to completion; return
    (message_debug holding what `out_port` published, top block)."""
    tb = gr.top_block()
    dbg = blocks.message_debug()
    tb.msg_connect(block, out_port, dbg, "store")   # an unconnected message block is dropped
    for m in msgs:
        block.to_basic_block()._post(pmt.intern(port), m)
    block.to_basic_block()._post(pmt.intern("system"), pmt.cons(pmt.intern("done"), pmt.from_long(1)))
    run_with_timeout(tb, timeout_s)
    return dbg, tb


def run_with_timeout(tb, timeout_s: float = 60.0) -> None:
    """tb.start(); tb.wait() that raises TimeoutError (after stopping it) instead of hanging."""
    tb.start()
    th = threading.Thread(target=tb.wait, daemon=True)
    th.start()
    th.join(timeout_s)
    if th.is_alive():
        tb.stop()
        th.join(10)
        raise TimeoutError(f"flowgraph did not finish within {timeout_s} s")


def run_until(tb, done, timeout_s: float = 60.0) -> None:
    """Start tb, poll done() until true (TimeoutError after timeout_s), then stop and wait."""
    tb.start()
    t0 = time.monotonic()
    try:
        while not done():
            if time.monotonic() - t0 > timeout_s:
                raise TimeoutError(f"condition not met within {timeout_s} s")
            time.sleep(0.02)
    finally:
        tb.stop()
        tb.wait()


def post_only(block, port: str, msgs):
    """A top block in which msgs (then done) reach `block`'s input `port` through a pass-through
    pdu_remove (an input-only message block with no upstream would be dropped). Run it yourself."""
    from gnuradio import pdu
    tb = gr.top_block()
    feed = pdu.pdu_remove(pmt.intern("__qa_unused__"))
    tb.msg_connect(feed, "pdus", block, port)
    for m in msgs:
        feed.to_basic_block()._post(pmt.intern("pdus"), m)
    feed.to_basic_block()._post(pmt.intern("system"), pmt.cons(pmt.intern("done"), pmt.from_long(1)))
    tb._qa_keep = (feed, block)
    return tb


def stored(dbg) -> list:
    return [dbg.get_message(i) for i in range(dbg.num_messages())]
