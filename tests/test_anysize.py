# SPDX-License-Identifier: GPL-3.0-or-later
"""Any image size in the plumbing, in process: the wire's shape validation and limits, the
Receiver and RxSink decoding at the sent shape (grey back to one channel), the worker batching
one size per batch, and a prior method on an image larger than the prior (tiled)."""
import json

import numpy as np
import pytest
import torch

from sing.worker import protocol as P


def _req(meta, n=8):
    y = (np.arange(n) + 1j).astype(np.complex64)
    h, payload = P.request_frames(y, 3.0, "deepjscc", "r1", meta=meta)
    return P.parse_header(h), [payload]


def test_wire_limits_agree_with_the_models():
    from sing.jscc.model import MAX_SIDE, MIN_SIDE
    from sing.phy.header import _FIELDS
    assert (P.MIN_IMAGE_SIDE, P.MAX_IMAGE_SIDE) == (MIN_SIDE, MAX_SIDE)
    widths = dict(_FIELDS)
    assert 2 ** widths["height"] > MAX_SIDE and 2 ** widths["width"] > MAX_SIDE   # the OFDM header
    assert 2 ** widths["k"] > P.MAX_K
    # the largest image at the densest shipped BCR fits a request
    assert 3 * MAX_SIDE ** 2 // 12 <= P.MAX_K and P.MAX_REQUEST_BYTES >= 8 * P.MAX_K


@pytest.mark.parametrize("meta,shape", [
    ({"image_id": "a"}, None),
    ({"image_id": "a", "height": 37, "width": 53, "channels": 1}, (37, 53)),
    ({"image_id": "a", "height": 1024, "width": 8, "channels": 3}, (1024, 8)),
])
def test_request_shape(meta, shape):
    r = P.parse_request(*_req(meta))
    assert r.shape == shape
    other = P.parse_request(*_req({**meta, "height": 64, "width": 64}))
    assert (r.group_key() == other.group_key()) == (shape == (64, 64))   # one size per batch


@pytest.mark.parametrize("meta,code", [
    ({"height": 37}, P.BAD_REQUEST),                        # only one side
    ({"height": 4, "width": 40}, P.BAD_REQUEST),
    ({"height": 2000, "width": 40}, P.TOO_LARGE),
    ({"height": 40, "width": 40, "channels": 4}, P.BAD_REQUEST),
    ({"height": 40, "width": 40.5}, P.BAD_REQUEST),
])
def test_bad_request_shapes(meta, code):
    with pytest.raises(P.ProtocolError) as e:
        P.parse_request(*_req({"image_id": "a", **meta}))
    assert e.value.code == code


@pytest.fixture(scope="module")
def tiny():
    from sing.jscc import JSCCConfig, build_jscc
    torch.manual_seed(0)
    return build_jscc(JSCCConfig.tiny(image_size=16, channels=3, bcr="1/12")).eval()


def test_receiver_decodes_and_restores_at_size(tiny):
    """deepjscc at 37×53; a prior method (ddnm-avgpool, 2 steps) on a 40×56 image with a 16×16 prior:
    tiled, output at 40×56."""
    from sing.methods import Receiver
    from sing.prior.model import tiny_prior
    rx = Receiver(tiny, prior=tiny_prior(16, 3))
    x = torch.rand(1, 3, 37, 53)
    with torch.no_grad():
        y = tiny.encode(x, 5.0)
    out = rx.restore("deepjscc", y, 5.0, ["a"], shape=(37, 53))
    assert out.shape == (1, 3, 37, 53)
    torch.testing.assert_close(out, tiny.decode(y, 5.0, shape=(37, 53)))
    with torch.no_grad():
        y2 = tiny.encode(torch.rand(1, 3, 40, 56), 5.0)
    r = rx.restore("ddnm-avgpool", y2, 5.0, ["b"], shape=(40, 56), steps=2)
    assert r.shape == (1, 3, 40, 56) and torch.isfinite(r).all()
    with pytest.raises(ValueError, match="expects k="):
        rx.restore("deepjscc", y, 5.0, ["a"], shape=(64, 64))            # wrong size for these k


