# SPDX-License-Identifier: GPL-3.0-or-later
"""The portable natural-data bundle (sing/data_bundle.py): a cache rebuilt from it has the same train
layout (lossy pixels, close), identical val/test crops, and broken bundles are refused clearly."""
from __future__ import annotations

import json

import numpy as np
import pytest

from sing.data import NATURAL_VERSION
from sing.data_bundle import export_bundle, import_bundle
from sing.errors import DataError, InputError


def _fake_cache(root):
    """A small natural-v1 cache: 3 smooth train images of different sizes, 4 val and 5 test crops."""
    d = root / "data" / NATURAL_VERSION
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    blobs, shapes = [], []
    for h, w in ((64, 96), (80, 64), (72, 72)):
        yy, xx = np.mgrid[0:h, 0:w]
        img = np.stack([128 + 100 * np.sin(xx / 9 + k) * np.cos(yy / 13) for k in range(3)], -1)
        blobs.append(np.clip(img + rng.normal(0, 2, img.shape), 0, 255).astype(np.uint8).reshape(-1))
        shapes.append((h, w, 3))
    np.savez(d / "train.npz", data=np.concatenate(blobs),
             offsets=np.asarray(np.cumsum([0] + [b.size for b in blobs])[:-1], np.int64),
             shapes=np.asarray(shapes, np.int64), source=np.asarray([0, 0, 1], np.int64))
    for s, n in (("val", 4), ("test", 5)):
        np.save(d / f"{s}.npy", rng.integers(0, 256, (n, 64, 64, 3), dtype=np.uint8))
        (d / f"{s}_ids.json").write_text(json.dumps([f"{s}#{i}" for i in range(n)]))
    (d / "done.json").write_text("{}")
    return d


@pytest.mark.parametrize("codec", ["webp", "jpeg"])
def test_roundtrip(tmp_path, monkeypatch, codec):
    src = _fake_cache(tmp_path / "here")
    monkeypatch.setenv("SING_CACHE", str(tmp_path / "here"))
    idx = export_bundle(tmp_path / "b", quality=90, codec=codec, progress=False)
    assert len(idx["files"]) == 3 and idx["codec"] == codec
    monkeypatch.setenv("SING_CACHE", str(tmp_path / "there"))
    d = import_bundle(tmp_path / "b", progress=False)
    assert d == tmp_path / "there" / "data" / NATURAL_VERSION
    a, b = np.load(src / "train.npz"), np.load(d / "train.npz")
    for k in ("offsets", "shapes", "source"):
        np.testing.assert_array_equal(a[k], b[k])
    err = a["data"].astype(float) - b["data"].astype(float)
    assert 10 * np.log10(255 ** 2 / np.mean(err ** 2)) > 30          # lossy, but close
    for s in ("val", "test"):                                          # evaluation crops: exact
        np.testing.assert_array_equal(np.load(src / f"{s}.npy"), np.load(d / f"{s}.npy"))
    done = json.loads((d / "done.json").read_text())
    assert done["n_train_images"] == 3 and done["n_test"] == 5 and done["from_bundle"]["codec"] == codec
    # the rebuilt cache serves training crops through the normal loader
    from sing.data import _NaturalTrain
    crops = _NaturalTrain(progress=False).sample(np.random.default_rng(0), 4)
    assert crops.shape == (4, 64, 64, 3)


def test_train_only_bundle_and_bad_bundles(tmp_path, monkeypatch):
    _fake_cache(tmp_path / "here")
    monkeypatch.setenv("SING_CACHE", str(tmp_path / "here"))
    b = tmp_path / "b"
    export_bundle(b, eval_splits=False, progress=False)
    assert not (b / "val.npy").exists()
    with pytest.raises(InputError, match="quality"):
        export_bundle(tmp_path / "q", quality=101, progress=False)
    monkeypatch.setenv("SING_CACHE", str(tmp_path / "there"))
    d = import_bundle(b, progress=False)
    assert json.loads((d / "done.json").read_text())["n_val"] == 0
    with pytest.raises(DataError, match="no index.json"):
        import_bundle(tmp_path / "nothing", progress=False)
    before = (d / "train.npz").read_bytes()
    (b / "train-0001.webp").write_bytes(b"not an image")
    with pytest.raises(DataError, match="corrupted"):
        import_bundle(b, progress=False)
    assert (d / "done.json").exists() and (d / "train.npz").read_bytes() == before   # cache untouched
    (b / "train-0002.webp").unlink()
    with pytest.raises(DataError, match="incomplete"):
        import_bundle(b, progress=False)
    idx = json.loads((b / "index.json").read_text())
    (b / "index.json").write_text(json.dumps({**idx, "version": "natural-v0"}))
    with pytest.raises(DataError, match="natural-v0"):
        import_bundle(b, progress=False)
