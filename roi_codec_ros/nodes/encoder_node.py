"""encoder_node: sensor_msgs/Image on ``image`` -> roi_codec_ros/EncodedFrame on ``compressed``.

Also publishes ``~/statistics`` (EncoderStatistics, every encoded frame) and, with publish_detections,
``detections`` (Detections).  The subscription callback only hands the newest frame to one worker thread
(latest-frame-wins, drops counted); the work itself is ``FrameEncoder`` (encoder_core, no ROS).
Parameters: the ``PARAMETERS`` table below (also in docs/ros.md).
"""
from __future__ import annotations

import sys
import time

from rcl_interfaces.msg import ParameterType, SetParametersResult
from rclpy.node import Node
from sensor_msgs.msg import Image

from roi_codec_ros.codec import RoiCodec
from roi_codec_ros.detector import DEFAULT_ROI_CLASSES, RoiMaskConfig
from roi_codec_ros.msg import Detections as DetectionsMsg
from roi_codec_ros.msg import EncodedFrame as EncodedFrameMsg
from roi_codec_ros.msg import EncoderStatistics, RoiBox

from .encoder_core import DETECTOR_DEFAULT, DETECTOR_NONE, DETECTOR_RANDOM, EncoderSettings, EncodeResult, FrameEncoder, RoiBoxInfo, load_detector
from .images import image_to_rgb
from .ros_params import QOS_CHOICES, STATISTICS_QOS, Param, boxes_from_flat, check_choices, declare_parameters, qos_profile
from .runtime import StartupError, run_node
from .worker import LatestFrameWorker, RateWindow

ALL_CLASSES = "*"

PARAMETERS = (
    # -- codec (read-only: changing them means reloading the model; restart the node) --
    Param("model_path", "default", "codec model file; 'default' = the model shipped in the package, 'random' = untrained "
          "test model (RoiCodec.random(seed=0): plumbing tests only)", read_only=True),
    Param("device", "cpu", "torch device for codec and detector", read_only=True, choices=("cpu", "cuda", "auto")),
    Param("fp16", False, "half-precision transforms (CUDA only)", read_only=True),
    # -- rate control (live) --
    Param("rate", 0.5, "rate knob beta in [0, 1]: 1 = most bits / best quality (log-linear in the Lagrangian beta)", range=(0.0, 1.0)),
    Param("roi_weight", 8.0, "ROI weight alpha: 1 = uniform quality, larger = errors inside the ROI weigh more "
          "(checked against the model's own range)", range=(1.0, 60.0)),
    # -- detector (read-only: weights define the model) --
    Param("detector.weights", DETECTOR_DEFAULT, f"YOLO .pt weights; '{DETECTOR_DEFAULT}' = $ROI_CODEC_DETECTOR_WEIGHTS or the development weights, "
          f"'{DETECTOR_NONE}' = no detector (static boxes only, zero features), '{DETECTOR_RANDOM}' = untrained (tests)", read_only=True),
    Param("detector.imgsz", 640, "detector input size (long side, pixels)", range=(32, 4096), read_only=True),
    # -- ROI selection (live) --
    Param("roi.classes", list(DEFAULT_ROI_CLASSES), f"detector classes (names or ids) that are ROI; ['{ALL_CLASSES}'] = every class",
          type=ParameterType.PARAMETER_STRING_ARRAY),
    Param("roi.confidence", 0.25, "minimum detection score for an ROI box", range=(0.0, 1.0)),
    Param("roi.margin_px", 8.0, "pixels added around every detection box", range=(0.0, 1000.0)),
    Param("roi.soft_edge_px", 0.0, "linear fall-off of the ROI mask outside the boxes, pixels (0 = hard edges)", range=(0.0, 1000.0)),
    Param("roi.static_boxes", [], "always-ROI boxes in frame pixels, flattened x1,y1,x2,y2,... (4 numbers per box)",
          type=ParameterType.PARAMETER_DOUBLE_ARRAY),
    Param("roi.static_boxes_rel", [], "always-ROI boxes as fractions of width/height, flattened x1,y1,x2,y2,...",
          type=ParameterType.PARAMETER_DOUBLE_ARRAY),
    # -- runtime (live unless noted) --
    Param("max_rate", 0.0, "encode at most this many frames per second, skipping the others (0 = no limit)", range=(0.0, 1000.0)),
    Param("publish_detections", False, "publish all detections on 'detections'"),
    Param("statistics_window_s", 2.0, "window for fps and bitrate in ~/statistics, seconds", range=(0.1, 600.0)),
    Param("qos", "sensor_data", "QoS of image/compressed/detections: sensor_data (best effort) or reliable",
          read_only=True, choices=QOS_CHOICES),
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
        static_boxes=boxes_from_flat(values["roi.static_boxes"], "roi.static_boxes"),
        static_boxes_rel=boxes_from_flat(values["roi.static_boxes_rel"], "roi.static_boxes_rel"),
    )
    return EncoderSettings(
        rate=values["rate"],
        roi_weight=values["roi_weight"],
        roi=roi,
        max_rate=values["max_rate"],
        publish_detections=values["publish_detections"],
        statistics_window_s=values["statistics_window_s"],
    )


