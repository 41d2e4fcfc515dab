#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Real-radio impairments through the OFDM JSCC PHY, made with GNU Radio's own blocks.

Writes sim/results/ofdm/impairments.json, impairments.md (table) and impairments.png (plot).

Per case and k ∈ {256, 4096}: N frames of k random unit-power symbols (our TX library) with random
idle gaps → impairment chain of GNU Radio blocks → our receiver (sing.phy.OfdmReceiver, the library
inside the RX block). Chain, in the order a real link applies them:
    TX clipping (complex_to_float → rail_ff on I and Q → float_to_complex, drive ×c)
    → sampling-clock offset: filter.pfb_arb_resampler_ccf(rate 1/(1 + SRO), 128 filters, a Kaiser
      prototype flat to 0.43 and 100 dB down from 0.57 cycle/sample: `clock_offset_taps`)
    → channels.channel_model(noise_voltage, frequency_offset, epsilon = 1, taps, noise_seed)
    → channels.phase_noise_gen(noise_mag, α)   (var φ = noise_mag² α / (2 - α))
    → channels.iqbal_gen(magnitude_dB, phase_deg, RX mode)
    → + analog.sig_source_c CW (power relative to the signal, dBc) → + DC (blocks.add_const_cc)
    → amplitude (blocks.multiply_const_cc)
Why the clock offset is made by the polyphase resampler and not by channel_model's epsilon: a radio
with a clock offset samples the band-limited analog signal at instants n·(1 + SRO); nothing in it
attenuates some subcarriers more than others. channel_model's epsilon is an 8-tap MMSE FIR
interpolator whose gain at a fractional delay near ½ falls to −3.5 dB on subcarrier ±26 (measured
here, `resampler_response`), and the noise is added after it, so those subcarriers lose SNR that
no receiver can recover: a property of that interpolator, not of the radio. The polyphase
resampler's error on the occupied band (±26/64 cycle/sample) is measured the same way and is
below −48 dB, with a gain within 0.003 dB: it models the clock, not itself. Both conventions agree:
channel_model(epsilon = 1 + SRO) and rate 1/(1 + SRO) both give y[n] = x(n·(1 + SRO)) (N/(1 + SRO)
output samples, a tone at f comes out at f·(1 + SRO); `convention_check` measures it). Nothing is
hidden: every clock-offset case is also run through channel_model's interpolator (epsilon = 1 +
SRO, the same frames and noise: the "channel_model interpolator" control) and with ideal FFT
resampling (the "ideal resampling" control).
Reported per case: delivered / sent, EVM = 10 log10 mean|ŷ - z|² over the delivered frames, EVM
penalty vs the reference at the same k and SNR — the unimpaired link through the same channel: AWGN
alone, or for the cases with multipath (USRP pair, cheap-SDR pair) the 3-tap channel alone, since
the taps are a channel, not a radio impairment (the penalty vs AWGN is reported beside it); EVM
per data subcarrier and per quarter of the payload (where the error sits); the SNR estimate vs the measured
post-equalisation SNR of the payload (-10 log10 mean|ŷ - z|² per frame): bias of the means and
mean absolute per-frame error, and the receiver's counters. The idle case (noise + DC, no signal)
reports detections per 10⁶ samples.
Per-subcarrier SNR 12.5 dB unless said (noise_voltage = sqrt(64/52 · 10^(-SNR/10)): the TX puts
power 1 on 52 of 64 bins). Every case at one k sends the same frames through the same noise
(common random numbers).

    PYTHONPATH=. python sim/bench_impairments.py [--frames 40] [--ks 256,4096] [--cases a,b]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "sim" / "results" / "ofdm"
TAPS3 = np.array([1.0, 0.35 * np.exp(0.7j), 0.12 * np.exp(-2.1j)])
TAPS3 = TAPS3 / np.linalg.norm(TAPS3)

