#!/usr/bin/env bash
# Create .venv with everything lunar_recon needs on a machine with no ROS install.
# Idempotent: re-running with nothing changed only checks a stamp and exits.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.lunar_recon_setup
# The stamp covers every input of the set-up: when one changes, pip runs again.
want=$(cat scripts/setup.sh setup.py setup.cfg scripts/requirements.txt | sha256sum | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x "$VENV/bin/python" ]; then
  echo "lunar_recon: .venv is up to date"
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP="$VENV/bin/python -m pip --disable-pip-version-check -q"
# PyTorch first and pinned to the CPU build: a bare 'torch' requirement would
# otherwise pull the newest CUDA wheel and several GB of CUDA libraries.
$PIP install "torch==2.13.0"
# An older .venv has plain opencv: it and opencv-contrib both install cv2/, so remove it first.
$PIP uninstall -y opencv-python-headless opencv-python >/dev/null 2>&1 || true
$PIP install -r scripts/requirements.txt
# --no-deps for the project itself: its requirements are installed above, so
# nothing can replace the CPU torch.
$PIP install --no-deps --no-build-isolation --use-pep517 -e .
echo "$want" > "$STAMP"
echo "lunar_recon: .venv ready ($($VENV/bin/python -c 'import torch; print("torch", torch.__version__)'))"
