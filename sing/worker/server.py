# SPDX-License-Identifier: GPL-3.0-or-later
"""`sing worker`: serve decoding + restoration over ZeroMQ (protocol: docs/PROTOCOL.md).

Two threads. The I/O thread owns the socket: it validates every message (errors are replies),
answers pings, queues requests in the Batcher and sends replies and heartbeats. The compute thread
runs one batch at a time (`Engine.run`), so a long restoration never delays a heartbeat or a ping;
and since a heartbeat says nothing about progress, the I/O thread watches the running batch: one
running longer than --stuck-s is reported, its requests are answered `unavailable` (a broker
re-queues them elsewhere) and the worker takes no work until it is back. Continuous batching
(batching.py): an idle compute thread gets a request at once; what arrives while it is busy is
batched (≤ --max-batch per group) for its next turn. Several JSCC models: each with its own
calibration/INN (engine.py: explicit or found next to the --jscc dirs). Modes:

- `--bind tcp://127.0.0.1:5555`: a ROUTER that clients (REQ or DEALER) talk to directly;
- `--connect tcp://BROKER:5556`: a DEALER to a `sing broker` backend (ready/heartbeat/disconnect).

SIGTERM/SIGINT: stop taking work, answer what is queued `unavailable` at once, give the running
batch --drain-s (default 0.5 s) to finish, answer it `unavailable` otherwise, exit 0 (within 2 s).
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import queue
import signal
import socket
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass

import numpy as np
import zmq

from ..errors import InputError, SingError
from . import protocol as P
from .batching import Batcher

log = logging.getLogger("sing.worker")
DEFAULT_BIND = P.ENDPOINT     # where a worker given neither --bind nor --connect listens


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--bind", default=None,
                   help=f"ROUTER endpoint for clients (default {DEFAULT_BIND}; a non-loopback "
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
    p.add_argument("--drain-s", type=float, default=0.5,
                   help="on SIGTERM/SIGINT, how long the running batch may finish before its "
                        "requests are answered `unavailable` (queued ones are answered at once)")
    p.add_argument("--stuck-s", type=float, default=30.0,
                   help="a batch running longer than this is a stuck compute: its requests are "
                        "answered `unavailable` (retry elsewhere) and no work is taken until it ends")
    p.add_argument("--name", default=None, help="worker name in replies/status")
    p.add_argument("--curve-secret", default=None, metavar="FILE",
                   help="own CURVE key pair: server.key_secret with --bind, a worker key pair "
                        "(worker.key_secret from `sing keys`) with --connect")
    p.add_argument("--curve-clients", default=None, metavar="DIR",
                   help="with --bind: admit only the client public keys (*.key) in DIR "
                        "(`sing keys` writes DIR/clients)")
    p.add_argument("--curve-server-public", default=None, metavar="FILE",
                   help="with --connect: the broker's public key (server.key)")


# ---- typed records -----------------------------------------------------------------------------
@dataclass
class Job:
    """One validated request and the envelope its answer goes back along."""
    env: list[bytes]
    req: P.Request


@dataclass
class Outcome:
    """One answer built by the compute thread: an image reply (ok) or an error reply."""
    env: list[bytes]
    body: list[bytes]
    ok: bool


@dataclass
class Running:
    """The batch the compute thread is working on."""
    number: int
    batch: list                       # batching.Pending, each holding a Job
    t_start: float
    abandoned: bool = False           # answered `unavailable` already (stuck or shutting down)


@dataclass
class WorkerStats:
    """Counters in the pong; each counts what its name says, once."""
    served: int = 0                   # image replies sent
    errors: int = 0                   # error replies sent (refused messages, failed restorations)
    dropped: int = 0                  # answers that could not be handed to ZeroMQ (peer gone)
    batches: int = 0                  # batches started
    stuck_batches: int = 0            # batches abandoned after --stuck-s without finishing
    late_results: int = 0             # results of abandoned batches, discarded


def _test_hang_s(batch_no: int) -> float:
    """Test hook (chaos suite): SING_WORKER_TEST_HANG_S=X makes every batch from the
    SING_WORKER_TEST_HANG_AFTER-th (default 0) on sleep X s first, i.e. a hung compute thread."""
    x = os.environ.get("SING_WORKER_TEST_HANG_S")
    return float(x) if x and batch_no >= int(os.environ.get("SING_WORKER_TEST_HANG_AFTER", "0")) else 0.0


class _Compute(threading.Thread):
    """Runs batches; hands answers back through a queue and a pipe doorbell. It owns no ZeroMQ
    socket, so a hung compute thread never blocks the context's shutdown."""

    def __init__(self, engine, name: str):
        super().__init__(daemon=True, name="sing-compute")
        self.engine, self.name_ = engine, name
        self.jobs: "queue.Queue[Running | None]" = queue.Queue(maxsize=1)
        self.results: "queue.Queue[tuple[int, list[Outcome]]]" = queue.Queue()
        self.bell_r, self._bell_w = os.pipe()
        os.set_blocking(self.bell_r, False)
        os.set_blocking(self._bell_w, False)

    def run(self):
        while True:
            job = self.jobs.get()
            if job is None:
                return
            self.results.put((job.number, self._run(job)))
            self.ring()

    def ring(self) -> None:
        with contextlib.suppress(OSError):   # doorbell full (the I/O thread reads it) or closed
            os.write(self._bell_w, b"!")

    def _run(self, job: Running) -> list[Outcome]:
        import torch
        hang = _test_hang_s(job.number)
        if hang:
            time.sleep(hang)
        t0 = time.monotonic()
        jobs: list[Job] = [p.item for p in job.batch]
        reqs = [j.req for j in jobs]
        r0 = reqs[0]
        try:
            y = torch.from_numpy(np.stack([r.symbols for r in reqs]))
            snr = torch.tensor([r.snr_db for r in reqs], dtype=torch.float32)
            ids = [str(r.meta.get("image_id") or r.id) for r in reqs]
            params = dict(r0.params)
            seed = int(params.pop("seed", 0))
            x, tm = self.engine.run(r0.model, r0.method, y, snr, ids, seed, params, r0.shape)
            x = x.detach().float().cpu()
            if x.dim() != 4 or x.shape[0] != len(reqs) or not torch.isfinite(x).all():
                raise RuntimeError(f"restoration returned {tuple(x.shape)} with NaN/Inf or the "
                                   f"wrong batch size")
            x = x.clamp(0, 1).permute(0, 2, 3, 1).contiguous()
            imgs = ((x * 255).round().to(torch.uint8).numpy() if r0.out == "uint8"
                    else x.numpy().astype(np.float16))
        except SingError as e:
            return [Outcome(j.env, P.error_frames(P.BAD_REQUEST, str(e), j.req.id), False) for j in jobs]
        except Exception as e:   # noqa: BLE001 — a failed batch is an error reply, not a crash
            log.exception("batch of %d (%s, %s) failed", len(reqs), r0.model, r0.method)
            return [Outcome(j.env, P.error_frames(P.INTERNAL, f"restoration failed: {type(e).__name__}: "
                                                              f"{str(e)[:300]}", j.req.id), False)
                    for j in jobs]
        t1 = time.monotonic()
        return [self._reply(j, imgs[i], tm, len(reqs), p.t_arrival, t0, t1)
                for i, (j, p) in enumerate(zip(jobs, job.batch))]

    def _reply(self, j: Job, img, tm: dict, n: int, t_arrival: float, t0: float, t1: float) -> Outcome:
        r = j.req
        body = P.reply_frames(
            r.id, img, model=r.model, method=r.method, snr_db=r.snr_db, snr_source=r.snr_source,
            meta=r.meta, worker=self.name_, metrics={},
            timings={"queue_ms": round((t0 - t_arrival) * 1e3, 3), "decode_ms": tm.get("decode_ms"),
                     "restore_ms": tm.get("restore_ms"), "compute_ms": round((t1 - t0) * 1e3, 3),
                     "total_ms": round((t1 - t_arrival) * 1e3, 3), "batch_size": n})
        if len(body[0]) > P.MAX_HEADER_BYTES:        # a conforming client would drop it: say so
            return Outcome(j.env, P.error_frames(P.TOO_LARGE, f"the reply header would be "
                                                 f"{len(body[0])} bytes (limit {P.MAX_HEADER_BYTES}): "
                                                 f"shorten meta", r.id), False)
        return Outcome(j.env, body, True)


