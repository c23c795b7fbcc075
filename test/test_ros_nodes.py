"""The node classes on a real ROS graph: in-process (encoder/decoder nodes and a probe node in one rclpy context,
untrained test codec) for topics, parameters, QoS overrides and statistics; separate processes for what only
processes show: large frames through the project's Fast DDS profile, and how fast every node exits on SIGINT.

In-process tests drive the nodes with ``node.set_parameters`` (the same callbacks the parameter service runs) and
wait on conditions, never on fixed sleeps.  The process tests run this file as a script for their roles, like
test_ros_smoke.py.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from ros_helpers import console_script, ros_env, wait_for

HERE = Path(__file__).resolve()
WAIT_S = 60.0
STARTUP_S = 180.0  # node processes importing torch on a loaded 2-core machine
EXIT_LIMIT_S = 2.0  # every node must exit this soon after SIGINT
BIG_W, BIG_H = 4096, 3072  # a 12 MP rgb8 camera frame: 37.7 MB
BIG_FRAME_BYTES = 20_000_000  # a large EncodedFrame payload
BIG_COUNT = 3


def stamp_ns(header) -> int:
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


class Graph:
    """One rclpy context with an executor spinning in a thread; nodes are added and removed per test."""

    def __init__(self):
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor

        self.rclpy = rclpy
        self.context = Context()
        rclpy.init(context=self.context, args=[])
        self.executor = SingleThreadedExecutor(context=self.context)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()
        self.nodes = []
        self._count = 0

    def namespace(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}_{os.getpid()}_{self._count}"

    def add(self, node):
        self.nodes.append(node)
        self.executor.add_node(node)
        return node

    def probe(self, namespace: str):
        return self.add(self.rclpy.create_node(f"probe_{self._count}", namespace=namespace, context=self.context))

    def remove(self, node) -> None:
        self.executor.remove_node(node)
        close = getattr(node, "close", None)
        if close is not None:
            close()
        node.destroy_node()
        self.nodes.remove(node)

    def close(self) -> None:
        for node in list(self.nodes):
            self.remove(node)
        self.executor.shutdown(timeout_sec=5)
        self.thread.join(timeout=5)
        self.context.try_shutdown()


@pytest.fixture(scope="module")
def graph():
    g = Graph()
    try:
        yield g
    finally:
        g.close()


def params(**values):
    from rclpy.parameter import Parameter

    return [Parameter(name.replace("__", "."), value=value) for name, value in values.items()]


def reliable(depth: int = 10):
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    return QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE)


def best_effort(depth: int = 50):
    """What subscribes to the nodes' sensor-data publishers (a reliable subscription would not match them)."""
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    return QoSProfile(depth=depth, reliability=ReliabilityPolicy.BEST_EFFORT)


class Recorder:
    """Collects messages of one topic (thread-safe)."""

    def __init__(self, probe, msg_type, topic: str, qos=None):
        self.lock = threading.Lock()
        self.messages = []
        probe.create_subscription(msg_type, topic, self._on, qos or reliable(50))

    def _on(self, msg):
        with self.lock:
            self.messages.append(msg)

    def all(self) -> list:
        with self.lock:
            return list(self.messages)

    def last(self):
        with self.lock:
            return self.messages[-1] if self.messages else None


def image_msg(rgb: np.ndarray, encoding: str, stamp: int, frame_id: str = "cam"):
    from sensor_msgs.msg import Image

    from roi_codec_ros.nodes.images import rgb_to_image_data
    from roi_codec_ros.nodes.runtime import message

    if encoding in ("rgb8", "bgr8", "mono8"):
        step, data = rgb_to_image_data(rgb, encoding)
    else:  # an encoding the nodes do not support (rgba8): a well-formed message they must reject
        data = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=2).tobytes()
        step = rgb.shape[1] * 4
    msg = message(Image, height=rgb.shape[0], width=rgb.shape[1], encoding=encoding, is_bigendian=0, step=step)
    msg.data = data
    msg.header.stamp.sec, msg.header.stamp.nanosec = stamp, 0
    msg.header.frame_id = frame_id
    return msg


