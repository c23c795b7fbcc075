"""Helpers shared by the tests that start ROS 2 processes."""
from __future__ import annotations

import os
from pathlib import Path
import shutil
import sys

REPO = Path(__file__).resolve().parents[1]
FASTDDS_PROFILE = REPO / "config" / "fastdds_large_frames.xml"


def ros_env(tmp_path: Path) -> dict[str, str]:
    """Environment for ROS subprocesses: isolated on this machine and in this run's domain, the project's Fast DDS
    profile, and message constructors that reject unknown fields (a misspelt field fails the test)."""
    env = dict(os.environ)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))
    env.setdefault("ROS_LOG_DIR", str(tmp_path / "ros_log"))
    env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(FASTDDS_PROFILE)
    env["ROS_PYTHON_CHECK_FIELDS"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def console_script(name: str) -> str:
    """Path of an installed console script (roi-launch, roi-param, encoder_node, ...): the venv's, else PATH's."""
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"console script {name} not installed (pip install -e . / scripts/setup.sh)")
    return found


def wait_for(condition, timeout: float, what: str):
    """Poll ``condition()`` until it returns something truthy (returned) or ``timeout`` seconds pass (AssertionError)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


# the COCO ids of the default ROI classes (an encoder whose detector lacks one of them refuses its roi.classes)
COCO_ROAD_NAMES = {0: "person", 1: "bicycle", 2: "car", 3: "motorcycle", 5: "bus", 6: "train", 7: "truck",
                   9: "traffic light", 11: "stop sign"}


class FixedDetector:
    """Stands in for a DetectorAdapter in FrameEncoder (``FrameEncoder.detector``): the same detections for every
    frame and no features (the neural codec zero-fills them), so ROI tests know every box."""

    def __init__(self, detections):
        from types import SimpleNamespace

        self.names = detections.names
        self._result = SimpleNamespace(features=None, detections=detections, latency_ms=0.5)

    def __call__(self, image):
        return self._result


def car_and_traffic_light():
    """Detections in a 64x128 frame: a large car (80x48 px) and a small traffic light (10x30 px)."""
    import numpy as np

    from roi_codec_ros.detector import Detections

    boxes = np.array([[8, 8, 88, 56], [100, 10, 110, 40]], np.float32)
    return Detections(boxes, np.array([2, 9]), np.array([0.9, 0.9], np.float32), COCO_ROAD_NAMES)
