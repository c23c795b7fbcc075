"""ROS 2 nodes: thin rclpy adapters around plain classes that work without ROS.

    source_node (frame_source) --sensor_msgs/Image--> encoder_node --EncodedFrame--> decoder_node --Image-->

``*_core.py``, ``images.py``, ``frame_sources.py`` and ``worker.py`` import no ROS module (testable alone);
``*_node.py``, ``ros_params.py`` and ``runtime.py`` are the rclpy side.  See docs/ros.md.
"""
