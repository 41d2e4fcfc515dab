# SPDX-License-Identifier: GPL-3.0-or-later
"""OFDM JSCC blocks and flowgraphs in GNU Radio: in-process loopback through channel_model, the
generated ofdm_loopback_no_gui, TX end of input, usrp_* without hardware. (Images end to end,
one flowgraph and zmq_tx + zmq_rx as two processes: test_ofdm_images_e2e.py.)"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.gnuradio
pytest.importorskip("gnuradio.gr")
ROOT = Path(__file__).resolve().parents[1]
SHIM = ROOT / ".cache" / "gr-shim"


def _shim():
    d = SHIM / "gnuradio"
    d.mkdir(parents=True, exist_ok=True)
    if not (d / "sing").exists():
        (d / "sing").symlink_to(ROOT / "sing_blocks", target_is_directory=True)
    import gnuradio
    if str(d) not in gnuradio.__path__:
        gnuradio.__path__.insert(0, str(d))


_shim()
import pmt  # noqa: E402
from gnuradio import blocks, channels, gr, sing  # noqa: E402
from gnuradio.sing.ofdm_pdu_file_sink import read_records  # noqa: E402
from gnuradio.sing.ofdm_test_source import test_symbols as ref_symbols  # noqa: E402

ENV = dict(os.environ, PYTHONPATH=f"{SHIM}:{ROOT}:" + os.environ.get("PYTHONPATH", ""),
           GRC_BLOCKS_PATH=str(ROOT / "sing_blocks" / "grc"), PYTHONUNBUFFERED="1")


def _evm_db(rec):
    ref = ref_symbols(1, int(rec["image_id"]), rec["k"])
    return 10 * np.log10(np.mean(np.abs(rec["symbols"] - ref) ** 2))


def test_loopback_blocks_channel_model():
    tb = gr.top_block()
    src = sing.ofdm_test_source(k=256, n_images=12, interval_s=0.01, seed=1, start_delay_s=0.2)
    tx = sing.ofdm_jscc_tx()
    taps = np.array([1.0, 0.35 * np.exp(0.7j), 0.12 * np.exp(-2.1j)])
    ch = channels.channel_model(noise_voltage=float(np.sqrt(64 / 52 * 0.1)), frequency_offset=0.002,
                                epsilon=1.0, taps=list(taps / np.linalg.norm(taps)), noise_seed=5)
    rx = sing.ofdm_jscc_rx(samp_rate=1e6)
    dbg = blocks.message_debug()
    tb.msg_connect(src, "out", tx, "in")
    tb.connect(tx, blocks.delay(gr.sizeof_gr_complex, 77), ch, rx)
    tb.msg_connect(rx, "out", dbg, "store")
    tb.start()
    t0 = time.time()
    while dbg.num_messages() < 12 and time.time() - t0 < 30:
        time.sleep(0.05)
    tb.stop()
    tb.wait()
    assert dbg.num_messages() == 12
    for i in range(12):
        m = dbg.get_message(i)
        meta = pmt.to_python(pmt.car(m))
        z = np.asarray(pmt.c32vector_elements(pmt.cdr(m)))
        assert meta["image_id"] == str(i) and meta["k"] == 256 and meta["bcr"] == "1/48"
        assert (meta["height"], meta["width"], meta["channels"]) == (64, 64, 3)
        assert meta["snr_source"] == "estimated"
        evm = 10 * np.log10(np.mean(np.abs(z - ref_symbols(1, i, 256)) ** 2))
        assert evm < -6.5 and abs(meta["snr_db"] + evm) < 1.5
        assert abs(meta["cfo_hz"] - 2000) < 100
    assert rx.counters()["bad_headers"] == 0


def test_tx_bad_pdu_is_dropped_and_flowgraph_keeps_running():
    tb = gr.top_block()
    tx = sing.ofdm_jscc_tx()
    sink = blocks.vector_sink_c()
    tb.connect(tx, sink)
    post = tx.framer.to_basic_block()._post
    post(pmt.intern("in"), pmt.cons(pmt.make_dict(), pmt.init_f32vector(3, [1, 2, 3])))       # wrong type
    post(pmt.intern("in"), pmt.cons(pmt.to_pmt({"k": 5}), pmt.init_c32vector(4, [1j] * 4)))    # k mismatch
    post(pmt.intern("in"), pmt.cons(pmt.to_pmt({"image_id": "7"}), pmt.init_c32vector(256, ref_symbols(1, 7, 256))))
    tb.start()
    t0 = time.time()
    while len(sink.data()) < 1616 + 64 and time.time() - t0 < 10:
        time.sleep(0.05)
    time.sleep(0.1)
    tb.stop()
    tb.wait()
    assert tx.framer.dropped == 2 and len(sink.data()) == 1616 + 64


def _grcc(name, out):
    r = subprocess.run(["grcc", "-o", str(out), str(ROOT / "flowgraphs" / f"{name}.grc")], env=ENV,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return out / f"{name}.py"


def _wait_records(path, n, procs, timeout):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if path.exists() and len(read_records(path)) >= n:
            return read_records(path)
        for p in procs:
            if p.poll() is not None:
                raise AssertionError(f"flowgraph exited early:\n{p.stderr.read()[-3000:]}")
        time.sleep(0.2)
    return read_records(path) if path.exists() else []


def _stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGINT)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def test_generated_loopback_no_gui(tmp_path):
    py = _grcc("ofdm_loopback_no_gui", tmp_path)
    out = tmp_path / "rx.jsonl"
    p = subprocess.Popen([sys.executable, str(py), "--n-images", "10", "--snr-db", "12", "--out", str(out)],
                         env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        so, se = p.communicate(timeout=90)            # ends by itself after its --n-images
    finally:
        _stop(p)
    assert p.returncode == 0, se[-3000:]
    recs = read_records(out)
    assert sorted(int(r["image_id"]) for r in recs) == list(range(10))
    assert all(_evm_db(r) < -8 for r in recs)
    # one line per received frame (id, seq, symbols, SNR estimate, EVM against the sent) + a summary
    lines = {ln.split(" ")[0]: ln for ln in so.splitlines() if " received 256 symbols " in ln}
    assert sorted(lines, key=int) == [str(i) for i in range(10)], so
    for r in recs:
        ln = lines[str(r["image_id"])]
        assert f"SNR {r['snr_db']:.1f} dB (estimated)" in ln and f"EVM {_evm_db(r):.1f} dB" in ln, ln
    out_lines = so.splitlines()          # GNU Radio's own info lines may follow the summary
    summary = [i for i, ln in enumerate(out_lines) if ln.startswith("summary: 10 frames received; mean SNR estimate")]
    assert len(summary) == 1 and summary[0] > max(out_lines.index(ln) for ln in lines.values()), so


def test_header_mod_choice_reaches_compiled_flowgraph(tmp_path):
    """The header modulation set in GRC is what the generated Python passes to both blocks: a
    literal non-default choice, and the flowgraph's `header_mod` parameter, which then runs end
    to end with --header-mod bpsk-x2 (36 header symbols instead of QPSK's 9)."""
    src = (ROOT / "flowgraphs" / "ofdm_loopback_no_gui.grc").read_text()
    assert src.count("{header_mod: header_mod,") == 2
    (tmp_path / "lit").mkdir()
    lit = tmp_path / "lit" / "ofdm_loopback_no_gui.grc"
    lit.write_text(src.replace("{header_mod: header_mod,", "{header_mod: bpsk-x2,"))
    r = subprocess.run(["grcc", "-o", str(lit.parent), str(lit)], env=ENV, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    code = (lit.parent / "ofdm_loopback_no_gui.py").read_text()
    assert "sing.ofdm_jscc_tx(header_mod='bpsk-x2'," in code
    assert "sing.ofdm_jscc_rx(header_mod='bpsk-x2'," in code

    py = _grcc("ofdm_loopback_no_gui", tmp_path)
    code = py.read_text()
    assert "sing.ofdm_jscc_tx(header_mod=header_mod," in code
    assert "sing.ofdm_jscc_rx(header_mod=header_mod," in code
    out = tmp_path / "rx.jsonl"
    p = subprocess.Popen([sys.executable, str(py), "--n-images", "4", "--snr-db", "12", "--header-mod",
                          "bpsk-x2", "--out", str(out)], env=ENV, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        recs = _wait_records(out, 4, [p], 60)
    finally:
        _stop(p)
    assert sorted(int(r["image_id"]) for r in recs) == list(range(4))
    assert all(r["ofdm_symbols"] == 36 + 256 // 48 + 1 for r in recs), [r["ofdm_symbols"] for r in recs]


@pytest.mark.parametrize("name", ["usrp_tx", "usrp_rx"])
def test_usrp_flowgraphs_compile_and_fail_cleanly_without_device(tmp_path, name):
    py = _grcc(name, tmp_path)
    r = subprocess.run([sys.executable, str(py), "--dev-args", "type=b200,serial=NOPE"], env=ENV,
                       capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert r.returncode != 0
    err = r.stderr + r.stdout
    assert "No devices found" in err or "no devices" in err.lower(), err[-2000:]
    assert "sing_blocks" not in err and "sing/phy" not in err, err[-2000:]
