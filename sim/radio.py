# SPDX-License-Identifier: GPL-3.0-or-later
"""Helpers shared by the radio-path scripts (demo, benchmarks): run grcc-compiled flowgraphs of
`flowgraphs/` against a `sing worker` process, from the source tree or an installed module."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def gr_env() -> dict:
    """Environment in which grcc finds our block YAML and `from gnuradio import sing` resolves, whether
    or not the module was installed with CMake (a shim package dir pointing at sing_blocks/)."""
    env = dict(os.environ)
    env["GRC_BLOCKS_PATH"] = os.pathsep.join(filter(None, [str(REPO / "sing_blocks" / "grc"),
                                                           env.get("GRC_BLOCKS_PATH")]))
    shim = REPO / ".cache" / "gr-shim" / "gnuradio"
    shim.mkdir(parents=True, exist_ok=True)
    if not (shim / "sing").exists():
        (shim / "sing").symlink_to(REPO / "sing_blocks", target_is_directory=True)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), str(shim.parent), env.get("PYTHONPATH")]))
    return env


def compile_grc(name: str, out_dir: Path) -> Path:
    """grcc flowgraphs/<name>.grc → out_dir/<name>.py; refuses a flowgraph with unknown blocks."""
    grcc = shutil.which("grcc")
    if grcc is None:
        raise SystemExit("grcc not found: apt-get install gnuradio (make setup does it)")
    r = subprocess.run([grcc, "-o", str(out_dir), str(REPO / "flowgraphs" / f"{name}.grc")],
                       capture_output=True, text=True, env=gr_env())
    text = r.stdout + r.stderr
    if r.returncode != 0 or "Error" in text or "not connected" in text:
        raise SystemExit(f"grcc could not compile {name}.grc:\n{text}")
    return out_dir / f"{name}.py"


def run_flowgraph(script: Path, options: dict, timeout_s: float = 900) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(script)]
    for k, v in options.items():
        cmd += [f"--{k.replace('_', '-')}", str(v)]
    r = subprocess.run(cmd, cwd=REPO, env=gr_env(), capture_output=True, text=True, timeout=timeout_s)
    if r.returncode != 0:
        print(r.stdout[-2000:], r.stderr[-4000:], file=sys.stderr)
        raise SystemExit(f"{script.name} failed (exit {r.returncode})")
    return r


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_worker(paths: dict, port: int, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "sing.cli", "worker", "--bind", f"tcp://127.0.0.1:{port}", "--jscc", str(paths["jscc"])]
    for key, flag in (("prior", "--prior"), ("calibration", "--calibration"), ("inn", "--inn")):
        if paths.get(key):
            cmd += [flag, str(paths[key])]
    return subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT, cwd=REPO)


def wait_ready(endpoint: str, proc: subprocess.Popen, timeout_s: float = 120) -> dict:
    from sing.worker.client import WorkerClient, WorkerUnavailable
    t0 = time.time()
    with WorkerClient(endpoint, timeout_s=2.0, retries=0) as c:
        while time.time() - t0 < timeout_s:
            if proc.poll() is not None:
                raise RuntimeError(f"the worker exited with code {proc.returncode}; see its log")
            try:
                return c.ping()
            except WorkerUnavailable:
                time.sleep(0.5)
    raise RuntimeError(f"the worker did not answer within {timeout_s:.0f} s")


def stop_worker(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def write_images(x, ids, folder: Path) -> list[str]:
    """Images (N, C, H, W) in [0, 1] → PNG files in `folder` for the flowgraph's image source (whose
    image ids become "folder/<file name>"); returns the file names in order."""
    from PIL import Image
    from sing import data as D
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for img, i in zip(D.to_uint8(x), ids):
        name = i.replace("/", "_").replace("#", "_") + ".png"
        Image.fromarray(img.squeeze(-1) if img.shape[-1] == 1 else img).save(folder / name)
        names.append(name)
    return names


def read_outputs(rdir: Path, names: list[str], channels: int):
    """Restored PNGs written by the SING receiver for source files `names` → tensor (N, C, H, W)."""
    import torch
    from sing import data as D
    got = []
    for name in names:
        f = rdir / ("folder_" + name)
        if not f.exists():
            cands = sorted(rdir.glob(f"*{Path(name).stem}*.png"))
            if not cands:
                raise SystemExit(f"no restored image for {name} in {rdir}")
            f = cands[0]
        a = D.read_image(f, channels)
        got.append(torch.from_numpy(a.copy()).permute(2, 0, 1).float() / 255)
    return torch.stack(got)


def eval_on_folder(folder: Path, args, work: Path, *extra: str) -> tuple[dict, float]:
    """Run A of the radio benchmarks: `sing eval` in-process on the PNGs the flowgraph's source reads
    (ids "folder/<name>", same seeded channel), BCR 1/48, with args.method/jscc/snr_db/n_images/seed;
    `extra` adds eval options (e.g. "--snr-source", "estimated"). Returns (result, seconds)."""
    import argparse
    from sing.commands import eval as ev
    p = argparse.ArgumentParser()
    ev.add_arguments(p)
    t0 = time.time()
    res = ev.evaluate(p.parse_args(["--method", args.method, "--data", f"folder:{folder}", "--split", "all",
                                    "--bcr", "1/48", "--jscc", args.jscc, "--snr-db", str(args.snr_db),
                                    "--n-images", str(args.n_images), "--seed", str(args.seed),
                                    "--out", str(work / "a.json"), "--no-progress", *extra]))
    return res, time.time() - t0

