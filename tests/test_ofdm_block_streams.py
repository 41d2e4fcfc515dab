# SPDX-License-Identifier: GPL-3.0-or-later
"""OFDM JSCC TX / RX blocks as streams in real GNU Radio flowgraphs: the batched TX output is sample
for sample the PHY's frames (amplitude folded in, burst tags, batches larger than one build, the
zeros flushed when upstream is done, continuous zeros mode); the adaptively batching RX delivers
every frame of a finite stream before the flowgraph finishes; the fast PMT conversions agree with
pmt's own."""
import importlib

import numpy as np
import pytest

from gr_shim import gr_sing

pytestmark = pytest.mark.gnuradio
pytest.importorskip("gnuradio.gr")
sing = gr_sing()
import pmt  # noqa: E402
from gnuradio import blocks, gr  # noqa: E402
from gnuradio.sing import qa_helpers as qa  # noqa: E402
from gnuradio.sing.ofdm_pmt import c32_array, c32_pmt, dict_pmt, pdu_parts  # noqa: E402
from gnuradio.sing.ofdm_test_source import test_symbols as ref_symbols  # noqa: E402

from sing.phy import HeaderFields, OfdmParams  # noqa: E402
from sing.phy.tx import build_frames  # noqa: E402

tx_mod = importlib.import_module("gnuradio.sing.ofdm_jscc_tx")      # the module, not the block

DONE = pmt.cons(pmt.intern("done"), pmt.from_long(1))


def _run(tb, timeout=30.0):
    """tb.run() that fails the test (TimeoutError) instead of hanging it."""
    qa.run_with_timeout(tb, timeout)


def _rx_flowgraph(x):
    """Run samples x through the OFDM JSCC RX block to the end; returns (rx, message_debug)."""
    tb = gr.top_block()
    rx = sing.ofdm_jscc_rx()
    dbg = blocks.message_debug()
    tb.connect(blocks.vector_source_c(x, False), rx)
    tb.msg_connect(rx, "out", dbg, "store")
    _run(tb)
    return rx, dbg


def _post_images(tx, ks, seed=3):
    post = tx.framer.to_basic_block()._post
    zs = []
    for i, k in enumerate(ks):
        z = ref_symbols(seed, i, k)
        zs.append(z)
        post(pmt.intern("in"), pmt.cons(pmt.to_pmt({"image_id": str(i), "k": k, "seq": i}), c32_pmt(z)))
    return zs


def test_tx_batches_tags_amplitude_and_done_flush():
    ks = [256, 100, 1000, 48] * 20                      # 80 frames: more than one batch of 64
    tb = gr.top_block()
    tx = sing.ofdm_jscc_tx(amplitude=0.5, gap=10)
    sink = blocks.vector_sink_c()
    tb.connect(tx, sink)
    zs = _post_images(tx, ks)
    tx.framer.to_basic_block()._post(pmt.intern("system"), DONE)
    _run(tb)
    heads = [HeaderFields(str(i), k, seq=i) for i, k in enumerate(ks)]
    want, lens = build_frames(OfdmParams(), zs, heads, gap=10, gain=0.5)
    got = np.asarray(sink.data(), np.complex64)
    assert got.size == want.size + 2048                   # frames, then the flush zeros
    np.testing.assert_allclose(got[:want.size], want, atol=1e-6)
    assert not np.any(got[want.size:])
    ends = np.cumsum(np.asarray(lens) + 10)
    tags = {(t.offset, pmt.symbol_to_string(t.key)) for t in sink.tags()}
    assert tags == {(int(a), "tx_sob") for a in np.r_[0, ends[:-1]]} | {(int(b) - 1, "tx_eob") for b in ends}
    assert tx.framer.sent == len(ks) and tx.framer.dropped == 0


