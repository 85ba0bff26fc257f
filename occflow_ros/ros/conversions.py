"""TrackedMesh -> ROS messages (mesh marker, correspondence clouds, TrackedMesh, diagnostics) and exact stamps."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any, List, Mapping, Optional, Tuple, Union

import numpy as np
from builtin_interfaces.msg import Duration, Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point
from numpy.typing import ArrayLike
from occflow_ros_msgs.msg import TrackedMesh as TrackedMeshMsg
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from occflow_ros.ros.cdr import serialize_cdr
from occflow_ros.ros.errors import ConversionError
from occflow_ros.ros.pointcloud2 import xyz_cloud
from occflow_ros.ros.tracked_mesh_msg import make_tracked_mesh_msg

if TYPE_CHECKING:  # only read: importing the tracking room here would pull in its models
    from occflow_ros.tracking.types import TrackedMesh

__all__ = [
    "ColorBox",
    "ConversionError",
    "format_value",
    "ns_to_stamp",
    "seconds_to_stamp",
    "stamp_to_ns",
    "stamp_to_seconds",
    "to_correspondence_cloud",
    "to_diagnostics",
    "to_input_correspondence_cloud",
    "to_marker_array",
    "to_marker_array_cdr",
    "to_tracked_mesh_msg",
]

_NS_PER_S = 10**9
_SEC_MIN, _SEC_MAX = -(2**31), 2**31 - 1  # builtin_interfaces/Time.sec is int32


# --------------------------------------------------------------------------------------------- stamps

def stamp_to_ns(stamp: Any) -> int:
    """Integer nanoseconds of a builtin_interfaces/Time (or anything with ``sec`` and ``nanosec``)."""
    return int(stamp.sec) * _NS_PER_S + int(stamp.nanosec)


def ns_to_stamp(ns: int) -> Time:
    """builtin_interfaces/Time of integer nanoseconds: ``sec = floor(ns / 1e9)``, ``nanosec`` in [0, 1e9).

    Raises ConversionError when ``sec`` leaves int32 (before 1901-12-13 or after 2038-01-19).
    """
    if isinstance(ns, bool) or not isinstance(ns, numbers.Integral):
        raise ConversionError(f"nanoseconds must be an integer, got {ns!r}")
    sec, nanosec = divmod(int(ns), _NS_PER_S)
    if not _SEC_MIN <= sec <= _SEC_MAX:
        raise ConversionError(f"time {ns} ns is outside builtin_interfaces/Time's int32 seconds")
    return Time(sec=sec, nanosec=nanosec)


def stamp_to_seconds(stamp: Any) -> float:
    """Seconds of a stamp as the float nearest to ``sec + nanosec / 1e9`` (integer arithmetic, one rounding).

    Floats resolve a nanosecond only below 2**22 s (48 days): there ``seconds_to_stamp(stamp_to_seconds(t))
    == t``; at today's epoch seconds a float64 step is ~240 ns, so use :func:`stamp_to_ns` (or keep the
    Time) where nanoseconds matter.
    """
    return stamp_to_ns(stamp) / _NS_PER_S  # int / int is correctly rounded in Python


def seconds_to_stamp(seconds: float) -> Time:
    """builtin_interfaces/Time nearest to a float's exact value (ties to even nanosecond).

    ``stamp_to_seconds(seconds_to_stamp(x)) == x`` wherever floats are coarser than a nanosecond
    (``|x| >= 2**23`` s, every epoch time), so a sensor stamp in seconds comes back unchanged.
    Raises ConversionError for NaN, infinity or a time outside Time's int32 seconds.
    """
    value = float(seconds)
    if not math.isfinite(value):
        raise ConversionError(f"seconds must be finite, got {seconds!r}")
    return ns_to_stamp(round(Fraction(value) * _NS_PER_S))


def _copy_header(header: Header) -> Header:
    return Header(stamp=Time(sec=header.stamp.sec, nanosec=header.stamp.nanosec), frame_id=header.frame_id)


# --------------------------------------------------------------------------------------------- colours

def _vec3(value: Any, key: str) -> Tuple[float, float, float]:
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ConversionError(f"ColorBox.{key} must be three numbers, got {value!r}") from exc
    if a.shape != (3,) or not np.isfinite(a).all():
        raise ConversionError(f"ColorBox.{key} must be three finite numbers, got {value!r}")
    return (float(a[0]), float(a[1]), float(a[2]))


@dataclass(frozen=True)
class ColorBox:
    """Fixed map from canonical positions (metres, the mesh's frame) to colours.

    A point ``p`` inside the box ``[low, high]`` gets ``rgb = floor + (1 - floor) * (p - low) / (high - low)``
    per axis (clamped outside the box): red grows with x, green with y, blue with z, the axis colours
    RViz draws, so a colour reads as a position on the canonical shape. The map is linear (equal
    canonical steps give equal colour steps), one-to-one inside the box (a colour names one surface
    point), and depends on nothing but the canonical position, so a vertex id keeps its colour over
    frames and keyframes. ``floor`` keeps the darkest corner off black, which would vanish on RViz's
    dark background. The default box is a depth camera's working volume in its optical frame
    (x right, y down, z forward): x, y in [-1, 1] m, z in [0, 3] m; fit a box to the object once
    with :meth:`around` (e.g. on the first keyframe) and keep it for the whole run.
    """

    low: Tuple[float, float, float] = (-1.0, -1.0, 0.0)
    high: Tuple[float, float, float] = (1.0, 1.0, 3.0)
    floor: float = 0.1

    def __post_init__(self) -> None:
        low, high = _vec3(self.low, "low"), _vec3(self.high, "high")
        if not all(h > lo for lo, h in zip(low, high)):
            raise ConversionError(f"ColorBox.high must exceed ColorBox.low on every axis, got low {low} high {high}")
        floor = float(self.floor)
        if not 0.0 <= floor < 1.0:
            raise ConversionError(f"ColorBox.floor must lie in [0, 1), got {self.floor!r}")
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)
        object.__setattr__(self, "floor", floor)

    @classmethod
    def around(cls, points: ArrayLike, margin: float = 0.05, floor: float = 0.1) -> ColorBox:
        """The bounding box of ``(N, 3)`` points grown by ``margin`` times its largest side on every side
        (a flat or single-point cloud still gets a box of non-zero size)."""
        p = np.asarray(points, dtype=np.float64)
        if p.ndim != 2 or p.shape[1] != 3 or p.shape[0] == 0 or not np.isfinite(p).all():
            raise ConversionError(f"ColorBox.around needs finite (N, 3) points with N >= 1, got shape {p.shape}")
        if not margin >= 0:
            raise ConversionError(f"ColorBox.around margin must be >= 0, got {margin!r}")
        low, high = p.min(axis=0), p.max(axis=0)
        pad = max(float((high - low).max()) * margin, 1e-3)
        return cls(tuple(low - pad), tuple(high + pad), floor)

    def colors(self, points: ArrayLike, alpha: float = 1.0) -> np.ndarray:
        """``(N, 3)`` canonical positions (metres) -> ``(N, 4)`` float32 RGBA in [0, 1], alpha constant."""
        p = np.asarray(points, dtype=np.float32)
        if p.ndim != 2 or p.shape[1] != 3:
            raise ConversionError(f"canonical positions must be (N, 3), got shape {p.shape}")
        low = np.asarray(self.low, np.float32)
        scale = np.float32(1.0 - self.floor) / (np.asarray(self.high, np.float32) - low)
        out = np.empty((p.shape[0], 4), np.float32)
        rgb = out[:, :3]
        np.subtract(p, low, out=rgb)
        rgb *= scale
        np.clip(rgb, 0.0, np.float32(1.0 - self.floor), out=rgb)
        rgb += np.float32(self.floor)
        out[:, 3] = alpha
        return out


# --------------------------------------------------------------------------------------------- mesh marker

def _mesh_arrays(mesh: TrackedMesh) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(V, 3) vertices, (F, 3) faces, (V,) ids, (V, 3) canonical of a TrackedMesh, checked."""
    v = np.asarray(mesh.vertices)
    f = np.asarray(mesh.faces)
    ids = np.asarray(mesh.vertex_ids)
    c = np.asarray(mesh.canonical_vertices)
    if v.ndim != 2 or v.shape[1] != 3 or c.shape != v.shape or ids.shape != v.shape[:1]:
        raise ConversionError(
            f"TrackedMesh vertices {v.shape}, canonical_vertices {c.shape} and vertex_ids {ids.shape} must be "
            "(V, 3), (V, 3) and (V,) with one V")
    if f.ndim != 2 or f.shape[1] != 3 or (f.size and f.dtype.kind not in "iu"):
        raise ConversionError(f"TrackedMesh faces must be (F, 3) integers, got shape {f.shape} dtype {f.dtype}")
    if f.size and (int(f.min()) < 0 or int(f.max()) >= v.shape[0]):
        raise ConversionError(
            f"TrackedMesh face indices must lie in [0, {v.shape[0]}), got [{int(f.min())}, {int(f.max())}]")
    return v, f, ids, c


def _topology_changed(mesh: TrackedMesh, faces: np.ndarray, previous_faces: Optional[ArrayLike]) -> bool:
    if mesh.topology_changed:
        return True
    if previous_faces is None:
        return False
    prev = np.asarray(previous_faces)
    return prev.shape != faces.shape or not np.array_equal(prev, faces)


def _marker(header: Header, ns: str, marker_id: int, action: int, alpha: float) -> Marker:
    m = Marker()
    m.header = header
    m.ns = ns
    m.id = marker_id
    m.type = Marker.TRIANGLE_LIST
    m.action = action
    m.pose.orientation.w = 1.0
    m.scale.x = m.scale.y = m.scale.z = 1.0
    m.color = ColorRGBA(r=1.0, g=1.0, b=1.0, a=float(np.float32(alpha)))  # the float32 the wire carries
    m.lifetime = Duration()  # 0: never expires
    return m


def _marker_parts(mesh: TrackedMesh, header: Header, ns: str, marker_id: int, color_box: ColorBox,
                  alpha: float, previous_faces: Optional[ArrayLike]
                  ) -> Tuple[MarkerArray, Optional[Marker], np.ndarray, np.ndarray]:
    """The MarkerArray with the mesh marker's points/colors left empty, that marker, and the (3F, 3)
    float32 corner positions and (3F, 4) float32 corner colours to put there."""
    if not isinstance(color_box, ColorBox):
        raise ConversionError(f"color_box must be a ColorBox, got {type(color_box).__name__}")
    alpha = float(alpha)
    if not 0.0 <= alpha <= 1.0:
        raise ConversionError(f"alpha must lie in [0, 1], got {alpha!r}")
    if not -(2**31) <= int(marker_id) < 2**31:
        raise ConversionError(f"marker_id must be an int32, got {marker_id!r}")
    v, f, _, c = _mesh_arrays(mesh)
    header = _copy_header(header)
    markers: List[Marker] = []
    empty = f.shape[0] == 0
    if empty or _topology_changed(mesh, f, previous_faces):
        # ns-scoped DELETEALL (rviz2 >= Humble): clears this namespace only, not other publishers' markers.
        markers.append(_marker(header, ns, int(marker_id), Marker.DELETEALL, alpha))
    mesh_marker = None
    corners = np.empty((0, 3), np.float32)
    colors = np.empty((0, 4), np.float32)
    if not empty:
        mesh_marker = _marker(header, ns, int(marker_id), Marker.ADD, alpha)
        markers.append(mesh_marker)
        order = f.reshape(-1)
        corners = np.asarray(v, np.float32)[order]
        colors = color_box.colors(c, alpha)[order]
    return MarkerArray(markers=markers), mesh_marker, corners, colors


def to_marker_array(mesh: TrackedMesh, header: Header, *, ns: str = "occflow", marker_id: int = 0,
                    color_box: ColorBox = ColorBox(), alpha: float = 1.0,
                    previous_faces: Optional[ArrayLike] = None) -> MarkerArray:
    """The tracked mesh as a visualization_msgs/MarkerArray of rclpy objects (simple, slow: see below).

    One TRIANGLE_LIST marker (``ns``, ``marker_id``, action ADD) in ``header``'s frame and stamp (the
    input cloud's), identity pose, scale 1, lifetime 0 (never expires): ``points`` are the 3F triangle
    corners ``vertices[faces]`` in face order (metres, float32 values as float64), ``colors`` the
    matching per-corner RGBA of each vertex's canonical position through ``color_box`` (see
    :class:`ColorBox`), alpha ``alpha`` (RViz switches to its transparent material below 1).

    Within a keyframe segment the triangle count is constant and the marker is re-sent with ADD on
    the same id, which RViz updates in place. On a topology change (``mesh.topology_changed``, or
    ``previous_faces``, the faces of the mesh published last, differ from ``mesh.faces``) the array
    starts with a DELETEALL marker of the same namespace, then the ADD: both in ONE MarkerArray, which
    RViz applies in order within one update, so the mesh is swapped atomically (no empty or stale
    frame, and a dropped message cannot separate the delete from the add). A mesh with no faces
    gives the DELETEALL alone (nothing stale stays on screen).

    Two rclpy objects per corner cost ~30 ms for a 3k-vertex mesh (up to 5x more when the garbage
    collector passes over them) and rclpy's serialization ~13 ms more: publish
    :func:`to_marker_array_cdr` instead (~0.5 ms), which gives the same message already serialized.
    Raises ConversionError for inconsistent mesh arrays or bad options.
    """
    array, mesh_marker, corners, colors = _marker_parts(mesh, header, ns, marker_id, color_box, alpha,
                                                        previous_faces)
    if mesh_marker is not None:
        mesh_marker.points = [Point(x=x, y=y, z=z) for x, y, z in corners.tolist()]
        mesh_marker.colors = [ColorRGBA(r=r, g=g, b=b, a=a) for r, g, b, a in colors.tolist()]
    return array


def to_marker_array_cdr(mesh: TrackedMesh, header: Header, *, ns: str = "occflow", marker_id: int = 0,
                        color_box: ColorBox = ColorBox(), alpha: float = 1.0,
                        previous_faces: Optional[ArrayLike] = None) -> bytes:
    """:func:`to_marker_array`'s message, serialized to CDR without building per-corner objects.

    The fixed part of the MarkerArray is built as rclpy objects; the corner positions and colours
    are written from numpy arrays by :func:`occflow_ros.ros.cdr.serialize_cdr` (~0.5 ms for a
    3k-vertex mesh, ~1.5 ms for 10k). Equal to ``rclpy.serialization.serialize_message(to_marker_array(
    ...))`` except in alignment padding (zeros here, uninitialised memory in Fast CDR's output).
    Publish it as is (``Publisher.publish`` takes serialized ``bytes`` since Foxy, Humble included)
    or write it to a bag (:meth:`occflow_ros.ros.bag_io.OutputBag.write` takes bytes).
    """
    array, mesh_marker, corners, colors = _marker_parts(mesh, header, ns, marker_id, color_box, alpha,
                                                        previous_faces)
    arrays = {}
    if mesh_marker is not None:
        arrays = {(id(mesh_marker), "points"): corners, (id(mesh_marker), "colors"): colors}
    return serialize_cdr(array, sequence_arrays=arrays)


# --------------------------------------------------------------------------------------------- clouds and msg

def to_correspondence_cloud(mesh: TrackedMesh, header: Header) -> PointCloud2:
    """The mesh vertices as an unorganized PointCloud2 (header: the input's frame and stamp).

    Fields, packed in this order: x, y, z (float32, current position, metres), vertex_id (uint32,
    persistent id), x0, y0, z0 (float32, canonical position, metres): a vertex's row at two times
    with the same vertex_id is the same surface point.
    """
    v, _, ids, c = _mesh_arrays(mesh)
    if ids.size and (ids.dtype.kind not in "iu" or int(ids.min()) < 0 or int(ids.max()) > 2**32 - 1):
        raise ConversionError("TrackedMesh vertex_ids must be integers in [0, 2**32)")
    c = np.asarray(c, np.float32)
    return xyz_cloud(header, np.asarray(v, np.float32), vertex_id=ids.astype(np.uint32, copy=False),
                     x0=c[:, 0], y0=c[:, 1], z0=c[:, 2])


def to_input_correspondence_cloud(mesh: TrackedMesh, header: Header) -> Optional[PointCloud2]:
    """The observed points of this frame with where they were at the keyframe time, or None.

    Fields: x, y, z (float32, observed position now, metres), xk, yk, zk (float32, the same point
    carried back to ``mesh.keyframe_stamp``). None when the mesh carries no input points or no
    keyframe positions for them.
    """
    if mesh.input_points is None or mesh.input_keyframe_points is None:
        return None
    p = np.asarray(mesh.input_points, np.float32)
    k = np.asarray(mesh.input_keyframe_points, np.float32)
    if p.ndim != 2 or p.shape[1] != 3 or k.shape != p.shape:
        raise ConversionError(
            f"TrackedMesh input_points {p.shape} and input_keyframe_points {k.shape} must both be (N, 3)")
    return xyz_cloud(header, p, xk=k[:, 0], yk=k[:, 1], zk=k[:, 2])


def to_tracked_mesh_msg(mesh: TrackedMesh, header: Header,
                        keyframe_stamp: Optional[Time] = None,
                        previous_faces: Optional[ArrayLike] = None) -> TrackedMeshMsg:
    """occflow_ros_msgs/TrackedMesh of the mesh: header as given (input frame and stamp), keyframe_stamp
    as given (the keyframe cloud's exact header stamp) or else from ``mesh.keyframe_stamp`` seconds
    (nearest nanosecond; float seconds are ~0.2 us coarse at epoch times), keyframe_id, run,
    topology_changed (the tracker says so, or the faces differ from ``previous_faces``, those of
    the TrackedMesh sent before), and the flat arrays (vertices, canonical_vertices float32
    metres; triangles = faces, vertex_ids uint32)."""
    v, f, ids, c = _mesh_arrays(mesh)
    if keyframe_stamp is None:
        keyframe_stamp = seconds_to_stamp(mesh.keyframe_stamp)
    return make_tracked_mesh_msg(_copy_header(header), keyframe_stamp=keyframe_stamp,
                                 keyframe_id=mesh.keyframe_id, vertices=v, canonical_vertices=c,
                                 triangles=f, vertex_ids=ids, run=mesh.run,
                                 topology_changed=_topology_changed(mesh, f, previous_faces))


# --------------------------------------------------------------------------------------------- diagnostics

_LEVELS = {"ok": DiagnosticStatus.OK, "warn": DiagnosticStatus.WARN, "warning": DiagnosticStatus.WARN,
           "error": DiagnosticStatus.ERROR, "stale": DiagnosticStatus.STALE}
_LEVEL_WORDS = {DiagnosticStatus.OK: "OK", DiagnosticStatus.WARN: "warning", DiagnosticStatus.ERROR: "error",
                DiagnosticStatus.STALE: "stale"}


def _level(value: Any) -> bytes:
    allowed = "'ok', 'warn', 'error', 'stale', 0..3 or a DiagnosticStatus constant"
    if isinstance(value, str):
        level = _LEVELS.get(value.strip().lower())
        if level is None:
            raise ConversionError(f"status 'level' must be one of {allowed}, got {value!r}")
        return level
    if isinstance(value, (bytes, bytearray)) and len(value) == 1 and value[0] <= 3:
        return bytes(value)
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and 0 <= int(value) <= 3:
        return bytes([int(value)])
    raise ConversionError(f"status 'level' must be one of {allowed}, got {value!r}")


def format_value(value: Any) -> str:
    """A status value as diagnostics text: bool -> true/false, ints as is, floats with up to 3
    decimals (trailing zeros dropped; 4 significant digits when very small or large), None -> n/a,
    sequences comma-separated, anything else str()."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        x = float(value)
        if not math.isfinite(x):
            return str(x)
        if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e7):
            return f"{x:.4g}"
        text = f"{x:.3f}".rstrip("0").rstrip(".")
        return "0" if text in ("-0", "") else text
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple, np.ndarray)):
        return ", ".join(format_value(v) for v in value)
    return str(value)


def _key_values(status: Mapping[str, Any], prefix: str = "") -> List[KeyValue]:
    out = []
    for key, value in status.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.extend(_key_values(value, f"{name}."))
        else:
            out.append(KeyValue(key=name, value=format_value(value)))
    return out


def to_diagnostics(status: Mapping[str, Any], stamp: Union[Header, Time], *,
                   name: str = "occflow_ros: reconstruct", hardware_id: Optional[str] = None) -> DiagnosticArray:
    """One DiagnosticStatus in a diagnostic_msgs/DiagnosticArray.

    ``status``: ``level`` ('ok' | 'warn' | 'error' | 'stale', 0..3, or a DiagnosticStatus constant;
    default ok), ``message`` (summary; default the level's word), and any other keys (name them with
    their unit: ``rate_hz``, ``latency_ms``, ``dropped_frames``, ``keyframes``, ``device`` ...), which
    become KeyValues in insertion order, values through :func:`format_value`; a nested mapping
    becomes ``parent.child`` keys. ``stamp``: a Header (kept as is) or a Time (frame_id empty).
    ``hardware_id`` defaults to the status's ``device`` if any, else "occflow_ros".
    Raises ConversionError for an unknown level.
    """
    if not isinstance(status, Mapping):
        raise ConversionError(f"status must be a mapping, got {type(status).__name__}")
    level = _level(status.get("level", "ok"))
    values = {k: v for k, v in status.items() if k not in ("level", "message")}
    message = status.get("message")
    if hardware_id is None:
        hardware_id = str(status["device"]) if status.get("device") is not None else "occflow_ros"
    header = _copy_header(stamp) if isinstance(stamp, Header) else Header(
        stamp=Time(sec=stamp.sec, nanosec=stamp.nanosec))
    entry = DiagnosticStatus(level=level, name=name, hardware_id=hardware_id,
                             message=_LEVEL_WORDS[level] if message is None else str(message),
                             values=_key_values(values))
    return DiagnosticArray(header=header, status=[entry])
