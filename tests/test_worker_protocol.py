# SPDX-License-Identifier: GPL-3.0-or-later
"""Wire protocol and batching, in process (fast): every malformed input is a ProtocolError."""
import json
import os
import stat

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from sing.worker import protocol as P
from sing.worker.batching import Batcher


def _req(n=8, **over):
    y = (np.arange(n) + 1j).astype(np.complex64)
    h, payload = P.request_frames(y, 3.0, "deepjscc", "r1", model="m@1", meta={"image_id": "a"})
    h = json.loads(h)
    h.update(over)
    return h, payload


def test_round_trip_request():
    h, payload = _req()
    r = P.parse_request(P.parse_header(P.dumps(h)), [payload])
    assert r.id == "r1" and r.k == 8 and r.model == "m@1" and r.meta == {"image_id": "a"}
    assert r.symbols.dtype == np.complex64 and r.symbols[3] == 3 + 1j


@pytest.mark.parametrize("over,code", [
    ({"k": 10**9, "shape": [10**9]}, P.TOO_LARGE),          # 1 GB claim: refused before allocating
    ({"shape": [9]}, P.BAD_PAYLOAD),                          # lying shape
    ({"dtype": "float32"}, P.BAD_PAYLOAD),
    ({"dtype": "complex128"}, P.BAD_PAYLOAD),
    ({"model": "../../etc/passwd"}, P.BAD_REQUEST),           # no paths from the wire
    ({"method": "rm -rf"}, P.BAD_REQUEST),
    ({"snr_db": "nan"}, P.BAD_REQUEST),
    ({"snr_db": 1e9}, P.BAD_REQUEST),
    ({"params": {"__class__": 1}}, P.BAD_REQUEST),
    ({"params": {"steps": 10**6}}, P.BAD_REQUEST),
    ({"params": {"operator": "/tmp/x"}}, P.BAD_REQUEST),
    ({"id": ""}, P.BAD_REQUEST),
    ({"k": True}, P.BAD_REQUEST),
])
def test_bad_fields(over, code):
    h, payload = _req(**over)
    with pytest.raises(P.ProtocolError) as e:
        P.parse_request(P.parse_header(P.dumps(h)), [payload])
    assert e.value.code == code


def test_bad_payloads():
    h, payload = _req()
    for frames, code in [([payload[:-1]], P.BAD_PAYLOAD), ([payload, payload], P.BAD_PAYLOAD), ([], P.BAD_PAYLOAD)]:
        with pytest.raises(P.ProtocolError) as e:
            P.parse_request(h, frames)
        assert e.value.code == code
    nan = np.full(8, np.nan, np.complex64).tobytes()
    with pytest.raises(P.ProtocolError, match="NaN"):
        P.parse_request(h, [nan])


def test_header_limits():
    with pytest.raises(P.ProtocolError) as e:
        P.parse_header(b"{" + b" " * P.MAX_HEADER_BYTES + b"}")
    assert e.value.code == P.TOO_LARGE
    for bad in [b"[1]", b"\xff\xfe", b'{"v": 2, "type": "request"}', b'{"v":1,"type":"x"}',
                b'{"v":1,"type":"request","snr_db":NaN}', b"[" * 100000]:
        with pytest.raises(P.ProtocolError):
            P.parse_header(bad)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=200), min_size=0, max_size=5))
def test_random_frames_only_protocol_errors(frames):
    try:
        env, body = P.split_envelope(frames, 1)
        if body:
            h = P.parse_header(body[0])
            if h["type"] == "request":
                P.parse_request(h, body[1:])
    except P.ProtocolError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["v", "type", "id", "model", "method", "k", "snr_db", "dtype",
                                        "shape", "params", "meta", "out", "snr_source"]),
                       st.one_of(st.none(), st.integers(), st.floats(), st.text(max_size=20),
                                 st.lists(st.integers(), max_size=3),
                                 st.dictionaries(st.text(max_size=8), st.integers(), max_size=3))),
       st.binary(max_size=100))
def test_random_headers_only_protocol_errors(h, payload):
    try:
        P.parse_request(P.parse_header(json.dumps(h).encode()), [payload])
    except P.ProtocolError:
        pass
    except ValueError as e:            # json.dumps of NaN is fine; parse refuses it
        assert "JSON" in str(e)


def test_reply_image_checked():
    img = np.zeros((4, 5, 3), np.uint8)
    h, data = P.reply_frames("r", img)
    h = json.loads(h)
    assert P.parse_reply_image(h, [data]).shape == (4, 5, 3)
    with pytest.raises(P.ProtocolError):
        P.parse_reply_image(dict(h, shape=[4000, 4000, 3]), [data])
    with pytest.raises(P.ProtocolError):
        P.parse_reply_image(h, [data[:-1]])


