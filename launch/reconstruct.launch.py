"""Launch the occflow_ros reconstruct node (and optionally RViz 2): ros2 launch occflow_ros reconstruct.launch.py.

Arguments (``ros2 launch occflow_ros reconstruct.launch.py --show-args``):
  params_file   parameters YAML (default: the installed config/reconstruct.yaml)
  input_topic   the depth camera's PointCloud2 topic, remapped onto the node's ``points``
                (default: realsense-ros 4.x with pointcloud.enable:=true)
  input_type    points | depth; empty: input.type from params_file
  depth_topic, camera_info_topic   with input_type depth: the depth image (sensor_msgs/Image) and
                its CameraInfo, remapped onto ``depth`` and ``camera_info`` (realsense-ros 4.x names)
  model         checkpoint file; empty: model_path from params_file (empty there too: the shipped model)
  device        auto | cpu | cuda | cuda:N; empty: device from params_file
  preset        auto | cpu | gpu | none: defaults sized for the machine; empty: preset from params_file
  use_sim_time  true when replaying a bag with --clock
  namespace     the node's namespace (one per camera); its outputs are <namespace>/occflow_reconstruct/*
  rviz          true: also start rviz2 with config/occflow.rviz

Large clouds with best-effort QoS need the shared-memory Fast DDS profile in every process's environment
(see README, "DDS and large clouds"): export FASTDDS_DEFAULT_PROFILES_FILE=<share>/config/fastdds_shm.xml.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = "occflow_ros"
NODE_NAME = "occflow_reconstruct"  # occflow_ros.ros.node.NODE_NAME


def _true(text):
    return text.strip().lower() in ("true", "1", "yes", "on")


def _launch_setup(context, *args, **kwargs):
    """The node (and rviz2), built once the arguments' values are known: an empty ``model`` or
    ``device`` leaves the params_file's value alone instead of overriding it with an empty string."""
    share = get_package_share_directory(PACKAGE)
    params_file = LaunchConfiguration("params_file").perform(context)
    input_topic = LaunchConfiguration("input_topic").perform(context)
    model = LaunchConfiguration("model").perform(context).strip()
    device = LaunchConfiguration("device").perform(context).strip()
    input_type = LaunchConfiguration("input_type").perform(context).strip()
    depth_topic = LaunchConfiguration("depth_topic").perform(context)
    camera_info_topic = LaunchConfiguration("camera_info_topic").perform(context)
    use_sim_time = _true(LaunchConfiguration("use_sim_time").perform(context))
    overrides = {"use_sim_time": use_sim_time}
    if model:
        overrides["model_path"] = os.path.abspath(os.path.expanduser(model))
    if device:
        overrides["device"] = device
    preset = LaunchConfiguration("preset").perform(context).strip()
    if preset:
        overrides["preset"] = preset
    if input_type:
        overrides["input.type"] = input_type
    actions = [
        Node(
            package=PACKAGE,
            executable="reconstruct",
            name=NODE_NAME,
            namespace=LaunchConfiguration("namespace").perform(context),
            output="screen",
            emulate_tty=True,
            parameters=[params_file, overrides],
            remappings=[("points", input_topic), ("depth", depth_topic),
                        ("camera_info", camera_info_topic)],
        )
    ]
    if _true(LaunchConfiguration("rviz").perform(context)):
        actions.append(
            Node(
                package="rviz2",
                executable="rviz2",
                name="occflow_rviz",
                output="log",
                arguments=["-d", os.path.join(share, "config", "occflow.rviz")],
                parameters=[{"use_sim_time": use_sim_time}],
            )
        )
    return actions


def generate_launch_description():
    share = get_package_share_directory(PACKAGE)
    return LaunchDescription([
        DeclareLaunchArgument(
            "params_file", default_value=os.path.join(share, "config", "reconstruct.yaml"),
            description="YAML file with the node's parameters (every one is listed in the default)"),
        DeclareLaunchArgument(
            "input_topic", default_value="/camera/camera/depth/color/points",
            description="sensor_msgs/PointCloud2 topic of the depth camera (realsense-ros 4.x "
                        "with pointcloud.enable:=true)"),
        DeclareLaunchArgument(
            "input_type", default_value="",
            description="points (a PointCloud2) or depth (an Image and its CameraInfo); empty: "
                        "input.type from params_file"),
        DeclareLaunchArgument(
            "depth_topic", default_value="/camera/camera/depth/image_rect_raw",
            description="sensor_msgs/Image depth topic (input_type depth)"),
        DeclareLaunchArgument(
            "camera_info_topic", default_value="/camera/camera/depth/camera_info",
            description="sensor_msgs/CameraInfo of the depth image (input_type depth)"),
        DeclareLaunchArgument(
            "model", default_value="",
            description="Occupancy Flow checkpoint; empty: model_path from params_file"),
        DeclareLaunchArgument(
            "device", default_value="",
            description="auto, cpu, cuda or cuda:N; empty: device from params_file"),
        DeclareLaunchArgument(
            "preset", default_value="",
            description="auto, cpu, gpu or none: defaults sized for the machine (auto: gpu on a "
                        "CUDA device, else cpu); empty: preset from params_file"),
        DeclareLaunchArgument(
            "use_sim_time", default_value="false",
            description="use /clock (replaying a bag with --clock)"),
        DeclareLaunchArgument(
            "namespace", default_value="",
            description="the node's namespace (one per camera)"),
        DeclareLaunchArgument(
            "rviz", default_value="false",
            description="also start rviz2 with config/occflow.rviz"),
        OpaqueFunction(function=_launch_setup),
    ])