def rgb(h=64, w=96, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def publisher_to(probe, msg_type, topic: str, node):
    pub = probe.create_publisher(msg_type, topic, reliable())
    wait_for(lambda: pub.get_subscription_count() > 0, WAIT_S, f"{node.get_name()} to subscribe {topic}")
    return pub


def encoder(graph, namespace: str, **values):
    from roi_codec_ros.nodes.encoder_node import EncoderNode

    values = {"model_path": "random", "detector__weights": "none", **values}
    return graph.add(EncoderNode(context=graph.context, namespace=namespace, parameter_overrides=params(**values)))


def decoder(graph, namespace: str, **values):
    from roi_codec_ros.nodes.decoder_node import DecoderNode

    values = {"model_path": "random", **values}
    return graph.add(DecoderNode(context=graph.context, namespace=namespace, parameter_overrides=params(**values)))


# ------------------------------------------------------------------------------------------ params files
@pytest.mark.parametrize("config, module, name", [("encoder.yaml", "encoder_node", "EncoderNode"),
                                                  ("decoder.yaml", "decoder_node", "DecoderNode"),
                                                  ("source.yaml", "source_node", "SourceNode"),
                                                  ("budget.yaml", "budget_node", "BudgetNode")])
def test_shipped_params_files_load_into_the_nodes(config, module, name):
    """rcl's YAML parser (not PyYAML) reads each config file; the node then holds exactly its declared defaults
    (`static_boxes: none` arrives as the string 'none', no unknown-parameter warning)."""
    import importlib

    import rclpy
    from rclpy.context import Context

    mod = importlib.import_module(f"roi_codec_ros.nodes.{module}")
    context = Context()
    rclpy.init(context=context, args=["--ros-args", "--params-file", str(HERE.parents[1] / "config" / config)])
    test_only = {"model_path": "random", "detector.weights": "none"}  # no model or detector files needed
    overrides = [_param(k, v) for k, v in test_only.items() if any(p.name == k for p in mod.PARAMETERS)]
    node = getattr(mod, name)(context=context, namespace=f"cfg_{os.getpid()}", parameter_overrides=overrides)
    try:
        got = {p.name: node.get_parameter(p.name).value for p in mod.PARAMETERS}
        expected = {p.name: test_only.get(p.name, p.default) for p in mod.PARAMETERS}
        assert {k: list(v) if isinstance(v, (list, tuple)) or hasattr(v, "typecode") else v for k, v in got.items()} == expected
    finally:
        close = getattr(node, "close", None)
        if close:
            close()
        node.destroy_node()
        context.try_shutdown()


# ------------------------------------------------------------------------------------------ encoder in-process
def test_encoder_frames_and_a_detections_publisher_only_while_enabled(graph, random_codec):
    from sensor_msgs.msg import Image

    from roi_codec_ros.msg import Detections, EncodedFrame

    ns = graph.namespace("det")
    node = encoder(graph, ns, detector__weights="random", detector__imgsz=64, roi__classes=["*"], roi__confidence=0.0,
                   roi__static_boxes_rel=[0.0, 0.5, 1.0, 1.0])
    detections_topic = f"/{ns}/detections"
    assert node.count_publishers(detections_topic) == 0  # not declared while publish_detections is off
    probe = graph.probe(ns)
    frames = Recorder(probe, EncodedFrame, "image_raw/roi_codec", best_effort())
    detections = Recorder(probe, Detections, "detections", best_effort())
    images = publisher_to(probe, Image, "image_raw", node)

    assert node.set_parameters(params(publish_detections=True))[0].successful
    assert node.count_publishers(detections_topic) == 1
    wait_for(lambda: node.detections_pub.get_subscription_count() > 0, WAIT_S, "the probe to match the detections publisher")
    sources = {10 + i: rgb(48, 80, seed=i) for i in range(2)}
    for stamp, image in sources.items():
        images.publish(image_msg(image, "bgr8", stamp))
        wait_for(lambda: any(stamp_ns(f.header) == stamp * 10**9 for f in frames.all()), WAIT_S, "the encoded frame")
    got = wait_for(lambda: detections.all() if len(detections.all()) >= 2 else None, WAIT_S, "Detections messages")
    assert {stamp_ns(d.header) for d in got} == {s * 10**9 for s in sources}
    assert all((d.width, d.height) == (80, 48) for d in got)

    encoded = frames.all()
    assert [f.sequence for f in encoded] == [0, 1]  # numbered as published
    assert encoded[0].keyframe  # a stream starts with an I-frame; the next may be a P-frame (keyframe_interval 10)
    decoder = random_codec.stream_decoder()
    for f in encoded:
        assert (f.format, f.source_encoding, f.header.frame_id) == (EncodedFrame.FORMAT_RCB1, "bgr8", "cam")
        assert decoder.decode(bytes(f.data)).shape == (48, 80, 3)
        static = [b for b in f.boxes if b.class_id == -1]
        assert [(b.x1, b.y1, b.x2, b.y2, b.class_name) for b in static] == [(0.0, 24.0, 80.0, 48.0, "static")]

    assert node.set_parameters(params(publish_detections=False))[0].successful
    wait_for(lambda: node.count_publishers(detections_topic) == 0, WAIT_S, "the detections publisher to go")
    graph.remove(node)


def test_publish_detections_without_a_detector_is_rejected(graph):
    node = encoder(graph, graph.namespace("nodet"))
    result = node.set_parameters(params(publish_detections=True))[0]
    assert not result.successful and "needs a detector" in result.reason
    assert node.get_parameter("publish_detections").value is False
    graph.remove(node)


def test_max_rate_skips_frames_and_counts_them(graph):
    from sensor_msgs.msg import Image

    from roi_codec_ros.msg import EncoderStatistics

    ns = graph.namespace("maxrate")
    node = encoder(graph, ns, max_rate=1.0, statistics_period_s=0.1)
    probe = graph.probe(ns)
    stats = Recorder(probe, EncoderStatistics, "encoder/statistics")
    images = publisher_to(probe, Image, "image_raw", node)
    n = 10
    t0 = time.monotonic()
    for i in range(n):
        images.publish(image_msg(rgb(seed=i), "rgb8", 100 + i))
        time.sleep(0.05)

    def settled():
        s = stats.last()
        return s if s is not None and s.frames_received == n and s.frames_encoded + s.frames_dropped == n else None

    s = wait_for(settled, WAIT_S, "every frame to be encoded or dropped")
    bound = 1 + int((time.monotonic() - t0) * 1.0)  # the limiter admits one frame per second of receive time
    assert 1 <= s.frames_encoded <= bound and s.frames_dropped >= n - bound, (s.frames_encoded, s.frames_dropped, bound)
    graph.remove(node)


def test_live_class_weights_change_the_next_frames_and_bad_values_are_rejected(graph):
    """A fixed frame with fixed detections (a car and a traffic light): setting roi.class_weights lowers the car's
    mask on the next frame (roi_coverage in ~/statistics) and its bytes; a rejected value leaves the old one in force
    (the next frame is coded exactly as before); 'none' restores the first frame's coding."""
    from sensor_msgs.msg import Image

    from ros_helpers import FixedDetector, car_and_traffic_light
    from roi_codec_ros.msg import EncodedFrame, EncoderStatistics

    ns = graph.namespace("weights")
    # intra frames (keyframe_interval 1): the same image with the same settings gives the same bytes
    node = encoder(graph, ns, roi_weight=16.0, roi__margin_px=0.0, statistics_period_s=60.0, keyframe_interval=1)
    node.core.detector = FixedDetector(car_and_traffic_light())  # before the first frame; the codec zero-fills features
    probe = graph.probe(ns)
    frames = Recorder(probe, EncodedFrame, "image_raw/roi_codec", best_effort())
    stats = Recorder(probe, EncoderStatistics, "encoder/statistics")
    images = publisher_to(probe, Image, "image_raw", node)
    image = rgb(64, 128, seed=7)

    def coded(stamp):
        images.publish(image_msg(image, "rgb8", stamp))
        s = wait_for(lambda: next((m for m in stats.all() if m.has_frame and m.header.stamp.sec == stamp), None),
                     WAIT_S, f"statistics of frame {stamp}")
        f = wait_for(lambda: next((m for m in frames.all() if m.header.stamp.sec == stamp), None), WAIT_S, f"frame {stamp}")
        assert s.bytes == len(f.data)
        return s.roi_coverage, bytes(f.data)

    car, light, pixels = 80 * 48, 10 * 30, 64 * 128
    coverage, full = coded(1)
    assert coverage == pytest.approx((car + light) / pixels)
    assert node.set_parameters(params(roi__class_weights=["car=0.25", "traffic light=1.0"]))[0].successful
    coverage, lowered = coded(2)
    assert coverage == pytest.approx((0.25 * car + light) / pixels)
    assert len(lowered) < len(full)

    for bad, reason in ((["car=2"], "in [0, 1]"), (["forklift=0.5"], "unknown classes ['forklift'] in roi.class_weights"),
                        (["car"], "'class=weight'"), (0.5, "must be 'none'")):
        result = node.set_parameters(params(roi__class_weights=bad))[0]
        assert not result.successful and reason in result.reason, (bad, result.reason)
    # the same through the parameter service (what `ros2 param set` / roi-param call)
    from rclpy.parameter_client import AsyncParameterClient

    client = AsyncParameterClient(probe, node.get_fully_qualified_name())
    assert client.wait_for_services(timeout_sec=WAIT_S)
    future = client.set_parameters(params(roi__class_weights=["car=-1"]))
    answer = wait_for(lambda: future.result() if future.done() else None, WAIT_S, "the set_parameters service").results[0]
    assert not answer.successful and "in [0, 1]" in answer.reason
    assert list(node.get_parameter("roi.class_weights").value) == ["car=0.25", "traffic light=1.0"]
    coverage, kept = coded(3)
    assert coverage == pytest.approx((0.25 * car + light) / pixels) and kept == lowered

    assert node.set_parameters(params(roi__class_weights="none"))[0].successful
    coverage, restored = coded(4)
    assert coverage == pytest.approx((car + light) / pixels) and restored == full
    graph.remove(node)


def test_live_latent_gain_applies_on_the_next_frame_and_bad_values_are_rejected(graph):
    """roi.latent_gain: a live set makes the next frames version-2 frames (a gain map) with more bytes and the
    decoder node decodes them; out-of-range values are rejected and the old gain stays; 1.0 gives the first frame's
    bytes again."""
    from sensor_msgs.msg import Image

    from ros_helpers import FixedDetector, car_and_traffic_light
    from roi_codec_ros.msg import EncodedFrame

    ns = graph.namespace("gain")
    node = encoder(graph, ns, roi_weight=16.0, roi__margin_px=0.0, statistics_period_s=60.0, keyframe_interval=1)
    node.core.detector = FixedDetector(car_and_traffic_light())
    probe = graph.probe(ns)
    frames = Recorder(probe, EncodedFrame, "image_raw/roi_codec", best_effort())
    images = publisher_to(probe, Image, "image_raw", node)
    image = rgb(64, 128, seed=7)

    def coded(stamp):
        images.publish(image_msg(image, "rgb8", stamp))
        return bytes(wait_for(lambda: next((m for m in frames.all() if m.header.stamp.sec == stamp), None), WAIT_S,
                              f"frame {stamp}").data)

    plain = coded(1)
    assert plain[:4] == b"RCB\x01"
    assert node.set_parameters(params(roi__latent_gain=4.0))[0].successful
    gained = coded(2)
    assert gained[:4] == b"RCB\x02" and len(gained) > len(plain)
    from roi_codec_ros.codec import RoiCodec

    assert RoiCodec.random(seed=0).decode(gained).shape == image.shape  # the node's test model decodes it
    for bad in (0.5, 8.5):
        result = node.set_parameters(params(roi__latent_gain=bad))[0]
        assert not result.successful, bad
    assert node.get_parameter("roi.latent_gain").value == 4.0
    assert coded(3) == gained
    assert node.set_parameters(params(roi__latent_gain=1.0))[0].successful
    assert coded(4) == plain
    graph.remove(node)


def test_qos_overrides_use_the_standard_parameters(graph):
    from rclpy.qos import ReliabilityPolicy

    ns = graph.namespace("qos")
    base = f"/{ns}/image_raw"
    plain = encoder(graph, ns + "_plain")
    info = plain.get_subscriptions_info_by_topic(f"/{ns}_plain/image_raw")
    assert info[0].qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT  # qos_profile_sensor_data
    graph.remove(plain)

    overrides = {f"qos_overrides.{base}.subscription.reliability": "reliable",
                 f"qos_overrides.{base}/roi_codec.publisher.reliability": "reliable"}
    from roi_codec_ros.nodes.encoder_node import EncoderNode

    node = graph.add(EncoderNode(context=graph.context, namespace=ns, parameter_overrides=params(
        model_path="random", detector__weights="none") + [_param(k, v) for k, v in overrides.items()]))
    assert node.get_subscriptions_info_by_topic(base)[0].qos_profile.reliability == ReliabilityPolicy.RELIABLE
    assert node.get_publishers_info_by_topic(f"{base}/roi_codec")[0].qos_profile.reliability == ReliabilityPolicy.RELIABLE
    name = f"qos_overrides.{base}.subscription.reliability"
    assert node.describe_parameter(name).read_only  # QoS is fixed once the subscription exists
    assert not node.set_parameters([_param(name, "best_effort")])[0].successful
    graph.remove(node)

    with pytest.raises(RuntimeError, match="QoS override"):  # run_node turns this into a "cannot start" line
        EncoderNode(context=graph.context, namespace=ns + "_bad", parameter_overrides=params(
            model_path="random", detector__weights="none") + [_param(f"qos_overrides./{ns}_bad/image_raw.subscription.reliability", "sometimes")])


def _param(name, value):
    from rclpy.parameter import Parameter

    return Parameter(name, value=value)


def test_statistics_are_published_on_a_timer_when_every_frame_fails(graph):
    from sensor_msgs.msg import Image

    from roi_codec_ros.msg import DecoderStatistics, EncodedFrame, EncoderStatistics

    ns = graph.namespace("stats")
    node = encoder(graph, ns, statistics_period_s=0.2)
    dec = decoder(graph, ns, statistics_period_s=0.2)
    probe = graph.probe(ns)
    enc_stats = Recorder(probe, EncoderStatistics, "encoder/statistics")
    dec_stats = Recorder(probe, DecoderStatistics, "decoder/statistics")
    frames = Recorder(probe, EncodedFrame, "image_raw/roi_codec", best_effort())
    images = publisher_to(probe, Image, "image_raw", node)
    # nothing received yet: the decoder still reports, from its timer
    idle = wait_for(lambda: dec_stats.last(), WAIT_S, "periodic decoder statistics")
    assert not idle.has_frame and idle.frames_received == 0 and idle.header.stamp.sec > 0
    for i in range(3):
        images.publish(image_msg(rgb(seed=i), "rgba8", 200 + i))  # unsupported encoding: every frame fails

    def settled():
        # latest-frame-wins may drop a frame that waited behind another: every frame failed or was dropped
        s = enc_stats.last()
        return s if s is not None and s.frames_received == 3 and s.frames_failed + s.frames_dropped == 3 else None

    s = wait_for(settled, WAIT_S, "periodic encoder statistics accounting for the 3 failing frames")
    assert not s.has_frame and s.frames_failed >= 1 and s.frames_encoded == 0 and s.header.frame_id == ""
    assert all(not m.has_frame for m in enc_stats.all())  # no frame was encoded: only timer messages
    assert frames.all() == []
    graph.remove(node)
    graph.remove(dec)


# ------------------------------------------------------------------------------------------ decoder in-process
def _encoded(frame_bytes: bytes, stamp: int, encoding: str = "rgb8", fmt: str = "rcb1", boxes=()):
    from roi_codec_ros.msg import EncodedFrame, RoiBox
    from roi_codec_ros.nodes.runtime import message

    msg = message(EncodedFrame, format=fmt, source_encoding=encoding, keyframe=True, sequence=stamp,
                  boxes=[message(RoiBox, x1=b[0], y1=b[1], x2=b[2], y2=b[3], class_id=-1, class_name="static", score=1.0)
                         for b in boxes])
    msg.data = frame_bytes
    msg.header.stamp.sec = stamp
    msg.header.frame_id = "cam"
    return msg


def test_decoder_republishes_in_the_source_encoding_and_counts_bad_frames(graph, random_codec):
    from sensor_msgs.msg import Image

    from roi_codec_ros.codec import RoiCodec
    from roi_codec_ros.msg import DecoderStatistics, EncodedFrame
    from roi_codec_ros.nodes.images import rgb_to_image_data

    ns = graph.namespace("dec")
    node = decoder(graph, ns, overlay=True)
    probe = graph.probe(ns)
    images = Recorder(probe, Image, "image", best_effort())
    overlays = Recorder(probe, Image, "image_roi_overlay", best_effort())
    stats = Recorder(probe, DecoderStatistics, "decoder/statistics")
    frames = publisher_to(probe, EncodedFrame, "image_raw/roi_codec", node)
    source = rgb(40, 72, seed=5)
    data = random_codec.encode(source, rate=0.5).data
    decoded = random_codec.decode(data)

    def send(msg):
        stamp = stamp_ns(msg.header)
        frames.publish(msg)
        return wait_for(lambda: next((s for s in stats.all() if s.has_frame and stamp_ns(s.header) == stamp), None), WAIT_S,
                        f"decoder statistics of frame {msg.header.stamp.sec}")

    for stamp, encoding in ((1, "bgr8"), (2, "mono8"), (3, "rgb8")):
        send(_encoded(data, stamp, encoding, boxes=[(0.0, 20.0, 72.0, 40.0)]))
        out = wait_for(lambda: next((m for m in images.all() if m.header.stamp.sec == stamp), None), WAIT_S, "the image")
        step, expected = rgb_to_image_data(decoded, encoding)
        assert (out.encoding, out.height, out.width, out.step, out.header.frame_id) == (encoding, 40, 72, step, "cam")
        assert bytes(out.data) == expected
    overlay = wait_for(lambda: overlays.last(), WAIT_S, "an overlay image")
    assert (overlay.encoding, overlay.height, overlay.width) == ("rgb8", 40, 72)

    n_images = len(images.all())
    garbage = np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes()
    corrupt = send(_encoded(b"RCB" + garbage, 10))
    assert (corrupt.frames_corrupt, corrupt.frames_foreign, corrupt.frames_unsupported) == (1, 0, 0)
    foreign_data = RoiCodec.random(seed=1).encode(source, rate=0.5).data
    foreign = send(_encoded(foreign_data, 11))
    assert (foreign.frames_corrupt, foreign.frames_foreign) == (1, 1)  # another model: foreign, not corrupt
    unsupported = send(_encoded(data, 12, fmt="vp9"))
    assert (unsupported.frames_unsupported, unsupported.frames_decoded) == (1, 3)
    assert len(images.all()) == n_images  # nothing published for the bad frames
    after = send(_encoded(data, 13))
    assert after.frames_decoded == 4 and after.latency_ms != 0.0  # and the decoder keeps going
    graph.remove(node)


# ---------------------------------------------------------------------------------------------- process roles
def _big_messages():
    """(Images, EncodedFrames) for the large-frame test: distinct contents, stamps 0..BIG_COUNT-1."""
    from sensor_msgs.msg import Image

    from roi_codec_ros.msg import EncodedFrame
    from roi_codec_ros.nodes.runtime import message

    rng = np.random.default_rng(7)
    images, frames = [], []
    for i in range(BIG_COUNT):
        img = message(Image, height=BIG_H, width=BIG_W, encoding="rgb8", is_bigendian=0, step=BIG_W * 3)
        img.data = rng.integers(0, 256, BIG_W * BIG_H * 3, dtype=np.uint8).tobytes()
        img.header.stamp.sec = i
        frame = message(EncodedFrame, format="rcb1", source_encoding="rgb8", keyframe=True, sequence=i)
        frame.data = rng.integers(0, 256, BIG_FRAME_BYTES, dtype=np.uint8).tobytes()
        frame.header.stamp.sec = i
        images.append(img)
        frames.append(frame)
    return images, frames


def role_big_publisher(out: str) -> int:
    import rclpy
    from sensor_msgs.msg import Image

    from roi_codec_ros.msg import EncodedFrame
    from roi_codec_ros.nodes.ros_params import sensor_qos

    rclpy.init()
    node = rclpy.create_node("big_publisher")
    image_pub = node.create_publisher(Image, "/big/image_raw", sensor_qos())
    frame_pub = node.create_publisher(EncodedFrame, "/big/image_raw/roi_codec", sensor_qos())
    images, frames = _big_messages()
    sent = {"image_raw": [hashlib.sha256(bytes(m.data)).hexdigest() for m in images],
            "roi_codec": [hashlib.sha256(bytes(m.data)).hexdigest() for m in frames]}
    deadline = time.monotonic() + STARTUP_S
    while (image_pub.get_subscription_count() == 0 or frame_pub.get_subscription_count() == 0) and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.1)
    time.sleep(1.0)  # let discovery finish on both transports
    for image, frame in zip(images, frames):  # best effort, each once: every one must arrive
        image_pub.publish(image)
        frame_pub.publish(frame)
        time.sleep(0.5)
    Path(out).write_text(json.dumps(sent))
    while time.monotonic() < deadline:  # until the test stops us
        rclpy.spin_once(node, timeout_sec=0.2)
    return 0


