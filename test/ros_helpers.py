"""Helpers shared by the tests that start ROS 2 processes."""
from __future__ import annotations

import os
from pathlib import Path


def ros_env(tmp_path: Path) -> dict[str, str]:
    """Environment for ROS subprocesses: isolated on this machine and in this run's domain."""
    env = dict(os.environ)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))
    env.setdefault("ROS_LOG_DIR", str(tmp_path / "ros_log"))
    env["PYTHONUNBUFFERED"] = "1"
    return env
