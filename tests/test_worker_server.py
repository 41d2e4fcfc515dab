# SPDX-License-Identifier: GPL-3.0-or-later
"""A real `sing worker` process over a real socket: round trip, batching, errors as replies,
fuzzing (worker stays alive, memory bounded), graceful SIGTERM."""
import json
import os

import numpy as np
import psutil
import pytest
import zmq

from sing.worker import protocol as P
from sing.worker.client import WorkerClient, WorkerError, WorkerUnavailable
from test_worker_helpers import (Procs, ep, module_procs, procs, reference_image, symbols,  # noqa: F401
                                 terminate, tiny_jscc, worker_args)


@pytest.fixture(scope="module")
def worker(module_procs, tiny_jscc):
    endpoint = ep()
    p = module_procs.start(*worker_args(tiny_jscc[0], "--bind", endpoint))
    return endpoint, p


def test_round_trip_matches_in_process(worker, tiny_jscc):
    endpoint, _ = worker
    model = tiny_jscc[1]
    with WorkerClient(endpoint, timeout_s=10) as c:
        st = c.ping()
        assert st["models"] == {model.model_id: {"k": 64, "shape": [3, 16, 16], "methods": ["deepjscc"],
                                                 "calibration": False, "inn": False}}
        assert "deepjscc" in st["methods"]
        y = symbols(64, 1)
        r = c.restore(y, 4.0, "deepjscc", {"image_id": "img1", "model_id": model.model_id,
                                           "snr_source": "estimated", "bogus": [1]}, "rq-1")
        assert r.image.dtype == np.uint8 and r.image.shape == (16, 16, 3)
        assert np.abs(r.image.astype(int) - reference_image(model, y, 4.0)).max() <= 1
        h = r.header
        assert h["id"] == "rq-1" and h["model"] == model.model_id and h["snr_source"] == "estimated"
        assert h["meta"] == {"image_id": "img1", "model_id": model.model_id, "snr_source": "estimated"}
        tm = h["timings"]
        assert {"queue_ms", "decode_ms", "restore_ms", "compute_ms", "total_ms", "batch_size"} <= set(tm)
        assert tm["batch_size"] == 1 and tm["restore_ms"] == 0.0 and tm["decode_ms"] > 0
        assert tm["total_ms"] >= tm["compute_ms"] >= tm["decode_ms"] and tm["queue_ms"] >= 0
        f16 = c.restore(y, 4.0, "deepjscc", out="float16")
        assert f16.image.dtype == np.float16 and np.abs(f16.image * 255 - r.image).max() <= 1


def test_concurrent_requests_are_batched(worker, tiny_jscc):
    endpoint, _ = worker
    model = tiny_jscc[1]
    with WorkerClient(endpoint, timeout_s=10) as c:
        ys = [symbols(64, 100 + i) for i in range(24)]
        futs = [c.submit(y, float(i % 7), "deepjscc", {"image_id": f"b{i}"}, f"b-{i}")
                for i, y in enumerate(ys)]
        replies = [f.result() for f in futs]
    assert [r.request_id for r in replies] == [f"b-{i}" for i in range(24)]
    assert max(r.header["timings"]["batch_size"] for r in replies) > 1
    for i, r in enumerate(replies):      # batching changes nothing in the images
        assert np.abs(r.image.astype(int) - reference_image(model, ys[i], float(i % 7))).max() <= 1


def test_errors_are_replies(worker):
    endpoint, _ = worker
    with WorkerClient(endpoint, timeout_s=10) as c:
        with pytest.raises(WorkerError) as e:
            c.restore(symbols(64), 0.0, "deepjscc", {"model_id": "nope@123"})
        assert e.value.code == P.UNKNOWN_MODEL and "tiny@" in str(e.value)   # lists known ids
        with pytest.raises(WorkerError) as e:
            c.restore(symbols(64), 0.0, "sing-zero")
        assert e.value.code == P.UNKNOWN_METHOD and "deepjscc" in str(e.value)
        with pytest.raises(WorkerError) as e:
            c.restore(symbols(32), 0.0, "deepjscc")
        assert e.value.code == P.BAD_REQUEST and "k = 64" in str(e.value)
        with pytest.raises(WorkerError) as e:
            c.restore(symbols(64), 0.0, "deepjscc", params={"steps": 10**6})   # out of range
        assert e.value.code == P.BAD_REQUEST
        assert c.ping()["pid"] > 0


def _raw(endpoint):
    ctx = zmq.Context.instance()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.RCVTIMEO, 5000)
    s.connect(endpoint)
    return s


