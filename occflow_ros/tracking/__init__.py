"""The streaming engine: frame window, keyframe policy, persistent ids; the motion carriers that
move the mesh between keyframes live in ``occflow_ros.tracking.carriers``."""

from .config import DeformationConfig, MeshingConfig, TrackerConfig, TrackingError
from .ids import IdAssignment, inherit_ids
from .tracker import Tracker, TrackingCancelled
from .types import TrackedMesh

__all__ = [
    "DeformationConfig",
    "IdAssignment",
    "MeshingConfig",
    "TrackedMesh",
    "Tracker",
    "TrackerConfig",
    "TrackingCancelled",
    "TrackingError",
    "inherit_ids",
]
