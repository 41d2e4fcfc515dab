# SPDX-License-Identifier: GPL-3.0-or-later
"""Streaming OFDM JSCC receiver (pure numpy): push samples, get frames. Vectorised per chunk: every
step below runs once for all candidates / frames found in the samples pushed so far.

  INPUT   non-finite or absurd samples (|x| > 1e15) are zeroed and remembered (a frame that
          overlaps them is dropped and counted); a constant offset is removed (sync.DcBlocker),
          then the mirror image of an IQ-imbalanced mixer (sync.IqBalancer).
  METRIC  Schmidl-Cox M(d), P(d) computed once per new sample and kept with the buffer (sync.py).
  SEARCH  runs of M > detect_threshold (gaps < 32 merged, runs > 1024 split) → one candidate per
          run, at its maximum, or where the maximum exceeds 0.5 at the last point with M ≥ 0.9 ×
          the maximum (the end of the S&C plateau, flat at high SNR).
  CHECK   (all candidates at once, no header work yet) a CW or any other periodic signal correlates
          with itself at every lag, the STF (tones on every 4th bin) not at lag 8: |P₈| ≥ ¾|P₁₆| →
          rejected. Then integer-CFO search: the lag-16 estimate f_c is ambiguous by multiples of
          1/16; the LTF cross-correlation ρ(τ) (sync.ltf_timing) is computed for every hypothesis
          f_c + m/16 (|f| ≤ max_cfo) and the best (τ, m) kept; ρ < ltf_threshold → rejected. Only
          what passes counts as a detection (thresholds: the false-alarm curve in
          docs/over_the_air.md).
  HEADER  fine CFO; LTF channel estimate (chanest.py); header symbols: CPE (cpe.py), MRC soft bits,
          RM decoding, CRC32 (header.py). A candidate whose header pilots do not look like pilots
          is a false sync; one whose pilots are fine but CRC fails is a bad header (counted,
          logged). Good headers: header-aided channel estimate and per-bin noise (snr.py), a fit
          that skips interfered bins.
  WALK    candidates in time order; one inside an accepted frame is ignored; a frame whose payload
          has not fully arrived waits (``pending``).
  PAYLOAD (all complete frames at once, grouped by length) timing drift and common phase from the
          pilots (cpe.drift, cpe.track), FFT windows moved by whole samples when the drift passes
          `slip_at` samples, a CW cancelled on interfered data bins (tones.py), zero-forcing (no
          decision feedback on the analog payload), bins still interfered shrunk (LMMSE),
          de-interleave, per-symbol variances and SNR (snr.py). A frame whose last
          symbols carry no pilots any more (cut short, overrun by the next preamble) is truncated:
          dropped, and the search resumes after its header.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field

import numpy as np
import scipy.fft

from . import chanest, cpe, snr, sync, tones
from .header import crc32_str, decode_headers, fields_to_meta, symbols_from_idx
from .params import OfdmParams, deinterleaver, pilots_for, tables

log = logging.getLogger("sing.phy.rx")

_HUGE = 1e15            # |sample| above this is treated as broken (its square overflows float32)


@dataclass
class RxFrame:
    symbols: np.ndarray          # (k,) complex64, equalised, original order
    meta: dict                   # PDU metadata (CONVENTIONS keys + PHY statistics)
    start: int                   # absolute sample index of the frame start (STF)


@dataclass
class RxCounters:
    rejected: int = 0            # metric peaks refused before any header work (noise, DC, CW)
    detections: int = 0          # preambles that passed the checks (a header was decoded)
    false_syncs: int = 0         # ... but no pilots behind them
    bad_headers: int = 0         # pilots fine, header CRC failed (or k too large)
    truncated: int = 0           # pilots vanished before the frame's end
    bad_samples: int = 0         # NaN / Inf / absurd input samples (zeroed)
    bad_input_frames: int = 0    # frames dropped because they overlapped such samples
    frames: int = 0              # frames delivered

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Training:
    """What the LTF and the decoded header give for equalising the payload (one frame)."""
    H: np.ndarray                # (64,) channel estimate (smoothed)
    noise: np.ndarray            # (52,) σ̂_k² per used bin (snr.bin_noise)
    err: np.ndarray              # (52,) variance of Ĥ per used bin (chanest.smooth_error)
    interfered: np.ndarray       # (52,) bool: bins flagged by snr.flag_interference
    obs: np.ndarray              # (N_t, 52) the training observations u_{i,k} (snr.py)
    hdr_tx: np.ndarray | None    # (n_h, 52) header symbols as sent, times e^{jθ_n} (tones.py)


@dataclass
class Header:
    """One candidate after header decoding (absolute sample positions)."""
    d: int                       # metric peak
    status: str                  # "ok" | "false" (no pilots) | "bad" (CRC failed, k too large)
    why: str = ""
    t1: int = 0                  # start of the first LTF copy
    td: int = 0                  # start of the first header symbol
    end: int = 0                 # end of the frame
    n: int = 0                   # OFDM symbols after the LTF (header + payload)
    f: float = 0.0               # CFO, cycles/sample
    fields: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    train: Training | None = None


@dataclass
class _Sync:
    """Candidates that passed the preamble checks (arrays over C, buffer-relative positions)."""
    d: np.ndarray                # metric peaks (absolute)
    rel: np.ndarray              # metric peaks (buffer index)
    t1: np.ndarray               # LTF start (buffer index)
    f: np.ndarray                # coarse CFO incl. the integer part


class OfdmReceiver:
    def __init__(self, p: OfdmParams = OfdmParams(), detect_threshold: float = 0.02,
                 ltf_threshold: float = 0.14, max_cfo: float = 0.135, use_nulls: bool = False,
                 smooth: bool = True, header_aided: bool = True, cpe_window: int = 9,
                 max_k: int = 1 << 20, interference_gamma: float = 4.0, slip_at: float = 1.0,
                 max_sro: float = 250e-6, iq_balance: bool = True, model_ids=(), image_ids=(),
                 model_bcr=None, logger=None):
        """use_nulls: accepted for old flowgraphs and ignored (the noise is measured on the bins the
        payload uses, snr.py). max_cfo: the carrier offset searched, cycles/sample. max_sro: the
        sampling-clock offset tracked (fraction, 250e-6 = 250 ppm). iq_balance: blind receiver
        IQ-imbalance correction (sync.IqBalancer)."""
        self.p = p
        self.t = tables(p)
        self.thr = float(detect_threshold)
        self.ltf_thr = float(ltf_threshold)
        self.max_cfo = float(max_cfo)
        self.smooth = smooth
        self.header_aided = header_aided
        self.cpe_window = int(cpe_window)
        self.max_k = int(max_k)
        self.interference_gamma = float(interference_gamma)
        self.slip_at = float(slip_at)
        self.track_span = 96          # symbols of the first drift fit (≤ 2 samples at 250 ppm)
        # training again with the drift taken out when it turns a band-edge subcarrier by more than
        # this over the training symbols (0.1 rad ≈ 45 ppm with the qpsk header); below, the
        # smearing costs less than the noise of a short frame's slope estimate would
        self.retrain_at = 0.1
        self.b_max = 2 * np.pi * float(max_sro) * p.sym_len / p.fft_len    # rad/subcarrier/symbol
        self.model_ids = {crc32_str(m): m for m in model_ids}
        self.image_ids = {crc32_str(i): i for i in image_ids}
        self.model_bcr = dict(model_bcr or {})
        self.log = logger or log
        self.counters = RxCounters()
        self.dc = sync.DcBlocker()
        self.iq = sync.IqBalancer(on=iq_balance)
        self.buf = np.zeros(0, np.complex64)
        self.M = np.zeros(0, np.float32)         # Schmidl-Cox metric, aligned with buf
        self.Pm = np.zeros(0, np.complex64)
        self.base = 0                 # absolute index of buf[0]
        self.pos = 0                  # absolute: candidates before this are done
        self.pending: Header | None = None       # decoded header waiting for its payload
        self.bad_spans: list[tuple[int, int]] = []   # absolute [start, end) of zeroed samples
        self.lag, self.win = 16, 16 * (p.stf_reps - 1)
        self.search = 40              # ± samples of LTF timing search
        self.merge_gap = 32
        nh = p.n_header_syms
        self.need_hdr = p.stf_len + p.ltf_cp + self.search + 2 + 2 * p.fft_len + nh * p.sym_len + 8
        self._kp = np.asarray(p.pilot_k)
        self.cancel_tones = True      # cancel a CW on interfered bins (tones.py) before shrinking
        self.cw_ratio = 0.75          # |P₈| / |P₁₆| at or above which a peak is a CW, not an STF
        self.rho_log: list | None = None          # set to a list to collect the LTF match of every peak

    # ---------------------------------------------------------------- public
    def push(self, x: np.ndarray) -> list[RxFrame]:
        x = self._sanitize(np.asarray(x, np.complex64).reshape(-1))
        if x.size:
            self.buf = np.concatenate([self.buf, self.iq(self.dc(x))])
            self._update_metric()
        out = []
        while True:
            ready, events = self._walk()
            frames, trunc = self._payloads(ready) if ready else ([], None)
            if trunc is not None:                  # roll back everything found after it
                st = ready[trunc]
                events = [e for e in events if e.d <= st.d]
                self.pending = None
                self.pos = st.td + self.p.n_header_syms * self.p.sym_len
            self._commit(events)
            out += frames
            if trunc is not None:
                self._drop("truncated", st, "frame truncated (pilots vanish in its last symbols)")
            elif not ready:
                break
        self._trim()
        return out

    def finish(self) -> list[RxFrame]:
        """End of stream: zeros stand in for the samples that never came, so that a frame cut in
        its preamble or header is decided (rejected / bad header / truncated) and counted; a frame
        still waiting for its payload then is counted as truncated. Returns frames completed."""
        out = self.push(np.zeros(self.need_hdr + 64, np.complex64))
        if self.pending is not None:
            self._drop("truncated", self.pending, "the stream ended before the frame did")
            self.pending = None
        return out

    def _drop(self, counter: str, h: Header, why: str) -> None:
        """A decoded frame that is not delivered: one more in `counter`, one log line."""
        setattr(self.counters, counter, getattr(self.counters, counter) + 1)
        self.log.warning("OFDM RX: dropped image %s at sample %d: %s", h.meta["image_id"], h.d, why)

    # ---------------------------------------------------------------- input
    def _sanitize(self, x: np.ndarray) -> np.ndarray:
        """Zero NaN / Inf / absurd samples, remember where they were (module doc)."""
        if x.size == 0:
            return x
        v = x.view(np.float32)
        if np.isfinite(v).all() and np.abs(v).max() < _HUGE:
            return x
        bad = ~(np.isfinite(x.real) & np.isfinite(x.imag)) | (np.abs(x) >= _HUGE)
        x = np.where(bad, np.complex64(0), x)
        self.counters.bad_samples += int(bad.sum())
        idx = np.flatnonzero(bad)
        brk = np.flatnonzero(np.diff(idx) > 1)
        at = self.base + self.buf.size
        for s, e in zip(idx[np.r_[0, brk + 1]].tolist(), idx[np.r_[brk, idx.size - 1]].tolist()):
            self.bad_spans.append((at + s, at + e + 1))
        return x

    def _overlaps_bad(self, a: int, b: int) -> bool:
        return any(s < b and a < e for s, e in self.bad_spans)

    # ---------------------------------------------------------------- walk
    def _walk(self):
        """Candidates in time order → (headers whose payload has arrived, headers to count)."""
        ready: list[Header] = []
        events: list[Header] = []
        if self.pending is not None:
            if self.pending.end > self.base + self.buf.size:
                return ready, events
            ready.append(self.pending)
            self.pos = self.pending.end
            self.pending = None
        cands, scan_end = self._candidates()
        hdrs = self._headers(self._check(np.asarray(cands, np.int64))) if cands else []
        lead = self.p.stf_len + self.p.ltf_cp      # frame start = LTF timing - lead
        for h in hdrs:
            if h.t1 - lead < self.pos - 8:
                continue                           # inside a frame accepted just before
            events.append(h)
            if h.status != "ok":
                continue
            if h.end <= self.base + self.buf.size:
                ready.append(h)
                self.pos = h.end
            else:
                self.pending = h
                self.pos = h.d
                break
        if self.pending is None:
            self.pos = max(self.pos, scan_end)
        return ready, events

    def _commit(self, events: list[Header]):
        c = self.counters
        for h in events:
            c.detections += 1
            if h.status == "false":
                c.false_syncs += 1
            elif h.status == "bad":
                c.bad_headers += 1
                self.log.warning("OFDM RX: dropped a frame at sample %d: %s", h.d, h.why)

    def _update_metric(self):
        start = self.M.size
        if self.buf.size - start >= self.win + self.lag + 1:
            M, P = sync.sc_metric(self.buf[start:], self.lag, self.win)
            self.M = np.concatenate([self.M, M])
            self.Pm = np.concatenate([self.Pm, P])

    def _trim(self):
        keep = self.pos - 512
        if self.pending is not None:
            keep = min(keep, self.pending.d - 64)
        drop = min(keep - self.base, self.M.size)
        if drop > 0:
            self.buf = self.buf[drop:]
            self.M = self.M[drop:]
            self.Pm = self.Pm[drop:]
            self.base += drop
        self.bad_spans = [(s, e) for s, e in self.bad_spans if e > self.base]

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
                seg = self.M[a:b]
                top = seg.max()
                if top > 0.5:                  # high SNR: M ≈ 1 all along the plateau while the
                    d = a + int(np.flatnonzero(seg >= 0.9 * top)[-1])   # window is partly in
                else:                          # silence before the STF: take the plateau's end
                    d = a + int(np.argmax(seg))
                if d > limit:
                    return cands, self.base + a
                cands.append(self.base + d)
        return cands, self.base + self.M.size

    # ---------------------------------------------------------------- preamble checks
    def _check(self, d: np.ndarray) -> _Sync:
        """CW check and integer-CFO / LTF timing search (module doc, CHECK)."""
        p, C = self.p, d.size
        rel = d - self.base
        P16 = self.Pm[rel]
        P8 = sync.lag_corr_at(self.buf, rel, 8, self.win + 8)
        ok = np.abs(P8) < self.cw_ratio * np.abs(P16)
        f_c = np.angle(P16) / (2 * np.pi * self.lag)
        a = rel + p.stf_len + p.ltf_cp - self.search
        S = 2 * self.search + 2 * p.fft_len + 1
        nfft = sync.ltf_nfft(S)
        ms = sync.cfo_hypotheses(self.lag, self.max_cfo)
        rho = sync.ltf_timing(self.buf[a[:, None] + np.arange(S)], self.t["ltf_td"], f_c,
                              ms * (nfft // self.lag))                  # (C, hypotheses, lags)
        best = rho.reshape(C, -1).argmax(axis=1)
        m, j = np.divmod(best, rho.shape[2])
        rmax = rho[np.arange(C), m, j]
        if self.rho_log is not None:
            self.rho_log.extend(rmax.tolist())
        ok &= rmax >= self.ltf_thr
        self.counters.rejected += int(C - ok.sum())
        return _Sync(d[ok], rel[ok], (a + j)[ok], (f_c + ms[m] / self.lag)[ok])

    # ---------------------------------------------------------------- header
    def _demod(self, starts: np.ndarray, f: np.ndarray, ref: np.ndarray, taper: bool = True) -> np.ndarray:
        """Unitary FFTs of the windows at buffer positions starts (F, n), CFO f (F,) removed with
        phase reference ref (F,): Y = FFT(w(m)) / 8 with w(m) = y(s+m) e^{-j2πf(s-ref+m)}, m < N.
        Receiver windowing (rx_taper = T > 0): the T samples after the window, w(N+j), are folded
        onto its start, w(j) ← g_j w(j) + (1 - g_j) w(N+j), g a raised-cosine rise. The OFDM signal
        is cyclic there (both samples lie inside the same symbol's CP extension), so it passes
        unchanged; a narrowband interferer sees a window with smooth edges, and its leakage into
        distant bins falls like 1/Δk³ instead of 1/Δk (a CW between two bins otherwise spills
        into several neighbours on each side). The folded samples also average two noise samples
        (noise power × 0.98 over the window at T = 6). `taper=False` for the two LTF copies, which
        follow each other without a CP: folding would share noise samples between them."""
        N, T = self.p.fft_len, (self.p.rx_taper if taper else 0)
        m = np.arange(N + T)
        w = self.buf[starts[:, :, None] + m]
        ramp = np.exp(-2j * np.pi * f[:, None] * m[None, :]).astype(np.complex64)
        ph = np.exp(-2j * np.pi * f[:, None] * (starts - ref[:, None])).astype(np.complex64)
        w = w * ramp[:, None, :] * ph[:, :, None]
        if T:
            g = self.t["taper"]
            w[..., :T] = w[..., :T] * g + w[..., N:] * (1 - g)
        return scipy.fft.fft(w[..., :N], axis=-1) * np.float32(1 / np.sqrt(N))

    def _headers(self, s: _Sync) -> list[Header]:
        """Fine CFO, LTF channel estimate, header decoding; training for the good ones."""
        p, t = self.p, self.t
        C, nh, b = s.d.size, p.n_header_syms, p.fft_offset
        if C == 0:
            return []
        pre = 24
        ii = np.arange(p.fft_len + pre) - pre
        f = s.f + sync.fine_cfo(self.buf[s.t1[:, None] + ii], self.buf[s.t1[:, None] + ii + p.fft_len], s.f)
        td = s.t1 + 2 * p.fft_len
        Y = np.concatenate([
            self._demod(np.stack([s.t1 - b, s.t1 + p.fft_len - b], 1), f, s.rel, taper=False),
            self._demod(td[:, None] + p.sym_len * np.arange(nh)[None, :] + p.cp_len - b, f, s.rel)], 1)
        acc = chanest.ltf_ls(p, Y[:, 0], Y[:, 1])
        H0 = chanest.smooth(p, acc / 2, self.smooth)
        Yh = Y[:, 2:]
        Pp = pilots_for(p, nh, 0)
        theta, g, _ = cpe.track(Yh[:, :, t["pilot"]], H0[:, t["pilot"]], Pp, self.cpe_window)
        soft = Yh[:, :, t["data"]] * np.conj(H0[:, None, t["data"]]) * np.exp(-1j * theta)[:, :, None]
        fields, idx = decode_headers(p, soft)
        res, ok = [], []
        for i in range(C):
            h = Header(d=int(s.d[i]), status="ok", t1=int(s.t1[i] + self.base))
            fi = fields[i]
            if fi is None:
                if float(np.mean(g[i])) > 0.4:
                    h.status, h.why = "bad", ("header CRC failed (pilots fine, bits wrong: SNR too "
                                              "low or interference)")
                else:
                    h.status = "false"
            elif fi["k"] > self.max_k:
                h.status, h.why = "bad", f"k = {fi['k']} exceeds max_k = {self.max_k}"
            else:
                n = nh + p.n_payload_syms(fi["k"])
                h.fields, h.n, h.f = fi, n, float(f[i])
                h.td = int(td[i] + self.base)
                h.end = h.td + n * p.sym_len
                h.meta = fields_to_meta(fi, self.model_ids, self.image_ids, self.model_bcr)
                ok.append(i)
            res.append(h)
        if ok:
            ok = np.asarray(ok)
            for h, tr in zip([res[i] for i in ok], self._training(Y[ok], Yh[ok], theta[ok], idx[ok])):
                h.train = tr
        return res

    def _training(self, Y, Yh, theta, idx) -> list[Training]:
        """The training observations u_{i,k} of snr.py (the two LTF copies and, header_aided, the
        decoded header symbols re-encoded) → channel estimate and per-bin noise (_fit_training)."""
        p, t = self.p, self.t
        u = t["used"]
        L = t["ltf_vals"][None, :].astype(np.float32)
        U = np.stack([Y[:, 0, u] * L, Y[:, 1, u] * L], 1)               # (F, 2, 52)
        xs = [None] * U.shape[0]
        if self.header_aided:
            X = symbols_from_idx(p, idx)
            Pp = pilots_for(p, p.n_header_syms, 0)
            Yr = Yh * np.exp(-1j * theta).astype(np.complex64)[:, :, None]
            uh = np.zeros(Yh.shape[:2] + (52,), np.complex64)
            uh[:, :, t["data_in_used"]] = Yr[:, :, t["data"]] * np.conj(X)
            uh[:, :, t["pilot_in_used"]] = Yr[:, :, t["pilot"]] * Pp[None]
            U = np.concatenate([U, uh], 1)
            xk = np.zeros(uh.shape, np.complex64)
            xk[:, :, t["data_in_used"]] = X
            xk[:, :, t["pilot_in_used"]] = Pp[None]
            xs = xk * np.exp(1j * theta).astype(np.complex64)[:, :, None]
        H, noise, err, flags = self._fit_training(U)
        return [Training(H[i], noise[i], err[i], flags[i], U[i], xs[i]) for i in range(H.shape[0])]

    def _fit_training(self, U: np.ndarray):
        """U (F, N_t, 52) → H (F, 64), σ̂² (F, 52), ε (F, 52), interfered (F, 52): per-bin mean and
        sample variance (snr.bin_noise), delay-basis fit that skips interfered bins."""
        p = self.p
        n_t = U.shape[1]
        usum = U.sum(axis=1)
        noise = snr.bin_noise(usum, np.sum(U.real ** 2 + U.imag ** 2, axis=1, dtype=np.float64), n_t)
        if n_t > 2:
            flags = snr.flag_interference(noise, self.interference_gamma)
        else:                          # one dof per bin: too noisy to single bins out, pool it
            noise = np.repeat(noise.mean(axis=1, keepdims=True), noise.shape[1], axis=1)
            flags = np.zeros(noise.shape, bool)
        H = chanest.smooth(p, usum / n_t, self.smooth)
        err = chanest.smooth_error(p, noise, n_t, self.smooth)
        hit = np.flatnonzero(flags.any(axis=1)) if self.smooth else np.zeros(0, int)
        if hit.size:
            H[hit], Pw = chanest.smooth_weighted(p, usum[hit] / n_t, ~flags[hit])
            err[hit] = chanest.smooth_error(p, noise[hit], n_t, Pw=Pw)
        return H, noise, err, flags

    def _retrain(self, U: np.ndarray, beta: np.ndarray):
        """Training again with each training symbol's drift phase taken out: β (F, n) is the
        fitted slope per OFDM symbol after the LTF (a line, cpe.drift), extended back to the LTF
        copies (their windows start 144 and 80 samples before the first header symbol's)."""
        p = self.p
        n_t = U.shape[1]
        per_sym = (beta[:, 1] - beta[:, 0]) if beta.shape[1] > 1 else np.zeros(beta.shape[0])
        lt = beta[:, :1] + per_sym[:, None] * (np.array([-144.0, -80.0]) / p.sym_len)[None, :]
        bt = np.concatenate([lt, beta[:, :n_t - 2]], 1)                   # (F, N_t)
        rot = np.exp(-1j * bt[:, :, None] * np.asarray(p.used_k)[None, None, :]).astype(np.complex64)
        return self._fit_training(U * rot)

    # ---------------------------------------------------------------- payload
    def _payloads(self, ready: list[Header]):
        """Equalise all complete frames (grouped by length). Returns (frames in order up to the
        first truncated one, index of that truncated frame or None)."""
        groups: dict[int, list[int]] = {}
        for i, st in enumerate(ready):
            if not self._overlaps_bad(st.d, st.end):
                groups.setdefault(st.n, []).append(i)
        results: dict[int, tuple[RxFrame, bool]] = {}            # index in ready → (frame, truncated)
        for n, ids in groups.items():
            frames, trunc = self._equalise_group(n, [ready[i] for i in ids])
            results.update(zip(ids, zip(frames, trunc.tolist())))
        out = []
        for i, st in enumerate(ready):
            if i not in results:
                self._drop("bad_input_frames", st, "it overlaps NaN/Inf or absurd input samples")
                continue
            frame, truncated = results[i]
            if truncated:
                return out, i
            out.append(frame)
            self.counters.frames += 1
        return out, None

    def _track(self, Y, H, f, d_rel, starts, n):
        """Timing drift and common phase over header + payload pilots → (Y, β, θ, g, W).

        Sample slips: the drift is first fitted on the first `track_span` symbols (where even the
        largest clock offset searched keeps the window inside the CP) and extrapolated; where the
        predicted drift passes slip_at samples, the windows move by round(τ_n) samples and are
        demodulated again. A window moved by s_n samples adds 2π s_n k / N to subcarrier k's
        phase: that is taken out of the pilots before the final straight-line fit over the whole
        frame and put back into the correction β_n."""
        p, t = self.p, self.t
        Hp = H[:, t["pilot"]]
        Pp = pilots_for(p, n, 0)
        Yp = Y[:, :, t["pilot"]]
        span = min(n, self.track_span)
        beta = cpe.drift(Yp[:, :span], Hp, Pp[:span], self._kp, self.b_max)
        if span > 1:
            beta = beta[:, :1] + (beta[:, 1:2] - beta[:, :1]) * np.arange(n)[None, :]
        tau = -beta * p.fft_len / (2 * np.pi)                  # samples the window is early
        slip = np.zeros(beta.shape, np.int64)
        if np.abs(tau).max() > self.slip_at:
            slip = np.round(tau).astype(np.int64)
            Y = self._demod(starts + slip, f, d_rel)
            Yp = Y[:, :, t["pilot"]] * np.exp(-2j * np.pi / p.fft_len * slip[:, :, None] *
                                              self._kp[None, None, :]).astype(np.complex64)
        if span < n or slip.any():
            beta = cpe.drift(Yp, Hp, Pp, self._kp, self.b_max)
        beta_eff = beta + 2 * np.pi * slip / p.fft_len
        rot = np.exp(-1j * beta_eff[:, :, None] * self._kp[None, None, :]).astype(np.complex64)
        theta, g, wlen = cpe.track(Y[:, :, t["pilot"]] * rot, Hp, Pp, self.cpe_window)
        return Y, beta_eff, beta, theta, g, wlen, slip

    def _cancel_tones(self, Y, H, noise, flags, s, sts):
        """Cancel a CW on the interfered data bins of each frame that has them (tones.py); their
        noise is measured again on the header residuals, and a bin stays flagged (shrunk) only
        if it is still well above the frame's median."""
        p, t = self.p, self.t
        nh = p.n_header_syms
        di = t["data_in_used"]
        Y, noise, flags = Y.copy(), noise.copy(), flags.copy()
        n_cancel = np.zeros(Y.shape[0], np.int64)
        for q in np.flatnonzero(flags[:, di].any(axis=1)):
            K = di[flags[q, di]]                                        # used-bin positions
            bins = t["used"][K]
            tx = sts[q].train.hdr_tx[:, K]
            R = Y[q, :nh][:, bins] - H[q, bins][None, :] * tx
            obs = np.concatenate([R, Y[q, nh:][:, bins]], 0)
            h2 = np.abs(H[q, bins]) ** 2
            w = np.concatenate([np.broadcast_to(1 / noise[q, K], R.shape),
                                np.broadcast_to(1 / (noise[q, K] + h2), (obs.shape[0] - nh, K.size))], 0)
            c, om = tones.estimate(obs, w, s[q], np.asarray(p.used_k)[K], p.fft_len)
            I = tones.tone(c, om, s[q], s[q][0])
            Y[q][:, bins] -= I.astype(np.complex64)
            left = np.sum(np.abs(R - I[:nh]) ** 2, axis=0) / max(nh - 1, 1)
            noise[q, K] = left
            flags[q, K] = left > self.interference_gamma * np.median(noise[q])
            n_cancel[q] = K.size
        return Y, noise, flags, n_cancel

    def _equalise_group(self, n: int, sts: list[Header]):
        p, t = self.p, self.t
        nh, b = p.n_header_syms, p.fft_offset
        F, npl = len(sts), n - nh
        d_rel = np.array([s.d for s in sts]) - self.base
        td_rel = np.array([s.td for s in sts]) - self.base
        f = np.array([s.f for s in sts])
        starts = td_rel[:, None] + p.sym_len * np.arange(n)[None, :] + p.cp_len - b
        Y = self._demod(starts, f, d_rel)
        H = np.stack([s.train.H for s in sts])
        Y, beta, beta_lin, theta, g, wlen, slip = self._track(Y, H, f, d_rel, starts, n)
        U = np.stack([s.train.obs for s in sts])
        per_sym = beta_lin[:, 1] - beta_lin[:, 0] if n > 1 else np.zeros(len(sts))
        span = np.abs(per_sym) * (U.shape[1] - 2 + 1.8) * 26
        if span.max() > self.retrain_at:
            H, noise, err, flags = self._retrain(U, beta_lin)
        else:
            noise, err, flags = (np.stack([getattr(s.train, a) for s in sts]) for a in ("noise", "err", "interfered"))
        if self.cancel_tones and flags.any() and sts[0].train.hdr_tx is not None:
            Y, noise, flags, n_cancel = self._cancel_tones(Y, H, noise, flags, starts + slip, sts)
        else:
            n_cancel = np.zeros(F, np.int64)
        Hp, Hd = H[:, t["pilot"]], H[:, t["data"]]
        # truncation: the last symbols' pilots no longer look like pilots
        tl = min(4, npl) if npl else 1
        s2p = noise[:, t["pilot_in_used"]].mean(axis=1)
        std = np.sqrt(s2p / (2 * np.maximum(np.sum(np.abs(Hp) ** 2, axis=1), 1e-30) * tl))
        trunc = np.mean(g[:, -tl:], axis=1) < np.minimum(0.5, 1 - 4 * std)
        kd = p.data_k
        ph = theta[:, nh:, None] + beta[:, nh:, None] * kd[None, None, :]
        Yd = Y[:, nh:, t["data"]] * (np.exp(-1j * ph).astype(np.complex64) / Hd[:, None, :])
        di = t["data_in_used"]
        v = snr.bin_variances(noise[:, di], err[:, di], Hd, noise[:, t["pilot_in_used"]], Hp, wlen)
        hit = flags[:, di]                                              # interfered data bins
        shrink = np.where(hit, 1.0 / (1.0 + v), 1.0)                    # LMMSE weight there
        v = np.where(hit, v / (1.0 + v), v)
        Yd = Yd * shrink[:, None, :].astype(np.float32)
        slots = Yd.reshape(F, -1)
        deint = deinterleaver(slots.shape[1])
        z = slots[:, deint]
        v_slot = v[:, deint % p.n_data]                                 # (F, n_slots), symbol order
        ks = np.array([st.fields["k"] for st in sts])
        cs = np.cumsum(v_slot, axis=1)
        snr_db = -10 * np.log10(np.maximum(cs[np.arange(F), ks - 1] / ks, 1e-30))
        snr_ch = snr.channel_snr_db(H[:, t["used"]], noise)
        noise_var = noise[:, di].mean(axis=1)
        uneven = v.max(axis=1) > 4 * np.median(v, axis=1)
        drift_end = -beta_lin[:, -1] * p.fft_len / (2 * np.pi)
        n_hit = hit.sum(axis=1)
        frames = []
        for q, st in enumerate(sts):
            k = int(ks[q])
            meta = dict(st.meta)
            meta.update(snr_db=float(snr_db[q]), snr_source="estimated", snr_channel_db=float(snr_ch[q]),
                        cfo_cycles_per_sample=st.f, noise_var=float(noise_var[q]), ofdm_symbols=n,
                        interfered_subcarriers=int(n_hit[q]), tone_cancelled_subcarriers=int(n_cancel[q]),
                        drift_samples=float(drift_end[q]))
            if uneven[q]:
                meta["symbol_noise_var"] = v_slot[q, :k].astype(np.float32)
            frames.append(RxFrame(np.ascontiguousarray(z[q, :k], np.complex64), meta, st.d))
        return frames, trunc
