# SPDX-License-Identifier: GPL-3.0-or-later
"""Receiver sink: received symbols of one image → worker (DeepJSCC decoder + restoration) → PNG.

The library side of the GNU Radio block ``gnuradio.sing.sing_receiver`` (docs/GNURADIO.md); it
never imports GNU Radio, so it runs and is tested without it. ``offer()`` only validates and puts
the image on a bounded queue (it never blocks the caller); one background thread talks to the
worker with ``sing.worker.client.WorkerClient`` (timeouts, retries; up to ``max_in_flight``
requests outstanding, which the worker batches). Per image it writes ``<out_dir>/<safe id>.png``
and a ``.json`` sidecar and hands an ``ImageRecord`` to ``deliver``.

Image size: the metadata's ``height``/``width`` (the source's PDU, or the OFDM header) say the sent
image's size; the worker (and the local fallback) decode at that size, and the PNG has the image's
shape (H, W, ``channels``): a greyscale image that rode an RGB model as three equal channels comes
back as one channel (sing.images.to_channels). Without a size (absent, or 0 from a transmitter that
sent none), the model's own size is assumed.

Every image ends in exactly one of three states (``ImageRecord.status``, ``counts()``):
- ``restored``: the worker returned the image for the requested method;
- ``local``: the worker was unreachable/failed and ``local_fallback`` decoded it here with the
  DeepJSCC decoder (``jscc_dir``), marked ``restored: false``;
- ``dropped``: with a reason (bad input: ``bad_type``/``bad_length``/``nan_symbols``/…,
  ``unknown_model``, ``queue_full``, ``worker_unavailable``, ``shutdown``…), one log line each.
``<out_dir>/summary.json`` lists every image and the counts when the sink stops.

When the sent image is known (``set_reference``), each delivered image carries its PSNR and
LPIPS-Alex (sing.metrics, docs/ALGORITHMS.md §7) against it. ``stop()`` waits up to
``drain_timeout_s`` for queued images; what is left then is dropped with reason ``shutdown``. A
dead worker is skipped for ``retry_after_s`` after a failed request, and after that one probe
request at a time goes to it while the other images are decoded locally: a worker that died
mid-run costs one timeout, not one per image, and unrestored images keep coming.
"""
from __future__ import annotations

import json
import logging
import math
import queue
import re
import threading
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from .worker.protocol import ENDPOINT

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
_RID = re.compile(r"[^A-Za-z0-9._:@/+=-]+")
_IMG_EXT = re.compile(r"\.(png|jpe?g|bmp|tiff?|webp|ppm|pgm|gif)$", re.IGNORECASE)
# worker error codes that concern the image itself: decoding it locally would not help
_IMAGE_ERRORS = ("bad_request", "bad_payload", "too_large", "unknown_method", "bad_message")
MAX_REFERENCES = 256           # sent images kept for metrics (oldest forgotten first) …
MAX_REFERENCE_BYTES = 64 << 20  # … and at most this many bytes of them (≈ 21 images of 1024² RGB)


class BadImage(ValueError):
    """Input that cannot be used; the message names what is wrong. Fails that image only."""

    def __init__(self, reason: str, message: str, image_id: str | None = None):
        super().__init__(message)
        self.reason = reason          # short machine-readable reason, used in drop counters
        self.image_id = image_id


def safe_name(image_id: str) -> str:
    """File stem for an image id: "folder/cat.jpg" → "folder_cat"."""
    return _SAFE.sub("_", _IMG_EXT.sub("", image_id)).strip("._") or "image"


def scalars(d: dict, drop=()) -> dict:
    """The plain scalar items of a metadata dict (what a JSON sidecar or a PDU carries)."""
    return {k: v for k, v in d.items() if isinstance(v, (str, int, float, bool)) and k not in drop}


def number(meta: dict, key: str) -> float | None:
    """meta[key] as a float when it is a number (not a bool), else None."""
    v = meta.get(key)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def finite(a: np.ndarray) -> bool:
    """True when every value (real and imaginary parts) is finite."""
    a = np.asarray(a)
    return bool(np.isfinite(a.view(a.real.dtype) if np.iscomplexobj(a) else a).all())


