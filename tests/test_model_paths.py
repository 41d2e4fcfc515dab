# SPDX-License-Identifier: GPL-3.0-or-later
"""Models by name (sing.paths): the search path, working-directory independence, and the one error
a missing model gives (its name, every folder searched, the command that makes it)."""
import os
from pathlib import Path

import pytest

from sing.checkpoint import load_config, model_id
from sing.errors import CheckpointError
from sing.paths import model_search_path, resolve_model, user_model_dir

ROOT = Path(__file__).resolve().parents[1]


def test_name_through_explicit_folder_with_or_without_kind_prefix(tiny_jscc_dir, tmp_path, monkeypatch):
    folder = tiny_jscc_dir.parent                      # holds jscc-tiny
    monkeypatch.setenv("SING_MODEL_PATH", str(folder))
    monkeypatch.chdir(tmp_path)
    assert resolve_model("jscc-tiny") == folder / "jscc-tiny"
    assert resolve_model("tiny") == folder / "jscc-tiny"          # kind prefix may be left out
    assert load_config("tiny", kind="sing.jscc")["kind"] == "sing.jscc"
    assert model_id("tiny") == model_id(tiny_jscc_dir)
    assert model_search_path()[0] == folder                       # the explicit folder comes first


def test_shipped_model_by_name_from_any_folder(tmp_path, monkeypatch):
    from sing.jscc import load_jscc
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SING_MODEL_PATH", raising=False)
    m = load_jscc("natural64-bcr1_48")
    assert m.model_id.startswith("jscc-natural64-bcr1_48@")
    assert resolve_model("jscc-natural64-bcr1_48") == ROOT / "models" / "jscc-natural64-bcr1_48"


def test_prior_by_name(tmp_path, monkeypatch):
    from sing.prior import load_prior
    monkeypatch.chdir(tmp_path)
    p = load_prior("prior-fmnist-32")
    assert p.image_size == 32


def test_missing_name_one_error_naming_model_folders_and_command(tmp_path, monkeypatch):
    monkeypatch.setenv("SING_MODEL_PATH", str(tmp_path / "mine"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(CheckpointError) as e:
        resolve_model("jscc-natural64-bcr1_96")
    msg = str(e.value)
    assert "'jscc-natural64-bcr1_96' not found" in msg
    for d in (tmp_path / "mine", user_model_dir(), Path("/usr/local/share/gr-sing/models")):
        assert str(d) in msg
    assert "sing train-jscc --data natural --bcr 1/96" in msg and "make install" in msg
    with pytest.raises(CheckpointError, match="sing train-prior --data celeba"):
        resolve_model("prior-celeba-256")


def test_missing_relative_path_says_where_it_counted_from(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError, match=f"does not exist.*{tmp_path}.*'jscc-x'"):
        load_config(os.path.join("models", "jscc-x"))


def test_worker_finds_calibration_and_inn_next_to_a_model_given_by_name(tmp_path, monkeypatch):
    from sing.worker.engine import discover
    monkeypatch.chdir(tmp_path)
    cals, inns = discover(["jscc-natural64-bcr1_48"])
    assert cals == [str(ROOT / "models" / "jscc-natural64-bcr1_48" / "calibration")]
    assert inns == [str(ROOT / "models" / "jscc-natural64-bcr1_48-inn")]
