# SPDX-License-Identifier: GPL-3.0-or-later
"""Does GNU Radio Companion know every SING block a flowgraph uses?

GRC does not refuse a flowgraph whose block definition (.block.yml) it cannot find: it shows a red
"Missing Block", and Run / `grcc` generate and run code without that block (docs/gnuradio.md,
"Troubleshooting first contact"). This loads GRC's block library exactly as GRC and grcc do (same
preferences, same block paths) and names what is missing and the fix:

    python3 -m gnuradio.sing.grc_check [FLOWGRAPH.grc ...]     # none: every installed example

Exit status 0 when every SING block is known, 1 otherwise.

The same check runs when a shipped example starts: each .grc holds a Python Snippet block
(``sing_check``, section "Main - After Init") that calls ``require_blocks(self, [ids])`` with the
SING blocks the .grc uses, so a flowgraph generated without one of them stops with one message
(the block, where GRC looked, the fix) and exit status 1 instead of running without it.
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


FIX = ("Fix: `make install` in the gr-sing checkout (installs sing_*.block.yml to "
       "<prefix>/share/gnuradio/grc/blocks), or add the checkout's sing_blocks/grc to GRC_BLOCKS_PATH")


def missing_message(where: str, missing: list[str], paths: list[str], ran: bool = False) -> str:
    """The one message for SING blocks GRC has no definition of: which, where GRC looked, the fix."""
    them = "it" if len(missing) == 1 else "them"
    return (f"{where}: GRC has no definition of {', '.join(missing)} (looked in {', '.join(paths)}), "
            f"so {'this flowgraph was generated' if ran else 'Run would generate code'} without "
            f"{them}. {FIX}")


def check(files: list[str | Path]) -> list[str]:
    """One line per flowgraph with a SING block GRC does not know (empty: all known)."""
    known, paths = grc_blocks()
    problems = []
    for f in files:
        missing = sorted(sing_block_ids(f) - known)
        if missing:
            problems.append(missing_message(str(f), missing, paths))
    return problems


def present_sing_blocks(tb) -> set[str]:
    """Block ids of the SING blocks a generated flowgraph made (``self.x = sing.<class>(…)``;
    a block's id is ``sing_<class>``, ``sing_receiver`` being its own class name)."""
    names = {type(o).__name__ for o in vars(tb).values() if type(o).__module__.startswith("gnuradio.sing.")}
    return {c if c.startswith("sing_") else "sing_" + c for c in names}


def require_blocks(tb, expected: list[str] | str) -> None:
    """Called by each shipped example's ``sing_check`` snippet right after the flowgraph is built:
    if a SING block of the .grc is not in it because GRC had no definition of it, print one message
    (the blocks, where GRC looked, the fix) and exit with status 1. Costs nothing when all are
    there; a block that GRC knows but that is absent (disabled or deleted on purpose) gets a note."""
    expected = expected.split() if isinstance(expected, str) else list(expected)
    missing = sorted(set(expected) - present_sing_blocks(tb))
    if not missing:
        return
    try:
        known, paths = grc_blocks()
    except Exception as e:                      # GRC itself not importable: still say what to do
        known, paths = set(), [f"(GRC's block library did not load: {e})"]
    unknown = [b for b in missing if b not in known]
    if not unknown:
        print(f"note: {type(tb).__name__} runs without {', '.join(missing)} (disabled or removed; "
              f"remove {'it' if len(missing) == 1 else 'them'} from the sing_check snippet to "
              f"silence this)", file=sys.stderr, flush=True)
        return
    raise SystemExit(missing_message(type(tb).__name__, unknown, paths, ran=True))


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
