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


@pytest.fixture(scope="session")
def detector_weights() -> Path:
    """The real detector weights (COCO YOLOv8n): ``$ROI_CODEC_DETECTOR_WEIGHTS``, else the team's development copy
    in ``../shared`` beside the repository. The one place in the tests that knows ``../shared``; a test that
    needs real weights takes this fixture and skips without them."""
    path = Path(os.environ.get("ROI_CODEC_DETECTOR_WEIGHTS") or REPO_ROOT.parent / "shared" / "models" / "yolov8n_coco.pt")
    if not path.is_file():
        pytest.skip(f"real detector weights not available ({path})")
    return path


@pytest.fixture(scope="session")
def random_codec():
    from roi_codec_ros.codec import RoiCodec

    return RoiCodec.random(seed=0)


@pytest.fixture(scope="module")
def restore_torch_threads():
    """For modules whose commands run with ``--threads N`` (it sets torch's thread count for this whole process):
    give later test modules theirs back.  ``pytestmark = pytest.mark.usefixtures("restore_torch_threads")``."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
