"""The engine interface (roi_codec_ros.engine) with the neural and the x264/x265 engines, without ROS.

Streams, keyframes (interval, request, next_is_keyframe), the knob mappings and their documented values, ROI
from boxes and masks, live rate changes, odd frame sizes (display-size SEI), decoders that join late or lose frames
(MissingReferenceError, never a wrong picture), the target_kbps hook, hardware detection and the generic FFmpeg
encoder path (libx264 standing in for a hardware encoder), Annex-B helpers.
"""
from __future__ import annotations

import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from roi_codec_ros.codec import BitstreamError, RoiCodec
from roi_codec_ros.engine import (
    ENGINE_NAMES,
    FORMAT_H264,
    FORMAT_HEVC,
    FORMAT_RCB1,
    AnyFormatDecoder,
    ClassicalEngine,
    ClassicalSettings,
    ForeignFrameError,
    KeyframePolicy,
    MissingReferenceError,
    UnsupportedFormatError,
    create_engine,
    engine_status,
)
from roi_codec_ros.engine import annexb
from roi_codec_ros.engine.classical import (
    boxes_from_mask,
    crf_for_rate,
    qoffset_for_roi_weight,
    rate_for_crf,
    roi_weight_for_qoffset,
)
from roi_codec_ros.engine.hardware import SPECS, HardwareEngine, HardwareSpec, kbps_for_rate, probe
from roi_codec_ros.engine.neural import NeuralEngine
from roi_codec_ros.evaluation.metrics import boxes_to_mask, psnr


