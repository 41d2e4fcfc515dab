import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def repo():
    return REPO


@pytest.fixture(scope="session")
def tiny_jscc_dir(tmp_path_factory):
    """A tiny randomly initialised DeepJSCC saved as a model directory (32×32 RGB, BCR 1/12, k = 256)."""
    import torch
    from sing.checkpoint import save_model
    from sing.jscc import JSCCConfig, build_jscc
    torch.manual_seed(0)
    cfg = JSCCConfig.tiny(image_size=32, channels=3, bcr="1/12")
    m = build_jscc(cfg)
    d = tmp_path_factory.mktemp("models") / "jscc-tiny"
    save_model(d, m.state_dict(), cfg.to_dict())
    return d
