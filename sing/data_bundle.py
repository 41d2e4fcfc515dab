# SPDX-License-Identifier: GPL-3.0-or-later
"""A compact, portable copy of the decoded natural-image set, for machines without its Debian sources.

The natural set is decoded from Debian packages (opencv-doc, wallpapers, scikit-image: docs/OFFLINE.md)
into `$SING_CACHE/data/natural-v1/` (train pyramids ≈ 63 MB raw). A GPU machine lent to a session
has none of those packages and takes at most 64 MiB of files per call, repository included. The
bundle stores the 381 train pyramid images as WebP (quality 90 by default: 4.6 MB instead of 63 MB,
PSNR 35.3 dB against the decoded images, 4:2:0 chroma; JPEG q92 is 6.6 MB at 34.8 dB) and, unless
left out, the val/test crops losslessly (2.5 MB); `unbundle` rebuilds the cache there, exact for
val/test and close for train.

    sing data bundle --dir .bundle [--no-eval]   # here (needs the cache: sing data build)
    sing data unbundle --dir .bundle             # there, before training (SING_CACHE anywhere)

Only training *sees* the lossy coding; every evaluation runs on val/test crops, which are exact.
A bundle made with --no-eval gives a cache with train crops only (val/test then raise an error).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from .errors import DataError, InputError

FORMAT = "sing.natural-bundle/1"
EVAL_FILES = ("val.npy", "test.npy", "val_ids.json", "test_ids.json")
CODECS = {"webp": (".webp", "IMWRITE_WEBP_QUALITY"), "jpeg": (".jpg", "IMWRITE_JPEG_QUALITY")}


def export_bundle(out: str | Path, quality: int = 90, codec: str = "webp", eval_splits: bool = True,
                  progress: bool = True) -> dict:
    """Write the bundle of the (built) natural cache into `out`; returns its index."""
    import cv2
    from .data import _natural_cache
    if not 50 <= int(quality) <= 100:
        raise InputError(f"quality must be in 50…100 (lossy coding), got {quality}")
    if codec not in CODECS:
        raise InputError(f"codec must be one of {', '.join(CODECS)}, got {codec!r}")
    ext, flag = CODECS[codec][0], getattr(cv2, CODECS[codec][1])
    src = _natural_cache(progress)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    z = np.load(src / "train.npz")
    data, offsets, shapes, source = z["data"], z["offsets"], z["shapes"], z["source"]
    files = []
    from tqdm.auto import tqdm
    for i in tqdm(range(len(shapes)), desc=f"bundle: {codec}", disable=not progress):
        h, w, c = (int(v) for v in shapes[i])
        img = data[offsets[i]:offsets[i] + h * w * c].reshape(h, w, c)
        ok, buf = cv2.imencode(ext, np.ascontiguousarray(img[:, :, ::-1]), [flag, int(quality)])
        if not ok:
            raise DataError(f"{codec} encoding of train image {i} failed")
        name = f"train-{i:04d}{ext}"
        (out / name).write_bytes(buf.tobytes())
        files.append(name)
    if eval_splits:
        for f in EVAL_FILES:
            shutil.copyfile(src / f, out / f)
    index = {"format": FORMAT, "version": src.name, "codec": codec, "quality": int(quality),
             "eval_splits": bool(eval_splits), "files": files,
             "shapes": shapes.tolist(), "source": source.tolist()}
    (out / "index.json").write_text(json.dumps(index) + "\n")
    return index


def import_bundle(src: str | Path, progress: bool = True) -> Path:
    """Rebuild `$SING_CACHE/data/<version>/` from a bundle; returns the cache folder."""
    import cv2
    from .data import NATURAL_VERSION, cache_dir
    src = Path(src)
    f = src / "index.json"
    if not f.exists():
        raise DataError(f"{src} is not a natural-data bundle (no index.json): make one with "
                        f"`sing data bundle --dir {src}` on a machine with the data built")
    try:
        index = json.loads(f.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{f} is not valid JSON ({e}): copy the bundle again") from e
    if index.get("format") != FORMAT:
        raise DataError(f"{f} has format {index.get('format')!r}, this code reads {FORMAT!r}")
    if index.get("version") != NATURAL_VERSION:
        raise DataError(f"the bundle holds {index.get('version')!r}, this code uses {NATURAL_VERSION!r}: "
                        f"make a new bundle with this version of sing")
    evals = list(EVAL_FILES) if index.get("eval_splits", True) else []
    missing = [n for n in list(index["files"]) + evals if not (src / n).exists()]
    if missing:
        raise DataError(f"the bundle {src} is incomplete: {len(missing)} file(s) missing, e.g. "
                        f"{missing[0]}; copy it again")
    blobs, shapes = [], []
    from tqdm.auto import tqdm
    for name, shape in tqdm(list(zip(index["files"], index["shapes"])), desc="unbundle: decoding",
                            disable=not progress):
        img = cv2.imdecode(np.frombuffer((src / name).read_bytes(), np.uint8), cv2.IMREAD_COLOR)
        if img is None or tuple(img.shape) != tuple(shape):
            raise DataError(f"{src / name} is corrupted or not the {tuple(shape)} image the index "
                            f"lists; copy the bundle again")
        blobs.append(np.ascontiguousarray(img[:, :, ::-1]).reshape(-1))
        shapes.append(shape)
    d = cache_dir() / "data" / NATURAL_VERSION
    d.mkdir(parents=True, exist_ok=True)
    (d / "done.json").unlink(missing_ok=True)          # a half-written cache is never "done"
    offsets = np.cumsum([0] + [b.size for b in blobs])[:-1]
    np.savez(d / "train.npz", data=np.concatenate(blobs), offsets=np.asarray(offsets, np.int64),
             shapes=np.asarray(shapes, np.int64), source=np.asarray(index["source"], np.int64))
    for n in evals:
        shutil.copyfile(src / n, d / n)
    counts = {s: int(np.load(d / f"{s}.npy", mmap_mode="r").shape[0]) if evals else 0
              for s in ("val", "test")}
    (d / "done.json").write_text(json.dumps({"version": NATURAL_VERSION, "n_train_images": len(shapes),
                                             "n_val": counts["val"], "n_test": counts["test"],
                                             "from_bundle": {"codec": index.get("codec", "jpeg"),
                                                             "quality": index["quality"]}}))
    return d