# name → impairments (defaults: none). pn_dbc: phase-noise variance in dBc; iq: (dB, degrees);
# cw: (dBc, cycles/sample); clip: drive factor into rails at ±1.
_COMBINED = dict(pn_dbc=-30, iq=(0.5, 2.0), dc=0.05, taps=TAPS3)
CASES = {
    "awgn": {},
    **{f"cfo {c:+g}": {"cfo": c} for c in (0.02, -0.02, 0.05, -0.05, 0.1, -0.1, 0.125, -0.125)},
    **{f"sro {s} ppm": {"sro": s * 1e-6} for s in (10, 50, 100)},
    "phase noise -30 dBc": {"pn_dbc": -30},
    "phase noise -20 dBc": {"pn_dbc": -20},
    "iq 0.5 dB / 2 deg": {"iq": (0.5, 2.0)},
    "dc 0.05": {"dc": 0.05},
    "cw -10 dBc": {"cw": (-10, 0.1703)},
    "cw -10 dBc, between two bins": {"cw": (-10, 10.5 / 64)},
    "clipping x3": {"clip": 3.0},
    "amplitude 1e-3": {"amp": 1e-3},
    "amplitude 10": {"amp": 10.0},
    "multipath 3 taps": {"taps": TAPS3},
    # the USRP pair's parts one at a time on the same channel: where its penalty comes from
    "3 taps + cfo 0.005": {"cfo": 0.005, "taps": TAPS3},
    "3 taps + sro 4 ppm": {"sro": 4e-6, "taps": TAPS3},
    "3 taps + phase noise -30 dBc": {"pn_dbc": -30, "taps": TAPS3},
    "3 taps + iq 0.5 dB / 2 deg": {"iq": (0.5, 2.0), "taps": TAPS3},
    "3 taps + dc 0.05": {"dc": 0.05, "taps": TAPS3},
    "usrp pair": {"cfo": 0.005, "sro": 4e-6, **_COMBINED},
    "cheap sdr pair": {"cfo": 0.1, "sro": 50e-6, **_COMBINED},
}
ACCEPT = {   # case → maximum EVM penalty (dB) at the stated k (None: any k)
    **{f"cfo {c:+g}": 0.5 for c in (0.02, -0.02, 0.05, -0.05, 0.1, -0.1, 0.125, -0.125)},
    "sro 100 ppm": 1.0, "sro 50 ppm": 1.0, "sro 10 ppm": 1.0,
    "cw -10 dBc": 2.0, "cw -10 dBc, between two bins": 2.0, "usrp pair": 0.5, "cheap sdr pair": 1.0,
}


MULTIPATH = "multipath 3 taps"
# how a sampling-clock offset is applied: "pfb" the measured cases, the others their controls
SRO_METHODS = ("pfb", "channel_model", "ideal")
RESAMPLER_FILTERS = 128


def clock_offset_taps(nfilts: int = RESAMPLER_FILTERS) -> list:
    """Prototype of the clock-offset resampler (filter.pfb_arb_resampler_ccf): Kaiser-windowed
    low-pass at nfilts × the sample rate, gain nfilts, −6 dB at 0.5 cycle/sample, 0.14 wide
    transition, 100 dB stop band: flat over the occupied ±0.41 and 100 dB down on the images beyond
    0.57. Its error on the data subcarriers is in `resampler_response`."""
    from gnuradio import fft
    from gnuradio.filter import firdes
    return list(firdes.low_pass_2(nfilts, nfilts, 0.5, 0.14, 100, fft.window.WIN_KAISER,
                                  0.1102 * (100 - 8.7)))


def clock_offset_block(sro: float):
    """GNU Radio block that applies a sampling-clock offset SRO: y[n] = x(n·(1 + SRO)), the same
    convention as channels.channel_model(epsilon = 1 + SRO)."""
    from gnuradio import filter as gr_filter
    return gr_filter.pfb_arb_resampler_ccf(1.0 / (1.0 + sro), clock_offset_taps(), RESAMPLER_FILTERS)


def limit(r: dict):
    """The acceptance limit on a row's EVM penalty (dB), or None: the clock-offset limits hold at
    k = 4096 only."""
    lim = ACCEPT.get(r["case"])
    return None if (r["case"].startswith("sro") and r["k"] != 4096) else lim


def nv(snr_db: float) -> float:
    return float(np.sqrt(64 / 52 * 10 ** (-snr_db / 10)))


