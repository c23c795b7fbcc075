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
import threading
import time

import numpy as np
import pytest
from codec_helpers import decode_with_threads
from ros_helpers import console_script, ros_env

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


def frame_rate(frame) -> float:
    """The rate a frame was encoded with: from its bitstream header (the message does not repeat it)."""
    from roi_codec_ros.codec.bitstream import unpack_frame

    return unpack_frame(bytes(frame.data))[0].rate


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
        self.frame_stats: dict[int, object] = {}  # per-frame EncoderStatistics by stamp
        self.overlays = 0
        self.encoder_stats = None
        self.decoder_stats = None
        self.context = Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(f"probe_{os.getpid()}", namespace=namespace, context=self.context)
        best_effort = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.node.create_subscription(Image, "image_raw", self._on_source, best_effort)
        self.node.create_subscription(Image, "image", self._on_decoded, best_effort)
        self.node.create_subscription(Image, "image_roi_overlay", self._on_overlay, best_effort)
        self.node.create_subscription(EncodedFrame, "image_raw/roi_codec", self._on_frame, best_effort)
        self.node.create_subscription(EncoderStatistics, "encoder/statistics", self._on_encoder_stats, reliable)
        self.node.create_subscription(DecoderStatistics, "decoder/statistics", self._on_decoder_stats, reliable)
        self.injector = self.node.create_publisher(EncodedFrame, "image_raw/roi_codec", reliable)
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
        with self.lock:
            self.encoder_stats = msg
            if msg.has_frame:
                self.frame_stats[stamp_ns(msg.header)] = msg

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

    def wait_frames_after(self, t_ns: int, n: int, what: str) -> list:
        return self.wait_for(lambda: self.frames_after(t_ns)[:n] if len(self.frames_after(t_ns)) >= n else None, WAIT_S, what)

    def close(self):
        self.executor.shutdown(timeout_sec=5)
        self.thread.join(timeout=5)
        self.node.destroy_node()
        self.context.try_shutdown()


