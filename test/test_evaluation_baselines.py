"""Every baseline (and our codec's adapter) gives a real, decodable payload of the right size and sane quality."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from roi_codec_ros.evaluation.baselines import (
    STREAM_FAMILIES,
    JpegCodec,
    VideoIntraCodec,
    VideoStreamCodec,
    WebpCodec,
    baseline_sweep,
)
from roi_codec_ros.evaluation.runner import Frame, evaluate, summarize
from roi_codec_ros.evaluation.frames import read_image_rgb
from roi_codec_ros.evaluation.metrics import boxes_to_mask, psnr


@pytest.fixture(scope="module")
def bus() -> np.ndarray:
    import ultralytics

    path = Path(ultralytics.__file__).parent / "assets" / "bus.jpg"
    image = read_image_rgb(path)  # 1080 x 810
    return np.ascontiguousarray(image[::2, ::2])  # 540 x 405: odd width on purpose, and faster


BUS_BOXES = np.array([[20, 110, 120, 450], [110, 105, 200, 440]], np.float32)  # two standing people (half scale)

# (family spec, low-quality value, high-quality value)
FAMILIES = [
    ("jpeg", 20, 80),
    ("webp", 20, 80),
    ("x264", 40, 24),
    ("x264-444", 40, 24),
    ("x265", 40, 24),
    ("x265-444", 40, 24),
    ("x264-roi", 40, 24),
    ("jpeg-444", 20, 80),
    ("x264-ippp-veryfast-k10", 40, 24),
    ("x265-ippp-medium-kinf", 40, 24),
    ("x264-ippp-veryfast-k10-roi", 40, 24),
]


@pytest.mark.parametrize("family, low, high", FAMILIES)
def test_each_baseline_decodes_to_the_right_size_with_sane_quality(bus, family, low, high):
    raw_bytes = bus.size
    results = []
    for codec in baseline_sweep(family, [low, high]):
        data = codec.encode(bus, BUS_BOXES)
        assert isinstance(data, bytes) and 100 < len(data) < raw_bytes / 4
        decoded = codec.decode(data)
        assert decoded.shape == bus.shape and decoded.dtype == np.uint8
        results.append((len(data), psnr(bus, decoded)))
    (bytes_low, psnr_low), (bytes_high, psnr_high) = results
    assert 22.0 < psnr_low < psnr_high < 50.0, results
    assert bytes_low < bytes_high


def test_baseline_defaults_are_their_best_measured_settings():
    """docs/evaluation.md, "Colour conversion and tuning": full-range BT.601, PSNR tuning, optimised JPEG, WebP m6."""
    x264 = VideoIntraCodec("x264", 30)
    assert x264.colour.range == "full" and x264.colour.matrix == "bt601" and x264.colour.siting == "center"
    assert "psy=0" in x264.config.codec_params() and "aq-mode=0" in x264.config.codec_params()
    assert JpegCodec(50).optimize and WebpCodec(50).method == 6
    assert VideoIntraCodec("x265", 30, "yuv444p").colour.chroma == "444"


def test_x264_payload_has_no_sei_and_is_a_plain_annexb_stream(bus):
    data = VideoIntraCodec("x264", 30).encode(bus)
    assert b"x264 - core" not in data  # the ~600-byte version/options SEI is stripped
    assert data[0] == 1  # one padding column (odd width), no padding row
    assert data[1:4] == b"\x00\x00\x01" and data[4] & 0x1F == 7  # starts with the SPS NAL unit


def test_x264_roi_spends_bits_on_the_boxes(bus):
    roi = boxes_to_mask(BUS_BOXES, bus.shape[:2])
    plain, with_roi = VideoIntraCodec("x264", 34), VideoIntraCodec("x264", 34, roi_qoffset=-0.3)
    dec_plain = plain.decode(plain.encode(bus, BUS_BOXES))
    dec_roi = with_roi.decode(with_roi.encode(bus, BUS_BOXES))
    assert psnr(bus, dec_roi, roi) > psnr(bus, dec_plain, roi) + 2.0
    assert abs(psnr(bus, dec_roi, ~roi) - psnr(bus, dec_plain, ~roi)) < 1.0
    # no boxes -> no ROI side data -> the same stream as plain x264
    assert with_roi.encode(bus, None) == plain.encode(bus, None)


def test_background_qoffset_coarsens_only_the_background(bus):
    roi = boxes_to_mask(BUS_BOXES, bus.shape[:2])
    base = VideoIntraCodec("x264", 30, roi_qoffset=-0.2)
    coarse = VideoIntraCodec("x264", 30, roi_qoffset=-0.2, bg_qoffset=0.2)
    data_base, data_coarse = base.encode(bus, BUS_BOXES), coarse.encode(bus, BUS_BOXES)
    dec_base, dec_coarse = base.decode(data_base), coarse.decode(data_coarse)
    assert len(data_coarse) < len(data_base)
    assert psnr(bus, dec_coarse, ~roi) < psnr(bus, dec_base, ~roi) - 1.0
    assert abs(psnr(bus, dec_coarse, roi) - psnr(bus, dec_base, roi)) < 1.0


def test_bad_payloads_and_settings_raise_value_error(bus):
    for codec in (JpegCodec(50), WebpCodec(50), VideoIntraCodec("x264", 30), VideoIntraCodec("x265", 30)):
        with pytest.raises(ValueError):
            codec.decode(b"\x00 definitely not an image")
    with pytest.raises(ValueError, match="quality"):
        JpegCodec(0)
    with pytest.raises(ValueError, match="pix_fmt"):
        VideoIntraCodec("x264", 30, "yuv422p")
    with pytest.raises(ValueError, match="unknown baseline"):
        baseline_sweep("jpeg2000")
    with pytest.raises(ValueError, match="unknown baseline"):
        baseline_sweep("x264-k10")  # a keyframe interval only means something for streams
    with pytest.raises(ValueError, match="keyint"):
        VideoStreamCodec("x264", 30, keyint=0)
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        JpegCodec(50).encode(bus[..., 0])


def test_our_codec_adapter_round_trip(random_codec):
    from roi_codec_ros.evaluation.ours import OursCodec, ours_grid

    image = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    codecs = ours_grid(random_codec, rates=(0.2, 0.9), roi_weights=(1.0, 4.0))
    assert [c.label for c in codecs] == ["ours α=1 rate=0.2", "ours α=1 rate=0.9", "ours α=4 rate=0.2",
                                         "ours α=4 rate=0.9"]
    sizes = []
    for codec in codecs[:2]:
        data = codec.encode(image, np.array([[8, 8, 40, 30]]))
        assert codec.decode(data).shape == image.shape
        sizes.append(len(data))
    assert sizes[0] < sizes[1]  # the rate knob acts even on the untrained model
    assert codecs[0].params()["model_id"] == random_codec.model_id
    with pytest.raises(ValueError, match="roi_weight"):
        OursCodec(random_codec, 0.5, roi_weight=1e6)


def moving_frames(count: int, height: int = 96, width: int = 160) -> list[np.ndarray]:
    """A textured scene panning 3 px per frame (something for P-frames to predict)."""
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:height, 0:width + 3 * count].astype(np.float32)
    world = np.stack([128 + 70 * np.sin(xx / 13), 120 + 60 * np.cos(yy / 7 + xx / 29), 100 + 40 * np.sin(yy / 11)], -1)
    world = np.clip(world + rng.normal(0, 4, world.shape[:2] + (1,)), 0, 255).astype(np.uint8)
    return [np.ascontiguousarray(world[:, 3 * i:3 * i + width]) for i in range(count)]


def test_stream_baselines_code_ippp_with_keyframe_intervals():
    frames = [Frame(name=f"{i:03d}", image=f) for i, f in enumerate(moving_frames(12))]
    codecs = baseline_sweep("x264-ippp-veryfast-k5", [30]) + baseline_sweep("x264-ippp-veryfast", [30]) + \
        baseline_sweep("x264", [30])
    assert [c.family for c in codecs] == ["x264 420 IPPP veryfast k5", "x264 420 IPPP veryfast kinf", "x264 420"]
    records = evaluate(frames, codecs, with_msssim=False, progress=False)
    sizes = {c.family: [r.num_bytes for r in records if r.family == c.family] for c in codecs}
    assert codecs[0].keyframes == 3 and codecs[1].keyframes == 1  # frames 0, 5, 10 / frame 0 only
    k5 = sizes["x264 420 IPPP veryfast k5"]
    assert min(k5[5], k5[10]) > 2 * max(k5[i] for i in range(12) if i % 5)  # periodic I-frames vs P-frames
    rows = {r["family"]: r for r in summarize(records)}
    assert rows["x264 420 IPPP veryfast kinf"]["bpp"] < 0.6 * rows["x264 420"]["bpp"]  # P-frames pay off
    assert rows["x264 420 IPPP veryfast kinf"]["psnr"] > rows["x264 420"]["psnr"] - 1.0  # ... at no quality loss


def test_stream_restarts_on_a_new_frame_size_and_decodes_in_order():
    codec = VideoStreamCodec("x265", 32, keyint=None, preset="veryfast")
    small, large = moving_frames(2, 64, 96), moving_frames(2, 81, 121)  # odd sizes: padded to even
    for frame in small + large:
        decoded = codec.decode(codec.encode(frame))
        assert decoded.shape == frame.shape and psnr(frame, decoded) > 28.0
    assert codec.keyframes == 2
    with pytest.raises(ValueError):
        codec.decode(b"\x00 not a packet")


def test_stream_roi_spends_bits_on_the_boxes():
    frames = moving_frames(6)
    boxes = np.array([[40, 20, 100, 70]], np.float32)
    mask = boxes_to_mask(boxes, frames[0].shape[:2])
    plain, roi = VideoStreamCodec("x264", 34, keyint=10), VideoStreamCodec("x264", 34, keyint=10, roi_qoffset=-0.3)
    gains = []
    for frame in frames:
        out_plain = plain.decode(plain.encode(frame, boxes))
        out_roi = roi.decode(roi.encode(frame, boxes))
        gains.append(psnr(frame, out_roi, mask) - psnr(frame, out_plain, mask))
    assert np.mean(gains) > 1.5, gains
    assert roi.family == "x264 420 IPPP veryfast k10 ROI q-0.3"


def test_streams_group_lists_the_teleoperation_stream_families():
    codecs = baseline_sweep("streams", [30])
    assert [c.family for c in codecs] == [
        "x264 420 IPPP veryfast k10", "x264 420 IPPP veryfast kinf", "x264 420 IPPP medium k10",
        "x264 420 IPPP medium kinf", "x265 420 IPPP veryfast k10", "x265 420 IPPP veryfast kinf",
        "x265 420 IPPP medium k10", "x265 420 IPPP medium kinf", "x264 420 IPPP veryfast k10 ROI q-0.3",
    ]
    assert len(STREAM_FAMILIES) == len(codecs)
    assert all(c.config.zerolatency and c.config.bframes is None for c in codecs)
