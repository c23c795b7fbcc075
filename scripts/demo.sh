#!/usr/bin/env bash
# The main job on an embedded default: sets up if needed, then
#  1. the codec alone: ultralytics' bundled bus.jpg and zidane.jpg through encode -> decode with the shipped
#     model, at roi weight 1 (uniform quality) and at a high roi weight: bytes, ROI PSNR and background PSNR side
#     by side, and an overlay PNG per image (ROI | roi weight 1 | high weight) at the printed path;
#  2. the ROS 2 pipeline: frame_source (the same bundled images) -> encoder_node -> decoder_node, printing per
#     frame bytes, bpp, bitrate, PSNR and the latency breakdown.
# The ROI of part 1 comes from the detector when weights are available ($ROI_CODEC_DETECTOR_WEIGHTS, or the team's
# development copy in ../shared), else from hand-placed boxes shipped with the package
# (roi_codec_ros/data/sample_rois.json), so a fresh machine shows the ROI too.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh > /tmp/roi_codec_setup.log 2>&1 || { cat /tmp/roi_codec_setup.log; exit 1; }
# shellcheck disable=SC1091
. scripts/env.sh
weights="${ROI_CODEC_DETECTOR_WEIGHTS:-$ROOT/../shared/models/yolov8n_coco.pt}"
detector=()
if [ -f "$weights" ]; then
  detector=(--detector "$weights")
else
  echo "(no detector weights: ROI from the hand-placed boxes of the sample images, no detector features)"
fi
echo "== codec: bundled images, encode -> decode, roi weight 1 vs ${DEMO_ROI_WEIGHT:-the model's maximum} =="
roi-codec demo --rates "${DEMO_RATES:-0.2,0.5}" ${DEMO_ROI_WEIGHT:+--roi-weight "$DEMO_ROI_WEIGHT"} \
  --out "${DEMO_OUT:-${TMPDIR:-/tmp}/roi_codec_demo}" "${detector[@]}"
echo
echo "== ROS 2 pipeline: frame_source -> encoder_node -> decoder_node =="
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$((RANDOM % 100 + 1))}"
roi-codec ros-demo --frames "${DEMO_FRAMES:-10}"
