"""Bags with ground truth (depth stream + truth topics) and reading back what a replay wrote, as numpy arrays.

Layout of a ground-truth bag (``occflow-make-bag``), every message of a frame with that frame's
header (the depth camera's optical ``frame_id``, the capture stamp) and bag time = header stamp:

- ``/camera/depth/points`` (sensor_msgs/PointCloud2): the depth cloud, fields x, y, z float32 metres,
  organized H x W with NaN for missing depth (synthetic camera) or unorganized (scanned points).
- ``/ground_truth/surface`` (sensor_msgs/PointCloud2, unorganized): fields x, y, z (float32,
  metres) and id (uint32): dense surface samples of fixed material points at this frame's time; a
  given id is the same material point in every frame (ground-truth correspondences).
- ``/ground_truth/occupancy`` (sensor_msgs/PointCloud2, unorganized, optional): fields x, y, z
  (float32, metres) and inside (uint8, 1 inside the object): query points where occupancy is known.
- ``/ground_truth/info`` (std_msgs/String, once, at the first frame): JSON with ``layout``
  (``occflow_ros.ground_truth/1``), ``source``, ``size_m`` (the object's size: the unit of the
  paper's normalised metrics), ``fps``, the camera, and the topics' names.

Plain PointCloud2s with documented fields rather than a new message type: any ROS tool (RViz,
``ros2 bag info``, rosbags) reads them without our interface package.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Union

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from occflow_ros_msgs.msg import TrackedMesh as TrackedMeshMsg
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import Header, String

from ..data.ground_truth import GroundTruthFrame
from ..evaluation.sequence import FrameStatus, TrackedFrame
from ..ros.bag_io import OutputBag, bag_topics, open_input_bag
from ..ros.conversions import ns_to_stamp, stamp_to_ns
from ..ros.errors import BagError, PointCloud2Error
from ..ros.outputs import output_topic
from ..ros.pointcloud2 import cloud_view, read_xyz, xyz_cloud
from .replay import DIAGNOSTICS_TOPIC, GROUND_TRUTH_PREFIX
from ..ros.tracked_mesh_msg import read_tracked_mesh_msg

__all__ = [
    "DEPTH_TOPIC",
    "FRAME_ID",
    "GroundTruthBag",
    "INFO_TOPIC",
    "OCCUPANCY_TOPIC",
    "SURFACE_TOPIC",
    "read_ground_truth",
    "read_replayed",
    "write_ground_truth_bag",
]

DEPTH_TOPIC = "/camera/depth/points"
SURFACE_TOPIC = GROUND_TRUTH_PREFIX + "surface"
OCCUPANCY_TOPIC = GROUND_TRUTH_PREFIX + "occupancy"
INFO_TOPIC = GROUND_TRUTH_PREFIX + "info"
FRAME_ID = "camera_depth_optical_frame"


def write_ground_truth_bag(path: Union[str, os.PathLike], info: Dict[str, Any],
                           frames: Iterable[GroundTruthFrame], *, depth_topic: str = DEPTH_TOPIC,
                           frame_id: str = FRAME_ID, storage: str = "mcap", progress: bool = False,
                           total: Optional[int] = None) -> int:
    """Write a ground-truth bag (layout in the module docstring) of ``frames``; returns how many.

    ``info``: JSON-able description (``size_m`` is read by the evaluation), written with the
    topics' names and ``frame_id`` added. The bag appears at ``path`` only when complete (an
    exception or Ctrl-C leaves nothing); an existing ``path`` is refused (BagError).
    """
    from tqdm import tqdm

    count = 0
    with OutputBag(path, storage=storage) as bag, tqdm(total=total, unit="frame", desc="bag",
                                                       disable=not progress, dynamic_ncols=True) as bar:
        bag.add_topic(depth_topic, PointCloud2)
        bag.add_topic(SURFACE_TOPIC, PointCloud2)
        bag.add_topic(INFO_TOPIC, String)
        with_occupancy = False
        for frame in frames:
            stamp_ns = int(frame.stamp_ns)
            header = Header(stamp=ns_to_stamp(stamp_ns), frame_id=frame_id)
            if count == 0:
                described = {**info, "frame_id": frame_id,
                             "topics": {"depth": depth_topic, "surface": SURFACE_TOPIC,
                                        "occupancy": OCCUPANCY_TOPIC, "info": INFO_TOPIC}}
                bag.write(INFO_TOPIC, stamp_ns, String(data=json.dumps(described, sort_keys=True)))
            bag.write(depth_topic, stamp_ns, xyz_cloud(header, frame.cloud))
            bag.write(SURFACE_TOPIC, stamp_ns, xyz_cloud(header, frame.surface,
                                                         id=np.asarray(frame.surface_ids, np.uint32)))
            if frame.occ_points is not None:
                if not with_occupancy:
                    bag.add_topic(OCCUPANCY_TOPIC, PointCloud2)
                    with_occupancy = True
                bag.write(OCCUPANCY_TOPIC, stamp_ns, xyz_cloud(
                    header, frame.occ_points, inside=np.asarray(frame.occ_inside, np.uint8)))
            count += 1
            bar.update(1)
    return count


@dataclass
class GroundTruthBag:
    """The truth a bag carries (empty when it has none): ``info`` (the JSON of /ground_truth/info, {} if
    absent), ``frames`` (header stamp ns -> GroundTruthFrame with surface, ids and occupancy; the
    depth cloud is not loaded: ``cloud`` is empty), ``frame_id``, and ``topics`` (every topic ->
    (type, message count))."""

    info: Dict[str, Any]
    frames: Dict[int, GroundTruthFrame] = field(default_factory=dict)
    frame_id: str = ""
    topics: Dict[str, Any] = field(default_factory=dict)

    def size_m(self) -> Optional[float]:
        """The object's size in metres: ``info['size_m']``, else the longest side of the truth
        surface's bounding box at the first frame (None without truth)."""
        if self.info.get("size_m"):
            return float(self.info["size_m"])
        if not self.frames:
            return None
        surface = self.frames[min(self.frames)].surface
        return float((surface.max(axis=0) - surface.min(axis=0)).max())


