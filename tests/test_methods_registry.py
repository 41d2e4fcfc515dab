# SPDX-License-Identifier: GPL-3.0-or-later
"""The method registry (sing/methods/registry.py) is the one home of a method: the CLI, the wire
validation, the GRC method list and docs/methods.md agree with it; its cost model counts what the
samplers run; the worker refuses a request over its budget at admission, fast, over a real socket."""
import argparse
import importlib.util
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings, strategies as st

from sing.errors import InputError
from sing.methods import registry as R
from sing.worker import protocol as P
from test_worker_helpers import ep, procs, symbols, worker_args  # noqa: F401
from test_worker_models import parts  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
F4 = {"steps": 1000, "start": 1, "travel": [1, 100]}     # ≈ 100k UNet passes from legal params


def _eval_parser():
    from sing.commands import eval as ev
    p = argparse.ArgumentParser()
    ev.add_arguments(p)
    return {a.dest: a for a in p._actions}


def test_cli_is_derived_from_the_registry():
    acts = _eval_parser()
    assert tuple(acts["method"].choices) == R.METHODS
    for prm in R.all_params().values():
        if prm.cli:
            assert prm.name in acts, prm.name
            assert tuple(acts[prm.name].choices or ()) == prm.choices
        else:
            assert prm.name not in acts
    from sing.cli import COMMANDS
    assert "methods" in COMMANDS


def test_wire_params_are_the_registry_params():
    assert P.PARAMS == {**R.all_params(), "seed": R.SEED}
    for name, m in R.REGISTRY.items():
        if not m.served:
            continue
        # each method's defaults are accepted as they are; another method's parameter is refused
        assert P.check_params({**m.defaults(), "seed": 3}, "r", name) == {**m.defaults(), "seed": 3}
        foreign = set(P.PARAMS) - {p.name for p in m.params} - {"seed"}
        for k in foreign:
            with pytest.raises(P.ProtocolError) as e:
                P.check_params({k: R.all_params()[k].default or 1}, "r", name)
            assert e.value.code == P.BAD_REQUEST and name in str(e.value)
    # a name shared by several methods is one declaration: the same type and bounds everywhere
    for prm in R.all_params().values():
        for m in R.REGISTRY.values():
            for q in m.params:
                if q.name == prm.name:
                    assert (q.kind, q.low, q.high, q.low_open, q.choices) == \
                        (prm.kind, prm.low, prm.high, prm.low_open, prm.choices)


@pytest.mark.parametrize("params", [{"start": 0}, {"start": 0.0}, {"steps": True}, {"steps": 2.0},
                                    {"travel": [0, 2]}, {"travel": [1]}, {"eta": float("inf")},
                                    {"operator": "/etc/passwd"}, {"steps": 10, "travel": [10, 2]}])
def test_bad_params_are_bad_requests_at_parse(params):
    h = {"v": 1, "type": "request", "id": "r", "method": "sing-zero", "k": 4, "snr_db": 0.0,
         "dtype": "complex64", "shape": [4], "params": params}
    with pytest.raises(P.ProtocolError) as e:
        P.parse_request(h, [symbols(4).tobytes()])
    assert e.value.code == P.BAD_REQUEST


def test_unserved_methods_refused_at_parse():
    h = {"v": 1, "type": "request", "id": "r", "method": "digital-jpeg", "k": 4, "snr_db": 0.0,
         "dtype": "complex64", "shape": [4]}
    with pytest.raises(P.ProtocolError) as e:
        P.parse_request(h, [symbols(4).tobytes()])
    assert e.value.code == P.UNKNOWN_METHOD and "sing-zero" in str(e.value)


def test_grc_method_list_is_the_served_methods():
    block = yaml.safe_load((REPO / "sing_blocks" / "grc" / "sing_receiver.block.yml").read_text())
    method = next(p for p in block["parameters"] if p["id"] == "method")
    assert tuple(method["options"]) == R.SERVED, \
        f"list the registry's served methods {R.SERVED} in sing_receiver.block.yml"
    assert method["default"] in R.SERVED


def test_docs_table_is_up_to_date():
    assert (REPO / "docs" / "methods.md").read_text() == R.markdown(), \
        "regenerate it: sing methods --markdown > docs/methods.md"
    r = subprocess.run([sys.executable, "-m", "sing.cli", "methods", "--markdown"], capture_output=True,
                       text=True, timeout=60, cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin"})
    assert r.returncode == 0 and r.stdout == R.markdown()


def test_registry_imports_without_torch():
    code = ("import sys; import sing.methods, sing.worker.protocol; "
            "assert 'torch' not in sys.modules, 'registry/protocol pulled in torch'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, env={"PYTHONPATH": str(REPO)}, timeout=60)


# ---- cost model ----------------------------------------------------------------------------------
def test_costs_of_presets_and_of_the_amplification():
    assert {n: R.cost_of(n) for n in R.METHODS} == {
        "deepjscc": 1, "deepjscc-perceptual": 1, "ddnm-avgpool": 51, "sing-zero": 7, "sing-inn": 7, "sdedit": 7,
        "dps": 150, "digital-jpeg": 0, "digital-webp": 0}
    assert R.cost_of("sing-zero", F4) == 1 + 1000 + 999 * 99 == 99902
    assert R.cost_of("sing-zero", {**F4, "seed": 5}) == 99902                      # seed is free
    assert R.cost_of("sing-zero", {"steps": 1000, "start": 1.0}) == 1001 <= R.DEFAULT_MAX_COST
    assert R.cost_of("dps", {"steps": 20}) == 60
    with pytest.raises(InputError, match="time-travel length"):
        R.cost_of("sing-zero", {"steps": 50, "travel": [6, 2]})        # warm start: 6 steps only
    t0 = time.perf_counter()
    for _ in range(100):
        R.cost_of("sing-zero", F4)
    assert (time.perf_counter() - t0) / 100 < 0.005


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 200), st.sampled_from([1.0, 0.5, 0.3, 0.1, 0.05, 0.01, 0.001]),
       st.one_of(st.none(), st.tuples(st.integers(1, 12), st.integers(1, 4))))
