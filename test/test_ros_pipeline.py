"""End to end with real node processes: frame_source -> encoder_node -> decoder_node, started by roi-launch from
launch/pipeline.launch.py, observed by a probe node in this process, changed live with roi-param.

The codec is the shipped default model when the package has one, else the untrained test model
(``model_path:=random`` = RoiCodec.random(seed=0)); the detector is off (static ROI boxes), so no weights are
needed.  With the untrained model PSNR is meaningless (~6 dB), so quality is checked as "the decoder node's
image is exactly what this process decodes from the same bitstream", plus a PSNR floor that depends on the model.
"""
from __future__ import annotations

import os
from pathlib import Path
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from codec_helpers import decode_with_threads
from ros_helpers import ros_env

from roi_codec_ros.codec import DEFAULT_MODEL_PATH, RoiCodec

MODEL = "default" if DEFAULT_MODEL_PATH.is_file() else "random"
PSNR_FLOOR_DB = 20.0 if MODEL == "default" else 3.0
WIDTH, HEIGHT = 192, 128
STARTUP_TIMEOUT_S = 150.0  # three processes importing torch on a loaded 2-core machine
WAIT_S = 60.0
NODE_THREADS = 2



def stamp_ns(header) -> int:
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


class Probe:
    """A node in this process that records the pipeline's topics and can inject frames."""

    def __init__(self, namespace: str):
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image

        from roi_codec_ros.msg import DecoderStatistics, EncodedFrame, EncoderStatistics
        from roi_codec_ros.nodes.images import image_to_rgb

        self._to_rgb = image_to_rgb
        self.lock = threading.Lock()
        self.sources: dict[int, np.ndarray] = {}
        self.decoded: list[tuple[int, np.ndarray, str]] = []
        self.frames: list = []  # EncodedFrame messages
        self.overlays = 0
        self.encoder_stats = None
        self.decoder_stats = None
        self.context = Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(f"probe_{os.getpid()}", namespace=namespace, context=self.context)
        best_effort = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.node.create_subscription(Image, "image", self._on_source, best_effort)
        self.node.create_subscription(Image, "image_decoded", self._on_decoded, best_effort)
        self.node.create_subscription(Image, "image_roi_overlay", self._on_overlay, best_effort)
        self.node.create_subscription(EncodedFrame, "compressed", self._on_frame, best_effort)
        self.node.create_subscription(EncoderStatistics, "encoder/statistics", self._on_encoder_stats, reliable)
        self.node.create_subscription(DecoderStatistics, "decoder/statistics", self._on_decoder_stats, reliable)
        self.injector = self.node.create_publisher(EncodedFrame, "compressed", reliable)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def _rgb(self, msg) -> np.ndarray:
        return self._to_rgb(msg.height, msg.width, msg.encoding, msg.step, msg.data).copy()

    def _on_source(self, msg):
        with self.lock:
            self.sources[stamp_ns(msg.header)] = self._rgb(msg)
            while len(self.sources) > 200:
                self.sources.pop(next(iter(self.sources)))

    def _on_decoded(self, msg):
        with self.lock:
            self.decoded.append((stamp_ns(msg.header), self._rgb(msg), msg.header.frame_id))

    def _on_overlay(self, msg):
        with self.lock:
            self.overlays += 1

    def _on_frame(self, msg):
        with self.lock:
            self.frames.append(msg)

    def _on_encoder_stats(self, msg):
        self.encoder_stats = msg

    def _on_decoder_stats(self, msg):
        self.decoder_stats = msg

    def wait_for(self, condition, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                result = condition()
            if result:
                return result
            time.sleep(0.1)
        raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")

    def frames_after(self, t_ns: int) -> list:
        return [f for f in self.frames if stamp_ns(f.header) > t_ns]

    def close(self):
        self.executor.shutdown(timeout_sec=5)
        self.thread.join(timeout=5)
        self.node.destroy_node()
        self.context.try_shutdown()


class Pipeline:
    def __init__(self, tmp: Path):
        self.env = ros_env(tmp)
        self.env["OMP_NUM_THREADS"] = str(NODE_THREADS)
        self.namespace = f"e2e_{os.getpid()}"
        encoder_params = tmp / "encoder.yaml"
        # static ROI: the lower half of the frame (a "road ahead" box), start at a low rate
        encoder_params.write_text(
            "/**:\n  ros__parameters:\n    rate: 0.3\n    roi_weight: 4.0\n"
            "    roi:\n      static_boxes_rel: [0.0, 0.5, 1.0, 1.0]\n"
        )
        self.log_path = tmp / "launch.log"
        self.log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "roi_codec_ros.tools.launch_runner", "roi_codec_ros", "pipeline.launch.py",
             f"namespace:={self.namespace}", f"model_path:={MODEL}", "detector_weights:=none", "fps:=4",
             f"width:={WIDTH}", f"height:={HEIGHT}", "overlay:=true", f"encoder_params_file:={encoder_params}"],
            env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
        )
        self.probe = Probe(self.namespace)

    def launch_log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def param(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "roi_codec_ros.tools.param_cli", *args, "--timeout", "30"],
                              env=self.env, capture_output=True, text=True, timeout=120)

    @property
    def encoder(self) -> str:
        return f"/{self.namespace}/encoder"

    def stop(self) -> int | None:
        if self.log.closed:
            return self.process.returncode
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.probe.close()
        self.log.close()
        return self.process.returncode


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    p = Pipeline(tmp_path_factory.mktemp("pipeline"))
    try:
        p.probe.wait_for(lambda: len(p.probe.decoded) >= 2 or p.process.poll() is not None, STARTUP_TIMEOUT_S, "decoded frames")
        assert p.process.poll() is None, f"roi-launch exited early:\n{p.launch_log()}"
        yield p
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- launch log ---\n{p.launch_log()}") from exc
    finally:
        p.stop()


