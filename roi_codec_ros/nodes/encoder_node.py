"""encoder_node: sensor_msgs/Image on ``image_raw`` -> roi_codec_ros/EncodedFrame on ``image_raw/roi_codec``.

The output is ``<input>/roi_codec`` after remapping, the way image_transport names a transport's topic
(``<base>/compressed``, ffmpeg_image_transport's ``<base>/ffmpeg``): ``-r image_raw:=/camera/image_raw`` moves
both to ``/camera/image_raw`` and ``/camera/image_raw/roi_codec``.  Also publishes ``~/statistics``
(EncoderStatistics: after every encoded frame and every ``statistics_period_s``) and, only while
``publish_detections`` is on, ``detections`` (Detections).  The subscription callback only hands the newest frame
to one worker thread (latest-frame-wins, drops counted); the work itself is ``FrameEncoder`` (encoder_core, no ROS).
Engines (``engine``, read-only): ``neural`` (default, the learned ROI codec, format rcb1), ``x264`` / ``x265`` (format
h264 / hevc, tune=zerolatency) and hardware encoders found on this machine (roi_codec_ros.engine, docs/engines.md).
Keyframes: every ``keyframe_interval`` frames and on request from a decoder on ``<output>/keyframe_request``
(KeyframeRequest; at most one per ``keyframe_request_min_interval_s``).  ``ros2 param describe`` of ``rate`` and
``roi_weight`` shows the chosen engine's mapping.  Parameters: the ``PARAMETERS`` table below (also in docs/ros.md).
"""
from __future__ import annotations

import dataclasses
import sys
import threading
import time

from rcl_interfaces.msg import ParameterType, SetParametersResult
from rclpy.node import Node
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from roi_codec_ros.codec.api import ANALYSIS_PRECISIONS
from roi_codec_ros.detector import DEFAULT_ROI_CLASSES, RoiMaskConfig
from roi_codec_ros.engine import ENGINE_NAMES, NEURAL, ClassicalSettings, Engine, create_engine
from roi_codec_ros.engine.classical import REALTIME_COLOUR
from roi_codec_ros.msg import Detections as DetectionsMsg
from roi_codec_ros.msg import EncodedFrame as EncodedFrameMsg
from roi_codec_ros.msg import EncoderStatistics, KeyframeRequest, RoiBox

from .encoder_core import (
    DETECTOR_DEFAULT,
    DETECTOR_NONE,
    DETECTOR_RANDOM,
    EncoderSettings,
    RATE_CONTROL_MODES,
    EncodeResult,
    FrameEncoder,
    RateControlSettings,
    load_detector,
)
from .images import image_to_rgb
from .ros_params import (
    KEYFRAME_REQUEST_QOS,
    NO_BOXES,
    NO_CLASS_WEIGHTS,
    STATISTICS_QOS,
    Param,
    check_parameter_change,
    boxes_from_parameter,
    class_weights_from_parameter,
    current_values,
    declare_parameters,
    node_options,
    qos_overrides,
    sensor_qos,
    touches,
)
from .runtime import LargeMessageCheck, StartupError, main_of, message
from .worker import LatestFrameWorker, RateLimiter, RateWindow

ALL_CLASSES = "*"
INPUT_TOPIC = "image_raw"
TRANSPORT = "roi_codec"  # output = <resolved input>/roi_codec
KEYFRAME_REQUEST_TOPIC = "keyframe_request"  # <output>/keyframe_request
DETECTIONS_TOPIC = "detections"
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
RATE_DESCRIPTION = "rate knob in [0, 1]: 1 = most bits / best quality"
ROI_WEIGHT_DESCRIPTION = "ROI weight alpha: 1 = uniform quality, larger = errors inside the ROI weigh more"

