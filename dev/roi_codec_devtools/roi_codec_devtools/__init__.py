"""Development tools for the pip-only setup of roi_codec_ros (no ROS install, no ``ros2`` CLI).

``roi-launch`` (:mod:`roi_codec_devtools.launch_runner`) runs standard ROS 2 launch files, with the real
``launch`` when importable and with the stand-ins in ``launch_shim/`` otherwise; ``roi-param``
(:mod:`roi_codec_devtools.param_cli`) is the ``ros2 param`` subset the project needs.  Where the real ``ros2``
CLI exists, use it: these tools never replace it.  Nothing in ``roi_codec_ros`` imports this package.
"""
