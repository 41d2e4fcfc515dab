# SPDX-License-Identifier: GPL-3.0-or-later
"""The worker and broker against hostile and faulty peers, each over real processes and loopback
sockets: routing depth, oversized meta echoes, a stuck compute thread, role confusion with CURVE
keys, many-frame messages, shutdown with requests in flight, strict types, log injection and the
counters in the pong."""
import json
import os
import signal
import subprocess
import time

import numpy as np
import pytest
import zmq

from sing.worker import protocol as P
from sing.worker.client import WorkerClient, WorkerError, WorkerUnavailable
from sing.worker.keys import ClientCurve
from test_worker_helpers import (PY, REPO, ep, procs, raw_dealer, request_header, rss,  # noqa: F401
                                 symbols, tiny_jscc, tiny_prior_dir, worker_args)

HB = "0.2"


def _wait_workers(c: WorkerClient, n: int, timeout: float = 30.0) -> dict:
    t_end = time.monotonic() + timeout
    st = {}
    while time.monotonic() < t_end:
        st = c.ping(timeout_s=2)
        if sum(not w["draining"] and not w.get("stuck") for w in st["workers"]) == n:
            return st
        time.sleep(0.1)
    raise AssertionError(f"broker never saw {n} workers: {st}")


def _answer(s) -> tuple[list[bytes], dict]:
    """The next message on a raw DEALER: (frames, header)."""
    frames = s.recv_multipart()
    i = frames.index(b"")
    return frames, json.loads(frames[i + 1])


def _broker_and_worker(procs, tiny_jscc, *bargs, wargs=(), wenv=None):
    front, back = ep(), ep()
    b = procs.start("broker", "--frontend", front, "--backend", back, "--heartbeat-s", HB, *bargs)
    w = procs.start(*worker_args(tiny_jscc[0], "--connect", back, "--heartbeat-s", HB, *wargs),
                    env=wenv)
    return front, back, b, w


# ---- routing depth: the broker and the worker accept the same envelopes ------------------------
def test_routing_depth_is_the_same_at_broker_and_worker(procs, tiny_jscc):
    front, _, _, _ = _broker_and_worker(procs, tiny_jscc, "--request-timeout-s", "20")
    with WorkerClient(front, timeout_s=10) as c:
        _wait_workers(c, 1)
    s = raw_dealer(front, timeout_ms=3000)
    payload = symbols(64).tobytes()
    hdr = lambda rid: json.dumps(request_header(rid=rid)).encode()
    extra = getattr(P, "MAX_ROUTING", 4) - 1   # the broker's ROUTER adds the client id
    t0 = time.monotonic()
    for i in range(10):                       # one routing frame too deep: refused at once
        s.send_multipart([b"r%d" % j for j in range(extra + 1)] + [b"", hdr(f"deep-{i}"), payload])
    for i in range(10):
        frames, h = _answer(s)
        assert h["type"] == "error" and h["code"] == P.BAD_MESSAGE and "routing" in h["message"], h
    assert time.monotonic() - t0 < 2.0
    # the deepest accepted envelope is served and its reply comes back along the same route
    s.send_multipart([b"r%d" % j for j in range(extra)] + [b"", hdr("max-depth"), payload])
    frames, h = _answer(s)
    assert h["type"] == "reply" and h["id"] == "max-depth", h
    assert frames[:extra] == [b"r%d" % j for j in range(extra)]
    s.close()
    with WorkerClient(front, timeout_s=10) as c:       # normal traffic was never held up
        t0 = time.monotonic()
        futs = [c.submit(symbols(64, i), 0.0, "deepjscc") for i in range(5)]
        assert all(f.result().image.shape == (16, 16, 3) for f in futs)
        assert time.monotonic() - t0 < 5.0


