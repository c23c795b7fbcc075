"""Watch (or start and watch) the ROS pipeline: per decoded frame, bytes, bpp, PSNR and latency.

    python -m roi_codec_ros.tools.pipeline_monitor [--namespace NS] [--frames N]      # watch a running pipeline
    python -m roi_codec_ros.tools.pipeline_monitor --launch [--engine x264] [--model random] [--input bundled] [--frames N]
                                                   # start launch/pipeline.launch.py with roi-launch, watch, stop

For each frame that comes back decoded (``image``) it joins, by header stamp, the source image (``image_raw``),
the EncodedFrame (``image_raw/roi_codec``), and the per-frame messages of ``encoder/statistics`` and
``decoder/statistics``, and prints bytes, bits per pixel, PSNR (whole frame, inside/outside the encoder's ROI
boxes, rasterised by the detector package's ``rasterise_boxes`` as the codec's mask is) and latency:
end-to-end = decoded image received here - source stamp; codec = detector + encode + decode;
overhead = end-to-end - codec (ROS transport, image conversions, waiting for a busy worker).
Every number is measured on this run; nothing is estimated.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
import os
from pathlib import Path
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np

# the pipeline's topics, relative to its namespace (launch/pipeline.launch.py)
SOURCE_TOPIC = "image_raw"
FRAMES_TOPIC = "image_raw/roi_codec"
DECODED_TOPIC = "image"
ENCODER_STATISTICS = "encoder/statistics"
DECODER_STATISTICS = "decoder/statistics"


@dataclass
class FrameRecord:
    stamp_ns: int
    width: int
    height: int
    num_bytes: int
    rate: float
    roi_weight: float
    psnr: float | None
    psnr_roi: float | None
    psnr_background: float | None
    end_to_end_ms: float
    detector_ms: float
    encode_ms: float
    decode_ms: float
    encoder_wait_ms: float  # encoder: receive -> worker start (latest-frame-wins waiting)
    encoder_total_ms: float  # encoder: receive -> published (everything inside the encoder node)
    decoder_total_ms: float  # decoder: receive -> published (everything inside the decoder node)
    keyframe: bool = True
    format: str = ""
    encoder_received: int = 0  # the encoder's counters when it published this frame (encoded share of a window)
    encoder_encoded: int = 0

    @property
    def bpp(self) -> float:
        return 8.0 * self.num_bytes / (self.width * self.height)

    @property
    def codec_ms(self) -> float:
        return self.detector_ms + self.encode_ms + self.decode_ms

    @property
    def overhead_ms(self) -> float:
        return self.end_to_end_ms - self.codec_ms

    @property
    def in_node_ms(self) -> float:
        """Non-codec time inside encoder and decoder: waiting for the worker, image conversion, publishing."""
        return (self.encoder_total_ms - self.detector_ms - self.encode_ms) + (self.decoder_total_ms - self.decode_ms)

    @property
    def transport_ms(self) -> float:
        """Between nodes: source -> encoder -> decoder -> this monitor (DDS + executor dispatch, 3 hops)."""
        return self.end_to_end_ms - self.encoder_total_ms - self.decoder_total_ms


def _psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float | None:
    if mask is not None:
        if not mask.any():
            return None
        a, b = a[mask], b[mask]
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * float(np.log10(255.0**2 / mse))


def roi_pixels(boxes, shape: tuple[int, int]) -> np.ndarray:
    """HxW bool: the pixels of the EncodedFrame's ROI boxes (RoiBox messages), by the codec's own rasteriser."""
    from roi_codec_ros.detector import rasterise_boxes

    array = np.array([[b.x1, b.y1, b.x2, b.y2] for b in boxes], np.float64).reshape(-1, 4)
    return rasterise_boxes(array, shape[0], shape[1]) > 0


class PipelineMonitor:
    """A probe node on the pipeline's topics (in ``namespace``); ``records`` grows as frames come back."""

    def __init__(self, namespace: str = "", with_psnr: bool = True):
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image

        from roi_codec_ros.msg import DecoderStatistics, EncodedFrame, EncoderStatistics

        self.lock = threading.Lock()
        self.sources: dict[int, object] = {}
        self.frames: dict[int, object] = {}
        self.encoder_stats: dict[int, object] = {}
        self.decoder_stats: dict[int, object] = {}
        self.pending: list[tuple[int, float, object]] = []  # (stamp, receive time, decoded Image msg)
        self.records: list[FrameRecord] = []
        self.last_encoder_stats = None
        self.last_decoder_stats = None
        self.context = Context()
        rclpy.init(context=self.context, args=[])
        self.node = rclpy.create_node(f"pipeline_monitor_{os.getpid()}", namespace=namespace or "/", context=self.context)
        best_effort = QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT)
        reliable = QoSProfile(depth=20, reliability=ReliabilityPolicy.RELIABLE)
        if with_psnr:
            self.node.create_subscription(Image, SOURCE_TOPIC, self._keep(self.sources), best_effort)
        self.node.create_subscription(EncodedFrame, FRAMES_TOPIC, self._keep(self.frames), best_effort)
        self.node.create_subscription(EncoderStatistics, ENCODER_STATISTICS, self._on_encoder_stats, reliable)
        self.node.create_subscription(DecoderStatistics, DECODER_STATISTICS, self._on_decoder_stats, reliable)
        self.node.create_subscription(Image, DECODED_TOPIC, self._on_decoded, best_effort)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()

    @staticmethod
    def _stamp(msg) -> int:
        return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec

    def _keep(self, store: dict):
        def callback(msg):
            with self.lock:
                store[self._stamp(msg)] = msg
                while len(store) > 100:
                    store.pop(next(iter(store)))

        return callback

    def _on_encoder_stats(self, msg):
        self.last_encoder_stats = msg  # counters: periodic messages count too
        if msg.has_frame:
            self._keep(self.encoder_stats)(msg)

    def _on_decoder_stats(self, msg):
        self.last_decoder_stats = msg
        if msg.has_frame:
            self._keep(self.decoder_stats)(msg)

    def _on_decoded(self, msg):
        received = time.time_ns()
        with self.lock:
            self.pending.append((self._stamp(msg), received, msg))

    def process(self, grace_s: float = 2.0) -> list[FrameRecord]:
        """Join decoded frames with their metadata (waiting up to ``grace_s`` for late statistics)."""
        from roi_codec_ros.nodes.images import image_to_rgb

        new = []
        now = time.time_ns()
        with self.lock:
            pending, self.pending = self.pending, []
        keep = []
        for stamp, received, msg in pending:
            with self.lock:
                frame, enc, dec = self.frames.get(stamp), self.encoder_stats.get(stamp), self.decoder_stats.get(stamp)
                source = self.sources.get(stamp)
            if (frame is None or enc is None or dec is None) and (now - received) < grace_s * 1e9:
                keep.append((stamp, received, msg))
                continue
            if frame is None or enc is None or dec is None:
                continue  # metadata lost (best effort); skip rather than guess
            psnr = psnr_roi = psnr_bg = None
            if source is not None:
                original = image_to_rgb(source.height, source.width, source.encoding, source.step, source.data)
                decoded = image_to_rgb(msg.height, msg.width, msg.encoding, msg.step, msg.data)
                roi = roi_pixels(frame.boxes, original.shape[:2])
                psnr, psnr_roi, psnr_bg = _psnr(original, decoded), _psnr(original, decoded, roi), _psnr(original, decoded, ~roi)
            # size from the decoded image, rate and ROI weight from the encoder's statistics: the EncodedFrame
            # carries neither (the bitstream holds size and rate)
            record = FrameRecord(
                stamp_ns=stamp, width=msg.width, height=msg.height, num_bytes=len(frame.data), rate=enc.rate,
                roi_weight=enc.roi_weight, psnr=psnr, psnr_roi=psnr_roi, psnr_background=psnr_bg,
                end_to_end_ms=(received - stamp) / 1e6, detector_ms=enc.detector_ms, encode_ms=enc.encode_ms,
                decode_ms=dec.decode_ms, encoder_wait_ms=enc.queue_ms, encoder_total_ms=enc.total_ms,
                decoder_total_ms=dec.total_ms, keyframe=bool(frame.keyframe), format=frame.format,
                encoder_received=int(enc.frames_received), encoder_encoded=int(enc.frames_encoded),
            )
            new.append(record)
        with self.lock:
            self.pending = keep + self.pending
        self.records += new
        return new

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=5)
        self._thread.join(timeout=5)
        self.node.destroy_node()
        self.context.try_shutdown()


