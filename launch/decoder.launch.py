"""decoder_node: roi_codec_ros/EncodedFrame on `compressed` -> sensor_msgs/Image on `image_decoded`.

    ros2 launch roi_codec_ros decoder.launch.py [namespace:=cam] [overlay:=true] [model_path:=...]
    roi-launch  roi_codec_ros decoder.launch.py ...        (pip-only setup; same file, same arguments)

Parameters come from `params_file` (default config/decoder.yaml), then the arguments below (later wins).
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
            default_value=PathJoinSubstitution([FindPackageShare("roi_codec_ros"), "config", "decoder.yaml"]),
            description="decoder parameters (YAML)",
        ),
        DeclareLaunchArgument("compressed", default_value="compressed", description="input topic (roi_codec_ros/EncodedFrame)"),
        DeclareLaunchArgument("image_decoded", default_value="image_decoded", description="output topic (sensor_msgs/Image)"),
        DeclareLaunchArgument("model_path", default_value="default",
                              description="codec model file (the encoder's); 'default' = shipped model, 'random' = untrained test model"),
        DeclareLaunchArgument("overlay", default_value="false", description="also publish image_roi_overlay"),
        Node(
            package="roi_codec_ros",
            executable="decoder_node",
            name="decoder",
            namespace=LaunchConfiguration("namespace"),
            parameters=[
                LaunchConfiguration("params_file"),
                {"model_path": LaunchConfiguration("model_path"), "overlay": LaunchConfiguration("overlay")},
            ],
            remappings=[("compressed", LaunchConfiguration("compressed")), ("image_decoded", LaunchConfiguration("image_decoded"))],
            output="screen",
        ),
    ])
