"""Shim of ROS 2 ``launch_ros`` for roi-launch (see ../__init__.py): Node and FindPackageShare."""
ROI_CODEC_ROS_SHIM = True
