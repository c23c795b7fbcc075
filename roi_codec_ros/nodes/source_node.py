"""source_node (executable ``frame_source``): publishes sensor_msgs/Image on ``image_raw`` at ``fps``.

Frames come from ``input``: a video file, an image folder, a rosbag (``bag_topic``), or, by default ("bundled"), the sample
images bundled with ultralytics (bus.jpg, zidane.jpg) so the demo works on a fresh machine (see
frame_sources.open_source).  Every message is stamped with the node's clock at publishing time, so
``now - stamp`` downstream is the pipeline latency.
"""
from __future__ import annotations

import sys

from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from sensor_msgs.msg import Image

from .frame_sources import BUNDLED, FrameSourceError, open_source
from .images import SUPPORTED_ENCODINGS, rgb_to_image_data
from .ros_params import Param, check_choices, current_values, declare_parameters, node_options, qos_overrides, sensor_qos, touches
from .runtime import LargeMessageCheck, StartupError, main_of, message

OUTPUT_TOPIC = "image_raw"

PARAMETERS = (
    Param("input", BUNDLED, f"video file, image folder or rosbag; '{BUNDLED}' = the sample images bundled with ultralytics "
          "(bus.jpg, zidane.jpg)", read_only=True),
    Param("bag_topic", "", "image topic to read from a rosbag ('' = the bag's only image topic)", read_only=True),
    Param("width", 0, "resize frames to this width (0 = keep; set width and height together)", range=(0, 16384), read_only=True),
    Param("height", 0, "resize frames to this height (0 = keep)", range=(0, 16384), read_only=True),
    Param("fps", 10.0, "frames published per second", range=(0.01, 1000.0)),
    Param("loop", True, "start again from the first frame at the end of the input"),
    Param("max_frames", 0, "stop publishing after this many frames (0 = no limit)", range=(0, 2**31 - 1), read_only=True),
    Param("encoding", "rgb8", "published image encoding", choices=SUPPORTED_ENCODINGS),
    Param("frame_id", "camera", "header.frame_id of the published images"),
)


class SourceNode(Node):
    def __init__(self, **kwargs):
        super().__init__("frame_source", **{**node_options(), **kwargs})
        self._values = declare_parameters(self, PARAMETERS)
        v = self._values
        if bool(v["width"]) != bool(v["height"]):
            raise StartupError("set both width and height to resize, or neither")
        size = (v["width"], v["height"]) if v["width"] else None
        try:
            self.source = open_source(v["input"], v["bag_topic"], size)
        except FrameSourceError as exc:
            raise StartupError(str(exc)) from exc
        self._frames = self.source.frames()
        self.published = 0
        self.publisher = self.create_publisher(Image, OUTPUT_TOPIC, sensor_qos(), qos_overriding_options=qos_overrides())
        self._large = LargeMessageCheck(self.get_logger(), self.resolve_topic_name(OUTPUT_TOPIC))
        self.timer = self.create_timer(1.0 / v["fps"], self._tick)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.add_post_set_parameters_callback(self._on_parameters_set)
        self.get_logger().info(f"publishing {self.source.description} on {self.resolve_topic_name(OUTPUT_TOPIC)} at {v['fps']:g} fps")

    def _on_set_parameters(self, parameters) -> SetParametersResult:
        reason = check_choices(PARAMETERS, parameters)
        if reason is not None:
            return SetParametersResult(successful=False, reason=reason)
        return SetParametersResult(successful=True)

    def _on_parameters_set(self, parameters) -> None:
        if not touches(PARAMETERS, parameters):
            return
        self._values = current_values(self, PARAMETERS)
        self.timer.timer_period_ns = int(1e9 / self._values["fps"])

    def _next_frame(self):
        frame = next(self._frames, None)
        if frame is None and self._values["loop"] and self.published:
            self._frames = self.source.frames()
            frame = next(self._frames, None)
        return frame

    def _tick(self) -> None:
        max_frames = self._values["max_frames"]
        frame = self._next_frame() if not (max_frames and self.published >= max_frames) else None
        if frame is None:
            self.get_logger().info(f"input finished after {self.published} frames; idle")
            self.timer.cancel()
            return
        step, data = rgb_to_image_data(frame, self._values["encoding"])
        msg = message(Image, height=frame.shape[0], width=frame.shape[1], encoding=self._values["encoding"], is_bigendian=0, step=step)
        msg.data = data  # bytes (fast path)
        msg.header.frame_id = self._values["frame_id"]
        msg.header.stamp = self.get_clock().now().to_msg()
        self._large(len(data))
        self.publisher.publish(msg)
        self.published += 1


main = main_of(SourceNode)


if __name__ == "__main__":
    sys.exit(main())
