"""Test isolation: ROS discovery stays on this machine, a unique domain per run, temporary logs; offline YOLO."""
from __future__ import annotations

import os
from pathlib import Path
import tempfile

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

# Set before anything imports rclpy or ultralytics; subprocesses inherit them.
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ["ROS_DOMAIN_ID"] = str(os.environ.get("ROI_TEST_DOMAIN_ID") or 1 + os.getpid() % 100)
os.environ["ROS_LOG_DIR"] = tempfile.mkdtemp(prefix="roi_codec_ros_log_")
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "0")
os.environ.setdefault("YOLO_CONFIG_DIR", str(REPO_ROOT / ".yolo_config"))
os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))


def shared_path(*parts: str) -> Path:
    """A file in the team's research data (../shared); tests using it must skip when it is absent."""
    return REPO_ROOT.parent.joinpath("shared", *parts)


@pytest.fixture(scope="session")
def detector_weights() -> Path:
    path = Path(os.environ.get("ROI_CODEC_DETECTOR_WEIGHTS") or shared_path("models", "yolov8n_coco.pt"))
    if not path.is_file():
        pytest.skip(f"real detector weights not available ({path})")
    return path


@pytest.fixture(scope="session")
def random_codec():
    from roi_codec_ros.codec import RoiCodec

    return RoiCodec.random(seed=0)
