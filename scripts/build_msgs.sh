#!/usr/bin/env bash
# Build the roi_codec_ros ROS 2 message package into the project venv (pip-only setup, no ROS install).
#
#   bash scripts/build_msgs.sh            # build if msg/, CMakeLists.txt, ... changed, else only check
#   bash scripts/build_msgs.sh --force    # rebuild from scratch
#
# Steps (each prints what it does; any failure stops the script with the step that broke):
#   1. rewrite the include paths that the ros-kilted-* wheels hard-code (/opt/python/cp311-cp311/...) in
#      their CMake export files to this venv's Python and numpy include directories (idempotent, always run);
#   2. configure/build/install CMakeLists.txt with -DROI_CODEC_INSTALL_PYTHON_PACKAGE=OFF into
#      $VIRTUAL_ENV/opt/roi_codec_ros (messages, node executables, launch/, config/), skipped when the hash
#      of the inputs matches the stamp of the last successful build;
#   3. make the generated Python module importable as roi_codec_ros.msg next to the pip-installed package
#      (site-packages/roi_codec_ros_msgs.pth + a small import hook, see below);
#   4. check: serialize/deserialize an EncodedFrame in a fresh interpreter.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FORCE=0
case "${1:-}" in
  --force) FORCE=1 ;;
  "") ;;
  *) echo "usage: bash scripts/build_msgs.sh [--force]" >&2; exit 2 ;;
esac

STEP="setup"
trap 'echo "build_msgs.sh: FAILED at step: $STEP" >&2' ERR
step() { STEP="$1"; echo "[build_msgs] $1"; }

step "activate environment (scripts/env.sh)"
if [ ! -x "$ROOT/.venv/bin/python" ]; then
  echo "build_msgs.sh: no venv at $ROOT/.venv (run scripts/setup.sh first)" >&2; exit 1
fi
# shellcheck disable=SC1091
. "$ROOT/scripts/env.sh"
PY="$VIRTUAL_ENV/bin/python"
PREFIX="$VIRTUAL_ENV/opt/roi_codec_ros"
BUILD_DIR="$VIRTUAL_ENV/opt/.roi_codec_ros-build"
STAMP="$PREFIX/.build_stamp"
# Python dir inside the prefix: deliberately NOT on sys.path (see step 3).
PY_INSTALL_DIR="python"
for tool in cmake c++ cc; do
  command -v "$tool" >/dev/null || { echo "build_msgs.sh: '$tool' not found (Debian/Ubuntu: apt-get install build-essential)" >&2; exit 1; }
done

step "check the ROS 2 build tools in the venv"
for pkg in ament_cmake rosidl_default_generators rosidl_core_generators rosidl_generator_py std_msgs; do
  [ -d "$VIRTUAL_ENV/share/$pkg/cmake" ] || {
    echo "build_msgs.sh: $pkg is not installed in the venv (pip package ros-kilted-${pkg//_/-}; it must be in requirements.lock)" >&2
    exit 1; }
done

step "query Python/numpy/ROS wheel locations"
read -r SITE PY_INCLUDE NP_INCLUDE VERSIONS < <("$PY" - <<'EOF'
import importlib.metadata as md, sysconfig, numpy
versions = ",".join(f"{d}={md.version(d)}" for d in ("numpy", "rosidl_generator_py", "ros-kilted-rclpy"))
print(sysconfig.get_paths()["purelib"], sysconfig.get_paths()["include"], numpy.get_include(), versions)
EOF
)
[ -f "$PY_INCLUDE/Python.h" ] || { echo "build_msgs.sh: Python.h missing in $PY_INCLUDE (install the Python dev headers)" >&2; exit 1; }

