"""occflow_ros_msgs/TrackedMesh <-> numpy: fill the flat arrays with one copy, read them back as views."""

from __future__ import annotations

import array
from dataclasses import dataclass
from typing import Any

import numpy as np
from builtin_interfaces.msg import Time
from numpy.typing import ArrayLike
from occflow_ros_msgs.msg import TrackedMesh
from std_msgs.msg import Header

from occflow_ros.ros.errors import TrackedMeshMsgError

__all__ = ["TrackedMeshArrays", "TrackedMeshMsgError", "make_tracked_mesh_msg", "read_tracked_mesh_msg"]

_UINT32_MAX = np.iinfo(np.uint32).max


@dataclass(frozen=True)
class TrackedMeshArrays:
    """The arrays of one TrackedMesh message, as numpy views of the message's buffers (metres, header frame).

    vertices: (V, 3) float32 current positions; canonical_vertices: (V, 3) float32 position of each
    vertex id when first seen; triangles: (F, 3) uint32 indices into vertices (counter-clockwise
    outward); vertex_ids: (V,) uint32 persistent ids.
    """

    vertices: np.ndarray
    canonical_vertices: np.ndarray
    triangles: np.ndarray
    vertex_ids: np.ndarray


def _flat(values: ArrayLike, dtype: type, typecode: str, name: str, shape_tail: tuple) -> array.array:
    """One copy of values (shape (n,) + shape_tail) into an array.array of typecode."""
    a = np.asarray(values)
    if a.ndim != 1 + len(shape_tail) or a.shape[1:] != shape_tail:
        want = "(n" + "".join(f", {d}" for d in shape_tail) + ")"
        raise TrackedMeshMsgError(f"{name} must have shape {want}, got {a.shape}")
    out = array.array(typecode)
    out.frombytes(np.ascontiguousarray(a, dtype=dtype).reshape(-1).view(np.uint8))
    return out


def _check_indices(a: np.ndarray, name: str, limit: int) -> None:
    """Raise unless the integer array's values lie in [0, limit)."""
    if a.dtype.kind not in "iu":
        raise TrackedMeshMsgError(f"{name} must be integers, got dtype {a.dtype}")
    if a.size and (int(a.min()) < 0 or int(a.max()) >= limit):
        raise TrackedMeshMsgError(f"{name} values must lie in [0, {limit}), got [{int(a.min())}, {int(a.max())}]")


def make_tracked_mesh_msg(header: Header, *, keyframe_stamp: Time, keyframe_id: int, vertices: ArrayLike,
                          canonical_vertices: ArrayLike, triangles: ArrayLike, vertex_ids: ArrayLike,
                          run: int = 0, topology_changed: bool = False,
                          msg: TrackedMesh | None = None) -> TrackedMesh:
    """Fill a TrackedMesh (a new one, or ``msg``) from numpy arrays.

    vertices, canonical_vertices: (V, 3) float, metres in ``header.frame_id`` (cast to float32);
    run: the tracker's (re)start count; topology_changed: triangles/ids are new in this message;
    triangles: (F, 3) integer indices in [0, V); vertex_ids: (V,) integers in [0, 2**32).
    Each flat field is an ``array.array`` filled with one copy (rclpy's setter would check a list or
    ndarray element by element). Raises TrackedMeshMsgError for inconsistent shapes or bad indices.
    """
    v = np.asarray(vertices)
    c = np.asarray(canonical_vertices)
    t = np.asarray(triangles)
    ids = np.asarray(vertex_ids)
    if v.ndim != 2 or c.shape != v.shape or ids.shape != v.shape[:1]:
        raise TrackedMeshMsgError(
            f"vertices {v.shape}, canonical_vertices {c.shape} and vertex_ids {ids.shape} must be (V, 3), "
            "(V, 3) and (V,) with one V")
    for name, value in (("keyframe_id", keyframe_id), ("run", run)):
        if not 0 <= int(value) <= _UINT32_MAX:
            raise TrackedMeshMsgError(f"{name} must lie in [0, 2**32), got {value}")
    _check_indices(t, "triangles", v.shape[0])
    _check_indices(ids, "vertex_ids", _UINT32_MAX + 1)
    out = TrackedMesh() if msg is None else msg
    out.header = header
    out.keyframe_stamp = keyframe_stamp
    out.keyframe_id = int(keyframe_id)
    out.run = int(run)
    out.topology_changed = bool(topology_changed)
    out.vertices = _flat(v, np.float32, "f", "vertices", (3,))
    out.canonical_vertices = _flat(c, np.float32, "f", "canonical_vertices", (3,))
    out.triangles = _flat(t, np.uint32, "I", "triangles", (3,))
    out.vertex_ids = _flat(ids, np.uint32, "I", "vertex_ids", ())
    return out


def read_tracked_mesh_msg(msg: Any) -> TrackedMeshArrays:
    """Numpy views (no copy) of a TrackedMesh's flat arrays, reshaped and checked for consistency.

    Views alias the message's buffers. Raises TrackedMeshMsgError when lengths are not multiples of
    3, V differs between vertices, canonical_vertices and vertex_ids, or a triangle index is >= V.
    """
    v = np.frombuffer(msg.vertices, np.float32)
    c = np.frombuffer(msg.canonical_vertices, np.float32)
    t = np.frombuffer(msg.triangles, np.uint32)
    ids = np.frombuffer(msg.vertex_ids, np.uint32)
    for name, a in (("vertices", v), ("canonical_vertices", c), ("triangles", t)):
        if a.size % 3:
            raise TrackedMeshMsgError(f"TrackedMesh {name} has {a.size} values, not a multiple of 3")
    n_vertices = v.size // 3
    if c.size != v.size or ids.size != n_vertices:
        raise TrackedMeshMsgError(
            f"TrackedMesh has {n_vertices} vertices but {c.size // 3} canonical_vertices and "
            f"{ids.size} vertex_ids")
    if t.size and int(t.max()) >= n_vertices:
        raise TrackedMeshMsgError(
            f"TrackedMesh triangle index {int(t.max())} is out of range for {n_vertices} vertices")
    return TrackedMeshArrays(v.reshape(-1, 3), c.reshape(-1, 3), t.reshape(-1, 3), ids)
