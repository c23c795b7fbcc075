#!/usr/bin/env bash
# Build the roi_codec_ros ROS 2 package (messages, node executables, launch/, config/) into the project venv
# (pip-only setup, no ROS install).  docs/packaging.md explains the layout.
#
#   bash scripts/build_msgs.sh            # build if msg/, CMakeLists.txt, ... changed, else only check
#   bash scripts/build_msgs.sh --force    # rebuild from scratch
#
# Steps (each prints what it does; any failure stops the script with the step that broke):
#   1. rewrite the include paths that the ros-kilted-* wheels hard-code (/opt/python/cp311-cp311/...) in
#      their CMake export files to this venv's Python and numpy include directories (idempotent, always run);
#   2. configure/build/install CMakeLists.txt with -DROI_CODEC_INSTALL_PYTHON_PACKAGE=OFF into the venv itself,
#      the prefix the ROS wheels use ($VIRTUAL_ENV/{lib,share,include}), skipped when the hash of the inputs
#      matches the stamp of the last successful build; the files of the previous build are removed first;
#   3. make the generated Python module importable as roi_codec_ros.msg next to the pip-installed package:
#      one line in site-packages/roi_codec_ros.pkg (read by pkgutil.extend_path in roi_codec_ros/__init__.py);
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
# One build at a time per venv: a second one (another shell's setup.sh/test.sh) waits instead of deleting the
# build tree under the first.
exec 9>"$VIRTUAL_ENV/.roi_codec_ros-build.lock"
flock 9
# The venv is the ROS prefix: the wheels' packages live in $VIRTUAL_ENV/{lib,share}, and their bootstrapper
# (ros_wheels_bootstrapper.pth) puts $VIRTUAL_ENV/lib on LD_LIBRARY_PATH, where rosidl dlopen()s the
# type-support libraries by name.  Installing beside them needs no LD_LIBRARY_PATH or AMENT_PREFIX_PATH entry of
# its own (scripts/env.sh puts $VIRTUAL_ENV on AMENT_PREFIX_PATH for the wheels' packages anyway).
PREFIX="$VIRTUAL_ENV"
BUILD_DIR="$VIRTUAL_ENV/.roi_codec_ros-build"
STAMP="$VIRTUAL_ENV/.roi_codec_ros-build.stamp"
MANIFEST="$VIRTUAL_ENV/.roi_codec_ros-install_manifest.txt"
# Python dir of the generated module, relative to the prefix: deliberately NOT on sys.path (see step 3).
PY_INSTALL_DIR="lib/roi_codec_ros_rosidl_py"
for tool in cmake c++ cc; do
  command -v "$tool" >/dev/null || { echo "build_msgs.sh: '$tool' not found (Debian/Ubuntu: apt-get install build-essential)" >&2; exit 1; }
done

step "check the ROS 2 build tools in the venv"
for pkg in ament_cmake rosidl_default_generators rosidl_core_generators rosidl_generator_py std_msgs; do
  [ -d "$VIRTUAL_ENV/share/$pkg/cmake" ] || {
    echo "build_msgs.sh: $pkg is not installed in the venv (pip package ros-kilted-${pkg//_/-}; it must be in requirements/ros-kilted.txt)" >&2
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
  case "$f" in "$VIRTUAL_ENV/share/roi_codec_ros/"*) continue ;; esac  # ours: generated with the right paths
  total=$((total + 1))
  if ! grep -qxF "$WANT" "$f"; then
    sed -i "s|^  INTERFACE_INCLUDE_DIRECTORIES \".*\"\$|$WANT|" "$f"
    grep -qxF "$WANT" "$f" || { echo "build_msgs.sh: could not rewrite $f" >&2; exit 1; }
    changed=$((changed + 1))
  fi
done
[ "$total" -gt 0 ] || { echo "build_msgs.sh: no rosidl_generator_py CMake exports under $VIRTUAL_ENV/share (ros-kilted-* wheels missing?)" >&2; exit 1; }
echo "  $changed of $total export files rewritten ($((total - changed)) already correct)"

step "remove the layout of earlier versions of this script (\$VIRTUAL_ENV/opt/roi_codec_ros, import finder)"
# Until 2026-12 the package was built into $VIRTUAL_ENV/opt/roi_codec_ros and found through a generated
# meta-path finder; left in place, that finder would still serve a stale roi_codec_ros.msg.
rm -rf "$VIRTUAL_ENV/opt/roi_codec_ros" "$VIRTUAL_ENV/opt/.roi_codec_ros-build"
rm -f "$SITE/_roi_codec_ros_msgs.py" "$SITE/roi_codec_ros_msgs.pth"

