# SPDX-License-Identifier: GPL-3.0-or-later
"""Data sets: split by source, fixed manifest, Fashion-MNIST, folders, clear errors."""
import json

import numpy as np
import pytest
import torch

from sing import data as D
from sing.errors import DataError


def test_manifest_splits_by_source_and_eval_crops_belong_to_their_split():
    m = D.load_manifest()
    split_of = {s["id"]: s["split"] for s in m["sources"]}
    assert set(split_of.values()) == {"train", "val", "test"}
    for split in ("val", "test"):
        for c in m["crops"][split]:
            assert split_of[c["source"]] == split
    # every video is a single scene: it lives entirely in train
    assert all(s["split"] == "train" for s in m["sources"] if s["kind"] == "video")
    assert len(m["crops"]["test"]) >= 64


def test_natural_test_split_is_deterministic_and_valid():
    x, ids = D.load_split("natural", "test", progress=False)
    x2, ids2 = D.load_split("natural", "test", n=10, progress=False)
    assert x.shape[1:] == (3, 64, 64) and len(ids) == len(x) >= 64
    assert torch.equal(x[:10], x2) and ids[:10] == ids2
    assert 0 <= float(x.min()) and float(x.max()) <= 1
    assert len(set(ids)) == len(ids)


def test_train_batches_never_use_eval_sources():
    m = D.load_manifest()
    n_train = sum(len(s.get("frames", [0])) for s in m["sources"] if s["split"] == "train")
    cache = D._natural_cache(progress=False)
    z = np.load(cache / "train.npz")
    srcs = {m["sources"][i]["split"] for i in np.unique(z["source"])}
    assert srcs == {"train"} and len(z["shapes"]) == n_train * len(m["pyramid"])
    b = next(D.train_batches("natural", 8, seed=1))
    assert b.shape == (8, 3, 64, 64)


def test_fmnist_and_mismatch_sets():
    x, ids = D.load_split("fmnist", "test", n=5)
    assert x.shape == (5, 1, 32, 32) and float(x[:, :, :2].abs().max()) == 0  # zero-padded border
    assert len(D.load_split("fmnist", "val")[1]) == 5000
    x, _ = D.load_split("fmnist-rgb64", "test", n=3)
    assert x.shape == (3, 3, 64, 64)
    x, _ = D.load_split("natural-gray32", "test", n=3, progress=False)
    assert x.shape == (3, 1, 32, 32)
    b = next(D.train_batches("fmnist", 4))
    assert b.shape == (4, 1, 32, 32)


def test_folder_dataset_fits_any_size(tmp_path):
    from PIL import Image
    rng = np.random.default_rng(0)
    (tmp_path / "sub").mkdir()
    Image.fromarray(rng.integers(0, 255, (100, 300, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(rng.integers(0, 255, (50, 40), dtype=np.uint8)).save(tmp_path / "sub" / "b.jpg")
    x, ids = D.load_split(f"folder:{tmp_path}", "all")
    assert x.shape == (2, 3, 64, 64) and ids == ["folder/a.png", "folder/b.jpg"]


def _write_images(folder, names, size=(40, 50), seed=0):
    from PIL import Image
    rng = np.random.default_rng(seed)
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(folder / name)


def test_folder_at_size_and_split_subfolders(tmp_path):
    _write_images(tmp_path, ["train/a.png", "train/b.png", "train/c.png", "val/d.png", "test/e.jpg", "test/f.jpg"])
    assert D.info(f"folder:{tmp_path}").image_size == 64
    assert D.info(f"folder@256:{tmp_path}").image_size == 256
    x, ids = D.load_split(f"folder@256:{tmp_path}", "test")
    assert x.shape == (2, 3, 256, 256) and ids == ["folder/e.jpg", "folder/f.jpg"]
    assert D.load_split(f"folder@48:{tmp_path}", "train")[0].shape == (3, 3, 48, 48)
    assert len(D.load_split(f"folder:{tmp_path}", "all")[1]) == 6
    b = next(D.train_batches(f"folder@96:{tmp_path}", 5))
    assert b.shape == (5, 3, 96, 96) and b.dtype == torch.float32
    (tmp_path / "val" / "d.png").unlink()
    (tmp_path / "val").rmdir()
    with pytest.raises(DataError, match="no val/ folder"):
        D.load_split(f"folder@64:{tmp_path}", "val")
    for bad in (f"folder@x:{tmp_path}", f"folder@4:{tmp_path}", "folder@256"):
        with pytest.raises(DataError, match="folder"):
            D.info(bad)


def test_large_folder_train_split_is_cached_once(tmp_path, monkeypatch):
    """Train splits above the memory limit are decoded once into a memory-mapped uint8 cache;
    batches are the same either way."""
    _write_images(tmp_path / "imgs", [f"{i}.png" for i in range(6)])
    name = f"folder@32:{tmp_path / 'imgs'}"
    want = next(D.train_batches(name, 4, seed=3))
    monkeypatch.setenv("SING_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(D, "_FOLDER_MEM_LIMIT", 0)
    assert torch.equal(next(D.train_batches(name, 4, seed=3)), want)
    done = list((tmp_path / "cache" / "data" / "folder").glob("*/done.json"))
    assert len(done) == 1 and json.loads(done[0].read_text())["size"] == 32
    arr = D._folder_train_array(name, progress=False)
    assert isinstance(arr, np.memmap) and arr.shape[1:] == (32, 32, 3) and arr.dtype == np.uint8
    assert len(list((tmp_path / "cache" / "data" / "folder").iterdir())) == 1   # reused, not rebuilt


def test_errors_name_the_choices_and_packages(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="natural, fmnist"):
        D.load_split("celeba", "test")
    with pytest.raises(DataError, match="split"):
        D.load_split("natural", "holdout")
    with pytest.raises(DataError, match="no images"):
        D.load_split(f"folder:{tmp_path}", "all")
    monkeypatch.setattr(D, "FMNIST_DIR", str(tmp_path / "nope"))
    with pytest.raises(DataError, match="missing"):
        D.load_split("fmnist", "test")
    with pytest.raises(DataError, match="evaluation-only"):
        next(D.train_batches("fmnist-rgb64", 2))


def test_fit_image_rule():
    a = np.zeros((120, 200, 3), np.uint8)
    a[:, 100:] = 255
    f = D.fit_image(a, 64)
    assert f.shape == (64, 64, 3)
    assert f[:, :20].max() == 0 and f[:, -20:].min() == 255   # centre crop keeps the middle
