"""`sing worker`: serve decoding + restoration over ZeroMQ (protocol: docs/PROTOCOL.md).

Two threads. The I/O thread owns the socket: it validates every message (errors are replies),
answers pings, queues requests in the Batcher and sends replies and heartbeats. The compute
thread runs one batch at a time (`Engine.run`), so a long restoration never delays a
heartbeat or a ping. Continuous batching (batching.py): an idle compute thread gets a request at
once; what arrives while it is busy is batched (≤ --max-batch per group) for its next turn.
Several JSCC models: each with its own calibration/INN (engine.py: explicit or found next to
the --jscc dirs). Modes:

- `--bind tcp://127.0.0.1:5555`: a ROUTER that clients (REQ or DEALER) talk to directly;
- `--connect tcp://BROKER:5556`: a DEALER to a `sing broker` backend (ready/heartbeat/disconnect).

SIGTERM/SIGINT: stop taking work, finish what is queued (≤ --drain-s), answer it, exit 0.
"""
from __future__ import annotations

import argparse
import logging
import os
import queue
import signal
import socket
import threading
import time
import uuid

import numpy as np
import zmq

from . import protocol as P
from .batching import Batcher

log = logging.getLogger("sing.worker")


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--bind", default=None,
                   help="ROUTER endpoint for clients (default tcp://127.0.0.1:5555; a non-loopback "
                        "address needs --curve-secret)")
    g.add_argument("--connect", default=None, help="a `sing broker` backend endpoint to serve")
    p.add_argument("--jscc", nargs="+", action="extend", required=True, metavar="DIR",
                   help="DeepJSCC model directories (their model ids go on the wire)")
    p.add_argument("--prior", default=None, metavar="DIR", help="diffusion prior (SING methods)")
    p.add_argument("--calibration", nargs="+", action="extend", default=None, metavar="DIR",
                   help="SING-Zero calibration(s), one per JSCC model, matched by the model id in "
                        "their config (repeatable; DIR/calibration next to each --jscc DIR is "
                        "found without this)")
    p.add_argument("--inn", nargs="+", action="extend", default=None, metavar="DIR",
                   help="SING-INN model(s), one per JSCC model, matched by the jscc_model_id in "
                        "their config (repeatable; DIR-inn next to each --jscc DIR is found "
                        "without this)")
    p.add_argument("--no-discover", action="store_true",
                   help="do not look for DIR/calibration and DIR-inn next to the --jscc dirs")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--autocast", default=None, choices=("bf16", "fp16"),
                   help="run the prior's UNet under torch.autocast (bf16 on CPUs with AVX512-BF16, "
                   "fp16 on GPUs)")
    p.add_argument("--max-batch", type=int, default=16)
    p.add_argument("--max-wait-ms", type=float, default=0.0,
                   help="how long an IDLE worker holds a lone request for company (default 0: "
                        "continuous batching, i.e. dispatch at once when idle, batch what "
                        "arrives while busy)")
    p.add_argument("--max-queue", type=int, default=256, help="queued requests before 'busy'")
    p.add_argument("--max-cost", type=int, default=P.DEFAULT_MAX_COST, metavar="N",
                   help="refuse (too_expensive) a request costing more than N network passes "
                        "(UNet evaluations, sing.methods.cost_of; docs/methods.md)")
    p.add_argument("--heartbeat-s", type=float, default=1.0, help="heartbeat interval (broker mode)")
    p.add_argument("--liveness", type=int, default=3, help="missed heartbeats = peer dead")
    p.add_argument("--drain-s", type=float, default=30.0, help="shutdown grace for queued work")
    p.add_argument("--name", default=None, help="worker name in replies/status")
    p.add_argument("--curve-secret", default=None, metavar="FILE",
                   help="own CURVE key pair (NAME.key_secret): server key with --bind, "
                        "client key with --connect")
    p.add_argument("--curve-clients", default=None, metavar="DIR",
                   help="with --bind: admit only the client public keys (*.key) in DIR")
    p.add_argument("--curve-server-public", default=None, metavar="FILE",
                   help="with --connect: the broker's public key (server.key)")