def unit(rng, k):
    z = rng.standard_normal(k) + 1j * rng.standard_normal(k)
    return (z / np.sqrt(np.mean(np.abs(z) ** 2))).astype(np.complex64)


def tx_samples(n: int, k: int, seed: int, gap=(300, 900)):
    """n frames of k symbols with random idle gaps → (samples, symbols per frame)."""
    from sing.phy import HeaderFields, OfdmParams
    from sing.phy.tx import build_frames
    rng = np.random.default_rng(seed)
    p = OfdmParams()
    zs = [unit(rng, k) for _ in range(n)]
    parts = [np.zeros(1000, np.complex64)]
    for i, z in enumerate(zs):
        x, _ = build_frames(p, [z], [HeaderFields(str(i), k, "bench", 64, 64, 3, seq=i)])
        parts += [x, np.zeros(int(rng.integers(*gap)), np.complex64)]
    parts.append(np.zeros(3000, np.complex64))
    return np.concatenate(parts), zs


def impair(x: np.ndarray, snr_db: float, seed: int, cfo=0.0, sro=0.0, taps=(1.0,), pn_dbc=None,
           iq=None, dc=0.0, cw=None, clip=None, amp=1.0, sro_by="pfb") -> np.ndarray:
    """x through the GNU Radio impairment chain (module doc). sro_by: how the clock offset is
    applied — "pfb": filter.pfb_arb_resampler_ccf (`clock_offset_block`), the measurement;
    "channel_model": channel_model's epsilon (its 8-tap interpolator; a control that shows that
    interpolator's band-edge loss); "ideal": band-limited (FFT) resampling in numpy before the
    chain (a control)."""
    from gnuradio import analog, blocks, channels, gr
    if sro_by not in SRO_METHODS:
        raise ValueError(f"sro_by {sro_by!r}: choose one of {SRO_METHODS}")
    eps = 1.0
    if sro and sro_by == "ideal":
        import scipy.signal
        x = scipy.signal.resample(x, int(round(x.size / (1 + sro)))).astype(np.complex64)
    elif sro and sro_by == "channel_model":
        eps = 1.0 + sro
    tb = gr.top_block()
    src = blocks.vector_source_c(x.astype(np.complex64), False)
    chain = [src]
    if clip:
        c2f, f2c = blocks.complex_to_float(), blocks.float_to_complex()
        g_in, g_out = blocks.multiply_const_cc(clip), blocks.multiply_const_cc(1.0 / clip)
        ri, rq = analog.rail_ff(-1.0, 1.0), analog.rail_ff(-1.0, 1.0)
        tb.connect(src, g_in, c2f)
        tb.connect((c2f, 0), ri, (f2c, 0))
        tb.connect((c2f, 1), rq, (f2c, 1))
        tb.connect(f2c, g_out)
        chain = [g_out]
    if sro and sro_by == "pfb":
        rs = clock_offset_block(sro)
        tb.connect(chain[-1], rs)
        chain = [rs]
    ch = channels.channel_model(noise_voltage=nv(snr_db), frequency_offset=cfo, epsilon=eps,
                                taps=list(np.asarray(taps, complex)), noise_seed=seed)
    tb.connect(chain[-1], ch)
    last = ch
    if pn_dbc is not None:
        alpha = 0.1
        mag = float(np.sqrt(10 ** (pn_dbc / 10) * (2 - alpha) / alpha))
        pn = channels.phase_noise_gen(mag, alpha)
        tb.connect(last, pn)
        last = pn
    if iq is not None:
        q = channels.iqbal_gen(iq[0], iq[1], 1)
        tb.connect(last, q)
        last = q
    if cw is not None:
        s = analog.sig_source_c(1.0, analog.GR_COS_WAVE, cw[1], float(10 ** (cw[0] / 20)), 0)
        add = blocks.add_cc()
        tb.connect(last, (add, 0))
        tb.connect(s, (add, 1))
        last = add
    if dc:
        a = blocks.add_const_cc(complex(dc))
        tb.connect(last, a)
        last = a
    if amp != 1.0:
        m = blocks.multiply_const_cc(amp)
        tb.connect(last, m)
        last = m
    snk = blocks.vector_sink_c()
    tb.connect(last, snk)
    tb.run()
    return np.asarray(snk.data(), np.complex64)


