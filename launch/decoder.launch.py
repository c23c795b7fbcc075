"""decoder_node: roi_codec_ros/EncodedFrame on `image_raw/roi_codec` -> sensor_msgs/Image on `image`.

    ros2 launch roi_codec_ros decoder.launch.py [namespace:=cam] [image_raw:=/camera/image_raw] [image:=/operator/image]
    roi-launch  roi_codec_ros decoder.launch.py ...        (pip-only setup; same file, same arguments)

Like image_transport's `republish roi_codec raw` with `in`/`out`: `image_raw` is the base of the input (frames
arrive on `<image_raw>/roi_codec`), `image` the output.  Parameters come from `params_file` (default
config/decoder.yaml), then the arguments below (later wins); argument defaults equal the node's declared defaults.
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
        DeclareLaunchArgument("image_raw", default_value="image_raw",
                              description="base of the input: EncodedFrames arrive on <image_raw>/roi_codec"),
        DeclareLaunchArgument("image", default_value="image", description="output topic (sensor_msgs/Image)"),
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
            remappings=[("image_raw", LaunchConfiguration("image_raw")), ("image", LaunchConfiguration("image"))],
            output="screen",
        ),
    ])