class Pipeline:
    def __init__(self, tmp: Path, engine: str = "neural", extra_params: str = "", name: str = "e2e"):
        self.env = ros_env(tmp)
        self.env["OMP_NUM_THREADS"] = str(NODE_THREADS)
        self.namespace = f"{name}_{os.getpid()}"
        encoder_params = tmp / "encoder.yaml"
        # start at a low rate with a static ROI; every test still sets what it relies on
        encoder_params.write_text(
            "/**:\n  ros__parameters:\n    rate: 0.3\n    roi_weight: 4.0\n"
            "    roi:\n      static_boxes_rel: [0.0, 0.5, 1.0, 1.0]\n" + extra_params
        )
        self.log_path = tmp / "launch.log"
        self.log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [console_script("roi-launch"), "roi_codec_ros", "pipeline.launch.py",
             f"namespace:={self.namespace}", f"engine:={engine}", f"model_path:={MODEL}", "detector_weights:=none",
             "fps:=4", f"width:={WIDTH}", f"height:={HEIGHT}", "overlay:=true", f"encoder_params_file:={encoder_params}"],
            env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
        )
        self.probe = Probe(self.namespace)

    def launch_log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def param(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([console_script("roi-param"), *args, "--timeout", "30"],
                              env=self.env, capture_output=True, text=True, timeout=120)

    def set(self, name: str, value: str) -> int:
        """Set an encoder parameter; returns the wall time (ns) after which new source frames use it."""
        result = self.param("set", self.encoder, name, value)
        assert result.returncode == 0, (name, value, result.stdout, result.stderr)
        return time.time_ns()

    @property
    def encoder(self) -> str:
        return f"/{self.namespace}/encoder"

    def stop(self) -> tuple[int | None, float]:
        """SIGINT to roi-launch (as Ctrl-C); (exit status, seconds until every node had exited)."""
        if self.log.closed:
            return self.process.returncode, 0.0
        started = time.monotonic()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        took = time.monotonic() - started
        self.probe.close()
        self.log.close()
        return self.process.returncode, took


def _running(p: Pipeline):
    try:
        p.probe.wait_for(lambda: len(p.probe.decoded) >= 2 or p.process.poll() is not None, STARTUP_TIMEOUT_S, "decoded frames")
        assert p.process.poll() is None, f"roi-launch exited early:\n{p.launch_log()}"
        yield p
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- launch log ---\n{p.launch_log()}") from exc
    finally:
        p.stop()


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    yield from _running(Pipeline(tmp_path_factory.mktemp("pipeline")))


@pytest.fixture(scope="module")
def x264_pipeline(tmp_path_factory):
    # scene cuts off: the source alternates two unrelated images, each a scene cut; keyframes every 10 frames
    yield from _running(Pipeline(tmp_path_factory.mktemp("x264"), engine="x264", name="x264",
                                 extra_params="    classical:\n      scenecut: false\n"))


@pytest.fixture(scope="module")
def codec(pipeline, random_codec):
    return random_codec if MODEL == "random" else RoiCodec.load(MODEL)



def with_static_roi(pipeline) -> int:
    """The lower half of the frame as the only ROI (a "road ahead" box); returns when it applies."""
    pipeline.set("roi.static_boxes", "none")
    return pipeline.set("roi.static_boxes_rel", "[0.0, 0.5, 1.0, 1.0]")


def test_decoded_frames_keep_stamps_and_quality(pipeline, codec):
    probe = pipeline.probe
    t_set = with_static_roi(pipeline)

    def matched():
        # best-effort topics may drop or reorder a message: use frames whose source, bitstream and decoded image
        # all reached the probe
        encoded = {stamp_ns(f.header) for f in probe.frames_after(t_set)}
        pairs = [(t, img, fid) for t, img, fid in probe.decoded if t in probe.sources and t in encoded and t in probe.frame_stats]
        return pairs if len(pairs) >= 3 else None

    pairs = probe.wait_for(matched, WAIT_S, "3 decoded frames whose source, bitstream and statistics the probe also received")
    with probe.lock:
        frames = {stamp_ns(f.header): f for f in probe.frames}
    for t, decoded, frame_id in pairs[:3]:
        source = probe.sources[t]
        assert decoded.shape == source.shape == (HEIGHT, WIDTH, 3)
        assert frame_id == "camera"
        assert psnr(source, decoded) >= PSNR_FLOOR_DB
        frame = frames[t]
        assert (frame.format, frame.keyframe, frame.source_encoding) == ("rcb1", True, "rgb8")
        header = codec.read_header(bytes(frame.data))  # raises unless the decoder's model made it
        assert (header.width, header.height) == (WIDTH, HEIGHT)
        # the node's output is the bitstream's image (pixels are bit-exact for the same device type and thread count;
        # the nodes run with NODE_THREADS, and earlier tests may have changed this process's count)
        assert np.array_equal(decoded, decode_with_threads(codec, bytes(frame.data), NODE_THREADS))
        assert [(b.x1, b.y1, b.x2, b.y2, b.class_name) for b in frame.boxes] == [(0.0, HEIGHT / 2, WIDTH, HEIGHT, "static")]
        assert probe.frame_stats[t].roi_coverage == pytest.approx(0.5, abs=0.02)
    sequences = [f.sequence for f in sorted(frames.values(), key=lambda f: stamp_ns(f.header))]
    assert sequences == sorted(sequences) and len(set(sequences)) == len(sequences)  # numbered in publishing order
    probe.wait_for(lambda: probe.overlays > 0, WAIT_S, "an ROI overlay image")
    stats = probe.wait_for(lambda: probe.encoder_stats, WAIT_S, "encoder statistics")
    assert stats.frames_encoded > 0 and stats.frames_received >= stats.frames_encoded + stats.frames_dropped - 1
    per_frame = probe.frame_stats[pairs[0][0]]
    assert per_frame.bytes == len(frames[pairs[0][0]].data) and per_frame.encode_ms > 0 and per_frame.total_ms >= per_frame.encode_ms


def test_live_rate_and_roi_weight_apply_to_next_frames(pipeline):
    probe = pipeline.probe
    pipeline.set("roi_weight", "4.0")
    t_low = pipeline.set("rate", "0.3")
    # the source alternates images: compare sizes of the same source image before and after the change
    def image_key(f):
        source = probe.sources.get(stamp_ns(f.header))
        return None if source is None else hash(source.tobytes())

    before = probe.wait_for(lambda: [f for f in probe.frames_after(t_low) if image_key(f) is not None][:4] or None, WAIT_S,
                            "frames at rate 0.3")
    assert all(abs(frame_rate(f) - 0.3) < 1e-3 for f in before)

    t_high = pipeline.set("rate", "0.95")
    after = probe.wait_frames_after(t_high, 2, "frames after the rate change")
    assert all(abs(frame_rate(f) - 0.95) < 1e-3 for f in after)
    sizes_before: dict = {}
    for f in before:
        sizes_before.setdefault(image_key(f), []).append(len(f.data))
    more = probe.wait_for(lambda: [f for f in probe.frames_after(t_high) if image_key(f) in sizes_before] or None, WAIT_S,
                          "a frame of an image also seen at the low rate")
    compared = [(len(f.data), max(sizes_before[image_key(f)])) for f in more]
    assert compared and all(a > b for a, b in compared), compared

    t_weight = pipeline.set("roi_weight", "30")
    after = probe.wait_for(lambda: [probe.frame_stats[stamp_ns(f.header)] for f in probe.frames_after(t_weight)
                                    if stamp_ns(f.header) in probe.frame_stats][:2] or None, WAIT_S,
                           "statistics of frames after the roi_weight change")
    assert all(s.roi_weight == pytest.approx(30.0) and abs(s.rate - 0.95) < 1e-3 for s in after)


def test_static_boxes_set_and_cleared_with_none(pipeline):
    probe = pipeline.probe
    pipeline.set("roi.static_boxes_rel", "none")
    t_box = pipeline.set("roi.static_boxes", "[0, 0, 64, 32]")  # integers: converted, as ros2 param set sends them
    frame = probe.wait_frames_after(t_box, 1, "frames with the pixel box")[0]
    assert [(b.x1, b.y1, b.x2, b.y2) for b in frame.boxes] == [(0.0, 0.0, 64.0, 32.0)]
    t_clear = pipeline.set("roi.static_boxes", "none")
    kept = pipeline.param("get", pipeline.encoder, "roi.static_boxes")
    assert kept.stdout.strip() == "String value is: none"
    frames = probe.wait_frames_after(t_clear, 2, "frames after clearing the boxes")
    assert all(f.boxes == [] for f in frames)
    stats = probe.wait_for(lambda: [probe.frame_stats.get(stamp_ns(f.header)) for f in probe.frames_after(t_clear)
                                    if stamp_ns(f.header) in probe.frame_stats][:1] or None, WAIT_S, "their statistics")
    assert stats[0].num_boxes == 0 and stats[0].roi_coverage == 0.0


def test_invalid_values_are_rejected_with_reason(pipeline):
    pipeline.set("rate", "0.7")
    cases = [
        (("rate", "1.5"), "out of range"),
        (("roi_weight", "0.5"), "out of range"),
        (("roi.static_boxes", "[1, 2, 3]"), "4 numbers"),
        (("roi.static_boxes", "[.nan, 0.0, 1.0, 1.0]"), "finite"),
        (("roi.static_boxes", "[0, 0, .inf, 1]"), "finite"),
        (("roi.static_boxes", "[nan, 0, 1, 1]"), "nan"),  # YAML reads a bare nan as text
        (("model_path", "other.pt"), "read-only"),
    ]
    for (name, value), reason in cases:
        result = pipeline.param("set", pipeline.encoder, name, value)
        assert result.returncode == 1 and reason in result.stderr and "Traceback" not in result.stderr, (
            name, value, result.stdout, result.stderr)
    kept = pipeline.param("get", pipeline.encoder, "rate")
    assert kept.stdout.strip() == "Double value is: 0.7"
    t = time.time_ns()
    probe = pipeline.probe
    frame = probe.wait_frames_after(t, 1, "frames after the rejected changes")[0]
    assert abs(frame_rate(frame) - 0.7) < 1e-3
    assert pipeline.process.poll() is None


def test_bad_frames_are_counted_and_decoder_keeps_running(pipeline, codec):
    from roi_codec_ros.msg import EncodedFrame
    from roi_codec_ros.nodes.runtime import message

    probe = pipeline.probe
    stats = probe.wait_for(lambda: probe.decoder_stats, WAIT_S, "decoder statistics")
    corrupt, foreign, unsupported = stats.frames_corrupt, stats.frames_foreign, stats.frames_unsupported
    image = np.random.default_rng(0).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    other_model = RoiCodec.random(seed=1).encode(image, rate=0.5).data  # valid bitstream, another model
    valid = codec.encode(image, rate=0.5).data
    rng = np.random.default_rng(0)
    for i in range(3):
        for fmt, data in (("rcb1", b"RCB" + rng.integers(0, 256, 2000 + i, dtype=np.uint8).tobytes()),
                          ("rcb1", other_model), ("vp9", valid)):
            bad = message(EncodedFrame, format=fmt, source_encoding="rgb8", keyframe=True)
            bad.header.stamp.sec = 1
            bad.data = data
            probe.injector.publish(bad)
            time.sleep(0.3)  # one at a time: the decoder's latest-frame-wins slot would drop a burst

    def counted():
        s = probe.decoder_stats
        return s.frames_corrupt > corrupt and s.frames_foreign > foreign and s.frames_unsupported > unsupported

    probe.wait_for(counted, WAIT_S, "the decoder to count corrupt, foreign and unsupported frames")
    n = len(probe.decoded)
    probe.wait_for(lambda: len(probe.decoded) >= n + 2, WAIT_S, "decoded frames after the bad ones")
    assert pipeline.process.poll() is None
    log = pipeline.launch_log()
    assert "corrupt frame dropped" in log and "foreign frame dropped" in log and "is not one this decoder decodes" in log


def test_pipeline_monitor_joins_the_live_topics(pipeline):
    from roi_codec_ros.tools.pipeline_monitor import PipelineMonitor, format_record, summarize

    with_static_roi(pipeline)
    monitor = PipelineMonitor(pipeline.namespace)
    try:
        deadline = time.monotonic() + WAIT_S
        # frames whose source image went out before the monitor's subscription matched have no PSNR (nothing to
        # compare with): wait for two that have one
        while len([r for r in monitor.records if r.psnr is not None]) < 2 and time.monotonic() < deadline:
            monitor.process()
            time.sleep(0.1)
        records = [r for r in monitor.records if r.psnr is not None][:2]
        assert len(records) == 2, f"pipeline_monitor joined {len(monitor.records)} frames, {len(records)} with a source"
        with pipeline.probe.lock:
            sizes = {stamp_ns(f.header): len(f.data) for f in pipeline.probe.frames}
        for r in records:
            assert (r.width, r.height) == (WIDTH, HEIGHT) and r.num_bytes > 0
            if r.stamp_ns in sizes:
                assert r.num_bytes == sizes[r.stamp_ns]
            assert r.psnr is not None and r.psnr >= PSNR_FLOOR_DB
            assert r.psnr_roi is not None and r.psnr_background is not None  # the lower half is ROI
            assert r.end_to_end_ms > 0 and r.codec_ms > 0 and r.bpp == pytest.approx(8 * r.num_bytes / (WIDTH * HEIGHT))
        assert "bpp" in format_record(0, records[0])
        text = summarize(records, monitor)
        assert "2 frames" in text and "unsupported" in text
    finally:
        monitor.close()


def test_launch_shutdown_is_clean(pipeline):
    code, took = pipeline.stop()
    log = pipeline.launch_log()
    assert code == 0, log
    assert log.count("process has finished cleanly") == 3, log
    assert took < 5.0, f"stopping took {took:.1f} s (roi-launch escalates to SIGTERM after 5 s)\n{log}"


# -- the same pipeline with engine:=x264 (after the neural pipeline has stopped: one pipeline at a time) --------
def _region_psnr(source: np.ndarray, decoded: np.ndarray) -> tuple[float, float]:
    """PSNR inside / outside the static ROI (the lower half of the frame)."""
    half = source.shape[0] // 2
    return psnr(source[half:], decoded[half:]), psnr(source[:half], decoded[:half])


def _decoded_after(probe: Probe, t_ns: int, n: int, what: str) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """(stamp, source, decoded) of n decoded frames stamped after t_ns whose source the probe also received."""
    def ready():
        got = [(t, probe.sources[t], img) for t, img, _ in probe.decoded if t > t_ns and t in probe.sources]
        return got[:n] if len(got) >= n else None

    return probe.wait_for(ready, WAIT_S * 2, what)


def test_x264_pipeline_streams_h264_with_keyframes(x264_pipeline):
    pipe = x264_pipeline
    probe = pipe.probe
    pipe.set("rate", "0.8")  # CRF 21: the quality floor below holds at 192x128
    t0 = pipe.set("keyframe_interval", "10")
    frames = probe.wait_for(lambda: probe.frames_after(t0)[:24] if len(probe.frames_after(t0)) >= 24 else None,
                            WAIT_S * 2, "24 EncodedFrames")
    assert {f.format for f in frames} == {"h264"} and {f.source_encoding for f in frames} == {"rgb8"}
    keyframes = [f for f in frames if f.keyframe]
    assert 2 <= len(keyframes) <= 6, [(f.sequence, f.keyframe) for f in frames]  # every 10th (+ a requested one)
    seqs = [f.sequence for f in keyframes]
    assert all(b - a <= 10 for a, b in zip(seqs, seqs[1:]))
    for f in frames:
        assert annexb_keyframe(bytes(f.data)) == f.keyframe
    for t, source, decoded in _decoded_after(probe, t0, 6, "decoded x264 frames"):
        assert decoded.shape == source.shape == (HEIGHT, WIDTH, 3) and psnr(source, decoded) > 28.0
    stats = probe.wait_for(lambda: probe.decoder_stats if probe.decoder_stats and probe.decoder_stats.frames_decoded > 10
                           else None, WAIT_S, "decoder statistics")
    assert not stats.waiting_for_keyframe and stats.frames_corrupt == 0
    enc = probe.encoder_stats
    assert (enc.engine, enc.format) == ("x264", "h264") and enc.frames_keyframe >= len(keyframes)
    described = pipe.param("describe", pipe.encoder, "rate")
    assert "CRF = 45 - 30*rate" in described.stdout, described.stdout


def annexb_keyframe(data: bytes) -> bool:
    from roi_codec_ros.engine import annexb

    return annexb.is_keyframe(data, "h264")


def test_x264_live_roi_weight_moves_quality_into_the_roi(x264_pipeline):
    pipe = x264_pipeline
    pipe.set("rate", "0.4")
    gaps = {}
    for weight in ("1.0", "40.0"):
        t = pipe.set("roi_weight", weight)
        # every source image (the source alternates two) seen at this weight: ROI PSNR minus background PSNR
        per_image: dict[int, list[float]] = {}
        for _, source, decoded in _decoded_after(pipe.probe, t, 8, f"decoded frames at roi_weight {weight}"):
            roi, bg = _region_psnr(source, decoded)
            per_image.setdefault(hash(source.tobytes()), []).append(roi - bg)
        gaps[weight] = {k: float(np.mean(v)) for k, v in per_image.items()}
    common = set(gaps["1.0"]) & set(gaps["40.0"])
    assert common, gaps
    for key in common:  # the ROI gains on the background for every image: the expected direction
        assert gaps["40.0"][key] - gaps["1.0"][key] > 2.0, gaps
    stats = [pipe.probe.frame_stats[s] for s in sorted(pipe.probe.frame_stats)][-2:]
    assert all(s.roi_weight == pytest.approx(40.0) for s in stats)


def test_x264_pipeline_shutdown_is_clean(x264_pipeline):
    code, took = x264_pipeline.stop()
    assert code == 0 and took < 5.0, x264_pipeline.launch_log()
