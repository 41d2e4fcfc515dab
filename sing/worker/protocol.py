# SPDX-License-Identifier: GPL-3.0-or-later
"""The SING worker wire protocol, version 1 (documented in docs/PROTOCOL.md).

A message is a ZeroMQ multipart message:

    [envelope…, b"", header, array…]

- the envelope (routing ids, then one empty delimiter frame) is what REQ/DEALER/ROUTER sockets use;
- `header` is one UTF-8 JSON object (at most MAX_HEADER_BYTES) with `"v": 1` and a `"type"`;
- each following frame is one raw little-endian array whose dtype and shape the header names
  (`dtype`, `shape`); its byte length must equal prod(shape) × itemsize exactly.

Types: request → reply | error; ping → pong; worker↔broker: ready, heartbeat, disconnect.
No pickle, no filesystem paths: nothing on the wire names a file. This module imports numpy and
the standard library only (it runs on the radio host, which may have no torch).
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..errors import InputError, SingError
from ..methods.registry import DEFAULT_MAX_COST, REGISTRY, SEED, SERVED, Param, all_params, cost_of  # noqa: F401

VERSION = 1

# ---- limits: the one place that defines them (docs/PROTOCOL.md, "Limits") -------------------
# Every one is checked before anything is allocated from a claimed size. The worker, the broker
# and the client read these names; nothing else in the code base states a size limit of the wire.
MAX_HEADER_BYTES = 16 * 1024          # JSON header frame, requests and replies alike
MIN_IMAGE_SIDE = 8                    # image height/width in `meta` (= sing.jscc.model.MIN_SIDE,
MAX_IMAGE_SIDE = 1024                 #   MAX_SIDE; tests/test_worker_protocol.py keeps them equal)
IMAGE_CHANNELS = (1, 3)               # meta `channels`: the image's own (grey images ride RGB models)
MAX_K = 3 * MAX_IMAGE_SIDE ** 2 // 12  # complex symbols per request: 262,144, the largest image
#                                       (1024×1024 RGB) at the densest shipped BCR (1/12)
MAX_ID_LEN = 128
MAX_META_KEYS = 16
MAX_META_INT = 2**31 - 1              # |integer| in a forwarded meta value
MAX_JSON_INT_DIGITS = 20              # any integer literal in any header (else bad_message)
MAX_NAME_LEN = 64                     # worker names (`--name`, `ready`), cut and sanitised
MAX_CAPACITY = 4096                   # requests one worker may claim to take at once
MAX_ROUTING = 4                       # routing-id frames before the b"" delimiter, counting the one
#                                       a ROUTER prepends: the broker's client port and a worker
#                                       accept the same depth, so every accepted request can be
#                                       answered along the way it came
MAX_FRAMES = 8                        # body frames (header + arrays) kept from one message
MAX_MESSAGE_FRAMES = 1 + MAX_ROUTING + 1 + MAX_FRAMES   # + a worker id on the broker's worker port;
#                                       frames past this are read and dropped (error too_large)
MAX_REQUEST_BYTES = max(MAX_HEADER_BYTES, 8 * MAX_K)   # ZMQ_MAXMSGSIZE (per frame) where requests
#                                       arrive: 2 MiB, the largest legal symbol frame
MAX_REPLY_BYTES = MAX_IMAGE_SIDE ** 2 * 4 * 2           # ZMQ_MAXMSGSIZE where replies arrive: the
#                                       largest legal image (1024² × 4 channels × float16) = 8 MiB
# libzmq delivers a multipart message whole, and has no limit on the number of frames: one message
# of many frames (each under ZMQ_MAXMSGSIZE) is held in memory before it can be refused. Such a
# message is dropped frame by frame (recv_bounded) and the freed heap is then handed back to the
# system (trim_heap), so that the memory does not stay (docs/PROTOCOL.md, "Limits").
_TRIM = {"due": False, "last": 0.0}


def trim_heap(note: bool = False, min_interval_s: float = 0.25) -> None:
    """Return freed heap memory to the system (glibc malloc_trim; no-op elsewhere) after an
    oversized message was dropped: `note=True` marks one; a call without it (each turn of a
    server loop) trims when one is due, at most every `min_interval_s`, so a flood of them costs
    little. Only then: a process that keeps its freed memory reuses it faster (torch)."""
    import time
    if note:
        _TRIM["due"] = True
    now = time.monotonic()
    if not _TRIM["due"] or now - _TRIM["last"] < min_interval_s:
        return
    _TRIM["due"], _TRIM["last"] = False, now
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


_NAME_BAD = re.compile(r"[^A-Za-z0-9._:@/+=-]")


def safe_name(x: Any, limit: int = MAX_NAME_LEN) -> str:
    """Peer-supplied text fit for a log line or a status field: at most `limit` characters from
    [A-Za-z0-9._:@/+=-], anything else (newlines, escapes, spaces) replaced by '?'."""
    return _NAME_BAD.sub("?", str(x)[:limit])


# ---- default endpoints: loopback only (services bind 127.0.0.1 unless told otherwise) ----------
ENDPOINT = "tcp://127.0.0.1:5555"          # where clients find a worker or a broker
BROKER_BACKEND = "tcp://127.0.0.1:5556"    # where a broker listens for workers


# ---- timeouts (docs/PROTOCOL.md, "Timeouts") ---------------------------------------------------
# A broker answers `unavailable` for a request that no worker restored within its request timeout;
# a client waits longer than that for each attempt, so through a broker it always gets that error
# reply (with the reason) rather than a silent timeout of its own. Keep the two in step:
# client timeout_s = broker --request-timeout-s + CLIENT_TIMEOUT_MARGIN_S (see client_timeout_for).
BROKER_REQUEST_TIMEOUT_S = 60.0       # `sing broker --request-timeout-s` default
CLIENT_TIMEOUT_MARGIN_S = 5.0         # transit + the broker's housekeeping tick, with room to spare
CLIENT_RETRIES = 1                    # re-sends with the same id (a broker drops the duplicate)


def client_timeout_for(broker_request_timeout_s: float = BROKER_REQUEST_TIMEOUT_S) -> float:
    """The per-attempt client timeout that lets a broker's `unavailable` reply arrive first."""
    return float(broker_request_timeout_s) + CLIENT_TIMEOUT_MARGIN_S


