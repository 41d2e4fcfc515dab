# SPDX-License-Identifier: GPL-3.0-or-later
"""sing.phy (pure numpy): OFDM round trip through CFO, timing offset, multipath and noise; header;
bad input (corrupted header, truncated frame, noise only); SNR estimate."""
import logging

import numpy as np
import pytest

from sing.phy import HeaderFields, OfdmParams, OfdmReceiver, build_frame
from sing.phy.header import (_SIGNS, crc32_str, decode_header, encode_header, fields_to_meta,
                             rm_decode_idx)
from sing.phy.params import tables
from sing.phy.tx import build_frames, ofdm_modulate, payload_slots

TAPS = (1.0, 0.35 * np.exp(0.7j), 0.12 * np.exp(-2.1j))


def unit(rng, k):
    z = rng.standard_normal(k) + 1j * rng.standard_normal(k)
    return (z / np.sqrt(np.mean(np.abs(z) ** 2))).astype(np.complex64)


def channel(x, snr_db, rng, cfo=0.0, taps=(1.0,), delay=100, tail=300):
    """Per-subcarrier SNR snr_db (time-domain signal power 1 ⇒ noise var 64/52·10^(-snr/10))."""
    t = np.asarray(taps, complex)
    y = np.convolve(x, t / np.linalg.norm(t))
    y = np.r_[np.zeros(delay), y, np.zeros(tail)]
    y = y * np.exp(2j * np.pi * cfo * np.arange(y.size))
    s = np.sqrt(64 / 52 * 10 ** (-snr_db / 10) / 2)
    return (y + s * (rng.standard_normal(y.size) + 1j * rng.standard_normal(y.size))).astype(np.complex64)


def hdr(i, k=256):
    return HeaderFields(str(i), k, "jscc-natural-1/48", 64, 64, 3, seq=int(i) if str(i).isdigit() else 0)


def test_header_roundtrip_and_ids():
    p = OfdmParams()
    s = encode_header(p, HeaderFields("123456", 512, "m1", 64, 32, 3, seq=77))
    f = decode_header(p, s)
    meta = fields_to_meta(f, model_ids=["m0", "m1"])
    assert meta == {"image_id": "123456", "k": 512, "model_id": "m1", "height": 64, "width": 32,
                    "channels": 3, "seq": 77, "bcr": "1/12"}
    assert fields_to_meta(f)["model_id"] == "#%08x" % crc32_str("m1")
    assert fields_to_meta(f, model_bcr={"m1": "1/13"}, model_ids=["m1"])["bcr"] == "1/13"
    # a non-numeric image id: "ota/<seq>-<crc32>" unless the receiver knows the candidates
    f = decode_header(p, encode_header(p, HeaderFields("folder/cat.png", 256, "", 64, 64, 3, seq=40000)))
    crc = crc32_str("folder/cat.png")
    m = fields_to_meta(f)
    assert m["image_id"] == "ota/%d-%08x" % (40000 % 32768, crc) and m["image_id_crc32"] == "%08x" % crc
    assert m["bcr"] == "1/48" and m["model_id"] == ""
    assert fields_to_meta(f, image_ids=["folder/dog.png", "folder/cat.png"])["image_id"] == "folder/cat.png"
    assert fields_to_meta(decode_header(p, encode_header(p, hdr("007"))))["image_id"].startswith("ota/")
    s[0, :20] *= -1                                  # flip 20 soft symbols: the code corrects them
    assert decode_header(p, s) is not None
    assert decode_header(p, -encode_header(p, hdr(1))) is None   # all bits wrong: CRC rejects


@pytest.mark.parametrize("mod", ["qpsk", "bpsk", "bpsk-x2"])
def test_batched_frames_match_the_step_by_step_mapping(mod):
    """build_frames (one gather, one IFFT for a batch of mixed k, gain folded in) = preamble +
    ofdm_modulate(header rows, interleaved payload rows) per frame, scaled."""
    p = OfdmParams(header_mod=mod)
    rng = np.random.default_rng(4)
    ks = [256, 100, 48, 1000, 7, 256]
    zs = [unit(rng, k) for k in ks]
    hs = [hdr(i, k) for i, k in enumerate(ks)]
    x, lens = build_frames(p, zs, hs, gap=5, gain=0.7)
    o = 0
    for z, h, n in zip(zs, hs, lens):
        body = np.concatenate([encode_header(p, h), payload_slots(p, z)])
        want = np.r_[tables(p)["preamble"], ofdm_modulate(p, body)] * 0.7
        assert n == p.frame_len(z.size) == want.size
        np.testing.assert_allclose(x[o:o + n], want, atol=2e-6)
        assert not np.any(x[o + n:o + n + 5])
        o += n + 5
    assert o == x.size


def test_header_batch_encoder_matches_bitwise_reference():
    """encode_headers (codeword table) = RM-encode the 162 bits, whiten, interleave, map."""
    from sing.phy.header import encode_headers, pack_bits, rm_encode
    for mod in ("qpsk", "bpsk-x2"):
        p = OfdmParams(header_mod=mod)
        t = tables(p)
        hs = [hdr(i) for i in range(5)] + [HeaderFields("folder/x.png", 77, "m", 8, 8, 1, seq=32767)]
        for h, got in zip(hs, encode_headers(p, hs)):
            c = np.tile(rm_encode(pack_bits(h)), p.header_rep) ^ t["hdr_pn"]
            s = 1.0 - 2.0 * c[t["hdr_perm"]].astype(float)
            if mod == "qpsk":
                s = (s[0::2] + 1j * s[1::2]) / np.sqrt(2)
            np.testing.assert_allclose(got.reshape(-1), s, atol=1e-6)