def check_symbols(meta: dict, y: np.ndarray, expect_k: int | None = None) -> None:
    """Validate one image's metadata and symbols; raises BadImage naming what is wrong."""
    iid = meta.get("image_id")
    if not isinstance(iid, str) or not iid:
        raise BadImage("no_image_id", "PDU metadata has no 'image_id' string")
    k = meta.get("k")
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise BadImage("bad_meta", "metadata 'k' (number of symbols) is missing or not a positive int",
                       iid)
    if y.size != k or (expect_k is not None and y.size != expect_k):
        want = k if expect_k is None else expect_k
        raise BadImage("bad_length", f"payload has {y.size} symbols, metadata/model say {want}", iid)
    if not finite(y):
        raise BadImage("nan_symbols", "symbols contain NaN or Inf (check the equaliser / SNR "
                       "estimate upstream)", iid)
    snr = meta.get("snr_db")
    if snr is not None and (not isinstance(snr, (int, float)) or not math.isfinite(snr)):
        raise BadImage("bad_meta", f"metadata snr_db={snr!r} is not a finite number", iid)


def check_shape(meta: dict) -> dict:
    """meta with a valid image size, or BadImage("bad_meta"): `height`/`width` both in [MIN_IMAGE_SIDE,
    MAX_IMAGE_SIDE] (the wire's limits, = the models'), or both absent/0 (dropped: the model's own
    size); `channels`, when given and not 0, 1 or 3 (0 or absent: the model's channels). The rule
    itself is the wire's (sing.worker.protocol.image_shape), so the worker never refuses what passes here."""
    from sing.worker.protocol import ProtocolError, image_shape
    iid = meta.get("image_id")
    out = dict(meta)
    for key in ("height", "width", "channels"):
        v = out.get(key)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
            raise BadImage("bad_meta", f"metadata {key}={v!r} is not a non-negative int", iid)
        if v == 0:
            out.pop(key)
    try:
        image_shape(out, iid)
    except ProtocolError as e:
        raise BadImage("bad_meta", str(e), iid) from None
    return out


def shape_of(meta: dict) -> tuple[int, int] | None:
    """(H, W) of a checked meta (`check_shape`), None for the model's own size."""
    return (int(meta["height"]), int(meta["width"])) if "height" in meta else None


def hwc_uint8(a: np.ndarray) -> np.ndarray:
    """An (H, W, C) image as uint8: uint8 passes, floats in [0, 1] go through sing.data.to_uint8."""
    a = np.asarray(a)
    if a.dtype == np.uint8:
        return a
    import torch
    from sing.data import to_uint8
    return to_uint8(torch.from_numpy(a.astype(np.float32)).permute(2, 0, 1)[None])[0]


@dataclass
class RxConfig:
    """Settings of a receiver sink (the block's parameters, docs/GNURADIO.md)."""
    endpoint: str = ENDPOINT
    method: str = "sing-zero"
    out_dir: str = "out/radio"
    jscc_dir: str = ""
    local_fallback: bool = True
    timeout_s: float = 65.0
    retries: int = 1
    queue_size: int = 32
    drain_timeout_s: float = 60.0
    retry_after_s: float = 5.0
    assumed_snr_db: float | None = None
    seed: int = 0
    write_files: bool = True
    max_in_flight: int = 8
    steps: int = 0                  # diffusion steps sent to the worker; 0: the method's default
    metrics: bool = True            # PSNR/LPIPS against the sent image when it is known
    print_lines: bool = False       # one line per image and a summary on stdout


@dataclass
class ImageRecord:
    """What became of one image (``summary.json`` lists ``summary()`` of each)."""
    image_id: str | None
    status: str                                   # restored | local | dropped
    reason: str | None = None
    message: str | None = None
    method_used: str | None = None
    path: str | None = None
    psnr: float | None = None
    lpips: float | None = None
    snr_db: float | None = None
    snr_source: str | None = None
    snr_true_db: float | None = None
    latency_s: float | None = None
    info: dict = field(default_factory=dict, repr=False)         # sidecar: metadata + outcome
    image: np.ndarray | None = field(default=None, repr=False)   # uint8 HWC

    def summary(self) -> dict:
        d = asdict(self)
        d.pop("info"), d.pop("image")
        return {k: v for k, v in d.items() if v is not None}

    def line(self) -> str:
        """One human-readable line: id, outcome, PSNR, LPIPS, SNR estimate, worker latency."""
        f = (lambda v, spec, unit="": "–" if v is None else f"{v:{spec}}{unit}")
        if self.status == "dropped":
            return f"{self.image_id}: dropped ({self.reason}) {self.message or ''}".rstrip()
        snr = f(self.snr_db, ".1f", " dB") + (f" ({self.snr_source})" if self.snr_source else "")
        if self.snr_true_db is not None and self.snr_source == "estimated":
            snr += f", true {self.snr_true_db:.1f} dB"
        return (f"{self.image_id}: {self.status} {self.method_used}  PSNR {f(self.psnr, '.2f', ' dB')}"
                f"  LPIPS {f(self.lpips, '.4f')}  SNR {snr}  latency {f(self.latency_s, '.2f', ' s')}")


