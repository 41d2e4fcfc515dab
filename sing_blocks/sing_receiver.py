"""SING receiver (sink): symbols PDUs → worker (DeepJSCC decoder + SING restoration) → PNG files.

The message handler only validates the PDU and puts it on a bounded queue (it never blocks the
scheduler); one background thread talks to the worker with ``sing.worker.client.WorkerClient``
(timeouts, retries; up to ``max_in_flight`` requests outstanding, which the worker batches). Per image it writes ``<out_dir>/<image id>.png`` and a ``.json`` sidecar and
publishes an image PDU on ``images``.

Every image ends in exactly one of three states (``status`` in the sidecar, ``counts()``):
- ``restored``: the worker returned the image for the requested method;
- ``local``: the worker was unreachable/failed and ``local_fallback`` decoded it here with the
  DeepJSCC decoder (``jscc_dir``) — marked ``restored: false``;
- ``dropped``: with a reason (bad PDU: ``bad_type``/``bad_length``/``nan_symbols``/…,
  ``unknown_model``, ``queue_full``, ``worker_unavailable``, ``shutdown``…), one log line each.
``<out_dir>/summary.json`` lists every image and the counts when the block stops.

When the flowgraph ends, ``stop()`` waits up to ``drain_timeout_s`` for queued images; what is left
then is dropped with reason ``shutdown``. A dead worker is skipped for ``retry_after_s`` after a
failed request, so a worker that died mid-run costs one timeout, not one per image.
"""
from __future__ import annotations

import json
import math
import queue
import re
import threading
import time
from pathlib import Path

import numpy as np
import pmt
from gnuradio import gr

from .pdu_util import BadPDU, image_pdu, parse_symbols_pdu

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
_RID = re.compile(r"[^A-Za-z0-9._:@/+=-]+")
# worker error codes that concern the image itself: decoding it locally would not help
_IMAGE_ERRORS = ("bad_request", "bad_payload", "too_large", "unknown_method", "bad_message")


_IMG_EXT = re.compile(r"\.(png|jpe?g|bmp|tiff?|webp|ppm|pgm)$", re.IGNORECASE)


def safe_name(image_id: str) -> str:
    """File stem for an image id: "folder/cat.jpg" → "folder_cat"."""
    return _SAFE.sub("_", _IMG_EXT.sub("", image_id)).strip("._") or "image"


