# SPDX-License-Identifier: GPL-3.0-or-later
"""`sing broker`: many receivers (clients) over many workers, never losing an image silently.

    clients (DEALER/REQ) ──► frontend ROUTER ──[broker]── backend ROUTER ◄── workers (DEALER,
                                                                           `sing worker --connect`)

Paranoid-Pirate style: workers announce themselves (`ready`, with a credit = how many requests
they take at once) and heartbeat; the broker heartbeats back. A worker silent for
`liveness × heartbeat_s` is dead: its in-flight requests go back to the queue and to another
worker (same request id: idempotent), up to `--max-attempts`; then the client gets an error reply
`unavailable`. A request not answered within `--request-timeout-s` also gets that error. Replies
are matched on (client, request id); a second reply for the same request (a slow worker that
was presumed dead) is dropped. Requests are fully validated here too, so junk never reaches a
worker. A `ping` from a client is answered by the broker with its own status and its workers'.

Liveness from progress as well as from heartbeats: a worker holding requests that answers none of
them for `--progress-timeout-s` (a hung compute thread heartbeats on) is stuck: its requests are
re-queued elsewhere (same id) and it gets no work until it answers again or says `ready`.
A worker that answers `unavailable` (it is shutting down, or its compute is stuck) gets no more
work until it says `ready` again, so a request is not tried on it again and again.
Roles: with CURVE, clients and workers have separate allow-lists (`--curve-clients`,
`--curve-workers`): a client key is refused on the worker port and a worker key on the client port.
SIGTERM/SIGINT: every request held is answered `unavailable` and the broker exits within 2 s.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import threading
import time
from collections import OrderedDict, deque
from dataclasses import asdict, dataclass, field

import zmq

from . import protocol as P

log = logging.getLogger("sing.broker")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--frontend", default=P.ENDPOINT, help="endpoint clients connect to")
    p.add_argument("--backend", default=P.BROKER_BACKEND, help="endpoint workers connect to")
    p.add_argument("--heartbeat-s", type=float, default=1.0)
    p.add_argument("--liveness", type=int, default=3, help="missed heartbeats = worker dead")
    p.add_argument("--progress-timeout-s", type=float, default=30.0,
                   help="a worker holding requests that answers none for this long is stuck: its "
                        "requests go to another worker (keep it below --request-timeout-s and "
                        "above the longest batch)")
    p.add_argument("--max-attempts", type=int, default=3, help="workers tried per request")
    p.add_argument("--request-timeout-s", type=float, default=P.BROKER_REQUEST_TIMEOUT_S,
                   help="a request unanswered this long (from its arrival here) gets an "
                        "'unavailable' error reply; clients should wait this + "
                        f"{P.CLIENT_TIMEOUT_MARGIN_S:g} s per attempt (WorkerClient default: "
                        f"{P.CLIENT_TIMEOUT_S:g} s)")
    p.add_argument("--max-queue", type=int, default=4096, help="requests held before 'busy'")
    p.add_argument("--max-cost", type=int, default=P.DEFAULT_MAX_COST, metavar="N",
                   help="refuse (too_expensive) a request costing more than N network passes, as "
                        "`sing worker --max-cost` does (sing.methods.cost_of; docs/methods.md)")
    p.add_argument("--curve-secret", default=None, metavar="FILE",
                   help="server key pair (server.key_secret) for both endpoints")
    p.add_argument("--curve-clients", default=None, metavar="DIR",
                   help="admit on --frontend only the client public keys (*.key) in DIR "
                        "(`sing keys` writes DIR/clients); needs --curve-workers")
    p.add_argument("--curve-workers", default=None, metavar="DIR",
                   help="admit on --backend only the worker public keys (*.key) in DIR "
                        "(`sing keys` writes DIR/workers); needs --curve-clients")


@dataclass
class _Worker:
    wid: bytes
    capacity: int
    expiry: float
    name: str = ""
    draining: bool = False
    stuck: bool = False               # held requests, answered none for --progress-timeout-s
    t_progress: float = 0.0           # last answer from it, or when it last started holding work
    inflight: set = field(default_factory=set)

    def free(self) -> int:
        return 0 if self.draining or self.stuck else self.capacity - len(self.inflight)


@dataclass
class _Req:
    env: list            # [client_id, …, b""]
    body: list           # [header, payload]
    rid: str
    t0: float
    attempts: int = 0
    worker: bytes | None = None


@dataclass
class BrokerStats:
    """Counters in the pong; each counts what its name says, once."""
    served: int = 0                   # image replies forwarded to clients
    errors_forwarded: int = 0         # a worker's error reply (other than busy/unavailable) forwarded
    failed: int = 0                   # `unavailable` sent by the broker (timeout, attempts, shutdown)
    rejected: int = 0                 # client messages refused here (invalid, busy)
    retried: int = 0                  # requests re-queued onto another worker
    duplicate_requests: int = 0       # client re-sends of a request still held (dropped)
    late_replies: int = 0             # worker answers for requests answered already (dropped)
    stuck_workers: int = 0            # times a worker was found making no progress
    refused_worker_messages: int = 0  # malformed messages on the worker port (dropped)


class Broker:
    def __init__(self, frontend: str, backend: str, heartbeat_s: float = 1.0, liveness: int = 3,
                 max_attempts: int = 3, request_timeout_s: float = P.BROKER_REQUEST_TIMEOUT_S,
                 max_queue: int = 4096, curve_secret: str | None = None,
                 curve_clients: str | None = None, curve_workers: str | None = None,
                 progress_timeout_s: float = 30.0, max_cost: int | None = P.DEFAULT_MAX_COST):
        P.check_bind(frontend, curve_secret is not None)
        P.check_bind(backend, curve_secret is not None)
        if (curve_clients is None) != (curve_workers is None):
            from ..errors import InputError
            raise InputError("give both --curve-clients and --curve-workers (separate allow-lists "
                             "for the two roles; `sing keys` writes DIR/clients and DIR/workers), "
                             "or neither")
        self.frontend_ep, self.backend_ep = frontend, backend
        self.hb_s, self.liveness, self.progress_timeout = heartbeat_s, liveness, progress_timeout_s
        self.max_attempts, self.req_timeout, self.max_queue = max_attempts, request_timeout_s, max_queue
        self.curve_secret, self.max_cost = curve_secret, max_cost
        self.curve_clients, self.curve_workers = curve_clients, curve_workers
        self.workers: "OrderedDict[bytes, _Worker]" = OrderedDict()
        self.reqs: dict[tuple[bytes, str], _Req] = {}
        self.queue: deque = deque()
        self.stats = BrokerStats()
        self._stop = threading.Event()

    def stop(self, *_):
        self._stop.set()

    # ---- helpers ----
    def _send(self, sock, frames) -> None:
        try:
            sock.send_multipart(frames, zmq.NOBLOCK)
        except zmq.Again:
            log.warning("message dropped: peer not reachable / queue full")
        except zmq.ZMQError as e:      # EHOSTUNREACH with ROUTER_MANDATORY
            log.warning("message dropped: %s", e)

    def _fail(self, key, code: str, message: str) -> None:
        r = self.reqs.pop(key, None)
        if r is None:
            return
        if r.worker in self.workers:
            self.workers[r.worker].inflight.discard(key)
        self.stats.failed += 1
        self._send(self.front, r.env + P.error_frames(code, message, r.rid))

    def status(self) -> dict:
        return {"broker": True, "queued": len(self.queue), "inflight": len(self.reqs) - len(self.queue),
                "workers": [{"name": w.name, "capacity": w.capacity, "inflight": len(w.inflight),
                             "draining": w.draining, "stuck": w.stuck} for w in self.workers.values()],
                **asdict(self.stats)}

    # ---- frontend ----
    def _on_client(self, frames, truncated) -> None:
        env, body = P.split_envelope(frames, 1)
        rid = None
        try:
            h = P.read_header(body, truncated)
            rid = P.request_id_of(h)
            if h["type"] == "ping":
                self._send(self.front, env + P.control_frames("pong", id=rid, status=self.status()))
                return
            if h["type"] != "request":
                raise P.ProtocolError(P.BAD_MESSAGE, f"clients send request or ping, not {h['type']}", rid)
            req = P.parse_request(h, body[1:])     # full validation: junk never reaches a worker
            P.check_cost(req.method, req.params, self.max_cost, rid)   # nor does an over-budget one
            key = (env[0], rid)
            if key in self.reqs:
                self.stats.duplicate_requests += 1
                return                              # a client re-send of a request in progress
            if len(self.reqs) >= self.max_queue:
                raise P.ProtocolError(P.BUSY, f"broker holds {self.max_queue} requests; retry later", rid)
            self.reqs[key] = _Req(env, body, rid, time.monotonic())
            self.queue.append(key)
        except Exception as e:  # noqa: BLE001 — whatever a client sends, the broker stays up
            if isinstance(e, P.ProtocolError):
                self.stats.rejected += 1
            else:
                log.exception("unexpected error handling a client message")
                e = P.ProtocolError(P.INTERNAL, type(e).__name__, rid)
            self._send(self.front, env + P.error_frames(e.code, str(e), e.request_id or rid))

    # ---- backend ----
    def _on_worker(self, frames, truncated) -> None:
        """A worker's message; one it should not have sent (ProtocolError) is dropped and counted."""
        try:
            self._worker_message(frames, truncated)
        except Exception as e:  # noqa: BLE001 — whatever a worker sends, the broker stays up
            if isinstance(e, P.ProtocolError):
                self.stats.refused_worker_messages += 1
            else:
                log.exception("unexpected error handling a worker message")

    def _worker_message(self, frames, truncated) -> None:
        if len(frames) < 2:
            raise P.ProtocolError(P.BAD_MESSAGE, "a worker's message is [b'', header, …]")
        wid, now = frames[0], time.monotonic()
        w = self.workers.get(wid)
        if w is not None:
            w.expiry = now + self.hb_s * self.liveness
        env, body = P.split_envelope(frames[1:], 0)
        h = P.read_header(body, truncated)
        if len(env) == 1:                                      # control: [wid, b"", header]
            self._on_control(wid, w, h, now)
            return
        self._on_answer(w, env, body, h, now)                  # [wid, client, …, b"", header…]

    def _on_control(self, wid: bytes, w: "_Worker | None", h: dict, now: float) -> None:
        t = h.get("type")
        cap = h.get("capacity")
        cap = cap if type(cap) is int and 1 <= cap <= P.MAX_CAPACITY else 1
        if t in ("ready", "heartbeat"):
            if w is None:
                w = self.workers[wid] = _Worker(wid, cap, now + self.hb_s * self.liveness,
                                                P.safe_name(h.get("worker", "")), t_progress=now)
                log.info("worker %s joined (capacity %d)", w.name, cap)
            elif t == "ready":
                w.capacity, w.draining, w.stuck, w.t_progress = cap, False, False, now
            if t == "heartbeat" and h.get("stuck") is True:
                w.draining = True              # the worker says its compute is stuck
        elif t == "disconnect" and w is not None:
            log.info("worker %s is draining", w.name)
            w.draining = True
        else:
            raise P.ProtocolError(P.BAD_MESSAGE, "control messages: ready, heartbeat, disconnect (if known)")

    def _on_answer(self, w: "_Worker | None", env: list, body: list, h: dict, now: float) -> None:
        key = (env[0], P.request_id_of(h))
        if h.get("type") not in ("reply", "error"):
            raise P.ProtocolError(P.BAD_MESSAGE, "a worker answers with reply or error")
        if w is not None:
            w.t_progress = now
            if w.stuck:
                log.info("worker %s answers again: no longer stuck", w.name)
                w.stuck = False
        r = self.reqs.get(key)
        if r is None:
            self.stats.late_replies += 1
            return
        for x in (w, self.workers.get(r.worker)):       # the answering worker, the one it was sent to
            if x is not None:
                x.inflight.discard(key)
        if h.get("type") == "error" and h.get("code") in (P.BUSY, P.UNAVAILABLE):
            if h.get("code") == P.UNAVAILABLE and w is not None:
                w.draining = True      # shutting down or stuck: no more work until it says `ready`
            self._requeue(key, f"worker said {h.get('code')}")          # try another worker
            return
        del self.reqs[key]
        if h.get("type") == "reply":
            self.stats.served += 1
        else:
            self.stats.errors_forwarded += 1
        self._send(self.front, r.env + body)

    def _requeue(self, key, why: str) -> None:
        r = self.reqs.get(key)
        if r is None:
            return
        r.worker = None
        if r.attempts >= self.max_attempts:
            self._fail(key, P.UNAVAILABLE, f"image {r.rid} could not be restored: {why}, "
                                           f"{r.attempts} attempt(s)")
            return
        self.stats.retried += 1
        self.queue.appendleft(key)

    def _dispatch(self) -> None:
        now = time.monotonic()
        while self.queue:
            best = max(self.workers.values(), key=lambda w: w.free(), default=None)
            if best is None or best.free() <= 0:
                return
            key = self.queue.popleft()
            r = self.reqs.get(key)
            if r is None:
                continue
            r.attempts += 1
            r.worker = best.wid
            if not best.inflight:
                best.t_progress = now                 # the progress clock starts with the work
            best.inflight.add(key)
            self._send(self.back, [best.wid] + r.env + r.body)

    def _housekeeping(self, now: float) -> None:
        for wid in [w for w, x in self.workers.items() if x.expiry < now]:
            w = self.workers.pop(wid)
            log.warning("worker %s died (silent %.1fs); re-queueing %d request(s)",
                        w.name, self.hb_s * self.liveness, len(w.inflight))
            for key in list(w.inflight):
                self._requeue(key, f"worker {w.name} died")
        for w in self.workers.values():
            if w.inflight and not w.stuck and now - w.t_progress > self.progress_timeout:
                w.stuck = True
                self.stats.stuck_workers += 1
                log.warning("worker %s is stuck (holds %d request(s), answered none in %.1fs); "
                            "re-queueing them", w.name, len(w.inflight), now - w.t_progress)
                keys, w.inflight = list(w.inflight), set()
                for key in keys:
                    self._requeue(key, f"worker {w.name} made no progress")
        for key in [k for k, r in self.reqs.items() if now - r.t0 > self.req_timeout]:
            with contextlib.suppress(ValueError):           # not queued: held by a worker
                self.queue.remove(key)
            self._fail(key, P.UNAVAILABLE, f"no worker answered within {self.req_timeout:.0f}s "
                                           f"({len(self.workers)} worker(s) connected)")

    def _open(self, ctx):
        from . import keys
        auth = (keys.start_authenticator(ctx, {keys.CLIENTS: self.curve_clients,
                                               keys.WORKERS: self.curve_workers})
                if self.curve_secret else None)
        self.front, self.back = ctx.socket(zmq.ROUTER), ctx.socket(zmq.ROUTER)
        for s, ep, lim, role in ((self.front, self.frontend_ep, P.MAX_REQUEST_BYTES, keys.CLIENTS),
                                 (self.back, self.backend_ep, P.MAX_REPLY_BYTES, keys.WORKERS)):
            P.limit_socket(s, lim, linger_ms=0)
            if self.curve_secret:
                keys.apply_server(s, self.curve_secret, role)
            s.bind(ep)
        return auth

    def _receive(self, events) -> None:
        for sock, handler in ((self.back, self._on_worker), (self.front, self._on_client)):
            if sock in events:
                P.drain(sock, handler)

    def _poll_timeout(self, t_hb: float) -> float:
        """Sleep until the next heartbeat or progress deadline, at most 0.2 s."""
        due = [t_hb + self.hb_s] + [w.t_progress + self.progress_timeout
                                    for w in self.workers.values() if w.inflight and not w.stuck]
        return max(0.0, min(0.2, min(due) - time.monotonic()))

    def serve(self) -> int:
        ctx = zmq.Context()
        auth = self._open(ctx)
        print(f"READY broker {self.frontend_ep} {self.backend_ep}", flush=True)
        log.info("broker: clients → %s, workers → %s", self.frontend_ep, self.backend_ep)
        poller = zmq.Poller()
        poller.register(self.front, zmq.POLLIN)
        poller.register(self.back, zmq.POLLIN)
        t_hb = time.monotonic()
        try:
            while not self._stop.is_set():
                self._receive(dict(poller.poll(self._poll_timeout(t_hb) * 1e3)))
                now = time.monotonic()
                P.trim_heap()                  # after a dropped many-frame message, if one is due
                self._housekeeping(now)
                self._dispatch()
                if now - t_hb >= self.hb_s:
                    hb = P.control_frames("heartbeat")
                    for wid in self.workers:
                        self._send(self.back, [wid, b""] + hb)
                    t_hb = now
        finally:
            for key in list(self.reqs):
                self._fail(key, P.UNAVAILABLE, "broker shut down; retry later")
            self.front.close(linger=500)       # the `unavailable` answers leave, ≤ 0.5 s
            self.back.close(linger=0)
            if auth is not None:
                auth.stop()
            ctx.term()
        log.info("broker stopped (%s)", self.stats)
        return 0


def run(args) -> int:
    from ..cli import call_with_options
    b = call_with_options(Broker, args)
    signal.signal(signal.SIGTERM, b.stop)
    signal.signal(signal.SIGINT, b.stop)
    return b.serve()