def test_rx_sink_local_decode_at_shape_and_grey(tmp_path, tiny):
    """No worker: the local fallback decodes a 37×53 colour and a 30×20 greyscale image (sent as
    three equal channels, channels=1) to PNGs of the sent shape; bad shapes are dropped."""
    from PIL import Image
    from sing.checkpoint import save_model
    from sing.rx_sink import RxConfig, RxSink
    jd = tmp_path / "jscc"
    save_model(jd, tiny.state_dict(), tiny.config.to_dict())
    sink = RxSink(RxConfig(endpoint="", out_dir=str(tmp_path / "out"), jscc_dir=str(jd),
                           method="deepjscc", metrics=False))
    mid = sink.jscc.model_id
    sink.start()
    grey = np.repeat(np.random.default_rng(0).integers(0, 256, (30, 20, 1)), 3, -1)
    for iid, x, c in (("colour", torch.rand(1, 3, 37, 53), 3),
                      ("grey", torch.from_numpy(grey).permute(2, 0, 1)[None].float() / 255, 1)):
        with torch.no_grad():
            y = sink.jscc.encode(x, 10.0)[0].numpy()
        h, w = x.shape[2:]
        meta = {"image_id": iid, "k": int(y.size), "model_id": mid, "height": h, "width": w,
                "channels": c, "snr_db": 10.0}
        assert sink.offer(meta, y) is None
        bad = sink.offer({**meta, "image_id": iid + "-bad", "height": 64}, y)   # k does not fit 64×53
        assert bad is not None and bad.reason == "bad_length"
    assert sink.offer({"image_id": "huge", "k": 8, "height": 5000, "width": 10, "snr_db": 1.0},
                      np.ones(8, np.complex64)).reason == "bad_meta"
    assert sink.wait_idle(30)
    sink.stop()
    assert np.asarray(Image.open(tmp_path / "out" / "colour.png")).shape == (37, 53, 3)
    g = Image.open(tmp_path / "out" / "grey.png")
    assert g.mode == "L" and np.asarray(g).shape == (30, 20)
    side = json.loads((tmp_path / "out" / "grey.json").read_text())
    assert (side["height"], side["width"], side["channels"]) == (30, 20, 1)
    assert sink.counts()["local"] == 2 and sink.counts()["dropped"] == 3


def test_worker_budget_scales_with_the_tiles(tmp_path, tiny):
    """The worker's engine refuses, at admission, a prior method on an image so large that its
    tiles × its cost exceed --max-cost, and admits the same request at the prior's size; the
    decoder-only method costs the same at any size. A too-small or mismatched size is bad_request."""
    from sing.checkpoint import save_model
    from sing.methods import Receiver
    from sing.prior.model import save_prior, tiny_prior
    from sing.worker.engine import Engine
    jd, pd = tmp_path / "jscc", tmp_path / "prior"
    save_model(jd, tiny.state_dict(), tiny.config.to_dict())
    pr = tiny_prior(16, 3)
    save_prior(pd, pr, pr.config)
    # whole-image prior at 40×56 (sing.prior.tiles.at_size): ⌈40·56 / 16²⌉ = 9 passes at the prior's size
    assert Receiver(tiny, prior=pr).size_factor("ddnm-avgpool", (40, 56)) == 9
    assert Receiver(tiny, prior=pr).size_factor("ddnm-avgpool", (64, 64)) == 16
    assert Receiver(tiny, prior=pr).size_factor("deepjscc", (1024, 1024)) == 1
    eng = Engine([str(jd)], str(pd), device="cpu", max_cost=600)
    mid = eng.receiver.model_ids()[0]

    def req(method, h, w, steps=None):
        y = np.ones(eng.k_for(mid, (h, w)), np.complex64)
        hdr, payload = P.request_frames(y, 3.0, method, "r", model=mid, params={"steps": steps} if steps else {},
                                        meta={"image_id": "a", "height": h, "width": w})
        return P.parse_request(P.parse_header(hdr), [payload])

    eng.admit(req("ddnm-avgpool", 16, 16, steps=50))              # 51 passes
    eng.admit(req("ddnm-avgpool", 64, 64, steps=20))              # 21 × 16 = 336
    with pytest.raises(P.ProtocolError, match=r"16 prior passes.*max-cost") as e:
        eng.admit(req("ddnm-avgpool", 64, 64, steps=50))          # 51 × 16 = 816 > 600
    assert e.value.code == P.TOO_EXPENSIVE
    eng.admit(req("deepjscc", 1024, 1024))
    assert eng.k_for(mid, (37, 53)) == tiny.k_at(37, 53) and eng.k_for(mid, None) == tiny.k
    with pytest.raises(P.ProtocolError, match="outside the supported range") as e:
        eng.k_for(mid, (4, 40))
    assert e.value.code == P.BAD_REQUEST


def test_sent_images_kept_for_metrics_are_bounded_in_bytes():
    """Large photos: the receiver keeps at most MAX_REFERENCE_BYTES of sent images (oldest out)."""
    from sing.rx_sink import MAX_REFERENCE_BYTES, RxConfig, RxSink
    sink = RxSink(RxConfig(endpoint="tcp://127.0.0.1:1", write_files=False))
    big = np.zeros((1024, 1024, 3), np.uint8)
    for i in range(40):
        sink.set_reference(f"im{i}", big)
    assert sink._ref_bytes <= MAX_REFERENCE_BYTES and "im39" in sink._refs and "im0" not in sink._refs
    assert sink._ref_bytes == sum(a.nbytes for a in sink._refs.values())
