# SPDX-License-Identifier: GPL-3.0-or-later
"""`sing lpips A.png B.png [--net alex]`: LPIPS v0.1 distance between two image files.

Images are read with PIL as RGB (uint8 -> [0, 1]); both must have the same size.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import DataError, InputError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("a", help="first image (any format PIL reads; converted to RGB)")
    p.add_argument("b", help="second image, same size as the first")
    p.add_argument("--net", choices=["alex", "vgg"], default="alex", help="backbone (default: alex)")
    p.add_argument("--cache-dir", default=None, help="LPIPS weights cache (default: $SING_CACHE or ~/.cache/sing)")
    p.add_argument("--device", default="cpu")


def read_rgb(path: str):
    """Read an image file as a (1, 3, H, W) float tensor in [0, 1] (sing.data.read_image)."""
    from ..data import read_image, to_tensor
    if not Path(path).is_file():
        raise InputError(f"image {path} does not exist")
    try:
        return to_tensor(read_image(path)[None])
    except DataError as e:
        raise InputError(str(e)) from e


def lpips_distance(a: str, b: str, net: str = "alex", cache_dir=None, device: str = "cpu") -> float:
    """LPIPS between two image files."""
    import torch

    from .lpips import load_lpips

    xa, xb = read_rgb(a), read_rgb(b)
    if xa.shape != xb.shape:
        raise InputError(f"images differ in size: {a} is {xa.shape[3]}×{xa.shape[2]}, {b} is "
                         f"{xb.shape[3]}×{xb.shape[2]} (width×height); resize one to match first")
    model = load_lpips(net, device=device, cache_dir=cache_dir)
    with torch.no_grad():
        return float(model(xa, xb)[0])


def run(args: argparse.Namespace) -> int:
    print(f"{lpips_distance(args.a, args.b, args.net, args.cache_dir, args.device):.6f}")
    return 0