def role_big_subscriber(out: str) -> int:
    import rclpy
    from sensor_msgs.msg import Image

    from roi_codec_ros.msg import EncodedFrame
    from roi_codec_ros.nodes.ros_params import sensor_qos

    rclpy.init()
    node = rclpy.create_node("big_subscriber")
    got = {"image_raw": {}, "roi_codec": {}}

    def keep(kind):
        def callback(msg):
            got[kind][msg.header.stamp.sec] = hashlib.sha256(bytes(msg.data)).hexdigest()
        return callback

    node.create_subscription(Image, "/big/image_raw", keep("image_raw"), sensor_qos())
    node.create_subscription(EncodedFrame, "/big/image_raw/roi_codec", keep("roi_codec"), sensor_qos())
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline and min(len(v) for v in got.values()) < BIG_COUNT:
        rclpy.spin_once(node, timeout_sec=0.2)
    Path(out).write_text(json.dumps({k: [v.get(i) for i in range(BIG_COUNT)] for k, v in got.items()}))
    return 0


def _start(role: str, *args: str, env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(HERE), role, *args], env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT)


def _stop(proc: subprocess.Popen, timeout: float = 15) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_large_frames_arrive_between_processes_with_the_project_profile(tmp_path):
    """Three 4096x3072 rgb8 Images (37.7 MB) and three 20 MB EncodedFrames, best effort, each sent once: all arrive
    byte-identical.  With the previous profile (8 MB segment) 1 of 5 such Images arrived; with a large segment but
    the default port queue the first one was always lost (config/fastdds_large_frames.xml)."""
    env = ros_env(tmp_path)
    sent, got = tmp_path / "sent.json", tmp_path / "got.json"
    subscriber = _start("big_subscriber", str(got), env=env, log=tmp_path / "sub.log")
    publisher = _start("big_publisher", str(sent), env=env, log=tmp_path / "pub.log")
    try:
        code = subscriber.wait(timeout=STARTUP_S + 60)
        wait_for(lambda: sent.exists() or publisher.poll() is not None, WAIT_S, "the publisher's record")
    finally:
        _stop(subscriber)
        _stop(publisher)
    logs = f"subscriber:\n{(tmp_path / 'sub.log').read_text()}\npublisher:\n{(tmp_path / 'pub.log').read_text()}"
    assert code == 0 and sent.exists(), logs
    assert json.loads(got.read_text()) == json.loads(sent.read_text()), logs


