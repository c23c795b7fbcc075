"""Our x264/x265/JPEG coding equals the command-line tools' (skips without ffmpeg / cjpeg)."""
from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest

from roi_codec_ros.evaluation import baselines

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs the ffmpeg CLI (apt-get install ffmpeg)")


@pytest.fixture(scope="module")
def crosscheck():
    path = Path(__file__).resolve().parents[1] / "scripts" / "crosscheck_ffmpeg.py"
    spec = importlib.util.spec_from_file_location("crosscheck_ffmpeg", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def frames(count: int, height: int = 96, width: int = 128) -> list[np.ndarray]:
    rng = np.random.default_rng(11)
    yy, xx = np.mgrid[0:height, 0:width + 2 * count].astype(np.float32)
    world = np.stack([128 + 70 * np.sin(xx / 9), 120 + 60 * np.cos(yy / 7), 100 + 50 * np.sin((xx + yy) / 17)], -1)
    world = np.clip(world + rng.normal(0, 5, world.shape[:2] + (1,)), 0, 255).astype(np.uint8)
    return [np.ascontiguousarray(world[:, 2 * i:2 * i + width]) for i in range(count)]


BOXES = np.array([[20, 10, 70, 60]], np.float64)


@pytest.mark.parametrize("name, factory, count", [
    ("x264 intra", lambda: baselines.VideoIntraCodec("x264", 30), 1),
    ("x264 IPPP k3 ROI", lambda: baselines.VideoStreamCodec("x264", 30, keyint=3, roi_qoffset=-0.3), 5),
    ("x265 IPPP", lambda: baselines.VideoStreamCodec("x265", 30), 3),
])
def test_ffmpeg_cli_decodes_our_planes_and_encodes_our_bytes(crosscheck, tmp_path, name, factory, count):
    row = crosscheck.check_x26x(name, factory, frames(count), BOXES, tmp_path)
    assert row["cli_decode_identical"], row
    assert abs(row["bytes_diff"]) <= crosscheck.BYTES_TOLERANCE, row
    assert abs(row["psnr_diff"]) <= crosscheck.PSNR_TOLERANCE_DB, row
    assert row["ok"]


@pytest.mark.skipif(shutil.which("cjpeg") is None, reason="needs cjpeg (apt-get install libjpeg-turbo-progs)")
def test_cjpeg_writes_our_jpeg_bytes(crosscheck, tmp_path):
    row = crosscheck.check_jpeg(frames(1)[0], 60, tmp_path)
    assert row["bytes_diff"] == 0.0 and row["ok"], row