PARAMETERS = (
    # -- engine and codec (read-only: changing them means reloading; restart the node) --
    Param("engine", NEURAL, "coding engine: neural = the learned ROI codec (format rcb1); x264 / x265 = H.264 / HEVC "
          "tune=zerolatency with the same detector ROI (format h264 / hevc); h264_nvenc, hevc_nvenc, h264_v4l2m2m = "
          "hardware encoders, only where they work on this machine (roi-codec engines)", read_only=True,
          choices=ENGINE_NAMES),
    Param("model_path", "default", "neural engine: codec model file; 'default' = the model shipped in the package, "
          "'random' = untrained test model (RoiCodec.random(seed=0): plumbing tests only)", read_only=True),
    Param("device", "cpu", "torch device for codec and detector", read_only=True, choices=("cpu", "cuda", "auto")),
    Param("fp16", False, "neural engine: half-precision transforms (CUDA only)", read_only=True),
    Param("analysis_precision", "auto", "neural engine: precision of the encoder's analysis transform (RoiCodec "
          "analysis_precision): auto = bf16 on a CPU with native bf16, else fp32; fp16 needs CUDA", read_only=True,
          choices=ANALYSIS_PRECISIONS),
    Param("classical.preset", "veryfast", "x264/x265 engines: encoder preset (tune is always zerolatency)",
          read_only=True, choices=X264_PRESETS),
    Param("classical.threads", 1, "x264/x265 engines: encoder threads (1 = deterministic, one slice)", range=(1, 16),
          read_only=True),
    Param("classical.scenecut", True, "x264/x265 engines: let the coder add scene-cut keyframes (false = keyframes only "
          "every keyframe_interval frames and on request)", read_only=True),
    Param("classical.fps", 10.0, "x264/x265/hardware engines: camera frame rate the encoder's time base and its own "
          "rate control assume", range=(0.1, 1000.0), read_only=True),
    # -- rate and ROI (live); descriptions completed with the engine's mapping at start --
    Param("rate", 0.5, RATE_DESCRIPTION, range=(0.0, 1.0)),
    Param("roi_weight", 8.0, f"{ROI_WEIGHT_DESCRIPTION} (checked against the engine's own range)", range=(1.0, 60.0)),
    Param("roi.latent_gain", 1.0, "explicit latent scaling (neural engine): the latent's quantisation step in the ROI "
          "is divided by up to this much (by less where roi.class_weights give a fractional weight), sent as a gain "
          "map (bitstream version 2): ROI quality beyond what rate reaches, at more bits; 1 = off (version-1 frames)",
          range=(1.0, 8.0)),
    Param("p_frames.flow_prediction", False, "neural engine: P-frames may also predict blocks from the reference "
          "picture warped by a coarse flow field (sent in the frame): fewer bits under camera motion (highway -19.4 -> "
          "-23.3 % vs intra, docs/video.md) for ~3x the encode and ~1.9x the decode time of a P-frame"),
    # -- closed-loop rate control (live; roi_codec_ros.rate_control, docs/rate_control.md) --
    Param("target_kbps", 0.0, "bitrate target in kbit/s: the rate controller picks `rate` per frame (and, as a last "
          "resort, moves the ROI weight toward rate_control.roi_weight_limit, then skips frames); 0 = off, frames "
          "are coded at `rate`. The budget node sets it when several cameras share a link", range=(0.0, 1.0e6)),
    Param("rate_control.mode", "auto", "who tracks target_kbps: auto = the engine's own rate control where it has "
          "one (x264/x265: ABR with a 1-s VBV, a new target applied at the next keyframe; it tracked better than "
          "ours there, docs/rate_control.md), else the project's RateController; controller = the RateController "
          "for every engine", read_only=True, choices=RATE_CONTROL_MODES),
    Param("rate_control.buffer_ms", 500.0, "leaky-bucket size in link time: bounds how far a 1-s window can "
          "overshoot the target and how large a keyframe may be", range=(1.0, 60000.0)),
    Param("rate_control.max_frame_bytes", 0, "hard cap on one coded frame in bytes, e.g. a transport's message "
          "limit (0 = none)", range=(0, 1_000_000_000)),
    Param("rate_control.horizon_s", 0.5, "the buffer error is repaid over this many seconds (shorter = tighter "
          "windows, more rate flicker)", range=(0.05, 60.0)),
    Param("rate_control.roi_weight_limit", 0.0, "ROI weight the controller may move to when even the lowest rate "
          "is too big, before it skips frames: 0 = the engine's highest weight (fewer bytes, ROI kept), -1 = never "
          "move it", range=(-1.0, 1000.0)),
    # -- keyframes (live) --
    Param("keyframe_interval", 10, "a keyframe every this many frames (0 = only the first and requested ones); "
          "1 = every frame a keyframe (intra only; the neural engine then writes plain intra frames)", range=(0, 100000)),
    Param("keyframe_roi_weight", 0.0, "ROI weight of the scheduled and requested keyframes: 1 = uniform \"HQ "
          "I-frames\" (Fathima et al. 5.6: x264's P-frames then inherit a sharper background, at more ROI bits; the "
          "neural engine's P-frames inherit nothing and only lose, docs/video.md); 0 = the keyframes take roi_weight "
          "like every other frame (checked against the engine's range)", range=(0.0, 60.0)),
    Param("keyframe_request_min_interval_s", 0.25, f"at most one keyframe requested by decoders (<output>/"
          f"{KEYFRAME_REQUEST_TOPIC}) per this many seconds; later requests wait, none is lost", range=(0.0, 60.0)),
    # -- detector (read-only: weights define the model) --
    Param("detector.weights", DETECTOR_DEFAULT, f"YOLO .pt weights; '{DETECTOR_DEFAULT}' = $ROI_CODEC_DETECTOR_WEIGHTS (the node "
          f"refuses to start when it is not set), '{DETECTOR_NONE}' = no detector (static boxes only, zero features), "
          f"'{DETECTOR_RANDOM}' = untrained (tests)", read_only=True),
    Param("detector.imgsz", 640, "detector input size (long side, pixels)", range=(32, 4096), read_only=True),
    # -- ROI selection (live) --
    Param("roi.classes", list(DEFAULT_ROI_CLASSES), f"detector classes (names or ids) that are ROI; ['{ALL_CLASSES}'] = every class",
          type=ParameterType.PARAMETER_STRING_ARRAY),
    Param("roi.confidence", 0.25, "minimum detection score for an ROI box", range=(0.0, 1.0)),
    Param("roi.margin_px", 8.0, "pixels added around every detection box", range=(0.0, 1000.0)),
    Param("roi.soft_edge_px", 0.0, "linear fall-off of the ROI mask outside the boxes, pixels (0 = hard edges)", range=(0.0, 1000.0)),
    Param("roi.class_weights", NO_CLASS_WEIGHTS, "per-class ROI priority: 'class=weight' items (class name or id, "
          "weight in [0, 1]), e.g. ['traffic light=1.0', 'car=0.5']: the mask inside that class's boxes is the weight "
          "(an intermediate ROI quality; 0 = not ROI), overlapping boxes take the largest; unlisted classes and static "
          f"boxes 1.0; '{NO_CLASS_WEIGHTS}' (or an empty array) = every class 1.0; unknown names are rejected",
          dynamic=True),
    Param("roi.static_boxes", NO_BOXES, f"always-ROI boxes in frame pixels, flattened x1,y1,x2,y2,... (4 numbers per box); "
          f"'{NO_BOXES}' (or an empty array) = no boxes", dynamic=True),
    Param("roi.static_boxes_rel", NO_BOXES, "always-ROI boxes as fractions of width/height, flattened x1,y1,x2,y2,...; "
          f"'{NO_BOXES}' (or an empty array) = no boxes", dynamic=True),
    # -- runtime (live unless noted) --
    Param("max_rate", 0.0, "encode at most this many frames per second, skipping the others (0 = no limit)", range=(0.0, 1000.0)),
    Param("publish_detections", False, f"publish all detections on '{DETECTIONS_TOPIC}' (the publisher exists only while this is on; "
          "needs a detector)"),
    Param("statistics_window_s", 2.0, "window for fps and bitrate in ~/statistics, seconds", range=(0.1, 600.0)),
    Param("statistics_period_s", 1.0, "~/statistics is also published every this many seconds, with or without frames",
          range=(0.05, 3600.0)),
)


