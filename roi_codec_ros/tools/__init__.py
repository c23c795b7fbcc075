"""Operator tools that run against a live pipeline: ``roi-codec ros-demo`` / ``ros-monitor`` (pipeline_monitor).

The pip-only stand-ins ``roi-launch``/``roi-param`` are development tools in ``dev/roi_codec_devtools``."""
