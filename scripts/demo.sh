#!/usr/bin/env bash
# The main job, end to end on this machine: simulate a lunar descent as a rosbag2, start
# stereo_node on the shipped default model, replay the bag into it live over ROS 2 (Fast DDS,
# localhost only), score what it publishes against the ground truth and write a report.
#   scripts/demo.sh [OUT]        (default OUT: runs/demo; report in OUT/report/report.md)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/demo}
BIN=${LUNAR_RECON_BIN:-.venv/bin}  # the environment holding lunar-recon and stereo_node
MARK=.lunar_recon_demo
# Delete only what an earlier demo wrote: a folder holding its mark, or an empty one.
if [ -e "$OUT" ]; then
  if [ ! -d "$OUT" ]; then
    echo "demo.sh: $OUT exists and is not a folder; refusing to replace it" >&2; exit 2
  elif [ -f "$OUT/$MARK" ]; then
    rm -rf "$OUT"
  elif [ -n "$(ls -A "$OUT")" ]; then
    echo "demo.sh: $OUT is not empty and not a previous demo's output (no $MARK); refusing to delete it" >&2
    exit 2
  fi
fi
mkdir -p "$OUT"
touch "$OUT/$MARK"
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-$((RANDOM % 100 + 100))}

echo "== 1/4 simulate a descent sequence (80 m -> 20 m, 2 m baseline)"
$BIN/lunar-recon simulate --sequence descent --frames 12 --seed 7 --width 512 --height 384 --out "$OUT/descent_bag"

echo "== 2/4 start stereo_node on the default model"
$BIN/stereo_node --ros-args -p model:=default -p hazard.resolution_m:=0.5 > "$OUT/stereo_node.log" 2>&1 &
NODE=$!
trap 'kill $NODE 2>/dev/null || true; wait $NODE 2>/dev/null || true' EXIT

echo "== 3/4 replay the bag live into the node and evaluate"
$BIN/lunar-recon evaluate-bag "$OUT/descent_bag" --live --speed 0.5 --hazard-resolution 0.5 --out "$OUT/report"
kill $NODE 2>/dev/null || true; wait $NODE 2>/dev/null || true

echo "== 4/4 the same bag offline: the default model beside SGBM and the ideal matcher"
$BIN/lunar-recon evaluate-bag "$OUT/descent_bag" --model default --hazard-resolution 0.5 --figures 3 --out "$OUT/report_offline"
echo "report: $OUT/report/report.md (live), $OUT/report_offline/report.md (offline, with references)"
