"""Engines behind the nodes, in-process on a real ROS graph: the EncodedFrames of the x264 and neural engines
(formats h264 and rcb1, keyframes), the keyframe-request loop between decoder and encoder (a decoder that joins
mid-stream outputs its first frame at a keyframe; a dropped message is followed by an on-demand keyframe; nothing
is published while the decoder waits), ``ros2 param describe`` texts built from the engine, and the precision parameters.

The probe relays the encoder's frames to the decoder (whose base topic is remapped to ``relay_raw``) so that the
test decides which messages the decoder gets, and relays the decoder's keyframe requests back to the encoder.
"""
from __future__ import annotations

import threading

import numpy as np
import pytest
from test_engine import scene
from test_ros_nodes import WAIT_S, Recorder, best_effort, graph, image_msg, params, reliable, stamp_ns, wait_for  # noqa: F401

from roi_codec_ros.codec.api import cpu_supports_bf16
from roi_codec_ros.evaluation.metrics import psnr

H, W = 96, 160


def encoder(graph, namespace: str, **values):
    from roi_codec_ros.nodes.encoder_node import EncoderNode

    values = {"model_path": "random", "detector__weights": "none", **values}
    return graph.add(EncoderNode(context=graph.context, namespace=namespace, parameter_overrides=params(**values)))


def decoder(graph, namespace: str, base: str = "image_raw", **values):
    from roi_codec_ros.nodes.decoder_node import DecoderNode

    values = {"model_path": "random", **values}
    return graph.add(DecoderNode(context=graph.context, namespace=namespace, parameter_overrides=params(**values),
                                 cli_args=["--ros-args", "-r", f"image_raw:={base}"]))


class Relay:
    """Encoder frames -> decoder (except the sequence numbers in ``drop``), decoder requests -> encoder."""

    def __init__(self, probe):
        from roi_codec_ros.msg import EncodedFrame, KeyframeRequest

        self.lock = threading.Lock()
        self.drop: set[int] = set()
        self.relayed, self.requests = [], []
        self.to_decoder = probe.create_publisher(EncodedFrame, "relay_raw/roi_codec", reliable(50))
        self.to_encoder = probe.create_publisher(KeyframeRequest, "image_raw/roi_codec/keyframe_request", reliable())
        probe.create_subscription(EncodedFrame, "image_raw/roi_codec", self._on_frame, best_effort())
        probe.create_subscription(KeyframeRequest, "relay_raw/roi_codec/keyframe_request", self._on_request, reliable())

    def _on_frame(self, msg):
        with self.lock:
            if msg.sequence in self.drop:
                return
            self.relayed.append(msg.sequence)
        self.to_decoder.publish(msg)

    def _on_request(self, msg):
        with self.lock:
            self.requests.append(msg)
        self.to_encoder.publish(msg)


