#!/usr/bin/env bash
# The main job on an embedded default: sets up if needed, then
#  1. the codec alone: ultralytics' bundled bus.jpg and zidane.jpg through encode -> decode with the shipped
#     model (bytes, bpp, PSNR, latency per image and rate);
#  2. the ROS 2 pipeline: frame_source (the same bundled images) -> encoder_node -> decoder_node, printing per
#     frame bytes, bpp, bitrate, PSNR and the latency breakdown.
# Detector weights are used when available ($ROI_CODEC_DETECTOR_WEIGHTS or ../shared/models/yolov8n_coco.pt);
# without them both parts run detector-free (uniform quality) and say so.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh > /tmp/roi_codec_setup.log 2>&1 || { cat /tmp/roi_codec_setup.log; exit 1; }
# shellcheck disable=SC1091
. scripts/env.sh
weights="${ROI_CODEC_DETECTOR_WEIGHTS:-$ROOT/../shared/models/yolov8n_coco.pt}"
detector=()
if [ -f "$weights" ]; then detector=(--detector "$weights" --roi-weight 8); else echo "(no detector weights: running detector-free)"; fi
echo "== codec: bundled images, encode -> decode =="
roi-codec demo --rates 0.2,0.5,0.8 "${detector[@]}"
echo
echo "== ROS 2 pipeline: frame_source -> encoder_node -> decoder_node =="
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$((RANDOM % 100 + 1))}"
roi-codec ros-demo --frames "${DEMO_FRAMES:-10}"