def settings_from_parameters(values: dict) -> EncoderSettings:
    """EncoderSettings from parameter values (ValueError with a reason when they do not make sense)."""
    classes = list(values["roi.classes"])
    if classes == [ALL_CLASSES]:
        selected = None
    else:
        selected = tuple(int(c) if str(c).isdigit() else str(c) for c in classes)
    roi = RoiMaskConfig(
        classes=selected,
        confidence=values["roi.confidence"],
        margin_px=values["roi.margin_px"],
        soft_edge_px=values["roi.soft_edge_px"],
        class_weights=class_weights_from_parameter(values["roi.class_weights"], "roi.class_weights"),
        static_boxes=boxes_from_parameter(values["roi.static_boxes"], "roi.static_boxes"),
        static_boxes_rel=boxes_from_parameter(values["roi.static_boxes_rel"], "roi.static_boxes_rel"),
    )
    return EncoderSettings(
        rate=values["rate"],
        roi_weight=values["roi_weight"],
        roi_gain=values["roi.latent_gain"],
        flow_prediction=values["p_frames.flow_prediction"],
        roi=roi,
        max_rate=values["max_rate"],
        publish_detections=values["publish_detections"],
        statistics_window_s=values["statistics_window_s"],
        keyframe_interval=values["keyframe_interval"],
        keyframe_roi_weight=values["keyframe_roi_weight"],
        keyframe_request_min_interval_s=values["keyframe_request_min_interval_s"],
        rate_control=RateControlSettings(
            target_kbps=values["target_kbps"],
            buffer_ms=values["rate_control.buffer_ms"],
            max_frame_bytes=values["rate_control.max_frame_bytes"],
            horizon_s=values["rate_control.horizon_s"],
            roi_weight_limit=values["rate_control.roi_weight_limit"],
            mode=values["rate_control.mode"],
        ),
    )


