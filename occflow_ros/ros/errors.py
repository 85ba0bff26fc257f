"""Error classes of the ros room: one per concern, all under MessageError, so callers catch what they mean."""

from __future__ import annotations

__all__ = ["MessageError", "PointCloud2Error", "TrackedMeshMsgError"]


class MessageError(ValueError):
    """A ROS message, or the data given to build one, is malformed; the message names the problem."""


class PointCloud2Error(MessageError):
    """A sensor_msgs/PointCloud2 (or the array/columns to encode into one) is malformed."""


class TrackedMeshMsgError(MessageError):
    """An occflow_ros_msgs/TrackedMesh (or the arrays to fill one with) is inconsistent."""
