"""Start, spin and stop a node process the same way for every executable (``main`` of each node)."""
from __future__ import annotations

import sys
from typing import Callable

import rclpy
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node


class StartupError(RuntimeError):
    """A node cannot start (bad parameter, missing model...); the message says what to change."""


def run_node(make_node: Callable[[], Node], argv: list[str] | None = None) -> int:
    """rclpy.init, build the node, spin until Ctrl-C/SIGTERM/shutdown, clean up; 1 on a startup error."""
    rclpy.init(args=sys.argv if argv is None else argv)
    node = None
    try:
        try:
            node = make_node()
        except (StartupError, ParameterException, ValueError, FileNotFoundError) as exc:
            rclpy.logging.get_logger("roi_codec_ros").fatal(f"cannot start: {exc}")
            return 1
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        try:
            executor.spin()
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
        return 0
    finally:
        if node is not None:
            close = getattr(node, "close", None)
            if close is not None:
                close()
            node.destroy_node()
        rclpy.try_shutdown()


def now_ms(node: Node, stamp) -> float:
    """Milliseconds from ``stamp`` (builtin_interfaces/Time) to the node's clock now."""
    now = node.get_clock().now().nanoseconds
    return (now - (stamp.sec * 1_000_000_000 + stamp.nanosec)) / 1e6
