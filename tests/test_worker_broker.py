# SPDX-License-Identifier: GPL-3.0-or-later
"""Two real workers behind a real broker: kill -9 one mid-stream → every image comes back or is
reported failed (none silently lost); a restarted worker rejoins. Plus CURVE on 127.0.0.1."""
import os
import signal
import time

import numpy as np
import pytest
import zmq

from sing.worker import protocol as P
from sing.worker.client import WorkerClient, WorkerError, WorkerUnavailable
from sing.worker.keys import ClientCurve, write_keypair
from test_worker_helpers import (ep, procs, reference_image, symbols, tiny_jscc,  # noqa: F401
                                 worker_args)

HB = "0.2"


def _wait_workers(c: WorkerClient, n: int, timeout: float = 30.0) -> dict:
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        st = c.ping(timeout_s=2)
        if sum(not w["draining"] for w in st["workers"]) == n:
            return st
        time.sleep(0.1)
    raise AssertionError(f"broker never saw {n} workers: {st}")


def test_kill9_mid_stream_nothing_lost_and_rejoin(procs, tiny_jscc):
    front, back = ep(), ep()
    procs.start("broker", "--frontend", front, "--backend", back, "--heartbeat-s", HB,
                "--max-attempts", "3", "--request-timeout-s", "20")
    wargs = lambda name: worker_args(tiny_jscc[0], "--connect", back, "--heartbeat-s", HB,
                                     "--name", name, "--max-batch", "4")
    wa = procs.start(*wargs("wA"))
    procs.start(*wargs("wB"))
    model = tiny_jscc[1]
    with WorkerClient(front, timeout_s=15, retries=0, max_in_flight=256) as c:
        _wait_workers(c, 2)
        n = 120
        ys = [symbols(64, 1000 + i) for i in range(n)]
        futs = []
        for i in range(n):
            futs.append(c.submit(ys[i], 2.0, "deepjscc", {"image_id": f"k{i}"}, f"k-{i}"))
            if i == 40:
                os.kill(wa.pid, signal.SIGSTOP)   # freeze: the broker keeps wA's share in flight…
            if i == 80:
                time.sleep(0.1)
                os.kill(wa.pid, signal.SIGKILL)   # …then kill -9 with requests on it
            time.sleep(0.005)
        ok, failed = {}, {}
        for i, f in enumerate(futs):
            try:
                ok[i] = f.result(timeout=60)       # a timeout here would be silence: test fails
            except WorkerError as e:
                failed[i] = e.code
        assert len(ok) + len(failed) == n
        assert not failed, f"with wB alive every image should be retried there: {failed}"
        for i, r in ok.items():
            assert r.request_id == f"k-{i}"
            assert np.abs(r.image.astype(int) - reference_image(model, ys[i], 2.0)).max() <= 1
        st = c.ping()
        assert st["retried"] >= 1, st           # some image really was on the killed worker
        assert "wA" in {r.header["worker"] for r in ok.values()}

        procs.start(*wargs("wC"))               # a restarted worker rejoins and gets work
        _wait_workers(c, 2)
        futs = [c.submit(symbols(64, i), 0.0, "deepjscc") for i in range(64)]
        who = {f.result(timeout=30).header["worker"] for f in futs}
        assert who == {"wB", "wC"}


def test_broker_without_workers_says_unavailable(procs):
    front, back = ep(), ep()
    procs.start("broker", "--frontend", front, "--backend", back, "--request-timeout-s", "1")
    with WorkerClient(front, timeout_s=10, retries=0) as c:
        t0 = time.monotonic()
        with pytest.raises(WorkerUnavailable, match="no worker answered"):
            c.restore(symbols(64), 0.0, "deepjscc")
        assert time.monotonic() - t0 < 5
        with pytest.raises(WorkerError) as e:          # junk is refused by the broker itself
            c.restore(symbols(64), 0.0, "deepjscc", params={"rm": 1})
        assert e.value.code == P.BAD_REQUEST


def test_broker_refuses_over_budget_before_any_worker(procs):
    """The broker prices a request as the worker does (sing.methods.cost_of): over `--max-cost` it
    answers `too_expensive` at once, even with no worker to route to."""
    front, back = ep(), ep()
    procs.start("broker", "--frontend", front, "--backend", back, "--max-cost", "100")
    with WorkerClient(front, timeout_s=10, retries=0) as c:
        c.ping()                                        # connected: time the refusal, not the connect
        t0 = time.monotonic()
        with pytest.raises(WorkerError) as e:
            c.restore(symbols(64), 0.0, "sing-zero", params={"steps": 1000, "start": 1.0, "travel": [1, 100]})
        assert e.value.code == P.TOO_EXPENSIVE and "limit here is 100" in str(e.value), e.value
        assert time.monotonic() - t0 < 0.1


