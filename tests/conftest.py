# SPDX-License-Identifier: GPL-3.0-or-later
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


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors on a shared 2-core machine: intra-op threads only add synchronisation (one file
    ran ~10× slower oversubscribed). One torch thread for the module, restored afterwards."""
    import torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