def _fmt_db(value: float | None) -> str:
    return "  n/a" if value is None else f"{value:5.2f}"


def format_record(i: int, r: FrameRecord) -> str:
    quality = ""
    if r.psnr is not None:
        quality = f"  PSNR {_fmt_db(r.psnr)} dB (ROI {_fmt_db(r.psnr_roi)} / other {_fmt_db(r.psnr_background)})"
    return (
        f"frame {i:4d} {r.format or '?':>4}{'*' if r.keyframe else ' '} {r.width}x{r.height}  {r.num_bytes:7d} B  {r.bpp:6.3f} bpp{quality}  "
        f"latency {r.end_to_end_ms:7.1f} ms = codec {r.codec_ms:6.1f} + overhead {r.overhead_ms:6.1f}"
    )


def latency_table(records: list[FrameRecord]) -> list[tuple[str, list[float]]]:
    return [
        ("latency end-to-end", [r.end_to_end_ms for r in records]),
        ("  codec (detector+enc+dec)", [r.codec_ms for r in records]),
        ("  overhead (e2e - codec)", [r.overhead_ms for r in records]),
        ("    in nodes (wait/convert)", [r.in_node_ms for r in records]),
        ("    between nodes (3 hops)", [r.transport_ms for r in records]),
    ]


def summarize(records: list[FrameRecord], monitor: PipelineMonitor | None = None) -> str:
    if not records:
        return "no decoded frames"
    span_s = (records[-1].stamp_ns - records[0].stamp_ns) / 1e9
    lines = [f"{len(records)} frames, {records[0].width}x{records[0].height}, format {records[-1].format or '?'}, "
             f"rate {records[-1].rate:.3f}, roi_weight {records[-1].roi_weight:g}"]
    size = np.array([r.num_bytes for r in records], float)
    keyframes = sum(r.keyframe for r in records)
    lines.append(f"  {'size':<28}mean {size.mean():.0f} B, {np.mean([r.bpp for r in records]):.3f} bpp, {keyframes} keyframes")
    received = records[-1].encoder_received - records[0].encoder_received
    if received > 0:
        encoded = records[-1].encoder_encoded - records[0].encoder_encoded
        lines.append(f"  {'encoded / received':<28}{encoded} / {received} = {100.0 * encoded / received:.1f} % "
                     f"(encoder counters between the first and the last frame)")
    if span_s > 0 and len(records) > 1:
        lines.append(f"  {'bitrate':<28}{8 * size[1:].sum() / span_s / 1000:.1f} kbit/s at {(len(records) - 1) / span_s:.2f} decoded frames/s")
    psnrs = [r.psnr for r in records if r.psnr is not None and np.isfinite(r.psnr)]
    if psnrs:
        roi = [r.psnr_roi for r in records if r.psnr_roi is not None and np.isfinite(r.psnr_roi)]
        bg = [r.psnr_background for r in records if r.psnr_background is not None and np.isfinite(r.psnr_background)]
        roi_text = f", inside ROI {np.mean(roi):.2f} dB, outside {np.mean(bg):.2f} dB" if roi and bg else ""
        lines.append(f"  {'PSNR':<28}mean {np.mean(psnrs):.2f} dB{roi_text}")
    for name, values in latency_table(records):
        v = np.array(values)
        lines.append(f"  {name:<28}median {np.median(v):7.1f} ms, mean {v.mean():7.1f} ms, p90 {np.percentile(v, 90):7.1f} ms")
    if monitor is not None and monitor.last_encoder_stats is not None:
        s = monitor.last_encoder_stats
        lines.append(f"  {'encoder':<28}engine {s.engine or '?'}: received {s.frames_received}, encoded {s.frames_encoded}, "
                     f"dropped {s.frames_dropped}, failed {s.frames_failed}, keyframes {s.frames_keyframe}, "
                     f"keyframe requests {s.keyframe_requests}")
    if monitor is not None and monitor.last_decoder_stats is not None:
        s = monitor.last_decoder_stats
        lines.append(f"  {'decoder':<28}decoded {s.frames_decoded}, dropped {s.frames_dropped}, corrupt {s.frames_corrupt}, "
                     f"foreign {s.frames_foreign}, unsupported {s.frames_unsupported}, lost {s.frames_lost}, "
                     f"no reference {s.frames_no_reference}")
    return "\n".join(lines)


