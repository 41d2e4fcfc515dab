# SPDX-License-Identifier: GPL-3.0-or-later
"""Data sets: any image folder, the built-in natural-image set, Fashion-MNIST, mismatch variants.

Natural set (docs/OFFLINE.md): 64×64 crops from the photos and video frames that Debian ships
(opencv-doc, plasma-workspace-wallpapers, scikit-image). Splits are **by source** (a photo, or a
whole video), never by crop, and are fixed by the committed manifest `sing/natural_manifest.json`.
Each source is stored as a small pyramid (shorter side 128/192/256 px); training draws random
crops (random scale, flip) from the train pyramids; val/test are fixed crops listed in the manifest.

Names accepted by `load_split` / `train_batches`:
- `natural`            64×64 RGB                       (train/val/test)
- `natural-256`        256×256 RGB views of the natural set's val/test photographs (val/test only;
                       by source, so no training photograph appears; crop rule `NATURAL_256_VIEWS`)
- `natural-unseen`     64×64 RGB crops of photograph collections no shipped model has seen: the
                       unseen-source split (test only; manifest `sing/unseen_manifest.json`, below)
- `fmnist`             32×32 greyscale, 28×28 zero-padded (train = first 55k, val = last 5k, test)
- `fmnist-rgb64`       Fashion-MNIST resized to 64×64, 3 channels: mismatch set for natural models
- `natural-gray32`     natural crops as 32×32 greyscale: mismatch set for Fashion-MNIST models
- `folder:PATH`        any folder of images (recursive), resized (shorter side) + centre-cropped
                       to 64×64 RGB
- `folder@SIZE:PATH`   the same at SIZE×SIZE (e.g. `folder@256:/data/celebahq` for the paper's setting)

Folder splits: if PATH has `train/`, `val/` or `test/` sub-folders, split S is the images under
PATH/S (a missing one is an error); otherwise train/val/test are cut 65/15/20 % by a hash of the file
name. Split "all" is every image under PATH. Training batches from a folder keep the decoded images
as uint8 — in memory when small, otherwise in a memory-mapped cache under $SING_CACHE/data/folder/
built once (`_FOLDER_MEM_LIMIT`).
"""
from __future__ import annotations

import glob
import gzip
import hashlib
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from .checkpoint import file_digest
from .errors import DataError, InputError
from .images import resize, short_side_shape
from .paths import cache_dir

MANIFEST = Path(__file__).with_name("natural_manifest.json")
UNSEEN_MANIFEST = Path(__file__).with_name("unseen_manifest.json")
BACKGROUNDS_DIR = "/usr/share/backgrounds"
NATURAL_VERSION = "natural-v1"
PYRAMID = (128, 192, 256)          # shorter side of the stored copies of each source
EVAL_SCALE = 192                   # val/test crops come from this scale
CROP = 64
OPENCV_DIR = "/usr/share/doc/opencv-doc/examples/data"
WALLPAPER_DIR = "/usr/share/wallpapers"
FMNIST_DIR = "/usr/share/datasets/fashion-mnist"
DATASETS = ("natural", "fmnist", "fmnist-rgb64", "natural-gray32", "natural-unseen", "natural-256", "folder:PATH", "folder@SIZE:PATH")
FOLDER_SIZE = 64                   # resolution of `folder:PATH`; `folder@SIZE:PATH` says its own
_FOLDER_MEM_LIMIT = 512 * 2 ** 20  # train splits larger than this (bytes, uint8) go to a disk cache
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".gif")
PACKAGE_FOR = {OPENCV_DIR: "opencv-doc", WALLPAPER_DIR: "plasma-workspace-wallpapers",
               FMNIST_DIR: "dataset-fashion-mnist", "skimage": "python3-skimage",
               BACKGROUNDS_DIR: "lomiri-wallpapers-16.04 lomiri-wallpapers-20.04"}


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    image_size: int
    channels: int


def info(name: str) -> DatasetInfo:
    sizes = {"natural": (CROP, 3), "natural-unseen": (CROP, 3), "natural-256": (NATURAL_256, 3),
             "fmnist": (32, 1), "fmnist-rgb64": (64, 3), "natural-gray32": (32, 1)}     # (side, channels)
    if is_folder(name):
        return DatasetInfo(name, parse_folder(name)[1], 3)
    if name not in sizes:
        raise DataError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    return DatasetInfo(name, *sizes[name])


def is_folder(name: str) -> bool:
    return name.startswith("folder:") or name.startswith("folder@")