def engine_from_parameters(values: dict) -> Engine:
    """The engine the read-only parameters ask for (ValueError / FileNotFoundError / RuntimeError say why not)."""
    classical = ClassicalSettings(preset=values["classical.preset"], threads=values["classical.threads"],
                                  scenecut=values["classical.scenecut"], colour=REALTIME_COLOUR)
    return create_engine(values["engine"], model_path=values["model_path"] or "default", device=values["device"],
                         fp16=values["fp16"], analysis_precision=values["analysis_precision"], classical=classical)


def knob_descriptions(engine: Engine) -> dict[str, str]:
    """``rate`` / ``roi_weight`` descriptions with the engine's mapping (what ``ros2 param describe`` shows)."""
    lo, hi = engine.roi_weight_range
    return {
        "rate": f"{RATE_DESCRIPTION}. {engine.rate_mapping}",
        "roi_weight": f"{ROI_WEIGHT_DESCRIPTION}, in [{lo:g}, {hi:g}] for this engine. {engine.roi_weight_mapping}",
    }


def rate_control_fields(state: dict) -> dict:
    """EncoderStatistics fields from ``RateController.state()`` (what the budget node and a UI read)."""
    return {
        "target_kbps": float(state.get("target_kbps", 0.0)),
        "rc_reason": str(state.get("last_reason", "")),
        "frames_skipped_rate_control": int(state.get("skipped", 0)),
        "rc_roi_weight_changed": int(state.get("roi_weight_changed", 0)),
        "rc_buffer_fullness": float(state.get("buffer_fullness", 0.0)),
        "rc_buffer_delay_ms": float(state.get("buffer_delay_ms", 0.0)),
        "kbps_at_rate_min": float(state.get("kbps_at_rate_min", 0.0)),
        "kbps_at_rate_max": float(state.get("kbps_at_rate_max", 0.0)),
    }


def _box_msg(box) -> RoiBox:
    return message(RoiBox, x1=float(box.x1), y1=float(box.y1), x2=float(box.x2), y2=float(box.y2), class_id=int(box.class_id),
                   class_name=box.class_name, score=float(box.score))


