#!/usr/bin/env bash
# Makes the shipped default models with lunar_recon's own commands only, recording every
# command and seed in runs/default/commands.log.  CPU budget: well under an hour on 2 cores.
#   1. simulate training data (descent preset)   2. train a lunar teacher (MASt3R trunk) on ground truth
#   3. cache the teacher                          4. distil the default student with the full recipe
#   5. copy the student + model card into lunar_recon/models/shipped/
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
RUN=runs/default
mkdir -p "$RUN"
LOG="$RUN/commands.log"
run() { echo "+ $*" | tee -a "$LOG"; "$@"; }
echo "# $(date -u +%FT%TZ) lunar_recon $(git rev-parse --short HEAD 2>/dev/null || echo '?')" >> "$LOG"
# Training pairs at the student's network size (4:3, like the node's 512x384 input); the test
# pairs at the node's input size, so the evaluation runs exactly what the node runs.
run $BIN/lunar-recon simulate --preset descent --pairs ${PAIRS:-320} --seed 2026 --width 256 --height 192 \
    --out "$RUN/data"
run $BIN/lunar-recon simulate --preset descent --pairs ${TEST_PAIRS:-24} --seed 4242 --width 512 --height 384 \
    --only-split test --out "$RUN/test_data"
# Calibration pairs (validation split, own seed): the student's disparity precision for the
# hazard map's noise model is measured here, never on the test pairs it is judged on.
run $BIN/lunar-recon simulate --preset descent --pairs ${CAL_PAIRS:-12} --seed 4343 --width 512 --height 384 \
    --only-split val --out "$RUN/calibration_data"
run $BIN/lunar-recon distill --config configs/teacher_lunar_cpu.yaml --resume
run $BIN/lunar-recon cache --teacher "$RUN/teacher/best.pt" --data "$RUN/data" --out "$RUN/cache" --size 256 \
    --features view1.enc_out view1.dec_block.02 --rank 32
run $BIN/lunar-recon distill --config configs/student_nano.yaml --resume
run $BIN/python scripts/ship_model.py "$RUN/student/best.pt" --teacher "$RUN/teacher/best.pt" \
    --test-data "$RUN/test_data" --calibration-data "$RUN/calibration_data" --commands "$LOG" --size 256 \
    --scale-mode stereo_local