def scene(t: int, height: int = 96, width: int = 160) -> np.ndarray:
    """A textured frame that moves by 2 px per frame (inter frames predict it well, detail costs bits)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    x = x + 2 * t
    base = np.stack([128 + 90 * np.sin(x / 7.0) * np.cos(y / 9.0), 128 + 80 * np.sin((x + y) / 11.0),
                     128 + 70 * np.cos(x / 5.0 - y / 13.0)], -1)
    noise = np.random.default_rng(t).normal(0, 6, base.shape)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


BOX = np.array([[16.0, 16.0, 80.0, 64.0]])


# --------------------------------------------------------------------------------------------- mappings
def test_knob_mappings_are_monotone_and_documented():
    rates = np.linspace(0, 1, 21)
    crfs = [crf_for_rate(r) for r in rates]
    assert all(a > b for a, b in zip(crfs, crfs[1:]))  # more rate, lower CRF (more bits)
    assert (crf_for_rate(0), crf_for_rate(0.5), crf_for_rate(1)) == (45.0, 30.0, 15.0)
    assert all(rate_for_crf(crf_for_rate(r)) == pytest.approx(r) for r in rates)
    weights = np.geomspace(1, 60, 25)
    qs = [qoffset_for_roi_weight(a) for a in weights]
    assert qs[0] == 0.0 and all(a > b for a, b in zip(qs, qs[1:]))  # heavier ROI weight, finer ROI QP
    assert qoffset_for_roi_weight(8) * 51 == pytest.approx(-9.0)
    assert qoffset_for_roi_weight(60) * 51 == pytest.approx(-3 * math.log2(60))
    assert roi_weight_for_qoffset(-0.3) == pytest.approx(34.2968, abs=1e-3)  # the stream + ROI baseline's qoffset
    assert all(roi_weight_for_qoffset(qoffset_for_roi_weight(a)) == pytest.approx(a) for a in weights)


def test_engine_descriptions_name_the_mapping(random_codec):
    x264 = create_engine("x264")
    assert "CRF = 45 - 30*rate" in x264.rate_mapping and "-3*log2(alpha)" in x264.roi_weight_mapping
    neural = NeuralEngine(random_codec)
    assert "beta" in neural.rate_mapping and "alpha" in neural.roi_weight_mapping
    assert neural.roi_weight_range == random_codec.roi_weight_range and x264.roi_weight_range == (1.0, 60.0)
    with pytest.raises(ValueError, match="roi_weight"):
        x264.check(0.5, 0.5)
    with pytest.raises(ValueError, match="rate"):
        x264.check(1.5, 1.0)
    with pytest.raises(ValueError, match="engine must be one of"):
        create_engine("vp9")
    assert ENGINE_NAMES[0] == "neural" and {"x264", "x265", "h264_nvenc", "hevc_nvenc", "h264_v4l2m2m"} <= set(ENGINE_NAMES)


def test_keyframe_policy():
    policy = KeyframePolicy(3)
    flags = []
    for i in range(7):
        flags.append(policy.next_is_keyframe)
        if i == 4:
            policy.request()
            flags[-1] = policy.next_is_keyframe
        policy.coded(flags[-1])
    assert flags == [True, False, False, True, True, False, False]  # the interval counts from the requested keyframe
    never = KeyframePolicy(0)
    never.coded(True)
    assert not any(never.next_is_keyframe for _ in range(3))
    never.coded(True)  # the coder made a keyframe of its own (scene cut): counted from there
    with pytest.raises(ValueError, match="keyframe_interval"):
        KeyframePolicy(-1)
    with pytest.raises(ValueError, match="keyframe_interval"):
        KeyframePolicy(2.5)


# --------------------------------------------------------------------------------------------- x264 streams
def test_x264_stream_keyframes_interval_and_request():
    engine = create_engine("x264", classical=ClassicalSettings(scenecut=False))  # keyframes exactly where forced
    encoder, decoder = engine.stream_encoder(keyframe_interval=4), engine.stream_decoder()
    predicted, got, sizes = [], [], []
    for t in range(12):
        if t == 6:
            encoder.request_keyframe()
        predicted.append(encoder.next_is_keyframe)
        frame = encoder.encode(scene(t), boxes=BOX, rate=0.5, roi_weight=8.0)
        assert frame.format == FORMAT_H264 and annexb.is_keyframe(frame.data, "h264") == frame.keyframe
        got.append(frame.keyframe)
        sizes.append(len(frame.data))
        out = decoder.decode(frame.data, frame.format)
        assert out.shape == (96, 160, 3) and psnr(scene(t), out) > 28
    assert got == predicted == [True, False, False, False, True, False, True, False, False, False, True, False]
    assert min(sizes[i] for i in (0, 4, 6, 10)) > max(sizes[i] for i in (1, 2, 3, 5, 7))  # IDRs cost more
    encoder.set_keyframe_interval(0)  # only requested ones from now on: the coder's GOP restarts with a keyframe
    assert encoder.next_is_keyframe
    flags = [encoder.encode(scene(t), rate=0.5).keyframe for t in range(12, 20)]
    assert flags == [True] + [False] * 7


def test_late_joiner_and_lost_frames_never_give_a_wrong_picture():
    engine = create_engine("x264", classical=ClassicalSettings(scenecut=False))
    encoder = engine.stream_encoder(keyframe_interval=5)
    frames = [encoder.encode(scene(t), rate=0.6) for t in range(11)]
    assert [f.keyframe for f in frames] == [True, False, False, False, False, True, False, False, False, False, True]
    reference = engine.stream_decoder()
    expected = [reference.decode(f.data, f.format) for f in frames]
    late = engine.stream_decoder()  # joins at frame 2
    for t in (2, 3, 4):
        with pytest.raises(MissingReferenceError, match="waiting for the next keyframe"):
            late.decode(frames[t].data)
        assert not late.has_reference
    for t in range(5, 11):  # from the keyframe on: exactly what a decoder that saw everything outputs
        assert np.array_equal(late.decode(frames[t].data), expected[t])
    lossy = engine.stream_decoder()
    lossy.decode(frames[0].data)
    lossy.decode(frames[1].data)
    lossy.reset()  # the caller saw frame 2 go missing
    with pytest.raises(MissingReferenceError):
        lossy.decode(frames[3].data)
    assert np.array_equal(lossy.decode(frames[5].data), expected[5])
    assert isinstance(MissingReferenceError("x"), BitstreamError)  # the contract: a BitstreamError
    broken = bytearray(frames[6].data)
    del broken[len(broken) // 3:]
    with pytest.raises(BitstreamError):
        lossy.decode(bytes(broken) + b"\x00\x00\x01\x65")  # damaged: an error, and the reference is dropped
    assert not lossy.has_reference


def test_odd_sizes_are_cropped_by_the_display_size_sei():
    engine = create_engine("x264")
    encoder, decoder = engine.stream_encoder(keyframe_interval=3), engine.stream_decoder()
    for t in range(4):
        image = scene(t, 75, 121)
        frame = encoder.encode(image, rate=0.7)
        assert (frame.height, frame.width) == (75, 121)
        assert annexb.read_size_sei(frame.data, "h264") == ((121, 75) if frame.keyframe else None)
        out = decoder.decode(frame.data, "h264")
        assert out.shape == (75, 121, 3) and psnr(image, out) > 28
    plain = create_engine("x264").stream_encoder().encode(scene(0), rate=0.5)
    assert annexb.read_size_sei(plain.data, "h264") is None  # even sizes need no SEI


def test_roi_weight_moves_quality_into_the_boxes():
    engine = create_engine("x264")
    mask = boxes_to_mask(BOX, (96, 160))
    results = {}
    for weight in (1.0, 8.0, 40.0):
        encoder, decoder = engine.stream_encoder(keyframe_interval=10), engine.stream_decoder()
        roi, bg = [], []
        for t in range(6):
            frame = encoder.encode(scene(t), boxes=BOX, rate=0.4, roi_weight=weight)
            out = decoder.decode(frame.data)
            roi.append(psnr(scene(t), out, mask))
            bg.append(psnr(scene(t), out, 1 - mask))
        results[weight] = (np.mean(roi), np.mean(bg))
        assert frame.params["roi_qoffset"] == pytest.approx(qoffset_for_roi_weight(weight) if weight > 1 else 0.0)
    gaps = [results[w][0] - results[w][1] for w in (1.0, 8.0, 40.0)]
    assert gaps[0] < gaps[1] < gaps[2] and gaps[2] - gaps[0] > 2.0, results  # ROI gains on the background
    # a mask without boxes becomes regions around its connected parts
    assert np.array_equal(boxes_from_mask(mask), [[16, 16, 80, 64]])
    masked = engine.stream_encoder().encode(scene(0), roi_mask=mask, rate=0.4, roi_weight=40.0)
    assert masked.params["regions"] == 1


@pytest.mark.parametrize("name", ["x264", "neural"])
def test_hq_keyframes_drop_the_roi_weight_on_keyframes_only(name, random_codec):
    engine = NeuralEngine(random_codec) if name == "neural" else create_engine("x264", classical=ClassicalSettings(scenecut=False))
    h, w = (64, 96) if name == "neural" else (96, 160)
    mask = boxes_to_mask(BOX, (h, w)).astype(np.float32)
    encoder = engine.stream_encoder(keyframe_interval=3)
    encoder.keyframe_roi_weight = 1.0
    images = [scene(0, h, w).copy() for _ in range(4)]
    for t, image in enumerate(images):
        image[10 + t : 20 + t, 10:30] = 255  # a small moving object on a still background
    frames = [encoder.encode(image, roi_mask=mask, boxes=BOX, rate=0.4, roi_weight=2.0) for image in images]
    assert [f.keyframe for f in frames] == [True, False, False, True]
    assert [f.roi_weight for f in frames] == [1.0, 2.0, 2.0, 1.0]
    if name == "x264":  # no ROI regions in the keyframes, the ROI offset in the P-frames
        assert [f.params["regions"] for f in frames] == [0, 1, 1, 0]
    decoder = engine.stream_decoder()
    assert all(decoder.decode(f.data).shape == (h, w, 3) for f in frames)
    with pytest.raises(ValueError, match="roi_weight"):  # refused when set (neural) or at the next keyframe
        encoder.keyframe_roi_weight = 1000.0
        encoder.request_keyframe()
        encoder.encode(images[0], roi_mask=mask, boxes=BOX, rate=0.4, roi_weight=2.0)


def test_live_rate_change_applies_on_the_next_frame():
    engine = create_engine("x264", classical=ClassicalSettings(scenecut=False))
    sizes = {}
    for label, rates in (("steady", [0.5] * 8), ("up", [0.5] * 3 + [0.8] * 5), ("native", [0.8] * 8)):
        encoder, decoder = engine.stream_encoder(keyframe_interval=6), engine.stream_decoder()
        frames = [encoder.encode(scene(t), rate=r) for t, r in enumerate(rates)]
        for f in frames:
            decoder.decode(f.data)
        sizes[label] = [len(f.data) for f in frames]
        if label == "up":
            assert frames[3].params["frame_qp_offset"] == pytest.approx((crf_for_rate(0.8) - 30.0) / 0.6)
            assert frames[6].keyframe and frames[6].params["frame_qp_offset"] == 0.0  # reopened at CRF(0.8)
            assert encoder.reopened == 2
    # frames 3-5 (inter, offset) carry far more bits than at 0.5 and about what the native CRF gives
    up, steady, native = (sum(sizes[k][3:6]) for k in ("up", "steady", "native"))
    assert up > 1.5 * steady and 0.7 < up / native < 1.3, sizes
    assert sizes["up"][6:] == sizes["native"][6:] or abs(sum(sizes["up"][6:]) / sum(sizes["native"][6:]) - 1) < 0.1


def test_target_kbps_hook_uses_the_coders_own_abr():
    engine = create_engine("x264")
    encoder = engine.stream_encoder(keyframe_interval=0, fps=10.0)
    assert encoder.native_rate_control
    encoder.encode(scene(0), rate=0.5)
    encoder.set_target_kbps(200.0)
    assert encoder.next_is_keyframe  # a new rate-control mode restarts the stream
    frames = [encoder.encode(scene(t), rate=0.5) for t in range(1, 31)]
    assert frames[0].keyframe and frames[0].params["target_kbps"] == 200.0 and frames[0].params["crf"] is None
    kbps = 8 * sum(len(f.data) for f in frames[10:]) / 20 * 10 / 1000
    assert 100 < kbps < 400, kbps  # x264's ABR/VBV steers towards the target (tracking quality: rate-control work)
    with pytest.raises(ValueError, match="target_kbps"):
        encoder.set_target_kbps(-1)
    with pytest.raises(NotImplementedError, match="rate_control"):
        NeuralEngine(RoiCodec.random(seed=0)).stream_encoder().set_target_kbps(100.0)


def test_x265_stream_with_roi_appearing_mid_stream():
    """x265 crashed (segfault) when ROI side data first appeared on a later frame; the engine gives every x265 frame
    a region.  Run in a child process so that a crash is a failed test, not a dead test run."""
    code = textwrap.dedent("""
        import numpy as np, sys
        sys.path.insert(0, %r)
        from test_engine import scene, BOX
        from roi_codec_ros.engine import create_engine
        engine = create_engine("x265")
        encoder, decoder = engine.stream_encoder(keyframe_interval=3), engine.stream_decoder()
        for t in range(7):
            frame = encoder.encode(scene(t, 64, 128), boxes=BOX, rate=0.5, roi_weight=1.0 if t < 4 else 30.0)
            out = decoder.decode(frame.data, frame.format)
            print(t, frame.format, frame.keyframe, len(frame.data), out.shape, flush=True)
    """ % str(__import__("pathlib").Path(__file__).parent))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.split("\n")
    assert lines[6].startswith("6 hevc") and "(64, 128, 3)" in lines[6]
    assert [line.split()[2] for line in lines[:7]] == ["True", "False", "False", "True", "False", "False", "True"]


# --------------------------------------------------------------------------------------------- neural engine
def test_neural_engine_streams_p_frames_and_checks_the_model(random_codec):
    engine = NeuralEngine(random_codec)
    encoder, decoder = engine.stream_encoder(keyframe_interval=3), engine.stream_decoder()
    mask = boxes_to_mask(BOX, (64, 96)).astype(np.float32)
    base = scene(0, 64, 96)
    frames, kinds = [], []
    for i in range(5):
        image = base.copy()
        image[10 + i : 20 + i, 10:30] = 255  # a small moving object on a still background
        planned = encoder.next_is_keyframe
        frame = encoder.encode(image, roi_mask=mask, boxes=BOX, rate=0.5, roi_weight=8.0)
        assert frame.format == FORMAT_RCB1 and frame.keyframe == planned
        kinds.append(frame.keyframe)
        frames.append((image, frame))
        # a P-frame decodes to the very picture of the intra frame of the same image
        intra = random_codec.encode(image, roi_mask=mask, rate=0.5, roi_weight=8.0)
        assert np.array_equal(decoder.decode(frame.data, "rcb1"), random_codec.decode(intra.data))
    assert kinds == [True, False, False, True, False]
    assert frames[1][1].num_bytes < frames[0][1].num_bytes  # the residual of a still scene is cheap
    decoder.reset()
    assert not decoder.has_reference
    with pytest.raises(MissingReferenceError, match="no reference is held"):
        decoder.decode(frames[4][1].data, "rcb1")
    encoder.request_keyframe()
    assert encoder.next_is_keyframe and encoder.encode(base, rate=0.5).keyframe
    intra_only = engine.stream_encoder(keyframe_interval=1)
    assert all(intra_only.encode(base, rate=0.5).keyframe for _ in range(3))
    with pytest.raises(ForeignFrameError):
        decoder.decode(RoiCodec.random(seed=1).encode(base).data)
    with pytest.raises(UnsupportedFormatError):
        decoder.decode(frames[0][1].data, "h264")


def test_any_format_decoder_dispatches_by_format(random_codec):
    anyf = AnyFormatDecoder(NeuralEngine(random_codec).stream_decoder())
    assert anyf.formats == ("rcb1", "h264", "hevc")
    image = scene(1, 64, 96)
    rcb = random_codec.encode(image, rate=0.5).data
    h264 = create_engine("x264").stream_encoder().encode(image, rate=0.8).data
    assert np.array_equal(anyf.decode(rcb, "rcb1"), random_codec.decode(rcb))
    assert psnr(image, anyf.decode(h264, "h264")) > 30
    with pytest.raises(UnsupportedFormatError, match="not one this decoder decodes"):
        anyf.decode(h264, "vp9")
    with pytest.raises(BitstreamError):
        anyf.decode(rcb, "h264")  # no IDR in it
    assert AnyFormatDecoder(None).formats == ("h264", "hevc")


# --------------------------------------------------------------------------------------------- hardware
def test_hardware_encoders_are_detected_not_assumed():
    status = engine_status()
    assert status["neural"] is None and status["x264"] is None
    for name, spec in SPECS.items():
        reason, _ = probe(spec)
        assert reason == status[name]
        if reason is None:  # a machine with the hardware: the engine starts
            assert create_engine(name).format == spec.format
        else:  # here: the reason says what is missing, and the node's start-up error will say it
            assert name in reason and len(reason) > len(name) + 10
            with pytest.raises(RuntimeError, match=name):
                create_engine(name)


def test_generic_encoder_path_with_libx264_standing_in():
    """The hardware engines' code path (options, forced keyframes, ROI probe, SEI, decode) with libx264, so that
    it runs here; only the encoder name and its options differ on a machine with NVENC or V4L2."""
    options = (("preset", "veryfast"), ("tune", "zerolatency"), ("forced-idr", "1"))  # ultrafast has AQ (and ROI) off
    # constant QP: x264 turns adaptive quantisation off, and with it ROI side data; the probe measures that
    cqp = HardwareEngine.detect("libx264", HardwareSpec("libx264", FORMAT_H264, options, quality="qp"))
    assert not cqp.roi_supported and "no effect" in cqp.roi_weight_mapping and "constant QP" in cqp.rate_mapping
    assert cqp.stream_encoder().encode(scene(0), boxes=BOX, rate=0.5, roi_weight=20.0).params["regions"] == 0
    engine = HardwareEngine.detect("libx264", HardwareSpec("libx264", FORMAT_H264, options, quality="crf"))
    assert engine.roi_supported and "honoured" in engine.roi_weight_mapping and "CRF" in engine.rate_mapping
    encoder, decoder = engine.stream_encoder(keyframe_interval=3), engine.stream_decoder()
    flags = []
    for t in range(5):
        frame = encoder.encode(scene(t, 75, 121), boxes=BOX, rate=0.6, roi_weight=20.0)
        flags.append(frame.keyframe)
        assert frame.params["regions"] == 1
        assert decoder.decode(frame.data, "h264").shape == (75, 121, 3)
    assert flags == [True, False, False, True, False]
    assert encoder.encode(scene(5, 75, 121), rate=0.9).keyframe  # a rate change restarts the stream
    assert kbps_for_rate(0) == 250.0 and kbps_for_rate(1) == pytest.approx(8000.0)


# --------------------------------------------------------------------------------------------- Annex-B
def test_size_sei_round_trips_through_emulation_prevention():
    for codec in ("h264", "hevc"):
        for width, height in ((1242, 375), (1, 1), (256, 3), (0x0300, 0x0001)):
            nal = annexb.size_sei(width, height, codec)
            body = nal[4:]
            assert b"\x00\x00\x00" not in body and b"\x00\x00\x01" not in body and b"\x00\x00\x02" not in body
            access_unit = b"\x00\x00\x00\x01\x67AB" + b"\x00\x00\x01\x65slice" if codec == "h264" else \
                b"\x00\x00\x00\x01\x40\x01AB" + b"\x00\x00\x01\x26\x01slice"
            with_sei = annexb.insert_before_first_slice(access_unit, nal, codec)
            assert annexb.read_size_sei(with_sei, codec) == (width, height)
            assert with_sei.endswith((b"\x65slice", b"\x26\x01slice")) and annexb.is_keyframe(with_sei, codec)
    assert annexb.read_size_sei(b"\x00\x00\x01\x06\x05\x02ab\x80", "h264") is None  # someone else's SEI


def test_classical_engine_rejects_what_it_cannot_code():
    with pytest.raises(ValueError, match="classical encoder"):
        ClassicalSettings(encoder="vp9")
    encoder = create_engine("x264").stream_encoder()
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        encoder.encode(np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match="roi_weight"):
        encoder.encode(scene(0), roi_weight=100.0)
    assert ClassicalEngine().format == FORMAT_H264 and create_engine("x265").format == FORMAT_HEVC