_RACER = """
import sys
import rclpy
from rclpy.node import Node
from sensor_msgs.msg import Image
from roi_codec_ros.nodes.runtime import run_node

class Racer(Node):
    def __init__(self):
        super().__init__("racer")
        self.publisher = self.create_publisher(Image, "racer_image", 1)
        self.create_timer(0.01, self.tick)

    def tick(self):
        rclpy.shutdown()  # what SIGINT does while a callback runs ...
        self.publisher.publish(Image())  # ... which then publishes: RCLError, the context is invalid

sys.exit(run_node(Racer, []))
"""


def test_a_shutdown_that_races_a_publishing_callback_is_a_clean_exit(tmp_path):
    """Seen under load: SIGINT landed while frame_source's timer was publishing, and the node exited 1."""
    done = subprocess.run([sys.executable, "-c", _RACER], env=ros_env(tmp_path), capture_output=True, text=True,
                          timeout=STARTUP_S)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr


def test_every_node_exits_within_2_s_of_sigint_while_busy(tmp_path):
    """frame_source -> encoder_node -> decoder_node as separate processes, busy with 1280x720 frames (the encoder
    is mid-frame most of the time); SIGINT to all three at once; each must end with status 0 within 2 s."""
    from roi_codec_ros.msg import DecoderStatistics

    env = ros_env(tmp_path)
    env["OMP_NUM_THREADS"] = "1"
    ns = f"stop_{os.getpid()}"
    common = ["--ros-args", "-r", f"__ns:=/{ns}"]
    commands = {
        "frame_source": [console_script("frame_source"), *common, "-p", "fps:=4.0", "-p", "width:=1280", "-p", "height:=720"],
        "encoder_node": [console_script("encoder_node"), *common, "-p", "model_path:=random", "-p", "detector.weights:=none"],
        "decoder_node": [console_script("decoder_node"), *common, "-p", "model_path:=random"],
    }
    logs = {name: tmp_path / f"{name}.log" for name in commands}
    procs = {name: subprocess.Popen(cmd, env=env, stdout=open(logs[name], "wb"), stderr=subprocess.STDOUT)
             for name, cmd in commands.items()}
    g = Graph()
    try:
        probe = g.probe(ns)
        stats = Recorder(probe, DecoderStatistics, "decoder/statistics")

        def decoding():
            dead = [n for n, p in procs.items() if p.poll() is not None]
            assert not dead, f"{dead} exited early:\n" + "\n".join(logs[n].read_text() for n in dead)
            s = stats.last()
            return s is not None and s.frames_decoded >= 1

        wait_for(decoding, STARTUP_S, "the pipeline to decode a frame")
        started = time.monotonic()
        for p in procs.values():
            p.send_signal(signal.SIGINT)
        exit_s = {}
        for name, p in procs.items():
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            exit_s[name] = time.monotonic() - started
    finally:
        g.close()
        for p in procs.values():
            if p.poll() is None:
                p.kill()
    text = "\n".join(f"--- {n}\n{logs[n].read_text()}" for n in procs)
    assert {n: p.returncode for n, p in procs.items()} == {n: 0 for n in procs}, text
    assert max(exit_s.values()) < EXIT_LIMIT_S, f"exit times {exit_s}\n{text}"


if __name__ == "__main__":
    roles = {"big_publisher": role_big_publisher, "big_subscriber": role_big_subscriber}
    sys.exit(roles[sys.argv[1]](*sys.argv[2:]))
