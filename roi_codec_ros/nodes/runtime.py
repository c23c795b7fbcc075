"""Start, spin and stop a node process the same way for every executable (``main`` of each node).

Shutdown: Ctrl-C/SIGINT (or SIGTERM) ends the spin at once, the worker thread gets ``STOP_TIMEOUT_S`` to finish
the frame in progress, ROS is shut down cleanly (parameter services, logs flushed), and the process then ends
with ``os._exit``: tearing down torch, CompressAI and ultralytics module by module took 2-7 s here, so the
model is simply left loaded for the operating system to reclaim.
"""
from __future__ import annotations

import os
import sys
from typing import Callable

import rclpy
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos_overriding_options import InvalidQosOverridesError

STOP_TIMEOUT_S = 1.0  # the whole exit must stay under 2 s

# What config/fastdds_large_frames.xml carries between processes on one machine (docs/ros.md#large-frames):
# its shared-memory segment holds 128 MiB of fragments in flight per sender and its port queue 2048 fragments of
# 64 KB per receiver.  A 4096x3072 rgb8 Image is 37.7 MB; messages above this limit are logged as errors.
TRANSPORT_LIMIT_BYTES = 64 * 1024 * 1024
PROFILE_VARIABLES = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")


class StartupError(RuntimeError):
    """A node cannot start (bad parameter, missing model...); the message says what to change."""


def message(cls, **fields):
    """A ROS message with ``fields`` set by attribute: a misspelt field raises (message constructors ignore
    unknown keyword arguments unless ROS_PYTHON_CHECK_FIELDS=1), and no per-element checks run on ``data``."""
    msg = cls()
    for name, value in fields.items():
        setattr(msg, name, value)
    return msg


def transport_warning() -> str | None:
    """A warning when the default Fast DDS settings will lose camera-sized best-effort messages, else None."""
    rmw = os.environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    if not rmw.startswith("rmw_fastrtps") or any(os.environ.get(v) for v in PROFILE_VARIABLES):
        return None
    return (
        "FASTDDS_DEFAULT_PROFILES_FILE is not set: with Fast DDS' default 512 KB shared-memory segment, best-effort "
        "images larger than that are often lost between processes; export FASTDDS_DEFAULT_PROFILES_FILE="
        "<share>/roi_codec_ros/config/fastdds_large_frames.xml (docs/ros.md, 'Large frames')"
    )


class LargeMessageCheck:
    """Logs an error (once per size class) when a node publishes a message above what the transport carries."""

    def __init__(self, logger, topic: str, limit: int = TRANSPORT_LIMIT_BYTES):
        self.logger, self.topic, self.limit = logger, topic, limit
        self._reported = False

    def __call__(self, num_bytes: int) -> bool:
        """True when ``num_bytes`` fits; else logs (first time) and returns False.  The message is still sent."""
        if num_bytes <= self.limit:
            return True
        if not self._reported:
            self._reported = True
            self.logger.error(
                f"{self.topic}: a {num_bytes / 1e6:.1f} MB message exceeds the {self.limit / 2**20:.0f} MiB the "
                "project's Fast DDS profile carries between processes; subscribers will likely not receive it "
                "(raise segment_size and port_queue_capacity in config/fastdds_large_frames.xml, docs/ros.md)"
            )
        return False


def run_node(make_node: Callable[[], Node], argv: list[str] | None = None) -> int:
    """rclpy.init, build the node, spin until Ctrl-C/SIGTERM/shutdown, clean up; 1 on a startup error."""
    rclpy.init(args=sys.argv if argv is None else argv)
    logger = rclpy.logging.get_logger("roi_codec_ros")
    warning = transport_warning()
    if warning:
        logger.warning(warning)
    node = None
    try:
        try:
            node = make_node()
        except (StartupError, ParameterException, InvalidQosOverridesError, ValueError, FileNotFoundError) as exc:
            logger.fatal(f"cannot start: {exc}")
            return 1
        except RuntimeError as exc:
            # rclpy raises a bare RuntimeError for an unknown QoS override value (e.g. reliability: 'sometimes')
            if "QoS override" not in str(exc):
                raise
            logger.fatal(f"cannot start: {exc}")
            return 1
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        try:
            executor.spin()
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
        except Exception:
            # SIGINT/SIGTERM shut the context down while a callback was publishing (its publish raises RCLError
            # "publisher's context is invalid"): a clean stop, not a node failure
            if rclpy.ok():
                raise
        return 0
    finally:
        if node is not None:
            close = getattr(node, "close", None)
            if close is not None:
                close()
            node.destroy_node()
        rclpy.try_shutdown()


def main_of(make_node: Callable[[], Node]) -> Callable[[list[str] | None], int]:
    """The console-script ``main`` of a node: ``run_node``, then leave without interpreter teardown (see above)."""

    def main(argv: list[str] | None = None) -> int:
        code = run_node(make_node, argv)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)

    return main


def now_ms(node: Node, stamp) -> float:
    """Milliseconds from ``stamp`` (builtin_interfaces/Time) to the node's clock now."""
    now = node.get_clock().now().nanoseconds
    return (now - (stamp.sec * 1_000_000_000 + stamp.nanosec)) / 1e6
