"""Frame builder: JSCC symbols + header → complex baseband samples (mean power 1), batched.

Payload: the k symbols are padded to n_p·48 with fixed unit-modulus filler, interleaved by the fixed
permutation π (slot i carries symbol π[i]) and laid row by row on the 48 data subcarriers of n_p OFDM
symbols; the 4 pilots carry P_{n,p}. x = a · IDFT_unitary(grid), a = sqrt(64/52), CP prepended.
A batch of frames shares one inverse FFT over all its OFDM symbols.
"""
from __future__ import annotations

import numpy as np
import scipy.fft

from ..errors import InputError
from .header import HeaderFields, encode_headers
from .params import OfdmParams, interleaver, pad_symbols, pilots_for, tables


def ofdm_modulate(p: OfdmParams, data: np.ndarray, first_sym: int = 0) -> np.ndarray:
    """data (n, 48) → n·(N+CP) samples."""
    return _modulate(p, data, pilots_for(p, data.shape[0], first_sym)).reshape(-1)


def _modulate(p: OfdmParams, data: np.ndarray, pilots: np.ndarray) -> np.ndarray:
    t = tables(p)
    grid = np.zeros((data.shape[0], p.fft_len), np.complex64)
    grid[:, t["data"]] = data
    grid[:, t["pilot"]] = pilots
    td = scipy.fft.ifft(grid, axis=1) * np.float32(np.sqrt(p.fft_len) * p.scale)
    return np.concatenate([td[:, -p.cp_len:], td], axis=1).astype(np.complex64, copy=False)


def payload_slots(p: OfdmParams, z: np.ndarray) -> np.ndarray:
    k = z.size
    n_slots = p.n_payload_syms(k) * p.n_data
    padded = np.concatenate([z, pad_symbols(n_slots - k)]) if n_slots > k else z
    return padded[interleaver(n_slots)].reshape(-1, p.n_data)


def check_symbols(z: np.ndarray, k: int) -> np.ndarray:
    z = np.asarray(z, dtype=np.complex64).reshape(-1)
    if z.size == 0:
        raise InputError("an image PDU with no symbols cannot be sent")
    if z.size != int(k):
        raise InputError(f"PDU has {z.size} symbols but its metadata says k = {k}")
    if not np.all(np.isfinite(z.view(np.float32))):
        raise InputError("symbols contain NaN or Inf; the encoder output is broken")
    return z


def _build_same_k(p: OfdmParams, Z: np.ndarray, hdr: np.ndarray, gap: int) -> np.ndarray:
    """Z (B, k) symbols, hdr (B, n_h, 48) header symbols → (B, frame_len + gap) samples."""
    t = tables(p)
    B, k = Z.shape
    npl = p.n_payload_syms(k)
    n_slots = npl * p.n_data
    if n_slots > k:
        Z = np.concatenate([Z, np.broadcast_to(pad_symbols(n_slots - k), (B, n_slots - k))], axis=1)
    pay = Z[:, interleaver(n_slots)].reshape(B, npl, p.n_data)
    body = np.concatenate([hdr, pay], axis=1)                         # (B, n, 48)
    n = body.shape[1]
    pil = np.broadcast_to(pilots_for(p, n, 0), (B, n, 4)).reshape(B * n, 4)
    sym = _modulate(p, body.reshape(B * n, p.n_data), pil).reshape(B, n * p.sym_len)
    pre = t["preamble"]
    out = np.zeros((B, pre.size + n * p.sym_len + gap), np.complex64)
    out[:, :pre.size] = pre
    out[:, pre.size:pre.size + sym.shape[1]] = sym
    return out


def build_frames(p: OfdmParams, zs, headers, gap: int = 0):
    """Frames for lists of symbols and HeaderFields, back to back, each followed by `gap` zeros.
    Frames of the same k are built together (one inverse FFT). Returns (samples complex64,
    frame lengths without the gap)."""
    zs = [check_symbols(z, h.k) for z, h in zip(zs, headers)]
    hdr = encode_headers(p, headers)
    groups: dict[int, list[int]] = {}
    for i, z in enumerate(zs):
        groups.setdefault(z.size, []).append(i)
    if len(groups) == 1:
        out = _build_same_k(p, np.stack(zs), hdr, gap)
        return out.reshape(-1), [out.shape[1] - gap] * len(zs)
    parts = [None] * len(zs)
    for k, ids in groups.items():
        o = _build_same_k(p, np.stack([zs[i] for i in ids]), hdr[ids], gap)
        for q, i in enumerate(ids):
            parts[i] = o[q]
    return np.concatenate(parts), [x.size - gap for x in parts]


def build_frame(p: OfdmParams, z: np.ndarray, header: HeaderFields) -> np.ndarray:
    return build_frames(p, [z], [header])[0]