def test_tx_idle_zeros_is_continuous_and_holds_the_frame():
    tb = gr.top_block()
    tx = sing.ofdm_jscc_tx(idle="zeros", gap=0, burst_tags=False)
    n = 40000
    sink = blocks.vector_sink_c()
    tb.connect(tx, blocks.head(gr.sizeof_gr_complex, n), sink)
    zs = _post_images(tx, [256])
    _run(tb)
    want = build_frames(OfdmParams(), zs, [HeaderFields("0", 256, seq=0)])[0]
    got = np.asarray(sink.data(), np.complex64)
    assert got.size == n
    s = int(np.flatnonzero(got)[0])
    np.testing.assert_allclose(got[s:s + want.size], want, atol=1e-6)
    assert not np.any(got[:s]) and not np.any(got[s + want.size:])


def test_rx_finite_stream_delivers_every_frame_before_finishing():
    """Adaptive batching never holds frames back at the end of a stream: the last call, when the
    input stops growing, processes everything."""
    ks = [256, 100, 1000, 48] * 8
    zs = [ref_symbols(5, i, k) for i, k in enumerate(ks)]
    x, _ = build_frames(OfdmParams(), zs, [HeaderFields(str(i), k, seq=i) for i, k in enumerate(ks)], gap=30)
    rng = np.random.default_rng(1)
    x = np.r_[np.zeros(300), x, np.zeros(20)]
    x = (x + 0.05 * (rng.standard_normal(x.size) + 1j * rng.standard_normal(x.size))).astype(np.complex64)
    rx, dbg = _rx_flowgraph(x)
    assert dbg.num_messages() == len(ks)
    for i in range(len(ks)):
        m = dbg.get_message(i)
        meta = pmt.to_python(pmt.car(m))
        z = c32_array(pmt.cdr(m))
        assert meta["image_id"] == str(i) and z.size == ks[i]
        assert 10 * np.log10(np.mean(np.abs(z - zs[i]) ** 2)) < -15
    assert rx.counters()["frames"] == len(ks) and rx.counters()["bad_headers"] == 0


def test_rx_block_drops_bad_header_and_truncated_frame_and_keeps_running(capfd):
    """In a flowgraph (GNU Radio's block logger, not Python logging): a frame whose header CRC
    fails and one cut short are counted and logged once each, the frames after them arrive."""
    from sing.phy.header import encode_header
    from sing.phy.tx import ofdm_modulate
    p = OfdmParams()
    rng = np.random.default_rng(3)
    zs = [ref_symbols(6, i, 256) for i in range(4)]
    frames = [build_frames(p, [z], [HeaderFields(str(i), 256, seq=i)])[0] for i, z in enumerate(zs)]
    hs = p.stf_len + p.ltf_len
    h = encode_header(p, HeaderFields("0", 256, seq=0))
    h[:6] *= np.where(rng.random((6, 48)) < 0.5, -1, 1)           # pilots intact, bits wrong
    frames[0][hs:hs + p.n_header_syms * p.sym_len] = ofdm_modulate(p, h)
    frames[1] = frames[1][:frames[1].size - 4 * p.sym_len]       # cut short, next frame at once
    gap = np.zeros(200, np.complex64)
    x = np.concatenate([gap, frames[0], gap, frames[1], frames[2], gap, frames[3], gap])
    x = (x + 0.03 * (rng.standard_normal(x.size) + 1j * rng.standard_normal(x.size))).astype(np.complex64)
    rx, dbg = _rx_flowgraph(x)
    got = [pmt.to_python(pmt.car(dbg.get_message(i)))["image_id"] for i in range(dbg.num_messages())]
    assert got == ["2", "3"]
    c = rx.counters()
    assert c["bad_headers"] == 1 and c["truncated"] == 1 and c["frames"] == 2
    cap = capfd.readouterr()
    log = cap.out + cap.err                                     # GNU Radio's console log sink
    assert log.count("header CRC failed") == 1 and log.count("frame truncated") == 1, log[-2000:]


