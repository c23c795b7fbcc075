"""The evaluation runs the nodes' engines through the interface, and the x264 engine *is* the evaluation's x264
stream baseline: one encoder config (``ClassicalSettings.config`` == ``VideoStreamCodec.config``) through one
coder (``X26xEncoder``), so their pictures are identical and their sizes differ only by the baseline's framing byte.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from test_engine import BOX, scene

from roi_codec_ros.cli.evaluate import build_codecs
from roi_codec_ros.engine import ClassicalEngine, ClassicalSettings, create_engine
from roi_codec_ros.engine.classical import REALTIME_COLOUR, crf_for_rate, rate_for_crf, roi_weight_for_qoffset
from roi_codec_ros.evaluation.baselines import STREAM_ROI_QOFFSET, VideoStreamCodec
from roi_codec_ros.evaluation.ours import EngineCodec, OursCodec
from roi_codec_ros.evaluation.runner import Frame, evaluate, summarize


@pytest.mark.parametrize("crf, keyint", [(26, 10), (34, None)])
def test_x264_engine_is_the_stream_baseline(crf, keyint):
    baseline = VideoStreamCodec("x264", crf, keyint=keyint, roi_qoffset=STREAM_ROI_QOFFSET)
    fitted = replace(REALTIME_COLOUR, chroma_filter="fit")  # the baselines' chroma filter
    engine = ClassicalEngine(ClassicalSettings(colour=fitted))
    rate, weight = rate_for_crf(crf), roi_weight_for_qoffset(STREAM_ROI_QOFFSET)
    assert engine.settings.config(crf_for_rate(rate), keyframe_interval=keyint or 0) == baseline.config
    ours = EngineCodec(engine, rate, weight, keyframe_interval=keyint or 0)
    for t in range(12):
        image = scene(t, 96, 160)
        a, b = baseline.encode(image, BOX), ours.encode(image, BOX)
        assert len(a) == len(b) + 1  # the baseline's leading padding byte; even sizes need no SEI
        assert a[1:] == b  # the same bytes: one coder, one config
        assert np.array_equal(baseline.decode(a), ours.decode(b))
    assert ours.keyframes == baseline.keyframes >= 1


def test_evaluation_runs_engines_through_the_interface(random_codec):
    frames = [Frame(f"{t:03d}", scene(t, 64, 96), boxes=BOX) for t in range(4)]
    x264 = [EngineCodec(create_engine("x264"), r, 8.0, keyframe_interval=2) for r in (0.3, 0.7)]
    ours = OursCodec(random_codec, 0.5, 8.0)
    records = evaluate(frames, x264 + [ours], roi_source=None, with_msssim=False, progress=False)
    rows = {(r["family"], r["setting"]): r for r in summarize(records)}
    assert rows[("x264 α=8", "rate=0.7")]["bpp"] > rows[("x264 α=8", "rate=0.3")]["bpp"]
    assert rows[("x264 α=8", "rate=0.7")]["psnr"] > rows[("x264 α=8", "rate=0.3")]["psnr"]
    assert [c.keyframes for c in x264] == [2, 2]  # frames 0 and 2 of each stream
    # the neural engine through the interface makes exactly RoiCodec's bytes
    from roi_codec_ros.evaluation.metrics import boxes_to_mask

    image = frames[0].image
    mask = boxes_to_mask(BOX, image.shape[:2]).astype(np.float32)
    assert ours.encode(image, BOX) == random_codec.encode(image, roi_mask=mask, rate=0.5, roi_weight=8.0).data


def test_engine_codec_spec():
    codecs = build_codecs(["engine:x264:k=5:preset=ultrafast:chroma=fit"], [0.2, 0.8], [1.0, 30.0])
    assert len(codecs) == 4 and {c.family for c in codecs} == {
        "x264 preset=ultrafast chroma=fit k5 α=1", "x264 preset=ultrafast chroma=fit k5 α=30"}
    c = codecs[0]
    assert c.keyframe_interval == 5 and c.engine.settings.preset == "ultrafast"
    assert c.engine.settings.colour.chroma_filter == "fit" and c.params()["format"] == "h264"
    (hq,) = build_codecs(["engine:x264:k=5:kw=1"], [0.5], [30.0])
    assert hq.family == "x264 kw=1 k5 α=30" and hq.keyframe_roi_weight == 1.0 and hq.params()["keyframe_roi_weight"] == 1.0
    for t in range(2):
        hq.encode(scene(t), boxes=BOX)
    assert hq._encoder.keyframe_roi_weight == 1.0 and hq.keyframes == 1
    for bad, reason in (("engine:", "name the engine"), ("engine:x264:q=3", "unknown option"),
                        ("engine:vp9", "engine must be one of"), ("engine:x264:k", "key=value"),
                        ("engine:x264:kw=100", "roi_weight")):
        with pytest.raises(ValueError, match=reason):
            build_codecs([bad], [0.5], [1.0])
