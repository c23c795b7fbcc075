"""The ROS nodes' plain parts (no ROS graph): image conversion, latest-frame-wins worker, rates, encoder/decoder
cores with the untrained test codec, frame sources, parameter mapping, import boundaries of the node processes,
transport checks (the roi-launch/roi-param dev tools are tested in test_launch_tools.py)."""
from __future__ import annotations

from pathlib import Path
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from roi_codec_ros.codec import BitstreamError, RoiCodec
from roi_codec_ros.detector import RoiMaskConfig
from roi_codec_ros.nodes.decoder_core import (
    FORMAT_RCB1,
    ForeignFrameError,
    FrameDecoder,
    MissingReferenceError,
    StreamReceiver,
    UnsupportedFormatError,
    roi_overlay,
)
from roi_codec_ros.nodes.encoder_core import EncoderSettings, FrameEncoder, RoiBoxInfo
from roi_codec_ros.nodes.frame_sources import FrameSourceError, open_source
from roi_codec_ros.nodes.images import ImageEncodingError, image_to_rgb, rgb_to_image_data
from roi_codec_ros.nodes.worker import LatestFrameWorker, RateLimiter, RateWindow, StreamWorker

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
    gate, started = threading.Event(), threading.Event()

    def handle(item):
        started.set()
        gate.wait(5)
        if item == "bad":
            raise RuntimeError("boom")
        handled.append(item)

    worker = LatestFrameWorker(handle, errors.append)
    try:
        worker.submit(0)
        assert started.wait(5)  # taken by the worker, blocked on the gate
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


def test_worker_stop_discards_pending_and_does_not_wait_for_a_long_frame():
    release, started = threading.Event(), threading.Event()
    handled = []

    def handle(item):
        started.set()
        release.wait(10)  # a frame that takes longer than the stop timeout
        handled.append(item)

    worker = LatestFrameWorker(handle, lambda exc: None)
    worker.submit("long")
    assert started.wait(5)
    worker.submit("pending")
    t = time.monotonic()
    assert worker.stop(timeout=0.3) is False  # still busy: stop returns after its timeout instead of blocking
    assert time.monotonic() - t < 2.0 and worker.stopping
    release.set()
    worker._thread.join(5)
    assert handled == ["long"]  # the pending frame was discarded, not started after stop


def test_stream_worker_keeps_order_and_a_keyframe_drops_what_waits_before_it():
    handled = []
    gate, started = threading.Event(), threading.Event()

    def handle(item, broken):
        started.set()
        gate.wait(5)
        handled.append((item, broken))

    worker = StreamWorker(handle, lambda exc: None, max_pending=4)
    try:
        worker.submit("I0", keyframe=True)
        assert started.wait(5)
        for name in ("P1", "P2"):
            assert worker.submit(name, keyframe=False) == 0  # inter frames queue up, in order
        assert worker.submit("I3", keyframe=True) == 2  # the keyframe needs none of them
        worker.submit("P4", keyframe=False)
        gate.set()
        assert worker.wait_idle(5)
        assert handled == [("I0", False), ("I3", False), ("P4", False)] and worker.dropped == 2
        gate.clear()
        started.clear()
        worker.submit("P5", keyframe=False)
        assert started.wait(5)
        for i in range(6, 11):  # more inter frames than max_pending wait: all dropped, the next one is flagged
            worker.submit(f"P{i}", keyframe=False)
        gate.set()
        assert worker.wait_idle(5)
        assert handled[3:] == [("P5", False), ("P10", True)] and worker.dropped == 6
    finally:
        worker.stop()


