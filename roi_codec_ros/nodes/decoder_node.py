"""decoder_node: roi_codec_ros/EncodedFrame on ``image_raw/roi_codec`` -> sensor_msgs/Image on ``image``.

Like an image_transport subscriber it subscribes ``<base>/roi_codec`` with the base ``image_raw`` resolved first,
so one remap moves it (``-r image_raw:=/camera/image_raw`` -> ``/camera/image_raw/roi_codec``); the output
``image`` is remapped like republish's ``out`` (``-r image:=/operator/image``).  The output keeps the frame's
original header (stamp, frame_id) and source encoding; the image size comes from the bitstream alone.  With
``overlay`` it also publishes ``image_roi_overlay`` (the encoder's ROI boxes drawn on the decoded frame).
Any engine's format is decoded (rcb1 with ``model_path``, h264/hevc with libavcodec).  Streams: frames are decoded
in order on one worker thread, and a keyframe drops the frames still waiting before it (for intra-only streams that
is latest-frame-wins).  A decoder that joins mid-stream, sees a sequence gap or fails on a frame waits for a
keyframe: inter frames meanwhile are counted (``frames_no_reference``), never published, and it asks the encoder for
a keyframe on ``<base>/roi_codec/keyframe_request`` (KeyframeRequest, at most every ``keyframe_request_period_s``).
Corrupt, foreign (another model) and unsupported-format frames are logged and counted (``~/statistics``:
DecoderStatistics, after every frame and every ``statistics_period_s``) and never stop the node.  Imports neither
the encoder nor the detector package.
"""
from __future__ import annotations

import sys
import time

from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from roi_codec_ros.codec import RoiCodec
from roi_codec_ros.codec.api import PRECISIONS
from roi_codec_ros.msg import DecoderStatistics
from roi_codec_ros.msg import EncodedFrame as EncodedFrameMsg
from roi_codec_ros.msg import KeyframeRequest

from .decoder_core import FrameDecoder, StreamReceiver, roi_overlay
from .images import SUPPORTED_ENCODINGS, rgb_to_image_data
from .ros_params import (
    KEYFRAME_REQUEST_QOS,
    STATISTICS_QOS,
    Param,
    check_parameter_change,
    current_values,
    declare_parameters,
    node_options,
    qos_overrides,
    sensor_qos,
    touches,
)
from .runtime import LargeMessageCheck, main_of, message, now_ms
from .worker import StreamWorker

BASE_TOPIC = "image_raw"  # the encoder's input: frames arrive on <base>/roi_codec
TRANSPORT = "roi_codec"
OUTPUT_TOPIC = "image"
OVERLAY_TOPIC = "image_roi_overlay"
KEYFRAME_REQUEST_TOPIC = "keyframe_request"  # <base>/roi_codec/keyframe_request
NO_MODEL = "none"

PARAMETERS = (
    Param("model_path", "default", "codec model for rcb1 frames, the same as the encoder's; 'default' = the model shipped "
          f"in the package, 'random' = untrained test model (RoiCodec.random(seed=0)), '{NO_MODEL}' = no model (rcb1 "
          "frames are counted as unsupported; h264/hevc frames need none)", read_only=True),
    Param("device", "cpu", "torch device for the decoder's synthesis transform", read_only=True, choices=("cpu", "cuda", "auto")),
    Param("fp16", False, "half-precision synthesis (CUDA only; = precision fast)", read_only=True),
    Param("precision", "exact", "rcb1 synthesis precision (RoiCodec precision): exact = fp32, pixels bit-exact across "
          "processes and 1/2 threads; fast = bf16 on a CPU with native bf16 / fp16 on CUDA (a few levels off)",
          read_only=True, choices=PRECISIONS),
    Param("keyframe_request_period_s", 0.5, "while waiting for a keyframe, ask the encoder again at most every this many "
          "seconds", range=(0.05, 60.0)),
    Param("overlay", False, f"also publish {OVERLAY_TOPIC}: the encoder's ROI boxes drawn on the decoded frame"),
    Param("overlay_dim", 0.45, "brightness of the non-ROI area in the overlay", range=(0.0, 1.0)),
    Param("statistics_period_s", 1.0, "~/statistics is also published every this many seconds, with or without frames",
          range=(0.05, 3600.0)),
)