# ---- meta echo: bounded integers; a reply header never exceeds the header limit -----------------
def test_huge_meta_integers_are_refused_and_reply_headers_fit(procs, tiny_jscc):
    endpoint = ep()
    procs.start(*worker_args(tiny_jscc[0], "--bind", endpoint))
    s = raw_dealer(endpoint)
    payload = symbols(64).tobytes()
    big = int("9" * 3900)
    h = request_header(rid="huge-meta", meta={"k": big, "height": big, "width": big, "channels": big})
    frame = json.dumps(h).encode()
    assert len(frame) <= P.MAX_HEADER_BYTES            # a legal-sized request
    s.send_multipart([b"", frame, payload])
    frames, rh = _answer(s)
    assert len(frames[1]) <= P.MAX_HEADER_BYTES, len(frames[1])
    assert rh["type"] == "error" and rh["code"] == P.BAD_MESSAGE and "digits" in rh["message"], rh
    # the largest meta that is accepted still gives a reply header within the limit
    worst = "\U0001F600" * P.MAX_ID_LEN                 # 12 bytes per character once JSON-escaped
    meta = {"image_id": worst, "bcr": worst, "model_id": worst, "snr_source": worst,
            "k": P.MAX_META_INT, "height": 16, "width": 16,      # the image size: validated (the
            "channels": 3, "snr_db": -1.2345678901234567e-300}   # tiny model's 16×16, k = 64)
    s.send_multipart([b"", json.dumps(request_header(rid="worst-meta", meta=meta)).encode(), payload])
    frames, rh = _answer(s)
    assert rh["type"] == "reply" and len(frames[1]) <= P.MAX_HEADER_BYTES, (rh.get("type"), len(frames[1]))
    assert rh["meta"]["image_id"] == worst
    s.send_multipart([b"", json.dumps(request_header(rid="meta-too-big", meta={"k": 2**40})).encode(),
                      payload])
    assert _answer(s)[1]["code"] == P.BAD_REQUEST
    s.close()


# ---- stuck compute: reported by the worker, routed around by the broker -------------------------
def test_worker_reports_a_stuck_compute(procs, tiny_jscc):
    endpoint = ep()
    procs.start(*worker_args(tiny_jscc[0], "--bind", endpoint, "--stuck-s", "1"),
                env={"SING_WORKER_TEST_HANG_S": "60"})
    with WorkerClient(endpoint, timeout_s=10, retries=0) as c:
        t0 = time.monotonic()
        futs = [c.submit(symbols(64, i), 0.0, "deepjscc", request_id=f"s-{i}") for i in range(3)]
        for f in futs:
            with pytest.raises(WorkerUnavailable, match="stuck"):
                f.result()
        assert time.monotonic() - t0 < 3.0
        st = c.ping()
        assert st["stuck"] is True and st["busy"] is True and st["errors"] == 3 and st["served"] == 0
        with pytest.raises(WorkerUnavailable, match="stuck"):     # no new work meanwhile
            c.restore(symbols(64), 0.0, "deepjscc")


def test_broker_moves_requests_off_a_worker_without_progress(procs, tiny_jscc):
    front, back = ep(), ep()
    procs.start("broker", "--frontend", front, "--backend", back, "--heartbeat-s", HB,
                "--progress-timeout-s", "1.5", "--request-timeout-s", "20")
    wargs = lambda name: worker_args(tiny_jscc[0], "--connect", back, "--heartbeat-s", HB,
                                     "--name", name, "--stuck-s", "1000")
    procs.start(*wargs("hung"), env={"SING_WORKER_TEST_HANG_S": "600"})   # heartbeats on
    procs.start(*wargs("ok"))
    with WorkerClient(front, timeout_s=15, retries=0, max_in_flight=64) as c:
        _wait_workers(c, 2)
        t0 = time.monotonic()
        futs = [c.submit(symbols(64, i), 0.0, "deepjscc", request_id=f"p-{i}") for i in range(20)]
        got = [f.result(timeout=20) for f in futs]                # none lost
        took = time.monotonic() - t0
        assert [r.request_id for r in got] == [f"p-{i}" for i in range(20)]
        assert {r.header["worker"] for r in got} == {"ok"}
        assert took < 1.5 + 4.0, took
        st = c.ping()
        assert st["stuck_workers"] == 1 and st["retried"] >= 1, st
        assert [w["stuck"] for w in st["workers"] if w["name"] == "hung"] == [True]