@pytest.mark.parametrize("engine, fmt", [("x264", "h264"), ("neural", "rcb1")])
def test_keyframes_on_request_for_a_late_decoder_and_after_a_lost_message(graph, engine, fmt):
    from sensor_msgs.msg import Image

    from roi_codec_ros.codec import RoiCodec
    from roi_codec_ros.msg import DecoderStatistics, EncodedFrame, EncoderStatistics

    ns = graph.namespace(engine)
    # keyframes only at the start and on request: every keyframe after the first is an answer to a decoder
    extra = {"classical__scenecut": False} if engine == "x264" else {}
    enc = encoder(graph, ns, engine=engine, keyframe_interval=0, keyframe_request_min_interval_s=0.0,
                  roi__static_boxes_rel=[0.0, 0.5, 1.0, 1.0], **extra)
    described = {d.name: d.description for d in enc.describe_parameters(["rate", "roi_weight"])}
    if engine == "x264":
        assert "CRF = 45 - 30*rate" in described["rate"] and "-3*log2(alpha)" in described["roi_weight"]
    probe = graph.probe(ns)
    frames = Recorder(probe, EncodedFrame, "image_raw/roi_codec", best_effort())
    enc_stats = Recorder(probe, EncoderStatistics, "encoder/statistics")
    images = probe.create_publisher(Image, "image_raw", reliable())
    wait_for(lambda: images.get_subscription_count() > 0, WAIT_S, "the encoder to subscribe")
    relay = Relay(probe)
    sources = {}

    def send(t: int):
        sources[t] = scene(t, H, W)
        images.publish(image_msg(sources[t], "rgb8", 100 + t))
        return wait_for(lambda: next((f for f in frames.all() if f.header.stamp.sec == 100 + t), None), WAIT_S,
                        f"the EncodedFrame of source frame {t}")

    first = [send(t) for t in range(3)]  # before any decoder exists
    assert [(f.format, f.keyframe, f.sequence) for f in first] == [(fmt, True, 0), (fmt, False, 1), (fmt, False, 2)]

    dec = decoder(graph, ns, base="relay_raw", keyframe_request_period_s=0.05)
    decoded = Recorder(probe, Image, "image", best_effort())
    dec_stats = Recorder(probe, DecoderStatistics, "decoder/statistics")
    wait_for(lambda: relay.to_decoder.get_subscription_count() > 0 and relay.to_encoder.get_subscription_count() > 0,
             WAIT_S, "decoder and encoder to match the relay")

    def decoder_saw(t: int):
        return wait_for(lambda: next((s for s in dec_stats.all() if s.has_frame and s.header.stamp.sec == 100 + t), None),
                        WAIT_S, f"decoder statistics of frame {t}")

    # joins mid-stream at an inter frame: not decoded, not published, a keyframe is requested
    assert not send(3).keyframe
    joined = decoder_saw(3)
    assert (joined.frames_no_reference, joined.frames_decoded, joined.waiting_for_keyframe) == (1, 0, True)
    wait_for(lambda: relay.requests, WAIT_S, "the decoder's keyframe request")
    assert relay.requests[0].reason == "joined" and relay.requests[0].requester.endswith("/decoder")
    wait_for(lambda: (enc_stats.last() or EncoderStatistics()).keyframe_requests >= 1, WAIT_S, "the encoder to get it")
    answer = send(4)
    assert answer.keyframe  # the requested keyframe, on the next frame
    decoder_saw(4)
    first_image = wait_for(lambda: decoded.all(), WAIT_S, "the first decoded image")[0]
    assert first_image.header.stamp.sec == 104  # the first image is the keyframe's
    assert send(5).keyframe is False and decoder_saw(5).frames_decoded == 2

    # a message lost on the way (frame 6): frame 7 is not decoded, the decoder asks, frame 8 is a keyframe
    relay.drop.add(6)
    send(6)
    assert not send(7).keyframe
    lost = decoder_saw(7)
    assert lost.frames_lost == 1 and lost.frames_no_reference == 2 and lost.waiting_for_keyframe
    wait_for(lambda: len(relay.requests) >= 2, WAIT_S, "a second keyframe request")
    assert relay.requests[-1].reason == "gap" and relay.requests[-1].last_sequence == 7
    wait_for(lambda: enc_stats.last().keyframe_requests >= 2, WAIT_S, "the encoder to get the second request")
    assert send(8).keyframe
    recovered = decoder_saw(8)
    assert recovered.frames_decoded == 3 and not recovered.waiting_for_keyframe
    got = wait_for(lambda: decoded.all() if len(decoded.all()) >= 3 else None, WAIT_S, "three decoded images")
    assert [m.header.stamp.sec for m in got] == [104, 105, 108]  # never 103 or 107 (no reference): no garbage
    intra = RoiCodec.random(seed=0)  # the nodes' test model
    mask = np.zeros((H, W), np.float32)
    mask[H // 2 :] = 1.0
    for m in got:
        image = np.frombuffer(bytes(m.data), np.uint8).reshape(H, W, 3)
        source = sources[m.header.stamp.sec - 100]
        if engine == "x264":
            assert psnr(source, image) > 28
        else:  # a P-frame decodes to the very picture of the intra frame (the untrained model's: no PSNR to test)
            expected = intra.decode(intra.encode(source, roi_mask=mask, rate=0.5, roi_weight=8.0).data)
            assert np.array_equal(image, expected)
    stats = enc_stats.last()
    assert stats.engine == engine and stats.format == fmt and stats.frames_keyframe == 3  # start + two requests
    graph.remove(dec)
    graph.remove(enc)


def test_engine_and_precision_parameters_fail_start_with_the_reason(graph):
    from roi_codec_ros.engine import engine_status
    from roi_codec_ros.nodes.ros_params import ParameterError
    from roi_codec_ros.nodes.runtime import StartupError

    ns = graph.namespace("prec")
    with pytest.raises(ParameterError, match="engine='vp9' is not one of neural, x264"):
        encoder(graph, ns, engine="vp9")
    with pytest.raises(ValueError, match="fp16 is only supported on CUDA"):
        encoder(graph, ns, analysis_precision="fp16")
    unusable = [name for name, reason in engine_status().items() if reason]
    for name in unusable:  # hardware encoders this machine does not have: the probe's reason, no guessing
        with pytest.raises(StartupError, match=f"engine '{name}' cannot run here: {name}"):
            encoder(graph, ns, engine=name)
    if cpu_supports_bf16():
        node = decoder(graph, ns, precision="fast")
        assert node.core.codec.precision == "fast"
        graph.remove(node)
    else:
        with pytest.raises(ValueError, match="bf16"):
            decoder(graph, ns, precision="fast")
    node = decoder(graph, ns, model_path="none")  # h264/hevc only: no model loaded
    assert node.core.codec is None and node.core.formats == ("h264", "hevc")
    graph.remove(node)
