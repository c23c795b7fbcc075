"""decoder_node: roi_codec_ros/EncodedFrame on ``compressed`` -> sensor_msgs/Image on ``image_decoded``.

The output keeps the frame's original header (stamp, frame_id) and source encoding.  With ``overlay`` it also
publishes ``image_roi_overlay`` (the encoder's ROI boxes drawn on the decoded frame).  A corrupt or foreign
frame is logged and counted (``~/statistics``: DecoderStatistics) and never stops the node.  Decoding runs on
one worker thread, latest-frame-wins like the encoder.
"""
from __future__ import annotations

import sys
import time

from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from sensor_msgs.msg import Image

from roi_codec_ros.codec import BitstreamError, RoiCodec
from roi_codec_ros.msg import DecoderStatistics
from roi_codec_ros.msg import EncodedFrame as EncodedFrameMsg

from .decoder_core import ForeignFrameError, FrameDecoder, roi_overlay
from .encoder_core import RoiBoxInfo
from .images import SUPPORTED_ENCODINGS, rgb_to_image_data
from .ros_params import QOS_CHOICES, STATISTICS_QOS, Param, check_choices, declare_parameters, qos_profile
from .runtime import run_node, now_ms
from .worker import LatestFrameWorker

PARAMETERS = (
    Param("model_path", "default", "codec model file, the same as the encoder's; 'default' = the model shipped in the package, "
          "'random' = untrained test model (RoiCodec.random(seed=0))", read_only=True),
    Param("device", "cpu", "torch device for the decoder's synthesis transform", read_only=True, choices=("cpu", "cuda", "auto")),
    Param("fp16", False, "half-precision synthesis (CUDA only)", read_only=True),
    Param("overlay", False, "also publish image_roi_overlay: the encoder's ROI boxes drawn on the decoded frame"),
    Param("overlay_dim", 0.45, "brightness of the non-ROI area in the overlay", range=(0.0, 1.0)),
    Param("qos", "sensor_data", "QoS of compressed/image_decoded/image_roi_overlay: sensor_data (best effort) or reliable",
          read_only=True, choices=QOS_CHOICES),
)


class DecoderNode(Node):
    def __init__(self, **kwargs):
        super().__init__("decoder", **kwargs)
        self._values = declare_parameters(self, PARAMETERS)
        v = self._values
        self.core = FrameDecoder(RoiCodec.load(v["model_path"] or "default", device=v["device"], fp16=v["fp16"]))
        qos = qos_profile(v["qos"])
        self.image_pub = self.create_publisher(Image, "image_decoded", qos)
        self.overlay_pub = self.create_publisher(Image, "image_roi_overlay", qos)
        self.statistics_pub = self.create_publisher(DecoderStatistics, "~/statistics", STATISTICS_QOS)
        self.received = self.decoded = self.corrupt = self.foreign = 0
        self.worker = LatestFrameWorker(self._process, self._on_worker_error, name="decoder")
        self.create_subscription(EncodedFrameMsg, "compressed", self._on_frame, qos)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        codec = self.core.codec
        self.get_logger().info(
            f"decoder ready: codec {codec.model_id[:12]} ({codec.info.get('path', '?')}), "
            f"{self.resolve_topic_name('compressed')} -> {self.resolve_topic_name('image_decoded')}"
        )

    def _on_set_parameters(self, parameters) -> SetParametersResult:
        reason = check_choices(PARAMETERS, parameters)
        if reason is not None:
            return SetParametersResult(successful=False, reason=reason)
        self._values = {**self._values, **{p.name: p.value for p in parameters}}
        return SetParametersResult(successful=True)

    def _on_frame(self, msg: EncodedFrameMsg) -> None:
        self.received += 1
        self.worker.submit((msg, time.perf_counter()))

    def _on_worker_error(self, exc: BaseException) -> None:
        if not self.context.ok():
            return  # shutting down: the frame in flight can no longer be published
        # anything not caught in _process (e.g. a bug in overlay drawing): count it, keep running
        self.corrupt += 1
        self.get_logger().error(f"frame not decoded: {type(exc).__name__}: {exc}", throttle_duration_sec=5.0)

    def _process(self, item) -> None:
        msg, received = item
        start = time.perf_counter()
        try:
            image = self.core.decode(msg.data, msg.codec_id)
        except ForeignFrameError as exc:
            self.foreign += 1
            self.get_logger().warning(f"foreign frame dropped: {exc}", throttle_duration_sec=5.0)
            self._publish_statistics(msg, received, start, decoded=False)
            return
        except BitstreamError as exc:
            self.corrupt += 1
            self.get_logger().warning(f"corrupt frame dropped (seq {msg.sequence}): {exc}", throttle_duration_sec=5.0)
            self._publish_statistics(msg, received, start, decoded=False)
            return
        decoded = time.perf_counter()
        encoding = msg.source_encoding if msg.source_encoding in SUPPORTED_ENCODINGS else "rgb8"
        self.image_pub.publish(self._image_message(msg, image, encoding))
        if self._values["overlay"]:
            boxes = [RoiBoxInfo(b.x1, b.y1, b.x2, b.y2, b.class_id, b.class_name, b.score) for b in msg.boxes]
            self.overlay_pub.publish(self._image_message(msg, roi_overlay(image, boxes, self._values["overlay_dim"]), "rgb8"))
        self.decoded += 1
        self._publish_statistics(msg, received, start, decoded=True, decode_ms=(decoded - start) * 1e3)

    @staticmethod
    def _image_message(msg: EncodedFrameMsg, image, encoding: str) -> Image:
        step, data = rgb_to_image_data(image, encoding)
        out = Image(header=msg.header, height=image.shape[0], width=image.shape[1], encoding=encoding, is_bigendian=0, step=step)
        out.data = data  # bytes (fast path)
        return out

    def _publish_statistics(self, msg: EncodedFrameMsg, received: float, start: float, decoded: bool, decode_ms: float = 0.0) -> None:
        self.statistics_pub.publish(
            DecoderStatistics(
                header=msg.header,
                frames_received=self.received,
                frames_decoded=self.decoded,
                frames_dropped=self.worker.dropped,
                frames_corrupt=self.corrupt,
                frames_foreign=self.foreign,
                bytes=len(msg.data),
                decode_ms=decode_ms,
                total_ms=(time.perf_counter() - received) * 1e3,
                latency_ms=now_ms(self, msg.header.stamp) if decoded else 0.0,
            )
        )

    def close(self) -> None:
        self.worker.stop()


def main(argv: list[str] | None = None) -> int:
    return run_node(DecoderNode, argv)


if __name__ == "__main__":
    sys.exit(main())