step "rewrite hard-coded include paths in the ROS wheels' CMake exports -> $PY_INCLUDE;$NP_INCLUDE"
WANT="  INTERFACE_INCLUDE_DIRECTORIES \"$PY_INCLUDE;$NP_INCLUDE\""
changed=0; total=0
for f in "$VIRTUAL_ENV"/share/*/cmake/export_*__rosidl_generator_pyExport.cmake; do
  [ -f "$f" ] || continue
  total=$((total + 1))
  if ! grep -qxF "$WANT" "$f"; then
    sed -i "s|^  INTERFACE_INCLUDE_DIRECTORIES \".*\"\$|$WANT|" "$f"
    grep -qxF "$WANT" "$f" || { echo "build_msgs.sh: could not rewrite $f" >&2; exit 1; }
    changed=$((changed + 1))
  fi
done
[ "$total" -gt 0 ] || { echo "build_msgs.sh: no rosidl_generator_py CMake exports under $VIRTUAL_ENV/share (ros-kilted-* wheels missing?)" >&2; exit 1; }
echo "  $changed of $total export files rewritten ($((total - changed)) already correct)"

step "hash build inputs"
INPUT_HASH="$(
  cd "$ROOT"
  { printf '%s\n' "$VERSIONS" "$PY" "$PY_INCLUDE" "$NP_INCLUDE"
    for f in CMakeLists.txt package.xml scripts/build_msgs.sh msg/* launch/* config/*; do
      if [ -f "$f" ]; then echo "== $f"; cat "$f"; fi
    done
  } | sha256sum | cut -d' ' -f1
)"

if [ "$FORCE" = 0 ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$INPUT_HASH" ]; then
  echo "[build_msgs] inputs unchanged since the last build ($PREFIX), skipping the build"
else
  step "stage sources and configure CMake ($BUILD_DIR)"
  rm -rf "$BUILD_DIR"; mkdir -p "$BUILD_DIR/src"
  # CMake refuses exported include dirs inside the source tree, and the venv's numpy include dir is
  # inside the repo: configure a staged copy of the inputs instead of the repo itself.
  cp -r "$ROOT/CMakeLists.txt" "$ROOT/package.xml" "$ROOT/msg" "$ROOT/launch" "$ROOT/config" "$BUILD_DIR/src/"
  GENERATOR=()
  command -v ninja >/dev/null && GENERATOR=(-G Ninja)
  # ament/rosidl look up the wheels' packages (typesupports, rmw) through the ament index in $VIRTUAL_ENV.
  AMENT_PREFIX_PATH="$VIRTUAL_ENV" cmake -S "$BUILD_DIR/src" -B "$BUILD_DIR/build" "${GENERATOR[@]}" \
    -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_INSTALL_PREFIX="$PREFIX" \
    -DCMAKE_INSTALL_RPATH="$PREFIX/lib" \
    -DCMAKE_PREFIX_PATH="$VIRTUAL_ENV" \
    -DPython3_EXECUTABLE="$PY" \
    -DPython3_FIND_VIRTUALENV=ONLY \
    -DPYTHON_INSTALL_DIR="$PY_INSTALL_DIR" \
    -DROI_CODEC_INSTALL_PYTHON_PACKAGE=OFF \
    -DBUILD_TESTING=OFF \
    > "$BUILD_DIR/configure.log" 2>&1 || { tail -40 "$BUILD_DIR/configure.log" >&2; echo "full log: $BUILD_DIR/configure.log" >&2; false; }

  step "build messages (cmake --build, $(nproc) jobs)"
  AMENT_PREFIX_PATH="$VIRTUAL_ENV" cmake --build "$BUILD_DIR/build" -j "$(nproc)" \
    > "$BUILD_DIR/build.log" 2>&1 || { tail -40 "$BUILD_DIR/build.log" >&2; echo "full log: $BUILD_DIR/build.log" >&2; false; }

  step "install into $PREFIX"
  rm -rf "$PREFIX"
  cmake --install "$BUILD_DIR/build" > "$BUILD_DIR/install.log" 2>&1 \
    || { tail -40 "$BUILD_DIR/install.log" >&2; false; }
  echo "$INPUT_HASH" > "$STAMP"
fi

step "make roi_codec_ros.msg importable (site-packages/roi_codec_ros_msgs.pth)"
# Why not simply put $PREFIX/python on sys.path: that directory holds a (generated, empty)
# roi_codec_ros/__init__.py, and sys.path entries win over the meta-path finder of an editable pip
# install, so it would shadow the real package.  Instead a tiny finder, appended to sys.meta_path, is
# asked only for roi_codec_ros.<name> modules nobody else found (msg and the type-support extensions).
MSG_DIR="$PREFIX/$PY_INSTALL_DIR/roi_codec_ros"
[ -d "$MSG_DIR/msg" ] || { echo "build_msgs.sh: $MSG_DIR/msg missing after install" >&2; exit 1; }
cat > "$SITE/_roi_codec_ros_msgs.py" <<EOF
"""Generated by scripts/build_msgs.sh: find roi_codec_ros.msg in the message prefix of this venv.

Like the ROS wheels' own bootstrapper (ros_wheels_bootstrapper.pth, which runs after this file and re-executes
Python with the environment below), it also appends the prefix to LD_LIBRARY_PATH (rosidl locates type-support
libraries through it) and AMENT_PREFIX_PATH, so the messages work without sourcing scripts/env.sh.
"""
import os
import sys
from importlib.machinery import PathFinder

PREFIX = "$PREFIX"
MSG_DIR = "$MSG_DIR"


class RoiCodecMsgFinder:
    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        if fullname.startswith("roi_codec_ros.") and fullname.count(".") == 1:
            return PathFinder.find_spec(fullname, [MSG_DIR])
        return None


def _append(name, path):
    # appended: a workspace the user sourced (colcon install/setup.bash) keeps precedence
    parts = [p for p in os.environ.get(name, "").split(os.pathsep) if p]
    if path not in parts:
        os.environ[name] = os.pathsep.join(parts + [path])


def install():
    if RoiCodecMsgFinder not in sys.meta_path:
        sys.meta_path.append(RoiCodecMsgFinder)
    _append("LD_LIBRARY_PATH", os.path.join(PREFIX, "lib"))
    _append("AMENT_PREFIX_PATH", PREFIX)
EOF
echo "import _roi_codec_ros_msgs; _roi_codec_ros_msgs.install()" > "$SITE/roi_codec_ros_msgs.pth"

step "check: roi_codec_ros.msg.EncodedFrame round trip in a fresh interpreter"
# ROOT first on sys.path: setup.sh runs this before the package itself is pip-installed
ROI_CODEC_ROOT="$ROOT" "$PY" - <<'EOF'
import os, sys
sys.path.insert(0, os.environ["ROI_CODEC_ROOT"])
import numpy as np
from rclpy.serialization import deserialize_message, serialize_message
from roi_codec_ros.msg import EncodedFrame, RoiBox

frame = EncodedFrame(codec_id="check", height=2, width=3, data=np.arange(7, dtype=np.uint8).tobytes(),
                     boxes=[RoiBox(x1=1.0, y1=2.0, x2=3.0, y2=4.0, class_id=2, class_name="car", score=0.5)])
back = deserialize_message(serialize_message(frame), EncodedFrame)
assert bytes(back.data) == bytes(range(7)) and back.boxes[0].class_name == "car", back
print("  ok: roi_codec_ros.msg from", EncodedFrame.__module__.rsplit(".", 1)[0])
EOF
echo "[build_msgs] done: prefix $PREFIX (on AMENT_PREFIX_PATH via scripts/env.sh)"
