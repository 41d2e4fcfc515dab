# SPDX-License-Identifier: GPL-3.0-or-later
"""WorkerClient: what a receiver (the GNU Radio block) uses to reach a worker or a broker.

    from sing.worker.client import WorkerClient, Reply, WorkerUnavailable, WorkerError
    with WorkerClient("tcp://127.0.0.1:5555") as c:       # timeout_s=65 s, retries=1 (see below)
        r = c.restore(symbols, snr_db=3.0, method="sing-zero",
                      meta={"image_id": "img7", "model_id": "jscc@ab12…", "snr_source": "estimated"},
                      request_id="rx0-000007")
        r.image    # uint8 (H, W, C)
        r.header   # reply JSON: model, method, meta, timings{queue_ms, decode_ms, restore_ms,
                   #   compute_ms, total_ms, batch_size}, …
    fut = c.submit(...)   # concurrent.futures.Future[Reply]: never blocks a message handler

- One DEALER socket owned by a private I/O thread; `restore`, `submit`, `ping` are thread-safe and
  may be called from many threads at once (concurrent requests are what the worker batches).
- Timeouts (docs/PROTOCOL.md): the default `timeout_s` (protocol.CLIENT_TIMEOUT_S = 65 s) exceeds
  the broker's default request timeout (60 s) by a margin, so through a broker a request that no
  worker can serve comes back as an `unavailable` error reply (WorkerUnavailable with the reason in
  `.header`), not as a client timeout. If the broker runs with `--request-timeout-s T`, use
  `timeout_s=protocol.client_timeout_for(T)`. Talking to one worker directly there is no deadline
  but this one: make `timeout_s` cover the longest batch at full queue.
- Each attempt waits `timeout_s`; an unanswered request is re-sent with the *same* request id up to
  `retries` times (the worker/broker treat ids as idempotent; a late duplicate reply is dropped),
  then fails with WorkerUnavailable. Total wait ≤ timeout_s × (retries + 1).
- An error reply raises WorkerError(code, message) (WorkerUnavailable for code 'unavailable').
- At most `max_in_flight` requests are outstanding; `submit` waits for a free slot for up to the
  total timeout, then raises WorkerUnavailable.
Imports numpy and pyzmq only (no torch): it runs on the radio host.
"""
from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
import uuid
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np
import zmq

from ..errors import InputError
from . import protocol as P
from .keys import ClientCurve
from .protocol import WorkerError, WorkerUnavailable

__all__ = ["WorkerClient", "Reply", "WorkerError", "WorkerUnavailable", "ClientCurve"]
log = logging.getLogger("sing.worker.client")


@dataclass
class Reply:
    image: np.ndarray        # uint8 (H, W, C) (float16 when requested with out="float16")
    header: dict

    @property
    def request_id(self) -> str:
        return self.header.get("id", "")


@dataclass
class _Send:
    """A command from a caller's thread to the I/O thread: send this and wait for its answer. In
    flight, the I/O thread keeps when its attempt expires and how many re-sends are left."""
    rid: str
    frames: list
    fut: Future
    timeout_s: float
    retries: int
    kind: str                # "request" | "ping"
    deadline: float = 0.0
    left: int = 0


