"""The only room that imports rclpy or message packages: conversions, the node, rosbag2 IO."""

from __future__ import annotations

from occflow_ros.ros.errors import MessageError, PointCloud2Error, TrackedMeshMsgError
from occflow_ros.ros.pointcloud2 import (
    POINTFIELD_DTYPES,
    cloud_dtype,
    cloud_view,
    make_cloud,
    pack_rgb,
    read_xyz,
    unpack_rgb,
    xyz_cloud,
)
from occflow_ros.ros.tracked_mesh_msg import TrackedMeshArrays, make_tracked_mesh_msg, read_tracked_mesh_msg

__all__ = [
    "MessageError",
    "POINTFIELD_DTYPES",
    "PointCloud2Error",
    "TrackedMeshArrays",
    "TrackedMeshMsgError",
    "cloud_dtype",
    "cloud_view",
    "make_cloud",
    "make_tracked_mesh_msg",
    "pack_rgb",
    "read_tracked_mesh_msg",
    "read_xyz",
    "unpack_rgb",
    "xyz_cloud",
]