class _Compute(threading.Thread):
    """Runs batches; hands replies back through a queue + an inproc doorbell."""

    def __init__(self, engine, ctx: zmq.Context, doorbell: str, name: str):
        super().__init__(daemon=True, name="sing-compute")
        self.engine, self.name_ = engine, name
        self.jobs: "queue.Queue[list | None]" = queue.Queue(maxsize=1)
        self.results: "queue.Queue[list]" = queue.Queue()
        self._bell = ctx.socket(zmq.PUSH)
        self._bell.connect(doorbell)

    def run(self):
        try:
            while True:
                batch = self.jobs.get()
                if batch is None:
                    return
                self.results.put(self._run(batch))
                self._bell.send(b"", zmq.NOBLOCK)
        finally:
            self._bell.close(linger=0)

    def _run(self, batch) -> list[tuple[list[bytes], list[bytes]]]:
        import torch
        from ..errors import SingError
        t0 = time.monotonic()
        reqs = [p.item[1] for p in batch]
        envs = [p.item[0] for p in batch]
        r0 = reqs[0]
        try:
            y = torch.from_numpy(np.stack([r.symbols for r in reqs]))
            snr = torch.tensor([r.snr_db for r in reqs], dtype=torch.float32)
            ids = [str(r.meta.get("image_id") or r.id) for r in reqs]
            params = dict(r0.params)
            seed = int(params.pop("seed", 0))
            x, tm = self.engine.run(r0.model, r0.method, y, snr, ids, seed, params)
            x = x.detach().float().cpu()
            if x.dim() != 4 or x.shape[0] != len(reqs) or not torch.isfinite(x).all():
                raise RuntimeError(f"restoration returned {tuple(x.shape)} with NaN/Inf or the "
                                   f"wrong batch size")
            x = x.clamp(0, 1).permute(0, 2, 3, 1).contiguous()
            imgs = ((x * 255).round().to(torch.uint8).numpy() if r0.out == "uint8"
                    else x.numpy().astype(np.float16))
        except SingError as e:
            return [(env, P.error_frames(P.BAD_REQUEST, str(e), r.id)) for env, r in zip(envs, reqs)]
        except Exception as e:   # noqa: BLE001 — a failed batch is an error reply, not a crash
            log.exception("batch of %d (%s, %s) failed", len(reqs), r0.model, r0.method)
            return [(env, P.error_frames(P.INTERNAL, f"restoration failed: {type(e).__name__}: "
                                                     f"{str(e)[:300]}", r.id))
                    for env, r in zip(envs, reqs)]
        t1 = time.monotonic()
        out = []
        for i, (env, r, p) in enumerate(zip(envs, reqs, batch)):
            out.append((env, P.reply_frames(
                r.id, imgs[i], model=r0.model, method=r.method, snr_db=r.snr_db,
                snr_source=r.snr_source, meta=r.meta, worker=self.name_, metrics={},
                timings={"queue_ms": round((t0 - p.t_arrival) * 1e3, 3),
                         "decode_ms": tm.get("decode_ms"), "restore_ms": tm.get("restore_ms"),
                         "compute_ms": round((t1 - t0) * 1e3, 3),
                         "total_ms": round((t1 - p.t_arrival) * 1e3, 3),
                         "batch_size": len(reqs)})))
        return out