class WorkerClient:
    def __init__(self, endpoint: str, timeout_s: float = P.CLIENT_TIMEOUT_S,
                 retries: int = P.CLIENT_RETRIES, curve=None,
                 max_in_flight: int = 64, model: str | None = None):
        if timeout_s <= 0 or retries < 0 or max_in_flight < 1:
            raise InputError("timeout_s > 0, retries ≥ 0 and max_in_flight ≥ 1 are required")
        self.endpoint, self.timeout_s, self.retries = endpoint, float(timeout_s), int(retries)
        self.model = model
        self._curve = ClientCurve.coerce(curve)
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self._ctx = zmq.Context()
        self._cmds: "queue.Queue[_Send | None]" = queue.Queue()   # None: close
        self._wake_rx = self._ctx.socket(zmq.PULL)     # inproc names are per context: this
        self._wake_rx.bind("inproc://wake")            # client's own, so a fixed name is unique
        self._wake_tx = self._ctx.socket(zmq.PUSH)
        self._wake_tx.connect("inproc://wake")
        self._wake_lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, daemon=True, name="sing-client-io")
        self._thread.start()

    # ---- public API --------------------------------------------------------------------------
    def submit(self, symbols, snr_db: float, method: str = "deepjscc", meta: dict | None = None,
               request_id: str | None = None, *, params: dict | None = None, out: str = "uint8",
               model: str | None = None) -> "Future[Reply]":
        """Send one image's symbols; the Future resolves to a Reply or raises WorkerError."""
        y = np.asarray(symbols)
        if not np.iscomplexobj(y) or y.ndim != 1 or not 1 <= y.size <= P.MAX_K:
            raise InputError(f"symbols must be a 1-D complex array of 1…{P.MAX_K} values, got "
                             f"{y.dtype} {y.shape}")
        if not np.isfinite(y.view(np.float32 if y.dtype == np.complex64 else np.float64)).all():
            raise InputError("symbols contain NaN or Inf: check the equaliser / SNR estimate")
        meta = P.clean_meta(meta or {}, strict=False)
        model = model or meta.get("model_id") or self.model
        rid = request_id or uuid.uuid4().hex
        if not P.ID_RE.match(rid):
            raise InputError(f"request_id {rid!r} must match {P.ID_RE.pattern}")
        snr_source = meta.get("snr_source", "true")
        frames = P.request_frames(y.astype(np.complex64), float(snr_db), method, rid, model=model,
                                  snr_source=snr_source if snr_source in P.SNR_SOURCES else "true",
                                  params=params, meta=meta, out=out)
        if len(frames[0]) > P.MAX_HEADER_BYTES:
            raise InputError("request header too large: shorten meta/params")
        return self._submit(rid, frames, "request")

    def restore(self, symbols, snr_db: float, method: str = "deepjscc", meta: dict | None = None,
                request_id: str | None = None, **kw) -> Reply:
        """Blocking restore (≤ timeout_s × (retries + 1)); raises WorkerUnavailable / WorkerError."""
        return self.submit(symbols, snr_db, method, meta, request_id, **kw).result()

    def ping(self, timeout_s: float | None = None) -> dict:
        """Health/status of the worker (or of the broker and its workers)."""
        rid = "ping-" + uuid.uuid4().hex
        return self._submit(rid, P.control_frames("ping", id=rid), "ping", timeout_s=timeout_s,
                            retries=0).result()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._cmd(None)
        self._thread.join(timeout=5)
        with self._wake_lock:
            self._wake_tx.close(linger=0)
        self._ctx.term()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- internals ---------------------------------------------------------------------------
    def _cmd(self, cmd: "_Send | None") -> None:
        self._cmds.put(cmd)
        with self._wake_lock:
            if not self._wake_tx.closed:
                self._wake_tx.send(b"", zmq.NOBLOCK)

    def _submit(self, rid, frames, kind, timeout_s=None, retries=None) -> Future:
        if self._closed:
            raise WorkerUnavailable("client is closed")
        timeout_s = self.timeout_s if timeout_s is None else float(timeout_s)
        retries = self.retries if retries is None else retries
        if not self._slots.acquire(timeout=timeout_s * (retries + 1)):
            raise WorkerUnavailable(f"{self.endpoint}: in-flight limit reached and nothing came back "
                                    f"in {timeout_s * (retries + 1):.1f}s")
        fut: Future = Future()
        fut.add_done_callback(lambda _f: self._slots.release())
        self._cmd(_Send(rid, frames, fut, timeout_s, retries, kind))
        return fut

    def _open(self) -> zmq.Socket:
        s = self._ctx.socket(zmq.DEALER)
        P.limit_socket(s, P.MAX_REPLY_BYTES, linger_ms=0)
        if self._curve is not None:
            self._curve.apply(s)
        s.connect(self.endpoint)
        return s

    def _loop(self) -> None:
        sock = self._open()
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(self._wake_rx, zmq.POLLIN)
        pending: dict[str, _Send] = {}
        try:
            while True:
                now = time.monotonic()
                wait = min((p.deadline for p in pending.values()), default=now + 0.5) - now
                events = dict(poller.poll(max(0, min(wait, 0.5)) * 1e3))
                if self._wake_rx in events and not self._take_commands(sock, pending):
                    return
                if sock in events:
                    P.drain(sock, lambda msg, trunc: self._on_message(msg, pending))
                self._expire(sock, pending, time.monotonic())
        finally:
            for rid, p in pending.items():
                if not p.fut.done():
                    p.fut.set_exception(WorkerUnavailable("client closed before the reply came"))
            sock.close(linger=0)
            self._wake_rx.close(linger=0)

    def _take_commands(self, sock, pending: dict) -> bool:
        """Send what callers submitted; False when asked to close."""
        P.drain(self._wake_rx, lambda *_: None)      # the wake-up tokens carry nothing
        while True:
            try:
                cmd = self._cmds.get_nowait()
            except queue.Empty:
                return True
            if cmd is None:
                return False
            if cmd.rid in pending:
                cmd.fut.set_exception(InputError(f"request id {cmd.rid!r} is already in flight"))
                continue
            cmd.deadline, cmd.left = time.monotonic() + cmd.timeout_s, cmd.retries
            pending[cmd.rid] = cmd
            self._send(sock, cmd.frames)

    def _expire(self, sock, pending: dict, now: float) -> None:
        """Re-send what timed out (same id) while re-sends are left; then fail it."""
        for rid in [r for r, p in pending.items() if p.deadline <= now]:
            p = pending[rid]
            t_s = p.timeout_s
            if p.left > 0:
                p.left -= 1
                p.deadline = now + t_s
                log.info("no reply to %s from %s in %.1fs: re-sending", rid, self.endpoint, t_s)
                self._send(sock, p.frames)
            else:
                del pending[rid]
                p.fut.set_exception(WorkerUnavailable(
                    f"no reply from {self.endpoint} for {rid} after {p.retries + 1} attempt(s) "
                    f"of {t_s:.1f}s: is the worker/broker running and reachable (and are the "
                    f"CURVE keys right)?"))

    @staticmethod
    def _send(sock, frames) -> None:
        with contextlib.suppress(zmq.Again):      # not connected / queue full: the timeout re-sends
            sock.send_multipart([b""] + list(frames), zmq.NOBLOCK)

    def _on_message(self, msg, pending: dict) -> None:
        _, body = P.split_envelope(msg, 0)
        if not body:
            log.warning("dropping a message without a delimiter/header from %s", self.endpoint)
            return
        try:
            h = P.parse_header(body[0])
        except P.ProtocolError as e:
            log.warning("dropping a malformed message from %s: %s", self.endpoint, e)
            return
        rid = P.request_id_of(h)
        p = pending.pop(rid, None) if rid else None
        if p is None:
            return                    # a late duplicate (answered already) or not ours
        t = h["type"]
        try:
            if t == "error":
                code, message = str(h.get("code")), str(h.get("message"))
                p.fut.set_exception(WorkerUnavailable(message, h) if code == P.UNAVAILABLE
                                    else WorkerError(code, message, h))
            elif t == "pong" and p.kind == "ping":
                p.fut.set_result(h.get("status", {}))
            elif t == "reply" and p.kind == "request":
                p.fut.set_result(Reply(P.parse_reply_image(h, body[1:]), h))
            else:
                p.fut.set_exception(WorkerError(P.BAD_MESSAGE, f"unexpected {t!r} reply", h))
        except P.ProtocolError as e:
            p.fut.set_exception(WorkerError(e.code, str(e), h))
