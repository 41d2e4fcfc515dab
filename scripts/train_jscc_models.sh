#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# The recipe of the shipped DeepJSCC models (models/jscc-*). Each command resumes if interrupted.
# Usage: scripts/train_jscc_models.sh A|B   (two chains that can run side by side, one thread each)
set -euo pipefail
cd "$(dirname "$0")/.."
S="${PY:-.venv/bin/python} -m sing.cli train-jscc --threads 1 --no-progress"
case "${1:-A}" in
A)
  $S --data natural --bcr 1/48 --out models/jscc-natural64-bcr1_48 --steps 3000 --batch 32
  $S --data natural --bcr 1/48 --out models/jscc-natural64-bcr1_48-perceptual --steps 800 --batch 32 \
     --lr 3e-4 --lpips-weight 0.1 --init-from models/jscc-natural64-bcr1_48
  ;;
B)
  $S --data fmnist --bcr 1/48 --out models/jscc-fmnist32-bcr1_48 --steps 2500 --batch 64
  $S --data fmnist --bcr 1/12 --out models/jscc-fmnist32-bcr1_12 --steps 2500 --batch 64
  $S --data natural --bcr 1/12 --out models/jscc-natural64-bcr1_12 --steps 2500 --batch 32
  $S --data natural --bcr 1/24 --out models/jscc-natural64-bcr1_24 --steps 2500 --batch 32
  ;;
esac