@pytest.fixture(scope="module")
def codec(pipeline, random_codec):
    return random_codec if MODEL == "random" else RoiCodec.load(MODEL)


def test_decoded_frames_keep_stamps_and_quality(pipeline, codec):
    probe = pipeline.probe

    def matched():
        # best-effort topics may drop or reorder a message: use frames whose source, bitstream and decoded image
        # all reached the probe
        encoded = {stamp_ns(f.header) for f in probe.frames}
        pairs = [(t, img, fid) for t, img, fid in probe.decoded if t in probe.sources and t in encoded]
        return pairs if len(pairs) >= 3 else None

    pairs = probe.wait_for(matched, WAIT_S, "3 decoded frames whose source and bitstream the probe also received")
    with probe.lock:
        frames = {stamp_ns(f.header): f for f in probe.frames}
    for t, decoded, frame_id in pairs[:3]:
        source = probe.sources[t]
        assert decoded.shape == source.shape == (HEIGHT, WIDTH, 3)
        assert frame_id == "camera"
        assert psnr(source, decoded) >= PSNR_FLOOR_DB
        frame = frames[t]
        assert frame.codec_id == codec.model_id and (frame.width, frame.height) == (WIDTH, HEIGHT)
        # the node's output is the bitstream's image (pixels are bit-exact for the same device type and thread count;
        # the nodes run with NODE_THREADS, and earlier tests may have changed this process's count)
        assert np.array_equal(decoded, decode_with_threads(codec, bytes(frame.data), NODE_THREADS))
        assert [b.class_name for b in frame.boxes] == ["static"] and frame.roi_coverage == pytest.approx(0.5, abs=0.02)
    probe.wait_for(lambda: probe.overlays > 0, WAIT_S, "an ROI overlay image")
    stats = probe.wait_for(lambda: probe.encoder_stats, WAIT_S, "encoder statistics")
    assert stats.frames_encoded > 0 and stats.bytes > 0 and stats.encode_ms > 0 and stats.total_ms >= stats.encode_ms
    assert stats.frames_received >= stats.frames_encoded + stats.frames_dropped - 1