# ---- roles: separate allow-lists for clients and workers ---------------------------------------
def test_client_key_cannot_register_as_worker_and_worker_key_cannot_submit(procs, tiny_jscc, tmp_path):
    keys = tmp_path / "keys"
    r = subprocess.run([PY, "-m", "sing.cli", "keys", "--out", str(keys)], cwd=REPO, text=True,
                       capture_output=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (keys / "clients").iterdir()) == ["client.key"]
    assert sorted(p.name for p in (keys / "workers").iterdir()) == ["worker.key"]
    front, back = ep(), ep()
    curve = ["--curve-secret", str(keys / "server.key_secret")]
    procs.start("broker", "--frontend", front, "--backend", back, "--heartbeat-s", HB,
                "--request-timeout-s", "5", *curve, "--curve-clients", str(keys / "clients"),
                "--curve-workers", str(keys / "workers"))
    as_client = ClientCurve.from_files(keys / "server.key", keys / "client.key_secret")
    as_worker = ClientCurve.from_files(keys / "server.key", keys / "worker.key_secret")
    wcurve = lambda who: ["--curve-server-public", str(keys / "server.key"),
                          "--curve-secret", str(keys / f"{who}.key_secret")]
    procs.start(*worker_args(tiny_jscc[0], "--connect", back, "--heartbeat-s", HB, "--name",
                             "impostor", *wcurve("client")))
    with WorkerClient(front, timeout_s=10, curve=as_client) as c:
        time.sleep(1.5)                                  # it had time to say `ready`
        assert c.ping()["workers"] == []                 # the client key was refused as a worker
        procs.start(*worker_args(tiny_jscc[0], "--connect", back, "--heartbeat-s", HB, "--name",
                                 "real", *wcurve("worker")))
        st = _wait_workers(c, 1)
        assert [w["name"] for w in st["workers"]] == ["real"]
        futs = [c.submit(symbols(64, i), 0.0, "deepjscc") for i in range(10)]
        assert {f.result().header["worker"] for f in futs} == {"real"}
    with WorkerClient(front, timeout_s=1.0, retries=0, curve=as_worker) as c:   # worker key submits
        with pytest.raises(WorkerUnavailable, match="no reply"):
            c.restore(symbols(64), 0.0, "deepjscc")
    # one key in both allow-lists, or only one list: refused at start
    both = tmp_path / "both"
    both.mkdir()
    (both / "client.key").write_text((keys / "clients" / "client.key").read_text())
    for lists in (["--curve-clients", str(both), "--curve-workers", str(keys / "clients")],
                  ["--curve-clients", str(keys / "clients")]):
        p = procs.start("broker", "--frontend", ep(), "--backend", ep(), *curve, *lists, ready=False)
        assert p.wait(timeout=30) == 2
        assert "allow-list" in p.stderr.read()


# ---- many frames, each under the per-frame limit: refused, memory returned ----------------------
def test_many_frame_messages_are_refused_and_memory_returned(procs, tiny_jscc):
    endpoint = ep()
    proc = procs.start(*worker_args(tiny_jscc[0], "--bind", endpoint))
    with WorkerClient(endpoint, timeout_s=10) as c:
        c.restore(symbols(64), 0.0, "deepjscc")
    rss0 = rss(proc.pid)
    s = raw_dealer(endpoint, timeout_ms=20000)
    frame = b"\0" * (min(P.MAX_REQUEST_BYTES, 2**19) - 64)   # each frame under the per-frame limit
    for i in range(4):                                  # 4 × 128 × ½ MiB = 256 MiB sent
        s.send_multipart([b"", json.dumps(request_header(rid=f"m-{i}")).encode()] + [frame] * 128)
        assert _answer(s)[1]["code"] == P.TOO_LARGE
    s.close()
    time.sleep(0.5)
    growth = rss(proc.pid) - rss0
    assert growth < 50 * 2**20, f"worker kept {growth / 2**20:.0f} MiB after 4 many-frame messages"
    with WorkerClient(endpoint, timeout_s=10) as c:
        assert c.restore(symbols(64), 0.0, "deepjscc").image.shape == (16, 16, 3)


# ---- shutdown with requests in flight ------------------------------------------------------------
def test_sigterm_answers_everything_in_flight_within_2s(procs, tiny_jscc, tiny_prior_dir):
    endpoint = ep()
    p = procs.start(*worker_args(tiny_jscc[0], "--bind", endpoint, "--prior", str(tiny_prior_dir),
                                 "--max-batch", "4"))
    with WorkerClient(endpoint, timeout_s=30, retries=0) as c:
        futs = [c.submit(symbols(64, i), 0.0, "ddnm-avgpool", params={"steps": 100},
                         request_id=f"t-{i}") for i in range(16)]
        time.sleep(0.5)                                 # the first batch of 4 is computing
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        rc = p.wait(timeout=10)
        took = time.monotonic() - t0
        codes = []
        for f in futs:
            try:
                f.result(timeout=5)
                codes.append("reply")
            except WorkerError as e:
                codes.append(e.code if e.header else "client timeout")
    assert rc == 0 and took < 2.0, (rc, took)
    assert set(codes) <= {"reply", P.UNAVAILABLE} and len(codes) == 16, codes


