# SPDX-License-Identifier: GPL-3.0-or-later
"""`from gnuradio import sing` from this source tree (unless ctest put the build copy first via
SING_GR_FROM_PATH): a shim package dir whose `sing` links to sing_blocks/, put on gnuradio's path."""
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def gr_sing():
    import gnuradio
    if not os.environ.get("SING_GR_FROM_PATH"):
        shim = ROOT / ".cache" / "gr-shim" / "gnuradio"
        shim.mkdir(parents=True, exist_ok=True)
        link = shim / "sing"
        if not link.exists():
            link.symlink_to(ROOT / "sing_blocks", target_is_directory=True)
        if str(shim) not in gnuradio.__path__:
            gnuradio.__path__.insert(0, str(shim))
    from gnuradio import sing
    return sing
