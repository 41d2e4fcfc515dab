# SPDX-License-Identifier: GPL-3.0-or-later
"""Does GNU Radio Companion know every SING block a flowgraph uses?

GRC does not refuse a flowgraph whose block definition (.block.yml) it cannot find: it shows a red
"Missing Block", and Run / `grcc` generate and run code without that block (docs/gnuradio.md,
"Troubleshooting first contact"). This loads GRC's block library exactly as GRC and grcc do (same
preferences, same block paths) and names what is missing and the fix:

    python3 -m gnuradio.sing.grc_check [FLOWGRAPH.grc ...]     # none: every installed example

Exit status 0 when every SING block is known, 1 otherwise.
"""
from __future__ import annotations

import sys
from pathlib import Path

import yaml


def grc_blocks() -> tuple[set[str], list[str]]:
    """(block ids GRC knows, its block paths), built the way grcc builds them."""
    from gnuradio import gr
    from gnuradio.grc.core import Messages
    from gnuradio.grc.core.platform import Platform
    Messages.register_messenger(lambda _m: None)          # keep GRC's loading chatter quiet
    p = Platform(name="GNU Radio Companion Compiler", prefs=gr.prefs(), version=gr.version(),
                 version_parts=(gr.major_version(), gr.api_version(), gr.minor_version()))
    p.build_library()
    return set(p.blocks), list(p.config.block_paths)


def sing_block_ids(grc: str | Path) -> set[str]:
    data = yaml.safe_load(Path(grc).read_text())
    return {b["id"] for b in data.get("blocks", []) if str(b.get("id", "")).startswith("sing_")}


def installed_examples() -> list[Path]:
    here = Path(__file__).resolve()
    for up in here.parents:
        d = up / "share" / "gr-sing" / "examples"
        if d.is_dir():
            return sorted(d.glob("*.grc"))
    return []


def check(files: list[str | Path]) -> list[str]:
    """One line per flowgraph with a SING block GRC does not know (empty: all known)."""
    known, paths = grc_blocks()
    problems = []
    for f in files:
        missing = sorted(sing_block_ids(f) - known)
        if missing:
            problems.append(
                f"{f}: GRC has no definition of {', '.join(missing)} (looked in "
                f"{', '.join(paths)}), so Run would generate code without "
                f"{'it' if len(missing) == 1 else 'them'}. Fix: `make install` in the gr-sing "
                f"checkout (installs sing_*.block.yml to <prefix>/share/gnuradio/grc/blocks), or "
                f"add the checkout's sing_blocks/grc to GRC_BLOCKS_PATH")
    return problems


def main(argv: list[str] | None = None) -> int:
    files = list(argv if argv is not None else sys.argv[1:]) or installed_examples()
    if not files:
        print("no flowgraph given and no installed examples found", file=sys.stderr)
        return 2
    problems = check(files)
    for line in problems:
        print(line, file=sys.stderr)
    if not problems:
        print(f"ok: GRC knows every SING block of {len(files)} flowgraph(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