def test_loopback_rule():
    assert P.is_loopback("tcp://127.0.0.1:5555") and P.is_loopback("ipc:///tmp/x")
    for e in ["tcp://0.0.0.0:5555", "tcp://*:5555", "tcp://192.168.1.2:1", "tcp://eth0:1"]:
        assert not P.is_loopback(e)
        with pytest.raises(Exception, match="CURVE"):
            P.check_bind(e, curve=False)
    P.check_bind("tcp://0.0.0.0:5555", curve=True)


def test_batcher_groups_and_waits():
    b = Batcher(max_batch=3, max_wait_s=0.01, max_queue=5)
    for i in range(4):
        assert b.add(("m", "a"), i, now=0.0)
    assert b.add(("m", "b"), "x", now=0.001)
    assert not b.add(("m", "b"), "y", now=0.001)            # full → caller says busy
    assert [p.item for p in b.ready(now=0.0)] == [0, 1, 2]    # full batch leaves at once
    assert b.ready(now=0.005) == []                           # the rest wait for company…
    assert [p.item for p in b.ready(now=0.0101)] == [3]       # …until max_wait
    assert b.next_deadline() == pytest.approx(0.011)
    assert [p.item for p in b.ready(now=0.02)] == ["x"] and len(b) == 0


def test_batcher_continuous_by_default():
    """Default (max_wait 0): an idle worker dispatches a lone request at once; what arrives while it
    is busy accumulates and leaves as one batch (≤ max_batch) when it is free, oldest group first."""
    b = Batcher(max_batch=4)
    assert b.max_wait_s == 0.0
    b.add(("m", "a"), 0, now=10.0)
    assert [p.item for p in b.ready(now=10.0)] == [0]          # idle: no waiting at batch 1
    for i in range(1, 7):                                       # …compute thread busy meanwhile
        b.add(("m", "a"), i, now=10.0 + i * 1e-3)
    b.add(("m", "z"), "z", now=10.0005)                         # an older request of another group
    assert [p.item for p in b.ready(now=10.01)] == ["z"]
    assert [p.item for p in b.ready(now=10.01)] == [1, 2, 3, 4]  # accumulated: one batch
    assert [p.item for p in b.ready(now=10.01)] == [5, 6] and len(b) == 0


def test_protocol_timeouts_consistent():
    """The client's default per-attempt timeout outlasts the broker's request timeout, so through a
    broker the broker's 'unavailable' reply arrives first (docs/PROTOCOL.md, Timeouts)."""
    import argparse
    import inspect
    from sing.worker import broker
    from sing.worker.client import WorkerClient
    ap = argparse.ArgumentParser()
    broker.add_arguments(ap)
    broker_default = ap.parse_args([]).request_timeout_s
    client_default = inspect.signature(WorkerClient).parameters["timeout_s"].default
    assert broker_default == P.BROKER_REQUEST_TIMEOUT_S
    assert client_default == P.client_timeout_for(broker_default) > broker_default
    assert inspect.signature(WorkerClient).parameters["retries"].default == P.CLIENT_RETRIES


def test_keys_are_private(tmp_path):
    from sing.worker.keys import load_public, load_secret, write_keypair
    pub, sec = write_keypair(tmp_path / "k", "server")
    for f in (pub, sec):
        assert stat.S_IMODE(os.stat(f).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "k").st_mode) == 0o700
    assert load_secret(sec)[0] == load_public(pub)
    with pytest.raises(Exception, match="exists"):
        write_keypair(tmp_path / "k", "server")


# ---- framing: envelope depth, strict version, integer size, limits in one place --------------
def test_envelope_depth_is_one_limit_for_every_hop():
    body = [b'{"v":1}', b"x"]
    for depth in range(0, P.MAX_ROUTING + 1):          # 0 … MAX_ROUTING routing ids: accepted
        routing = [b"r%d" % i for i in range(depth)]
        for min_routing in (0, 1):
            if depth < min_routing:
                continue
            env, b = P.split_envelope(routing + [b""] + body, min_routing)
            assert env == routing + [b""] and b == body
    deep = [b"r%d" % i for i in range(P.MAX_ROUTING + 1)] + [b""] + body
    for min_routing in (0, 1):                          # one more: refused, error routable
        env, b = P.split_envelope(deep, min_routing)
        assert b is None and env == deep[:min_routing] + [b""]
        with pytest.raises(P.ProtocolError) as e:
            P.read_header(b, False)
        assert e.value.code == P.BAD_MESSAGE and "routing" in str(e.value)
    with pytest.raises(P.ProtocolError) as e:                      # body frames: one limit too
        P.read_header([b'{"v":1,"type":"ping"}'] + [b"x"] * P.MAX_FRAMES, False)
    assert e.value.code == P.TOO_LARGE
    assert P.read_header([b'{"v":1,"type":"ping"}'] + [b"x"] * (P.MAX_FRAMES - 1), False)["v"] == 1


