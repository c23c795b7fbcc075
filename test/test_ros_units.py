"""The ROS nodes' plain parts (no ROS graph): image conversion, latest-frame-wins worker, rates, encoder/decoder
cores with the untrained test codec, frame sources, parameter mapping, roi-param value conversion and the
roi-launch shim (dry run of the real launch files)."""
from __future__ import annotations

import os
from pathlib import Path
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from roi_codec_ros.codec import BitstreamError
from roi_codec_ros.detector import RoiMaskConfig
from roi_codec_ros.nodes.decoder_core import ForeignFrameError, FrameDecoder, roi_overlay
from roi_codec_ros.nodes.encoder_core import EncoderSettings, FrameEncoder, RoiBoxInfo
from roi_codec_ros.nodes.frame_sources import FrameSourceError, open_source
from roi_codec_ros.nodes.images import ImageEncodingError, image_to_rgb, rgb_to_image_data
from roi_codec_ros.nodes.worker import LatestFrameWorker, RateWindow

REPO = Path(__file__).resolve().parents[1]


def _image(h=64, w=96, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# -- images -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "mono8"])
def test_image_round_trip_with_row_padding(encoding):
    rgb = _image(5, 7)
    step, data = rgb_to_image_data(rgb, encoding)
    padded = b"".join(data[r * step : (r + 1) * step] + b"\xee" * 3 for r in range(5))  # step > width*channels
    back = image_to_rgb(5, 7, encoding, step + 3, padded)
    if encoding == "mono8":
        expected = np.round(rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)).astype(np.uint8)
        assert np.array_equal(back, np.repeat(expected[..., None], 3, axis=2))
    else:
        assert np.array_equal(back, rgb)


def test_image_errors_name_the_problem():
    with pytest.raises(ImageEncodingError, match="unsupported image encoding 'rgba8'.*rgb8, bgr8, mono8"):
        image_to_rgb(2, 2, "rgba8", 8, bytes(16))
    with pytest.raises(ImageEncodingError, match="needs 12"):
        image_to_rgb(2, 2, "rgb8", 6, bytes(10))
    with pytest.raises(ImageEncodingError, match="step 5 is smaller"):
        image_to_rgb(2, 2, "rgb8", 5, bytes(12))


# -- worker / rates ---------------------------------------------------------------------------------------
def test_latest_frame_wins_drops_stale_frames_and_survives_errors():
    handled, errors = [], []
    gate = threading.Event()

    def handle(item):
        gate.wait(5)
        if item == "bad":
            raise RuntimeError("boom")
        handled.append(item)

    worker = LatestFrameWorker(handle, errors.append)
    try:
        worker.submit(0)  # taken by the worker, blocked on the gate
        time.sleep(0.2)
        for i in range(1, 10):
            worker.submit(i)  # each replaces the previous waiting one
        gate.set()
        assert worker.wait_idle(5)
        assert handled == [0, 9] and worker.dropped == 8 and worker.submitted == 10
        worker.submit("bad")  # raises in the handler: reported, and the worker keeps going
        assert worker.wait_idle(5)
        worker.submit(10)
        assert worker.wait_idle(5)
        assert handled[-1] == 10 and len(errors) == 1 and "boom" in str(errors[0])
    finally:
        worker.stop()


def test_rate_window():
    window = RateWindow(window_s=1.0)
    for i in range(11):
        window.add(10.0 + 0.1 * i, 1000)
    assert window.fps() == pytest.approx(10.0)
    assert window.bitrate_kbps() == pytest.approx(80.0)  # 10 frames of 8000 bits in 1 s
    window.add(20.0, 1000)  # older samples fall out of the window
    assert window.fps() == 0.0


# -- encoder / decoder cores (untrained test codec from conftest) -------------------------------------------
def test_frame_encoder_static_boxes_and_rate(random_codec):
    image = _image(128, 192)
    encoder = FrameEncoder(random_codec)
    roi = RoiMaskConfig(static_boxes=((0, 0, 96, 64),), static_boxes_rel=((0.5, 0.5, 1.0, 1.0),))
    low = encoder.encode(image, EncoderSettings(rate=0.1, roi=roi))
    high = encoder.encode(image, EncoderSettings(rate=0.95, roi=roi))
    assert [b.class_name for b in low.boxes] == ["static", "static"]
    assert (low.boxes[1].x1, low.boxes[1].y2) == (96.0, 128.0)
    assert low.roi_coverage == pytest.approx(0.5, abs=0.02)
    assert low.detections is None and low.detector_ms == 0.0
    assert len(high.frame.data) > len(low.frame.data)
    assert high.frame.rate == pytest.approx(0.95, abs=1e-4)
    plain = encoder.encode(image, EncoderSettings())
    assert plain.boxes == [] and plain.roi_coverage == 0.0


def test_encoder_settings_check(random_codec):
    EncoderSettings().check(random_codec, None)
    with pytest.raises(ValueError, match="rate"):
        EncoderSettings(rate=1.5).check(random_codec, None)
    with pytest.raises(ValueError, match="roi_weight"):
        EncoderSettings(roi_weight=0.5).check(random_codec, None)
    with pytest.raises(ValueError, match="max_rate"):
        EncoderSettings(max_rate=-1).check(random_codec, None)


