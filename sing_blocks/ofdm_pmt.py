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

The TX reads a PDU's symbols without serialising them: pmt.uniform_vector_elements returns the
vector's element pointer in a PyCapsule, and ctypes copies the elements from there into the batch
array (`c32_address`; serialising 256 symbols costs ~8 µs, the copy ~1 µs, 4096 symbols ~80 vs
~3 µs). The reader is checked at import on a known vector and is None (callers fall back to the
serialisation) if this pmt build returns anything else.
Anything that does not look exactly as expected (other value types, nested containers, a
different vector type) is left to pmt's generic functions by the callers.
"""
from __future__ import annotations

import ctypes
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


def _c32_address_reader():
    """c32vector PMT → address (int) of its elements, or None where pmt does not give them as
    expected (checked on a known vector: the bytes at the address must be exactly its values)."""
    try:
        get = ctypes.pythonapi.PyCapsule_GetPointer
        get.restype = ctypes.c_void_p
        get.argtypes = [ctypes.py_object, ctypes.c_char_p]
        uve = pmt.uniform_vector_elements
        probe = np.array([1 + 2j, -3.5 + 0.25j, 7e-3 - 1e9j, -0.0 + 5j], np.complex64)
        v = pmt.init_c32vector(probe.size, probe)
        got = np.zeros_like(probe)
        ctypes.memmove(got.ctypes.data, get(uve(v, 0), None), got.nbytes)
        if got.tobytes() != probe.tobytes():
            return None
    except Exception:           # no such function, another capsule, no ctypes: use serialisation
        return None

    def address(v) -> int:
        return get(uve(v, 0), None)
    return address


c32_address = _c32_address_reader()


def c32_copy(dst_address: int, v, n: int) -> None:
    """Copy the n elements of c32vector PMT v (n = pmt.length(v)) to dst_address (memory the caller
    owns, at least 8·n bytes). Only when `c32_address` is not None."""
    ctypes.memmove(dst_address, c32_address(v), 8 * n)


def _pdu_meta(msg):
    """(flat metadata dict, read off one serialisation of the dict alone, c32vector PMT) of a PDU
    `cons(flat dict, c32vector)`; None for any other shape."""
    if not pmt.is_pair(msg):
        return None
    v = pmt.cdr(msg)
    if not pmt.is_c32vector(v):
        return None
    s = pmt.serialize_str(pmt.car(msg))
    parsed = _flat_dict(s, 0) if s else None
    return None if parsed is None or parsed[1] != len(s) else (parsed[0], v)


def pdu_meta_vector(msg):
    """(metadata dict, the c32vector PMT itself) of a PDU `cons(flat dict, c32vector)`, the dict
    read off one serialisation of the dict alone, the symbols left in place for `c32_copy`; None
    for any other shape or where `c32_address` is unavailable (then use `pdu_parts`)."""
    return None if c32_address is None else _pdu_meta(msg)


def pdu_parts(msg):
    """(metadata dict, symbols as big-endian '>c8' bytes) of a PDU `cons(flat dict, c32vector)`,
    both read off serialisations (module doc); None when the PDU has any other shape (then use
    pmt's generic functions, which also give the precise error)."""
    parts = None if _C32_PARTS is None else _pdu_meta(msg)
    return None if parts is None else (parts[0], c32_bytes(parts[1]))


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