def _expect_error(s, frames, code=None):
    s.send_multipart(frames)
    reply = s.recv_multipart()
    h = json.loads(reply[-1] if len(reply[-1]) else reply[0])
    assert h["type"] == "error", h
    if code:
        assert h["code"] == code, h
    return h


def test_fuzz_worker_alive_memory_bounded(worker, tiny_jscc):
    endpoint, proc = worker
    rss0 = psutil.Process(proc.pid).memory_info().rss
    s = _raw(endpoint)
    rng = np.random.default_rng(0)
    good = json.loads(P.request_frames(symbols(64), 0.0, "deepjscc", "f1")[0])
    dumps = lambda **kw: json.dumps(dict(good, **kw)).encode()
    payload = symbols(64).tobytes()
    cases = [
        ([b"random bytes, no delimiter"], P.BAD_MESSAGE),
        ([b"", rng.bytes(300)], P.BAD_MESSAGE),
        ([b"", dumps()[:-7]], P.BAD_MESSAGE),                                       # truncated header
        ([b"", dumps()], P.BAD_PAYLOAD),                                            # missing array frame
        ([b"", dumps(), payload[:-3]], P.BAD_PAYLOAD),                              # truncated frame
        ([b"", dumps(k=64, shape=[64]), payload + payload], P.BAD_PAYLOAD),         # lying size
        ([b"", dumps(dtype="float64"), payload], P.BAD_PAYLOAD),                    # wrong dtype
        ([b"", dumps(), np.full(64, np.nan, np.complex64).tobytes()], P.BAD_PAYLOAD),
        ([b"", dumps(k=2**27, shape=[2**27]), payload], P.TOO_LARGE),               # 1 GB claim
        ([b"", dumps(shape=[2**27]), payload], P.BAD_PAYLOAD),
        ([b"", dumps(model="/etc/passwd"), payload], P.BAD_REQUEST),
        ([b"", b"{" + b" " * (P.MAX_HEADER_BYTES + 1) + b"}"], P.TOO_LARGE),
        ([b""] + [b"x"] * 100, P.TOO_LARGE),                                        # frame flood
        ([b"", dumps(type="reply"), payload], P.BAD_MESSAGE),
        ([b"", dumps(v=99), payload], P.BAD_MESSAGE),
    ]
    for frames, code in cases:
        _expect_error(s, frames, code)
    for i in range(300):                                                             # random junk
        n = int(rng.integers(1, 5))
        frames = [b""] + [rng.bytes(int(rng.integers(0, 2000))) for _ in range(n)]
        _expect_error(s, frames)
    s.send_multipart([b"", rng.bytes(P.MAX_REQUEST_BYTES + 10)])    # over ZMQ_MAXMSGSIZE: dropped
    s.close()
    with WorkerClient(endpoint, timeout_s=10) as c:
        assert c.restore(symbols(64), 0.0, "deepjscc").image.shape == (16, 16, 3)
        st = c.ping()
    assert proc.poll() is None and st["errors"] >= len(cases) + 300
    growth = psutil.Process(proc.pid).memory_info().rss - rss0
    assert growth < 64 * 2**20, f"worker RSS grew by {growth / 2**20:.1f} MiB under fuzzing"


def test_timeout_is_reported_not_silent():
    with WorkerClient(ep(), timeout_s=0.3, retries=1) as c:     # nobody listens there
        with pytest.raises(WorkerUnavailable, match="no reply"):
            c.restore(symbols(64), 0.0, "deepjscc")


def test_sigterm_finishes_queued_work(procs, tiny_jscc):
    endpoint = ep()
    p = procs.start(*worker_args(tiny_jscc[0], "--bind", endpoint, "--max-batch", "2"))
    with WorkerClient(endpoint, timeout_s=10) as c:
        futs = [c.submit(symbols(64, i), 0.0, "deepjscc") for i in range(20)]
        futs[0].result()
        p.send_signal(15)
        done = 0
        for f in futs:
            try:
                f.result()
                done += 1
            except WorkerUnavailable:        # a request that arrived after the stop: told, not lost
                pass
        assert done >= 1
    assert p.wait(timeout=20) == 0


def test_non_loopback_bind_needs_curve(procs, tiny_jscc):
    p = procs.start(*worker_args(tiny_jscc[0], "--bind", "tcp://0.0.0.0:0"), ready=False)
    assert p.wait(timeout=60) == 2
    assert "CURVE" in p.stderr.read()
