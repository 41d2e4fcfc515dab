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
"""
from __future__ import annotations

import argparse
import logging
import signal
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field

import zmq

from . import protocol as P

log = logging.getLogger("sing.broker")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--frontend", default="tcp://127.0.0.1:5555", help="endpoint clients connect to")
    p.add_argument("--backend", default="tcp://127.0.0.1:5556", help="endpoint workers connect to")
    p.add_argument("--heartbeat-s", type=float, default=1.0)
    p.add_argument("--liveness", type=int, default=3, help="missed heartbeats = worker dead")
    p.add_argument("--max-attempts", type=int, default=3, help="workers tried per request")
    p.add_argument("--request-timeout-s", type=float, default=P.BROKER_REQUEST_TIMEOUT_S,
                   help="a request unanswered this long (from its arrival here) gets an "
                        "'unavailable' error reply; clients should wait this + "
                        f"{P.CLIENT_TIMEOUT_MARGIN_S:g} s per attempt (WorkerClient default: "
                        f"{P.CLIENT_TIMEOUT_S:g} s)")
    p.add_argument("--max-queue", type=int, default=4096, help="requests held before 'busy'")
    p.add_argument("--curve-secret", default=None, metavar="FILE",
                   help="server key pair (server.key_secret) for both endpoints")
    p.add_argument("--curve-clients", default=None, metavar="DIR",
                   help="admit only these client/worker public keys (*.key)")


@dataclass
class _Worker:
    wid: bytes
    capacity: int
    expiry: float
    name: str = ""
    draining: bool = False
    inflight: set = field(default_factory=set)

    def free(self) -> int:
        return 0 if self.draining else self.capacity - len(self.inflight)


@dataclass
class _Req:
    env: list            # [client_id, b""]
    body: list           # [header, payload]
    rid: str
    t0: float
    attempts: int = 0
    worker: bytes | None = None


class Broker:
    def __init__(self, frontend: str, backend: str, heartbeat_s: float = 1.0, liveness: int = 3,
                 max_attempts: int = 3, request_timeout_s: float = P.BROKER_REQUEST_TIMEOUT_S, max_queue: int = 4096,
                 curve_secret: str | None = None, curve_clients: str | None = None):
        P.check_bind(frontend, curve_secret is not None)
        P.check_bind(backend, curve_secret is not None)
        self.frontend_ep, self.backend_ep = frontend, backend
        self.hb_s, self.liveness = heartbeat_s, liveness
        self.max_attempts, self.req_timeout, self.max_queue = max_attempts, request_timeout_s, max_queue
        self.curve_secret, self.curve_clients = curve_secret, curve_clients
        self.workers: "OrderedDict[bytes, _Worker]" = OrderedDict()
        self.reqs: dict[tuple[bytes, str], _Req] = {}
        self.queue: deque = deque()
        self.stats = {"served": 0, "failed": 0, "retried": 0, "duplicates_dropped": 0, "rejected": 0}
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
        self.stats["failed"] += 1
        self._send(self.front, r.env + P.error_frames(code, message, r.rid))

    def status(self) -> dict:
        return {"broker": True, "queued": len(self.queue), "inflight": len(self.reqs) - len(self.queue),
                "workers": [{"name": w.name, "capacity": w.capacity, "inflight": len(w.inflight),
                             "draining": w.draining} for w in self.workers.values()], **self.stats}

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
            P.parse_request(h, body[1:])           # full validation: junk never reaches a worker
            key = (env[0], rid)
            if key in self.reqs:
                self.stats["duplicates_dropped"] += 1
                return                              # a client re-send of a request in progress
            if len(self.reqs) >= self.max_queue:
                raise P.ProtocolError(P.BUSY, f"broker holds {self.max_queue} requests; retry later", rid)
            self.reqs[key] = _Req(env, body, rid, time.monotonic())
            self.queue.append(key)
        except P.ProtocolError as e:
            self.stats["rejected"] += 1
            self._send(self.front, env + P.error_frames(e.code, str(e), e.request_id or rid))

    # ---- backend ----
    def _on_worker(self, frames, truncated) -> None:
        if len(frames) < 2:
            return
        wid, now = frames[0], time.monotonic()
        w = self.workers.get(wid)
        if w is not None:
            w.expiry = now + self.hb_s * self.liveness
        if frames[1] == b"":                                   # control: [wid, b"", header]
            try:
                h = P.parse_header(frames[2]) if len(frames) > 2 else {}
            except P.ProtocolError:
                return
            t = h.get("type")
            cap = h.get("capacity")
            cap = cap if isinstance(cap, int) and not isinstance(cap, bool) and 1 <= cap <= 4096 else 1
            if t in ("ready", "heartbeat"):
                if w is None:
                    w = self.workers[wid] = _Worker(wid, cap, now + self.hb_s * self.liveness,
                                                    str(h.get("worker", ""))[:64])
                    log.info("worker %s joined (capacity %d)", w.name, cap)
                elif t == "ready":
                    w.capacity, w.draining = cap, False
            elif t == "disconnect" and w is not None:
                log.info("worker %s is draining", w.name)
                w.draining = True
            return
        env, body = P.split_envelope(frames[1:], 1)            # reply: [wid, client, b"", header…]
        if not body:
            return
        try:
            h = P.parse_header(body[0])
        except P.ProtocolError:
            return
        key = (env[0], P.request_id_of(h))
        r = self.reqs.get(key)
        if r is None:
            self.stats["duplicates_dropped"] += 1
            return
        if w is not None:
            w.inflight.discard(key)
        if r.worker is not None and r.worker in self.workers:
            self.workers[r.worker].inflight.discard(key)
        if h.get("type") == "error" and h.get("code") in (P.BUSY, P.UNAVAILABLE):
            self._requeue(key, f"worker said {h.get('code')}")          # try another worker
            return
        del self.reqs[key]
        if h.get("type") == "reply":
            self.stats["served"] += 1
        self._send(self.front, env + body)

    def _requeue(self, key, why: str) -> None:
        r = self.reqs.get(key)
        if r is None:
            return
        r.worker = None
        if r.attempts >= self.max_attempts:
            self._fail(key, P.UNAVAILABLE, f"image {r.rid} could not be restored: {why}, "
                                           f"{r.attempts} worker(s) tried")
            return
        self.stats["retried"] += 1
        self.queue.appendleft(key)

    def _dispatch(self) -> None:
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
            best.inflight.add(key)
            self._send(self.back, [best.wid] + r.env + r.body)

    def _housekeeping(self, now: float) -> None:
        for wid in [w for w, x in self.workers.items() if x.expiry < now]:
            w = self.workers.pop(wid)
            log.warning("worker %s died (silent %.1fs); re-queueing %d request(s)",
                        w.name, self.hb_s * self.liveness, len(w.inflight))
            for key in list(w.inflight):
                self._requeue(key, f"worker {w.name} died")
        for key in [k for k, r in self.reqs.items() if now - r.t0 > self.req_timeout]:
            try:
                self.queue.remove(key)
            except ValueError:
                pass
            self._fail(key, P.UNAVAILABLE, f"no worker answered within {self.req_timeout:.0f}s "
                                           f"({len(self.workers)} worker(s) connected)")

    def serve(self) -> int:
        from . import keys
        ctx = zmq.Context()
        auth = keys.start_authenticator(ctx, self.curve_clients) if self.curve_secret else None
        self.front, self.back = ctx.socket(zmq.ROUTER), ctx.socket(zmq.ROUTER)
        for s, ep, lim in ((self.front, self.frontend_ep, P.MAX_REQUEST_BYTES),
                           (self.back, self.backend_ep, P.MAX_REPLY_BYTES)):
            s.setsockopt(zmq.LINGER, 1000)
            s.setsockopt(zmq.MAXMSGSIZE, lim)
            s.setsockopt(zmq.SNDHWM, 10000)
            s.setsockopt(zmq.RCVHWM, 10000)
            if self.curve_secret:
                keys.apply_server(s, self.curve_secret)
            s.bind(ep)
        print(f"READY broker {self.frontend_ep} {self.backend_ep}", flush=True)
        log.info("broker: clients → %s, workers → %s", self.frontend_ep, self.backend_ep)
        poller = zmq.Poller()
        poller.register(self.front, zmq.POLLIN)
        poller.register(self.back, zmq.POLLIN)
        t_hb = time.monotonic()
        try:
            while not self._stop.is_set():
                events = dict(poller.poll(max(0.0, min(0.2, t_hb + self.hb_s - time.monotonic())) * 1e3))
                for sock, handler in ((self.back, self._on_worker), (self.front, self._on_client)):
                    if sock in events:
                        for _ in range(1000):
                            try:
                                frames, trunc = P.recv_bounded(sock, P.MAX_FRAMES + 4, zmq.NOBLOCK)
                            except zmq.Again:
                                break
                            handler(frames, trunc)
                now = time.monotonic()
                self._housekeeping(now)
                self._dispatch()
                if now - t_hb >= self.hb_s:
                    hb = P.control_frames("heartbeat")
                    for wid in self.workers:
                        self._send(self.back, [wid, b""] + hb)
                    t_hb = now
        finally:
            for key in list(self.reqs):
                self._fail(key, P.UNAVAILABLE, "broker shut down")
            self.front.close(linger=500)
            self.back.close(linger=0)
            if auth is not None:
                auth.stop()
            ctx.term()
        log.info("broker stopped (%s)", self.stats)
        return 0


def run(args) -> int:
    b = Broker(args.frontend, args.backend, args.heartbeat_s, args.liveness, args.max_attempts,
               args.request_timeout_s, args.max_queue, args.curve_secret, args.curve_clients)
    signal.signal(signal.SIGTERM, b.stop)
    signal.signal(signal.SIGINT, b.stop)
    return b.serve()
