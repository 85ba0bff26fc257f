"""The reconstruct node's outputs, built once for the node and the bag replay: topics, messages, stream resets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, List, Optional, Tuple

import numpy as np
from builtin_interfaces.msg import Time
from occflow_ros_msgs.msg import TrackedMesh as TrackedMeshMsg
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from .node_config import NODE_NAME
from .conversions import (
    ColorBox,
    to_correspondence_cloud,
    to_input_correspondence_cloud,
    to_marker_array_cdr,
    to_tracked_mesh_msg,
)

if TYPE_CHECKING:  # only read: the node config and the tracker's result type
    from ..tracking.types import TrackedMesh
    from .node_config import OutputOptions

__all__ = [
    "NODE_NAME",
    "OUTPUTS",
    "OutputBuilder",
    "OutputTopic",
    "StreamGuard",
    "output_topic",
]



@dataclass(frozen=True)
class OutputTopic:
    """One output of the node: ``name`` (the topic is ``~/<name>``, i.e. ``<ns>/occflow_reconstruct/<name>``),
    its rclpy message class, and the ``output.publish_*`` option that switches it."""

    name: str
    msg_class: type
    option: str


#: The node's outputs in the order they are built and published each frame.
OUTPUTS: Tuple[OutputTopic, ...] = (
    OutputTopic("mesh", MarkerArray, "publish_mesh"),
    OutputTopic("correspondences", PointCloud2, "publish_correspondences"),
    OutputTopic("tracked_mesh", TrackedMeshMsg, "publish_tracked_mesh"),
    OutputTopic("input_correspondences", PointCloud2, "publish_input_correspondences"),
)


def output_topic(name: str, namespace: str = "") -> str:
    """The absolute topic of output ``name`` of a node in ``namespace`` ('' or '/': the root), e.g.
    ``output_topic("mesh")`` -> ``/occflow_reconstruct/mesh``, what ``~/mesh`` resolves to."""
    ns = "/" + namespace.strip("/") if namespace.strip("/") else ""
    return f"{ns}/{NODE_NAME}/{name}"


class OutputBuilder:
    """Turns each tracker result into the node's output messages, with the state that spans frames.

    State: the colour box (fitted to the canonical vertices of the first keyframe after a (re)start
    when ``fit_color_box``, else the fixed camera working volume of :class:`ColorBox`), and the faces
    of the mesh marker published last (a topology change sends DELETEALL + ADD in one MarkerArray).
    The node and the bag replay both build their messages here, so a replayed bag holds exactly
    what the node would publish for the same frames.

    Per frame: :meth:`build` (all-or-nothing: raises before anything is to be sent), send the
    messages, then :meth:`sent` with the outputs that went out. :meth:`reset` after a tracker reset.
    """

    def __init__(self, *, fit_color_box: bool = True) -> None:
        self.fit_color_box = bool(fit_color_box)
        self.color_box: Optional[ColorBox] = None if self.fit_color_box else ColorBox()
        self.published_faces: Optional[np.ndarray] = None
        self.tracked_faces: Optional[np.ndarray] = None  # of the TrackedMesh sent last
        self._keyframe_stamp: Optional[Tuple[float, Any]] = None  # (seconds, header stamp)

    def reset(self) -> None:
        """Forget the fitted colour box (the next keyframe fits a new one)."""
        if self.fit_color_box:
            self.color_box = None
        self._keyframe_stamp = None

    def _exact_keyframe_stamp(self, mesh: TrackedMesh, header: Header) -> Any:
        """The keyframe cloud's own header stamp, remembered when its mesh went through here, so
        TrackedMesh.keyframe_stamp equals that message's stamp to the nanosecond (the tracker's
        float seconds are ~0.2 us coarse at epoch times); None if that frame was not seen."""
        if mesh.topology_changed and mesh.stamp == mesh.keyframe_stamp:
            self._keyframe_stamp = (mesh.keyframe_stamp, Time(sec=header.stamp.sec,
                                                              nanosec=header.stamp.nanosec))
        if self._keyframe_stamp is not None and self._keyframe_stamp[0] == mesh.keyframe_stamp:
            return self._keyframe_stamp[1]
        return None

    def build(self, mesh: TrackedMesh, header: Header, options: OutputOptions,
              wanted: Optional[Callable[[str], bool]] = None) -> List[Tuple[OutputTopic, Any]]:
        """The enabled outputs of one frame, in :data:`OUTPUTS` order: ``[(output, message), ...]``.

        ``header``: the input cloud's (frame_id and stamp, copied onto every message). ``options``:
        which outputs are on and the mesh alpha. ``wanted(name)``: False skips an output nobody
        listens to (the node asks its publishers; default: every enabled one). The mesh marker is
        its CDR ``bytes`` (the fast path); the others are rclpy messages. The input
        correspondences are left out when the tracker did not compute them. Raises
        ConversionError (or TrackedMeshMsgError / PointCloud2Error) for a result that cannot be
        converted; nothing of the frame should then be sent.
        """
        if mesh.topology_changed and self.color_box is None and mesh.num_vertices:
            self.color_box = ColorBox.around(mesh.canonical_vertices)
        keyframe_stamp = self._exact_keyframe_stamp(mesh, header)
        out: List[Tuple[OutputTopic, Any]] = []
        for output in OUTPUTS:
            if not getattr(options, output.option) or (wanted is not None and not wanted(output.name)):
                continue
            if output.name == "mesh":
                message: Any = to_marker_array_cdr(mesh, header, color_box=self.color_box or ColorBox(),
                                                   alpha=options.mesh_alpha,
                                                   previous_faces=self.published_faces)
            elif output.name == "correspondences":
                message = to_correspondence_cloud(mesh, header)
            elif output.name == "tracked_mesh":
                message = to_tracked_mesh_msg(mesh, header, keyframe_stamp=keyframe_stamp,
                                              previous_faces=self.tracked_faces)
            else:
                message = to_input_correspondence_cloud(mesh, header)
                if message is None:
                    continue
            out.append((output, message))
        return out

    def sent(self, mesh: TrackedMesh, outputs: List[Tuple[OutputTopic, Any]]) -> None:
        """Record what went out: the faces of the mesh marker and of the TrackedMesh, which the
        next ones compare against."""
        if any(output.name == "mesh" for output, _ in outputs):
            self.published_faces = mesh.faces
        if any(output.name == "tracked_mesh" for output, _ in outputs):
            self.tracked_faces = mesh.faces


class StreamGuard:
    """When a stream of clouds must restart the tracker: the frame_id changed, the stamp went backwards
    (a bag loop, a clock reset) or jumped ahead more than ``max_jump_seconds``.

    :meth:`check` takes every accepted cloud's frame_id and stamp (seconds) in arrival order and
    returns None, or the reason to reset (the node logs it and counts it in its diagnostics).
    """

    def __init__(self, max_jump_seconds: float) -> None:
        self.max_jump_seconds = float(max_jump_seconds)
        self.frame_id: Optional[str] = None
        self.last_stamp: Optional[float] = None

    def check(self, frame_id: str, stamp: float) -> Optional[str]:
        prev_frame, prev_stamp = self.frame_id, self.last_stamp
        self.frame_id, self.last_stamp = frame_id, stamp
        if prev_frame is not None and frame_id != prev_frame:
            return f"frame_id changed from '{prev_frame}' to '{frame_id}'"
        if prev_stamp is not None and stamp < prev_stamp:
            return f"stamp went backwards by {prev_stamp - stamp:.3f} s (bag loop or clock reset)"
        if prev_stamp is not None and stamp - prev_stamp > self.max_jump_seconds:
            return (f"stamp jumped ahead by {stamp - prev_stamp:.3f} s (more than "
                    f"input.max_jump_seconds {self.max_jump_seconds:g})")
        return None