def test_chain_cost_counts_what_the_sampler_runs(steps, start, travel):
    """The closed-form count equals sing.zero.ddnm.unet_evals (the sampler's own schedule)."""
    from sing.zero.ddnm import unet_evals
    try:
        want = unet_evals(None, steps, start, travel)
    except InputError:
        with pytest.raises(InputError):
            R.chain_steps(steps, start, travel)
        return
    assert R.chain_steps(steps, start, travel) == want


def test_chain_cost_matches_a_real_prior():
    from sing.prior import tiny_prior
    from sing.zero.ddnm import unet_evals
    pr = tiny_prior(16, 3)
    for steps, start, travel in ((5, 1.0, None), (20, 0.3, (2, 3)), (50, 0.1, None), (7, 0.5, (1, 2))):
        assert R.chain_steps(steps, start, travel, pr.num_train_timesteps) == unet_evals(pr, steps, start, travel)


def test_every_shipped_setting_is_within_the_default_budget(tmp_path):
    """Defaults, and every point of every sweep grid (with the committed val choices), pass; F4 not."""
    spec = importlib.util.spec_from_file_location("sweep_for_budget", REPO / "sim" / "sweep.py")
    sweep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sweep)
    for d in (REPO / "sim" / "results").glob("tune-*"):              # the tuning rules rewrite choice.json
        shutil.copytree(d, tmp_path / "sim" / "results" / d.name)
    sweep.REPO = tmp_path
    n = 0
    for g in sweep.GRIDS:
        for p in sweep.grid(g):
            params = {k: v for k, v in p.items() if k not in sweep.BASE_KEYS + sweep.EVAL_OPTIONS}
            assert R.cost_of(p["method"], params) <= R.DEFAULT_MAX_COST, (g, p)
            n += 1
    assert n > 300
    assert R.cost_of("sing-zero", F4) > 40 * R.DEFAULT_MAX_COST


# ---- the receiver offers what its parts allow ----------------------------------------------------
def test_receiver_methods_follow_needs(tiny_jscc_dir):
    from sing.jscc import load_jscc
    from sing.methods import Receiver, bound
    from sing.prior import tiny_prior
    import torch
    j = load_jscc(tiny_jscc_dir)
    assert Receiver(j).methods() == ["deepjscc"]
    rx = Receiver(j, prior=tiny_prior(32, 3))
    assert rx.methods() == ["deepjscc", "ddnm-avgpool", "sdedit", "dps"]
    y = j.encode(torch.rand(1, 3, 32, 32), 0.0).detach()
    assert rx.restore("sdedit", y, 0.0, ["a"], steps=4, start=0.3).shape == (1, 3, 32, 32)
    with pytest.raises(InputError, match="start < 1"):
        rx.restore("sdedit", y, 0.0, ["a"], start=1.0)
    with pytest.raises(InputError, match="needs .*calibration"):
        rx.restore("sing-zero", y, 0.0, ["a"])
    with pytest.raises(InputError, match="unknown parameters for ddnm-avgpool"):
        rx.restore("ddnm-avgpool", y, 0.0, ["a"], zeta=1.0)
    with pytest.raises(InputError, match="not a receiver"):
        rx.restore("digital-jpeg", y, 0.0, ["a"])
    with pytest.raises(InputError, match="not a bound"):
        bound("sing-zero", torch.rand(1, 3, 32, 32), 16, 0.0)


# ---- the budget over a real worker -----------------------------------------------------------------
def test_too_expensive_at_admission_over_a_real_worker(procs, parts):  # noqa: F811
    """While the compute thread is busy, F4's params get `too_expensive` (stating cost and limit) and
    start = 0 gets `bad_request`, each in < 100 ms; the normal requests around them are served."""
    a, _ = parts["tinyA"]
    endpoint = ep()
    procs.start(*worker_args(a, "--bind", endpoint, "--prior", str(parts["prior"]), "--max-cost", "500"))
    from sing.worker.client import WorkerClient, WorkerError
    with WorkerClient(endpoint, timeout_s=60) as c:
        assert c.ping()["max_cost"] == 500
        c.restore(symbols(64), 0.0, "sing-zero", params={"steps": 1})                  # warm-up
        busy = c.submit(symbols(64, 1), 0.0, "sing-zero", params={"steps": 300, "start": 1.0})
        time.sleep(0.1)                                                                 # computing
        for params, code, text in ((F4, P.TOO_EXPENSIVE, "costs 99902"), ({"start": 0}, P.BAD_REQUEST, "start"),
                                   ({"steps": 501, "start": 1.0}, P.TOO_EXPENSIVE, "limit here is 500")):
            t0 = time.monotonic()
            with pytest.raises(WorkerError) as e:
                c.restore(symbols(64, 2), 0.0, "sing-zero", params=params)
            dt = time.monotonic() - t0
            assert e.value.code == code and text in str(e.value), e.value
            assert dt < 0.1, (params, dt)
        assert not busy.done(), "the refusals above came while the compute thread was busy"
        after = c.submit(symbols(64, 3), 0.0, "sing-zero", params={"steps": 3})
        assert busy.result().image.shape == (16, 16, 3)
        assert after.result().image.shape == (16, 16, 3)
