"""Demo pipeline: frame_source -> encoder_node -> decoder_node in one namespace.

    ros2 launch roi_codec_ros pipeline.launch.py [input:=video.mp4|folder|bag] [fps:=10] [width:=1242 height:=375] [engine:=x264]
    roi-launch  roi_codec_ros pipeline.launch.py ...       (pip-only setup; same file, same arguments)

With the defaults it publishes the sample images bundled with ultralytics, so it runs on a fresh machine (the
encoder still needs detector weights: $ROI_CODEC_DETECTOR_WEIGHTS or detector_weights:=PATH, or :=none).
Topics (relative to `namespace`): image_raw -> image_raw/roi_codec (+ encoder/statistics) -> image
(+ image_roi_overlay with overlay:=true, decoder/statistics).  Argument defaults equal the nodes' declared
defaults (test/test_ros_config.py checks it); the params files come first, the arguments override them.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def _config(name):
    return PathJoinSubstitution([FindPackageShare("roi_codec_ros"), "config", name])


def generate_launch_description():
    namespace = LaunchConfiguration("namespace")
    model_path = LaunchConfiguration("model_path")
    return LaunchDescription([
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the nodes and their topics"),
        DeclareLaunchArgument("source_params_file", default_value=_config("source.yaml"), description="frame_source parameters"),
        DeclareLaunchArgument("encoder_params_file", default_value=_config("encoder.yaml"), description="encoder parameters"),
        DeclareLaunchArgument("decoder_params_file", default_value=_config("decoder.yaml"), description="decoder parameters"),
        DeclareLaunchArgument("input", default_value="bundled",
                              description="video file, image folder or rosbag; 'bundled' = ultralytics' bus.jpg and zidane.jpg"),
        DeclareLaunchArgument("fps", default_value="10.0", description="frames per second published by the source"),
        DeclareLaunchArgument("width", default_value="0", description="resize source frames to this width (0 = keep)"),
        DeclareLaunchArgument("height", default_value="0", description="resize source frames to this height (0 = keep)"),
        DeclareLaunchArgument("engine", default_value="neural",
                              description="encoder engine: neural (learned ROI codec) | x264 | x265 | a detected hardware "
                                          "encoder; the decoder decodes every format"),
        DeclareLaunchArgument("model_path", default_value="default",
                              description="codec model for encoder and decoder; 'default' = shipped model, 'random' = untrained test model"),
        DeclareLaunchArgument("detector_weights", default_value="default",
                              description="YOLO .pt; 'default' = $ROI_CODEC_DETECTOR_WEIGHTS (required then), 'none' = static boxes only"),
        DeclareLaunchArgument("overlay", default_value="false", description="decoder also publishes image_roi_overlay"),
        Node(
            package="roi_codec_ros",
            executable="frame_source",
            name="frame_source",
            namespace=namespace,
            parameters=[
                LaunchConfiguration("source_params_file"),
                {"input": LaunchConfiguration("input"), "fps": LaunchConfiguration("fps"),
                 "width": LaunchConfiguration("width"), "height": LaunchConfiguration("height")},
            ],
            output="screen",
        ),
        Node(
            package="roi_codec_ros",
            executable="encoder_node",
            name="encoder",
            namespace=namespace,
            parameters=[
                LaunchConfiguration("encoder_params_file"),
                {"engine": LaunchConfiguration("engine"), "model_path": model_path,
                 "detector.weights": LaunchConfiguration("detector_weights")},
            ],
            output="screen",
        ),
        Node(
            package="roi_codec_ros",
            executable="decoder_node",
            name="decoder",
            namespace=namespace,
            parameters=[
                LaunchConfiguration("decoder_params_file"),
                {"model_path": model_path, "overlay": LaunchConfiguration("overlay")},
            ],
            output="screen",
        ),
    ])
