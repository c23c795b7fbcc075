"""N cameras sharing one link: an encoder_node per camera (+ optional decoder_node) and one budget_node.

    ros2 launch roi_codec_ros multi_camera.launch.py cameras:=cam_front,cam_left,cam_right weights:=2,1,1 total_kbps:=6000
    roi-launch  roi_codec_ros multi_camera.launch.py ...       (pip-only setup; same file, same arguments)

Each camera is a namespace: its encoder (node ``<namespace>/<camera>/encoder``) reads ``<camera>/<image_topic>``
and publishes ``<camera>/<image_topic>/roi_codec`` (+ ``<camera>/encoder/statistics``); with decoders:=true a
decoder per camera publishes ``<camera>/image``.  The budget (``<namespace>/budget``) splits ``total_kbps`` by
``weights`` and content every second and sets each encoder's ``target_kbps``; change the total live with
``ros2 param set <namespace>/budget total_kbps 3000`` or a std_msgs/Float32 on ``<namespace>/budget/total_kbps``.
Argument defaults equal the nodes' declared defaults (test/test_ros_config.py checks it); the params files come
first, the arguments override them.  Only standard launch / launch_ros actions (OpaqueFunction expands the list).
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def _config(name):
    return PathJoinSubstitution([FindPackageShare("roi_codec_ros"), "config", name])


def _list(text):
    return [item.strip() for item in text.replace(";", ",").split(",") if item.strip()]


def _nodes(context):
    cameras = _list(LaunchConfiguration("cameras").perform(context))
    if not cameras:
        raise ValueError("cameras:= needs at least one camera name, e.g. cameras:=cam_front,cam_left")
    weights = [float(w) for w in _list(LaunchConfiguration("weights").perform(context))]
    namespace = LaunchConfiguration("namespace").perform(context).strip("/")
    image_topic = LaunchConfiguration("image_topic").perform(context)
    decoders = LaunchConfiguration("decoders").perform(context).strip().lower() in ("true", "1", "yes")
    model_path = LaunchConfiguration("model_path")
    actions = []
    for camera in cameras:
        camera_ns = f"{namespace}/{camera}" if namespace else camera
        actions.append(Node(
            package="roi_codec_ros",
            executable="encoder_node",
            name="encoder",
            namespace=camera_ns,
            parameters=[
                LaunchConfiguration("encoder_params_file"),
                {"engine": LaunchConfiguration("engine"), "model_path": model_path,
                 "detector.weights": LaunchConfiguration("detector_weights")},
            ],
            remappings=[("image_raw", image_topic)],
            output="screen",
        ))
        if decoders:
            actions.append(Node(
                package="roi_codec_ros",
                executable="decoder_node",
                name="decoder",
                namespace=camera_ns,
                parameters=[LaunchConfiguration("decoder_params_file"), {"model_path": model_path}],
                remappings=[("image_raw/roi_codec", f"{image_topic}/roi_codec")],
                output="screen",
            ))
    actions.append(Node(
        package="roi_codec_ros",
        executable="budget_node",
        name="budget",
        namespace=namespace,
        parameters=[
            LaunchConfiguration("budget_params_file"),
            {"total_kbps": LaunchConfiguration("total_kbps"), "content": LaunchConfiguration("content")},
            {"cameras": [f"{camera}/encoder" for camera in cameras], "weights": weights or [1.0]},
        ],
        output="screen",
    ))
    return actions


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument("cameras", default_value="camera",
                              description="comma-separated camera names; each is a namespace holding its image topic"),
        DeclareLaunchArgument("weights", default_value="",
                              description="comma-separated weight per camera, e.g. 2,1,1 (empty = equal weights)"),
        DeclareLaunchArgument("total_kbps", default_value="4000.0", description="total bitrate of all cameras, kbit/s"),
        DeclareLaunchArgument("content", default_value="coverage",
                              description="budget content mode: coverage | rd_slope | none (weights only)"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace above the cameras and the budget"),
        DeclareLaunchArgument("image_topic", default_value="image_raw",
                              description="image topic inside each camera's namespace"),
        DeclareLaunchArgument("decoders", default_value="false", description="also start a decoder per camera"),
        DeclareLaunchArgument("encoder_params_file", default_value=_config("encoder.yaml"), description="encoder parameters"),
        DeclareLaunchArgument("decoder_params_file", default_value=_config("decoder.yaml"), description="decoder parameters"),
        DeclareLaunchArgument("budget_params_file", default_value=_config("budget.yaml"), description="budget parameters"),
        DeclareLaunchArgument("engine", default_value="neural",
                              description="encoder engine: neural | x264 | x265 | a detected hardware encoder"),
        DeclareLaunchArgument("model_path", default_value="default",
                              description="codec model for encoders and decoders; 'random' = untrained test model"),
        DeclareLaunchArgument("detector_weights", default_value="default",
                              description="YOLO .pt; 'default' = $ROI_CODEC_DETECTOR_WEIGHTS, 'none' = static boxes only"),
        OpaqueFunction(function=_nodes),
    ])