class Worker:
    def __init__(self, engine, *, bind: str | None = None, connect: str | None = None,
                 max_batch: int = 16, max_wait_ms: float = 0.0, max_queue: int = 256,
                 heartbeat_s: float = 1.0, liveness: int = 3, drain_s: float = 0.5,
                 stuck_s: float = 30.0, name: str | None = None, curve_secret: str | None = None,
                 curve_clients: str | None = None, curve_server_public: str | None = None):
        if (bind is None) == (connect is None):
            bind = bind or DEFAULT_BIND
        self.engine = engine
        self.bind, self.connect = bind, connect
        self.batcher = Batcher(max_batch, max_wait_ms / 1e3, max_queue)
        self.hb_s, self.liveness, self.drain_s, self.stuck_s = heartbeat_s, liveness, drain_s, stuck_s
        self.name = P.safe_name(name or f"{socket.gethostname()}:{os.getpid()}")
        self.curve_secret, self.curve_clients = curve_secret, curve_clients
        self.curve_server_public = curve_server_public
        if bind:
            P.check_bind(bind, curve_secret is not None)
        if connect and curve_server_public and not curve_secret:
            raise InputError("--curve-server-public needs --curve-secret (this worker's own key pair, "
                             "e.g. worker.key_secret from `sing keys`)")
        self.min_routing = 1 if bind else 0
        self.ctx = zmq.Context()
        self._auth = None
        self._stop = threading.Event()
        self.running: Running | None = None
        self.stats = WorkerStats()
        self.t_start = time.monotonic()
        self.sock: zmq.Socket | None = None
        self.compute: _Compute | None = None
        self._reconnect_due = False
        self._n_batches = 0

    @property
    def busy(self) -> bool:
        return self.running is not None

    @property
    def stuck(self) -> bool:
        return self.running is not None and self.running.abandoned and not self._stop.is_set()

    # ---- sockets ----
    def _open(self) -> zmq.Socket:
        from . import keys
        s = self.ctx.socket(zmq.ROUTER if self.bind else zmq.DEALER)
        P.limit_socket(s, P.MAX_REQUEST_BYTES, linger_ms=0)
        if self.bind:
            if self.curve_secret:              # a bound socket is opened once (only --connect reopens)
                self._auth = keys.start_authenticator(self.ctx, {keys.CLIENTS: self.curve_clients})
                keys.apply_server(s, self.curve_secret, keys.CLIENTS)
            s.bind(self.bind)
        else:
            if self.curve_server_public:
                keys.ClientCurve.from_files(self.curve_server_public, self.curve_secret).apply(s)
            s.setsockopt(zmq.IDENTITY, f"w-{self.name}-{uuid.uuid4().hex[:8]}".encode())
            s.connect(self.connect)
        return s

    def _send(self, env: list[bytes], body: list[bytes]) -> bool:
        try:
            self.sock.send_multipart(list(env) + list(body), zmq.NOBLOCK)
            return True
        except zmq.ZMQError as e:       # Again: queue full; EHOSTUNREACH: peer gone
            self.stats.dropped += 1
            log.warning("answer dropped (%s): peer not reachable / queue full", type(e).__name__)
            return False

    def _answer(self, o: Outcome) -> None:
        if self._send(o.env, o.body):
            if o.ok:
                self.stats.served += 1
            else:
                self.stats.errors += 1

    def _refuse(self, env: list[bytes], code: str, message: str, rid: str | None) -> None:
        self._answer(Outcome(env, P.error_frames(code, message, rid), False))

    def _control(self, type_: str, **fields) -> None:
        fields.setdefault("capacity", min(2 * self.batcher.max_batch, self.batcher.max_queue))
        fields.setdefault("worker", self.name)
        self._send([b""], P.control_frames(type_, **fields))

    def status(self) -> dict:
        return {"worker": self.name, "pid": os.getpid(), "queue": len(self.batcher), "busy": self.busy,
                "stuck": self.stuck, "max_batch": self.batcher.max_batch,
                "max_wait_ms": self.batcher.max_wait_s * 1e3,
                "uptime_s": round(time.monotonic() - self.t_start, 3), **asdict(self.stats),
                **self.engine.status()}

    def stop(self, *_):
        self._stop.set()
        if self.compute is not None:           # wake the I/O thread's poll at once
            self.compute.ring()

    # ---- message handling ----
    def _handle(self, frames: list[bytes], truncated: bool) -> None:
        self._t_peer = time.monotonic()        # any message proves the peer (broker) alive
        env, body = P.split_envelope(frames, self.min_routing)
        rid = None
        try:
            h = P.read_header(body, truncated)
            rid = P.request_id_of(h)
            t = h["type"]
            if t == "heartbeat" or t == "ready":
                return                         # from the broker: liveness noted above
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
            if self.stuck:
                raise P.ProtocolError(P.UNAVAILABLE, f"worker's compute is stuck (no batch finished "
                                                     f"in {self.stuck_s:g} s); retry elsewhere", rid)
            if not self.batcher.add(req.group_key(), Job(env, req)):
                raise P.ProtocolError(P.BUSY, f"worker queue is full ({self.batcher.max_queue}); "
                                              f"retry later or add workers", rid)
        except P.ProtocolError as e:
            self._refuse(env, e.code, str(e), e.request_id or rid)
        except Exception as e:  # noqa: BLE001
            log.exception("unexpected error handling a message")
            self._refuse(env, P.INTERNAL, f"{type(e).__name__}: {str(e)[:200]}", rid)

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
        want = self.engine.k_for(req.model, req.shape)
        if req.k != want:
            size = "its own size" if req.shape is None else "%d×%d" % req.shape
            raise P.ProtocolError(P.BAD_REQUEST, f"k = {req.k} but model {req.model} takes "
                                                 f"k = {want} symbols for an image of {size}", req.id)
        self.engine.admit(req)

    # ---- the pieces of the main loop ----
    def _poll_timeout(self, now: float) -> float:
        timeout = 0.2
        dl = self.batcher.next_deadline()
        if dl is not None and not self.busy:
            timeout = min(timeout, max(0.0, dl - now))
        if self.connect:
            timeout = min(timeout, max(0.0, self._t_hb + self.hb_s - now))
        return timeout

    def _collect_results(self) -> None:
        with contextlib.suppress(BlockingIOError):          # empty the doorbell
            while os.read(self.compute.bell_r, 4096):
                pass
        while True:
            try:
                number, outcomes = self.compute.results.get_nowait()
            except queue.Empty:
                return
            run = self.running
            self.running = None
            if run is None or run.number != number or run.abandoned:
                self.stats.late_results += 1
                log.warning("batch %d finished after it was given up (%.1f s): its %d answer(s) "
                            "were sent as `unavailable` already", number,
                            time.monotonic() - (run.t_start if run else 0.0), len(outcomes))
                if self.connect and not self._stop.is_set():
                    self._control("ready")     # progress again: take work
                continue
            for o in outcomes:
                self._answer(o)

    def _give_up(self, why_running: str | None, why_queued: str) -> None:
        """Answer `unavailable` now: the running batch, unless `why_running` is None (once; its late
        results are discarded), then every queued request."""
        run, todo = self.running, []
        if why_running and run is not None and not run.abandoned:
            run.abandoned = True
            todo = [(p, why_running) for p in run.batch]
        for p, why in todo + [(p, why_queued) for p in self.batcher.drain()]:
            self._refuse(p.item.env, P.UNAVAILABLE, why, p.item.req.id)

    def _watchdog(self, now: float) -> None:
        """Liveness from progress: a batch running longer than --stuck-s is reported and its
        requests (and those queued behind it) answered `unavailable`, so a broker retries them
        on another worker; until the compute thread comes back this worker takes no work."""
        run = self.running
        if run is None or run.abandoned or now - run.t_start <= self.stuck_s:
            return
        self.stats.stuck_batches += 1
        log.error("compute stuck: batch %d (%d request(s), %s %s) has run %.1f s without finishing "
                  "(--stuck-s %g); answering its requests `unavailable`", run.number, len(run.batch),
                  run.batch[0].item.req.model, run.batch[0].item.req.method, now - run.t_start,
                  self.stuck_s)
        why = f"worker's compute is stuck (no progress in {self.stuck_s:g} s); retry elsewhere"
        self._give_up(why, why)
        if self.connect:
            self._control("disconnect")        # no new work until the compute thread is back

    def _dispatch(self) -> None:
        if self.busy:
            return
        batch = self.batcher.ready()
        if batch:
            self.running = Running(self._n_batches, batch, time.monotonic())
            self._n_batches += 1
            self.stats.batches += 1
            self.compute.jobs.put(self.running)

    def _keep_alive(self, now: float, poller: zmq.Poller) -> None:
        """Broker mode: heartbeats out; a silent broker (or its `disconnect`) → reconnect."""
        if now - self._t_peer > self.hb_s * self.liveness or self._reconnect_due:
            log.warning("broker silent for %.1fs: reconnecting", now - self._t_peer)
            poller.unregister(self.sock)
            self.sock.close(linger=0)
            self.sock = self._open()
            poller.register(self.sock, zmq.POLLIN)
            self._control("disconnect" if self.stuck else "ready")
            self._t_peer, self._t_hb, self._reconnect_due = now, now, False
        elif now - self._t_hb >= self.hb_s:
            self._control("heartbeat", queue=len(self.batcher), stuck=self.stuck)
            self._t_hb = now

    def _begin_shutdown(self) -> float:
        """SIGTERM/SIGINT: no new work; what is queued is answered `unavailable` at once (a
        broker retries it elsewhere); the running batch gets --drain-s to finish."""
        log.info("stopping: %d queued request(s) answered `unavailable`; the running batch "
                 "(%d) gets %.1f s", len(self.batcher), len(self.running.batch) if self.running else 0,
                 self.drain_s)
        if self.connect:
            self._control("disconnect")
        self._give_up(None, "worker shut down before serving this; retry elsewhere")
        return time.monotonic()

    # ---- main loop ----
    def serve(self) -> int:
        self.compute = _Compute(self.engine, self.name)
        self.compute.start()
        self.sock = self._open()
        print(f"READY {self.name} {self.bind or self.connect}", flush=True)
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        poller.register(self.compute.bell_r, zmq.POLLIN)
        log.info("worker %s %s %s; models %s; methods %s", self.name,
                 "bound to" if self.bind else "connected to", self.bind or self.connect,
                 sorted(self.engine.info), self.engine.methods())
        self._t_hb = self._t_peer = time.monotonic()
        t_stop = None
        if self.connect:
            self._control("ready")
        try:
            while True:
                now = time.monotonic()
                if self._stop.is_set() and t_stop is None:
                    t_stop = self._begin_shutdown()
                if t_stop is not None and (not self.busy or self.running.abandoned
                                           or now - t_stop > self.drain_s):
                    self._give_up("worker shut down during this batch; retry elsewhere",
                                  "worker shut down before serving this; retry elsewhere")
                    break
                events = dict(poller.poll(self._poll_timeout(now) * 1e3))
                if self.sock in events:
                    P.drain(self.sock, self._handle)   # bounded burst, then serve others
                if self.compute.bell_r in events:
                    self._collect_results()
                now = time.monotonic()
                P.trim_heap()                  # after a dropped many-frame message, if one is due
                self._watchdog(now)
                if t_stop is None:
                    self._dispatch()
                if self.connect and t_stop is None:
                    self._keep_alive(now, poller)
        finally:
            with contextlib.suppress(queue.Full):
                self.compute.jobs.put_nowait(None)
            self.compute.join(timeout=0.2)
            self.sock.close(linger=500)        # the `unavailable` answers leave; a dead peer
            if self._auth is not None:         # cannot hold the exit longer than this
                self._auth.stop()
            self.ctx.term()
        log.info("worker %s stopped (%s)", self.name, self.stats)
        return 0


def run(args) -> int:
    from ..cli import call_with_options
    from .engine import Engine
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    bind = args.bind or (DEFAULT_BIND if args.connect is None else None)    # the one Worker will use
    if bind:
        P.check_bind(bind, args.curve_secret is not None)   # before loading any model
    engine = Engine(args.jscc, args.prior, args.calibration, args.inn, args.device,
                    discover_parts=not args.no_discover, autocast=args.autocast, max_cost=args.max_cost)
    w = call_with_options(Worker, args, engine)
    signal.signal(signal.SIGTERM, w.stop)
    signal.signal(signal.SIGINT, w.stop)
    rc = w.serve()
    # Every request is answered and the sockets are closed: exit now. An interpreter shutdown
    # would wait for a batch still computing (its requests were answered `unavailable`) and
    # spends seconds tearing down torch, past the 2 s a supervisor may allow after SIGTERM.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)
