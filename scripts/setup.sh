#!/usr/bin/env bash
# One-command setup for a fresh Debian/Ubuntu x86_64 machine with Python 3.11 and no ROS (the pip-only setup):
#   creates .venv, installs the pinned dependencies (requirements.lock = requirements/python.txt:
#   PyTorch/CompressAI/ultralytics/PyAV/... + requirements/ros-kilted.txt: ROS 2 Kilted from the ros-kilted-* PyPI
#   wheels, colcon), builds our ROS package into the venv (scripts/build_msgs.sh), installs this package
#   (editable) and the development tools roi-launch/roi-param (dev/roi_codec_devtools, editable).
# Idempotent: a second run only checks (stamps keyed by the requirements files / setup.py / pyproject.toml
# hashes). Fails loudly with the step that broke.  Not for a colcon workspace over an apt ROS (README).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
STEP="start"
trap 'echo "setup.sh: FAILED at step: $STEP" >&2' ERR
step() { STEP="$1"; echo "[setup] $1"; }

PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3
step "check Python ($PYTHON)"
"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), f"Python 3.11 required (ROS Kilted wheels are cp311), found {sys.version.split()[0]}"'

if [ ! -x .venv/bin/python ]; then
  step "create virtual environment .venv"
  "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip wheel setuptools
else
  step "virtual environment .venv exists"
fi
PIP=(.venv/bin/python -m pip)
# One setup at a time per venv (two shells running test.sh would otherwise pip-install into it concurrently).
exec 8>.venv/.roi_codec_setup.lock
flock 8

lock_hash="$(cat requirements.lock requirements/python.txt requirements/ros-kilted.txt | sha256sum | cut -c1-16)"
stamp=.venv/.roi_codec_lock
if [ "$(cat "$stamp" 2>/dev/null)" != "$lock_hash" ]; then
  step "install pinned dependencies from requirements.lock (requirements/*.txt; torch 2.14.1 is large: a few minutes)"
  "${PIP[@]}" install --quiet --disable-pip-version-check -r requirements.lock
  echo "$lock_hash" > "$stamp"
else
  step "pinned dependencies already installed (requirements.lock unchanged)"
fi

step "build ROS 2 messages into the venv (scripts/build_msgs.sh)"
bash scripts/build_msgs.sh

pkg_hash="$(cat setup.py dev/roi_codec_devtools/pyproject.toml | sha256sum | cut -c1-16)"
pkg_stamp=.venv/.roi_codec_pkg
if [ "$(cat "$pkg_stamp" 2>/dev/null)" != "$pkg_hash" ] || [ ! -x .venv/bin/roi-codec ] || [ ! -x .venv/bin/roi-launch ]; then
  step "install roi_codec_ros (editable) and its console scripts"
  "${PIP[@]}" install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
  # pip-only development tools (ros2 launch / ros2 param stand-ins): not part of the ROS package
  step "install the development tools roi-launch/roi-param (dev/roi_codec_devtools, editable)"
  "${PIP[@]}" install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e dev/roi_codec_devtools
  echo "$pkg_hash" > "$pkg_stamp"
else
  step "roi_codec_ros and roi_codec_devtools already installed"
fi

step "check imports (codec core, detector, ROS runtime, our messages)"
# shellcheck disable=SC1091
. scripts/env.sh
python - <<'PY'
from roi_codec_ros.codec import RoiCodec  # noqa: F401  (first: it filters a CompressAI import warning)
import compressai, torch, ultralytics, av, rosbags  # noqa: F401
import rclpy, sensor_msgs.msg  # noqa: F401
from roi_codec_ros.msg import EncodedFrame  # noqa: F401
import roi_codec_devtools.launch_runner, roi_codec_devtools.param_cli  # noqa: F401
print(f"[setup] ok: torch {torch.__version__}, compressai {compressai.__version__}, ultralytics {ultralytics.__version__}, av {av.__version__}")
PY
echo "[setup] done. Use: . scripts/env.sh   (activates .venv and sets the ROS/YOLO environment)"
