#!/bin/bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Regenerate docs/img/grc_loopback_awgn.png: open flowgraphs/loopback_awgn.grc in GNU Radio Companion
# on a virtual screen (Xvfb), wait for the window, grab the screen (ImageMagick), crop to the window.
# Needs: xvfb, imagemagick, gnuradio (scripts/setup.sh installs them) and the blocks installed or
# GRC_BLOCKS_PATH pointing at sing_blocks/grc (set here).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-docs/img/grc_loopback_awgn.png}
export GRC_BLOCKS_PATH="$PWD/sing_blocks/grc${GRC_BLOCKS_PATH:+:$GRC_BLOCKS_PATH}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
prefs=$(mktemp -d)
trap 'rm -rf "$prefs"' EXIT
printf '[main]\nmain_window_width = 1720\nmain_window_height = 900\nconsole_window_position = 700\nblocks_window_position = 1520\n' > "$prefs/grc.conf"
export GRC_PREFS_PATH="$prefs/grc.conf"     # a window big enough for the whole flowgraph
xvfb-run -a -s "-screen 0 1920x1080x24" bash -c '
  gnuradio-companion flowgraphs/loopback_awgn.grc >/tmp/grc_shot.log 2>&1 &
  pid=$!
  for i in $(seq 1 60); do
    sleep 1
    if xwininfo -root -tree 2>/dev/null | grep -q "loopback_awgn"; then break; fi
  done
  sleep 4
  import -window root "'"$out"'"
  kill $pid 2>/dev/null || true
'
convert "$out" -trim +repage "$out"
echo "wrote $out"