class sing_receiver(gr.basic_block):
    def __init__(self, endpoint: str = "tcp://127.0.0.1:5555", method: str = "sing-zero",
                 out_dir: str = "out/radio", jscc_dir: str = "", local_fallback: bool = True,
                 timeout_s: float = 65.0, retries: int = 1, queue_size: int = 32,
                 drain_timeout_s: float = 60.0, retry_after_s: float = 5.0,
                 assumed_snr_db=None, seed: int = 0, write_files: bool = True,
                 max_in_flight: int = 8):
        gr.basic_block.__init__(self, name="sing_receiver", in_sig=None, out_sig=None)
        self.endpoint = str(endpoint or "").strip()
        self.method = str(method)
        self.out_dir = Path(out_dir).expanduser()          # "~/sing-radio" (flowgraph default)
        self.local_fallback = bool(local_fallback)
        self.timeout_s = float(timeout_s)
        self.retries = int(retries)
        self.drain_timeout_s = float(drain_timeout_s)
        self.retry_after_s = float(retry_after_s)
        self.assumed_snr_db = None if assumed_snr_db is None else float(assumed_snr_db)
        self.seed = int(seed)
        self.max_in_flight = max(1, int(max_in_flight))
        self.write_files = bool(write_files)
        self.jscc = None
        if jscc_dir:
            from sing.jscc import load_jscc
            self.jscc = load_jscc(jscc_dir, device="cpu")   # CheckpointError names what is wrong
            self.jscc.eval()
        if not self.endpoint and self.jscc is None:
            from sing.errors import InputError
            raise InputError("sing_receiver needs a worker endpoint or a local jscc_dir (or both)")
        if self.write_files:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        self._q: queue.Queue = queue.Queue(maxsize=max(1, int(queue_size)))
        self._lock = threading.Lock()
        self._records: list[dict] = []
        self._counts = {"received": 0, "restored": 0, "local": 0, "dropped": 0}
        self._reasons: dict[str, int] = {}
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self._worker_down_until = 0.0
        self._names: set[str] = set()
        self._done_msg, self._done_at = None, 0.0
        self.message_port_register_in(pmt.intern("pdus"))
        self.message_port_register_out(pmt.intern("images"))
        self.set_msg_handler(pmt.intern("pdus"), self.handle_pdu)
        # Upstream finished ('done'): let queued images reach `images` before this block finishes.
        self.set_msg_handler(pmt.intern("system"), self.handle_system)

    # ---- accounting ---------------------------------------------------------------------------
    def counts(self) -> dict:
        with self._lock:
            return dict(self._counts, reasons=dict(self._reasons))

    def records(self) -> list[dict]:
        with self._lock:
            return [dict(r) for r in self._records]

    def _account(self, status: str, image_id: str | None, reason: str | None = None, **extra):
        rec = {"image_id": image_id, "status": status}
        if reason:
            rec["reason"] = reason
        rec.update(extra)
        with self._lock:
            self._counts[status] += 1
            if status == "dropped":
                self._reasons[reason] = self._reasons.get(reason, 0) + 1
            self._records.append(rec)
        return rec

    def _drop(self, image_id, reason: str, message: str):
        self.logger.warn(f"image {image_id or '?'} dropped ({reason}): {message}")
        self._account("dropped", image_id, reason, message=message)

    # ---- scheduler side (never blocks) --------------------------------------------------------
    def set_method(self, method: str) -> None:
        self.method = str(method)

    def handle_pdu(self, msg) -> None:
        with self._lock:
            self._counts["received"] += 1
        try:
            meta, y = parse_symbols_pdu(msg)
            if meta.get("snr_db") is None:
                if self.assumed_snr_db is None:
                    raise BadPDU("no_snr", "metadata has no snr_db and the block has no assumed SNR",
                                 meta.get("image_id"))
                meta["snr_db"], meta["snr_source"] = self.assumed_snr_db, "true"
            if self.endpoint == "" and self.jscc is not None:
                self._check_local(meta, y)
        except BadPDU as e:
            self._drop(e.image_id, e.reason, str(e))
            return
        try:
            self._q.put_nowait((meta, y, time.time()))
        except queue.Full:
            self._drop(meta.get("image_id"), "queue_full",
                       f"{self._q.maxsize} images already wait for the worker; slow the source "
                       f"down or raise queue_size")

    def handle_system(self, msg) -> None:
        """('done', n) from upstream: finish only once every queued image has been accounted for
        (≤ drain_timeout_s), so its PDU still reaches downstream blocks. The background thread calls
        the stock system handler then; the scheduler re-checks `finished()` every 250 ms."""
        if (pmt.is_pair(msg) and pmt.eq(pmt.car(msg), pmt.intern("done"))
                and self._thread is not None and self._thread.is_alive()):
            self._done_msg, self._done_at = msg, time.monotonic()
            return
        self.to_basic_block().system_handler(msg)

    def _maybe_finish(self) -> None:
        """Called by the background thread: pass a deferred 'done' on once idle (or timed out).
        The short grace lets PDUs handled in the same scheduler pass as 'done' enqueue first."""
        if self._done_msg is None:
            return
        waited = time.monotonic() - self._done_at
        if (waited > 0.2 and self._q.unfinished_tasks == 0) or waited > self.drain_timeout_s:
            msg, self._done_msg = self._done_msg, None
            self.to_basic_block().system_handler(msg)

    def wait_idle(self, timeout_s: float) -> bool:
        """True when no image is queued or in flight (waits up to timeout_s)."""
        end = time.monotonic() + timeout_s
        with self._q.all_tasks_done:
            while self._q.unfinished_tasks:
                rem = end - time.monotonic()
                if rem <= 0:
                    return False
                self._q.all_tasks_done.wait(min(rem, 0.1))
        return True

    def _check_local(self, meta: dict, y: np.ndarray) -> None:
        mid = meta.get("model_id")
        if mid is not None and mid != self.jscc.model_id:
            raise BadPDU("unknown_model", f"model id {mid!r} is not the local DeepJSCC model "
                         f"{self.jscc.model_id!r}", meta.get("image_id"))
        if y.size != self.jscc.k:
            raise BadPDU("bad_length", f"{y.size} symbols; the local model takes k={self.jscc.k}",
                         meta.get("image_id"))

    # ---- lifecycle ----------------------------------------------------------------------------
    def start(self) -> bool:
        self._closing.clear()
        self._thread = threading.Thread(target=self._run, name="sing-receiver", daemon=True)
        self._thread.start()
        return True

    def stop(self) -> bool:
        self._closing.set()
        if self._thread is not None:
            self._thread.join(timeout=self.drain_timeout_s + 10)
        while True:
            try:
                meta, _, _ = self._q.get_nowait()
            except queue.Empty:
                break
            self._drop(meta.get("image_id"), "shutdown",
                       f"still queued {self.drain_timeout_s:.0f} s after the flowgraph stopped")
        self._write_summary()
        return True

    def _write_summary(self) -> None:
        if not self.write_files:
            return
        try:
            from sing.checkpoint import write_json
            write_json(self.out_dir / "summary.json",
                       {"counts": self.counts(), "method": self.method, "endpoint": self.endpoint,
                        "images": self.records()})
        except OSError as e:
            self.logger.error(f"cannot write {self.out_dir / 'summary.json'}: {e}")

    # ---- worker thread ------------------------------------------------------------------------
    def _run(self) -> None:
        """Take images off the queue, keep up to `max_in_flight` requests outstanding (the worker
        batches concurrent requests), finish each one as its reply, error or timeout comes."""
        from concurrent.futures import FIRST_COMPLETED, wait
        client, inflight, deadline = None, [], None
        while True:
            self._maybe_finish()
            if self._closing.is_set() and deadline is None:
                deadline = time.monotonic() + self.drain_timeout_s
            if deadline is not None and ((self._q.empty() and not inflight)
                                         or time.monotonic() > deadline):
                break
            while len(inflight) < self.max_in_flight:
                try:
                    meta, y, _ = self._q.get(timeout=0.05 if not inflight else 0)
                except queue.Empty:
                    break
                try:
                    client, fut = self._submit(client, meta, y)
                    if fut is None:
                        self._fallback(meta, y, self._why_down())
                        self._q.task_done()
                    else:
                        inflight.append((meta, y, fut, time.monotonic()))
                except Exception as e:           # never let one image kill the thread
                    self._drop(meta.get("image_id"), "internal", f"{type(e).__name__}: {e}")
                    self._q.task_done()
            if not inflight:
                continue
            done, _ = wait([f for _, _, f, _ in inflight], timeout=0.05, return_when=FIRST_COMPLETED)
            keep = []
            for item in inflight:
                if item[2] in done:
                    try:
                        client = self._finish(client, *item)
                    except Exception as e:
                        self._drop(item[0].get("image_id"), "internal", f"{type(e).__name__}: {e}")
                    self._q.task_done()
                else:
                    keep.append(item)
            inflight = keep
        for meta, _, fut, _ in inflight:          # drain deadline passed with requests outstanding
            fut.cancel()
            self._drop(meta.get("image_id"), "shutdown", "no worker reply before the drain timeout")
            self._q.task_done()
        if client is not None:
            client.close()
        self._maybe_finish()

    def _why_down(self) -> str:
        if not self.endpoint:
            return "no worker endpoint configured"
        return f"worker at {self.endpoint} did not answer less than {self.retry_after_s:.0f} s ago"

    def _submit(self, client, meta: dict, y: np.ndarray):
        """(client, Future) — or (client, None) when there is no live worker to ask."""
        if not self.endpoint or time.monotonic() < self._worker_down_until:
            return client, None
        if client is None:
            from sing.worker.client import WorkerClient
            client = WorkerClient(self.endpoint, timeout_s=self.timeout_s, retries=self.retries,
                                  max_in_flight=self.max_in_flight)
        rid = _RID.sub("_", f"{meta.get('seq', '')}-{meta['image_id']}")[:128]
        wmeta = {k: v for k, v in meta.items() if k in (
            "image_id", "k", "bcr", "model_id", "height", "width", "channels", "snr_db", "snr_source")}
        fut = client.submit(y, float(meta["snr_db"]), self.method, wmeta, rid,
                            params={"seed": self.seed})
        return client, fut

    def _finish(self, client, meta: dict, y: np.ndarray, fut, t0: float):
        from sing.worker.protocol import WorkerError, WorkerUnavailable
        iid = meta["image_id"]
        try:
            reply = fut.result(timeout=0)
        except WorkerUnavailable as e:
            if time.monotonic() >= self._worker_down_until:   # one log line per outage
                self.logger.warn(f"worker at {self.endpoint} unavailable ({e}); "
                                 + ("decoding locally (unrestored)" if self._can_fallback()
                                    else "dropping images") + f", retry in {self.retry_after_s:.0f} s")
            self._worker_down_until = time.monotonic() + self.retry_after_s
            self._fallback(meta, y, f"worker unavailable: {e}")
            return client
        except WorkerError as e:
            if e.code in _IMAGE_ERRORS:
                self._drop(iid, e.code, str(e))
            else:                                  # busy, internal, unknown_model: try locally
                self._fallback(meta, y, f"worker error: {e}", reason=e.code)
            return client
        img = np.asarray(reply.image)
        if img.dtype != np.uint8:
            img = np.clip(np.asarray(img, np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        hdr = {k: v for k, v in dict(reply.header).items()
               if isinstance(v, (str, int, float, bool)) and k not in ("v", "type", "dtype")}
        self._deliver(meta, img, "restored", method_used=str(reply.header.get("method", self.method)),
                      worker=hdr, latency_s=round(time.monotonic() - t0, 4))
        return client

    def _can_fallback(self) -> bool:
        return self.local_fallback and self.jscc is not None

    def _fallback(self, meta: dict, y: np.ndarray, why: str, reason: str = "worker_unavailable"):
        """DeepJSCC decoder on this host; the image is marked unrestored. Or drop with `reason`."""
        iid = meta["image_id"]
        if not self._can_fallback():
            self._drop(iid, reason, why + "; no local fallback (set jscc_dir and local_fallback)")
            return
        mid = meta.get("model_id")
        if mid is not None and mid != self.jscc.model_id:
            self._drop(iid, "unknown_model", f"{why}; the local model is {self.jscc.model_id!r}, "
                                             f"not {mid!r}")
            return
        if y.size != self.jscc.k:
            self._drop(iid, "bad_length", f"{why}; the local model takes k={self.jscc.k}, got {y.size}")
            return
        import torch
        from sing.data import to_uint8
        with torch.no_grad():
            x = self.jscc.decode(torch.from_numpy(y)[None], float(meta["snr_db"]))
        self._deliver(meta, to_uint8(x)[0], "local", method_used="deepjscc", fallback_reason=why)

    def _deliver(self, meta: dict, img: np.ndarray, status: str, **extra) -> None:
        iid = meta["image_id"]
        info = {k: v for k, v in meta.items() if isinstance(v, (str, int, float, bool))}
        info.update(status=status, restored=(status == "restored"), method=self.method, **extra)
        if self.write_files:
            from PIL import Image
            name = safe_name(iid)
            with self._lock:
                if name in self._names:           # two ids with one stem: keep both files
                    name = f"{name}-{len(self._names)}"
                self._names.add(name)
            stem = self.out_dir / name
            png = stem.parent / (stem.name + ".png")
            a = img[..., 0] if img.shape[-1] == 1 else img
            Image.fromarray(a).save(png)
            info["path"] = str(png)
            (stem.parent / (stem.name + ".json")).write_text(json.dumps(info, indent=1, default=str) + "\n")
        self._account(status, iid, **{k: info[k] for k in ("method_used", "path") if k in info})
        out = {k: v for k, v in info.items() if not isinstance(v, dict)}
        self.message_port_pub(pmt.intern("images"), image_pdu(out, img))