def parse_folder(name: str) -> tuple[Path, int]:
    """`folder:PATH` → (PATH, 64); `folder@SIZE:PATH` → (PATH, SIZE)."""
    m = re.fullmatch(r"folder(?:@(\d+))?:(.+)", name, flags=re.S)
    if not m:
        raise DataError(f"bad folder data set {name!r}: write folder:PATH ({FOLDER_SIZE}×{FOLDER_SIZE}) or "
                        f"folder@SIZE:PATH (SIZE×SIZE, e.g. folder@256:/data/celebahq)")
    size = int(m.group(1)) if m.group(1) else FOLDER_SIZE
    if size < 8:
        raise DataError(f"{name!r}: SIZE must be at least 8, got {size}")
    return Path(m.group(2)), size


def folder_files(name: str, split: str) -> list[Path]:
    """The image files of a folder data set's split (module doc: sub-folders or a name hash)."""
    root, _ = parse_folder(name)
    if split == "all":
        return list_images(root)
    present = [s for s in SPLITS if (root / s).is_dir()]
    if present:                                      # laid out by split: PATH/train, PATH/val, PATH/test
        if split not in present:
            raise DataError(f"{root} is laid out by split (it has {', '.join(s + '/' for s in present)}) "
                            f"but has no {split}/ folder: create {root / split} (training needs val/ "
                            f"for validation; evaluation needs test/)")
        return list_images(root / split)
    files = list_images(root)
    return [f for f in files if _split_of(str(f.name)) == split] or files


def _fit_files(files: list[Path], size: int, progress: bool, desc: str, out: np.ndarray | None = None) -> np.ndarray:
    """Decode + fit `files` into out[i] (uint8 (N, size, size, 3); default: a new array), several
    files at a time."""
    from concurrent.futures import ThreadPoolExecutor
    from tqdm import tqdm
    out = np.empty((len(files), size, size, 3), np.uint8) if out is None else out
    with ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1))) as ex, \
            tqdm(total=len(files), desc=desc, disable=not progress or len(files) < 256, mininterval=5) as bar:
        for i, a in enumerate(ex.map(lambda f: fit_image(read_image(f, 3), size), files)):
            out[i] = a
            bar.update(1)
    return out


def _folder_train_array(name: str, progress: bool = True) -> np.ndarray:
    """The train split of a folder data set as uint8 (N, S, S, 3): in memory when it is small,
    else a memory-mapped .npy under $SING_CACHE/data/folder/<key>/ (key: path, size, file names,
    sizes and mtimes), built once."""
    root, size = parse_folder(name)
    files = folder_files(name, "train")
    shape = (len(files), size, size, 3)
    if int(np.prod(shape)) <= _FOLDER_MEM_LIMIT:
        return _fit_files(files, size, progress, f"{name}: decoding")
    stamp = [(str(f.relative_to(root)), f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    key = hashlib.sha256(json.dumps([str(root.resolve()), size, stamp]).encode()).hexdigest()[:16]
    d = cache_dir() / "data" / "folder" / key
    if not (d / "done.json").exists():
        d.mkdir(parents=True, exist_ok=True)
        arr = np.lib.format.open_memmap(d / "train.npy", mode="w+", dtype=np.uint8, shape=shape)
        _fit_files(files, size, progress, f"{name}: caching {len(files)} train images at {size}×{size}", arr)
        arr.flush()
        del arr
        (d / "done.json").write_text(json.dumps({"data": name, "root": str(root.resolve()), "size": size,
                                                 "n": len(files)}))
    return np.load(d / "train.npy", mmap_mode="r")


# ----------------------------------------------------------------------------------------------
# Image files
def read_image(path: str | os.PathLike, channels: int = 3) -> np.ndarray:
    """Read an image file as uint8 (H, W, channels). The header is checked first with the
    transmitter's guards (sing.images: missing, corrupt, 0-sized, decompression bomb); the pixels
    are then PIL's plain RGB / L conversion (the data sets' rule, unchanged)."""
    from .images import open_image
    _, im = open_image(path)
    try:
        with im:
            a = np.asarray(im.convert("RGB" if channels == 3 else "L"), dtype=np.uint8)
    except OSError as e:
        raise DataError(f"{path} is not a readable image ({e}); re-save it as PNG or JPEG, or remove it") from e
    return a[..., None] if a.ndim == 2 else a


def fit_image(a: np.ndarray, size: int) -> np.ndarray:
    """The stated rule for images of any size: resize so the shorter side is `size` (area filter),
    then centre-crop to size×size. Returns uint8 (size, size, C)."""
    a = _resize_short(a, size)
    nh, nw = a.shape[:2]
    y0, x0 = (nh - size) // 2, (nw - size) // 2
    return np.ascontiguousarray(a[y0:y0 + size, x0:x0 + size])


def to_tensor(batch_hwc: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, C) → float32 (N, C, H, W) in [0, 1]."""
    a = np.ascontiguousarray(batch_hwc)
    if not a.flags.writeable:
        a = a.copy()
    return torch.from_numpy(a).permute(0, 3, 1, 2).float().div_(255.0)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float (N, C, H, W) in [0, 1] → uint8 (N, H, W, C)."""
    return (x.detach().clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy())


def list_images(folder: str | os.PathLike) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"image folder {folder} does not exist")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTS)
    if not files:
        raise DataError(f"no images ({', '.join(IMAGE_EXTS)}) found under {folder}")
    return files