CLIENT_TIMEOUT_S = client_timeout_for()   # WorkerClient default: 65 s

TYPES = ("request", "reply", "error", "ping", "pong", "ready", "heartbeat", "disconnect")
SNR_SOURCES = ("true", "estimated")
OUT_DTYPES = ("uint8", "float16")
METHOD_RE = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
ID_RE = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,%d}$" % MAX_ID_LEN)
# model ids look like "name@digest"; a "/" or ".." would smell of a path: refused
MODEL_RE = re.compile(r"^[A-Za-z0-9._@+=-]{1,%d}$" % MAX_ID_LEN)

# Method parameters allowed on the wire: each method's own (sing/methods/registry.py, which also
# holds their types and bounds) + `seed`. Checked per method by check_params.
PARAMS: dict[str, Param] = {**all_params(), "seed": SEED}
# PDU metadata keys that travel in the request header (`meta`), with their types.
META: dict[str, tuple[type, ...]] = {
    "image_id": (str,), "k": (int,), "bcr": (str,), "model_id": (str,), "height": (int,),
    "width": (int,), "channels": (int,), "snr_db": (int, float), "snr_source": (str,),
}

# Error codes (the `code` of an error reply)
BAD_MESSAGE = "bad_message"       # framing, header JSON, unknown type/version
BAD_REQUEST = "bad_request"       # a field is missing, has the wrong type or is out of range
BAD_PAYLOAD = "bad_payload"       # array frame: wrong size/dtype, NaN/Inf
TOO_LARGE = "too_large"           # a claimed or real size above the limits
UNKNOWN_MODEL = "unknown_model"
UNKNOWN_METHOD = "unknown_method"
BUSY = "busy"                     # queue full: try again later / another worker
UNAVAILABLE = "unavailable"       # no worker could produce the image (broker), or shutting down
TOO_EXPENSIVE = "too_expensive"   # the request's cost (sing.methods.cost_of) is over the budget
INTERNAL = "internal"             # the restoration failed; the worker carries on


class ProtocolError(SingError):
    """A message that cannot be served; becomes an error reply with `code`."""

    def __init__(self, code: str, message: str, request_id: str | None = None):
        super().__init__(message)
        self.code = code
        self.request_id = request_id


class WorkerError(SingError):
    """The worker (or broker) answered with an error reply; `.code` is one of the codes above."""

    def __init__(self, code: str, message: str, header: dict | None = None):
        super().__init__(f"[{code}] {message}")
        self.code = code
        self.header = header or {}