@pytest.mark.parametrize("n", [0, 1, 7, 5000])
def test_fast_pmt_conversions_match_pmt(n):
    rng = np.random.default_rng(n)
    z = (rng.standard_normal(n) + 1j * rng.standard_normal(n)).astype(np.complex64)
    v = c32_pmt(z)
    assert pmt.equal(v, pmt.init_c32vector(n, z))
    assert np.array_equal(c32_array(v), z) and c32_array(v).dtype == np.complex64
    meta = {"s": "x", "i": 3, "f": 2.5, "b": True, "ni": np.int64(4), "nf": np.float32(1.5), "none": None}
    want = pmt.to_pmt({"s": "x", "i": 3, "f": 2.5, "b": True, "ni": 4, "nf": 1.5})
    assert pmt.equal(dict_pmt(meta), want)


def _meta_pmt(items):
    d = pmt.make_dict()
    for k, v in items:
        d = pmt.dict_add(d, pmt.intern(k), v)
    return d


PDU_METAS = [
    _meta_pmt([("image_id", pmt.intern("folder/cat.png")), ("k", pmt.from_long(7)),
               ("model_id", pmt.intern("jscc-natural-1/48")), ("height", pmt.from_long(64)),
               ("width", pmt.from_long(32)), ("channels", pmt.from_long(3)), ("bcr", pmt.intern("1/48"))]),
    _meta_pmt([("image_id", pmt.intern("12")), ("k", pmt.from_double(7.0)), ("seq", pmt.from_uint64(40000)),
               ("snr_db", pmt.from_double(-3.5)), ("flag", pmt.PMT_T), ("big", pmt.from_long(1 << 40))]),
    pmt.make_dict(),
    _meta_pmt([("k", pmt.from_long(7)), ("nested", pmt.to_pmt([1, 2])), ("c", pmt.from_complex(1j))]),
]


@pytest.mark.parametrize("i", range(len(PDU_METAS)))
def test_tx_pdu_fast_path_matches_pmt_generic_path(i, monkeypatch):
    """The serialisation-based PDU reader gives what pmt's own functions give (or declines)."""
    z = ref_symbols(9, i, 7)
    msg = pmt.cons(PDU_METAS[i], c32_pmt(z))
    parts = pdu_parts(msg)
    if i < 3:
        assert parts is not None
        assert parts[0] == (pmt.to_python(PDU_METAS[i]) or {})
        assert np.array_equal(np.frombuffer(parts[1], ">c8"), z)
    else:
        assert parts is None                        # a list / complex value: generic path
    fast = tx_mod.parse_pdu(msg, 5)
    monkeypatch.setattr(tx_mod, "pdu_parts", lambda m: None)
    slow = tx_mod.parse_pdu(msg, 5)
    assert fast[0] == slow[0] and fast[1] == slow[1] and fast[2] == slow[2]


def test_tx_parse_rejects_bad_pdus_by_name():
    z = ref_symbols(9, 0, 7)
    cases = {"not a PDU of complex symbols": pmt.cons(pmt.make_dict(), pmt.init_f32vector(3, [1, 2, 3])),
             "not a PDU": pmt.intern("x"),
             "metadata says k = 3": pmt.cons(pmt.to_pmt({"k": 3}), c32_pmt(z)),
             "no symbols": pmt.cons(pmt.make_dict(), c32_pmt(z[:0])),
             "does not fit the header": pmt.cons(pmt.to_pmt({"k": 7, "height": 5000}), c32_pmt(z))}
    for why, bad in cases.items():
        with pytest.raises(ValueError, match=why):           # InputError is a ValueError
            tx_mod.parse_pdu(bad, 0)


