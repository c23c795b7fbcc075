"""encoder_node: sensor_msgs/Image on `image_raw` -> roi_codec_ros/EncodedFrame on `image_raw/roi_codec`.

    ros2 launch roi_codec_ros encoder.launch.py [namespace:=cam] [image_raw:=/camera/image_raw] [engine:=x264] [model_path:=...]
    roi-launch  roi_codec_ros encoder.launch.py ...        (pip-only setup; same file, same arguments)

`image_raw` remaps the input; the output follows it as `<image_raw>/roi_codec` (image_transport's naming).
Parameters come from `params_file` (default config/encoder.yaml), then the arguments below (later wins); argument
defaults equal the node's declared defaults (test/test_ros_config.py checks it).
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node and its topics"),
        DeclareLaunchArgument(
            "params_file",
            default_value=PathJoinSubstitution([FindPackageShare("roi_codec_ros"), "config", "encoder.yaml"]),
            description="encoder parameters (YAML)",
        ),
        DeclareLaunchArgument("image_raw", default_value="image_raw",
                              description="input topic (sensor_msgs/Image); the output is <image_raw>/roi_codec"),
        DeclareLaunchArgument("engine", default_value="neural",
                              description="coding engine: neural (learned ROI codec) | x264 | x265 | a detected hardware encoder"),
        DeclareLaunchArgument("model_path", default_value="default",
                              description="neural codec model file; 'default' = shipped model, 'random' = untrained test model"),
        DeclareLaunchArgument("detector_weights", default_value="default",
                              description="YOLO .pt; 'default' = $ROI_CODEC_DETECTOR_WEIGHTS (required then), 'none' = static boxes only"),
        Node(
            package="roi_codec_ros",
            executable="encoder_node",
            name="encoder",
            namespace=LaunchConfiguration("namespace"),
            parameters=[
                LaunchConfiguration("params_file"),
                {"engine": LaunchConfiguration("engine"), "model_path": LaunchConfiguration("model_path"),
                 "detector.weights": LaunchConfiguration("detector_weights")},
            ],
            remappings=[("image_raw", LaunchConfiguration("image_raw"))],
            output="screen",
        ),
    ])