# ----------------------------------------------------------------------------------------------
# Natural set: sources and manifest
def _need(path: str, what: str) -> None:
    if not os.path.exists(path):
        pkg = next((p for d, p in PACKAGE_FOR.items() if path.startswith(d)), None)
        hint = f" (apt-get install -y {pkg})" if pkg else ""
        raise DataError(f"{what} {path} is missing{hint}; `make setup` installs all data packages")


def _skimage_dir() -> str:
    try:
        import skimage
    except ImportError as e:
        raise DataError("scikit-image is missing (apt-get install -y python3-skimage)") from e
    return os.path.join(os.path.dirname(skimage.__file__), "data")


def _read_source(src: dict) -> list[np.ndarray]:
    """Decode one manifest source into RGB uint8 frames (one for photos, several for videos)."""
    import cv2
    path = src["path"].replace("$SKIMAGE", _skimage_dir())
    _need(path, f"source {src['id']}")
    if src["kind"] == "video":
        cap = cv2.VideoCapture(path)
        frames, i = [], 0
        want = set(src["frames"])
        while True:
            ok, fr = cap.read()
            if not ok:
                break
            if i in want:
                frames.append(cv2.cvtColor(fr, cv2.COLOR_BGR2RGB))
            i += 1
        cap.release()
        if len(frames) != len(want):
            raise DataError(f"video {path} gave {len(frames)} of {len(want)} frames; the file differs "
                            f"from the one the manifest was made from")
        return frames
    return [read_image(path, 3)]


def _is_colour(a: np.ndarray) -> bool:
    return a.ndim == 3 and a.shape[2] == 3 and not (
        np.abs(a[..., 0].astype(int) - a[..., 1]).mean() < 1 and np.abs(a[..., 1].astype(int) - a[..., 2]).mean() < 1)


