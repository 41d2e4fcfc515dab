# SPDX-License-Identifier: GPL-3.0-or-later
"""Fast PMT conversions for the per-frame paths of the OFDM blocks.

pmt's generic helpers walk vectors element by element in Python (`init_c32vector` of 256 symbols
takes ~16 µs, of 4096 ~250 µs; `c32vector_elements` builds a list), and reading a metadata dict
key by key costs ~1.7 µs per key (`dict_ref` scans the dict, plus type tests). Both directions go
through pmt's serialisation instead, the versioned wire format gr-zeromq sends between processes:

    pair          07 <car> <cdr>          dict   09 07 <key> <value> 09 07 … 06  (06 = null / end)
    symbol        02 <uint16 n> <n bytes>  int32  03 <4 bytes>   int64 0d <8>   uint64 0b <8>
    double        04 <8 bytes>             true   00   false 01  (all big-endian)
    c32vector     0a <type> <uint32 n> <npad> <pad bytes> <n big-endian float32 (re, im) pairs>

The c32vector header is read off pmt itself at import (a one-element vector), never hard-coded.
Anything that does not look exactly as expected (other value types, nested containers, a
different vector type) is left to pmt's generic functions by the callers.
"""
from __future__ import annotations

import struct

import numpy as np
import pmt


def _c32_header_parts():
    s = pmt.serialize_str(pmt.init_c32vector(1, [0j]))
    head = s[:-8]                                  # everything before the one (re, im) pair
    if len(head) >= 6 and head[2:6] == (1).to_bytes(4, "big"):
        return head[:2], head[6:]                  # tag + type, (length), padding bytes
    return None


_C32_PARTS = _c32_header_parts()
_KEYS: dict[str, pmt.pmt_t] = {}
_DOUBLE = struct.Struct(">d").unpack_from
_INTS = {0x03: (4, True), 0x0d: (8, True), 0x0b: (8, False)}    # tag: (bytes, signed)


def _flat_dict(s: bytes, i: int):
    """Parse a serialised dict of symbol keys → symbol / integer / double / boolean values starting
    at s[i]; returns (dict, index after it) or None for anything else."""
    out = {}
    while s[i] == 0x09:
        if s[i + 1] != 0x07 or s[i + 2] != 0x02:
            return None
        n = (s[i + 3] << 8) | s[i + 4]
        key = s[i + 5:i + 5 + n].decode()
        i += 5 + n
        t = s[i]
        if t == 0x02:
            n = (s[i + 1] << 8) | s[i + 2]
            out[key] = s[i + 3:i + 3 + n].decode()
            i += 3 + n
        elif t in _INTS:
            w, signed = _INTS[t]
            out[key] = int.from_bytes(s[i + 1:i + 1 + w], "big", signed=signed)
            i += 1 + w
        elif t == 0x04:
            out[key] = _DOUBLE(s, i + 1)[0]
            i += 9
        elif t in (0x00, 0x01):
            out[key] = t == 0x00
            i += 1
        else:
            return None
    return (out, i + 1) if s[i] == 0x06 else None


def pdu_parts(msg):
    """(metadata dict, symbols as big-endian '>c8' bytes) of a PDU `cons(flat dict, c32vector)`
    read off one serialisation (module doc); None when the PDU has any other shape (then use
    pmt's generic functions, which also give the precise error)."""
    if _C32_PARTS is None:
        return None
    s = pmt.serialize_str(msg)
    if len(s) < 2 or s[0] != 0x07:
        return None
    parsed = _flat_dict(s, 1)
    if parsed is None:
        return None
    meta, i = parsed
    lead, pad = _C32_PARTS
    head = len(lead) + 4 + len(pad)
    if s[i:i + len(lead)] != lead or s[i + len(lead) + 4:i + head] != pad:
        return None
    n = int.from_bytes(s[i + len(lead):i + len(lead) + 4], "big")
    if len(s) != i + head + 8 * n:
        return None
    return meta, s[i + head:]


def c32_bytes(v) -> bytes:
    """The elements of a c32vector PMT as big-endian float32 (re, im) pairs ('>c8' items)."""
    n = pmt.length(v)
    s = pmt.serialize_str(v)
    if _C32_PARTS is None or len(s) < 8 * n:
        return np.asarray(pmt.c32vector_elements(v), ">c8").tobytes()
    return s[len(s) - 8 * n:]


def c32_array(v) -> np.ndarray:
    """complex64 array of a c32vector PMT."""
    return np.frombuffer(c32_bytes(v), ">c8").astype(np.complex64)


def c32_pmt(z: np.ndarray):
    """c32vector PMT of a complex array (same result as pmt.init_c32vector)."""
    z = np.asarray(z).reshape(-1)
    if _C32_PARTS is None:
        return pmt.init_c32vector(z.size, np.ascontiguousarray(z, np.complex64))
    lead, pad = _C32_PARTS
    return pmt.deserialize_str(lead + z.size.to_bytes(4, "big") + pad + z.astype(">c8").tobytes())


def dict_pmt(meta: dict):
    """PMT dict of flat metadata (str → symbol, bool, int → long, float → double; None skipped;
    anything else through pmt.to_pmt), keys interned once."""
    d = pmt.make_dict()
    for k, v in meta.items():
        if v is None:
            continue
        key = _KEYS.get(k)
        if key is None:
            key = _KEYS[k] = pmt.intern(str(k))
        if isinstance(v, str):
            pv = pmt.intern(v)
        elif isinstance(v, (bool, np.bool_)):
            pv = pmt.from_bool(bool(v))
        elif isinstance(v, (int, np.integer)):
            pv = pmt.from_long(int(v))
        elif isinstance(v, (float, np.floating)):
            pv = pmt.from_double(float(v))
        else:
            pv = pmt.to_pmt(v)
        d = pmt.dict_add(d, key, pv)
    return d