class RxSink:
    """Receiver sink (module docstring). ``deliver(record)`` is called from the sink's thread for
    each restored or locally decoded image; ``log(level, message)`` with level warn/info/error."""

    def __init__(self, cfg: RxConfig, deliver: Callable[[ImageRecord], None] | None = None,
                 log: Callable[[str, str], None] | None = None,
                 on_tick: Callable[[], None] | None = None):
        self.cfg = cfg
        cfg.endpoint = str(cfg.endpoint or "").strip()
        cfg.max_in_flight = max(1, int(cfg.max_in_flight))
        self.out_dir = Path(cfg.out_dir).expanduser()          # "~/sing-radio" (flowgraph default)
        self._deliver_cb = deliver
        self._log = log or (lambda lvl, m: logging.getLogger("sing.rx_sink").log(
            {"warn": logging.WARNING, "error": logging.ERROR}.get(lvl, logging.INFO), m))
        self._on_tick = on_tick or (lambda: None)
        self.jscc = None
        if cfg.jscc_dir:
            from sing.jscc import load_jscc
            self.jscc = load_jscc(cfg.jscc_dir, device="cpu")   # CheckpointError names what is wrong
            self.jscc.eval()
        if not cfg.endpoint and self.jscc is None:
            from sing.errors import InputError
            raise InputError("sing_receiver needs a worker endpoint or a local jscc_dir (or both)")
        if cfg.write_files:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        self._q: queue.Queue = queue.Queue(maxsize=max(1, int(cfg.queue_size)))
        self._lock = threading.Lock()
        self._records: list[ImageRecord] = []
        self._counts = {"received": 0, "restored": 0, "local": 0, "dropped": 0}
        self._reasons: dict[str, int] = {}
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self._worker_down_until = 0.0
        self._outage, self._probe = False, None      # after a failure: one probe request at a time
        self._names: set[str] = set()
        self._refs: OrderedDict[str, np.ndarray] = OrderedDict()
        self._ref_bytes = 0
        self._lpips = None
        self.lpips_unavailable: str | None = None     # why not, and the fix (images carry it too); set once

    # ---- accounting ---------------------------------------------------------------------------
    def counts(self) -> dict:
        with self._lock:
            return dict(self._counts, reasons=dict(self._reasons))

    def records(self) -> list[dict]:
        with self._lock:
            return [r.summary() for r in self._records]

    def _account(self, rec: ImageRecord) -> ImageRecord:
        with self._lock:
            self._counts[rec.status] += 1
            if rec.status == "dropped":
                self._reasons[rec.reason] = self._reasons.get(rec.reason, 0) + 1
            self._records.append(replace(rec, image=None))    # the pixels are not kept
        if self.cfg.print_lines:
            print(rec.line(), flush=True)
        return rec

    def drop(self, image_id, reason: str, message: str) -> ImageRecord:
        self._log("warn", f"image {image_id or '?'} dropped ({reason}): {message}")
        return self._account(ImageRecord(image_id, "dropped", reason, message))

    def reject(self, e: BadImage) -> ImageRecord:
        """Count a received image that failed validation upstream of ``offer``."""
        with self._lock:
            self._counts["received"] += 1
        return self.drop(e.image_id, e.reason, str(e))

    # ---- caller side (never blocks) -----------------------------------------------------------
    def set_method(self, method: str) -> None:
        self.cfg.method = str(method)

    def set_steps(self, steps: int) -> None:
        self.cfg.steps = max(0, int(steps))

    def set_reference(self, image_id: str, image: np.ndarray) -> None:
        """The sent image for ``image_id`` (uint8 HWC): delivered images get PSNR/LPIPS against it."""
        a = hwc_uint8(image)
        with self._lock:
            old = self._refs.pop(str(image_id), None)
            self._ref_bytes -= 0 if old is None else old.nbytes
            self._refs[str(image_id)] = a
            self._ref_bytes += a.nbytes
            while len(self._refs) > 1 and (len(self._refs) > MAX_REFERENCES
                                           or self._ref_bytes > MAX_REFERENCE_BYTES):
                self._ref_bytes -= self._refs.popitem(last=False)[1].nbytes

    def offer(self, meta: dict, y: np.ndarray) -> ImageRecord | None:
        """Validate and queue one image; returns its record when it is dropped at once."""
        with self._lock:
            self._counts["received"] += 1
        meta = dict(meta)
        try:
            check_symbols(meta, y)
            meta = check_shape(meta)
            if meta.get("snr_db") is None:
                if self.cfg.assumed_snr_db is None:
                    raise BadImage("no_snr", "metadata has no snr_db and the block has no assumed SNR",
                                   meta.get("image_id"))
                meta["snr_db"], meta["snr_source"] = float(self.cfg.assumed_snr_db), "true"
            if self.cfg.endpoint == "" and self.jscc is not None:
                self._check_local(meta, y, "")
        except BadImage as e:
            return self.drop(e.image_id, e.reason, str(e))
        try:
            self._q.put_nowait((meta, y, time.time()))
        except queue.Full:
            return self.drop(meta.get("image_id"), "queue_full",
                             f"{self._q.maxsize} images already wait for the worker; slow the source "
                             f"down or raise queue_size")
        return None

    def pending(self) -> int:
        """Images queued or in flight."""
        return self._q.unfinished_tasks

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

    def _check_local(self, meta: dict, y: np.ndarray, why: str) -> None:
        """Raise BadImage unless the local DeepJSCC model can decode these symbols."""
        mid, pre = meta.get("model_id"), f"{why}; " if why else ""
        if mid is not None and mid != self.jscc.model_id:
            raise BadImage("unknown_model", f"{pre}model id {mid!r} is not the local DeepJSCC model "
                           f"{self.jscc.model_id!r}", meta.get("image_id"))
        hw = shape_of(meta)
        h, w = hw or (self.jscc.config.image_size,) * 2
        try:
            k = self.jscc.k_at(h, w)
        except ValueError as e:                   # InputError: a size this model cannot take
            raise BadImage("bad_meta", f"{pre}{e}", meta.get("image_id")) from None
        if y.size != k:
            raise BadImage("bad_length", f"{pre}{y.size} symbols; the local model takes k={k} for a "
                           f"{h}×{w} image", meta.get("image_id"))

    # ---- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        self._closing.clear()
        self._thread = threading.Thread(target=self._run, name="sing-receiver", daemon=True)
        self._thread.start()

    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        self._closing.set()
        if self._thread is not None:
            self._thread.join(timeout=self.cfg.drain_timeout_s + 10)
        while True:
            try:
                meta, _, _ = self._q.get_nowait()
            except queue.Empty:
                break
            self.drop(meta.get("image_id"), "shutdown",
                      f"still queued {self.cfg.drain_timeout_s:.0f} s after the flowgraph stopped")
        self._write_summary()
        if self.cfg.print_lines:
            print(self.summary_line(), flush=True)

    def summary_line(self) -> str:
        c = self.counts()
        with self._lock:
            ok = [r for r in self._records if r.status != "dropped"]
        mean = (lambda xs: sum(xs) / len(xs) if xs else None)
        p = mean([r.psnr for r in ok if r.psnr is not None])
        lp = mean([r.lpips for r in ok if r.lpips is not None])
        return (f"summary {self.cfg.method}: {c['received']} images, {c['restored']} restored, "
                f"{c['local']} decoded locally, {c['dropped']} dropped"
                + (f" {c['reasons']}" if c["reasons"] else "")
                + ("" if p is None else f"; mean PSNR {p:.2f} dB")
                + ("" if lp is None else f", mean LPIPS {lp:.4f}")
                + ("" if not self.lpips_unavailable else f"; {self.lpips_unavailable}"))

    def _write_summary(self) -> None:
        if not self.cfg.write_files:
            return
        try:
            from sing.checkpoint import write_json
            write_json(self.out_dir / "summary.json",
                       {"counts": self.counts(), "method": self.cfg.method,
                        "endpoint": self.cfg.endpoint, "images": self.records()})
        except OSError as e:
            self._log("error", f"cannot write {self.out_dir / 'summary.json'}: {e}")

    # ---- worker thread ------------------------------------------------------------------------
    def _run(self) -> None:
        """Take images off the queue, keep up to `max_in_flight` requests outstanding (the worker
        batches concurrent requests), finish each one as its reply, error or timeout comes."""
        from concurrent.futures import FIRST_COMPLETED, wait
        client, inflight, deadline = None, [], None
        while True:
            self._on_tick()
            if self._closing.is_set() and deadline is None:
                deadline = time.monotonic() + self.cfg.drain_timeout_s
            if deadline is not None and ((self._q.empty() and not inflight)
                                         or time.monotonic() > deadline):
                break
            while len(inflight) < self.cfg.max_in_flight:
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
                    self.drop(meta.get("image_id"), "internal", f"{type(e).__name__}: {e}")
                    self._q.task_done()
            if not inflight:
                continue
            done, _ = wait([f for _, _, f, _ in inflight], timeout=0.05, return_when=FIRST_COMPLETED)
            for item in [i for i in inflight if i[2] in done]:
                try:
                    self._finish(*item)
                except Exception as e:
                    self.drop(item[0].get("image_id"), "internal", f"{type(e).__name__}: {e}")
                self._q.task_done()
            inflight = [i for i in inflight if i[2] not in done]
        for meta, _, fut, _ in inflight:          # drain deadline passed with requests outstanding
            fut.cancel()
            self.drop(meta.get("image_id"), "shutdown", "no worker reply before the drain timeout")
            self._q.task_done()
        if client is not None:
            client.close()
        self._on_tick()

    def _why_down(self) -> str:
        if not self.cfg.endpoint:
            return "no worker endpoint configured"
        return (f"worker at {self.cfg.endpoint} did not answer less than "
                f"{self.cfg.retry_after_s:.0f} s ago" + (" (one probe request out)" if self._probe else ""))

    def _submit(self, client, meta: dict, y: np.ndarray):
        """(client, Future) — or (client, None) when there is no live worker to ask."""
        if (not self.cfg.endpoint or time.monotonic() < self._worker_down_until
                or (self._outage and self._probe is not None)):
            return client, None
        if client is None:
            from sing.worker.client import WorkerClient
            client = WorkerClient(self.cfg.endpoint, timeout_s=self.cfg.timeout_s,
                                  retries=self.cfg.retries, max_in_flight=self.cfg.max_in_flight)
        rid = _RID.sub("_", f"{meta.get('seq', '')}-{meta['image_id']}")[:128]
        params = {"seed": self.cfg.seed}
        if self.cfg.steps > 0 and self.cfg.method != "deepjscc":
            params["steps"] = int(self.cfg.steps)
        # the client keeps the metadata keys the wire carries (protocol.clean_meta)
        fut = client.submit(y, float(meta["snr_db"]), self.cfg.method, meta, rid, params=params)
        if self._outage:          # the worker failed before: the other images do not wait on it
            self._probe = fut
        return client, fut

    def _finish(self, meta: dict, y: np.ndarray, fut, t0: float) -> None:
        from sing.worker.protocol import WorkerError, WorkerUnavailable
        if fut is self._probe:
            self._probe = None
        try:
            reply = fut.result(timeout=0)
        except WorkerUnavailable as e:
            self._outage = True
            if time.monotonic() >= self._worker_down_until:   # one log line per outage
                self._log("warn", f"worker at {self.cfg.endpoint} unavailable ({e}); "
                          + ("decoding locally (unrestored)" if self._can_fallback()
                             else "dropping images") + f", retry in {self.cfg.retry_after_s:.0f} s")
            self._worker_down_until = time.monotonic() + self.cfg.retry_after_s
            self._fallback(meta, y, f"worker unavailable: {e}")
            return
        except WorkerError as e:
            if e.code in _IMAGE_ERRORS:
                self.drop(meta["image_id"], e.code, str(e))
            else:                                  # busy, internal, unknown_model: try locally
                self._fallback(meta, y, f"worker error: {e}", reason=e.code)
            return
        self._outage = False
        self._deliver(meta, self._as_sent(meta, hwc_uint8(reply.image)), "restored",
                      method_used=str(reply.header.get("method", self.cfg.method)),
                      worker=scalars(dict(reply.header), drop=("v", "type", "dtype")),
                      latency_s=round(time.monotonic() - t0, 4))

    def _can_fallback(self) -> bool:
        return self.cfg.local_fallback and self.jscc is not None

    def _fallback(self, meta: dict, y: np.ndarray, why: str, reason: str = "worker_unavailable"):
        """DeepJSCC decoder on this host; the image is marked unrestored. Or drop with `reason`."""
        iid = meta["image_id"]
        if not self._can_fallback():
            self.drop(iid, reason, why + "; no local fallback (set jscc_dir and local_fallback)")
            return
        try:
            self._check_local(meta, y, why)
        except BadImage as e:
            self.drop(iid, e.reason, str(e))
            return
        import torch
        from sing.data import to_uint8
        with torch.no_grad():
            x = self.jscc.decode(torch.from_numpy(y)[None], float(meta["snr_db"]), shape=shape_of(meta))
        self._deliver(meta, self._as_sent(meta, to_uint8(x)[0]), "local", method_used="deepjscc",
                      fallback_reason=why)

    @staticmethod
    def _as_sent(meta: dict, img: np.ndarray) -> np.ndarray:
        """The decoded image with the sent image's channels (module doc; sing.images.to_channels)."""
        c = meta.get("channels")
        if c is None or c == img.shape[-1]:
            return img
        from sing.images import to_channels
        return to_channels(img, int(c))

    def _metrics(self, image_id: str, img: np.ndarray) -> tuple[float | None, float | None]:
        """(PSNR dB, LPIPS-Alex) against the sent image, or None where unknown."""
        with self._lock:
            ref = self._refs.get(image_id)
        if not self.cfg.metrics or ref is None or ref.shape != img.shape:
            return None, None
        from sing.data import to_tensor
        from sing.metrics import psnr
        a, b = to_tensor(img[None]), to_tensor(ref[None])
        p, lp = float(psnr(a, b)[0]), None
        if self.lpips_unavailable is None:
            try:
                from sing.metrics import load_lpips
                self._lpips = self._lpips or load_lpips("alex")
                if min(img.shape[:2]) >= self._lpips.min_size:
                    import torch
                    with torch.no_grad():
                        lp = float(self._lpips(a, b)[0])
            except Exception as e:                 # weights missing: PSNR only, said once
                from sing.metrics.lpips_weights import INSTALL_HINT
                self.lpips_unavailable = (f"LPIPS unavailable ({str(e).split(': ')[0]}), PSNR only. "
                                          "To get the weights: python3 -m sing.metrics.lpips_weights "
                                          "install")
                self._log("warn", f"LPIPS unavailable, PSNR only: {e}"
                          + ("" if INSTALL_HINT in str(e) else f". To get the weights: {INSTALL_HINT}"))
        return p, lp

    def _deliver(self, meta: dict, img: np.ndarray, status: str, **extra) -> None:
        iid = meta["image_id"]
        psnr, lp = self._metrics(iid, img)
        info = scalars(meta)
        info.update(status=status, restored=(status == "restored"), method=self.cfg.method, **extra)
        info.update({k: v for k, v in (("psnr", psnr), ("lpips", lp)) if v is not None})
        if psnr is not None and lp is None and self.lpips_unavailable:
            info["lpips_unavailable"] = self.lpips_unavailable
        if self.cfg.write_files:
            from PIL import Image
            name = safe_name(iid)
            with self._lock:
                if name in self._names:           # two ids with one stem: keep both files
                    name = f"{name}-{len(self._names)}"
                self._names.add(name)
            png = self.out_dir / (name + ".png")
            Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img).save(png)
            info["path"] = str(png)
            (self.out_dir / (name + ".json")).write_text(json.dumps(info, indent=1, default=str) + "\n")
        rec = ImageRecord(iid, status, method_used=info["method_used"], path=info.get("path"),
                          psnr=psnr, lpips=lp, snr_db=number(meta, "snr_db"),
                          snr_source=meta.get("snr_source"), snr_true_db=number(meta, "snr_true_db"),
                          latency_s=extra.get("latency_s"), info=info, image=img)
        self._account(rec)
        if self._deliver_cb is not None:
            self._deliver_cb(rec)
