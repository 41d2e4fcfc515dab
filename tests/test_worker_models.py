# SPDX-License-Identifier: GPL-3.0-or-later
"""Several JSCC models in one worker, each with its own calibration / INN (explicit or found next to
its --jscc dir, matched on the model id in their configs); per-model methods; continuous batching
and the timings in the reply header. Real `sing worker` processes on loopback."""
import time

import numpy as np
import pytest
import torch

from sing.errors import CheckpointError, InputError
from sing.worker import protocol as P
from sing.worker.client import WorkerClient, WorkerError
from test_worker_helpers import ep, procs, symbols, worker_args  # noqa: F401


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    """tinyA (+ tinyA/calibration, found), tinyB (+ calB elsewhere: explicit; + tinyB-inn, found),
    a tiny prior. 16×16 RGB, k = 64."""
    from sing.checkpoint import save_model
    from sing.inn import INNConfig, build_inn
    from sing.inn.model import save_inn
    from sing.jscc import JSCCConfig, build_jscc, load_jscc
    from sing.prior.model import save_prior, tiny_prior
    from sing.zero import fit_calibration
    root = tmp_path_factory.mktemp("models")
    out = {}
    for name, seed in (("tinyA", 0), ("tinyB", 1)):
        torch.manual_seed(seed)
        m = build_jscc(JSCCConfig.tiny())
        save_model(root / name, m.state_dict(), m.config.to_dict())
        j = load_jscc(root / name)
        imgs = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(seed))
        cal = fit_calibration(j, imgs, [0.0, 10.0], progress=False)
        cal.save(root / name / "calibration" if name == "tinyA" else root / "calB")
        out[name] = (root / name, j.model_id)
    out["calB"] = root / "calB"
    sig = {"snr_db": [0.0, 10.0], "std": [[0.1] * 3, [0.05] * 3]}
    inn = build_inn(INNConfig.tiny(16, 3, jscc_model_id=out["tinyB"][1], sigma_c=sig), seed=0)
    save_inn(root / "tinyB-inn", inn)
    out["innB"] = root / "tinyB-inn"
    pr = tiny_prior(16, 3)
    save_prior(root / "prior", pr, pr.config)
    out["prior"] = root / "prior"
    return out


def test_load_receiver_matches_parts_to_models(parts):
    from sing.methods import load_receiver
    (a, ida), (b, idb) = parts["tinyA"], parts["tinyB"]
    rx = load_receiver([a, b], parts["prior"], [parts["calB"], a / "calibration"], [parts["innB"]])
    assert set(rx.calibration) == {ida, idb} and rx.calibration[idb].model_id == idb
    assert set(rx.inn) == {idb}
    one = load_receiver([a], parts["prior"], a / "calibration")            # old call: one object
    assert one.calibration.model_id == ida and "sing-zero" in one.methods()
    with pytest.raises(CheckpointError, match=idb):                        # B's, but only A loaded
        load_receiver([a], None, [a / "calibration", parts["calB"]])
    with pytest.raises(InputError, match="two calibrations"):
        load_receiver([a, b], None, [a / "calibration", a / "calibration"])


def test_worker_serves_each_model_with_its_parts(procs, parts):
    from sing.worker.engine import Engine
    (a, ida), (b, idb) = parts["tinyA"], parts["tinyB"]
    endpoint = ep()
    procs.start(*worker_args(a, "--jscc", str(b), "--bind", endpoint, "--prior", str(parts["prior"]),
                             "--calibration", str(parts["calB"])))
    ref = Engine([str(a), str(b)], str(parts["prior"]), [str(parts["calB"])], device="cpu")
    with WorkerClient(endpoint, timeout_s=60) as c:
        st = c.ping()
        assert st["models"][ida]["calibration"] and not st["models"][ida]["inn"]
        assert st["models"][idb]["calibration"] and st["models"][idb]["inn"]
        assert "sing-zero" in st["models"][ida]["methods"] and "sing-inn" not in st["models"][ida]["methods"]
        assert {"sing-zero", "sing-inn"} <= set(st["models"][idb]["methods"])
        y = symbols(64, 5)
        for mid, method, prm in ((ida, "sing-zero", {"steps": 3, "start": 1.0}), (idb, "sing-zero", {"steps": 3}),
                                 (idb, "sing-inn", {"steps": 3}), (idb, "sing-zero", {"steps": 4, "start": 0.6}),
                                 (idb, "sing-inn", {"steps": 4, "start": 0.6})):
            r = c.restore(y, 3.0, method, {"image_id": "im5", "model_id": mid}, params=prm)
            x = ref.restore(mid, method, torch.from_numpy(y[None]), torch.tensor([3.0]), ["im5"], 0, prm)
            want = (x.clamp(0, 1)[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
            assert np.abs(r.image.astype(int) - want).max() <= 1, (mid, method)
            tm = r.header["timings"]
            assert r.header["model"] == mid and tm["decode_ms"] > 0 and tm["restore_ms"] > 0
        with pytest.raises(WorkerError) as e:
            c.restore(y, 3.0, "sing-inn", {"model_id": ida}, params={"steps": 3})
        assert e.value.code == P.UNKNOWN_METHOD and ida in str(e.value)


def test_continuous_batching(procs, parts):
    """A lone request on an idle worker is dispatched at once (batch 1, no wait); the requests
    that arrive while it computes leave together as the next batch."""
    a, _ = parts["tinyA"]
    endpoint = ep()
    procs.start(*worker_args(a, "--bind", endpoint, "--prior", str(parts["prior"]), "--max-batch", "8"))
    slow = {"steps": 100, "start": 1.0}                                  # the full chain: slow
    with WorkerClient(endpoint, timeout_s=60) as c:
        c.restore(symbols(64), 0.0, "sing-zero", params={"steps": 1})        # warm-up
        first = c.submit(symbols(64, 1), 0.0, "sing-zero", params=slow)
        time.sleep(0.15)                                                    # it is computing now
        rest = [c.submit(symbols(64, 2 + i), 0.0, "sing-zero", params=slow) for i in range(5)]
        r0 = first.result()
        sizes = [f.result().header["timings"]["batch_size"] for f in rest]
    t0 = r0.header["timings"]
    assert t0["batch_size"] == 1 and t0["queue_ms"] < t0["compute_ms"], t0
    assert sizes == [5] * 5, sizes