def test_frame_decoder_classifies_bad_frames(random_codec):
    image = _image(64, 64, seed=3)
    frame = random_codec.encode(image, rate=0.5)
    decoder = FrameDecoder(random_codec)
    assert np.array_equal(decoder.decode(frame.data, frame.model_id), random_codec.decode(frame.data))
    with pytest.raises(ForeignFrameError, match="different|this decoder has"):
        decoder.decode(frame.data, "0" * 64)
    garbage = np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes()
    with pytest.raises(BitstreamError):
        decoder.decode(garbage, random_codec.model_id)
    broken = bytearray(frame.data)
    broken[len(broken) // 2] ^= 0xFF
    with pytest.raises(BitstreamError):
        decoder.decode(bytes(broken), "")


def test_roi_overlay_marks_boxes():
    image = np.full((60, 80, 3), 200, np.uint8)
    out = roi_overlay(image[:, ::-1], [RoiBoxInfo(10, 10, 40, 40, 2, "car", 0.9)])  # a non-contiguous view
    assert out.shape == image.shape and out.dtype == np.uint8
    assert out[55, 75].mean() < 120  # outside the ROI: dimmed
    assert out[25, 25].mean() > 150  # inside: kept


# -- parameters -> settings ---------------------------------------------------------------------------------
def test_settings_from_parameters():
    from roi_codec_ros.nodes.encoder_node import PARAMETERS, settings_from_parameters

    values = {p.name: p.default for p in PARAMETERS}
    settings = settings_from_parameters(values)
    assert settings.rate == 0.5 and "car" in settings.roi.classes
    settings = settings_from_parameters({**values, "roi.classes": ["*"], "roi.static_boxes": [0, 0, 10, 10, 5, 5, 20, 20]})
    assert settings.roi.classes is None and settings.roi.static_boxes == ((0, 0, 10, 10), (5, 5, 20, 20))
    assert settings_from_parameters({**values, "roi.classes": ["2", "person"]}).roi.classes == (2, "person")
    with pytest.raises(ValueError, match="4 numbers"):
        settings_from_parameters({**values, "roi.static_boxes": [0, 0, 10]})
    with pytest.raises(ValueError, match="x2>=x1"):
        settings_from_parameters({**values, "roi.static_boxes": [10, 0, 0, 10]})


# -- frame sources ------------------------------------------------------------------------------------------
def test_sources_bundled_folder_video_bag(tmp_path):
    import av
    import cv2

    bundled = open_source("bundled", size=(96, 64))
    frames = list(bundled.frames())
    assert len(frames) == 2 and all(f.shape == (64, 96, 3) for f in frames)

    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i:03d}.png"), np.full((40, 60, 3), 50 * i, np.uint8))
    (folder / "notes.txt").write_text("not an image")
    frames = list(open_source(str(folder)).frames())
    assert [int(f.mean()) for f in frames] == [0, 50, 100]

    video = tmp_path / "clip.mp4"
    with av.open(str(video), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(5):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 40 * i, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    frames = list(open_source(str(video), size=(32, 24)).frames())
    assert len(frames) == 5 and frames[0].shape == (24, 32, 3)
    assert abs(float(frames[-1].mean()) - 160) < 10

    from roi_codec_ros.evaluation.bags import make_bag

    bag = tmp_path / "bag"
    make_bag(folder, bag, rate=5.0, topic="/cam/image", progress=False)
    source = open_source(str(bag))
    assert source.topic == "/cam/image"
    assert [int(f.mean()) for f in source.frames()] == [0, 50, 100]
    with pytest.raises(FrameSourceError, match="no image topic|not in bag"):
        open_source(str(bag), topic="/other")


def test_source_errors(tmp_path):
    with pytest.raises(FrameSourceError, match="does not exist"):
        open_source(str(tmp_path / "missing.mp4"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FrameSourceError, match="no images"):
        open_source(str(tmp_path / "empty"))
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    with pytest.raises(FrameSourceError, match="cannot open"):
        open_source(str(tmp_path / "bad.mp4"))


def test_frame_encoder_with_untrained_detector(random_codec):
    from roi_codec_ros.detector import DetectorAdapter

    detector = DetectorAdapter.random_init("yolov8n.yaml", imgsz=160)
    encoder = FrameEncoder(random_codec, detector)
    settings = EncoderSettings(roi=RoiMaskConfig(classes=None, confidence=0.0, static_boxes=((0, 0, 8, 8),)))
    settings.check(random_codec, detector)
    result = encoder.encode(_image(96, 128), settings)
    assert result.detections is not None and result.detector_ms > 0
    assert len(result.boxes) == len(result.detections) + 1  # every detection passes, plus the static box
    assert result.boxes[-1].class_name == "static"
    with pytest.raises(ValueError, match="unknown ROI classes \\['unicorn'\\]"):
        EncoderSettings(roi=RoiMaskConfig(classes=("car", "unicorn"))).check(random_codec, detector)


def test_docs_list_every_parameter():
    from roi_codec_ros.nodes import decoder_node, encoder_node, source_node

    text = (REPO / "docs" / "ros.md").read_text()
    for module in (encoder_node, decoder_node, source_node):
        for p in module.PARAMETERS:
            assert f"| `{p.name}` |" in text, f"docs/ros.md misses parameter {p.name} of {module.__name__}"
