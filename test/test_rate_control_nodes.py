"""The node-side glue of the rate controller, without a ROS graph: encoder_core (RateControlSettings, FrameEncoder
with the controller around the engine), the statistics fields, the encoder's parameter mapping, and budget_core
(camera list, reports, which targets to send).  Untrained test codec (RoiCodec.random)."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from roi_codec_ros.detector import RoiMaskConfig
from roi_codec_ros.engine import CodedFrame
from roi_codec_ros.nodes.budget_core import TargetSender, camera_weights, report_fields
from roi_codec_ros.nodes.encoder_core import EncoderSettings, FrameEncoder, RateControlSettings, rd_slope
from roi_codec_ros.rate_control import TargetSchedule, tracking_summary

H, W = 48, 64
ROI = RoiMaskConfig(static_boxes_rel=((0.0, 0.5, 1.0, 1.0),))


def frame(i: int) -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    return np.stack([(xx * 4 + i) % 256, (yy * 4) % 256, ((xx + yy) * 2 + 3 * i) % 256], -1).astype(np.uint8)


def settings(**rc) -> EncoderSettings:
    return EncoderSettings(rate=0.5, roi_weight=4.0, roi=ROI, rate_control=RateControlSettings(**rc))


@pytest.fixture(scope="module")
def torch_one_thread():
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def test_off_codes_at_the_set_rate_and_keeps_learning(random_codec, torch_one_thread):
    enc = FrameEncoder(random_codec)
    for i in range(3):
        r = enc.encode(frame(i), settings(), now_s=0.1 * i)
        assert r.decision.reason == "off" and r.frame.rate == pytest.approx(0.5, abs=1e-4) and r.decision.rate == 0.5
        assert r.frame.roi_weight == pytest.approx(4.0, rel=1e-3)
    state = enc.rate_control_state
    assert state["target_kbps"] == 0 and state["frames"] == 3
    assert state["kbps_at_rate_max"] > state["kbps_at_rate_min"] > 0  # the model learnt while off
    assert r.rd_slope == pytest.approx(random_codec.encode(frame(2), roi_mask=None, rate=0.5).beta / (H * W))


def test_keyframe_roi_weight_codes_the_keyframes_at_it_and_is_checked(random_codec, torch_one_thread):
    enc = FrameEncoder(random_codec, keyframe_interval=3)
    hq = settings().replace(keyframe_interval=3, keyframe_roi_weight=1.0)
    hq.check(random_codec, None)
    results = [enc.encode(frame(0), hq, now_s=0.1 * i) for i in range(4)]
    assert [r.frame.keyframe for r in results] == [True, False, False, True]
    assert [r.decision.requested_roi_weight for r in results] == [1.0, 4.0, 4.0, 1.0]  # the controller plans with it
    assert [round(r.frame.roi_weight, 3) for r in results] == [1.0, 4.0, 4.0, 1.0]
    off = enc.encode(frame(0), hq.replace(keyframe_roi_weight=0.0), now_s=0.5)
    assert not off.frame.keyframe and off.frame.roi_weight == pytest.approx(4.0, rel=1e-3)
    with pytest.raises(ValueError, match="keyframe_roi_weight"):
        hq.replace(keyframe_roi_weight=100.0).check(random_codec, None)


def test_a_target_drives_the_rate_and_is_tracked_by_time(random_codec, torch_one_thread):
    enc = FrameEncoder(random_codec)
    target, fps = 20.0, 8.0  # 312 bytes per frame: inside the test codec's reach at 48x64 (96 .. 1764 bytes)
    times, sizes, rates = [], [], []
    for i in range(48):
        r = enc.encode(frame(i), settings(target_kbps=target), now_s=i / fps)
        times.append(i / fps)
        sizes.append(0 if r.skipped else len(r.frame.data))
        rates.append(r.decision.rate)
    summary = tracking_summary([t - times[8] for t in times[8:]], sizes[8:], TargetSchedule.constant(target))  # after 1 s
    assert abs(summary["mean_error"]) <= 0.10, summary
    assert len(set(np.round(rates, 3))) > 3  # the rate moved: the controller, not the fixed `rate`
    assert enc.rate_control_state["target_kbps"] == target


def test_live_changes_reach_the_controller_on_the_next_frame(random_codec, torch_one_thread):
    enc = FrameEncoder(random_codec)
    enc.encode(frame(0), settings(target_kbps=30.0), now_s=0.0)
    rc = enc.rate_controller
    assert rc.target_kbps == 30.0 and rc.config.buffer_ms == 500.0
    enc.encode(frame(1), settings(target_kbps=15.0, buffer_ms=900.0, max_frame_bytes=400, horizon_s=1.0), now_s=0.1)
    assert (rc.target_kbps, rc.config.buffer_ms, rc.config.max_frame_bytes, rc.config.horizon_s) == (15.0, 900.0, 400, 1.0)
    assert enc.rate_controller is rc  # reconfigured, not rebuilt: the learned models stay
    assert rc.config.roi_weight_limit == random_codec.roi_weight_range[1]
    enc.encode(frame(2), settings(target_kbps=15.0, roi_weight_limit=-1.0), now_s=0.2)
    assert rc.config.roi_weight_limit is None
    enc.encode(frame(3), settings(target_kbps=15.0, roi_weight_limit=20.0), now_s=0.3)
    assert rc.config.roi_weight_limit == 20.0
    # a stamp before the previous one (a restarted source) is taken as the previous one, not an error
    enc.encode(frame(4), settings(target_kbps=15.0), now_s=0.05)
    assert rc.state()["frames"] == 5


def test_skips_are_frames_without_data_and_counted(random_codec, torch_one_thread):
    enc = FrameEncoder(random_codec)
    for i in range(4):  # learn the sizes first
        enc.encode(frame(i), settings(), now_s=0.1 * i)
    results = [enc.encode(frame(i), settings(target_kbps=0.5, roi_weight_limit=-1.0), now_s=0.4 + 0.1 * i)
               for i in range(6)]  # 6 bytes per frame: far below rate 0
    skipped = [r for r in results if r.skipped]
    assert skipped and all(r.frame is None and r.decision.reason == "skip" and r.rd_slope == 0 for r in skipped)
    assert enc.rate_control_state["skipped"] == len(skipped)


def test_settings_are_checked_with_a_reason(random_codec):
    from roi_codec_ros.engine.neural import NeuralEngine

    engine = NeuralEngine(random_codec)
    for rc, words in ((dict(target_kbps=-1.0), "target_kbps"), (dict(target_kbps=float("nan")), "target_kbps"),
                      (dict(buffer_ms=0.0), "buffer_ms"), (dict(max_frame_bytes=-5), "max_frame_bytes"),
                      (dict(roi_weight_limit=0.5), "roi_weight_limit"), (dict(roi_weight_limit=500.0), "roi_weight_limit")):
        with pytest.raises(ValueError, match=words):
            settings(**rc).check(engine, None)
    settings(target_kbps=100.0, roi_weight_limit=60.0).check(engine, None)


def test_rd_slope_of_each_engine():
    neural = CodedFrame(b"x" * 10, "rcb1", True, 10, 20, 0.5, 8.0, 1.0, params={"beta": 64.0})
    assert rd_slope(neural) == pytest.approx(64.0 / 200)
    x264 = CodedFrame(b"x" * 10, "h264", True, 10, 20, 0.5, 8.0, 1.0, params={"crf": 30.0, "frame_qp_offset": 0.0})
    higher_q = CodedFrame(b"x", "h264", False, 10, 20, 0.3, 8.0, 1.0, params={"crf": 30.0, "frame_qp_offset": 3.0})
    assert rd_slope(x264) == pytest.approx(0.85 * 2 ** 6 / 200) and rd_slope(higher_q) == pytest.approx(2 * rd_slope(x264))
    assert rd_slope(CodedFrame(b"", "h264", True, 10, 20, 0.5, 8.0, 1.0, params={"crf": None})) == 0.0


def test_encoder_parameters_map_onto_the_controller():
    from roi_codec_ros.nodes.encoder_node import PARAMETERS, rate_control_fields, settings_from_parameters

    values = {p.name: p.default for p in PARAMETERS}
    assert settings_from_parameters(values).rate_control == RateControlSettings()
    values.update({"target_kbps": 800.0, "rate_control.buffer_ms": 250.0, "rate_control.max_frame_bytes": 9000,
                   "rate_control.horizon_s": 1.5, "rate_control.roi_weight_limit": -1.0})
    assert settings_from_parameters(values).rate_control == RateControlSettings(800.0, 250.0, 9000, 1.5, -1.0)
    fields = rate_control_fields({"target_kbps": 800.0, "last_reason": "track", "skipped": 2, "roi_weight_changed": 1,
                                  "buffer_fullness": 0.5, "buffer_delay_ms": 250.0, "kbps_at_rate_min": 100.0,
                                  "kbps_at_rate_max": 900.0})
    assert fields == {"target_kbps": 800.0, "rc_reason": "track", "frames_skipped_rate_control": 2,
                      "rc_roi_weight_changed": 1, "rc_buffer_fullness": 0.5, "rc_buffer_delay_ms": 250.0,
                      "kbps_at_rate_min": 100.0, "kbps_at_rate_max": 900.0}
    assert rate_control_fields({})["rc_reason"] == "" and rate_control_fields({})["kbps_at_rate_max"] == 0.0
    from roi_codec_ros.msg import EncoderStatistics

    msg = EncoderStatistics()
    for name, value in fields.items():
        setattr(msg, name, value)  # every field exists in the message
    msg.rd_slope = 0.1


def test_camera_weights():
    assert camera_weights(["a/encoder", "b/encoder"], [2, 1]) == {"a/encoder": 2.0, "b/encoder": 1.0}
    assert camera_weights(["a", "b", "c"], []) == {"a": 1.0, "b": 1.0, "c": 1.0}
    assert camera_weights(["a", "b"], [3.0]) == {"a": 3.0, "b": 3.0}
    for cams, weights, words in (([], [1.0], "non-empty"), (["a", "a"], [1, 1], "repeat"), (["a", ""], [1, 1], "non-empty"),
                                 (["a", "b"], [1, 2, 3], "one number per camera"), (["a", "b"], [1, 0], "> 0"),
                                 (["a", "b"], [1, float("inf")], "> 0"), (["a"], "none", "list"), (["a"], [True], "numbers")):
        with pytest.raises(ValueError, match=words):
            camera_weights(cams, weights)


def test_report_fields_from_statistics():
    msg = SimpleNamespace(has_frame=True, roi_coverage=0.25, rd_slope=0.002, bitrate_kbps=480.0, kbps_at_rate_min=100.0,
                          kbps_at_rate_max=0.0)
    assert report_fields(msg) == {"roi_coverage": 0.25, "rd_slope": 0.002, "achieved_kbps": 480.0, "kbps_min": 100.0,
                                  "kbps_max": None}  # 0 = unknown (before the first frame): no cap
    assert report_fields(SimpleNamespace(**{**vars(msg), "has_frame": False})) is None


def test_target_sender_sends_changes_once_and_retries_failures():
    s = TargetSender()
    assert s.due({"a": 100.0, "b": 50.0}) == {"a": 100.0, "b": 50.0}
    s.started("a", 100.0)
    s.started("b", 50.0)
    assert s.due({"a": 120.0, "b": 50.0}) == {}  # both in flight
    s.finished("a", True)
    s.finished("b", False)
    assert s.due({"a": 100.2, "b": 50.0}) == {"b": 50.0}  # a: within 0.5 %; b: refused, sent again
    assert s.due({"a": 101.0, "b": 50.0}) == {"a": 101.0, "b": 50.0}
    assert (s.sent, s.failed) == (2, 1)


def x264_engine():
    from roi_codec_ros.engine import ClassicalSettings, create_engine, engine_status

    reason = engine_status(probe_hardware=False)["x264"]
    if reason:
        pytest.skip(f"x264 not usable here: {reason}")
    return create_engine("x264", classical=ClassicalSettings(scenecut=False))


def test_x264_auto_uses_its_own_abr_and_applies_a_new_target_at_the_next_keyframe():
    enc = FrameEncoder(x264_engine(), keyframe_interval=5, rate_control=RateControlSettings(target_kbps=40.0))
    assert enc.native and enc.rate_control_state["target_kbps"] == 40.0
    s = EncoderSettings(roi=ROI, keyframe_interval=5, rate_control=RateControlSettings(target_kbps=40.0))
    first = enc.encode(frame(0), s, now_s=0.0)
    assert first.frame.params["target_kbps"] == 40.0 and first.frame.params["crf"] is None  # x264's ABR
    assert enc.rate_control_state["last_reason"] == "native" and "kbps_at_rate_max" not in enc.rate_control_state
    s = s.replace(rate_control=RateControlSettings(target_kbps=20.0))
    kinds = [enc.encode(frame(i), s, now_s=0.1 * i).frame for i in range(1, 7)]
    # frames 1-4 are P-frames at the old target (no extra IDR); frame 5 is the scheduled keyframe: the new one
    assert [f.keyframe for f in kinds] == [False, False, False, False, True, False]
    assert [f.params["target_kbps"] for f in kinds] == [40.0] * 4 + [20.0] * 2
    assert enc.rate_control_state["target_kbps"] == 20.0 and enc.rate_control_state["skipped"] == 0


def test_x264_controller_mode_drives_the_rate_per_frame():
    enc = FrameEncoder(x264_engine(), keyframe_interval=5,
                       rate_control=RateControlSettings(target_kbps=40.0, mode="controller"))
    s = EncoderSettings(roi=ROI, keyframe_interval=5, rate_control=RateControlSettings(target_kbps=40.0, mode="controller"))
    frames = [enc.encode(frame(i), s, now_s=0.1 * i) for i in range(6)]
    assert not enc.native and enc._rc_keyint == 5  # noqa: SLF001 - the GOP hint given to the controller (I/P planning)
    assert all(r.frame is None or r.frame.params["crf"] is not None for r in frames)  # CRF from our rate
    assert enc.rate_control_state["last_reason"] != "native" and "kbps_at_rate_max" in enc.rate_control_state
    with pytest.raises(ValueError, match="rate_control.mode"):
        RateControlSettings(mode="x").check(enc.engine)
