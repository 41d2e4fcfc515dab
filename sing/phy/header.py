"""The digital frame header: fields, CRC32, biorthogonal Reed-Muller code, (de)mapping.

Fields (version 2, 130 bits, MSB first): version 2 | k 20 | id_numeric 1 | seq 15 | image_id 32 |
model_hash 32 | height 12 | width 12 | channels 4, then CRC32 (zlib, over the 17 bytes of the 130
bits zero-padded at the end) → 162 bits = 27 chunks of 6 bits.

Code: first-order Reed-Muller RM(1,5) = biorthogonal [32, 6, 16] (MacWilliams & Sloane ch. 13):
c_j = u0 ⊕ ⊕_{i=1..5} u_i·bit_{i-1}(j), j = 0…31. Soft ML decoding: correlate the 32 soft values of
a chunk with all 64 ±1 codewords and take the largest (one matrix product for a whole batch of
headers). Coded bits (repeated twice in "bpsk-x2") are whitened (XOR a fixed PN) and interleaved
over subcarriers and OFDM symbols.

Identifiers over the air (docs/over_the_air.md, "Image and model ids"):
- image_id: a decimal id < 2³² travels as that number (id_numeric = 1) and comes back unchanged;
  any other string travels as its CRC32 (id_numeric = 0) and comes back as
  ``ota/<seq>-<crc32 hex>``; ``seq`` (15 bits) is the TX's sequence number (the source's ``seq``
  metadata when it has one), returned as metadata ``seq`` with every frame. A receiver that is
  given the candidate ids (``image_ids``) maps the CRC back to the original string.
- model_id travels as CRC32(model_id); the receiver maps it back through the model ids it knows
  (given directly or read from model directories), else reports "#xxxxxxxx".
- bcr is not sent: the receiver takes it from the known model's config, else k / (H·W·C).
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from ..errors import InputError
from .params import OfdmParams, tables

VERSION = 2
_FIELDS = (("version", 2), ("k", 20), ("id_numeric", 1), ("seq", 15), ("image_id", 32),
           ("model_hash", 32), ("height", 12), ("width", 12), ("channels", 4))
N_INFO = sum(w for _, w in _FIELDS)          # 130
N_BITS = N_INFO + 32                          # 162
SEQ_MOD = 1 << 15


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
    bcr: str = ""          # not transmitted (see module doc); kept for the caller's convenience
    seq: int = 0

    def words(self) -> dict:
        iid = str(self.image_id)
        if iid.isdigit() and int(iid) < 2 ** 32 and str(int(iid)) == iid:
            numeric, iid_num = 1, int(iid)
        else:
            numeric, iid_num = 0, crc32_str(iid)
        if not 1 <= int(self.k) < 2 ** 20:
            raise InputError(f"k = {self.k} does not fit the header (1 … {2 ** 20 - 1} symbols)")
        for name, val, lim in (("height", self.height, 4096), ("width", self.width, 4096),
                               ("channels", self.channels, 16)):
            if not 0 <= int(val) < lim:
                raise InputError(f"{name} = {val} does not fit the header (< {lim})")
        mh = crc32_str(self.model_id) if self.model_id else 0
        return dict(version=VERSION, k=int(self.k), id_numeric=numeric, seq=int(self.seq) % SEQ_MOD,
                    image_id=iid_num, model_hash=mh, height=int(self.height),
                    width=int(self.width), channels=int(self.channels))


def _crc(info_bits: np.ndarray) -> int:
    return zlib.crc32(np.packbits(info_bits).tobytes()) & 0xFFFFFFFF


def header_int(h: HeaderFields) -> int:
    """The 162 header bits as an integer: info (130 bits) followed by CRC32."""
    w = h.words()
    v = 0
    for name, width in _FIELDS:
        v = (v << width) | w[name]
    crc = zlib.crc32((v << (136 - N_INFO)).to_bytes(17, "big")) & 0xFFFFFFFF   # = _crc(info bits)
    return (v << 32) | crc


def pack_bits(h: HeaderFields) -> np.ndarray:
    return np.unpackbits(np.frombuffer(header_int(h).to_bytes(21, "big"), np.uint8))[-N_BITS:]


def unpack_bits(bits: np.ndarray) -> dict | None:
    """162 bits → field dict, or None when the CRC fails (or the version is not ours)."""
    info = bits[:N_INFO]
    crc = int.from_bytes(np.packbits(bits[N_INFO:N_BITS]).tobytes(), "big")
    if crc != _crc(info):
        return None
    v = int.from_bytes(np.packbits(np.r_[np.zeros(6, np.uint8), info]).tobytes(), "big")
    out = {}
    for name, width in reversed(_FIELDS):
        out[name] = v & ((1 << width) - 1)
        v >>= width
    if out["version"] != VERSION or out["k"] == 0:
        return None
    return out


# --- RM(1,5) ---------------------------------------------------------------------------
_J = np.arange(32)
_G = np.vstack([np.ones(32, np.uint8)] + [((_J >> i) & 1).astype(np.uint8) for i in range(5)])  # 6×32
_U = ((np.arange(64)[:, None] >> np.arange(5, -1, -1)[None, :]) & 1).astype(np.uint8)         # 64×6, MSB first
_CODEBOOK = (_U @ _G) % 2                                                                       # 64×32
_SIGNS = (1.0 - 2.0 * _CODEBOOK).astype(np.float32)


def rm_encode(bits: np.ndarray) -> np.ndarray:
    u = bits.reshape(-1, 6)
    return ((u @ _G) % 2).astype(np.uint8).reshape(-1)


def _fht32(x: np.ndarray) -> np.ndarray:
    """Walsh-Hadamard transform of the rows of x (N, 32): W[a] = Σ_j x_j (-1)^{popcount(a&j)}."""
    n = x.shape[0]
    h = 1
    while h < 32:
        y = x.reshape(n, 32 // (2 * h), 2, h)
        x = np.concatenate([y[:, :, 0] + y[:, :, 1], y[:, :, 0] - y[:, :, 1]], axis=2).reshape(n, 32)
        h *= 2
    return x


# codeword index for (Hadamard row a, sign): correlation with codeword idx = ±W[a]
_H32 = _fht32(np.eye(32))
_IDX_OF = np.zeros((32, 2), np.int64)
for _i in range(64):
    _r = int(np.argmax(np.abs(_H32 @ _SIGNS[_i])))
    _IDX_OF[_r, int((_H32 @ _SIGNS[_i])[_r] < 0)] = _i


def rm_decode_idx(soft: np.ndarray) -> np.ndarray:
    """soft (..., 32·m): positive ⇒ bit 0. Returns the ML codeword indices (..., m).
    The 64 correlations of a biorthogonal code are ±(Walsh-Hadamard transform): ML = the row with
    the largest |W|, its sign gives the complement bit (fast Hadamard transform, no matrix product)."""
    W = _fht32(soft.reshape(-1, 32).astype(np.float32))
    a = np.argmax(np.abs(W), axis=1)
    neg = W[np.arange(W.shape[0]), a] < 0
    return _IDX_OF[a, neg.astype(np.int64)].reshape(soft.shape[:-1] + (-1,))


def rm_decode(soft: np.ndarray) -> np.ndarray:
    return _U[rm_decode_idx(soft)].reshape(-1)


# --- mapping onto the header OFDM symbols -------------------------------------------------
def _map_coded(p: OfdmParams, coded: np.ndarray) -> np.ndarray:
    """coded (B, n_header_bits) uint8 (before repetition) → (B, n_header_syms, 48) symbols."""
    t = tables(p)
    c = np.tile(coded, (1, p.header_rep)) ^ t["hdr_pn"][None, :]
    tx = c[:, t["hdr_perm"]]                                    # slot i carries coded bit perm[i]
    s = 1.0 - 2.0 * tx.astype(np.float32)
    if p.header_mod == "qpsk":
        s = (s[:, 0::2] + 1j * s[:, 1::2]) / np.sqrt(2)
    return s.astype(np.complex64).reshape(coded.shape[0], p.n_header_syms, 48)


def encode_header(p: OfdmParams, h: HeaderFields) -> np.ndarray:
    """Header → (n_header_syms, 48) complex data-subcarrier values."""
    return _map_coded(p, rm_encode(pack_bits(h))[None, :])[0]


def encode_headers(p: OfdmParams, hs) -> np.ndarray:
    """A batch of headers → (B, n_header_syms, 48)."""
    raw = np.frombuffer(b"".join(header_int(h).to_bytes(21, "big") for h in hs), np.uint8)
    info = np.unpackbits(raw.reshape(len(hs), 21), axis=1)[:, -N_BITS:].reshape(len(hs), -1, 6)
    coded = ((info @ _G) % 2).astype(np.uint8).reshape(len(hs), -1)
    return _map_coded(p, coded)


def symbols_from_idx(p: OfdmParams, idx: np.ndarray) -> np.ndarray:
    """Decoded codeword indices (B, 27) → the header symbols that were sent (B, n_h, 48)."""
    return _map_coded(p, _CODEBOOK[idx].reshape(idx.shape[0], -1).astype(np.uint8))


def decode_headers(p: OfdmParams, soft_syms: np.ndarray):
    """soft_syms (B, n_header_syms, 48) matched-filter outputs Y·conj(Ĥ)·e^{-jθ} (MRC-weighted).
    Returns (list of field dicts or None per header, codeword indices (B, 27))."""
    t = tables(p)
    B = soft_syms.shape[0]
    s = soft_syms.reshape(B, -1)
    if p.header_mod == "qpsk":
        soft = np.empty((B, 2 * s.shape[1]), np.float32)
        soft[:, 0::2], soft[:, 1::2] = s.real, s.imag
    else:
        soft = s.real.astype(np.float32)
    coded_soft = soft[:, t["hdr_perm_inv"]] * t["hdr_sign"][None, :]     # de-interleave, de-whiten
    coded_soft = coded_soft.reshape(B, p.header_rep, -1).sum(axis=1)      # combine repetitions
    idx = rm_decode_idx(coded_soft)
    bits = _U[idx].reshape(B, -1)
    return [unpack_bits(b) for b in bits], idx


def decode_header(p: OfdmParams, soft_syms: np.ndarray) -> dict | None:
    return decode_headers(p, soft_syms[None])[0][0]


def bcr_of(k: int, h: int, w: int, c: int) -> str:
    n = int(h) * int(w) * int(c)
    if n <= 0:
        return ""
    f = Fraction(int(k), n)
    return f"{f.numerator}/{f.denominator}"


def fields_to_meta(f: dict, model_ids=(), image_ids=(), model_bcr=None) -> dict:
    """Header fields → PDU metadata (CONVENTIONS keys + ``seq``; see the module doc for ids).
    model_ids / image_ids: known ids (or precomputed {crc32: id} dicts) to map hashes back."""
    models = model_ids if isinstance(model_ids, dict) else {crc32_str(m): m for m in model_ids}
    images = image_ids if isinstance(image_ids, dict) else {crc32_str(i): i for i in image_ids}
    if f["id_numeric"]:
        iid = str(f["image_id"])
    else:
        iid = images.get(f["image_id"], f"ota/{f['seq']}-{f['image_id']:08x}")
    mid = models.get(f["model_hash"], f"#{f['model_hash']:08x}") if f["model_hash"] else ""
    meta = {"image_id": iid, "k": f["k"], "model_id": mid, "height": f["height"],
            "width": f["width"], "channels": f["channels"], "seq": f["seq"]}
    if not f["id_numeric"]:
        meta["image_id_crc32"] = f"{f['image_id']:08x}"
    bcr = (model_bcr or {}).get(mid) or bcr_of(f["k"], f["height"], f["width"], f["channels"])
    if bcr:
        meta["bcr"] = bcr
    return meta
