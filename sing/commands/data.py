# SPDX-License-Identifier: GPL-3.0-or-later
"""`sing data`: build the cached natural-image set, list data sets, regenerate the manifest, or
pack/unpack the decoded natural set for a machine without its sources (sing/data_bundle.py)."""
from __future__ import annotations

import argparse
import json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("build", "info", "manifest", "manifest-unseen", "bundle", "unbundle"),
                   help="build: decode sources into the cache (and cut the unseen-source crops); "
                        "info: sizes of every split; "
                        "manifest: rescan the Debian data packages and rewrite the committed manifest; "
                        "manifest-unseen: hash the unseen-source photographs and rewrite their manifest; "
                        "bundle: write a compact copy of the cache (train as JPEG) into --dir, with the "
                        "unseen-source crops when they can be cut here; "
                        "unbundle: rebuild the cache from the bundle in --dir")
    p.add_argument("--dir", default=None, help="bundle folder (bundle/unbundle)")
    p.add_argument("--quality", type=int, default=90, help="quality of the lossy train images (bundle)")
    p.add_argument("--codec", default="webp", choices=("webp", "jpeg"), help="train image codec (bundle)")
    p.add_argument("--no-eval", action="store_true", help="bundle: leave out the val/test crops (2.5 MB)")


def run(args) -> int:
    from .. import data as D
    if args.action == "manifest-unseen":
        m = D.build_unseen_manifest()
        D.UNSEEN_MANIFEST.write_text(json.dumps(m, indent=1) + "\n")
        print(f"wrote {D.UNSEEN_MANIFEST} ({len(m['sources'])} photographs, {len(m['crops']['test'])} crops)")
        return 0
    if args.action == "manifest":
        m = D.build_manifest()
        D.MANIFEST.write_text(json.dumps(m, indent=1))
        print(f"wrote {D.MANIFEST} ({len(m['sources'])} sources)")
        return 0
    if args.action in ("bundle", "unbundle"):
        from ..data_bundle import export_bundle, import_bundle
        from ..errors import InputError
        if not args.dir:
            raise InputError(f"sing data {args.action} needs --dir FOLDER")
        if args.action == "bundle":
            idx = export_bundle(args.dir, args.quality, args.codec, eval_splits=not args.no_eval)
            unseen = "" if args.no_eval else _bundle_unseen(D, args.dir)
            from pathlib import Path
            size = sum(f.stat().st_size for f in Path(args.dir).iterdir()) / 1e6
            print(f"wrote {len(idx['files'])} train images ({args.codec} q{args.quality})"
                  f"{'' if args.no_eval else ' + val/test'}{unseen} into "
                  f"{args.dir}: {size:.1f} MB")
        else:
            print(f"natural set rebuilt in {import_bundle(args.dir)}")
            d = D.import_unseen(args.dir)
            print(f"unseen-source crops restored in {d}" if d else "(the bundle holds no unseen-source crops)")
        return 0
    if args.action == "build":
        d = D._natural_cache(progress=True)
        print(f"natural set cached in {d}")
        print(f"unseen-source crops cut into {D._unseen_cache(progress=True)}")
        return 0
    for name in ("natural", "fmnist", "fmnist-rgb64", "natural-gray32", "natural-unseen"):
        for split in ("train", "val", "test"):
            if name in ("fmnist-rgb64", "natural-gray32", "natural-unseen") and split != "test":
                continue
            n = "(random crops)" if (name == "natural" and split == "train") else len(D.load_split(name, split, progress=False)[1])
            inf = D.info(name)
            print(f"{name:16s} {split:5s} {n} images {inf.channels}×{inf.image_size}×{inf.image_size}")
    return 0


def _bundle_unseen(D, folder) -> str:
    """Add the unseen-source crops to a bundle; a machine without their packages leaves them out."""
    from ..errors import DataError
    try:
        D.export_unseen(folder, progress=False)
    except DataError as e:
        print(f"unseen-source crops left out of the bundle: {e}")
        return ""
    return " + unseen-source crops"