def test_rx_block_counters_port_and_bad_samples_never_stall():
    """NaN / Inf samples inside a frame, a ×1000 burst and a stream that ends mid-frame: the
    flowgraph runs to the end, the hit frame and the cut one are dropped, the others arrive, and
    the counters come out on the `counters` message port."""
    p = OfdmParams()
    zs = [ref_symbols(8, i, 256) for i in range(4)]
    x, _ = build_frames(p, zs, [HeaderFields(str(i), 256, seq=i) for i in range(4)], gap=1500)
    rng = np.random.default_rng(4)
    x = np.r_[np.zeros(300), x]
    x = (x + 0.05 * (rng.standard_normal(x.size) + 1j * rng.standard_normal(x.size))).astype(np.complex64)
    L = p.frame_len(256) + 1500
    x[300 + L + 700:300 + L + 703] = np.nan                       # inside frame 1
    x[300 + L + 703] = np.inf
    x[300 + 3 * L - 1400:300 + 3 * L - 900] *= 1000               # burst before frame 3
    x = x[:300 + 3 * L + 1000]                                    # frame 3 cut mid-way
    tb = gr.top_block()
    rx = sing.ofdm_jscc_rx()
    dbg, cnt = blocks.message_debug(), blocks.message_debug()
    tb.connect(blocks.vector_source_c(x, False), rx)
    tb.msg_connect(rx, "out", dbg, "store")
    tb.msg_connect(rx, "counters", cnt, "store")
    _run(tb)
    got = [pmt.to_python(pmt.car(dbg.get_message(i)))["image_id"] for i in range(dbg.num_messages())]
    assert got == ["0", "2"]
    msgs = [pmt.to_python(cnt.get_message(i)) for i in range(cnt.num_messages())]
    assert any(m["bad_samples"] == 4 and m["bad_input_frames"] == 1 and m["frames"] == 2 for m in msgs)
    c = rx.counters()
    assert c["bad_samples"] == 4 and c["bad_input_frames"] == 1 and c["frames"] == 2
    assert c["truncated"] == 1                                    # the stream ended inside frame 3


def _tx_output(ks, amplitude, gap, header_mod="qpsk", seed=8):
    """Run PDUs of the given sizes through the TX block to the end; (samples, symbols, headers)."""
    tb = gr.top_block()
    tx = sing.ofdm_jscc_tx(header_mod=header_mod, amplitude=amplitude, gap=gap)
    tx.framer.max_queue = len(ks) + 1
    sink = blocks.vector_sink_c()
    tb.connect(tx, sink)
    zs = _post_images(tx, ks, seed)
    tx.framer.to_basic_block()._post(pmt.intern("system"), DONE)
    _run(tb)
    assert tx.framer.sent == len(ks) and not tx.framer.ts._held     # thread state given back
    return np.asarray(sink.data(), np.complex64), zs, [HeaderFields(str(i), k, seq=i) for i, k in enumerate(ks)]


@pytest.mark.parametrize("header_mod", ["qpsk", "bpsk-x2"])
def test_tx_output_is_bit_identical_to_the_library_build(header_mod):
    """The TX block's samples for a fixed input are exactly (not approximately) those of
    sing.phy.tx.build_frames on all frames at once without a workspace: batching, the reused
    build buffers (several batches of one k, then other k, then the first k again) and the kept
    thread state change no bit."""
    ks = [256] * 70 + [1000, 48, 4096, 256, 7] * 3 + [256] * 66
    got, zs, heads = _tx_output(ks, 0.37, 11, header_mod)
    want, _ = build_frames(OfdmParams(header_mod=header_mod), zs, heads, gap=11, gain=0.37)
    assert got.size == want.size + 2048
    assert np.array_equal(got[:want.size], want)