def test_stream_receiver_waits_for_keyframes_and_rate_limits_requests():
    from roi_codec_ros.engine import create_engine
    from roi_codec_ros.engine.classical import ClassicalSettings

    engine = create_engine("x264", classical=ClassicalSettings(scenecut=False))
    encoder = engine.stream_encoder(keyframe_interval=4)
    frames = [encoder.encode(_image(48, 64, seed=t % 2), rate=0.5) for t in range(9)]
    assert [f.keyframe for f in frames] == [True, False, False, False, True, False, False, False, True]
    receiver = StreamReceiver(FrameDecoder(None), request_period_s=1.0)
    assert receiver.waiting == "joined"

    def feed(i, now, broken=False):
        f = frames[i]
        return receiver.process(f.data, f.format, f.keyframe, broken, now)

    # joined at frame 1: inter frames are not decoded; one request, then none until the period has passed
    first, second, third = feed(1, 0.0), feed(2, 0.5), feed(3, 1.2)
    assert [o.kind for o in (first, second, third)] == ["no_reference"] * 3
    assert (first.request, second.request, third.request) == ("joined", None, "joined") and receiver.requests == 2
    assert feed(4, 1.3).kind == "decoded" and receiver.waiting is None
    assert feed(5, 1.4).kind == "decoded"
    # frame 6 lost on the way: the sequence gap breaks the chain; frame 7 waits and asks (reason gap)
    assert [receiver.arrived(s) for s in (4, 5, 7)] == [0, 0, 1] and receiver.lost == 1
    lost = feed(7, 3.0, broken=True)
    assert (lost.kind, lost.request, receiver.waiting) == ("no_reference", "gap", "gap")
    assert feed(8, 3.1).kind == "decoded"
    # a damaged inter frame: corrupt, and the stream waits again
    damaged = receiver.process(frames[5].data[: len(frames[5].data) // 2], "h264", False, False, 9.0)
    assert (damaged.kind, damaged.request) == ("corrupt", "error")
    # formats it cannot decode and foreign frames leave the stream state alone
    assert receiver.process(b"x", "vp9", True, False, 9.1).kind == "unsupported"
    assert receiver.arrived(0) == 1  # numbers going back: a restarted encoder, a new stream


def test_rate_limiter():
    limiter = RateLimiter(2.0)
    assert [limiter.accept(t) for t in (0.0, 0.2, 0.49, 0.5, 0.7, 1.1)] == [True, False, False, True, False, True]
    limiter.max_rate = 0.0  # live change to "no limit"
    assert all(limiter.accept(1.1 + 0.01 * i) for i in range(5))


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
    image = _image(48, 80, seed=3)
    frame = random_codec.encode(image, rate=0.5)
    decoder = FrameDecoder(random_codec)
    decoded = decoder.decode(frame.data, FORMAT_RCB1)
    assert decoded.shape == (48, 80, 3)  # the size comes from the bitstream (the message has no size fields)
    assert np.array_equal(decoded, random_codec.decode(frame.data))
    # an intact bitstream of another model: foreign, whatever else the message says
    other = RoiCodec.random(seed=1)
    assert other.model_hash != random_codec.model_hash
    with pytest.raises(ForeignFrameError, match="made by codec model"):
        decoder.decode(other.encode(image, rate=0.5).data, FORMAT_RCB1)
    # a damaged model hash fails the CRC first: corrupt, never foreign
    damaged_hash = bytearray(frame.data)
    damaged_hash[5] ^= 0x01
    with pytest.raises(BitstreamError, match="CRC") as err:
        decoder.decode(bytes(damaged_hash), FORMAT_RCB1)
    assert not isinstance(err.value, ForeignFrameError)
    garbage = np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes()
    with pytest.raises(BitstreamError):
        decoder.decode(garbage, FORMAT_RCB1)
    broken = bytearray(frame.data)
    broken[len(broken) // 2] ^= 0xFF
    with pytest.raises(BitstreamError):
        decoder.decode(bytes(broken), FORMAT_RCB1)
    for fmt in ("vp9", ""):
        with pytest.raises(UnsupportedFormatError, match="not one this decoder decodes"):
            decoder.decode(frame.data, fmt)
    # an rcb1 payload labelled h264: no IDR in it, so an inter frame without its reference (a BitstreamError)
    with pytest.raises(MissingReferenceError):
        decoder.decode(frame.data, "h264")
    assert FrameDecoder(None).formats == ("h264", "hevc")  # decoder without a model: rcb1 is unsupported
    with pytest.raises(UnsupportedFormatError):
        FrameDecoder(None).decode(frame.data, FORMAT_RCB1)


def test_format_constant_matches_the_message():
    from roi_codec_ros.evaluation.bags import RCB_FORMAT
    from roi_codec_ros.msg import EncodedFrame

    assert EncodedFrame.FORMAT_RCB1 == FORMAT_RCB1 == RCB_FORMAT
    fields = EncodedFrame.get_fields_and_field_types()
    # what repeats the bitstream header (size, rate, model id) or the statistics (timings, coverage) is gone
    assert not {"height", "width", "rate", "roi_weight", "codec_id", "roi_coverage", "encode_ms", "total_ms"} & set(fields)
    assert {"header", "format", "keyframe", "boxes", "data", "sequence"} <= set(fields)


def test_roi_overlay_marks_boxes():
    image = np.full((60, 80, 3), 200, np.uint8)
    out = roi_overlay(image[:, ::-1], [RoiBoxInfo(10, 10, 40, 40, 2, "car", 0.9)])  # a non-contiguous view
    assert out.shape == image.shape and out.dtype == np.uint8
    assert out[55, 75].mean() < 120  # outside the ROI: dimmed
    assert out[25, 25].mean() > 150  # inside: kept
    assert np.array_equal(roi_overlay(image, []), image)  # no ROI (uniform quality): nothing dimmed


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


def test_static_boxes_can_be_cleared_and_reject_non_numbers():
    """'none' (the default) and any empty array clear the boxes: `ros2 param set` cannot send an empty double
    array ("[]" arrives as an empty bool array).  What it sends for "[nan, 0, 1, 1]" (a string: YAML reads nan
    as text) and a real NaN/inf are rejected with a reason."""
    from roi_codec_ros.nodes.encoder_node import PARAMETERS, settings_from_parameters

    values = {p.name: p.default for p in PARAMETERS}
    assert values["roi.static_boxes"] == "none" and settings_from_parameters(values).roi.static_boxes == ()
    boxed = {**values, "roi.static_boxes": [0.0, 200.0, 1242.0, 375.0]}
    assert settings_from_parameters(boxed).roi.static_boxes == ((0.0, 200.0, 1242.0, 375.0),)
    for cleared in ("none", "None", [], ()):
        assert settings_from_parameters({**boxed, "roi.static_boxes": cleared}).roi.static_boxes == ()
    assert settings_from_parameters({**values, "roi.static_boxes_rel": [0, 0, 1, 1]}).roi.static_boxes_rel == ((0.0, 0.0, 1.0, 1.0),)
    cases = [("[nan, 0, 1, 1]", "got the string"), ("[inf, 0, 1, 1]", "got the string"), ([float("nan"), 0, 1, 1], "finite"),
             ([0, 0, float("inf"), 1], "finite"), ([True, False, True, True], "numbers"), (["a", "b", "c", "d"], "numbers")]
    for value, reason in cases:
        with pytest.raises(ValueError, match=reason):
            settings_from_parameters({**values, "roi.static_boxes": value})


def test_class_weights_parameter_maps_to_the_roi_config_and_rejects_bad_values():
    """'none' (the default) and any empty array = no weights; 'class=weight' strings -> RoiMaskConfig.class_weights;
    anything else is a ValueError naming the parameter and why."""
    from roi_codec_ros.nodes.encoder_node import PARAMETERS, settings_from_parameters

    values = {p.name: p.default for p in PARAMETERS}
    assert values["roi.class_weights"] == "none" and settings_from_parameters(values).roi.class_weights == ()
    for cleared in ("none", "NONE", [], ()):
        assert settings_from_parameters({**values, "roi.class_weights": cleared}).roi.class_weights == ()
    got = settings_from_parameters({**values, "roi.class_weights": ["traffic light=1.0", "car=0.5", "7=0.25"]})
    assert got.roi.class_weights == ((7, 0.25), ("car", 0.5), ("traffic light", 1.0))
    cases = [(["car=1.5"], "roi.class_weights.*in \\[0, 1\\]"), (["car"], "roi.class_weights.*'class=weight'"),
             (["car=nan"], "in \\[0, 1\\]"), ("car=0.5", "got the string"), ([0.5, 1.0], "string array"),
             ([True], "string array"), (["car=0.5", "Car=0.2"], "given twice"), (3.0, "must be 'none'")]
    for value, reason in cases:
        with pytest.raises(ValueError, match=reason):
            settings_from_parameters({**values, "roi.class_weights": value})


def test_frame_encoder_class_weights_lower_the_mask_and_the_bytes(random_codec):
    from ros_helpers import FixedDetector, car_and_traffic_light

    detector = FixedDetector(car_and_traffic_light())
    encoder = FrameEncoder(random_codec, keyframe_interval=1)  # intra frames: the same image gives the same bytes
    encoder.detector = detector  # features=None: the neural codec zero-fills them
    image = _image(64, 128, seed=5)
    full = EncoderSettings(roi_weight=16.0, roi=RoiMaskConfig(margin_px=0), keyframe_interval=1)
    half = full.replace(roi=RoiMaskConfig(margin_px=0, class_weights={"car": 0.5}))
    full.check(random_codec, detector)
    half.check(random_codec, detector)
    a, b = encoder.encode(image, full), encoder.encode(image, half)
    car, light = 80 * 48, 10 * 30
    assert a.roi_coverage == pytest.approx((car + light) / (64 * 128))
    assert b.roi_coverage == pytest.approx((0.5 * car + light) / (64 * 128))
    assert [x.class_name for x in b.boxes] == ["car", "traffic light"]
    assert len(b.frame.data) < len(a.frame.data)  # less ROI weight on the car's pixels: fewer bits
    again = encoder.encode(image, full)
    assert again.frame.data == a.frame.data  # the same settings give the same frame (deterministic)
    with pytest.raises(ValueError, match="unknown classes \\['forklift'\\] in roi.class_weights"):
        full.replace(roi=RoiMaskConfig(class_weights={"forklift": 0.5, "car": 1.0})).check(random_codec, detector)


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
    settings = EncoderSettings(roi=RoiMaskConfig(classes=None, confidence=0.0, margin_px=4.0, static_boxes=((0, 0, 8, 8),)))
    settings.check(random_codec, detector)
    result = encoder.encode(_image(96, 128), settings)
    d = result.detections
    assert d is not None and result.detector_ms > 0
    assert len(result.boxes) == len(d) + 1  # every detection passes, plus the static box
    # the boxes are the ones that shaped the mask: detections grown by the margin, with their class and score
    for i, box in enumerate(result.boxes[:-1]):
        assert (box.x1, box.y2) == pytest.approx((float(d.boxes[i][0]) - 4.0, float(d.boxes[i][3]) + 4.0), abs=1e-3)
        assert (box.class_id, box.class_name) == (int(d.class_ids[i]), d.label(i))
    assert result.boxes[-1].class_name == "static" and result.boxes[-1].class_id == -1
    none_selected = encoder.encode(_image(96, 128), EncoderSettings(roi=RoiMaskConfig(classes=(999,))))  # no such class
    assert none_selected.boxes == [] and none_selected.roi_coverage == 0.0
    with pytest.raises(ValueError, match="unknown ROI classes \\['unicorn'\\]"):
        EncoderSettings(roi=RoiMaskConfig(classes=("car", "unicorn"))).check(random_codec, detector)


def _modules_loaded_by(statement: str) -> set[str]:
    code = f"import sys\n{statement}\nprint('\\n'.join(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stderr
    return set(result.stdout.split())


def test_decoder_process_needs_neither_detector_nor_encoder():
    loaded = _modules_loaded_by("import roi_codec_ros.nodes.decoder_node")
    assert "roi_codec_ros.nodes.decoder_node" in loaded
    # the ROI box geometry (detector.roi_mask, numpy only) is allowed: it draws the overlay with the codec's own rule
    allowed = {"roi_codec_ros.detector", "roi_codec_ros.detector.roi_mask", "roi_codec_ros.detector.detections"}
    forbidden = {m for m in loaded if m.split(".")[0] == "ultralytics"
                 or (m.startswith("roi_codec_ros.detector") and m not in allowed)
                 or m == "roi_codec_ros.nodes.encoder_core" or m.startswith("roi_codec_ros.evaluation")}
    assert not forbidden, sorted(forbidden)


def test_nodes_do_not_import_the_evaluation_package():
    loaded = _modules_loaded_by("import roi_codec_ros.nodes.encoder_node, roi_codec_ros.nodes.decoder_node, "
                                "roi_codec_ros.nodes.source_node")
    assert not {m for m in loaded if m.startswith("roi_codec_ros.evaluation")}


def test_transport_checks(monkeypatch):
    from roi_codec_ros.nodes.runtime import PROFILE_VARIABLES, TRANSPORT_LIMIT_BYTES, LargeMessageCheck, transport_warning

    for name in PROFILE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("RMW_IMPLEMENTATION", raising=False)
    assert "FASTDDS_DEFAULT_PROFILES_FILE" in transport_warning()
    monkeypatch.setenv("RMW_IMPLEMENTATION", "rmw_cyclonedds_cpp")
    assert transport_warning() is None  # only Fast DDS has the 512 KB default
    monkeypatch.setenv("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    monkeypatch.setenv("FASTDDS_DEFAULT_PROFILES_FILE", str(REPO / "config" / "fastdds_large_frames.xml"))
    assert transport_warning() is None

    class Logger:
        def __init__(self):
            self.errors = []

        def error(self, text):
            self.errors.append(text)

    logger = Logger()
    check = LargeMessageCheck(logger, "/cam/image_raw")
    assert check(4096 * 3072 * 3) and not logger.errors  # a 12 MP rgb8 frame fits
    assert not check(TRANSPORT_LIMIT_BYTES + 1) and not check(TRANSPORT_LIMIT_BYTES + 2)
    assert len(logger.errors) == 1 and "/cam/image_raw" in logger.errors[0] and "fastdds_large_frames.xml" in logger.errors[0]


def test_docs_list_every_parameter():
    from roi_codec_ros.nodes import decoder_node, encoder_node, source_node

    text = (REPO / "docs" / "ros.md").read_text()
    for module in (encoder_node, decoder_node, source_node):
        for p in module.PARAMETERS:
            assert f"| `{p.name}` |" in text, f"docs/ros.md misses parameter {p.name} of {module.__name__}"
