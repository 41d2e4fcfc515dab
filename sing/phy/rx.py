"""Streaming OFDM JSCC receiver (pure numpy): push samples, get frames.

State machine over an internal buffer:
  SEARCH  Schmidl-Cox metric M(d) > detect_threshold → peak d̂ within one STF length (sync.py).
  HEADER  coarse CFO from P(d̂); LTF timing ρ(τ) > ltf_threshold around d̂ + STF; fine CFO; channel
          estimate (chanest.py); header symbols: CPE (cpe.py), MRC soft bits, RM decoding, CRC32.
          A candidate whose header pilots do not look like pilots is a false sync (counted silently);
          one whose pilots are fine but CRC fails is a bad header (counted, logged).
  PAYLOAD wait for the whole frame, CPE over header + payload pilots, zero-forcing equalisation
          (no decision feedback), de-interleave, SNR estimate (snr.py). A frame whose last symbols
          carry no pilots any more (cut short, overrun by the next preamble) is truncated: dropped.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from . import chanest, cpe, snr, sync
from .header import decode_header, fields_to_meta
from .params import OfdmParams, interleaver, pilots_for, tables

log = logging.getLogger("sing.phy.rx")


@dataclass
class RxFrame:
    symbols: np.ndarray          # (k,) complex64, equalised, original order
    meta: dict                   # PDU metadata (CONVENTIONS keys + PHY statistics)
    start: int                   # absolute sample index of the frame start (STF)


@dataclass
class RxCounters:
    detections: int = 0
    false_syncs: int = 0
    bad_headers: int = 0
    truncated: int = 0
    frames: int = 0

    def as_dict(self):
        return dict(self.__dict__)


class OfdmReceiver:
    def __init__(self, p: OfdmParams = OfdmParams(), detect_threshold: float = 0.02,
                 ltf_threshold: float = 0.08, use_nulls: bool = True, smooth: bool = True,
                 cpe_window: int = 9, max_k: int = 1 << 20, model_ids=(), logger=None):
        self.p = p
        self.t = tables(p)
        self.thr = float(detect_threshold)
        self.ltf_thr = float(ltf_threshold)
        self.use_nulls = use_nulls
        self.smooth = smooth
        self.cpe_window = int(cpe_window)
        self.max_k = int(max_k)
        self.model_ids = tuple(model_ids)
        self.log = logger or log
        self.counters = RxCounters()
        self.buf = np.zeros(0, np.complex64)
        self.base = 0                 # absolute index of buf[0]
        self.pos = 0                  # search position inside buf
        self.pending = None           # decoded header waiting for its payload
        self.lag, self.win = 16, 16 * (p.stf_reps - 1)
        self.search = 40              # ± samples of LTF timing search

    # ---------------------------------------------------------------- public
    def push(self, x: np.ndarray) -> list[RxFrame]:
        self.buf = np.concatenate([self.buf, np.asarray(x, np.complex64)])
        out = []
        while True:
            if self.pending is not None:
                fr = self._try_payload()
                if fr is None:
                    break
                if fr is not False:
                    out.append(fr)
                continue
            if not self._search_step():
                break
        self._trim()
        return out

    # ---------------------------------------------------------------- helpers
    def _trim(self):
        keep_from = max(0, self.pos - 256)
        if self.pending is not None:
            keep_from = min(keep_from, self.pending["s0"])
        if keep_from > 0:
            self.buf = self.buf[keep_from:]
            self.base += keep_from
            self.pos -= keep_from
            if self.pending is not None:
                for key in ("s0", "t1", "td", "d0"):
                    self.pending[key] -= keep_from

    def _search_step(self) -> bool:
        p = self.p
        need_hdr = p.stf_len + self.search + p.ltf_len + p.n_header_syms * p.sym_len + 128
        seg = self.buf[self.pos:]
        if seg.size < self.win + self.lag + 1:
            return False
        M, P = sync.sc_metric(seg, self.lag, self.win)
        hit = np.flatnonzero(M > self.thr)
        if hit.size == 0:
            self.pos += M.size
            return False
        i0 = int(hit[0])
        span = p.stf_len
        while True:                        # climb to the local maximum of M (the STF start)
            if i0 + span >= M.size or self.pos + i0 + need_hdr > self.buf.size:
                self.pos += i0             # wait for more samples
                return False
            d = i0 + int(np.argmax(M[i0:i0 + span]))
            if self.pos + d + need_hdr > self.buf.size:
                self.pos += i0
                return False
            if d - i0 < span - 16:
                break
            i0 = d
        self.counters.detections += 1
        res = self._header_at(self.pos + d, complex(P[d]))
        if res is None:
            self.pos += d + 64
            return True
        self.pending = res
        return True

    def _fft(self, y: np.ndarray, starts: np.ndarray) -> np.ndarray:
        idx = starts[:, None] + np.arange(self.p.fft_len)[None, :]
        return np.fft.fft(y[idx], axis=1) / np.sqrt(self.p.fft_len)

    def _header_at(self, d0: int, Pd: complex):
        p, t = self.p, self.t
        f_c = float(np.angle(Pd) / (2 * np.pi * self.lag))
        t1_nom = d0 + p.stf_len + p.ltf_cp
        a = t1_nom - self.search
        s0 = max(0, d0 - 8)
        seg_end = t1_nom + self.search + 2 * p.fft_len + p.n_header_syms * p.sym_len + 64
        y = sync.rotate(self.buf[s0:seg_end], f_c, s0)
        rho = sync.ltf_timing(y[a - s0:a - s0 + 2 * self.search + 2 * p.fft_len + 1], t["ltf_td"])
        j = int(np.argmax(rho))
        if rho[j] < self.ltf_thr:
            self.counters.false_syncs += 1
            return None
        t1 = a + j
        f_f = sync.fine_cfo(y, t1 - s0)
        f = f_c + f_f
        y = sync.rotate(self.buf[s0:seg_end], f, s0)
        b = p.backoff
        L = self._fft(y, np.array([t1 - b - s0, t1 + p.fft_len - b - s0]))
        H, lev, nsum, ndof = chanest.estimate(p, L[0], L[1], self.smooth)
        td = t1 + 2 * p.fft_len
        nh = p.n_header_syms
        Yh = self._fft(y, td - s0 + p.sym_len * np.arange(nh) + p.cp_len - b)
        Pp = pilots_for(p, nh, 0)
        theta, g, _ = cpe.track(Yh[:, t["pilot"]], H[t["pilot"]], Pp, self.cpe_window)
        Hd = H[t["data"]]
        soft = Yh[:, t["data"]] * np.conj(Hd)[None, :] * np.exp(-1j * theta)[:, None]
        fields = decode_header(p, soft)
        if fields is None:
            if np.mean(g) > 0.4:
                self.counters.bad_headers += 1
                self.log.warning("OFDM RX: dropped a frame at sample %d: header CRC failed "
                                 "(pilots fine, bits wrong: SNR too low or interference)",
                                 self.base + d0)
            else:
                self.counters.false_syncs += 1
            return None
        if fields["k"] > self.max_k:
            self.counters.bad_headers += 1
            self.log.warning("OFDM RX: dropped a frame at sample %d: k = %d exceeds max_k = %d",
                             self.base + d0, fields["k"], self.max_k)
            return None
        return dict(d0=d0, s0=s0, t1=t1, td=td, f=f, f_c=f_c, H=H, lev=lev, nsum=nsum, ndof=ndof,
                    fields=fields, L=L)

    def _try_payload(self):
        """None: need more samples; False: frame dropped; else the RxFrame."""
        p, t, st = self.p, self.t, self.pending
        k = st["fields"]["k"]
        nh, npl = p.n_header_syms, p.n_payload_syms(k)
        n = nh + npl
        end = st["td"] + n * p.sym_len
        if end > self.buf.size:
            return None
        self.pending = None
        s0 = st["s0"]
        y = sync.rotate(self.buf[s0:end], st["f"], s0)
        b = p.backoff
        Y = self._fft(y, st["td"] - s0 + p.sym_len * np.arange(n) + p.cp_len - b)
        H = st["H"]
        Pp = pilots_for(p, n, 0)
        Yp = Y[:, t["pilot"]]
        theta, g, wlen = cpe.track(Yp, H[t["pilot"]], Pp, self.cpe_window)
        # truncation: the last symbols must still carry pilots
        tail = g[-min(4, npl):] if npl else g[-1:]
        s2_rough = st["nsum"] / st["ndof"]
        std = np.sqrt(s2_rough / (2 * max(np.sum(np.abs(H[t["pilot"]]) ** 2), 1e-30) * tail.size))
        if np.mean(tail) < min(0.5, 1 - 4 * std):
            self.counters.truncated += 1
            self.log.warning("OFDM RX: dropped image %s at sample %d: frame truncated (pilots vanish "
                             "in its last symbols)", st["fields"]["image_id"], self.base + st["d0"])
            self.pos = st["td"] + nh * p.sym_len
            return False
        Yd = Y[nh:, t["data"]] * np.exp(-1j * theta[nh:])[:, None]
        Hd = H[t["data"]]
        slots = (Yd / Hd[None, :]).reshape(-1)
        perm = interleaver(slots.size)
        z = np.empty_like(slots)
        z[perm] = slots
        z = z[:k].astype(np.complex64)
        # noise: LTF repetition + pilot residuals + null bins
        ps, pd = snr.pilot_residuals(Yp, theta, Pp)
        nsum, ndof = st["nsum"] + ps, st["ndof"] + pd
        if self.use_nulls:
            nb = t["null"]
            Yn = np.concatenate([Y[:, nb].reshape(-1), st["L"][:, nb].reshape(-1)])
            nsum += float(np.vdot(Yn, Yn).real)
            ndof += Yn.size
        snr_db, snr_ch, s2 = snr.snr_estimate(nsum, ndof, Hd, st["lev"][t["data_in_used"]],
                                              H[t["pilot"]], wlen)
        meta = fields_to_meta(st["fields"], self.model_ids)
        meta.update(snr_db=snr_db, snr_source="estimated", snr_channel_db=snr_ch,
                    cfo_cycles_per_sample=st["f"], noise_var=s2, ofdm_symbols=n)
        self.counters.frames += 1
        self.pos = end
        return RxFrame(z, meta, self.base + st["d0"])