def receive(y: np.ndarray, chunk: int = 1 << 16):
    from sing.phy import OfdmParams, OfdmReceiver
    rx = OfdmReceiver(OfdmParams())
    out = []
    for s in range(0, y.size, chunk):
        out += rx.push(y[s:s + chunk])
    return out, rx.counters.as_dict()


def run_case(name: str, imp: dict, k: int, n: int, snr_db: float, seed: int,
             sro_by: str = "pfb") -> dict:
    x, zs = tx_samples(n, k, seed)
    t0 = time.time()
    y = impair(x, snr_db, seed + 1, sro_by=sro_by, **imp)
    frames, counters = receive(y)
    meas, est, err2, erased = [], [], [], []
    for f in frames:
        i = int(f.meta["image_id"])
        e = np.mean(np.abs(f.symbols - zs[i]) ** 2)
        err2.append(e)
        meas.append(-10 * np.log10(e))
        est.append(f.meta["snr_db"])
        erased.append(f.meta.get("interfered_subcarriers", 0))
    meas, est = np.array(meas), np.array(est)
    sc_db, q_db = _evm_grid(frames, zs, k)
    r = {"case": name, "k": k, "snr_db": snr_db, "n_sent": n, "n_ok": len(frames),
         "delivered": len(frames) / n, "counters": counters,
         "evm_db": float(10 * np.log10(np.mean(err2))) if err2 else None,
         "snr_est_bias_db": float(np.mean(est) - np.mean(meas)) if len(est) else None,
         "snr_est_mae_db": float(np.mean(np.abs(est - meas))) if len(est) else None,
         "interfered_subcarriers_mean": float(np.mean(erased)) if erased else None,
         "evm_per_subcarrier_db": sc_db, "evm_per_frame_quarter_db": q_db,
         "seconds": round(time.time() - t0, 2),
         "impairments": {a: (b.tolist() if isinstance(b, np.ndarray) else b) for a, b in imp.items()}}
    if "taps" in r["impairments"]:
        r["impairments"]["taps"] = [[round(float(np.real(t)), 4), round(float(np.imag(t)), 4)]
                                    for t in np.asarray(imp["taps"], complex)]
    return r


def _evm_grid(frames, zs, k: int):
    """EVM (dB) of the delivered frames per data subcarrier (48, subcarriers -26 … 26 in order) and
    per quarter of the payload's OFDM symbols (4): where on the grid the error is."""
    from sing.phy import OfdmParams
    from sing.phy.params import deinterleaver
    if not frames:
        return None, None
    p = OfdmParams()
    n_slots = p.n_payload_syms(k) * p.n_data
    slot = deinterleaver(n_slots)[:k]              # symbol i was carried by slot slot[i]
    e = np.zeros(n_slots)
    cnt = np.zeros(n_slots)
    for f in frames:
        e[slot] += np.abs(f.symbols - zs[int(f.meta["image_id"])]) ** 2
        cnt[slot] += 1
    E, C = e.reshape(-1, p.n_data), cnt.reshape(-1, p.n_data)
    sc = 10 * np.log10(E.sum(0) / np.maximum(C.sum(0), 1))
    q = [10 * np.log10(E[i].sum() / max(C[i].sum(), 1)) for i in np.array_split(np.arange(E.shape[0]), 4)]
    return [round(float(v), 3) for v in sc], [round(float(v), 3) for v in q]


def _edge_share(r: dict, c: dict, edge: int = 21):
    """Share of the error that channel_model's interpolator adds (its control row `r` minus the
    ideal-resampling control `c`, per subcarrier) that sits on the band-edge subcarriers |k| ≥ edge."""
    a, b = r["evm_per_subcarrier_db"], c["evm_per_subcarrier_db"]
    if a is None or b is None:
        return None
    from sing.phy import OfdmParams
    kd = np.asarray(OfdmParams().data_k)
    ex = 10 ** (np.asarray(a) / 10) - 10 ** (np.asarray(b) / 10)
    return float(ex[np.abs(kd) >= edge].sum() / ex.sum()) if ex.sum() > 0 else None