class WorkerUnavailable(WorkerError):
    """No answer in time (dead/unreachable worker or broker), or the broker gave up on the image."""

    def __init__(self, message: str, header: dict | None = None):
        super().__init__(UNAVAILABLE, message, header)


# ---- envelope ---------------------------------------------------------------------------------
def split_envelope(frames: Sequence[bytes], min_routing: int = 0) -> tuple[list[bytes], list[bytes] | None]:
    """Split [routing…, b"", body…] into (envelope incl. the delimiter, body).

    `min_routing` frames are always routing ids (a ROUTER prepends one). The delimiter must come
    within MAX_ROUTING routing frames. Without one there (no delimiter, or an envelope deeper than
    any peer would route back), the body is None and the envelope is the first `min_routing`
    frames plus a delimiter, so that an error can still reach the direct peer."""
    for i in range(min_routing, min(len(frames), MAX_ROUTING + 1)):
        if len(frames[i]) == 0:
            return list(frames[:i + 1]), list(frames[i + 1:])
    return list(frames[:min_routing]) + [b""], None


# ---- header ------------------------------------------------------------------------------------
def dumps(header: dict) -> bytes:
    return json.dumps(header, separators=(",", ":"), allow_nan=False).encode()


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_JSON_INT_DIGITS:
        raise ValueError(f"an integer of {len(text)} digits (the limit is {MAX_JSON_INT_DIGITS})")
    return int(text)


def parse_header(frame: bytes) -> dict:
    if len(frame) > MAX_HEADER_BYTES:
        raise ProtocolError(TOO_LARGE, f"header frame is {len(frame)} bytes; the limit is "
                                       f"{MAX_HEADER_BYTES}")
    try:
        h = json.loads(bytes(frame).decode("utf-8"), parse_constant=_reject_constant,
                       parse_int=_parse_int)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ProtocolError(BAD_MESSAGE, f"header frame is not UTF-8 JSON ({str(e)[:80]})") from None
    if not isinstance(h, dict):
        raise ProtocolError(BAD_MESSAGE, "header frame must be a JSON object")
    rid = request_id_of(h)
    v = h.get("v")
    if type(v) is not int or v != VERSION:       # JSON true and 1.0 are not the integer 1
        raise ProtocolError(BAD_MESSAGE, f"protocol version {str(v)[:16]!r} is not supported; this "
                                         f"end speaks v{VERSION} (the integer {VERSION})", rid)
    if h.get("type") not in TYPES:
        raise ProtocolError(BAD_MESSAGE, f"message type {str(h.get('type'))[:32]!r} is unknown; "
                                         f"expected one of {list(TYPES)}", rid)
    return h


def read_header(body: Sequence[bytes] | None, truncated: bool) -> dict:
    """The validated header of a message body (after its routing envelope), or ProtocolError."""
    if truncated:
        raise ProtocolError(TOO_LARGE, f"message has more than {MAX_MESSAGE_FRAMES} frames "
                                       f"(envelope ≤ {MAX_ROUTING} routing ids, body ≤ {MAX_FRAMES})")
    if body is None:
        raise ProtocolError(BAD_MESSAGE, f"no b'' delimiter within {MAX_ROUTING} routing frames: a "
                                         f"message is [b'', header JSON, arrays…] (see docs/PROTOCOL.md)")
    if not body:
        raise ProtocolError(BAD_MESSAGE, "no header: a message is [b'', header JSON, arrays…] "
                                         "(see docs/PROTOCOL.md)")
    if len(body) > MAX_FRAMES:
        raise ProtocolError(TOO_LARGE, f"message body has {len(body)} frames; the limit is {MAX_FRAMES}")
    return parse_header(body[0])


def request_id_of(h: dict) -> str | None:
    rid = h.get("id")
    return rid if isinstance(rid, str) and ID_RE.match(rid) else None


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_num(x) -> bool:
    return (_is_int(x) or isinstance(x, float)) and math.isfinite(x)


def check_params(params: Any, rid: str | None = None, method: str | None = None) -> dict:
    """Params as `method` takes them (registry types and bounds; `seed` for every method), or against
    every method's parameters when no method is named. Raises ProtocolError(BAD_REQUEST)."""
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise ProtocolError(BAD_REQUEST, "params must be a JSON object", rid)
    spec = ({p.name: p for p in REGISTRY[method].params} | {"seed": SEED}) if method else PARAMS
    out = {}
    for k, v in params.items():
        if k not in spec:
            raise ProtocolError(BAD_REQUEST, f"parameter {str(k)[:32]!r} is not allowed"
                                             f"{' for ' + method if method else ''}; allowed: {sorted(spec)}", rid)
        try:
            out[k] = spec[k].check(v)
        except InputError as e:
            raise ProtocolError(BAD_REQUEST, str(e), rid) from None
    return out


