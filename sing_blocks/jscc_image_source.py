# SPDX-License-Identifier: GPL-3.0-or-later
"""JSCC image source: image files → DeepJSCC encoder (host CPU) → one symbols PDU per image.

Images come from a folder (recursive, sorted by path, as ``sing.data.list_images``) or a glob
pattern. Each is read by ``sing.images.load_image`` under a size policy (``size_policy``, ``size``):
``native`` (default) sends the picture at its own size, scaled down only when its longest side
exceeds ``size`` (0: 1024, the largest side a model takes); ``fit`` scales it so that the longest
side is ``size`` (0: the model's image size), aspect kept; ``crop`` resizes the shorter side to
``size`` (0: the model's image size) and centre-crops a square (the rule of ``sing eval`` on
``folder:PATH``). Greyscale files stay greyscale (``channels`` = 1: sent to an RGB model as three
equal channels, restored as one); alpha is composited over white, CMYK converted, 16-bit scaled, the
first frame of an animation sent (docs/CONVENTIONS.md, "Images"). A file that cannot be sent
(corrupt, 0-sized, a decompression bomb, too small for the policy, more symbols than a worker takes)
is skipped with one warning naming it and what to do; the next image follows (after the same
interval). A pass over the files that sends none ends the source with an error line, loop or not.
An empty ``path`` means the sample images installed with the package (``SAMPLE_IMAGES``, eight
64×64 crops of opencv-doc pictures), so a flowgraph runs from any folder. ``jscc_dir`` is a model
directory or a model name looked up on the model search path (``sing.paths``).
Image ids are ``id_prefix + file name`` ("folder/<name>", as ``sing eval`` names folder images);
passes after the first (``loop``) append ``#<pass>``.

Outputs: ``pdus`` — meta (image_id, k, bcr, model_id, height, width, channels, seq) + c32vector of
k = k_for_shape(model, height, width) unit-power symbols (height × width: the image as sent;
channels: the image's own, 1 or 3); ``image`` — the sent image as an image PDU (u8vector HWC of
height × width × channels) for displays and the receiver's metrics.
When the list is exhausted (and ``loop`` is off) the block finishes, which ends a flowgraph run to
completion once everything downstream has drained.
"""
from __future__ import annotations

import glob
import os
import threading
import time
from pathlib import Path

import numpy as np
import pmt
from gnuradio import gr

from .pdu_util import image_pdu, message_ports, symbols_pdu


SAMPLE_IMAGES = Path(__file__).resolve().parent / "sample_images"


def find_images(path: str) -> list[Path]:
    """Image files of a folder (recursive, sorted) or a glob; '' = the bundled sample images."""
    from sing.data import IMAGE_EXTS, list_images
    from sing.errors import DataError
    if not str(path).strip():
        path = str(SAMPLE_IMAGES)
    p = Path(os.path.expanduser(str(path)))
    if p.is_dir():
        return list_images(p)
    if not glob.has_magic(str(path)) and not p.exists():
        raise DataError(f"image folder {str(path)!r} does not exist (relative paths count from the "
                        f"working directory {os.getcwd()}): give an existing folder or a glob such "
                        f"as '/data/kodak/*.png', or leave it empty for the bundled sample images "
                        f"({SAMPLE_IMAGES})")
    files = sorted(Path(f) for f in glob.glob(os.path.expanduser(str(path)), recursive=True)
                   if Path(f).suffix.lower() in IMAGE_EXTS and Path(f).is_file())
    if not files:
        raise DataError(f"no images found at {path!r}: give a folder or a glob such as "
                        f"'/data/kodak/*.png' ({', '.join(IMAGE_EXTS)}), or leave it empty for the "
                        f"bundled sample images")
    return files