def _split_of(source_id: str, fractions=(0.65, 0.15, 0.20)) -> str:
    u = int(hashlib.sha256(source_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "train" if u < fractions[0] else ("val" if u < fractions[0] + fractions[1] else "test")


def build_manifest(crops_per_source: dict | None = None, seed: int = 0) -> dict:
    """Scan the Debian data packages and fix the split by source. Run once; the result is committed."""
    import cv2
    sources = []
    for f in sorted(glob.glob(os.path.join(OPENCV_DIR, "*"))):
        if Path(f).suffix.lower() not in IMAGE_EXTS:
            continue
        a = cv2.imread(f, cv2.IMREAD_COLOR)
        if a is None or min(a.shape[:2]) < 160 or not _is_colour(a):
            continue
        sources.append({"id": "opencv/" + Path(f).name, "kind": "photo", "path": f})
    for d in sorted(glob.glob(os.path.join(WALLPAPER_DIR, "*", "contents", "images"))):
        files = [p for p in glob.glob(os.path.join(d, "*")) if Path(p).suffix.lower() in IMAGE_EXTS]
        if not files:
            continue
        # the stored size closest to 1920 px wide: enough detail, quick to decode
        best = min(files, key=lambda p: abs(int(Path(p).stem.split("x")[0]) - 1920)
                   if Path(p).stem.split("x")[0].isdigit() else 1e9)
        sources.append({"id": "wallpaper/" + d.split("/")[-3], "kind": "photo", "path": best})
    skd = _skimage_dir()
    for name in ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "ihc",
                 "motorcycle_left", "color"):
        for ext in (".png", ".jpg"):
            p = os.path.join(skd, name + ext)
            if os.path.exists(p):
                a = read_image(p, 3)
                if min(a.shape[:2]) >= 160 and _is_colour(a):
                    sources.append({"id": "skimage/" + name, "kind": "photo", "path": "$SKIMAGE/" + name + ext})
    for name, step in (("vtest", 20), ("Megamind", 10), ("tree", 12)):
        p = os.path.join(OPENCV_DIR, name + ".avi")
        if os.path.exists(p):
            cap, n = cv2.VideoCapture(p), 0   # count decodable frames (headers can overstate)
            while cap.grab():
                n += 1
            cap.release()
            sources.append({"id": "video/" + name, "kind": "video", "path": p,
                            "frames": list(range(0, n, step))})
    # Photos are ranked by a hash of their id and cut 65/15/20 %, so the split is exact and stable.
    # Videos are single scenes with hundreds of near-identical frames: they train only.
    photos = sorted((s for s in sources if s["kind"] == "photo"),
                    key=lambda s: hashlib.sha256(s["id"].encode()).hexdigest())
    n_val, n_test = round(0.15 * len(photos)), round(0.20 * len(photos))
    for i, s in enumerate(photos):
        s["split"] = "val" if i < n_val else ("test" if i < n_val + n_test else "train")
    for s in sources:
        s.setdefault("split", "train")
    rng = np.random.default_rng(seed)
    per = crops_per_source or {"val": 6, "test": 8}
    crops = {"val": [], "test": []}
    for s in sources:
        if s["split"] == "train":
            continue
        a = _read_source(s)[0]
        h, w = short_side_shape(a.shape[:2], EVAL_SCALE)
        for i in range(per[s["split"]]):
            y, x = int(rng.integers(0, h - CROP + 1)), int(rng.integers(0, w - CROP + 1))
            crops[s["split"]].append({"id": f"{s['id']}#{i}", "source": s["id"], "scale": EVAL_SCALE,
                                      "y": y, "x": x})
    return {"version": NATURAL_VERSION, "crop": CROP, "pyramid": list(PYRAMID), "sources": sources,
            "crops": crops,
            "note": "split by source (photo or whole video); regenerate only with a new version name"}


def _resize_short(a: np.ndarray, short: int) -> np.ndarray:
    """`a` scaled so that its shorter side is `short` (sing.images: area shrinking, bicubic enlarging)."""
    return resize(a, short_side_shape(a.shape[:2], short))


def load_manifest() -> dict:
    if not MANIFEST.exists():
        raise DataError(f"{MANIFEST} is missing: it fixes the natural split; restore it from git")
    return json.loads(MANIFEST.read_text())


def _natural_cache(progress: bool = True) -> Path:
    """Build (once) the decoded pyramids and fixed crops under $SING_CACHE/data/natural-v1."""
    man = load_manifest()
    d = cache_dir() / "data" / man["version"]
    done = d / "done.json"
    if done.exists():
        return d
    d.mkdir(parents=True, exist_ok=True)
    from tqdm import tqdm
    train_blobs, shapes, src_idx = [], [], []
    eval_imgs: dict[str, list[np.ndarray]] = {"val": [], "test": []}
    eval_ids: dict[str, list[str]] = {"val": [], "test": []}
    by_source = {s: [] for s in ("val", "test")}
    for c in man["crops"]["val"] + man["crops"]["test"]:
        by_source.setdefault(c["source"], []).append(c)
    for si, s in enumerate(tqdm(man["sources"], desc="natural data: decoding sources", disable=not progress)):
        frames = _read_source(s)
        if s["split"] == "train":
            for fr in frames:
                for short in man["pyramid"]:
                    p = _resize_short(fr, short)
                    train_blobs.append(p.reshape(-1))
                    shapes.append(p.shape)
                    src_idx.append(si)
        else:
            pyr = _resize_short(frames[0], EVAL_SCALE)
            for c in by_source.get(s["id"], []):
                eval_imgs[s["split"]].append(pyr[c["y"]:c["y"] + CROP, c["x"]:c["x"] + CROP])
                eval_ids[s["split"]].append(c["id"])
    flat = np.concatenate(train_blobs)
    offsets = np.cumsum([0] + [b.size for b in train_blobs])[:-1]
    np.savez(d / "train.npz", data=flat, offsets=np.asarray(offsets, np.int64),
             shapes=np.asarray(shapes, np.int64), source=np.asarray(src_idx, np.int64))
    for split in ("val", "test"):
        np.save(d / f"{split}.npy", np.stack(eval_imgs[split]).astype(np.uint8))
        (d / f"{split}_ids.json").write_text(json.dumps(eval_ids[split]))
    done.write_text(json.dumps({"version": man["version"], "n_train_images": len(shapes),
                                "n_val": len(eval_ids["val"]), "n_test": len(eval_ids["test"])}))
    return d


class _NaturalTrain:
    """Random 64×64 crops (random pyramid level, horizontal flip) from the train sources; with
    source_fraction f < 1 from the first ⌈f·S⌉ of the S train sources in a fixed shuffled order, so
    smaller fractions are subsets of larger ones (for curves of quality against training-data size)."""

    def __init__(self, progress: bool = True, source_fraction: float = 1.0):
        if not 0 < source_fraction <= 1:
            raise DataError(f"source_fraction must be in (0, 1], got {source_fraction}")
        d = _natural_cache(progress)
        z = np.load(d / "train.npz")
        self.data, self.offsets, self.shapes = z["data"], z["offsets"], z["shapes"]
        if source_fraction < 1:
            srcs = np.random.default_rng(0).permutation(np.unique(z["source"]))
            keep = np.isin(z["source"], srcs[:math.ceil(source_fraction * len(srcs))])
            self.offsets, self.shapes = self.offsets[keep], self.shapes[keep]

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        out = np.empty((n, CROP, CROP, 3), np.uint8)
        idx = rng.integers(0, len(self.shapes), n)
        for j, i in enumerate(idx):
            h, w, c = self.shapes[i]
            img = self.data[self.offsets[i]:self.offsets[i] + h * w * c].reshape(h, w, c)
            y, x = rng.integers(0, h - CROP + 1), rng.integers(0, w - CROP + 1)
            crop = img[y:y + CROP, x:x + CROP]
            out[j] = crop[:, ::-1] if rng.random() < 0.5 else crop
        return out


# ----------------------------------------------------------------------------------------------
# `natural-256`: the paper's image size from the natural set's own val/test photographs. Each
# source of the split (manifest order) gives NATURAL_256_VIEWS views of 256×256: view 0 is the whole
# photograph, resized to shorter side 256 and centre-cropped; views 1–4 are a 2×2 grid of crops of
# the photograph at shorter side 384 (origins at a quarter and three quarters of the free range,
# as UNSEEN_GRID). Views are ordered round-robin (every photograph's view 0, then every view 1, …),
# so a prefix of n images spreads over all photographs. Ids are `<source>#256-<view>`: the part
# before `#` is the photograph (the cluster of sim/compare.py's bootstrap). Deterministic from the
# committed manifest and the source files; cut once into $SING_CACHE/data/natural-256-v1/.
NATURAL_256 = 256
NATURAL_256_VERSION = "natural-256-v1"
NATURAL_256_VIEWS = ((256, (0.5, 0.5)), (384, (0.25, 0.25)), (384, (0.25, 0.75)), (384, (0.75, 0.25)),
                     (384, (0.75, 0.75)))       # (shorter side, (fy, fx) of the crop origin)


def natural_256_views(a: np.ndarray) -> list[np.ndarray]:
    """The NATURAL_256_VIEWS of one photograph (uint8 (H, W, 3)), in view order."""
    out = []
    for short, (fy, fx) in NATURAL_256_VIEWS:
        r = _resize_short(a, short)
        h, w = r.shape[:2]
        y, x = round(fy * (h - NATURAL_256)), round(fx * (w - NATURAL_256))
        out.append(np.ascontiguousarray(r[y:y + NATURAL_256, x:x + NATURAL_256]))
    return out


def _natural_256_cache(split: str, progress: bool = True) -> Path:
    """Cut (once) the natural-256 views of a val/test split into $SING_CACHE (section doc)."""
    if split not in ("val", "test"):
        raise DataError(f"natural-256 is an evaluation set of the natural val/test photographs: its splits "
                        f"are val and test, not {split!r} (models train on the 64×64 `natural` crops)")
    man = load_manifest()
    d = cache_dir() / "data" / NATURAL_256_VERSION
    if (d / f"{split}.done").exists():
        return d
    from tqdm import tqdm
    per_source = []
    for s in tqdm([s for s in man["sources"] if s["split"] == split], desc=f"natural-256 {split}: cutting views",
                  disable=not progress):
        per_source.append((s["id"], natural_256_views(_read_source(s)[0])))
    order = [(sid, v, views[v]) for v in range(len(NATURAL_256_VIEWS)) for sid, views in per_source]
    d.mkdir(parents=True, exist_ok=True)
    np.save(d / f"{split}.npy", np.stack([a for _, _, a in order]).astype(np.uint8))
    (d / f"{split}_ids.json").write_text(json.dumps([f"{sid}#256-{v}" for sid, v, _ in order]))
    (d / f"{split}.done").write_text(json.dumps({"version": NATURAL_256_VERSION, "n": len(order)}))
    return d


# ----------------------------------------------------------------------------------------------
# Unseen-source split (`natural-unseen`): whole photograph collections that no shipped model saw
# (JSCC, prior, calibration, INN training or any tuning), for measuring generalisation to new
# sources. The files and the crop rule are fixed by the committed manifest `sing/unseen_manifest.json`
# (built once by `build_unseen_manifest`, `sing data manifest-unseen`); every file is checked
# against its sha256 when the crops are cut, so a different file is an error, never a silent change.
UNSEEN_VERSION = "natural-unseen-v1"
# (Debian package, file stem under /usr/share/backgrounds): the photographs of the Lomiri wallpaper
# collections; every other file of those packages is a render or a texture (UNSEEN_EXCLUDED)
UNSEEN_PHOTOS = (
    ("lomiri-wallpapers-16.04", "Bridge_by_Sander_Klootwijk"),
    ("lomiri-wallpapers-16.04", "Dragonfly_by_Bolly"),
    ("lomiri-wallpapers-16.04", "Picture_0B_by_freespace"),
    ("lomiri-wallpapers-16.04", "Picture_1A_by_freespace"),
    ("lomiri-wallpapers-16.04", "Wine_by_Jakkub_Mede"),
    ("lomiri-wallpapers-16.04", "aitzgorri_by_Aitzol_Berasategi"),
    ("lomiri-wallpapers-16.04", "free_by_Peter_Nerlich"),
    ("lomiri-wallpapers-16.04", "friends_by_Aitzol_Berasategi"),
    ("lomiri-wallpapers-16.04", "greentock_by_Peter_Nerlich"),
    ("lomiri-wallpapers-16.04", "life_by_Aitzol_Berasategi"),
    ("lomiri-wallpapers-16.04", "picosdeeuropa_by_Aitzol_Berasategi"),
    ("lomiri-wallpapers-16.04", "seeding_by_Clements_Engelhardt"),
    ("lomiri-wallpapers-16.04", "sunset_by_Aitzol_Berasategi"),
    ("lomiri-wallpapers-20.04", "Kleiber_by_Lukas_Baubkus"),
)
UNSEEN_EXCLUDED = {
    "analogpattern_by_Peter_Nerlich": "a frame-filling close-up of a textured wall under coloured light: "
                                      "every crop is the same texture, no scene",
    "umang_by_Abhishek_Mudgal": "a rendered colour gradient",
    "Fossa_by_Jasper_Roks": "a render (abstract shapes)",
    "Painting-Colors_by__herobrine7gamer": "a render (colour stripes)",
    "Infinite-Sea_by_Aury88": "a composite: a night sky over a rendered gradient sea",
}
UNSEEN_SCALE = 192                 # shorter side before cropping (as the natural val/test crops)
UNSEEN_GRID = ((0.5, 0.5), (0.25, 0.25), (0.25, 0.75), (0.75, 0.25), (0.75, 0.75))
#   crop origins as fractions (of H − 64, of W − 64): the centre, then a 2×2 grid inset by a quarter


def unseen_crop_origins(hw: tuple[int, int]) -> list[tuple[int, int]]:
    """The fixed crop rule: the (y, x) origins of the 64×64 crops of a photo resized to shorter
    side UNSEEN_SCALE (UNSEEN_GRID)."""
    h, w = short_side_shape(hw, UNSEEN_SCALE)
    return [(round(fy * (h - CROP)), round(fx * (w - CROP))) for fy, fx in UNSEEN_GRID]


def build_unseen_manifest() -> dict:
    """Hash the chosen photographs and list their crops, ordered round-robin (every photo's first
    crop, then every photo's second, …) so that any prefix spreads over all photos. Run once; the
    result is committed."""
    sources, per_photo = [], []
    for pkg, stem in UNSEEN_PHOTOS:
        path = os.path.join(BACKGROUNDS_DIR, stem + ".jpg")
        _need(path, f"photograph {stem} (Debian package {pkg})")
        a = read_image(path, 3)
        sid = f"{pkg}/{stem}"
        sources.append({"id": sid, "package": pkg, "path": path, "sha256": file_digest(path, 64),
                        "size": [int(a.shape[1]), int(a.shape[0])]})
        per_photo.append([{"id": f"{sid}#{i}", "source": sid, "scale": UNSEEN_SCALE, "y": y, "x": x}
                          for i, (y, x) in enumerate(unseen_crop_origins(a.shape[:2]))])
    crops = [c for i in range(len(UNSEEN_GRID)) for p in per_photo for c in p[i:i + 1]]
    return {"version": UNSEEN_VERSION, "crop": CROP, "scale": UNSEEN_SCALE, "grid": [list(g) for g in UNSEEN_GRID],
            "sources": sources, "excluded": {os.path.join(BACKGROUNDS_DIR, k + ".jpg"): v
                                             for k, v in UNSEEN_EXCLUDED.items()},
            "crops": {"test": crops},
            "note": "evaluation only: collections never used for training, calibration or tuning; "
                    "regenerate only with a new version name"}


def load_unseen_manifest() -> dict:
    if not UNSEEN_MANIFEST.exists():
        raise DataError(f"{UNSEEN_MANIFEST} is missing: it fixes the unseen-source split; restore it from git")
    return json.loads(UNSEEN_MANIFEST.read_text())


def _unseen_cache(progress: bool = True) -> Path:
    """Cut (once) the unseen-source crops into $SING_CACHE/data/natural-unseen-v1/test.npy, each
    source checked against the manifest's sha256."""
    man = load_unseen_manifest()
    d = cache_dir() / "data" / man["version"]
    if (d / "done.json").exists():
        return d
    from tqdm import tqdm
    by_source: dict[str, list[dict]] = {}
    for c in man["crops"]["test"]:
        by_source.setdefault(c["source"], []).append(c)
    cut: dict[str, np.ndarray] = {}
    for s in tqdm(man["sources"], desc="natural-unseen: cutting crops", disable=not progress):
        _need(s["path"], f"photograph {s['id']} (Debian package {s['package']})")
        if file_digest(s["path"], 64) != s["sha256"]:
            raise DataError(f"{s['path']} differs from the file the unseen-source manifest was made from "
                            f"(sha256 mismatch): this package version ships another photo; the split "
                            f"would not be the committed one")
        pyr = _resize_short(read_image(s["path"], 3), man["scale"])
        for c in by_source.get(s["id"], []):
            cut[c["id"]] = pyr[c["y"]:c["y"] + CROP, c["x"]:c["x"] + CROP]
    ids = [c["id"] for c in man["crops"]["test"]]
    d.mkdir(parents=True, exist_ok=True)
    np.save(d / "test.npy", np.stack([cut[i] for i in ids]).astype(np.uint8))
    (d / "test_ids.json").write_text(json.dumps(ids))
    (d / "done.json").write_text(json.dumps({"version": man["version"], "n_test": len(ids)}))
    return d


UNSEEN_FILES = ("test.npy", "test_ids.json", "done.json")


def export_unseen(out: str | os.PathLike, progress: bool = True) -> list[str]:
    """Copy the cut unseen-source crops (exact, 0.9 MB) into a data bundle folder as unseen-*."""
    import shutil
    d = _unseen_cache(progress)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for f in UNSEEN_FILES:
        shutil.copyfile(d / f, out / f"unseen-{f}")
    return [f"unseen-{f}" for f in UNSEEN_FILES]


def import_unseen(src: str | os.PathLike) -> Path | None:
    """Restore the unseen-source crops from a bundle folder (None if the bundle has none)."""
    import shutil
    src = Path(src)
    if not all((src / f"unseen-{f}").exists() for f in UNSEEN_FILES):
        return None
    meta = json.loads((src / "unseen-done.json").read_text())
    if meta.get("version") != load_unseen_manifest()["version"]:
        raise DataError(f"the bundle in {src} holds unseen-source crops of version {meta.get('version')!r}, "
                        f"this code expects {load_unseen_manifest()['version']!r}: bundle them again")
    d = cache_dir() / "data" / meta["version"]
    d.mkdir(parents=True, exist_ok=True)
    for f in UNSEEN_FILES:                          # done.json last: it marks the cache complete
        shutil.copyfile(src / f"unseen-{f}", d / f)
    return d


# ----------------------------------------------------------------------------------------------
# Fashion-MNIST
def _read_idx(path: str) -> np.ndarray:
    _need(path, "Fashion-MNIST file")
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _fmnist(split: str) -> tuple[np.ndarray, list[str]]:
    if split == "test":
        a = _read_idx(os.path.join(FMNIST_DIR, "t10k-images-idx3-ubyte.gz"))
        ids = [f"fmnist/test/{i}" for i in range(len(a))]
    else:
        a = _read_idx(os.path.join(FMNIST_DIR, "train-images-idx3-ubyte.gz"))
        sl = slice(0, 55000) if split == "train" else slice(55000, 60000)
        ids = [f"fmnist/train/{i}" for i in range(60000)][sl]
        a = a[sl]
    a = np.pad(a, ((0, 0), (2, 2), (2, 2)))[..., None]  # 28×28 → 32×32, zero (black) border
    return a, ids


# ----------------------------------------------------------------------------------------------
# Public API
SPLITS = ("train", "val", "test")


def load_split(name: str, split: str = "test", n: int | None = None,
               progress: bool = True) -> tuple[torch.Tensor, list[str]]:
    """The images of a split as float (N, C, H, W) in [0, 1], with stable ids.

    For `natural` the train split returns deterministic crops (seed 0) — training itself uses
    `train_batches`. `n` takes the first n images (the order is fixed)."""
    info(name)
    if split not in SPLITS + ("all",):
        raise DataError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    if n is not None and n < 1:
        raise InputError(f"n must be ≥ 1, got {n}")
    if is_folder(name):
        files = folder_files(name, split)[:n]
        arr = _fit_files(files, parse_folder(name)[1], progress, f"{name}: decoding {split}")
        return to_tensor(arr), [f"folder/{f.name}" for f in files]
    if name == "natural-unseen":
        if split != "test":
            raise DataError(f"natural-unseen is an evaluation-only set (photograph collections no model "
                            f"was trained or tuned on): its one split is test, not {split!r}")
        arr, ids = _cached_split(_unseen_cache(progress), split)
    elif name == "natural-256":
        arr, ids = _cached_split(_natural_256_cache(split, progress), split)
    elif name in ("natural", "natural-gray32"):
        if split == "all":
            raise DataError("split 'all' is only for folder: data sets")
        if split == "train":
            rng = np.random.default_rng(0)
            m = n or 256
            arr, ids = _NaturalTrain(progress).sample(rng, m), [f"natural/train-crop/{i}" for i in range(m)]
        else:
            arr, ids = _cached_split(_natural_cache(progress), split)
    else:                                                   # the Fashion-MNIST family
        arr, ids = _fmnist("test" if split == "all" else split)
    x, ids = to_tensor(arr[:n]), ids[:n]                    # n None: all
    if name == "natural-gray32":
        x = F.interpolate(x.mean(1, keepdim=True), size=32, mode="area")
        ids = [i.replace("natural", "natural-gray32", 1) for i in ids]
    elif name == "fmnist-rgb64":
        x = F.interpolate(x, size=64, mode="bilinear", align_corners=False).clamp(0, 1).repeat(1, 3, 1, 1)
        ids = [i.replace("fmnist", "fmnist-rgb64", 1) for i in ids]
    return x, ids


def _cached_split(d: Path, split: str) -> tuple[np.ndarray, list[str]]:
    """A split cut into a cache folder: `<split>.npy` (uint8 N, H, W, C) and `<split>_ids.json`."""
    return np.load(d / f"{split}.npy"), json.loads((d / f"{split}_ids.json").read_text())


def spread_subset(name: str, split: str, n: int, progress: bool = False) -> tuple[torch.Tensor, list[str]]:
    """n images spread evenly over a split (for the natural set: different source photos first),
    for demos and pictures; evaluations use `load_split`'s fixed order."""
    x, ids = load_split(name, split, progress=progress)
    if n >= len(ids):
        return x, ids
    by_src: dict[str, list[int]] = {}
    for j, i in enumerate(ids):
        by_src.setdefault(i.split("#")[0], []).append(j)
    groups = list(by_src.values())
    if 1 < n <= len(groups):   # one crop from each of n sources spread over the split
        pick = [groups[round(v)][0] for v in np.linspace(0, len(groups) - 1, n)]
    else:
        pick = [round(v) for v in np.linspace(0, len(ids) - 1, n)]
    return x[pick], [ids[j] for j in pick]


def train_batches(name: str, batch_size: int, seed: int = 0, progress: bool = True,
                  source_fraction: float = 1.0) -> Iterator[torch.Tensor]:
    """An endless stream of training batches (B, C, H, W) in [0, 1] (random crops + flips);
    `source_fraction` < 1 trains on a nested subset of the natural train sources (`_NaturalTrain`)."""
    info(name)
    rng = np.random.default_rng(seed)
    if source_fraction != 1 and name != "natural":
        raise DataError(f"source_fraction is defined for the natural train sources, not {name!r}")
    if name == "natural":
        src = _NaturalTrain(progress, source_fraction)
        while True:
            yield to_tensor(src.sample(rng, batch_size))
    elif name == "fmnist":
        arr, _ = _fmnist("train")
        while True:
            idx = rng.integers(0, len(arr), batch_size)
            b = arr[idx]
            flip = rng.random(batch_size) < 0.5
            b[flip] = b[flip][:, :, ::-1]
            yield to_tensor(b)
    elif is_folder(name):
        arr = _folder_train_array(name, progress)
        while True:
            yield to_tensor(arr[rng.integers(0, len(arr), batch_size)])
    else:
        raise DataError(f"{name!r} is an evaluation-only set (mismatch, unseen-source or natural-256); train on natural, fmnist, "
                        f"folder:PATH or folder@SIZE:PATH")
