# SPDX-License-Identifier: GPL-3.0-or-later
"""Subcarrier plan, training sequences, pilots and the payload interleaver.

All sequences are fixed functions of constant seeds so that TX and RX agree without exchange.
Frequency-domain grids hold unit-scale values (data z with E|z|² = 1, pilots ±1, LTF ±1); the
time-domain signal is x = a · IDFT_unitary(grid) with a = sqrt(N / N_used), so its mean power is 1.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar

import numpy as np

from ..errors import InputError

HEADER_MODS = ("qpsk", "bpsk", "bpsk-x2")


def _bins(ks, n):
    return np.asarray([k % n for k in ks], dtype=np.int64)


@dataclass(frozen=True)
class OfdmParams:
    fft_len: int = 64
    cp_len: int = 16
    header_mod: str = "qpsk"        # 9 header symbols, reliable >= ~3 dB; "bpsk": 18, >= ~0 dB;
                                    # "bpsk-x2" (coded bits sent twice): 36, down to about -5 dB
    stf_reps: int = 16              # STF = stf_reps periods of 16 samples
    backoff: int = 4                # FFT window starts this many samples early (inside the CP)
    rx_taper: int = 6               # receiver windowing: raised-cosine edges over this many CP
                                    # samples before the window (the window starts backoff +
                                    # rx_taper early; see OfdmReceiver._demod)
    smooth_taps: int = 10           # delay-basis size for channel smoothing (<= CP)
    n_data: ClassVar[int] = 48      # data subcarriers
    ltf_cp: ClassVar[int] = 32      # LTF cyclic prefix (samples)
    n_header_bits: ClassVar[int] = 864      # 27 codewords × 32

    def __post_init__(self):
        if self.fft_len != 64:
            raise InputError("only FFT 64 (802.11a plan: 48 data + 4 pilots) is implemented")
        if not 4 <= self.cp_len <= 32:
            raise InputError(f"cp_len {self.cp_len} must lie in [4, 32]")
        if self.header_mod not in HEADER_MODS:
            raise InputError(f"header_mod {self.header_mod!r}: choose one of {HEADER_MODS}")
        if not 0 <= self.backoff < self.cp_len:
            raise InputError("backoff must lie in [0, cp_len)")
        if self.rx_taper < 0 or self.fft_offset >= self.cp_len:
            raise InputError(f"backoff + rx_taper = {self.fft_offset} must lie in [0, cp_len = "
                             f"{self.cp_len}); lower rx_taper")
        if self.stf_reps < 4:
            raise InputError("stf_reps must be >= 4")

    # --- subcarrier plan (802.11a) ---
    @property
    def used_k(self):
        return np.r_[np.arange(-26, 0), np.arange(1, 27)]

    @property
    def pilot_k(self):
        return np.array([-21, -7, 7, 21])

    @property
    def data_k(self):
        return np.setdiff1d(self.used_k, self.pilot_k)

    @property
    def fft_offset(self):           # samples the FFT window starts before the end of the CP
        return self.backoff + self.rx_taper

    @property
    def sym_len(self):
        return self.fft_len + self.cp_len

    @property
    def stf_len(self):
        return 16 * self.stf_reps

    @property
    def ltf_len(self):
        return self.ltf_cp + 2 * self.fft_len

    @property
    def scale(self):
        return float(np.sqrt(self.fft_len / 52.0))

    @property
    def header_rep(self):
        return 2 if self.header_mod == "bpsk-x2" else 1

    @property
    def n_header_syms(self):
        return self.n_header_bits * self.header_rep // (96 if self.header_mod == "qpsk" else 48)

    def n_payload_syms(self, k: int) -> int:
        return -(-int(k) // self.n_data)

    def frame_len(self, k: int) -> int:
        return self.stf_len + self.ltf_len + (self.n_header_syms + self.n_payload_syms(k)) * self.sym_len


@lru_cache(maxsize=8)
def tables(p: OfdmParams):
    """Everything derived from the parameters (cached)."""
    n = p.fft_len
    rng = np.random.default_rng(0x51C0FD)
    t = {}
    t["used"] = _bins(p.used_k, n)
    t["pilot"] = _bins(p.pilot_k, n)
    t["data"] = _bins(p.data_k, n)
    # positions of pilots/data inside the 52 used bins (for the smoothing projection; used_k is sorted)
    t["pilot_in_used"] = np.searchsorted(p.used_k, p.pilot_k)
    t["data_in_used"] = np.searchsorted(p.used_k, p.data_k)
    # STF: QPSK on multiples of 4 in ±24 -> period 16; scaled to unit mean power
    stf_k = np.r_[np.arange(-24, 0, 4), np.arange(4, 25, 4)]
    g = np.zeros(n, complex)
    g[_bins(stf_k, n)] = np.exp(1j * np.pi / 4 * (2 * rng.integers(0, 4, stf_k.size) + 1))
    stf_sym = np.fft.ifft(g) * np.sqrt(n) * np.sqrt(n / stf_k.size)
    t["stf"] = np.tile(stf_sym[:16], p.stf_reps).astype(np.complex64)
    # LTF: BPSK ±1 on the 52 used bins
    ltf_vals = 1.0 - 2.0 * rng.integers(0, 2, 52)
    g = np.zeros(n, complex)
    g[t["used"]] = ltf_vals
    ltf_td = np.fft.ifft(g) * np.sqrt(n) * p.scale
    t["ltf_vals"] = ltf_vals
    t["ltf_td"] = ltf_td.astype(np.complex64)
    t["ltf"] = np.r_[ltf_td[-p.ltf_cp:], ltf_td, ltf_td].astype(np.complex64)
    t["preamble"] = np.r_[t["stf"], t["ltf"]]
    # pilots: base [1, 1, 1, -1] times a ±1 polarity per OFDM symbol (127-periodic PN)
    t["pilot_base"] = np.array([1.0, 1.0, 1.0, -1.0])
    t["pilot_pol"] = 1.0 - 2.0 * rng.integers(0, 2, 127)
    # header: bit interleaver and whitening
    pn = rng.integers(0, 2, p.n_header_bits).astype(np.uint8)
    t["hdr_pn"] = np.tile(pn, p.header_rep)
    t["hdr_perm"] = np.random.default_rng(0x4EAD).permutation(p.n_header_bits * p.header_rep)
    t["hdr_perm_inv"] = np.argsort(t["hdr_perm"])
    t["hdr_sign"] = (1.0 - 2.0 * t["hdr_pn"]).astype(np.float32)
    # smoothing projection: Ĥ = B (BᴴB)⁻¹ Bᴴ H̃ over the used bins, delays o-3 … o-3+smooth_taps-1
    # with o = fft_offset (the window starts o samples early ⇒ the channel looks delayed by o)
    d = np.arange(p.smooth_taps) + p.fft_offset - 3
    B = np.exp(-2j * np.pi * np.outer(p.used_k, d) / n)
    P = B @ np.linalg.pinv(B)
    # the same product on interleaved float32 (re, im) rows: x.view(f32) @ projR = (x @ P.T).view(f32)
    A = P.T
    R = np.zeros((104, 104))
    R[0::2, 0::2], R[0::2, 1::2] = A.real, A.imag
    R[1::2, 0::2], R[1::2, 1::2] = -A.imag, A.real
    t["projR"] = R.astype(np.float32)
    t["basis"] = B
    t["proj_abs2"] = np.abs(P) ** 2
    # receiver window: raised-cosine rise over the rx_taper samples folded from behind the window
    w = p.rx_taper
    t["taper"] = (0.5 * (1 - np.cos(np.pi * (np.arange(w) + 0.5) / w))).astype(np.float32) if w else None
    return t


def pilots_for(p: OfdmParams, n_sym: int, first: int = 0) -> np.ndarray:
    """(n_sym, 4) pilot values of OFDM symbols first … first+n_sym-1 (counted from the header)."""
    t = tables(p)
    pol = t["pilot_pol"][(np.arange(first, first + n_sym)) % 127]
    return pol[:, None] * t["pilot_base"][None, :]


@lru_cache(maxsize=64)
def interleaver(n_slots: int) -> np.ndarray:
    """Fixed pseudo-random permutation of the payload slots: slot i carries symbol perm[i].

    Neighbouring JSCC symbols land on distant subcarriers and OFDM symbols, so a faded subcarrier
    hits scattered symbols (Yoo et al., arXiv 2501.16726)."""
    return np.random.default_rng(0x1A7E + n_slots).permutation(n_slots)


@lru_cache(maxsize=64)
def deinterleaver(n_slots: int) -> np.ndarray:
    """Inverse of `interleaver`: z = slots[deinterleaver(n)] undoes slots = z[interleaver(n)]."""
    return np.argsort(interleaver(n_slots))


@lru_cache(maxsize=64)
def pad_symbols(n_pad: int) -> np.ndarray:
    rng = np.random.default_rng(0xFAD)
    return np.exp(2j * np.pi * rng.random(n_pad)).astype(np.complex64)