step "hash build inputs"
INPUT_HASH="$(
  cd "$ROOT"
  { printf '%s\n' "$VERSIONS" "$PY" "$PY_INCLUDE" "$NP_INCLUDE"
    for f in CMakeLists.txt package.xml scripts/build_msgs.sh msg/* launch/* config/*; do
      if [ -f "$f" ]; then echo "== $f"; cat "$f"; fi
    done
  } | sha256sum | cut -d' ' -f1
)"

if [ "$FORCE" = 0 ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$INPUT_HASH" ] && [ -f "$MANIFEST" ]; then
  echo "[build_msgs] inputs unchanged since the last build, skipping the build"
else
  step "stage sources and configure CMake ($BUILD_DIR)"
  rm -rf "$BUILD_DIR"; mkdir -p "$BUILD_DIR/src"
  # CMake refuses exported include dirs inside the source tree, and the venv's numpy include dir is
  # inside the repo: configure a staged copy of the inputs instead of the repo itself.
  cp -r "$ROOT/CMakeLists.txt" "$ROOT/package.xml" "$ROOT/msg" "$ROOT/launch" "$ROOT/config" "$BUILD_DIR/src/"
  GENERATOR=()
  command -v ninja >/dev/null && GENERATOR=(-G Ninja)
  # ament/rosidl find the wheels' packages (typesupports, rmw) through the ament index of the venv only: a
  # workspace sourced in this shell must not leak into the venv's build.
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

  step "remove the files of the previous build (a message removed from msg/ must not linger)"
  if [ -f "$MANIFEST" ]; then
    # only files below the venv: the manifest is ours, but a damaged one must not delete anything else
    grep "^$VIRTUAL_ENV/" "$MANIFEST" | while IFS= read -r f; do rm -f "$f"; done
  fi
  rm -rf "$STAMP" "$MANIFEST" "$PREFIX/$PY_INSTALL_DIR" "$PREFIX/share/roi_codec_ros" "$PREFIX/lib/roi_codec_ros" \
    "$PREFIX/include/roi_codec_ros"

  step "install into $PREFIX"
  cmake --install "$BUILD_DIR/build" > "$BUILD_DIR/install.log" 2>&1 \
    || { tail -40 "$BUILD_DIR/install.log" >&2; false; }
  cp "$BUILD_DIR/build/install_manifest.txt" "$MANIFEST"
  echo "$INPUT_HASH" > "$STAMP"
fi

step "make roi_codec_ros.msg importable (site-packages/roi_codec_ros.pkg)"
# Why not simply put $PREFIX/$PY_INSTALL_DIR on sys.path: that directory holds rosidl's (empty)
# roi_codec_ros/__init__.py, and sys.path entries win over the finder of an editable pip install, so it would
# shadow the real package.  A <package>.pkg file in a sys.path directory is the stdlib's way (pkgutil.extend_path,
# called in roi_codec_ros/__init__.py) to add one more directory to a package's __path__.
MSG_DIR="$PREFIX/$PY_INSTALL_DIR/roi_codec_ros"
[ -d "$MSG_DIR/msg" ] || { echo "build_msgs.sh: $MSG_DIR/msg missing after install" >&2; exit 1; }
printf '# written by scripts/build_msgs.sh: rosidl-generated roi_codec_ros.msg (see docs/packaging.md)\n%s\n' "$MSG_DIR" \
  > "$SITE/roi_codec_ros.pkg"

step "check: roi_codec_ros.msg.EncodedFrame round trip in a fresh interpreter"
# ROOT first on sys.path: setup.sh runs this before the package itself is pip-installed
ROI_CODEC_ROOT="$ROOT" ROI_CODEC_MSG_DIR="$MSG_DIR" "$PY" - <<'EOF'
import os, sys
sys.path.insert(0, os.environ["ROI_CODEC_ROOT"])
from rclpy.serialization import deserialize_message, serialize_message
import roi_codec_ros.msg as msgs

assert os.path.dirname(msgs.__file__) == os.path.join(os.environ["ROI_CODEC_MSG_DIR"], "msg"), msgs.__file__
frame = msgs.EncodedFrame(data=bytes(range(7)))
back = deserialize_message(serialize_message(frame), msgs.EncodedFrame)
assert bytes(back.data) == bytes(range(7)), back
print("  ok: roi_codec_ros.msg from", os.path.dirname(msgs.__file__))
EOF
echo "[build_msgs] done: roi_codec_ros in $PREFIX (AMENT_PREFIX_PATH via scripts/env.sh)"
