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


def test_source_fractions_are_nested_subsets_of_whole_sources():
    """train-prior --source-fraction: ⌈f·S⌉ whole train sources, smaller fractions inside larger ones."""
    z = np.load(D._natural_cache(progress=False) / "train.npz")
    n_src = len(np.unique(z["source"]))
    by_offset = dict(zip(z["offsets"].tolist(), z["source"].tolist()))
    seen = []
    for f in (0.1, 0.25, 0.5, 1.0):
        t = D._NaturalTrain(progress=False, source_fraction=f)
        srcs = {by_offset[o] for o in t.offsets.tolist()}
        assert len(srcs) == int(np.ceil(f * n_src))
        assert all(s <= srcs for s in seen)          # nested
        assert np.isin(z["source"], list(srcs)).sum() == len(t.shapes)      # every image of a kept source
        seen.append(srcs)
    b = next(D.train_batches("natural", 4, seed=1, source_fraction=0.25))
    assert b.shape == (4, 3, 64, 64)
    for bad in (0.0, 1.5):
        with pytest.raises(DataError, match="source_fraction"):
            D._NaturalTrain(progress=False, source_fraction=bad)
    with pytest.raises(DataError, match="natural train sources"):
        next(D.train_batches("fmnist", 4, source_fraction=0.5))


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


def test_unseen_split_holds_whole_collections_no_model_saw():
    """natural-unseen: ≥ 64 crops of photographs from collections absent from the natural manifest
    (so from every training, calibration and tuning run), each file pinned by sha256, the crops
    where the stated rule puts them, round-robin over photos."""
    m = D.load_unseen_manifest()
    nat = D.load_manifest()
    seen_paths = {s["path"] for s in nat["sources"]}
    seen_dirs = {s["path"].rsplit("/", 2)[0] for s in nat["sources"]}
    srcs = {s["id"]: s for s in m["sources"]}
    assert len(srcs) >= 10
    for s in srcs.values():
        assert s["path"] not in seen_paths and not any(s["path"].startswith(d + "/") for d in seen_dirs)
        assert s["package"] in D.PACKAGE_FOR[D.BACKGROUNDS_DIR].split()
        assert D.file_digest(s["path"], 64) == s["sha256"]
        assert s["path"] not in m["excluded"]
    crops = m["crops"]["test"]
    assert len(crops) >= 64 and len({c["id"] for c in crops}) == len(crops)
    for s in srcs.values():
        mine = [(c["y"], c["x"]) for c in crops if c["source"] == s["id"]]
        assert mine == D.unseen_crop_origins((s["size"][1], s["size"][0]))
    assert [c["source"] for c in crops[:len(srcs)]] == list(srcs)      # every photo before any repeats
    x, ids = D.load_split("natural-unseen", "test", progress=False)
    assert x.shape == (len(crops), 3, 64, 64) and ids == [c["id"] for c in crops]
    assert 0 <= float(x.min()) and float(x.max()) <= 1 and float(x.std()) > 0.05
    assert torch.equal(D.load_split("natural-unseen", "test", n=5, progress=False)[0], x[:5])


def test_unseen_split_is_evaluation_only_and_refuses_another_file(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="evaluation-only"):
        D.load_split("natural-unseen", "train")
    with pytest.raises(DataError, match="evaluation-only"):
        next(D.train_batches("natural-unseen", 2))
    m = D.load_unseen_manifest()
    m["sources"][0]["sha256"] = "0" * 64
    man = tmp_path / "unseen_manifest.json"
    man.write_text(json.dumps(m))
    monkeypatch.setattr(D, "UNSEEN_MANIFEST", man)
    monkeypatch.setenv("SING_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DataError, match="sha256"):
        D.load_split("natural-unseen", "test", progress=False)


def test_unseen_crops_travel_in_a_data_bundle(tmp_path, monkeypatch):
    want, ids = D.load_split("natural-unseen", "test", progress=False)
    assert D.import_unseen(tmp_path / "empty") is None                 # a bundle without them: nothing
    files = D.export_unseen(tmp_path / "bundle", progress=False)
    assert sorted(files) == sorted(f"unseen-{f}" for f in D.UNSEEN_FILES)
    monkeypatch.setenv("SING_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(D, "BACKGROUNDS_DIR", str(tmp_path / "no-packages-here"))
    d = D.import_unseen(tmp_path / "bundle")
    assert d == tmp_path / "cache" / "data" / D.UNSEEN_VERSION
    got, ids2 = D.load_split("natural-unseen", "test", progress=False)
    assert torch.equal(got, want) and ids2 == ids


def test_natural_256_views_are_of_eval_photographs_only():
    """natural-256: 256×256 RGB views of the natural val/test photographs (5 per photograph, round-
    robin), ids `<source>#256-<view>` so the bootstrap clusters by photograph; view 0 is the whole
    photograph resized to shorter side 256 and centre-cropped; no train photograph; no train split."""
    man = D.load_manifest()
    split_of = {s["id"]: s["split"] for s in man["sources"]}
    x, ids = D.load_split("natural-256", "test", progress=False)
    n_src = sum(1 for s in man["sources"] if s["split"] == "test")
    assert x.shape == (5 * n_src, 3, 256, 256) and D.info("natural-256").image_size == 256
    assert len(set(ids)) == len(ids) and all(split_of[i.split("#")[0]] == "test" for i in ids)
    assert [i.split("#")[1] for i in ids[:n_src]] == ["256-0"] * n_src            # round-robin
    assert {i.split("#")[0] for i in ids[:n_src]} == {i.split("#")[0] for i in ids}
    src = next(s for s in man["sources"] if s["id"] == ids[0].split("#")[0])
    a = D._read_source(src)[0]                                                    # the stated rule:
    h, w = D.short_side_shape(a.shape[:2], 256)                                   # shorter side 256,
    y0, x0 = round(0.5 * (h - 256)), round(0.5 * (w - 256))                       # the centre
    whole = D._resize_short(a, 256)[y0:y0 + 256, x0:x0 + 256]
    assert np.array_equal(D.to_uint8(x[:1])[0], whole)
    xv, iv = D.load_split("natural-256", "val", n=3, progress=False)
    assert xv.shape[0] == 3 and all(split_of[i.split("#")[0]] == "val" for i in iv)
    with pytest.raises(DataError, match="val and test"):
        D.load_split("natural-256", "train")
    with pytest.raises(DataError, match="evaluation-only"):
        next(D.train_batches("natural-256", 2))