def test_live_rate_and_roi_weight_apply_to_next_frames(pipeline):
    probe = pipeline.probe
    before = probe.wait_for(lambda: [f for f in probe.frames if abs(f.rate - 0.3) < 1e-3][-4:] or None, WAIT_S, "frames at rate 0.3")

    result = pipeline.param("set", pipeline.encoder, "rate", "0.95")
    assert result.returncode == 0, result.stdout + result.stderr
    t_set = time.time_ns()
    after = probe.wait_for(lambda: probe.frames_after(t_set)[:2] if len(probe.frames_after(t_set)) >= 2 else None, WAIT_S,
                           "frames after the rate change")
    assert all(abs(f.rate - 0.95) < 1e-3 for f in after)
    # the source alternates images: compare sizes of the same source image before and after the change
    def image_key(f):
        source = probe.sources.get(stamp_ns(f.header))
        return None if source is None else hash(source.tobytes())

    sizes_before: dict = {}
    for f in before:
        sizes_before.setdefault(image_key(f), []).append(len(f.data))
    compared = [(len(f.data), max(sizes_before[image_key(f)])) for f in after if image_key(f) in sizes_before]
    assert compared and all(a > b for a, b in compared), compared

    result = pipeline.param("set", pipeline.encoder, "roi_weight", "30")
    assert result.returncode == 0, result.stdout + result.stderr
    t_set = time.time_ns()
    after = probe.wait_for(lambda: probe.frames_after(t_set)[:2] if len(probe.frames_after(t_set)) >= 2 else None, WAIT_S,
                           "frames after the roi_weight change")
    assert all(f.roi_weight == pytest.approx(30.0) and abs(f.rate - 0.95) < 1e-3 for f in after)


def test_invalid_values_are_rejected_with_reason(pipeline):
    cases = [
        (("rate", "1.5"), "out of range"),
        (("roi_weight", "0.5"), "out of range"),
        (("roi.static_boxes", "[1, 2, 3]"), "4 numbers"),
        (("model_path", "other.pt"), "read-only"),
    ]
    for (name, value), reason in cases:
        result = pipeline.param("set", pipeline.encoder, name, value)
        assert result.returncode == 1 and reason in result.stderr, (name, value, result.stdout, result.stderr)
    kept = pipeline.param("get", pipeline.encoder, "rate")
    assert kept.stdout.strip() == "Double value is: 0.95"
    t = time.time_ns()
    probe = pipeline.probe
    frame = probe.wait_for(lambda: probe.frames_after(t)[:1] or None, WAIT_S, "frames after the rejected changes")[0]
    assert abs(frame.rate - 0.95) < 1e-3


def test_garbage_frames_are_counted_and_decoder_keeps_running(pipeline):
    from roi_codec_ros.msg import EncodedFrame

    probe = pipeline.probe
    real = probe.frames[-1]
    stats = probe.wait_for(lambda: probe.decoder_stats, WAIT_S, "decoder statistics")
    corrupt, foreign = stats.frames_corrupt, stats.frames_foreign
    rng = np.random.default_rng(0)
    for i in range(3):
        for codec_id in (real.codec_id, "f" * 64):
            garbage = EncodedFrame(codec_id=codec_id, height=real.height, width=real.width, source_encoding="rgb8")
            garbage.header.stamp.sec = 1
            garbage.data = rng.integers(0, 256, 2000 + i, dtype=np.uint8).tobytes()
            probe.injector.publish(garbage)
            time.sleep(0.3)
    probe.wait_for(lambda: probe.decoder_stats.frames_corrupt > corrupt and probe.decoder_stats.frames_foreign > foreign,
                   WAIT_S, "the decoder to count corrupt and foreign frames")
    n = len(probe.decoded)
    probe.wait_for(lambda: len(probe.decoded) >= n + 2, WAIT_S, "decoded frames after the garbage")
    assert pipeline.process.poll() is None
    log = pipeline.launch_log()
    assert "corrupt frame dropped" in log and "foreign frame dropped" in log


def test_launch_shutdown_is_clean(pipeline):
    code = pipeline.stop()
    log = pipeline.launch_log()
    assert code == 0, log
    assert log.count("process has finished cleanly") == 3, log
