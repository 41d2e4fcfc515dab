#!/bin/bash
# GRC as a user starts it (Debian's python, no env vars), on the installed example; F6 = Run.
# Writes editor.png, screen.png and run_window.png (docs/img/grc_loopback_running.png) into $OUT.
# GRC 3.10.5 shows the "xterm executable missing" dialog on the first Run where no terminal is
# installed (docs/gnuradio.md); the script dismisses it with Return.
mkdir -p "${OUT:-/tmp/grc-screenshot}/home"
set -u
REPO=$(cd "$(dirname "$0")/.." && pwd); cd "$REPO"
make install > ${OUT:-/tmp/grc-screenshot}/install.log 2>&1 || { echo install failed; tail ${OUT:-/tmp/grc-screenshot}/install.log; exit 1; }
.venv/bin/python -m sing.cli worker --bind tcp://127.0.0.1:5555 --jscc jscc-natural64-bcr1_48 \
   --prior prior-natural-64 --device cpu --threads 1 > ${OUT:-/tmp/grc-screenshot}/worker.log 2>&1 &
WPID=$!
Xvfb :78 -screen 0 1600x1000x24 > ${OUT:-/tmp/grc-screenshot}/xvfb.log 2>&1 &
XPID=$!
sleep 3
EX=/usr/local/share/gr-sing/examples/loopback_awgn.grc
ls -la $EX
cd ${OUT:-/tmp/grc-screenshot}
env -i HOME=$HOME PATH=/usr/local/bin:/usr/bin:/bin DISPLAY=:78 gnuradio-companion $EX > ${OUT:-/tmp/grc-screenshot}/grc.log 2>&1 &
GPID=$!
sleep 30
import -display :78 -window root ${OUT:-/tmp/grc-screenshot}/editor.png
W=$(DISPLAY=:78 xdotool search --onlyvisible --name "loopback_awgn" | head -1)
echo "editor window: $W"
DISPLAY=:78 xdotool windowfocus --sync $W; sleep 0.5; DISPLAY=:78 xdotool key F6; sleep 4; DISPLAY=:78 xdotool key Return
sleep ${WAIT:-100}
import -display :78 -window root ${OUT:-/tmp/grc-screenshot}/screen.png
R=$(DISPLAY=:78 xdotool search --name "SING loopback" | head -1)
echo "run window: $R"; DISPLAY=:78 xdotool getwindowgeometry $R
import -display :78 -window $R ${OUT:-/tmp/grc-screenshot}/run_window.png
for c in $(pgrep -P $GPID); do pkill -P $c; kill $c; done; sleep 1; kill $GPID
kill $WPID $XPID
cd "$REPO" && make uninstall
