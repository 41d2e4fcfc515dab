"""`sing data`: build the cached natural-image set, list data sets, or regenerate the manifest."""
from __future__ import annotations

import argparse
import json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("build", "info", "manifest"),
                   help="build: decode sources into the cache; info: sizes of every split; "
                        "manifest: rescan the Debian data packages and rewrite the committed manifest")


def run(args) -> int:
    from .. import data as D
    if args.action == "manifest":
        m = D.build_manifest()
        D.MANIFEST.write_text(json.dumps(m, indent=1))
        print(f"wrote {D.MANIFEST} ({len(m['sources'])} sources)")
        return 0
    if args.action == "build":
        d = D._natural_cache(progress=True)
        print(f"natural set cached in {d}")
        return 0
    for name in ("natural", "fmnist", "fmnist-rgb64", "natural-gray32"):
        for split in ("train", "val", "test"):
            if name in ("fmnist-rgb64", "natural-gray32") and split != "test":
                continue
            n = "(random crops)" if (name == "natural" and split == "train") else len(D.load_split(name, split, progress=False)[1])
            inf = D.info(name)
            print(f"{name:16s} {split:5s} {n} images {inf.channels}×{inf.image_size}×{inf.image_size}")
    return 0
