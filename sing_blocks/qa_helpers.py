"""Helpers for the block tests (used by tests/test_blocks_*.py and ctest): tiny models, image
folders, and running message blocks headless (docs/GNURADIO.md: post, then ('system', done))."""
from __future__ import annotations

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
    tb.start()
    t0 = time.monotonic()
    tb.wait()
    if time.monotonic() - t0 > timeout_s:
        raise TimeoutError(f"flowgraph ran {time.monotonic() - t0:.0f} s")
    return dbg, tb


def stored(dbg) -> list:
    return [dbg.get_message(i) for i in range(dbg.num_messages())]
