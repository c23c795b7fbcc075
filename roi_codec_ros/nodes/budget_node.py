"""budget_node: one total kbps shared by several encoder_node cameras (issue 12, docs/rate_control.md).

Subscribes to every camera's ``<camera>/statistics`` (EncoderStatistics), runs
``roi_codec_ros.rate_control.BudgetAllocator`` every ``period_s`` (and at once when the total or a weight
changes) and sets each encoder's ``target_kbps`` through its ``<camera>/set_parameters`` service (asynchronous:
the node never waits for an encoder).  ``cameras`` are encoder node names, relative to this node's namespace or
absolute.  The total changes live through the ``total_kbps`` parameter or a ``std_msgs/Float32`` on
``~/total_kbps`` (kbit/s, e.g. from a link monitor; it sets the parameter, so ``ros2 param get`` shows it).
``~/allocation`` (std_msgs/String, JSON) reports the split after every allocation.
Parameters: the ``PARAMETERS`` table below (also in docs/ros.md).  The decisions are in budget_core (no ROS).
"""
from __future__ import annotations

import json
import math
import sys
import time

from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import ParameterType, ParameterValue, SetParametersResult
from rcl_interfaces.srv import SetParameters
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import Float32, String

from roi_codec_ros.msg import EncoderStatistics
from roi_codec_ros.rate_control import BudgetAllocator
from roi_codec_ros.rate_control.budget import CONTENT_MODES

from .budget_core import SET_PARAMETERS_SUFFIX, STATISTICS_SUFFIX, TARGET_PARAMETER, TargetSender, camera_weights, report_fields
from .ros_params import STATISTICS_QOS, Param, check_parameter_change, current_values, declare_parameters, node_options, touches
from .runtime import StartupError, main_of, message

TOTAL_TOPIC = "~/total_kbps"
ALLOCATION_TOPIC = "~/allocation"
LINK_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)

PARAMETERS = (
    Param("total_kbps", 4000.0, "total bitrate of all cameras in kbit/s (live; also set by a std_msgs/Float32 on "
          f"{TOTAL_TOPIC})", range=(1.0, 1.0e7)),
    Param("cameras", ["encoder"], "encoder node names (relative to this node's namespace, or absolute) whose "
          "target_kbps this node sets; their statistics are <name>/statistics", read_only=True,
          type=ParameterType.PARAMETER_STRING_ARRAY),
    Param("weights", [1.0], "weight per camera, in the order of `cameras` (one number = equal weights); shares are "
          "proportional to weight x content factor (live)", dynamic=True),
    Param("content", "coverage", "content part of the split: coverage = ROI coverage relative to the cameras' mean, "
          "rd_slope = equalise the encoders' distortion drop per bit, none = weights only (live)",
          choices=CONTENT_MODES),
    Param("content_gain", 0.25, "content factors stay within 1 +- this (0 = weights only) (live)", range=(0.0, 0.95)),
    Param("period_s", 1.0, "re-split every this many seconds (a total or weight change re-splits at once) (live)",
          range=(0.05, 3600.0)),
    Param("stale_s", 3.0, "a camera whose last statistics are older than this is split by weight only, without its "
          "reach", range=(0.1, 3600.0), read_only=True),
)