class EncoderNode(Node):
    def __init__(self, **kwargs):
        super().__init__("encoder", **{**node_options(), **kwargs})
        v = declare_parameters(self, PARAMETERS)
        try:
            engine = engine_from_parameters(v)
        except RuntimeError as exc:  # e.g. a hardware encoder that is not usable here: its probe says why
            raise StartupError(f"engine {v['engine']!r} cannot run here: {exc}") from exc
        detector = load_detector(v["detector.weights"], device=v["device"], imgsz=v["detector.imgsz"])
        try:
            self.core = FrameEncoder(engine, detector, keyframe_interval=v["keyframe_interval"], fps=v["classical.fps"],
                                     rate_control=RateControlSettings(mode=v["rate_control.mode"]))
        except ValueError as exc:
            raise StartupError(f"invalid parameters: {exc}") from exc
        rows = {p.name: p for p in PARAMETERS}
        for name, text in knob_descriptions(engine).items():
            self.set_descriptor(name, dataclasses.replace(rows[name], description=text).descriptor())
        try:
            self.settings = self._validated(v)
        except ValueError as exc:
            raise StartupError(f"invalid parameters: {exc}") from exc
        self.core.apply_rate_control(self.settings)  # start-up target and rate_control.* in force before frame 1

        self.input_topic = self.resolve_topic_name(INPUT_TOPIC)
        self.output_topic = f"{self.input_topic.rstrip('/')}/{TRANSPORT}"
        self.frames_pub = self.create_publisher(EncodedFrameMsg, self.output_topic, sensor_qos(),
                                                qos_overriding_options=qos_overrides())
        self.statistics_pub = self.create_publisher(EncoderStatistics, "~/statistics", STATISTICS_QOS)
        self._detections_lock = threading.Lock()
        self.detections_pub = None
        self._update_detections_publisher(self.settings.publish_detections)
        self._large = LargeMessageCheck(self.get_logger(), self.output_topic)
        self.received = self.encoded = self.skipped = self.failed = self.keyframes = 0
        self._sequence = 0
        # keyframe requests: counted by the subscription callback, served by the worker (it owns the stream)
        self.keyframe_requests = 0
        self._requests_served = 0  # requests received before the start of the last keyframe
        self._last_keyframe = -float("inf")
        self.keyframe_request_topic = f"{self.output_topic}/{KEYFRAME_REQUEST_TOPIC}"
        self.create_subscription(KeyframeRequest, self.keyframe_request_topic, self._on_keyframe_request,
                                 KEYFRAME_REQUEST_QOS)
        self._limiter = RateLimiter(self.settings.max_rate)
        self._window = RateWindow(self.settings.statistics_window_s)
        self.worker = LatestFrameWorker(self._process, self._on_worker_error, name="encoder")
        self.create_subscription(Image, INPUT_TOPIC, self._on_image, sensor_qos(), qos_overriding_options=qos_overrides())
        self.statistics_timer = self.create_timer(v["statistics_period_s"], self._publish_periodic_statistics)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.add_post_set_parameters_callback(self._on_parameters_set)
        described = engine.describe()
        what = (f"codec {described['model_id'][:12]} ({described['model_path'] or '?'}, analysis "
                f"{described['analysis_precision']})" if engine.name == NEURAL else
                ", ".join(f"{k} {described[k]}" for k in ("preset", "colour") if k in described))
        self.get_logger().info(
            f"encoder ready: engine {engine.name} (format {engine.format}; {what}), "
            f"detector {detector.detector_id if detector else 'none'}, {self.input_topic} -> {self.output_topic}, "
            f"keyframe requests on {self.keyframe_request_topic}"
        )

    # -- parameters: the on-set callback validates a change as a whole, the post-set callback applies it ------
    def _validated(self, values: dict) -> EncoderSettings:
        settings = settings_from_parameters(values)
        settings.check(self.core.engine, self.core.detector)
        if settings.publish_detections and self.core.detector is None:
            raise ValueError(f"publish_detections needs a detector (detector.weights is '{DETECTOR_NONE}')")
        return settings

    def _on_set_parameters(self, parameters) -> SetParametersResult:
        return check_parameter_change(self, PARAMETERS, parameters, self._validated)

    def _on_parameters_set(self, parameters) -> None:
        if not touches(PARAMETERS, parameters):
            return
        values = current_values(self, PARAMETERS)
        settings = settings_from_parameters(values)  # validated by _on_set_parameters
        if settings.statistics_window_s != self.settings.statistics_window_s:
            self._window = RateWindow(settings.statistics_window_s)
        self._limiter.max_rate = settings.max_rate
        self.statistics_timer.timer_period_ns = int(values["statistics_period_s"] * 1e9)
        self._update_detections_publisher(settings.publish_detections)
        self.settings = settings  # the worker reads it once per frame: applies from the next frame

    def _update_detections_publisher(self, enabled: bool) -> None:
        with self._detections_lock:
            if enabled and self.detections_pub is None:
                self.detections_pub = self.create_publisher(DetectionsMsg, DETECTIONS_TOPIC, sensor_qos(),
                                                            qos_overriding_options=qos_overrides())
            elif not enabled and self.detections_pub is not None:
                self.destroy_publisher(self.detections_pub)
                self.detections_pub = None

    # -- frames ----------------------------------------------------------------------------------------
    def _on_image(self, msg: Image) -> None:
        received = time.perf_counter()
        self.received += 1
        if not self._limiter.accept(received):
            self.skipped += 1
            return
        self.worker.submit((msg, received))

    def _on_worker_error(self, exc: BaseException) -> None:
        if not self.context.ok() or self.worker.stopping:
            return  # shutting down: the frame in flight can no longer be published
        self.failed += 1
        self.get_logger().error(f"frame not encoded: {type(exc).__name__}: {exc}", throttle_duration_sec=5.0)

    def _on_keyframe_request(self, msg: KeyframeRequest) -> None:
        self.keyframe_requests += 1
        self.get_logger().info(f"keyframe requested by {msg.requester or '?'} ({msg.reason or '?'})",
                               throttle_duration_sec=2.0)

    def _serve_keyframe_requests(self, settings: EncoderSettings) -> int:
        """Ask the stream for a keyframe when a request is outstanding and the last keyframe is at least
        ``keyframe_request_min_interval_s`` old; returns the request count this frame answers if it is a keyframe."""
        received = self.keyframe_requests
        if received > self._requests_served and not self.core.stream.next_is_keyframe:
            if time.monotonic() - self._last_keyframe >= settings.keyframe_request_min_interval_s:
                self.core.stream.request_keyframe()
        return received

    def _process(self, item) -> None:
        msg, received = item
        start = time.perf_counter()
        image = image_to_rgb(msg.height, msg.width, msg.encoding, msg.step, msg.data)
        converted = time.perf_counter()
        settings = self.settings
        requests = self._serve_keyframe_requests(settings)
        result = self.core.encode(image, settings, now_s=received)  # the bucket drains in link (receive) time
        if self.worker.stopping:
            return  # shutting down: do not publish into a node being destroyed
        if result.skipped:
            return  # the rate controller's last resort: nothing to send (counted in its state, ~/statistics)
        frame = result.frame
        if frame.keyframe:
            self._requests_served, self._last_keyframe = requests, time.monotonic()
            self.keyframes += 1
        out = message(
            EncodedFrameMsg,
            header=msg.header,
            format=frame.format,
            source_encoding=msg.encoding,
            keyframe=frame.keyframe,
            boxes=[_box_msg(b) for b in result.boxes],
            sequence=self._sequence,
        )
        out.data = result.frame.data  # bytes: assigning a numpy array would cost ~55 ms per frame
        publish_start = time.perf_counter()
        self._large(len(out.data))
        self.frames_pub.publish(out)
        self._sequence += 1
        with self._detections_lock:
            if self.detections_pub is not None and result.detections is not None:
                self.detections_pub.publish(self._detections_message(msg, result))
        done = time.perf_counter()
        self.encoded += 1
        self._window.add(done, len(result.frame.data))
        stats = self._statistics(header=msg.header, has_frame=True)
        for name, value in dict(
            bytes=len(result.frame.data),
            keyframe=frame.keyframe,
            bpp=result.frame.bpp,
            rate=result.frame.rate,
            roi_weight=result.frame.roi_weight,
            roi_coverage=result.roi_coverage,
            num_boxes=len(result.boxes),
            queue_ms=(start - received) * 1e3,
            convert_ms=(converted - start) * 1e3,
            detector_ms=result.detector_ms,
            encode_ms=result.encode_ms,
            publish_ms=(done - publish_start) * 1e3,
            total_ms=(done - received) * 1e3,
            rd_slope=result.rd_slope,
        ).items():
            setattr(stats, name, value)
        self.statistics_pub.publish(stats)

    def _statistics(self, header, has_frame: bool) -> EncoderStatistics:
        return message(
            EncoderStatistics,
            header=header,
            has_frame=has_frame,
            frames_received=self.received,
            frames_encoded=self.encoded,
            frames_dropped=self.skipped + self.worker.dropped,
            frames_failed=self.failed,
            frames_keyframe=self.keyframes,
            keyframe_requests=self.keyframe_requests,
            engine=self.core.engine.name,
            format=self.core.engine.format,
            window_s=self._window.window_s,
            fps=self._window.fps(),
            bitrate_kbps=self._window.bitrate_kbps(),
            **rate_control_fields(self.core.rate_control_state),
        )

    def _publish_periodic_statistics(self) -> None:
        header = message(Header, stamp=self.get_clock().now().to_msg())
        self.statistics_pub.publish(self._statistics(header=header, has_frame=False))

    def _detections_message(self, msg: Image, result: EncodeResult) -> DetectionsMsg:
        d = result.detections
        boxes = [
            message(RoiBox, x1=float(b[0]), y1=float(b[1]), x2=float(b[2]), y2=float(b[3]), class_id=int(d.class_ids[i]),
                    class_name=d.label(i), score=float(d.scores[i]))
            for i, b in enumerate(d.boxes)
        ]
        return message(DetectionsMsg, header=msg.header, height=msg.height, width=msg.width, boxes=boxes,
                       detector_ms=result.detector_ms)

    def close(self) -> None:
        self.worker.stop()


main = main_of(EncoderNode)


if __name__ == "__main__":
    sys.exit(main())
