"""The only room that imports rclpy or message packages: conversions, the node, rosbag2 IO."""

from __future__ import annotations

from occflow_ros.ros.bag_io import (
    POINTCLOUD2_TYPE,
    InputBag,
    OutputBag,
    bag_topics,
    message_definition,
    open_input_bag,
)
from occflow_ros.ros.conversions import (
    ColorBox,
    format_value,
    ns_to_stamp,
    seconds_to_stamp,
    stamp_to_ns,
    stamp_to_seconds,
    to_correspondence_cloud,
    to_diagnostics,
    to_input_correspondence_cloud,
    to_marker_array,
    to_marker_array_cdr,
    to_tracked_mesh_msg,
)
from occflow_ros.ros.errors import BagError, ConversionError, MessageError, PointCloud2Error, TrackedMeshMsgError
from occflow_ros.ros.outputs import NODE_NAME, OUTPUTS, OutputBuilder, OutputTopic, StreamGuard, output_topic
from occflow_ros.ros.pointcloud2 import (
    POINTFIELD_DTYPES,
    cloud_dtype,
    cloud_view,
    make_cloud,
    pack_rgb,
    read_xyz,
    auto_stride,
    unpack_rgb,
    xyz_cloud,
)
from occflow_ros.ros.tracked_mesh_msg import TrackedMeshArrays, make_tracked_mesh_msg, read_tracked_mesh_msg

__all__ = [
    "BagError",
    "ColorBox",
    "ConversionError",
    "InputBag",
    "MessageError",
    "NODE_NAME",
    "OUTPUTS",
    "OutputBag",
    "OutputBuilder",
    "OutputTopic",
    "POINTCLOUD2_TYPE",
    "POINTFIELD_DTYPES",
    "PointCloud2Error",
    "StreamGuard",
    "TrackedMeshArrays",
    "TrackedMeshMsgError",
    "bag_topics",
    "cloud_dtype",
    "cloud_view",
    "format_value",
    "make_cloud",
    "make_tracked_mesh_msg",
    "message_definition",
    "ns_to_stamp",
    "open_input_bag",
    "output_topic",
    "pack_rgb",
    "read_tracked_mesh_msg",
    "read_xyz",
    "auto_stride",
    "seconds_to_stamp",
    "stamp_to_ns",
    "stamp_to_seconds",
    "to_correspondence_cloud",
    "to_diagnostics",
    "to_input_correspondence_cloud",
    "to_marker_array",
    "to_marker_array_cdr",
    "to_tracked_mesh_msg",
    "unpack_rgb",
    "xyz_cloud",
]
