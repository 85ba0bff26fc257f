"""Error classes of the ros room: one per concern, all under MessageError, so callers catch what they mean."""

from __future__ import annotations

__all__ = ["BagError", "ConversionError", "DepthImageError", "MessageError", "PointCloud2Error",
           "TrackedMeshMsgError"]


class MessageError(ValueError):
    """Base of the ros room's errors: a ROS message, the data given to build one, or a bag of them is
    malformed or unusable; the message names the problem."""


class PointCloud2Error(MessageError):
    """A sensor_msgs/PointCloud2 (or the array/columns to encode into one) is malformed."""


class DepthImageError(MessageError):
    """A sensor_msgs/Image of depth or its sensor_msgs/CameraInfo cannot be used (encoding,
    distortion model, sizes); the message names the field and why."""


class TrackedMeshMsgError(MessageError):
    """An occflow_ros_msgs/TrackedMesh (or the arrays to fill one with) is inconsistent."""


class ConversionError(MessageError):
    """A tracker result, stamp, colour box or status cannot be turned into a ROS message as asked."""


class BagError(MessageError):
    """A rosbag2 bag cannot be read or written as asked (missing, not a bag, empty, wrong topic or type,
    truncated or corrupt, output path taken); the message names the bag and the problem."""
