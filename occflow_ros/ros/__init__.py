"""The only room that imports rclpy or message packages: conversions, the node, rosbag2 IO.

Its public names are loaded on first use (PEP 562): ``from occflow_ros.ros import xyz_cloud`` imports
the message code then, while the modules that need no ROS (``node_config``, ``params_file``,
``dds``) import on a machine without it, as the replay, the evaluation and the Python 3.10 test
need.
"""

from __future__ import annotations

import importlib
from typing import Any

#: public name -> the module of this room that defines it
_WHERE = {
    "BagError": "errors",
    "CameraInfoStore": "depth_image",
    "ColorBox": "conversions",
    "ConversionError": "errors",
    "DepthImageError": "errors",
    "InputBag": "bag_io",
    "MessageError": "errors",
    "NODE_NAME": "outputs",
    "OUTPUTS": "outputs",
    "OutputBag": "bag_io",
    "OutputBuilder": "outputs",
    "OutputTopic": "outputs",
    "POINTCLOUD2_TYPE": "bag_io",
    "POINTFIELD_DTYPES": "pointcloud2",
    "PointCloud2Error": "errors",
    "StreamGuard": "outputs",
    "TrackedMeshArrays": "tracked_mesh_msg",
    "TrackedMeshMsgError": "errors",
    "auto_stride": "pointcloud2",
    "bag_topics": "bag_io",
    "cloud_dtype": "pointcloud2",
    "cloud_view": "pointcloud2",
    "depth_points": "depth_image",
    "format_value": "conversions",
    "image_stride": "pointcloud2",
    "make_cloud": "pointcloud2",
    "make_tracked_mesh_msg": "tracked_mesh_msg",
    "message_definition": "bag_io",
    "ns_to_stamp": "conversions",
    "open_input_bag": "bag_io",
    "output_topic": "outputs",
    "pack_rgb": "pointcloud2",
    "read_tracked_mesh_msg": "tracked_mesh_msg",
    "read_xyz": "pointcloud2",
    "seconds_to_stamp": "conversions",
    "stamp_to_ns": "conversions",
    "stamp_to_seconds": "conversions",
    "to_correspondence_cloud": "conversions",
    "to_diagnostics": "conversions",
    "to_input_correspondence_cloud": "conversions",
    "to_marker_array": "conversions",
    "to_marker_array_cdr": "conversions",
    "to_tracked_mesh_msg": "conversions",
    "unpack_rgb": "pointcloud2",
    "xyz_cloud": "pointcloud2",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list:
    return sorted(set(globals()) | set(_WHERE))