def check_cost(method: str, params: dict, max_cost: int | None, rid: str | None = None) -> int:
    """The request's cost (sing.methods.cost_of); ProtocolError(TOO_EXPENSIVE) above `max_cost`
    (None: no budget), ProtocolError(BAD_REQUEST) for parameters that cannot go together."""
    try:
        cost = cost_of(method, params)
    except InputError as e:
        raise ProtocolError(BAD_REQUEST, str(e), rid) from None
    if max_cost is not None and cost > max_cost:
        raise ProtocolError(TOO_EXPENSIVE, f"{method} with {params} costs {cost} network passes (UNet "
                                           f"evaluations) per image; the limit here is {max_cost}: ask "
                                           f"for fewer steps / a later start / less time travel", rid)
    return cost


def clean_meta(meta: Any, rid: str | None = None, strict: bool = True) -> dict:
    """Keep the known PDU metadata keys with scalar values (strings ≤ MAX_ID_LEN)."""
    if meta is None:
        return {}
    if not isinstance(meta, dict):
        if strict:
            raise ProtocolError(BAD_REQUEST, "meta must be a JSON object", rid)
        return {}
    if strict and len(meta) > MAX_META_KEYS:
        raise ProtocolError(BAD_REQUEST, f"meta has {len(meta)} keys; the limit is {MAX_META_KEYS}", rid)
    out = {}
    for k, v in meta.items():
        if k not in META:
            continue                       # unknown PDU keys are not forwarded
        types = META[k]
        ok = (isinstance(v, str) and len(v) <= MAX_ID_LEN) if types == (str,) else (
            (_is_int(v) if types == (int,) else _is_num(v)) and abs(v) <= MAX_META_INT)
        if not ok:
            if strict:
                raise ProtocolError(BAD_REQUEST, f"meta[{k!r}] must be {types[0].__name__}"
                                                 f"{' ≤ %d chars' % MAX_ID_LEN if types == (str,) else ' of magnitude ≤ %d' % MAX_META_INT}", rid)
            continue
        out[k] = v
    return out


@dataclass
class Request:
    id: str
    model: str | None
    method: str
    k: int
    snr_db: float
    snr_source: str
    params: dict
    out: str
    meta: dict
    symbols: np.ndarray                 # complex64 (k,), owned copy
    shape: tuple[int, int] | None = None   # (H, W) from meta height/width; None: the model's size

    def group_key(self) -> tuple:
        """Requests with equal keys may be restored in one batch (one image size per batch)."""
        return (self.model, self.method, self.out, json.dumps(self.params, sort_keys=True), self.shape)


def image_shape(meta: dict, rid: str | None = None) -> tuple[int, int] | None:
    """(H, W) from validated meta (`clean_meta`): both `height` and `width` or neither (None: the
    model's native size); each side in [MIN_IMAGE_SIDE, MAX_IMAGE_SIDE]; `channels`, when given, one
    of IMAGE_CHANNELS. Raises ProtocolError(BAD_REQUEST) naming the field."""
    c = meta.get("channels")
    if c is not None and c not in IMAGE_CHANNELS:
        raise ProtocolError(BAD_REQUEST, f"meta channels = {c} must be one of {list(IMAGE_CHANNELS)}", rid)
    h, w = meta.get("height"), meta.get("width")
    if h is None and w is None:
        return None
    if h is None or w is None:
        raise ProtocolError(BAD_REQUEST, "meta must carry both height and width (or neither, for "
                                         "the model's own image size)", rid)
    if not (MIN_IMAGE_SIDE <= h <= MAX_IMAGE_SIDE and MIN_IMAGE_SIDE <= w <= MAX_IMAGE_SIDE):
        raise ProtocolError(TOO_LARGE if max(h, w) > MAX_IMAGE_SIDE else BAD_REQUEST,
                            f"image size {h}×{w} in meta is outside [{MIN_IMAGE_SIDE}, "
                            f"{MAX_IMAGE_SIDE}] per side", rid)
    return int(h), int(w)