def _box_msg(box: RoiBoxInfo) -> RoiBox:
    return RoiBox(x1=box.x1, y1=box.y1, x2=box.x2, y2=box.y2, class_id=box.class_id, class_name=box.class_name, score=box.score)


class EncoderNode(Node):
    def __init__(self, **kwargs):
        super().__init__("encoder", **kwargs)
        self._values = declare_parameters(self, PARAMETERS)
        v = self._values
        codec = RoiCodec.load(v["model_path"] or "default", device=v["device"], fp16=v["fp16"])
        detector = load_detector(v["detector.weights"], device=v["device"], imgsz=v["detector.imgsz"])
        self.core = FrameEncoder(codec, detector)
        try:
            self.settings = settings_from_parameters(v)
            self.settings.check(codec, detector)
        except ValueError as exc:
            raise StartupError(f"invalid parameters: {exc}") from exc

        qos = qos_profile(v["qos"])
        self.frames_pub = self.create_publisher(EncodedFrameMsg, "compressed", qos)
        self.detections_pub = self.create_publisher(DetectionsMsg, "detections", qos)
        self.statistics_pub = self.create_publisher(EncoderStatistics, "~/statistics", STATISTICS_QOS)
        self.received = self.encoded = self.skipped = self.failed = 0
        self._last_accepted = -float("inf")
        self._window = RateWindow(self.settings.statistics_window_s)
        self.worker = LatestFrameWorker(self._process, self._on_worker_error, name="encoder")
        self.create_subscription(Image, "image", self._on_image, qos)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.get_logger().info(
            f"encoder ready: codec {codec.model_id[:12]} ({codec.info.get('path', '?')}), "
            f"detector {detector.detector_id if detector else 'none'}, "
            f"{self.resolve_topic_name('image')} -> {self.resolve_topic_name('compressed')}"
        )

    # -- parameters: one callback validates every change as a whole ---------------------------------
    def _on_set_parameters(self, parameters) -> SetParametersResult:
        reason = check_choices(PARAMETERS, parameters)
        if reason is None:
            values = {**self._values, **{p.name: p.value for p in parameters}}
            try:
                settings = settings_from_parameters(values)
                settings.check(self.core.codec, self.core.detector)
            except ValueError as exc:
                reason = str(exc)
        if reason is not None:
            self.get_logger().warning(f"rejected parameter change: {reason}")
            return SetParametersResult(successful=False, reason=reason)
        self._values = values
        if settings.statistics_window_s != self.settings.statistics_window_s:
            self._window = RateWindow(settings.statistics_window_s)
        self.settings = settings  # the worker reads it once per frame: applies from the next frame
        return SetParametersResult(successful=True)

    # -- frames ----------------------------------------------------------------------------------------
    def _on_image(self, msg: Image) -> None:
        received = time.perf_counter()
        self.received += 1
        max_rate = self.settings.max_rate
        if max_rate > 0 and received - self._last_accepted < 1.0 / max_rate:
            self.skipped += 1
            return
        self._last_accepted = received
        self.worker.submit((msg, received))

    def _on_worker_error(self, exc: BaseException) -> None:
        if not self.context.ok():
            return  # shutting down: the frame in flight can no longer be published
        self.failed += 1
        self.get_logger().error(f"frame not encoded: {type(exc).__name__}: {exc}", throttle_duration_sec=5.0)

    def _process(self, item) -> None:
        msg, received = item
        start = time.perf_counter()
        image = image_to_rgb(msg.height, msg.width, msg.encoding, msg.step, msg.data)
        converted = time.perf_counter()
        settings = self.settings
        result = self.core.encode(image, settings)
        out = self._frame_message(msg, result, received)
        publish_start = time.perf_counter()
        self.frames_pub.publish(out)
        if settings.publish_detections and result.detections is not None:
            self.detections_pub.publish(self._detections_message(msg, result))
        done = time.perf_counter()
        self.encoded += 1
        self._window.add(done, len(result.frame.data))
        self.statistics_pub.publish(
            EncoderStatistics(
                header=msg.header,
                frames_received=self.received,
                frames_encoded=self.encoded,
                frames_dropped=self.skipped + self.worker.dropped,
                frames_failed=self.failed,
                bytes=len(result.frame.data),
                bpp=result.frame.bpp,
                rate=result.frame.rate,
                roi_weight=result.frame.roi_weight,
                roi_coverage=result.roi_coverage,
                num_boxes=len(result.boxes),
                window_s=self._window.window_s,
                fps=self._window.fps(),
                bitrate_kbps=self._window.bitrate_kbps(),
                queue_ms=(start - received) * 1e3,
                convert_ms=(converted - start) * 1e3,
                detector_ms=result.detector_ms,
                encode_ms=result.encode_ms,
                publish_ms=(done - publish_start) * 1e3,
                total_ms=(done - received) * 1e3,
            )
        )

    def _frame_message(self, msg: Image, result: EncodeResult, received: float) -> EncodedFrameMsg:
        frame = result.frame
        out = EncodedFrameMsg(
            header=msg.header,
            codec_id=frame.model_id,
            height=frame.height,
            width=frame.width,
            source_encoding=msg.encoding,
            rate=frame.rate,
            roi_weight=frame.roi_weight,
            boxes=[_box_msg(b) for b in result.boxes],
            roi_coverage=result.roi_coverage,
            sequence=self.encoded + 1,
            detector_ms=result.detector_ms,
            encode_ms=result.encode_ms,
        )
        out.data = frame.data  # bytes: assigning a numpy array would cost ~55 ms per frame
        out.total_ms = (time.perf_counter() - received) * 1e3  # receive -> just before publishing
        return out

    def _detections_message(self, msg: Image, result: EncodeResult) -> DetectionsMsg:
        d = result.detections
        boxes = [
            RoiBox(x1=float(b[0]), y1=float(b[1]), x2=float(b[2]), y2=float(b[3]), class_id=int(d.class_ids[i]),
                   class_name=d.label(i), score=float(d.scores[i]))
            for i, b in enumerate(d.boxes)
        ]
        return DetectionsMsg(header=msg.header, height=msg.height, width=msg.width, boxes=boxes, detector_ms=result.detector_ms)

    def close(self) -> None:
        self.worker.stop()


def main(argv: list[str] | None = None) -> int:
    return run_node(EncoderNode, argv)


if __name__ == "__main__":
    sys.exit(main())
