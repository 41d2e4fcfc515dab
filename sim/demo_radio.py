#!/usr/bin/env python3
"""`make demo`: bundled test images through the GNU Radio loopback flowgraph to a worker process.

1. starts `sing worker` on a free loopback port with the shipped models (DeepJSCC at BCR 1/48, and the
   prior / calibration / INN where they are shipped);
2. compiles `flowgraphs/loopback_awgn_no_gui.grc` with `grcc` and runs it once per available method
   (image source → PDU channel, AWGN 0 dB, seeded → SING receiver → PNG per image);
3. writes a side-by-side grid (original | DeepJSCC | SING-Zero | SING-INN) and a metrics table.

Falls back to the in-process path (`sing demo --path direct`) where GNU Radio is not installed.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="out/demo")
    ap.add_argument("--n-images", type=int, default=6)
    ap.add_argument("--snr-db", type=float, default=0.0)
    ap.add_argument("--bcr", default="1/48")
    ap.add_argument("--data", default="natural")
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    args.path = "radio"

    import torch
    from PIL import Image
    from sing import data as D
    from sing.commands.demo import available_methods, run_direct, write_outputs
    from sing.errors import CheckpointError

    out = Path(args.out)
    methods, paths = available_methods(args)
    if not (paths["jscc"] / "config.json").exists():
        raise CheckpointError(f"the demo needs {paths['jscc']} (shipped in git)")
    x, ids = D.load_split(args.data, "test", n=args.n_images, progress=False)
    t0 = time.time()
    try:
        from gnuradio import gr  # noqa: F401
        import sing_blocks  # noqa: F401
    except ImportError as e:
        print(f"GNU Radio path unavailable ({e}); running the same chain in-process")
        results = run_direct(args, methods, paths, x, ids)
        write_outputs(out, x, ids, results, args, "direct (in-process; GNU Radio not importable)", time.time() - t0)
        return 0
    grcc = shutil.which("grcc")
    if grcc is None:
        raise SystemExit("grcc not found: apt-get install gnuradio (make setup does it)")
    work = Path(tempfile.mkdtemp(prefix="sing-demo-"))
    imgs = work / "images"
    imgs.mkdir()
    names = []
    for img, i in zip(D.to_uint8(x), ids):
        name = i.replace("/", "_").replace("#", "_") + ".png"
        Image.fromarray(img.squeeze(-1) if img.shape[-1] == 1 else img).save(imgs / name)
        names.append(name)
    env = gr_env()
    r = subprocess.run([grcc, "-o", str(work), str(REPO / "flowgraphs" / "loopback_awgn_no_gui.grc")],
                       capture_output=True, text=True, env=env)
    if r.returncode != 0 or "Error" in r.stdout + r.stderr or "not connected" in r.stdout + r.stderr:
        raise SystemExit(f"grcc could not compile loopback_awgn_no_gui.grc:\n{r.stdout}\n{r.stderr}")
    port = free_port()
    endpoint = f"tcp://127.0.0.1:{port}"
    out.mkdir(parents=True, exist_ok=True)
    worker = start_worker(paths, port, out / "worker.log")
    results = {}
    try:
        status = wait_ready(endpoint, worker)
        print(f"worker ready on {endpoint}: methods {status.get('methods')}")
        for m in methods:
            rdir = out / "radio" / m          # the flowgraph writes to <out-dir>/<method>
            shutil.rmtree(rdir, ignore_errors=True)
            cmd = [sys.executable, str(work / "loopback_awgn_no_gui.py"), "--snr-db", str(args.snr_db), "--method", m,
                   "--images", str(imgs), "--jscc", str(paths["jscc"]), "--endpoint", endpoint, "--out-dir", str(out / "radio"),
                   "--seed", str(args.seed), "--interval", "0.01", "--worker-timeout", "600"]
            t1 = time.time()
            r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
            if r.returncode != 0:
                print(r.stdout[-2000:], r.stderr[-4000:], file=sys.stderr)
                raise SystemExit(f"the flowgraph failed for {m} (exit {r.returncode})")
            summary = json.loads((rdir / "summary.json").read_text())
            got = []
            for name in names:
                iid = "folder/" + name
                f = rdir / (iid.replace("/", "_") + ".png")
                cand = [f] + sorted(rdir.glob(f"*{Path(name).stem}*.png"))
                f = next((c for c in cand if c.exists()), None)
                if f is None:
                    raise SystemExit(f"{m}: no restored image for {iid} in {rdir}; summary: {summary}")
                a = D.read_image(f, x.shape[1])
                got.append(torch.from_numpy(a.copy()).permute(2, 0, 1).float() / 255)
            results[m] = torch.stack(got)
            print(f"  {m}: {len(got)} images through the flowgraph in {time.time() - t1:.1f} s")
    finally:
        worker.terminate()
        try:
            worker.wait(10)
        except subprocess.TimeoutExpired:
            worker.kill()
        shutil.rmtree(work, ignore_errors=True)
    write_outputs(out, x, ids, results, args, "radio (GNU Radio loopback_awgn_no_gui + worker process)",
                  time.time() - t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
