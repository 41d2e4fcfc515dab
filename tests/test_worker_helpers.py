# SPDX-License-Identifier: GPL-3.0-or-later
"""Shared helpers for the worker tests: real `sing worker` / `sing broker` processes on random
loopback ports, always cleaned up (no tests here)."""
from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
PY = str(REPO / ".venv" / "bin" / "python") if (REPO / ".venv" / "bin" / "python").exists() else sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ep(port: int | None = None) -> str:
    return f"tcp://127.0.0.1:{port or free_port()}"


class Procs:
    """Spawns `python -m sing.cli …` processes; kills every one of them at teardown."""

    def __init__(self):
        self.procs: list[subprocess.Popen] = []

    def start(self, *args: str, ready: bool = True, timeout: float = 60.0,
              env: dict | None = None) -> subprocess.Popen:
        env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1",
                   **(env or {}))
        p = subprocess.Popen([PY, "-m", "sing.cli", *args], cwd=REPO, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs.append(p)
        if ready:
            t_end = time.monotonic() + timeout
            while time.monotonic() < t_end:
                r, _, _ = select.select([p.stdout], [], [], 0.2)
                if r:
                    line = p.stdout.readline()
                    if line.startswith("READY"):
                        return p
                    if not line and p.poll() is not None:
                        break
                elif p.poll() is not None:
                    break
            err = p.stderr.read() if p.poll() is not None else "(still running)"
            raise RuntimeError(f"{args[0]} did not become ready: rc={p.poll()} {err[-2000:]}")
        return p

    def close(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            for f in (p.stdout, p.stderr):
                if f:
                    f.close()


@pytest.fixture
def procs():
    pr = Procs()
    yield pr
    pr.close()


@pytest.fixture(scope="module")
def module_procs():
    pr = Procs()
    yield pr
    pr.close()


@pytest.fixture(scope="session")
def tiny_jscc(tmp_path_factory):
    """A tiny DeepJSCC (16×16 RGB, k = 64) saved as a model directory; returns (dir, model)."""
    import torch
    from sing.checkpoint import save_model
    from sing.jscc import JSCCConfig, build_jscc, load_jscc
    torch.manual_seed(0)
    m = build_jscc(JSCCConfig.tiny())
    d = tmp_path_factory.mktemp("jscc") / "tiny"
    save_model(d, m.state_dict(), m.config.to_dict())
    return d, load_jscc(d)


def symbols(k: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y = rng.standard_normal(k) + 1j * rng.standard_normal(k)
    return (y / np.sqrt(np.mean(np.abs(y) ** 2))).astype(np.complex64)


def reference_image(model, y: np.ndarray, snr_db: float) -> np.ndarray:
    import torch
    with torch.no_grad():
        x = model.decode(torch.from_numpy(y[None]), torch.tensor([snr_db]))
    return (x.clamp(0, 1)[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()


def worker_args(jscc_dir, *extra: str) -> list[str]:
    return ["worker", "--jscc", str(jscc_dir), "--device", "cpu", "--threads", "1", *extra]


def terminate(p: subprocess.Popen, timeout: float = 15.0) -> int:
    p.send_signal(signal.SIGTERM)
    return p.wait(timeout=timeout)


@pytest.fixture(scope="session")
def tiny_prior_dir(tmp_path_factory):
    """A tiny random diffusion prior for 16×16 RGB (the tiny JSCC's images): slow enough per step
    for a batch to be 'in flight' when a test needs one."""
    import torch
    from sing.prior.model import save_prior, tiny_prior
    torch.manual_seed(0)
    pr = tiny_prior(16, 3)
    d = tmp_path_factory.mktemp("prior") / "tiny-prior"
    save_prior(d, pr, pr.config)
    return d


def raw_dealer(endpoint: str, timeout_ms: int = 5000, curve=None):
    """A bare DEALER socket (the tests' way of sending what WorkerClient never would)."""
    import zmq
    s = zmq.Context.instance().socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.RCVTIMEO, timeout_ms)
    if curve is not None:
        curve.apply(s)
    s.connect(endpoint)
    return s


def request_header(k: int = 64, rid: str = "r1", **kw) -> dict:
    """The JSON header of a valid deepjscc request, fields overridable."""
    import json
    from sing.worker import protocol as P
    h = json.loads(P.request_frames(symbols(k), 0.0, "deepjscc", rid)[0])
    h.update(kw)
    return h


def rss(pid: int) -> int:
    import psutil
    return psutil.Process(pid).memory_info().rss