class jscc_image_source(gr.basic_block):
    def __init__(self, jscc_dir: str = "jscc-natural64-bcr1_48", path: str = "", snr_db: float = 0.0, interval_s: float = 0.1,
                 loop: bool = False, max_images: int = 0, id_prefix: str = "folder/",
                 start_delay_s: float = 0.0, finish_delay_s: float = 0.5, size_policy: str = "native",
                 size: int = 0):
        gr.basic_block.__init__(self, name="sing_jscc_image_source", in_sig=None, out_sig=None)
        from sing.images import SizePolicy
        from sing.jscc import load_jscc
        self.policy = SizePolicy(str(size_policy), int(size))     # InputError names a bad setting
        self.model = load_jscc(jscc_dir, device="cpu")
        self.model.eval()
        cfg = self.model.config
        self.image_size = int(cfg.image_size)
        self.channels = int(cfg.channels)
        self.files = find_images(path)
        if max_images and max_images > 0:
            self.files = self.files[: int(max_images)]
        self.snr_db = float(snr_db)
        self.interval_s = max(0.0, float(interval_s))
        self.loop = bool(loop)
        self.id_prefix = str(id_prefix)
        self.start_delay_s = max(0.0, float(start_delay_s))
        self.finish_delay_s = max(0.0, float(finish_delay_s))
        self.n_sent = self.n_failed = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        message_ports(self, outs=["pdus", "image"])

    def set_snr_db(self, snr_db: float) -> None:
        self.snr_db = float(snr_db)

    def set_interval_s(self, interval_s: float) -> None:
        self.interval_s = max(0.0, float(interval_s))

    def load(self, f: Path):
        """sing.images.SourceImage of one file under this block's size policy; DataError (naming
        the file and what to do) when it cannot be sent, also when its symbols would exceed what a
        worker takes (sing.worker.protocol.MAX_K)."""
        from sing.errors import DataError
        from sing.images import describe, load_image
        from sing.worker.protocol import MAX_K
        img = load_image(f, self.channels, self.policy, self.image_size)
        h, w, _ = img.shape
        k = self.model.k_at(h, w)
        if k > MAX_K:
            raise DataError(f"{f}: a {describe(img)} image needs {k} symbols at BCR {self.model.config.bcr}, "
                            f"more than a worker takes ({MAX_K}); send it smaller (size policy 'native' "
                            f"with a smaller size, or 'fit')")
        return img

    def encode(self, img) -> np.ndarray:
        import torch
        from sing.data import to_tensor
        with torch.no_grad():
            z = self.model.encode(to_tensor(img.pixels[None]), self.snr_db)
        return z[0].detach().cpu().numpy().astype(np.complex64)

    def start(self) -> bool:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="sing-image-source", daemon=True)
        self._thread.start()
        return True

    def stop(self) -> bool:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        return True

    def _run(self) -> None:
        from fractions import Fraction
        if self._stop.wait(self.start_delay_s):
            return
        seq, pass_no = 0, 0
        while not self._stop.is_set():
            sent_before = self.n_sent
            for f in self.files:
                if self._stop.is_set():
                    return
                t0 = time.monotonic()
                iid = self.id_prefix + f.name + (f"#{pass_no}" if pass_no else "")
                try:
                    src = self.load(f)
                    z = self.encode(src)
                except Exception as e:      # a bad file fails that image only
                    self.n_failed += 1
                    self.logger.warn(f"image {iid} skipped: {e}")
                else:
                    if src.notes:
                        self.logger.info(f"image {iid}: {'; '.join(src.notes)}")
                    h, w, c = src.shape
                    bcr = getattr(self.model.config, "bcr", None) or Fraction(z.size, self.channels * h * w)
                    meta = {"image_id": iid, "k": int(z.size), "bcr": str(bcr),
                            "model_id": str(self.model.model_id), "height": h, "width": w,
                            "channels": c, "seq": seq, "source_path": str(f)}
                    self.message_port_pub(pmt.intern("image"), image_pdu(meta, src.image))
                    self.message_port_pub(pmt.intern("pdus"), symbols_pdu(meta, z))
                    self.n_sent += 1
                    seq += 1
                if self._stop.wait(max(0.0, self.interval_s - (time.monotonic() - t0))):
                    return
            pass_no += 1
            if self.n_sent == sent_before:
                self.logger.error(f"none of the {len(self.files)} images could be sent (see the warnings "
                                  f"above); the source stops")
                break
            if not self.loop:
                break
        # Give stream-based downstream blocks (pdu_to_tagged_stream pulls PDUs in work()) time to
        # take the last PDU before the done message reaches them, then finish this block.
        if not self._stop.wait(self.finish_delay_s):
            self.to_basic_block()._post(pmt.intern("system"),
                                        pmt.cons(pmt.intern("done"), pmt.from_long(1)))
