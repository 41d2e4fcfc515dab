"""Streaming OFDM JSCC receiver (pure numpy): push samples, get frames. Vectorised per chunk: every
step below runs once for all candidates / frames found in the samples pushed so far.

  METRIC  Schmidl-Cox M(d), P(d) computed once per new sample and kept with the buffer (sync.py).
  SEARCH  runs of M > detect_threshold (gaps < 32 merged, runs > 1024 split) → one candidate at
          each run's maximum.
  HEADER  (all candidates at once) coarse CFO from P(d̂); LTF timing ρ(τ) > ltf_threshold around
          d̂ + STF; fine CFO; LTF channel estimate (chanest.py); header symbols: CPE (cpe.py), MRC
          soft bits, RM decoding, CRC32 (header.py). A candidate whose header pilots do not look
          like pilots is a false sync (counted silently); one whose pilots are fine but CRC fails is
          a bad header (counted, logged). Good headers refine the channel estimate (header-aided LS).
  WALK    candidates in time order; one inside an accepted frame is ignored; a frame whose payload
          has not fully arrived waits (``pending``).
  PAYLOAD (all complete frames at once, grouped by length) CPE over header + payload pilots,
          zero-forcing (no decision feedback on the analog payload), de-interleave, SNR estimate
          (snr.py). A frame whose last symbols carry no pilots any more (cut short, overrun by the
          next preamble) is truncated: dropped, and the search resumes after its header.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np
import scipy.fft

from . import chanest, cpe, snr, sync
from .header import decode_headers, fields_to_meta, symbols_from_idx
from .params import OfdmParams, deinterleaver, pilots_for, tables

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

    def as_dict(self) -> dict:
        return asdict(self)


class OfdmReceiver:
    def __init__(self, p: OfdmParams = OfdmParams(), detect_threshold: float = 0.02,
                 ltf_threshold: float = 0.08, use_nulls: bool = True, smooth: bool = True,
                 header_aided: bool = True, cpe_window: int = 9, max_k: int = 1 << 20,
                 model_ids=(), image_ids=(), model_bcr=None, logger=None):
        from .header import crc32_str
        self.p = p
        self.t = tables(p)
        self.thr = float(detect_threshold)
        self.ltf_thr = float(ltf_threshold)
        self.use_nulls = use_nulls
        self.smooth = smooth
        self.header_aided = header_aided
        self.cpe_window = int(cpe_window)
        self.max_k = int(max_k)
        self.model_ids = {crc32_str(m): m for m in model_ids}
        self.image_ids = {crc32_str(i): i for i in image_ids}
        self.model_bcr = dict(model_bcr or {})
        self.log = logger or log
        self.counters = RxCounters()
        self.buf = np.zeros(0, np.complex64)
        self.M = np.zeros(0, np.float32)         # Schmidl-Cox metric, aligned with buf
        self.Pm = np.zeros(0, np.complex64)
        self.base = 0                 # absolute index of buf[0]
        self.pos = 0                  # absolute: candidates before this are done
        self.pending = None           # decoded header waiting for its payload
        self.lag, self.win = 16, 16 * (p.stf_reps - 1)
        self.search = 40              # ± samples of LTF timing search
        self.merge_gap = 32
        nh = p.n_header_syms
        self.need_hdr = p.stf_len + p.ltf_cp + self.search + 2 + 2 * p.fft_len + nh * p.sym_len + 8
        self._m64 = np.arange(p.fft_len)

    # ---------------------------------------------------------------- public
    def push(self, x: np.ndarray) -> list[RxFrame]:
        x = np.asarray(x, np.complex64).reshape(-1)
        if x.size:
            self.buf = np.concatenate([self.buf, x])
            self._update_metric()
        out = []
        while True:
            ready, events = [], []
            if self.pending is not None:
                if self.pending["end"] > self.base + self.buf.size:
                    break
                ready.append(self.pending)
                self.pos = self.pending["end"]
                self.pending = None
            cands, scan_end = self._candidates()
            lead = self.p.stf_len + self.p.ltf_cp      # frame start = LTF timing - lead
            hdrs = self._headers(np.asarray(cands, np.int64)) if cands else []
            for d, h in zip(cands, hdrs):
                if h.get("t1", d + lead) - lead < self.pos - 8:
                    continue                       # inside a frame accepted just before
                events.append(h)
                if h["status"] != "ok":
                    continue
                if h["end"] <= self.base + self.buf.size:
                    ready.append(h)
                    self.pos = h["end"]
                else:
                    self.pending = h
                    self.pos = h["d"]
                    break
            if self.pending is None:
                self.pos = max(self.pos, scan_end)
            frames, trunc = self._payloads(ready) if ready else ([], None)
            if trunc is not None:                  # roll back everything found after it
                st = ready[trunc]
                events = [e for e in events if e["d"] <= st["d"]]
                self.pending = None
                self.pos = st["td"] + self.p.n_header_syms * self.p.sym_len
            self._commit(events)
            out += frames
            if trunc is not None:
                self.counters.truncated += 1
                self.log.warning("OFDM RX: dropped image %s at sample %d: frame truncated (pilots "
                                 "vanish in its last symbols)", st["meta"]["image_id"], st["d"])
                continue
            if not ready:
                break
        self._trim()
        return out

    # ---------------------------------------------------------------- helpers
    def _commit(self, events):
        c = self.counters
        for h in events:
            c.detections += 1
            if h["status"] == "false":
                c.false_syncs += 1
            elif h["status"] == "bad":
                c.bad_headers += 1
                self.log.warning("OFDM RX: dropped a frame at sample %d: %s", h["d"], h["why"])

    def _update_metric(self):
        start = self.M.size
        if self.buf.size - start >= self.win + self.lag + 1:
            M, P = sync.sc_metric(self.buf[start:], self.lag, self.win)
            self.M = np.concatenate([self.M, M])
            self.Pm = np.concatenate([self.Pm, P])

    def _trim(self):
        keep = self.pos - 512
        if self.pending is not None:
            keep = min(keep, self.pending["d"] - 64)
        drop = min(keep - self.base, self.M.size)
        if drop > 0:
            self.buf = self.buf[drop:]
            self.M = self.M[drop:]
            self.Pm = self.Pm[drop:]
            self.base += drop

    def _candidates(self):
        """Peaks of M above threshold after self.pos whose header has fully arrived (absolute
        positions), and the absolute position up to which M has been scanned."""
        i0 = max(self.pos - self.base, 0)
        m = self.M[i0:]
        idx = np.flatnonzero(m > self.thr)
        if idx.size == 0:
            return [], self.base + self.M.size
        brk = np.flatnonzero(np.diff(idx) > self.merge_gap)
        starts = idx[np.r_[0, brk + 1]] + i0
        ends = idx[np.r_[brk, idx.size - 1]] + i0 + 1
        limit = self.buf.size - self.need_hdr
        cands = []
        for s, e in zip(starts.tolist(), ends.tolist()):
            closed = e + self.merge_gap < self.M.size
            pieces = [(s, e)] if e - s <= 1024 else [(a, min(a + 512, e)) for a in range(s, e, 512)]
            for a, b in pieces:
                if (not closed and b == e) or a > limit:
                    return cands, self.base + a
                d = a + int(np.argmax(self.M[a:b]))
                if d > limit:
                    return cands, self.base + a
                cands.append(self.base + d)
        return cands, self.base + self.M.size

    def _demod(self, starts: np.ndarray, f: np.ndarray, ref: np.ndarray) -> np.ndarray:
        """Unitary FFTs of the 64-sample windows at buffer positions starts (F, n), CFO f (F,)
        removed with phase reference ref (F,): Y = FFT(y(s+m) e^{-j2πf(s-ref+m)}) / 8."""
        m = self._m64
        w = self.buf[starts[:, :, None] + m]
        ramp = np.exp(-2j * np.pi * f[:, None] * m[None, :]).astype(np.complex64)
        ph = np.exp(-2j * np.pi * f[:, None] * (starts - ref[:, None])).astype(np.complex64)
        w = w * ramp[:, None, :] * ph[:, :, None]
        return scipy.fft.fft(w, axis=-1) * np.float32(1 / np.sqrt(self.p.fft_len))

    def _headers(self, d: np.ndarray) -> list[dict]:
        p, t = self.p, self.t
        C, nh, b = d.size, p.n_header_syms, p.backoff
        rel = d - self.base
        f_c = np.angle(self.Pm[rel]) / (2 * np.pi * self.lag)
        a = rel + p.stf_len + p.ltf_cp - self.search
        S = 2 * self.search + 2 * p.fft_len + 1
        rho = sync.ltf_timing(self.buf[a[:, None] + np.arange(S)], t["ltf_td"], f_c)
        j = np.argmax(rho, axis=1)
        rmax = rho[np.arange(C), j]
        t1 = a + j
        pre = 24
        ii = np.arange(p.fft_len + pre) - pre
        f = f_c + sync.fine_cfo(self.buf[t1[:, None] + ii], self.buf[t1[:, None] + ii + p.fft_len], f_c)
        td = t1 + 2 * p.fft_len
        starts = np.concatenate([np.stack([t1 - b, t1 + p.fft_len - b], 1),
                                 td[:, None] + p.sym_len * np.arange(nh)[None, :] + p.cp_len - b], 1)
        Y = self._demod(starts, f, rel)
        acc, nsum, ndof = chanest.ltf_ls(p, Y[:, 0], Y[:, 1])
        H0 = chanest.smooth(p, acc / 2, self.smooth)
        Yh = Y[:, 2:]
        Pp = pilots_for(p, nh, 0)
        theta, g, _ = cpe.track(Yh[:, :, t["pilot"]], H0[:, t["pilot"]], Pp, self.cpe_window)
        soft = Yh[:, :, t["data"]] * np.conj(H0[:, None, t["data"]]) * np.exp(-1j * theta)[:, :, None]
        fields, idx = decode_headers(p, soft)
        res, ok = [], []
        for i in range(C):
            h = {"d": int(d[i]), "status": "ok"}
            fi = fields[i]
            if rmax[i] < self.ltf_thr:
                h["status"] = "false"
            elif fi is None:
                if float(np.mean(g[i])) > 0.4:
                    h.update(status="bad", why="header CRC failed (pilots fine, bits wrong: SNR too "
                                                "low or interference)")
                else:
                    h["status"] = "false"
            elif fi["k"] > self.max_k:
                h.update(status="bad", why=f"k = {fi['k']} exceeds max_k = {self.max_k}")
            else:
                n = nh + p.n_payload_syms(fi["k"])
                h.update(fields=fi, t1=int(t1[i] + self.base), td=int(td[i] + self.base),
                         end=int(td[i] + self.base + n * p.sym_len), n=n, f=float(f[i]),
                         meta=fields_to_meta(fi, self.model_ids, self.image_ids, self.model_bcr))
                ok.append(i)
            res.append(h)
        if ok:
            ok = np.asarray(ok)
            lev = chanest.leverage(p, self.smooth)
            nsum_ok = nsum[ok]
            if self.header_aided:
                X = symbols_from_idx(p, idx[ok])
                hacc, Yr = chanest.header_ls(p, Yh[ok], theta[ok], X, Pp)
                n_t = 2 + nh
                H = chanest.smooth(p, (acc[ok] + hacc) / n_t, self.smooth)
                r = Yr[:, :, t["data"]] - H[:, None, t["data"]] * X
                nsum_ok = nsum_ok + np.sum(r.real ** 2 + r.imag ** 2, axis=(1, 2))
                hdof = nh * float(np.sum(1 - lev[t["data_in_used"]] / n_t))
            else:
                n_t, H, hdof = 2, H0[ok], 0.0
            Ln = Y[ok][:, :2][:, :, t["null"]]
            lnull = np.sum(Ln.real ** 2 + Ln.imag ** 2, axis=(1, 2))
            for q, i in enumerate(ok.tolist()):
                res[i].update(H=H[q], n_t=n_t, nsum=float(nsum_ok[q]), ndof=ndof + hdof,
                              nsum_ltf=float(nsum[i]), lnull=float(lnull[q]))
        return res

    def _payloads(self, ready: list[dict]):
        """Equalise all complete frames (grouped by length). Returns (frames in order up to the
        first truncated one, index of that truncated frame or None)."""
        p, t = self.p, self.t
        nh, b = p.n_header_syms, p.backoff
        results = [None] * len(ready)
        trunc_flags = [False] * len(ready)
        groups: dict[int, list[int]] = {}
        for i, st in enumerate(ready):
            groups.setdefault(st["n"], []).append(i)
        for n, ids in groups.items():
            sts = [ready[i] for i in ids]
            F, npl = len(sts), n - nh
            d_rel = np.array([s["d"] for s in sts]) - self.base
            td_rel = np.array([s["td"] for s in sts]) - self.base
            f = np.array([s["f"] for s in sts])
            starts = td_rel[:, None] + p.sym_len * np.arange(n)[None, :] + p.cp_len - b
            Y = self._demod(starts, f, d_rel)
            H = np.stack([s["H"] for s in sts])
            Hp, Hd = H[:, t["pilot"]], H[:, t["data"]]
            Pp = pilots_for(p, n, 0)
            Yp = Y[:, :, t["pilot"]]
            theta, g, wlen = cpe.track(Yp, Hp, Pp, self.cpe_window)
            tl = min(4, npl) if npl else 1
            s2r = np.array([s["nsum_ltf"] for s in sts]) / 52.0
            std = np.sqrt(s2r / (2 * np.maximum(np.sum(np.abs(Hp) ** 2, axis=1), 1e-30) * tl))
            trunc = np.mean(g[:, -tl:], axis=1) < np.minimum(0.5, 1 - 4 * std)
            Yd = Y[:, nh:, t["data"]] * (np.exp(-1j * theta[:, nh:]).astype(np.complex64)[:, :, None]
                                         / Hd[:, None, :])
            slots = Yd.reshape(F, -1)
            ks = [s["fields"]["k"] for s in sts]
            z = slots[:, deinterleaver(slots.shape[1])]
            ps, pd = snr.pilot_residuals(Yp, theta, Pp)
            nsum = np.array([s["nsum"] for s in sts]) + ps
            ndof = np.array([s["ndof"] for s in sts]) + pd
            if self.use_nulls:
                Yn = Y[:, :, t["null"]]
                nsum = nsum + np.sum(Yn.real ** 2 + Yn.imag ** 2, axis=(1, 2)) + \
                    np.array([s["lnull"] for s in sts])
                ndof = ndof + (n + 2) * t["null"].size
            lev = chanest.leverage(p, self.smooth)[t["data_in_used"]]
            snr_db, snr_ch, s2 = snr.snr_estimate(nsum, ndof, Hd, lev, sts[0]["n_t"], Hp, wlen)
            for q, i in enumerate(ids):
                st = sts[q]
                if trunc[q]:
                    trunc_flags[i] = True
                    continue
                meta = dict(st["meta"])
                meta.update(snr_db=float(snr_db[q]), snr_source="estimated",
                            snr_channel_db=float(snr_ch[q]), cfo_cycles_per_sample=st["f"],
                            noise_var=float(s2[q]), ofdm_symbols=n)
                results[i] = RxFrame(np.ascontiguousarray(z[q, :ks[q]], np.complex64), meta, st["d"])
        out = []
        for i in range(len(ready)):
            if trunc_flags[i]:
                return out, i
            out.append(results[i])
            self.counters.frames += 1
        return out, None
