"""The digital frame header: fields, CRC32, biorthogonal Reed-Muller code, (de)mapping.

Fields (130 bits, MSB first): version 2 | k 20 | image_id 32 | model_hash 32 | height 12 |
width 12 | channels 4 | bcr_num 4 | bcr_den 12, then CRC32 (zlib, over the 17 bytes of the
zero-padded 130 bits) → 162 bits = 27 chunks of 6 bits.

Code: first-order Reed-Muller RM(1,5) = biorthogonal [32, 6, 16] (MacWilliams & Sloane ch. 13):
c_j = u0 ⊕ ⊕_{i=1..5} u_i·bit_{i-1}(j), j = 0…31. Soft ML decoding: correlate the 32 soft values of
a chunk with all 64 ±1 codewords and take the largest (one matrix product for the whole header).
Coded bits (repeated twice in "bpsk-x2") are whitened (XOR a fixed PN) and interleaved over subcarriers and OFDM symbols.

image_id travels as a uint32: decimal ids are sent as numbers; any other string is sent as its
CRC32 and received as that number in decimal. model_id travels as CRC32(model_id); the receiver maps it back
through a list of known model ids, else reports "#xxxxxxxx".
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from ..errors import InputError
from .params import OfdmParams, tables

VERSION = 1
_FIELDS = (("version", 2), ("k", 20), ("image_id", 32), ("model_hash", 32), ("height", 12),
           ("width", 12), ("channels", 4), ("bcr_num", 4), ("bcr_den", 12))
N_INFO = sum(w for _, w in _FIELDS)          # 130
N_BITS = N_INFO + 32                          # 162


def crc32_str(s: str) -> int:
    return zlib.crc32(s.encode("utf-8")) & 0xFFFFFFFF


@dataclass
class HeaderFields:
    image_id: str
    k: int
    model_id: str = ""
    height: int = 0
    width: int = 0
    channels: int = 0
    bcr: str = ""

    def words(self) -> dict:
        iid = str(self.image_id)
        if iid.isdigit() and int(iid) < 2 ** 32:
            iid_num = int(iid)
        elif iid.startswith("#") and len(iid) == 9:
            iid_num = int(iid[1:], 16)
        else:
            iid_num = crc32_str(iid)
        if not 1 <= int(self.k) < 2 ** 20:
            raise InputError(f"k = {self.k} does not fit the header (1 … {2 ** 20 - 1} symbols)")
        num = den = 0
        if self.bcr:
            f = Fraction(str(self.bcr))
            if f.numerator < 16 and f.denominator < 4096:
                num, den = f.numerator, f.denominator
        for name, val, lim in (("height", self.height, 4096), ("width", self.width, 4096),
                               ("channels", self.channels, 16)):
            if not 0 <= int(val) < lim:
                raise InputError(f"{name} = {val} does not fit the header (< {lim})")
        mh = crc32_str(self.model_id) if self.model_id else 0
        return dict(version=VERSION, k=int(self.k), image_id=iid_num, model_hash=mh,
                    height=int(self.height), width=int(self.width), channels=int(self.channels),
                    bcr_num=num, bcr_den=den)


def _to_bits(val: int, width: int) -> list[int]:
    return [(val >> (width - 1 - i)) & 1 for i in range(width)]


def _crc(info_bits: np.ndarray) -> int:
    return zlib.crc32(np.packbits(info_bits).tobytes()) & 0xFFFFFFFF


def pack_bits(h: HeaderFields) -> np.ndarray:
    w = h.words()
    v = 0
    for name, width in _FIELDS:
        v = (v << width) | w[name]
    info = np.unpackbits(np.frombuffer(v.to_bytes(17, "big"), np.uint8))[-N_INFO:]
    crc = np.unpackbits(np.frombuffer(_crc(info).to_bytes(4, "big"), np.uint8))
    return np.concatenate([info, crc])


def unpack_bits(bits: np.ndarray) -> dict | None:
    """162 bits → field dict, or None when the CRC fails."""
    info, crc = bits[:N_INFO], bits[N_INFO:N_BITS]
    if int("".join(map(str, crc.tolist())), 2) != _crc(info):
        return None
    out, i = {}, 0
    for name, width in _FIELDS:
        out[name] = int("".join(map(str, info[i:i + width].tolist())), 2)
        i += width
    if out["version"] != VERSION or out["k"] == 0:
        return None
    return out


# --- RM(1,5) ---------------------------------------------------------------------------
_J = np.arange(32)
_G = np.vstack([np.ones(32, np.uint8)] + [((_J >> i) & 1).astype(np.uint8) for i in range(5)])  # 6×32
_U = ((np.arange(64)[:, None] >> np.arange(5, -1, -1)[None, :]) & 1).astype(np.uint8)         # 64×6, MSB first
_CODEBOOK = (_U @ _G) % 2                                                                       # 64×32
_SIGNS = 1.0 - 2.0 * _CODEBOOK


def rm_encode(bits: np.ndarray) -> np.ndarray:
    u = bits.reshape(-1, 6)
    return ((u @ _G) % 2).astype(np.uint8).reshape(-1)


def rm_decode(soft: np.ndarray) -> np.ndarray:
    """soft: positive ⇒ bit 0. Returns the ML information bits."""
    idx = np.argmax(soft.reshape(-1, 32) @ _SIGNS.T, axis=1)
    return _U[idx].reshape(-1)


# --- mapping onto the header OFDM symbols -------------------------------------------------
def encode_header(p: OfdmParams, h: HeaderFields) -> np.ndarray:
    """Header → (n_header_syms, 48) complex data-subcarrier values."""
    t = tables(p)
    coded = np.tile(rm_encode(pack_bits(h)), p.header_rep) ^ t["hdr_pn"]
    tx = np.empty_like(coded)
    tx[np.arange(coded.size)] = coded[t["hdr_perm"]]           # slot i carries coded bit perm[i]
    s = 1.0 - 2.0 * tx.astype(np.float64)
    if p.header_mod == "qpsk":
        s = (s[0::2] + 1j * s[1::2]) / np.sqrt(2)
    return s.astype(np.complex64).reshape(p.n_header_syms, 48)


def decode_header(p: OfdmParams, soft_syms: np.ndarray) -> dict | None:
    """soft_syms: (n_header_syms, 48) matched-filter outputs Y·conj(Ĥ)·e^{-jθ} (MRC-weighted)."""
    t = tables(p)
    s = soft_syms.reshape(-1)
    if p.header_mod == "qpsk":
        soft = np.empty(2 * s.size)
        soft[0::2], soft[1::2] = s.real, s.imag
    else:
        soft = s.real.copy()
    coded_soft = np.empty_like(soft)
    coded_soft[t["hdr_perm"]] = soft                            # de-interleave
    coded_soft *= 1.0 - 2.0 * t["hdr_pn"]                       # de-whiten
    coded_soft = coded_soft.reshape(p.header_rep, -1).sum(axis=0)   # combine repetitions
    return unpack_bits(rm_decode(coded_soft))


def fields_to_meta(f: dict, model_ids=()) -> dict:
    models = {crc32_str(m): m for m in model_ids}
    meta = {"image_id": str(f["image_id"]), "k": f["k"],
            "model_id": models.get(f["model_hash"], f"#{f['model_hash']:08x}") if f["model_hash"] else "",
            "height": f["height"], "width": f["width"], "channels": f["channels"]}
    if f["bcr_den"]:
        meta["bcr"] = f"{f['bcr_num']}/{f['bcr_den']}"
    return meta