def test_frame_workspace_reuse_is_bit_identical():
    """build_frames with a reused FrameWorkspace = without, exactly, over batches of changing size,
    k, gap and gain (more shapes than the workspace keeps, so buffers are dropped and remade)."""
    from sing.phy.tx import FrameWorkspace
    p = OfdmParams()
    rng = np.random.default_rng(9)
    ws = FrameWorkspace(max_shapes=2)
    for it in range(12):
        k = int(rng.choice([48, 256, 300, 1000]))
        B = int(rng.integers(1, 20))
        Z = ref_symbols(it, 0, B * k).reshape(B, k)
        heads = [HeaderFields(str(i), k, seq=i) for i in range(B)]
        gap, gain = int(rng.integers(0, 30)), float(rng.choice([1.0, 0.5]))
        a, la = build_frames(p, Z, heads, gap=gap, gain=gain)
        b, lb = build_frames(p, Z, heads, gap=gap, gain=gain, workspace=ws)
        assert la == lb and np.array_equal(a, b)
    assert len(ws._bufs) <= 2


def test_thread_state_hold_is_balanced_in_a_thread():
    """ThreadStateHold: hold twice = once, release gives it back, a second release does nothing;
    the thread then exits normally (a thread state left held would not be freed)."""
    import threading
    from gnuradio.sing.thread_state import ThreadStateHold
    h = ThreadStateHold()
    seen = []

    def body():
        h.hold()
        h.hold()
        seen.append(len(h._held))
        h.release()
        h.release()
        seen.append(len(h._held))

    t = threading.Thread(target=body)
    t.start()
    t.join(5)
    assert not t.is_alive() and seen == [1, 0]


@pytest.mark.parametrize("i", range(len(PDU_METAS)))
def test_tx_symbols_by_address_match_the_serialised_symbols(i, monkeypatch):
    """read_pdu's usual path (metadata from the dict alone, symbols copied from the vector's
    address) gives the same header and exactly the same symbols as parse_pdu's serialisation,
    and declines (falls back) the same PDUs."""
    from gnuradio.sing import ofdm_pmt
    assert ofdm_pmt.c32_address is not None          # this GNU Radio: the fast path is in use
    z = ref_symbols(9, i, 7)
    msg = pmt.cons(PDU_METAS[i], c32_pmt(z))
    src, n, h, hint = tx_mod.read_pdu(msg, 5)
    blob, h2, hint2 = tx_mod.parse_pdu(msg, 5)
    assert n == 7 and (h, hint) == (h2, hint2)
    got = np.empty(n, np.complex64)
    if i < 3:
        assert not isinstance(src, bytes)
        ofdm_pmt.c32_copy(got.ctypes.data, src, n)
    else:
        assert isinstance(src, bytes)
        got[:] = np.frombuffer(src, ">c8")
    assert got.tobytes() == np.frombuffer(blob, ">c8").astype(np.complex64).tobytes() == z.astype(np.complex64).tobytes()


def test_tx_drops_nan_pdu_and_sends_the_rest_exactly():
    """A PDU with a NaN symbol among good ones of mixed k (one batch) is dropped and counted; the
    others go out bit for bit as build_frames makes them."""
    ks = [256, 100, 256, 48]
    tb = gr.top_block()
    tx = sing.ofdm_jscc_tx(gap=5)
    sink = blocks.vector_sink_c()
    tb.connect(tx, sink)
    post = tx.framer.to_basic_block()._post
    zs = [ref_symbols(11, i, k) for i, k in enumerate(ks)]
    zs[1] = zs[1].copy()
    zs[1][17] = np.nan
    for i, (k, z) in enumerate(zip(ks, zs)):
        post(pmt.intern("in"), pmt.cons(pmt.to_pmt({"image_id": str(i), "k": k, "seq": i}), c32_pmt(z)))
    post(pmt.intern("system"), DONE)
    _run(tb)
    good = [0, 2, 3]
    want, _ = build_frames(OfdmParams(), [zs[i] for i in good],
                           [HeaderFields(str(i), ks[i], seq=i) for i in good], gap=5)
    got = np.asarray(sink.data(), np.complex64)
    assert tx.framer.dropped == 1 and tx.framer.sent == 3
    assert np.array_equal(got[:want.size], want) and not np.any(got[want.size:])