class BudgetNode(Node):
    def __init__(self, **kwargs):
        super().__init__("budget", **{**node_options(), **kwargs})
        v = declare_parameters(self, PARAMETERS)
        try:
            weights = camera_weights(v["cameras"], v["weights"])
            self.allocator = BudgetAllocator(v["total_kbps"], weights, content=v["content"],
                                             content_gain=v["content_gain"], period_s=v["period_s"],
                                             stale_s=v["stale_s"])
        except ValueError as exc:
            raise StartupError(f"invalid parameters: {exc}") from exc
        self.sender = TargetSender()
        self.clients_by_camera = {}
        for camera in weights:
            self.create_subscription(EncoderStatistics, f"{camera}/{STATISTICS_SUFFIX}",
                                     lambda msg, c=camera: self._on_statistics(c, msg), STATISTICS_QOS)
            self.clients_by_camera[camera] = self.create_client(SetParameters, f"{camera}/{SET_PARAMETERS_SUFFIX}")
        self.create_subscription(Float32, TOTAL_TOPIC, self._on_total, LINK_QOS)
        self.allocation_pub = self.create_publisher(String, ALLOCATION_TOPIC, LINK_QOS)
        self.timer = self.create_timer(v["period_s"], self._allocate)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.add_post_set_parameters_callback(self._on_parameters_set)
        self.get_logger().info(
            f"budget ready: {v['total_kbps']:g} kbps over {', '.join(f'{c} (x{w:g})' for c, w in weights.items())}, "
            f"content {v['content']}; total also on {self.resolve_topic_name(TOTAL_TOPIC)}")

    @staticmethod
    def _now() -> float:
        return time.monotonic()

    # -- parameters ------------------------------------------------------------------------------------
    def _on_set_parameters(self, parameters) -> SetParametersResult:
        return check_parameter_change(self, PARAMETERS, parameters,
                                      lambda values: camera_weights(values["cameras"], values["weights"]))

    def _on_parameters_set(self, parameters) -> None:
        if not touches(PARAMETERS, parameters):
            return
        v = current_values(self, PARAMETERS)
        a = self.allocator
        if v["total_kbps"] != a.total_kbps:
            a.set_total(v["total_kbps"])
        for camera, weight in camera_weights(v["cameras"], v["weights"]).items():
            if a._weights.get(camera) != weight:  # noqa: SLF001 - set_weight marks the split dirty; skip no-ops
                a.set_weight(camera, weight)
        a.content, a.content_gain = v["content"], float(v["content_gain"])
        if v["period_s"] != a.period_s:
            a.period_s = float(v["period_s"])
            self.timer.timer_period_ns = int(v["period_s"] * 1e9)
        self._allocate()  # a new total or weight applies now, not at the next period

    def _on_total(self, msg: Float32) -> None:
        kbps = float(msg.data)
        if not (math.isfinite(kbps) and kbps >= 1.0):
            self.get_logger().warning(f"ignoring total {kbps} kbps on {TOTAL_TOPIC} (must be finite and >= 1)",
                                      throttle_duration_sec=5.0)
            return
        result = self.set_parameters([Parameter("total_kbps", Parameter.Type.DOUBLE, min(kbps, 1.0e7))])[0]
        if not result.successful:
            self.get_logger().warning(f"total {kbps} kbps refused: {result.reason}")

    # -- statistics and targets ------------------------------------------------------------------------
    def _on_statistics(self, camera: str, msg) -> None:
        fields = report_fields(msg)
        if fields is not None:
            self.allocator.report(camera, self._now(), **fields)

    def _allocate(self) -> None:
        allocation = self.allocator.allocate(self._now())
        for camera, kbps in self.sender.due(allocation).items():
            client = self.clients_by_camera[camera]
            if not client.service_is_ready():
                continue  # encoder not (yet) up: tried again at the next period
            value = ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=float(kbps))
            request = SetParameters.Request(parameters=[ParameterMsg(name=TARGET_PARAMETER, value=value)])
            self.sender.started(camera, kbps)
            client.call_async(request).add_done_callback(lambda future, c=camera: self._on_set_done(c, future))
        state = self.allocator.state()
        state.update(sent=self.sender.sent, failed=self.sender.failed, accepted_kbps=dict(self.sender.accepted))
        self.allocation_pub.publish(message(String, data=json.dumps(state)))

    def _on_set_done(self, camera: str, future) -> None:
        try:
            result = future.result()
            ok = bool(result.results) and all(r.successful for r in result.results)
            reason = "; ".join(r.reason for r in result.results if not r.successful)
        except Exception as exc:  # noqa: BLE001 - a failed call is logged and retried
            ok, reason = False, f"{type(exc).__name__}: {exc}"
        if not ok:
            self.get_logger().warning(f"{camera}: target_kbps not set ({reason}); retrying", throttle_duration_sec=5.0)
        self.sender.finished(camera, ok)


main = main_of(BudgetNode)


if __name__ == "__main__":
    sys.exit(main())
