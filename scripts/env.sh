# Environment every run needs (source it: `. scripts/env.sh`). Safe to source repeatedly.
# Sets up the project venv, the ROS 2 runtime from the ros-kilted-* wheels, and offline YOLO.
_roi_root="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)"
export ROI_CODEC_ROOT="$_roi_root"
if [ -f "$_roi_root/.venv/bin/activate" ] && [ "${VIRTUAL_ENV:-}" != "$_roi_root/.venv" ]; then
  # shellcheck disable=SC1091
  . "$_roi_root/.venv/bin/activate"
fi
# DDS must never multicast on the network here, and early messages must not be lost.
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-42}"
export RMW_IMPLEMENTATION="${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
# Camera-sized frames through shared memory instead of lossy fragmented UDP (config/fastdds_large_frames.xml
# says why); a profile the user chose wins.
export FASTDDS_DEFAULT_PROFILES_FILE="${FASTDDS_DEFAULT_PROFILES_FILE:-$_roi_root/config/fastdds_large_frames.xml}"
# ROS finds packages through AMENT_PREFIX_PATH.  The ros-kilted-* wheels install theirs (std_msgs, rclpy, ...)
# into the venv itself ($VIRTUAL_ENV/share/ament_index), and scripts/build_msgs.sh installs roi_codec_ros beside
# them: one prefix for `ros2 interface show`, launch's FindPackageShare and roi-launch.  Appended, so that a
# workspace sourced before (install/setup.bash) keeps precedence.
if [ -n "${VIRTUAL_ENV:-}" ]; then
  case ":${AMENT_PREFIX_PATH:-}:" in *":$VIRTUAL_ENV:"*) ;; *)
    export AMENT_PREFIX_PATH="${AMENT_PREFIX_PATH:+$AMENT_PREFIX_PATH:}$VIRTUAL_ENV";; esac
fi
# ultralytics: never download, never pip-install, keep settings inside the project.
export YOLO_OFFLINE=1
export YOLO_AUTOINSTALL=0
export YOLO_VERBOSE="${YOLO_VERBOSE:-False}"
export YOLO_CONFIG_DIR="$_roi_root/.yolo_config"
mkdir -p "$YOLO_CONFIG_DIR"
# Importing ultralytics sets OMP_NUM_THREADS=1 for child processes; pin it to the core count ourselves.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$(nproc)}"
# Faster CPU training/inference with large temporary tensors (measured ~1.8x for training).
export GLIBC_TUNABLES="${GLIBC_TUNABLES:-glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=17179869184}"
unset _roi_root