def parse_request(h: dict, arrays: Sequence[bytes]) -> Request:
    """Validate a request header + its array frames. Raises ProtocolError (never anything else)."""
    rid = request_id_of(h)
    if rid is None:
        raise ProtocolError(BAD_REQUEST, f"request id must be a string matching {ID_RE.pattern}")
    model = h.get("model")
    if model is not None and not (isinstance(model, str) and MODEL_RE.match(model)):
        raise ProtocolError(BAD_REQUEST, "model must be a model id like 'name@digest' "
                                         "(no paths) or absent when the worker has one model", rid)
    method = h.get("method")
    if not (isinstance(method, str) and METHOD_RE.match(method)):
        raise ProtocolError(BAD_REQUEST, "method must be a name like 'deepjscc' or 'sing-zero'", rid)
    if method not in SERVED:
        raise ProtocolError(UNKNOWN_METHOD, f"method {method!r} is not served by workers; methods: "
                                            f"{list(SERVED)}", rid)
    k = h.get("k")
    if not _is_int(k) or k < 1:
        raise ProtocolError(BAD_REQUEST, "k must be a positive integer (complex symbols)", rid)
    if k > MAX_K:
        raise ProtocolError(TOO_LARGE, f"k = {k} exceeds the limit {MAX_K}", rid)
    snr = h.get("snr_db")
    if not _is_num(snr) or not -50.0 <= snr <= 100.0:
        raise ProtocolError(BAD_REQUEST, "snr_db must be a finite number in [-50, 100] dB", rid)
    src = h.get("snr_source", "true")
    if src not in SNR_SOURCES:
        raise ProtocolError(BAD_REQUEST, f"snr_source must be one of {list(SNR_SOURCES)}", rid)
    out = h.get("out", "uint8")
    if out not in OUT_DTYPES:
        raise ProtocolError(BAD_REQUEST, f"out must be one of {list(OUT_DTYPES)}", rid)
    params = check_params(h.get("params"), rid, method)
    check_cost(method, params, None, rid)       # parameters that cannot go together: bad_request
    meta = clean_meta(h.get("meta"), rid)
    shape = image_shape(meta, rid)
    if h.get("dtype") != "complex64":
        raise ProtocolError(BAD_PAYLOAD, f"dtype must be 'complex64' (little-endian), got "
                                         f"{str(h.get('dtype'))[:32]!r}", rid)
    arr_shape = h.get("shape")
    if not (isinstance(arr_shape, list) and len(arr_shape) == 1 and _is_int(arr_shape[0])):
        raise ProtocolError(BAD_PAYLOAD, "shape must be [k]", rid)
    if arr_shape[0] != k:
        raise ProtocolError(BAD_PAYLOAD, f"shape {arr_shape} disagrees with k = {k}", rid)
    if len(arrays) != 1:
        raise ProtocolError(BAD_PAYLOAD, f"a request carries exactly one array frame, got "
                                         f"{len(arrays)}", rid)
    buf = arrays[0]
    if len(buf) != 8 * k:
        raise ProtocolError(BAD_PAYLOAD, f"symbol frame is {len(buf)} bytes; k = {k} complex64 "
                                         f"needs {8 * k}", rid)
    y = np.frombuffer(buf, dtype="<c8").astype(np.complex64, copy=True)
    if not np.isfinite(y.view(np.float32)).all():
        raise ProtocolError(BAD_PAYLOAD, "symbols contain NaN or Inf: check the equaliser / SNR "
                                         "estimate upstream", rid)
    return Request(rid, model, method, k, float(snr), src, params, out, meta, y, shape)


# ---- builders ----------------------------------------------------------------------------------
def request_frames(symbols: np.ndarray, snr_db: float, method: str, request_id: str, *,
                   model: str | None = None, snr_source: str = "true", params: dict | None = None,
                   meta: dict | None = None, out: str = "uint8") -> list[bytes]:
    """Body frames of a request (the caller prepends its envelope, e.g. b"")."""
    y = np.ascontiguousarray(np.asarray(symbols).reshape(-1), dtype="<c8")
    h = {"v": VERSION, "type": "request", "id": request_id, "method": method, "k": int(y.size),
         "snr_db": float(snr_db), "snr_source": snr_source, "params": params or {},
         "meta": meta or {}, "out": out, "dtype": "complex64", "shape": [int(y.size)]}
    if model is not None:
        h["model"] = model
    return [dumps(h), y.tobytes()]


def control_frames(type_: str, **fields) -> list[bytes]:
    """One header frame: {"v", "type", then `fields` in order}; the other builders add to it."""
    return [dumps({"v": VERSION, "type": type_, **fields})]