class DecoderNode(Node):
    def __init__(self, **kwargs):
        super().__init__("decoder", **{**node_options(), **kwargs})
        v = declare_parameters(self, PARAMETERS)
        self._values = v
        codec = None
        if v["model_path"] != NO_MODEL:
            # fp16 (older setting) = fast synthesis; a precision the device cannot run is a ValueError: no start
            precision = "fast" if v["fp16"] and v["precision"] == "exact" else v["precision"]
            codec = RoiCodec.load(v["model_path"] or "default", device=v["device"], fp16=v["fp16"], precision=precision)
        self.core = FrameDecoder(codec)
        self.receiver = StreamReceiver(self.core, v["keyframe_request_period_s"])
        self.input_topic = f"{self.resolve_topic_name(BASE_TOPIC).rstrip('/')}/{TRANSPORT}"
        self.keyframe_request_topic = f"{self.input_topic}/{KEYFRAME_REQUEST_TOPIC}"
        self.request_pub = self.create_publisher(KeyframeRequest, self.keyframe_request_topic, KEYFRAME_REQUEST_QOS)
        self.image_pub = self.create_publisher(Image, OUTPUT_TOPIC, sensor_qos(), qos_overriding_options=qos_overrides())
        self.overlay_pub = self.create_publisher(Image, OVERLAY_TOPIC, sensor_qos(), qos_overriding_options=qos_overrides())
        self.statistics_pub = self.create_publisher(DecoderStatistics, "~/statistics", STATISTICS_QOS)
        self._large = LargeMessageCheck(self.get_logger(), self.resolve_topic_name(OUTPUT_TOPIC))
        self.received = self.decoded = self.corrupt = self.foreign = self.unsupported = self.no_reference = 0
        self._last_sequence: int | None = None
        self.worker = StreamWorker(self._process, self._on_worker_error, name="decoder")
        self.create_subscription(EncodedFrameMsg, self.input_topic, self._on_frame, sensor_qos(),
                                 qos_overriding_options=qos_overrides())
        self.statistics_timer = self.create_timer(v["statistics_period_s"], self._publish_periodic_statistics)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.add_post_set_parameters_callback(self._on_parameters_set)
        model = f"codec {codec.model_id[:12]} ({codec.info.get('path', '?')}, {codec.precision})" if codec else "no rcb1 model"
        self.get_logger().info(
            f"decoder ready: formats {', '.join(self.core.formats)} ({model}), "
            f"{self.input_topic} -> {self.resolve_topic_name(OUTPUT_TOPIC)}, keyframe requests on {self.keyframe_request_topic}"
        )

    def _on_set_parameters(self, parameters) -> SetParametersResult:
        return check_parameter_change(self, PARAMETERS, parameters)

    def _on_parameters_set(self, parameters) -> None:
        if not touches(PARAMETERS, parameters):
            return
        self._values = current_values(self, PARAMETERS)  # one dict swap: the worker reads a consistent set
        self.statistics_timer.timer_period_ns = int(self._values["statistics_period_s"] * 1e9)
        self.receiver.request_period_s = self._values["keyframe_request_period_s"]

    def _on_frame(self, msg: EncodedFrameMsg) -> None:
        self.received += 1
        gap = self.receiver.arrived(msg.sequence)  # in arrival order: what never arrived is lost
        self.worker.submit((msg, time.perf_counter(), gap > 0), keyframe=msg.keyframe)

    def _on_worker_error(self, exc: BaseException) -> None:
        if not self.context.ok() or self.worker.stopping:
            return  # shutting down: the frame in flight can no longer be published
        # anything not caught in _process (e.g. a bug in overlay drawing): count it, keep running
        self.corrupt += 1
        self.get_logger().error(f"frame not decoded: {type(exc).__name__}: {exc}", throttle_duration_sec=5.0)

    def _process(self, item, dropped_before: bool) -> None:
        msg, received, gap = item
        start = time.perf_counter()
        outcome = self.receiver.process(msg.data, msg.format, msg.keyframe, gap or dropped_before, time.monotonic())
        self._last_sequence = msg.sequence
        if outcome.request is not None:
            self._request_keyframe(outcome.request)
        if outcome.kind != "decoded":
            self._count_failure(msg, outcome)
            self._publish_statistics(msg, received, start, decoded=False)
            return
        if self.worker.stopping:
            return
        image = outcome.image
        decoded = time.perf_counter()
        values = self._values
        encoding = msg.source_encoding if msg.source_encoding in SUPPORTED_ENCODINGS else "rgb8"
        out = self._image_message(msg, image, encoding)
        self._large(len(out.data))
        self.image_pub.publish(out)
        if values["overlay"]:
            self.overlay_pub.publish(self._image_message(msg, roi_overlay(image, msg.boxes, values["overlay_dim"]), "rgb8"))
        self.decoded += 1
        self._publish_statistics(msg, received, start, decoded=True, decode_ms=(decoded - start) * 1e3)

    def _count_failure(self, msg: EncodedFrameMsg, outcome) -> None:
        log = self.get_logger()
        if outcome.kind == "no_reference":
            self.no_reference += 1
            log.info(f"frame not decoded (seq {msg.sequence}, {msg.format}): {outcome.error}", throttle_duration_sec=5.0)
        elif outcome.kind == "unsupported":
            self.unsupported += 1
            log.error(f"frame dropped (seq {msg.sequence}): {outcome.error}", throttle_duration_sec=5.0)
        elif outcome.kind == "foreign":
            self.foreign += 1
            log.warning(f"foreign frame dropped (seq {msg.sequence}): {outcome.error}", throttle_duration_sec=5.0)
        else:
            self.corrupt += 1
            log.warning(f"corrupt frame dropped (seq {msg.sequence}): {outcome.error}", throttle_duration_sec=5.0)

    def _request_keyframe(self, reason: str) -> None:
        request = message(KeyframeRequest, requester=self.get_fully_qualified_name(), reason=reason,
                          has_last_sequence=self._last_sequence is not None, last_sequence=self._last_sequence or 0)
        request.header.stamp = self.get_clock().now().to_msg()
        self.request_pub.publish(request)
        self.get_logger().info(f"asked the encoder for a keyframe ({reason})", throttle_duration_sec=2.0)

    @staticmethod
    def _image_message(msg: EncodedFrameMsg, image, encoding: str) -> Image:
        step, data = rgb_to_image_data(image, encoding)
        out = message(Image, header=msg.header, height=image.shape[0], width=image.shape[1], encoding=encoding, is_bigendian=0,
                      step=step)
        out.data = data  # bytes (fast path)
        return out

    def _statistics(self, header, has_frame: bool) -> DecoderStatistics:
        return message(
            DecoderStatistics,
            header=header,
            has_frame=has_frame,
            frames_received=self.received,
            frames_decoded=self.decoded,
            frames_dropped=self.worker.dropped,
            frames_corrupt=self.corrupt,
            frames_foreign=self.foreign,
            frames_unsupported=self.unsupported,
            frames_lost=self.receiver.lost,
            frames_no_reference=self.no_reference,
            keyframe_requests=self.receiver.requests,
            waiting_for_keyframe=self.receiver.waiting is not None,
        )

    def _publish_statistics(self, msg: EncodedFrameMsg, received: float, start: float, decoded: bool, decode_ms: float = 0.0) -> None:
        stats = self._statistics(msg.header, has_frame=True)
        stats.bytes = len(msg.data)
        stats.format = msg.format
        stats.keyframe = msg.keyframe
        stats.decode_ms = decode_ms
        stats.total_ms = (time.perf_counter() - received) * 1e3
        stats.latency_ms = now_ms(self, msg.header.stamp) if decoded else 0.0
        self.statistics_pub.publish(stats)

    def _publish_periodic_statistics(self) -> None:
        header = message(Header, stamp=self.get_clock().now().to_msg())
        self.statistics_pub.publish(self._statistics(header, has_frame=False))

    def close(self) -> None:
        self.worker.stop()


main = main_of(DecoderNode)


if __name__ == "__main__":
    sys.exit(main())