def resampler_response(method: str, eps: float = 1e-5, n: int = 300_000, subcarriers=range(1, 27)) -> dict:
    """Error of a clock-offset resampler on a tone at each data subcarrier 1 … 26 (the taps are
    real, so −k is the same), at offset eps: the fractional delay sweeps 0 … 1 three times, so
    every interpolation phase is visited. method "channel_model": channels.channel_model's
    epsilon = 1 + eps (an 8-tap MMSE FIR interpolator); "pfb": `clock_offset_block` (the
    resampler the cases use). Per subcarrier: the worst and the mean power gain over the run (dB),
    and the error (dB below the tone) left after removing one complex gain and the tone's
    frequency fitted from the output (so a rate rounded to float32 inside the block — a clock
    offset differing by < 0.05 ppm — is not counted as error). A real sampling clock has gain 0 dB
    and no error; the noise is added after the resampler, so a gain loss on a subcarrier is an SNR
    loss the receiver cannot undo."""
    from gnuradio import blocks, channels, gr
    out = {"method": method, "eps": eps, "subcarriers": [], "min_gain_db": [],
           "mean_power_gain_db": [], "error_db": []}
    for kb in subcarriers:
        x = np.exp(2j * np.pi * kb / 64 * np.arange(n)).astype(np.complex64)
        tb = gr.top_block()
        snk = blocks.vector_sink_c()
        blk = (channels.channel_model(noise_voltage=0.0, frequency_offset=0.0, epsilon=1 + eps,
                                      taps=[1.0], noise_seed=1)
               if method == "channel_model" else clock_offset_block(eps))
        tb.connect(blocks.vector_source_c(x, False), blk, snk)
        tb.run()
        y = np.asarray(snk.data(), np.complex128)[3000:-3000]
        t = np.arange(y.size)
        ph = np.unwrap(np.angle(y))
        g = y * np.exp(-1j * np.polyval(np.polyfit(t, ph, 1), t))
        gm = g.mean()
        a = np.abs(y)[:y.size // 1000 * 1000].reshape(-1, 1000).mean(axis=1)
        out["subcarriers"].append(kb)
        out["min_gain_db"].append(round(float(20 * np.log10(a.min())), 4))
        out["mean_power_gain_db"].append(round(float(10 * np.log10(np.mean(np.abs(y) ** 2))), 4))
        out["error_db"].append(round(float(10 * np.log10(np.mean(np.abs(g - gm) ** 2) / abs(gm) ** 2)), 1))
    return out


def convention_check(sro: float = 1e-3, n: int = 200_000, f: float = 0.1) -> dict:
    """Both clock-offset blocks on a tone at f: output samples per input sample and the output
    tone's frequency (both must be 1/(1 + sro) and f·(1 + sro))."""
    from gnuradio import blocks, channels, gr
    x = np.exp(2j * np.pi * f * np.arange(n)).astype(np.complex64)
    out = {"sro": sro, "tone": f, "expected_length_ratio": 1 / (1 + sro), "expected_tone": f * (1 + sro)}
    for name, blk in (("channel_model", channels.channel_model(0.0, 0.0, 1 + sro, [1.0], 1)),
                      ("pfb", clock_offset_block(sro))):
        tb = gr.top_block()
        snk = blocks.vector_sink_c()
        tb.connect(blocks.vector_source_c(x, False), blk, snk)
        tb.run()
        y = np.asarray(snk.data())
        ph = np.unwrap(np.angle(y[3000:-3000]))
        out[name] = {"length_ratio": y.size / n,
                     "tone": float(np.polyfit(np.arange(ph.size), ph, 1)[0] / (2 * np.pi))}
    return out


def idle_case(n_samples: int, snr_db: float, dc: float, seed: int, cw=None) -> dict:
    """Noise (+ DC, + CW) only: detections and frames per 10⁶ samples."""
    y = impair(np.zeros(n_samples, np.complex64), snr_db, seed, dc=dc, cw=cw)
    frames, counters = receive(y)
    return {"case": "idle, noise + DC %g" % dc + (" + CW %g dBc" % cw[0] if cw else ""),
            "samples": n_samples, "frames": len(frames), "counters": counters,
            "detections_per_1e6": counters["detections"] * 1e6 / n_samples,
            "rejected_per_1e6": counters["rejected"] * 1e6 / n_samples}


def false_alarm_curve(n_samples: int, seed: int) -> dict:
    """LTF-correlation maxima ρ over the CFO hypotheses at metric peaks of noise + DC and of noise
    + CW: the distribution the LTF threshold is chosen from (fraction of peaks above each level)."""
    from sing.phy import OfdmParams, OfdmReceiver
    out = {}
    for label, kw in (("noise+dc", {"dc": 0.05}), ("noise+cw", {"cw": (-10, 0.1703)})):
        y = impair(np.zeros(n_samples, np.complex64), 12.5, seed, **kw)
        rx = OfdmReceiver(OfdmParams(), ltf_threshold=2.0)     # reject everything, keep ρ
        rx.rho_log = rhos = []
        for s in range(0, y.size, 1 << 16):
            rx.push(y[s:s + (1 << 16)])
        r = np.array(rhos)
        levels = [0.04, 0.06, 0.08, 0.10, 0.12, 0.14, 0.16]
        out[label] = {"metric_peaks": int(r.size), "samples": n_samples,
                      "rho_max": float(r.max()) if r.size else None,
                      "fraction_above": {str(v): float(np.mean(r > v)) if r.size else 0.0 for v in levels}}
    return out


def table(res: dict) -> str:
    lines = ["| case | k | delivered | EVM (dB) | EVM penalty (dB) | reference | vs AWGN (dB) | "
             "SRO by channel_model interpolator (dB) | SRO by ideal resampling (dB) | "
             "SNR est. bias (dB) | SNR est. MAE (dB) | interfered bins | limit | holds |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    f = (lambda v: "—" if v is None else f"{v:+.2f}")
    for r in res["cases"]:
        lim = r.get("limit_db")
        hold = {None: "", True: "yes", False: "**no**"}[r.get("holds")]
        lines.append(f"| {r['case']} | {r['k']} | {r['n_ok']}/{r['n_sent']} | "
                     f"{'—' if r['evm_db'] is None else format(r['evm_db'], '.2f')} | {f(r.get('evm_penalty_db'))} | "
                     f"{r.get('reference', 'awgn')} | {f(r.get('evm_penalty_vs_awgn_db'))} | "
                     f"{f((r.get('control_channel_model') or {}).get('evm_penalty_db'))} | "
                     f"{f((r.get('control_ideal_sro') or {}).get('evm_penalty_db'))} | "
                     f"{f(r['snr_est_bias_db'])} | {'—' if r['snr_est_mae_db'] is None else format(r['snr_est_mae_db'], '.2f')} | "
                     f"{'—' if r['interfered_subcarriers_mean'] is None else format(r['interfered_subcarriers_mean'], '.1f')} | "
                     f"{'' if lim is None else '≤ %.1f' % lim} | {hold} |")
    lines.append("")
    lines.append("| idle input | samples | detections / 10⁶ | rejected peaks / 10⁶ | frames |")
    lines.append("|---|---|---|---|---|")
    for r in res["idle"]:
        lines.append(f"| {r['case']} | {r['samples']} | {r['detections_per_1e6']:.2f} | "
                     f"{r['rejected_per_1e6']:.0f} | {r['frames']} |")
    rows = [("channel_model interpolator", res.get("channel_model_interpolator")),
            ("pfb_arb_resampler_ccf (used)", res.get("pfb_resampler"))]
    if any(v for _, v in rows):
        sc = next(v for _, v in rows if v)["subcarriers"][-8:]
        lines.append("")
        lines.append("| clock-offset resampler on a tone at subcarrier | " + " | ".join(str(v) for v in sc) + " |")
        lines.append("|---|" + "---|" * len(sc))
        for name, v in rows:
            if not v:
                continue
            lines.append(f"| {name}: worst gain over the run (dB) | " +
                         " | ".join(f"{g:.2f}" for g in v["min_gain_db"][-8:]) + " |")
            lines.append(f"| {name}: mean power gain (dB) | " +
                         " | ".join(f"{g:.3f}" for g in v["mean_power_gain_db"][-8:]) + " |")
            lines.append(f"| {name}: error below the tone (dB) | " +
                         " | ".join(f"{g:.1f}" for g in v["error_db"][-8:]) + " |")
        pf = res.get("pfb_resampler")
        if pf:
            lines.append("")
            lines.append(f"pfb_arb_resampler_ccf over all data subcarriers ±1 … ±26: worst gain "
                         f"{min(pf['min_gain_db']):.4f} dB, error ≤ {max(pf['error_db']):.1f} dB below the tone.")
        cv = res.get("clock_offset_convention")
        if cv:
            lines.append(f"Convention (SRO {cv['sro']:g}, tone {cv['tone']}): expected length ratio "
                         f"{cv['expected_length_ratio']:.6f}, tone {cv['expected_tone']:.6f}; channel_model "
                         f"{cv['channel_model']['length_ratio']:.6f}, {cv['channel_model']['tone']:.6f}; pfb "
                         f"{cv['pfb']['length_ratio']:.6f}, {cv['pfb']['tone']:.6f}.")
    return "\n".join(lines) + "\n"


def plot(res: dict, path: Path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = list(dict.fromkeys(r["case"] for r in res["cases"]))
    fig, ax = plt.subplots(1, 2, figsize=(13, 5.5), sharey=True)
    for j, key, lab in ((0, "evm_penalty_db", "EVM penalty vs the reference (dB): AWGN, or the 3-tap channel alone"),
                        (1, "snr_est_bias_db", "SNR estimate − measured post-EQ SNR (dB)")):
        for off, k, col in ((-0.2, 256, "tab:blue"), (0.2, 4096, "tab:orange")):
            v = [next((r[key] for r in res["cases"] if r["case"] == nm and r["k"] == k), None) for nm in names]
            ax[j].barh(np.arange(len(names)) + off, [np.nan if a is None else a for a in v], 0.4,
                       color=col, label=f"k = {k}")
            if j == 0:          # the clock-offset rows through channel_model's interpolator
                cm = [next(((r.get("control_channel_model") or {}).get(key) for r in res["cases"]
                            if r["case"] == nm and r["k"] == k), None) for nm in names]
                ax[j].plot([np.nan if a is None else a for a in cm], np.arange(len(names)) + off, "x",
                           color=col, label=f"k = {k}, SRO by channel_model's interpolator (control)")
        ax[j].axvline(0, color="k", lw=0.5)
        ax[j].set_xlabel(lab)
        ax[j].grid(axis="x", alpha=0.3)
    ax[0].set_yticks(np.arange(len(names)), names)
    ax[0].invert_yaxis()
    ax[0].legend()
    fig.suptitle(f"OFDM JSCC PHY under GNU Radio impairment blocks, per-subcarrier SNR {res['snr_db']} dB, "
                 f"{res['frames']} frames per case")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _gr_version() -> str:
    from gnuradio import gr
    return gr.version()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--snr-db", type=float, default=12.5)
    ap.add_argument("--ks", default="256,4096")
    ap.add_argument("--cases", default="", help="comma-separated subset (default all)")
    ap.add_argument("--idle-samples", type=int, default=4_000_000)
    ap.add_argument("--out", default=str(OUT))
    a = ap.parse_args(argv)
    ks = [int(v) for v in a.ks.split(",")]
    names = [c for c in CASES if not a.cases or c in a.cases.split(",")]
    from sing.commands.eval import device_name, git_commit
    res = {"command": "python " + " ".join(["sim/bench_impairments.py", *(argv if argv is not None else sys.argv[1:])]),
           "commit": git_commit(), "device": device_name("cpu"), "gnuradio": _gr_version(),
           "snr_db": a.snr_db, "frames": a.frames, "cases": [], "idle": [],
           "clock_offset": {"measured": "filter.pfb_arb_resampler_ccf, rate 1/(1 + SRO), %d filters, "
                                        "Kaiser prototype (clock_offset_taps)" % RESAMPLER_FILTERS,
                            "controls": {"control_channel_model": "channels.channel_model epsilon = 1 + SRO "
                                                                  "(8-tap MMSE interpolator)",
                                         "control_ideal_sro": "FFT resampling to N/(1 + SRO) samples"}}}
    for k in ks:
        for nm in names:
            # common random numbers: every case at this k sends the same frames with the same gaps
            # and the same channel noise, so a penalty (case minus its reference) measures the
            # impairment, not a different draw of noise and channel-estimate error (at k = 256
            # independent draws scatter the penalties by about ±0.15 dB)
            r = run_case(nm, CASES[nm], k, a.frames, a.snr_db, seed=1000 + k)
            if CASES[nm].get("sro"):     # controls: the same frames and noise, the clock offset
                for by, key in (("channel_model", "control_channel_model"), ("ideal", "control_ideal_sro")):
                    c = run_case(nm, CASES[nm], k, a.frames, a.snr_db, seed=1000 + k, sro_by=by)
                    r[key] = {x: c[x] for x in ("n_ok", "evm_db", "snr_est_bias_db", "snr_est_mae_db",
                                                "evm_per_subcarrier_db")}
                r["interpolator_excess_on_band_edges"] = _edge_share(r["control_channel_model"],
                                                                     r["control_ideal_sro"])
            res["cases"].append(r)
            print(json.dumps({x: r[x] for x in ("case", "k", "n_ok", "evm_db", "snr_est_bias_db",
                                                "snr_est_mae_db", "seconds")}), flush=True)
    ref = {r["k"]: r["evm_db"] for r in res["cases"] if r["case"] == "awgn"}
    ref_mp = {r["k"]: r["evm_db"] for r in res["cases"] if r["case"] == MULTIPATH}
    for r in res["cases"]:
        # the reference: the unimpaired link through the same channel (the 3 taps are a channel,
        # not a radio impairment), AWGN for the cases without multipath
        mp = "taps" in r["impairments"] and r["case"] != MULTIPATH
        r["reference"] = MULTIPATH if mp else "awgn"
        base = ref_mp if mp else ref
        ok = r["evm_db"] is not None
        r["evm_penalty_vs_awgn_db"] = (r["evm_db"] - ref[r["k"]]) if ok and r["k"] in ref else None
        r["evm_penalty_db"] = (r["evm_db"] - base[r["k"]]) if ok and r["k"] in base else None
        lim = limit(r)
        r["limit_db"] = lim
        r["holds"] = None if lim is None else bool(r["evm_penalty_db"] is not None and r["evm_penalty_db"] <= lim
                                                   and r["n_ok"] == r["n_sent"])
        for key in ("control_channel_model", "control_ideal_sro"):
            c = r.get(key)
            if c and c["evm_db"] is not None:
                c["evm_penalty_db"] = c["evm_db"] - base[r["k"]] if r["k"] in base else None
    if any(CASES[nm].get("sro") for nm in names):
        res["clock_offset_convention"] = convention_check()
        res["channel_model_interpolator"] = resampler_response("channel_model")
        res["pfb_resampler"] = resampler_response("pfb")
        print(json.dumps({"convention": res["clock_offset_convention"],
                          "pfb_error_db": res["pfb_resampler"]["error_db"],
                          "pfb_min_gain_db": res["pfb_resampler"]["min_gain_db"]}), flush=True)
    if a.idle_samples:
        res["idle"].append(idle_case(a.idle_samples, a.snr_db, 0.05, seed=7))
        res["idle"].append(idle_case(a.idle_samples // 4, a.snr_db, 0.0, seed=8, cw=(-10, 0.1703)))
        print(json.dumps(res["idle"]), flush=True)
        res["false_alarm"] = false_alarm_curve(a.idle_samples // 2, seed=9)
        print(json.dumps(res["false_alarm"]), flush=True)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "impairments.json").write_text(json.dumps(res, indent=1))
    (out / "impairments.md").write_text(table(res))
    plot(res, out / "impairments.png")
    print(table(res))


if __name__ == "__main__":
    main()