def _clouds(path: Union[str, os.PathLike], topic: str, fields: tuple
            ) -> tuple[Dict[int, Dict[str, np.ndarray]], str]:
    """(stamp ns -> {'xyz': (N, 3) float32, field: (N,) array}, frame_id) of a truth topic."""
    out: Dict[int, Dict[str, np.ndarray]] = {}
    frame_id = ""
    with open_input_bag(path, topic) as bag:
        for index, (_, msg) in enumerate(bag):
            try:
                view = cloud_view(msg).reshape(-1)
                missing = [f for f in fields if f not in (view.dtype.names or ())]
                if missing:
                    raise PointCloud2Error(f"lacks the field(s) {missing} (has {list(view.dtype.names or ())})")
                entry = {"xyz": read_xyz(msg, skip_invalid=False)}
                entry.update({f: np.array(view[f]) for f in fields})
            except PointCloud2Error as exc:
                raise BagError(f"input bag {bag.path}: message #{index} on {topic!r} is not a ground-truth cloud: "
                               f"{exc}") from exc
            out[stamp_to_ns(msg.header.stamp)] = entry
            frame_id = frame_id or msg.header.frame_id
    return out, frame_id


def read_ground_truth(path: Union[str, os.PathLike]) -> GroundTruthBag:
    """The ground truth in a bag (see the module docstring), keyed by header stamp. A bag without
    /ground_truth/surface gives an empty GroundTruthBag. Raises BagError for an unreadable, corrupt
    or truncated bag, or truth topics of the wrong type or without their fields."""
    topics = bag_topics(path)
    result = GroundTruthBag(info={}, topics=topics)
    if INFO_TOPIC in topics:
        with open_input_bag(path, INFO_TOPIC, msg_class=String) as bag:
            for _, msg in bag:
                try:
                    result.info = json.loads(msg.data)
                except ValueError as exc:
                    raise BagError(f"input bag {bag.path}: {INFO_TOPIC} is not JSON ({exc})") from None
                break
    if SURFACE_TOPIC not in topics:
        return result
    surface, result.frame_id = _clouds(path, SURFACE_TOPIC, ("id",))
    occupancy = _clouds(path, OCCUPANCY_TOPIC, ("inside",))[0] if OCCUPANCY_TOPIC in topics else {}
    for stamp, entry in surface.items():
        occ = occupancy.get(stamp)
        result.frames[stamp] = GroundTruthFrame(
            stamp, np.zeros((0, 3), np.float32), entry["xyz"], entry["id"].astype(np.uint32),
            occ["xyz"] if occ is not None else None,
            occ["inside"].astype(bool) if occ is not None else None)
    return result


def _diagnostic_values(status: DiagnosticStatus) -> Dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


_LEVEL_WORDS = {0: "ok", 1: "warn", 2: "error", 3: "stale"}


def read_replayed(path: Union[str, os.PathLike], *, namespace: str = ""
                  ) -> tuple[List[TrackedFrame], List[FrameStatus]]:
    """What a replay (``occflow-replay``) wrote: the tracked mesh of each frame (from
    ``<ns>/occflow_reconstruct/tracked_mesh``) and each input frame's status with its processing time
    (from ``/diagnostics``; empty if the bag has none). Raises BagError when the bag cannot be read or
    has no tracked_mesh topic (a replay with output.publish_tracked_mesh off)."""
    topic = output_topic("tracked_mesh", namespace)
    topics = bag_topics(path)
    if topic not in topics:
        raise BagError(f"replayed bag {path}: has no topic {topic!r} (is it an occflow-replay output, with "
                       f"output.publish_tracked_mesh on?); topics: {', '.join(topics) or 'none'}")
    frames: List[TrackedFrame] = []
    with contextlib.ExitStack() as stack:
        bag = stack.enter_context(open_input_bag(path, topic, msg_class=TrackedMeshMsg)) if topics[topic][1] else ()
        for _, msg in bag:
            arrays = read_tracked_mesh_msg(msg)
            frames.append(TrackedFrame(
                stamp_to_ns(msg.header.stamp), int(msg.keyframe_id), stamp_to_ns(msg.keyframe_stamp),
                np.array(arrays.vertices), np.array(arrays.triangles), np.array(arrays.vertex_ids),
                np.array(arrays.canonical_vertices)))
    statuses: List[FrameStatus] = []
    if topics.get(DIAGNOSTICS_TOPIC, ("", 0))[1]:
        with open_input_bag(path, DIAGNOSTICS_TOPIC, msg_class=DiagnosticArray) as bag:
            for _, msg in bag:
                for status in msg.status:
                    if "occflow" not in status.name:
                        continue
                    values = _diagnostic_values(status)
                    ms = values.get("processing_ms")
                    level = status.level[0] if isinstance(status.level, (bytes, bytearray)) else int(status.level)
                    statuses.append(FrameStatus(
                        stamp_to_ns(msg.header.stamp), float(ms) if ms not in (None, "n/a") else None,
                        values.get("keyframe") == "true", _LEVEL_WORDS.get(level, str(level)), status.message))
    return frames, statuses