def test_sigterm_broker_answers_what_it_holds(procs, tiny_jscc):
    front, back = ep(), ep()
    b = procs.start("broker", "--frontend", front, "--backend", back, "--request-timeout-s", "60")
    with WorkerClient(front, timeout_s=30, retries=0) as c:     # no worker: everything is held
        futs = [c.submit(symbols(64, i), 0.0, "deepjscc") for i in range(8)]
        time.sleep(0.3)
        t0 = time.monotonic()
        b.send_signal(signal.SIGTERM)
        assert b.wait(timeout=10) == 0 and time.monotonic() - t0 < 2.0
        for f in futs:
            with pytest.raises(WorkerUnavailable, match="shut down"):
                f.result(timeout=5)


def test_sigterm_worker_behind_broker_loses_nothing(procs, tiny_jscc, tiny_prior_dir):
    front, back = ep(), ep()
    procs.start("broker", "--frontend", front, "--backend", back, "--heartbeat-s", HB,
                "--request-timeout-s", "60")
    wargs = lambda name: worker_args(tiny_jscc[0], "--connect", back, "--heartbeat-s", HB, "--name",
                                     name, "--prior", str(tiny_prior_dir), "--max-batch", "2")
    wa = procs.start(*wargs("a"))
    procs.start(*wargs("b"))
    with WorkerClient(front, timeout_s=60, retries=0) as c:
        _wait_workers(c, 2)
        futs = [c.submit(symbols(64, i), 0.0, "ddnm-avgpool", params={"steps": 20},
                         request_id=f"g-{i}") for i in range(12)]
        time.sleep(0.5)
        t0 = time.monotonic()
        wa.send_signal(signal.SIGTERM)
        assert wa.wait(timeout=10) == 0 and time.monotonic() - t0 < 2.0
        got = [f.result(timeout=60) for f in futs]              # all served, by b if not by a
        assert [r.request_id for r in got] == [f"g-{i}" for i in range(12)]


# ---- strict types, log injection, counters -------------------------------------------------------
def test_version_must_be_the_integer_one(procs, tiny_jscc):
    endpoint = ep()
    procs.start(*worker_args(tiny_jscc[0], "--bind", endpoint))
    s = raw_dealer(endpoint)
    payload = symbols(64).tobytes()
    for v in (True, 1.0, "1"):
        s.send_multipart([b"", json.dumps(request_header(rid="v", v=v)).encode(), payload])
        h = _answer(s)[1]
        assert h["type"] == "error" and h["code"] == P.BAD_MESSAGE and "version" in h["message"], (v, h)
    s.close()


def test_worker_names_are_sanitised_in_logs_and_status(procs):
    front, back = ep(), ep()
    b = procs.start("broker", "--frontend", front, "--backend", back, "--heartbeat-s", HB)
    s = zmq.Context.instance().socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(back)
    evil = "w1\nWARNING:sing.broker:worker admin joined\x1b[2J"
    s.send_multipart([b"", P.dumps({"v": 1, "type": "ready", "capacity": 1, "worker": evil})])
    with WorkerClient(front, timeout_s=5) as c:
        t_end = time.monotonic() + 5
        while not c.ping()["workers"] and time.monotonic() < t_end:
            time.sleep(0.1)
        names = [w["name"] for w in c.ping()["workers"]]
    s.close()
    b.send_signal(signal.SIGTERM)
    b.wait(timeout=10)
    log = b.stderr.read()
    assert len(names) == 1 and "\n" not in names[0] and "\x1b" not in names[0], names
    assert "\nWARNING:sing.broker:worker admin joined" not in log and "\x1b" not in log


def test_counters_count_what_they_say(procs, tiny_jscc):
    front, back, _, _ = _broker_and_worker(procs, tiny_jscc, "--request-timeout-s", "20")
    with WorkerClient(front, timeout_s=10) as c:
        _wait_workers(c, 1)
        for i in range(3):
            c.restore(symbols(64, i), 0.0, "deepjscc", request_id=f"c-{i}")
        with pytest.raises(WorkerError):
            c.restore(symbols(32), 0.0, "deepjscc")            # the worker refuses k = 32
        with pytest.raises(WorkerError):
            c.restore(symbols(64), 0.0, "deepjscc", params={"nope": 1})   # the broker refuses
        st = c.ping()
    assert (st["served"], st["errors_forwarded"], st["rejected"], st["failed"]) == (3, 1, 1, 0), st
    assert st["duplicate_requests"] == 0 and st["late_replies"] == 0