def launch_command() -> list[str]:
    """``roi-launch`` (pip-only setup; it hands over to the real launch when importable), else ``ros2 launch``."""
    beside = Path(sys.executable).parent / "roi-launch"  # the venv's console script, also without an activated PATH
    found = str(beside) if beside.is_file() else shutil.which("roi-launch")
    if found:
        return [found]
    if shutil.which("ros2"):
        return ["ros2", "launch"]
    raise RuntimeError("neither roi-launch nor ros2 found: source your ROS workspace or the project's scripts/env.sh")


def start_pipeline(namespace: str, launch_args: list[str], log_path: Path) -> subprocess.Popen:
    cmd = [*launch_command(), "roi_codec_ros", "pipeline.launch.py", f"namespace:={namespace}", *launch_args]
    print("starting: " + " ".join(Path(cmd[0]).name if i == 0 else c for i, c in enumerate(cmd)), flush=True)
    return subprocess.Popen(cmd, stdout=open(log_path, "wb"), stderr=subprocess.STDOUT)


def stop_pipeline(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run(args: argparse.Namespace) -> int:
    namespace = args.namespace or (f"roi_demo_{os.getpid()}" if args.launch else "")
    proc = None
    log_path = Path(args.log or f"/tmp/roi_pipeline_{os.getpid()}.log")
    if args.launch:
        if args.detector == "default":
            from roi_codec_ros.detector import WEIGHTS_ENV

            if not os.environ.get(WEIGHTS_ENV):
                print(f"note: ${WEIGHTS_ENV} is not set and no --detector given: encoding without a detector "
                      "(zero features, no ROI boxes)", flush=True)
                args.detector = "none"
        launch_args = [f"engine:={args.engine}", f"model_path:={args.model}", f"detector_weights:={args.detector}",
                       f"input:={args.input}", f"fps:={args.fps}", f"width:={args.width}", f"height:={args.height}"]
        proc = start_pipeline(namespace, launch_args + list(args.launch_arg), log_path)
    monitor = PipelineMonitor(namespace, with_psnr=not args.no_psnr)
    deadline = time.monotonic() + args.timeout
    try:
        while len(monitor.records) < args.frames and time.monotonic() < deadline:
            if proc is not None and (proc.poll() is not None or "process has died" in log_path.read_text(errors="replace")):
                tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
                print(f"a pipeline node failed; last lines of {log_path}:\n{tail}", file=sys.stderr)
                return 1
            new = monitor.process()
            for i, record in enumerate(new, start=len(monitor.records) - len(new)):
                if not args.quiet:
                    print(format_record(i, record), flush=True)
            time.sleep(0.1)
        print(summarize(monitor.records[: args.frames], monitor))
        if len(monitor.records) < args.frames:
            print(f"timed out after {args.timeout:g} s with {len(monitor.records)} of {args.frames} frames"
                  + (f"; pipeline log: {log_path}" if proc else ""), file=sys.stderr)
            return 1
        return 0
    finally:
        monitor.close()
        if proc is not None:
            stop_pipeline(proc)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pipeline_monitor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--namespace", default="", help="namespace of the pipeline (default: '' or, with --launch, a fresh one)")
    parser.add_argument("--frames", type=int, default=10, help="stop after this many decoded frames (default %(default)s)")
    parser.add_argument("--timeout", type=float, default=300.0, help="give up after this many seconds (default %(default)s)")
    parser.add_argument("--no-psnr", action="store_true", help="do not subscribe to the source images (no PSNR)")
    parser.add_argument("--quiet", action="store_true", help="only the summary")
    parser.add_argument("--launch", action="store_true", help="start launch/pipeline.launch.py with roi-launch first")
    parser.add_argument("--engine", default="neural", help="with --launch: encoder engine (neural, x264, x265, ...)")
    parser.add_argument("--model", default="default", help="with --launch: codec model ('default', 'random' or a file)")
    parser.add_argument("--detector", default="default",
                        help="with --launch: detector weights ('default' = $ROI_CODEC_DETECTOR_WEIGHTS, 'none', a .pt)")
    parser.add_argument("--input", default="bundled", help="with --launch: video, image folder, rosbag or 'bundled'")
    parser.add_argument("--fps", type=float, default=2.0, help="with --launch: source frames per second")
    parser.add_argument("--width", type=int, default=0, help="with --launch: resize width (0 = keep)")
    parser.add_argument("--height", type=int, default=0, help="with --launch: resize height (0 = keep)")
    parser.add_argument("--launch-arg", action="append", default=[], help="with --launch: extra name:=value (repeatable)")
    parser.add_argument("--log", help="with --launch: file for the nodes' output")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("ros-demo", "ros-monitor"):  # called through `roi-codec <command>`
        argv = (["--launch"] if argv[0] == "ros-demo" else []) + argv[1:]
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