@pytest.mark.parametrize("v", ["true", "1.0", '"1"', "null", "1e0", "01"])
def test_version_is_the_integer_one(v):
    with pytest.raises(P.ProtocolError) as e:
        P.parse_header(('{"v":%s,"type":"ping"}' % v).encode())
    assert e.value.code == P.BAD_MESSAGE
    assert P.parse_header(b'{"v":1,"type":"ping"}')["v"] == 1


def test_integer_literals_are_bounded():
    ok = "9" * P.MAX_JSON_INT_DIGITS
    assert P.parse_header(('{"v":1,"type":"ping","x":-%s}' % ok).encode())["x"] == -int(ok)
    with pytest.raises(P.ProtocolError) as e:
        P.parse_header(('{"v":1,"type":"ping","x":%s9}' % ok).encode())
    assert e.value.code == P.BAD_MESSAGE and "digits" in str(e.value)
    with pytest.raises(P.ProtocolError):
        P.clean_meta({"k": P.MAX_META_INT + 1})
    assert P.clean_meta({"k": P.MAX_META_INT, "height": True}, strict=False) == {"k": P.MAX_META_INT}


def test_limits_fit_together():
    assert P.MAX_REQUEST_BYTES >= max(P.MAX_HEADER_BYTES, 8 * P.MAX_K)
    assert P.MAX_REPLY_BYTES >= P.MAX_IMAGE_SIDE ** 2 * 4 * 2
    assert P.MAX_MESSAGE_FRAMES == 1 + P.MAX_ROUTING + 1 + P.MAX_FRAMES
    # the largest forwarded meta, once JSON-escaped and echoed, leaves the reply header in bounds
    worst = "\U0001F600" * P.MAX_ID_LEN
    meta = P.clean_meta({k: (worst if t == (str,) else -P.MAX_META_INT) for k, t in P.META.items()})
    img = np.zeros((P.MAX_IMAGE_SIDE, P.MAX_IMAGE_SIDE, 4), np.float16)
    h = P.reply_frames("i" * P.MAX_ID_LEN, img, model="m" * P.MAX_ID_LEN, method="x" * 32,
                       snr_db=-1.2345678901234567e-300, snr_source="estimated", meta=meta,
                       worker="w" * P.MAX_NAME_LEN, metrics={},
                       timings={k: 1.2345678901234567e300 for k in ("queue_ms", "decode_ms",
                                "restore_ms", "compute_ms", "total_ms")} | {"batch_size": 4096})[0]
    assert len(h) <= P.MAX_HEADER_BYTES


def test_safe_name_keeps_logs_one_line():
    s = P.safe_name("w1\nWARNING:fake line\x1b[2J" + "x" * 100)
    assert len(s) == P.MAX_NAME_LEN and "\n" not in s and "\x1b" not in s and " " not in s


def test_keys_make_two_roles(tmp_path):
    import argparse
    from sing.worker import keys
    ap = argparse.ArgumentParser()
    keys.add_arguments(ap)
    assert keys.run(ap.parse_args(["--out", str(tmp_path / "k"), "--client", "rx1", "--client", "rx2",
                                   "--worker", "gpu1"])) == 0
    d = tmp_path / "k"
    assert sorted(p.name for p in (d / "clients").iterdir()) == ["rx1.key", "rx2.key"]
    assert sorted(p.name for p in (d / "workers").iterdir()) == ["gpu1.key"]
    assert (d / "server.key_secret").exists() and (d / "gpu1.key_secret").exists()
    import zmq
    ctx = zmq.Context()
    try:
        with pytest.raises(Exception, match="both"):
            keys.start_authenticator(ctx, {keys.CLIENTS: d / "clients", keys.WORKERS: d / "clients"})
        with pytest.raises(Exception, match="curve-workers"):
            keys.start_authenticator(ctx, {keys.CLIENTS: d / "clients", keys.WORKERS: None})
        assert keys.start_authenticator(ctx, {keys.CLIENTS: None, keys.WORKERS: None}) is None
    finally:
        ctx.term()
