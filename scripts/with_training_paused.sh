#!/bin/bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Run a command with every background `sing train-prior`/`train-inn` process paused (SIGSTOP),
# resuming them (SIGCONT) when the command ends, however it ends. For timing benchmarks on a
# machine that is also training: `scripts/with_training_paused.sh .venv/bin/python sim/bench_ofdm.py`
pids=$(pgrep -f "sing.cli train-(prior|inn)|sing train-(prior|inn)" | tr '\n' ' ')
resume() { [ -n "$pids" ] && kill -CONT $pids 2>/dev/null; }
trap resume EXIT INT TERM
[ -n "$pids" ] && kill -STOP $pids && echo "[paused training: $pids]" >&2
"$@"
