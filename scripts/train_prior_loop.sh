#!/bin/bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Supervisor: re-runs `sing train-prior "$@"` until it exits 0 (it resumes from its checkpoints).
# Usage: scripts/train_prior_loop.sh --data fmnist --out runs/prior-fmnist-32 --export models/prior-fmnist-32 --steps 30000 --batch 32 --unet-preset base --threads 1
cd "$(dirname "$0")/.."
# one OpenMP thread per torch thread asked for (--threads N), 1 by default
threads=1; prev=""
for a in "$@"; do [ "$prev" = "--threads" ] && threads="$a"; prev="$a"; done
export OMP_NUM_THREADS="$threads"
for i in $(seq 1 100); do
  echo "=== start $i $(date -Is) ==="
  .venv/bin/python -m sing.cli train-prior "$@" && exit 0
  echo "=== exited rc=$? $(date -Is); restarting in 60 s ==="
  sleep 60
done
