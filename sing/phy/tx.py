"""Frame builder: JSCC symbols + header → complex baseband samples (mean power 1).

Payload: the k symbols are padded to n_p·48 with fixed unit-modulus filler, interleaved by the fixed
permutation π (slot i carries symbol π[i]) and laid row by row on the 48 data subcarriers of n_p OFDM
symbols; the 4 pilots carry P_{n,p}. x = a · IDFT_unitary(grid), a = sqrt(64/52), CP prepended.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from .header import HeaderFields, encode_header
from .params import OfdmParams, interleaver, pad_symbols, pilots_for, tables


def ofdm_modulate(p: OfdmParams, data: np.ndarray, first_sym: int = 0) -> np.ndarray:
    """data (n, 48) → n·(N+CP) samples."""
    t = tables(p)
    n = data.shape[0]
    grid = np.zeros((n, p.fft_len), np.complex64)
    grid[:, t["data"]] = data
    grid[:, t["pilot"]] = pilots_for(p, n, first_sym)
    td = np.fft.ifft(grid, axis=1) * (np.sqrt(p.fft_len) * p.scale)
    return np.concatenate([td[:, -p.cp_len:], td], axis=1).reshape(-1).astype(np.complex64)


def payload_slots(p: OfdmParams, z: np.ndarray) -> np.ndarray:
    k = z.size
    n_slots = p.n_payload_syms(k) * p.n_data
    padded = np.concatenate([z, pad_symbols(n_slots - k)]) if n_slots > k else z
    return padded[interleaver(n_slots)].reshape(-1, p.n_data)


def build_frame(p: OfdmParams, z: np.ndarray, header: HeaderFields) -> np.ndarray:
    z = np.asarray(z, dtype=np.complex64).reshape(-1)
    if z.size == 0:
        raise InputError("an image PDU with no symbols cannot be sent")
    if z.size != int(header.k):
        raise InputError(f"PDU has {z.size} symbols but its metadata says k = {header.k}")
    if not np.all(np.isfinite(z)):
        raise InputError("symbols contain NaN or Inf; the encoder output is broken")
    t = tables(p)
    hdr = encode_header(p, header)
    body = np.concatenate([hdr, payload_slots(p, z)], axis=0)
    return np.concatenate([t["stf"], t["ltf"], ofdm_modulate(p, body)])