class Worker:
    def __init__(self, engine, *, bind: str | None = None, connect: str | None = None,
                 max_batch: int = 16, max_wait_ms: float = 0.0, max_queue: int = 256,
                 heartbeat_s: float = 1.0, liveness: int = 3, drain_s: float = 30.0,
                 name: str | None = None, curve_secret: str | None = None,
                 curve_clients: str | None = None, curve_server_public: str | None = None):
        if (bind is None) == (connect is None):
            bind = bind or "tcp://127.0.0.1:5555"
        self.engine = engine
        self.bind, self.connect = bind, connect
        self.batcher = Batcher(max_batch, max_wait_ms / 1e3, max_queue)
        self.hb_s, self.liveness, self.drain_s = heartbeat_s, liveness, drain_s
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.curve_secret, self.curve_clients = curve_secret, curve_clients
        self.curve_server_public = curve_server_public
        if bind:
            P.check_bind(bind, curve_secret is not None)
        if connect and curve_server_public and not curve_secret:
            from ..errors import InputError
            raise InputError("--curve-server-public needs --curve-secret (this worker's own key pair)")
        self.min_routing = 1 if bind else 0
        self.ctx = zmq.Context()
        self._auth = None
        self._stop = threading.Event()
        self.busy = False
        self.stats = {"served": 0, "errors": 0, "batches": 0}
        self.t_start = time.monotonic()
        self.sock: zmq.Socket | None = None

    # ---- sockets ----
    def _open(self) -> zmq.Socket:
        from . import keys
        s = self.ctx.socket(zmq.ROUTER if self.bind else zmq.DEALER)
        s.setsockopt(zmq.LINGER, 1000)
        s.setsockopt(zmq.MAXMSGSIZE, P.MAX_REQUEST_BYTES)
        s.setsockopt(zmq.SNDHWM, 10000)
        s.setsockopt(zmq.RCVHWM, 10000)
        if self.bind:
            if self.curve_secret:
                if self._auth is None:
                    self._auth = keys.start_authenticator(self.ctx, self.curve_clients)
                keys.apply_server(s, self.curve_secret)
            s.bind(self.bind)
        else:
            if self.curve_server_public:
                keys.ClientCurve.from_files(self.curve_server_public, self.curve_secret).apply(s)
            s.setsockopt(zmq.IDENTITY, f"w-{self.name}-{uuid.uuid4().hex[:8]}".encode())
            s.connect(self.connect)
        return s

    def _send(self, env: list[bytes], body: list[bytes]) -> None:
        try:
            self.sock.send_multipart(list(env) + list(body), zmq.NOBLOCK)
        except zmq.Again:
            log.warning("reply dropped: peer not reachable / queue full")

    def _control(self, type_: str, **fields) -> None:
        fields.setdefault("capacity", min(2 * self.batcher.max_batch, self.batcher.max_queue))
        fields.setdefault("worker", self.name)
        self._send([b""], P.control_frames(type_, **fields))

    def status(self) -> dict:
        st = {"worker": self.name, "pid": os.getpid(), "queue": len(self.batcher), "busy": self.busy,
              "max_batch": self.batcher.max_batch, "max_wait_ms": self.batcher.max_wait_s * 1e3,
              "uptime_s": round(time.monotonic() - self.t_start, 3), **self.stats}
        st.update(self.engine.status())
        return st

    def stop(self, *_):
        self._stop.set()

    # ---- message handling ----
    def _handle(self, frames: list[bytes], truncated: bool) -> None:
        env, body = P.split_envelope(frames, self.min_routing)
        rid = None
        try:
            h = P.read_header(body, truncated)
            rid = P.request_id_of(h)
            t = h["type"]
            if t == "heartbeat" or t == "ready":
                return                         # from the broker: liveness noted by the caller
            if t == "disconnect":
                log.warning("broker asked to reconnect")
                self._reconnect_due = True
                return
            if t == "ping":
                self._send(env, P.control_frames("pong", id=rid, status=self.status()))
                return
            if t != "request":
                raise P.ProtocolError(P.BAD_MESSAGE, f"a worker takes request or ping, not {t}", rid)
            req = P.parse_request(h, body[1:])
            self._check(req)
            if self._stop.is_set():
                raise P.ProtocolError(P.UNAVAILABLE, "worker is shutting down; retry elsewhere", rid)
            if not self.batcher.add(req.group_key(), (env, req)):
                raise P.ProtocolError(P.BUSY, f"worker queue is full ({self.batcher.max_queue}); "
                                              f"retry later or add workers", rid)
        except P.ProtocolError as e:
            self.stats["errors"] += 1
            self._send(env, P.error_frames(e.code, str(e), e.request_id or rid))
        except Exception as e:  # noqa: BLE001
            log.exception("unexpected error handling a message")
            self.stats["errors"] += 1
            self._send(env, P.error_frames(P.INTERNAL, f"{type(e).__name__}: {str(e)[:200]}", rid))

    def _check(self, req: P.Request) -> None:
        info = self.engine.info
        if req.model is None:
            if len(info) != 1:
                raise P.ProtocolError(P.UNKNOWN_MODEL, f"this worker serves several models; name one "
                                                       f"of {sorted(info)}", req.id)
            req.model = next(iter(info))
        if req.model not in info:
            raise P.ProtocolError(P.UNKNOWN_MODEL, f"model {req.model!r} is not loaded here; known "
                                                   f"ids: {sorted(info)}", req.id)
        offered = self.engine.methods_for(req.model)
        if req.method not in offered:
            why = ("" if req.method not in self.engine.methods() else
                   f" for model {req.model} (it has no calibration/INN here)")
            raise P.ProtocolError(P.UNKNOWN_METHOD, f"method {req.method!r} is not served here{why}; "
                                                    f"available: {offered}", req.id)
        if req.k != info[req.model].k:
            raise P.ProtocolError(P.BAD_REQUEST, f"k = {req.k} but model {req.model} takes "
                                                 f"k = {info[req.model].k} symbols", req.id)
        self.engine.admit(req)

    # ---- main loop ----
    def serve(self) -> int:
        doorbell = f"inproc://sing-doorbell-{uuid.uuid4().hex}"
        bell = self.ctx.socket(zmq.PULL)
        bell.bind(doorbell)
        compute = _Compute(self.engine, self.ctx, doorbell, self.name)
        compute.start()
        self.sock = self._open()
        print(f"READY {self.name} {self.bind or self.connect}", flush=True)
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        poller.register(bell, zmq.POLLIN)
        log.info("worker %s %s %s; models %s; methods %s", self.name,
                 "bound to" if self.bind else "connected to", self.bind or self.connect,
                 sorted(self.engine.info), self.engine.methods())
        self._reconnect_due = False
        t_hb = 0.0
        t_peer = time.monotonic()
        t_stop = None
        if self.connect:
            self._control("ready")
            t_hb = time.monotonic()
        try:
            while True:
                now = time.monotonic()
                if self._stop.is_set() and t_stop is None:
                    t_stop = now
                    log.info("stopping: finishing %d queued request(s)", len(self.batcher) + self.busy)
                    if self.connect:
                        self._control("disconnect")
                if t_stop is not None and ((not self.busy and not len(self.batcher))
                                           or now - t_stop > self.drain_s):
                    for p in self.batcher.drain():
                        self._send(p.item[0], P.error_frames(P.UNAVAILABLE, "worker shut down "
                                                             "before serving this", p.item[1].id))
                    break
                timeout = 0.2
                dl = self.batcher.next_deadline()
                if dl is not None and not self.busy:
                    timeout = min(timeout, max(0.0, dl - now))
                if self.connect:
                    timeout = min(timeout, max(0.0, t_hb + self.hb_s - now))
                events = dict(poller.poll(timeout * 1e3))
                if self.sock in events:
                    for _ in range(1000):          # bounded burst, then serve others
                        try:
                            frames, trunc = P.recv_bounded(self.sock, P.MAX_FRAMES + 4, zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        t_peer = time.monotonic()
                        self._handle(frames, trunc)
                if bell in events:
                    while True:
                        try:
                            bell.recv(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                    while True:
                        try:
                            replies = compute.results.get_nowait()
                        except queue.Empty:
                            break
                        for env, body in replies:
                            self._send(env, body)
                            self.stats["served" if b'"type":"reply"' in body[0][:40] else "errors"] += 1
                        self.busy = False
                if not self.busy:
                    batch = self.batcher.ready(flush=t_stop is not None)
                    if batch:
                        self.busy = True
                        self.stats["batches"] += 1
                        compute.jobs.put(batch)
                now = time.monotonic()
                if self.connect:
                    if now - t_peer > self.hb_s * self.liveness or self._reconnect_due:
                        log.warning("broker silent for %.1fs: reconnecting", now - t_peer)
                        poller.unregister(self.sock)
                        self.sock.close(linger=0)
                        self.sock = self._open()
                        poller.register(self.sock, zmq.POLLIN)
                        self._control("ready")
                        t_peer, t_hb, self._reconnect_due = now, now, False
                    elif now - t_hb >= self.hb_s:
                        self._control("heartbeat", queue=len(self.batcher))
                        t_hb = now
        finally:
            compute.jobs.put(None)
            compute.join(timeout=5)
            bell.close(linger=0)
            self.sock.close(linger=1000)
            if self._auth is not None:
                self._auth.stop()
            self.ctx.term()
        log.info("worker %s stopped (%s)", self.name, self.stats)
        return 0


def run(args) -> int:
    from .engine import Engine
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    if args.bind is None and args.connect is None:
        args.bind = "tcp://127.0.0.1:5555"
    if args.bind:
        P.check_bind(args.bind, args.curve_secret is not None)   # before loading any model
    engine = Engine(args.jscc, args.prior, args.calibration, args.inn, args.device,
                    discover_parts=not args.no_discover, autocast=args.autocast, max_cost=args.max_cost)
    w = Worker(engine, bind=args.bind, connect=args.connect, max_batch=args.max_batch,
               max_wait_ms=args.max_wait_ms, max_queue=args.max_queue, heartbeat_s=args.heartbeat_s,
               liveness=args.liveness, drain_s=args.drain_s, name=args.name,
               curve_secret=args.curve_secret, curve_clients=args.curve_clients,
               curve_server_public=args.curve_server_public)
    signal.signal(signal.SIGTERM, w.stop)
    signal.signal(signal.SIGINT, w.stop)
    return w.serve()