def reply_frames(req_id: str, image_hwc: np.ndarray, **extra) -> list[bytes]:
    img = np.ascontiguousarray(image_hwc)
    dt = {np.dtype(np.uint8): "uint8", np.dtype(np.float16): "float16"}[img.dtype]
    h = {"id": req_id, "dtype": dt, "shape": list(img.shape), **extra}
    return control_frames("reply", **h) + [img.astype(img.dtype.newbyteorder("<"), copy=False).tobytes()]


def error_frames(code: str, message: str, req_id: str | None = None, **extra) -> list[bytes]:
    return control_frames("error", **{"id": req_id, "code": code, "message": message[:2000], **extra})


def parse_reply_image(h: dict, arrays: Sequence[bytes]) -> np.ndarray:
    """Validate a reply's image frame against its header (the client trusts no size either)."""
    dt = h.get("dtype")
    shape = h.get("shape")
    if dt not in OUT_DTYPES or not (isinstance(shape, list) and len(shape) == 3
                                    and all(_is_int(s) and 1 <= s <= MAX_IMAGE_SIDE for s in shape[:2])
                                    and _is_int(shape[2]) and 1 <= shape[2] <= 4):
        raise ProtocolError(BAD_MESSAGE, f"reply has a bad dtype/shape ({dt!r}, {shape!r})")
    itemsize = 1 if dt == "uint8" else 2
    need = shape[0] * shape[1] * shape[2] * itemsize
    if len(arrays) != 1 or len(arrays[0]) != need:
        raise ProtocolError(BAD_MESSAGE, f"reply image frame has {[len(a) for a in arrays]} bytes, "
                                         f"header says {need}")
    return np.frombuffer(arrays[0], dtype="<u1" if dt == "uint8" else "<f2").reshape(shape).copy()


# ---- bounded receive ---------------------------------------------------------------------------
def recv_bounded(sock, max_frames: int = MAX_MESSAGE_FRAMES, flags: int = 0) -> tuple[list[bytes], bool]:
    """Receive one multipart message keeping at most `max_frames` frames (the rest are read and
    dropped so memory stays bounded). Returns (frames, truncated)."""
    import zmq
    frames = [sock.recv(flags)]
    truncated = False
    while sock.getsockopt(zmq.RCVMORE):
        if len(frames) < max_frames:
            frames.append(sock.recv())
        else:
            sock.recv(copy=False)          # dropped without a copy into Python
            truncated = True
    if truncated:
        trim_heap(note=True)
    return frames, truncated


def drain(sock, handle, limit: int = 1000) -> None:
    """Hand each waiting message to `handle(frames, truncated)` (recv_bounded, non-blocking), at
    most `limit` of them: a flood on one socket cannot starve a poll loop's other work."""
    import zmq
    for _ in range(limit):
        try:
            frames, truncated = recv_bounded(sock, MAX_MESSAGE_FRAMES, zmq.NOBLOCK)
        except zmq.Again:
            return
        handle(frames, truncated)


# ---- endpoints ---------------------------------------------------------------------------------
def is_loopback(endpoint: str) -> bool:
    """True for tcp://127.x.x.x:port, tcp://localhost:port, tcp://[::1]:port (port a number or *),
    ipc://, inproc://."""
    return bool(re.match(r"^(ipc|inproc)://|^tcp://(localhost|\[::1\]|127\.\d+\.\d+\.\d+):(\d+|\*)$", endpoint))


def limit_socket(sock, max_frame_bytes: int, linger_ms: int = 0) -> None:
    """The options every socket of ours gets: a per-frame size cap (ZMQ_MAXMSGSIZE: a peer sending
    more is disconnected before the frame is allocated), bounded queues, a bounded linger."""
    import zmq
    sock.setsockopt(zmq.MAXMSGSIZE, int(max_frame_bytes))
    sock.setsockopt(zmq.SNDHWM, 10000)
    sock.setsockopt(zmq.RCVHWM, 1000)
    sock.setsockopt(zmq.LINGER, int(linger_ms))


def check_bind(endpoint: str, curve: bool) -> None:
    """Refuse a non-loopback bind without CURVE keys (it would let anyone on the network in)."""
    if not is_loopback(endpoint) and not curve:
        raise SingError(f"refusing to bind {endpoint} without encryption: a non-loopback address "
                        f"needs CURVE keys (`sing keys --out DIR`, then --curve-secret "
                        f"DIR/server.key_secret); bind tcp://127.0.0.1:PORT for local use")