def test_rm_fast_hadamard_decoder_is_ml():
    rng = np.random.default_rng(9)
    soft = rng.standard_normal((400, 32))
    ml = np.argmax(soft @ _SIGNS.T.astype(float), axis=1)
    assert np.array_equal(rm_decode_idx(soft)[:, 0], ml)


@pytest.mark.parametrize("mod", ["qpsk", "bpsk-x2"])
def test_roundtrip_cfo_timing_multipath_noise(mod):
    p = OfdmParams(header_mod=mod)
    rng = np.random.default_rng(0)
    rx = OfdmReceiver(p)
    sent, got = [], []
    for i in range(8):
        k = [256, 100, 1000, 48][i % 4]
        z = unit(rng, k)
        sent.append(z)
        got += rx.push(channel(build_frame(p, z, hdr(i, k)), 20, rng, cfo=0.004, taps=TAPS, delay=50 + 13 * i))
    assert [f.meta["image_id"] for f in got] == [str(i) for i in range(8)]
    for z, f in zip(sent, got):
        assert f.symbols.dtype == np.complex64 and f.symbols.size == z.size
        evm_db = 10 * np.log10(np.mean(np.abs(f.symbols - z) ** 2))
        assert evm_db < -15, evm_db
        assert f.meta["k"] == z.size and f.meta["snr_source"] == "estimated"
        assert abs(f.meta["snr_db"] + evm_db) < 1.0 + 12 / np.sqrt(z.size)   # truth itself is noisy for small k
        assert abs(f.meta["cfo_cycles_per_sample"] - 0.004) < 2e-4
    assert rx.counters.bad_headers == rx.counters.truncated == 0


def test_back_to_back_frames_in_one_chunk_and_header_aided_estimate():
    """No gaps between frames, everything pushed at once (one batch); the header-aided channel
    estimate beats the LTF-only one by most of the LTF estimation loss on multipath."""
    p = OfdmParams()
    rng = np.random.default_rng(5)
    z = [unit(rng, 256) for _ in range(30)]
    x = np.concatenate([build_frame(p, zi, hdr(i)) for i, zi in enumerate(z)])
    y = channel(x, 10, rng, cfo=0.002, taps=TAPS)
    evm = {}
    for aided in (False, True):
        rx = OfdmReceiver(p, header_aided=aided)
        out = rx.push(y)
        assert [f.meta["image_id"] for f in out] == [str(i) for i in range(30)]
        e = np.mean([np.mean(np.abs(f.symbols - z[i]) ** 2) for i, f in enumerate(out)])
        evm[aided] = 10 * np.log10(e)
        est = np.mean([f.meta["snr_db"] for f in out])
        assert abs(est + evm[aided]) < 0.3, (aided, est, evm[aided])
    assert evm[True] < evm[False] - 0.2, evm


def test_stream_in_small_chunks_matches():
    p = OfdmParams()
    rng = np.random.default_rng(1)
    z = [unit(rng, 256) for _ in range(3)]
    y = np.concatenate([channel(build_frame(p, zi, hdr(i)), 15, rng, cfo=-0.003, taps=TAPS) for i, zi in enumerate(z)])
    rx = OfdmReceiver(p)
    out = []
    for c in np.array_split(y, 37):
        out += rx.push(c)
    assert [f.meta["image_id"] for f in out] == ["0", "1", "2"]


def test_noise_only_gives_no_frames():
    rng = np.random.default_rng(2)
    rx = OfdmReceiver(OfdmParams())
    out = []
    for _ in range(20):
        out += rx.push(((rng.standard_normal(20000) + 1j * rng.standard_normal(20000)) / np.sqrt(2)).astype(np.complex64))
    out += rx.push(np.zeros(5000, np.complex64))
    assert out == [] and rx.counters.frames == 0


def test_corrupted_header_and_truncated_frame_dropped_stream_continues(caplog):
    p = OfdmParams()
    rng = np.random.default_rng(3)
    z = [unit(rng, 256) for _ in range(3)]
    f0 = build_frame(p, z[0], hdr(0))
    hs = p.stf_len + p.ltf_len
    h = encode_header(p, hdr(0))
    h[:6] *= np.where(rng.random((6, 48)) < 0.5, -1, 1)            # pilots intact, bits wrong
    f0[hs:hs + p.n_header_syms * p.sym_len] = ofdm_modulate(p, h)
    f1 = build_frame(p, z[1], hdr(1))
    f1 = f1[: f1.size - 4 * p.sym_len]               # cut short: next frame follows at once
    f2 = build_frame(p, z[2], hdr(2))
    y = np.concatenate([channel(f0, 25, rng), channel(f1, 25, rng, tail=0), channel(f2, 25, rng)])
    rx = OfdmReceiver(p)
    with caplog.at_level(logging.WARNING):
        out = rx.push(y)
    assert [f.meta["image_id"] for f in out] == ["2"]
    assert rx.counters.bad_headers == 1 and rx.counters.truncated == 1
    msgs = [r.getMessage() for r in caplog.records]
    assert sum("CRC" in m for m in msgs) == 1 and sum("truncated" in m for m in msgs) == 1


@pytest.mark.parametrize("snr_db", [0.0, 10.0, 20.0])
def test_snr_estimate_unbiased_awgn(snr_db):
    p = OfdmParams(header_mod="bpsk")
    rng = np.random.default_rng(4)
    rx = OfdmReceiver(p)
    meas, est = [], []
    for i in range(15):
        z = unit(rng, 256)
        for f in rx.push(channel(build_frame(p, z, hdr(i)), snr_db, rng, cfo=0.001, taps=TAPS)):
            meas.append(-10 * np.log10(np.mean(np.abs(f.symbols - z) ** 2)))
            est.append(f.meta["snr_db"])
    assert len(est) >= 14
    assert abs(np.mean(est) - np.mean(meas)) < 0.5