def test_curve_on_loopback(procs, tiny_jscc, tmp_path):
    keys = tmp_path / "keys"
    _, server_secret = write_keypair(keys, "server")
    write_keypair(keys, "client")
    write_keypair(tmp_path / "stranger", "client")
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "client.key").write_text((keys / "client.key").read_text())
    endpoint = ep()
    procs.start(*worker_args(tiny_jscc[0], "--bind", endpoint, "--curve-secret", str(server_secret),
                             "--curve-clients", str(allowed)))
    good = ClientCurve.from_files(keys / "server.key", keys / "client.key_secret")
    with WorkerClient(endpoint, timeout_s=10, curve=good) as c:
        assert c.restore(symbols(64), 0.0, "deepjscc").image.shape == (16, 16, 3)
    # no CURVE at all, the right server key with an unknown client key, a wrong server key:
    stranger = ClientCurve.from_files(keys / "server.key", tmp_path / "stranger" / "client.key_secret")
    wrong_server = ClientCurve(zmq.curve_keypair()[0], good.public, good.secret)
    for curve in (None, stranger, wrong_server):
        with WorkerClient(endpoint, timeout_s=1.0, retries=0, curve=curve) as c:
            with pytest.raises(WorkerUnavailable):
                c.restore(symbols(64), 0.0, "deepjscc")
            with pytest.raises(WorkerUnavailable):
                c.ping(timeout_s=0.5)
    # a raw plaintext socket gets nothing back either
    s = zmq.Context.instance().socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(endpoint)
    s.send_multipart([b"", b"garbage"])
    assert s.poll(1000) == 0
    s.close()


def test_dead_worker_gives_unavailable_reply_not_client_timeout(procs, tiny_jscc):
    """Timeouts configured as documented (client timeout = broker request timeout + margin): a
    request through the broker when its only worker is dead comes back as the broker's
    `unavailable` error reply (with a header), before the client would time out."""
    front, back = ep(), ep()
    t_req = 2.0
    procs.start("broker", "--frontend", front, "--backend", back, "--heartbeat-s", HB,
                "--request-timeout-s", str(t_req))
    w = procs.start(*worker_args(tiny_jscc[0], "--connect", back, "--heartbeat-s", HB))
    timeout_s = P.client_timeout_for(t_req)
    with WorkerClient(front, timeout_s=timeout_s) as c:          # default retries
        _wait_workers(c, 1)
        os.kill(w.pid, signal.SIGKILL)                            # the broker still thinks it alive
        w.wait(timeout=10)
        t0 = time.monotonic()
        with pytest.raises(WorkerUnavailable) as e:
            c.restore(symbols(64), 0.0, "deepjscc", request_id="dead-1")
        waited = time.monotonic() - t0
    h = e.value.header
    assert h.get("type") == "error" and h.get("code") == P.UNAVAILABLE and h.get("id") == "dead-1", h
    assert waited < timeout_s, waited                             # an answer, not the client's timeout


def test_worker_saying_unavailable_gets_no_more_work_until_ready(procs):
    """A worker that answers `unavailable` ("shutting down / stuck: retry elsewhere") is drained by
    the broker: its requests go to the other worker and it is not tried again (it would burn the
    request's attempts) until it says `ready`. Two scripted workers on the real broker's backend."""
    import threading
    front, back = ep(), ep()
    procs.start("broker", "--frontend", front, "--backend", back, "--heartbeat-s", HB, "--max-attempts", "3")
    ctx, stop, seen = zmq.Context.instance(), threading.Event(), {"A": [], "B": []}

    def worker(name: str, answer) -> None:
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(back)
        s.send_multipart([b""] + P.control_frames("ready", capacity=8, worker=name))
        t_hb = time.monotonic()
        while not stop.is_set():
            if time.monotonic() - t_hb > 0.1:
                s.send_multipart([b""] + P.control_frames("heartbeat", capacity=8, worker=name))
                t_hb = time.monotonic()
            if not s.poll(20):
                continue
            env, body = P.split_envelope(s.recv_multipart(), 0)
            h = P.parse_header(body[0])
            if h.get("type") != "request":
                continue
            seen[name].append(h["id"])
            s.send_multipart(env + answer(h["id"]))
        s.close()

    threads = [threading.Thread(target=worker, args=("A", lambda rid: P.error_frames(
                   P.UNAVAILABLE, "worker is shutting down; retry elsewhere", rid)), daemon=True)]
    threads[0].start()
    with WorkerClient(front, timeout_s=20, retries=0) as c:
        _wait_workers(c, 1)                                      # A first: the broker's first choice
        threads.append(threading.Thread(target=worker, args=("B", lambda rid: P.reply_frames(
            rid, np.zeros((16, 16, 3), np.uint8), worker="B")), daemon=True))
        threads[1].start()
        _wait_workers(c, 2, timeout=10)                          # B joined; A still takes work
        try:
            for j in range(6):
                assert c.restore(symbols(64), 0.0, "deepjscc", request_id=f"r{j}").image.shape == (16, 16, 3)
        finally:
            stop.set()
    assert len(seen["A"]) <= 1, seen          # told once, A got no more work
    assert len(seen["B"]) == 6, seen
