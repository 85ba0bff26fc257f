"""TrackedMesh -> ROS messages: canonical colours, triangle corners, DELETEALL on topology change, clouds,
exact stamps, diagnostics, and the numpy CDR fast path against rclpy and rosbags."""

from __future__ import annotations

import math
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point
from hypothesis import given, settings
from hypothesis import strategies as st
from occflow_ros_msgs.msg import TrackedMesh as TrackedMeshMsg
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from occflow_ros.ros import (
    ColorBox,
    ConversionError,
    MessageError,
    cloud_view,
    format_value,
    ns_to_stamp,
    read_tracked_mesh_msg,
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
from occflow_ros.ros.cdr import serialize_cdr
from occflow_ros.tracking import TrackedMesh

HEADER = Header(frame_id="camera_depth_optical_frame", stamp=Time(sec=1_700_000_123, nanosec=456_789_012))


def random_mesh(n_vertices: int = 50, seed: int = 0, *, n_faces: int | None = None, id_offset: int = 0,
                topology_changed: bool = False, with_inputs: bool = False) -> TrackedMesh:
    rng = np.random.default_rng(seed)
    vertices = rng.normal(size=(n_vertices, 3)).astype(np.float32)
    n_faces = 2 * n_vertices if n_faces is None else n_faces
    inputs = rng.normal(size=(n_vertices + 7, 3)).astype(np.float32) if with_inputs else None
    return TrackedMesh(
        stamp=12.25, keyframe_stamp=11.5, keyframe_id=3, vertices=vertices,
        faces=rng.integers(0, n_vertices, size=(n_faces, 3)).astype(np.uint32),
        vertex_ids=(np.arange(n_vertices) + id_offset).astype(np.uint32),
        canonical_vertices=rng.uniform(-0.5, 2.5, size=(n_vertices, 3)).astype(np.float32),
        topology_changed=topology_changed, input_points=inputs,
        input_keyframe_points=None if inputs is None else inputs + np.float32(0.25))


def mesh_marker(array: MarkerArray) -> Marker:
    (marker,) = [m for m in array.markers if m.action == Marker.ADD]
    return marker


def corner_arrays(marker: Marker):
    points = np.array([(p.x, p.y, p.z) for p in marker.points])
    colors = np.array([(c.r, c.g, c.b, c.a) for c in marker.colors], dtype=np.float32)
    return points, colors


# ----------------------------------------------------------------------------------------- colours


def test_colours_depend_only_on_canonical_position_across_frames_and_keyframes():
    """The same vertex id (same canonical position) keeps its colour when it moves and when a keyframe
    brings a new mesh that lists it at another index among other vertices."""
    box = ColorBox(low=(-0.5, -0.5, -0.5), high=(2.5, 2.5, 2.5))
    first = random_mesh(40, seed=1, topology_changed=True)
    moved = random_mesh(40, seed=1)
    moved.vertices = first.vertices + np.float32(0.3)          # same ids and faces, new positions
    rng = np.random.default_rng(7)
    order = rng.permutation(60)                                 # keyframe: 20 new ids, shuffled rows
    new_canonical = np.concatenate([first.canonical_vertices, rng.uniform(0, 2, (20, 3)).astype(np.float32)])
    new_ids = np.concatenate([first.vertex_ids, np.arange(100, 120, dtype=np.uint32)])
    keyframe = TrackedMesh(stamp=13.0, keyframe_stamp=13.0, keyframe_id=4,
                           vertices=rng.normal(size=(60, 3)).astype(np.float32)[order],
                           faces=rng.integers(0, 60, (90, 3)).astype(np.uint32),
                           vertex_ids=new_ids[order], canonical_vertices=new_canonical[order],
                           topology_changed=True)

    def colour_by_id(mesh):
        _, colors = corner_arrays(mesh_marker(to_marker_array(mesh, HEADER, color_box=box)))
        corner_ids = mesh.vertex_ids[mesh.faces.reshape(-1)]
        table = {}
        for vid, colour in zip(corner_ids.tolist(), colors):
            assert table.setdefault(vid, tuple(colour)) == tuple(colour)  # one colour per id within a frame
        return table

    a, b, c = colour_by_id(first), colour_by_id(moved), colour_by_id(keyframe)
    assert a == b
    shared = set(a) & set(c)
    assert len(shared) > 10 and all(a[i] == c[i] for i in shared)
    assert len(set(a.values())) == len(a)  # distinct canonical positions, distinct colours


def test_colour_box_maps_linearly_with_a_floor_and_clamps_outside():
    box = ColorBox(low=(0, 0, 0), high=(1, 2, 4), floor=0.2)
    rgba = box.colors([[0, 0, 0], [1, 2, 4], [0.5, 1, 1], [-3, 9, 2]], alpha=0.5)
    assert rgba.dtype == np.float32 and rgba.shape == (4, 4)
    np.testing.assert_allclose(rgba[0], [0.2, 0.2, 0.2, 0.5], atol=1e-6)
    np.testing.assert_allclose(rgba[1], [1, 1, 1, 0.5], atol=1e-6)
    np.testing.assert_allclose(rgba[2], [0.6, 0.6, 0.4, 0.5], atol=1e-6)
    np.testing.assert_allclose(rgba[3], [0.2, 1.0, 0.6, 0.5], atol=1e-6)


def test_colour_box_around_covers_the_points_and_bad_boxes_name_the_key():
    pts = np.random.default_rng(0).normal(size=(100, 3))
    box = ColorBox.around(pts, margin=0.1)
    assert np.all(np.asarray(box.low) < pts.min(0)) and np.all(np.asarray(box.high) > pts.max(0))
    assert ColorBox.around([[1.0, 2.0, 3.0]]).high[0] > 1.0
    with pytest.raises(ConversionError, match=r"ColorBox.high must exceed ColorBox.low"):
        ColorBox(low=(0, 0, 0), high=(1, 0, 1))
    with pytest.raises(ConversionError, match=r"ColorBox.low must be three finite numbers"):
        ColorBox(low=(0, float("nan"), 0))
    with pytest.raises(ConversionError, match=r"ColorBox.floor must lie in \[0, 1\)"):
        ColorBox(floor=1.0)


# ----------------------------------------------------------------------------------------- marker array


def test_marker_corners_are_vertices_of_faces_in_face_order_with_the_input_header():
    mesh = random_mesh(30, seed=2)
    array = to_marker_array(mesh, HEADER, ns="mesh", marker_id=7, alpha=0.6)
    marker = mesh_marker(array)
    points, colors = corner_arrays(marker)
    assert len(marker.points) == len(marker.colors) == 3 * mesh.num_faces
    np.testing.assert_array_equal(points, mesh.vertices[mesh.faces.reshape(-1)].astype(np.float64))
    np.testing.assert_array_equal(colors, ColorBox().colors(mesh.canonical_vertices, 0.6)[mesh.faces.reshape(-1)])
    assert (marker.ns, marker.id, marker.type) == ("mesh", 7, Marker.TRIANGLE_LIST)
    assert marker.header == HEADER and marker.header is not HEADER
    assert (marker.pose.orientation.w, marker.pose.position.x) == (1.0, 0.0)
    assert (marker.scale.x, marker.scale.y, marker.scale.z) == (1.0, 1.0, 1.0)
    assert (marker.lifetime.sec, marker.lifetime.nanosec) == (0, 0)
    assert marker.color.a == pytest.approx(0.6)


def test_topology_change_sends_deleteall_first_in_the_same_array_otherwise_add_only():
    mesh = random_mesh(30, seed=3)
    same = to_marker_array(mesh, HEADER, previous_faces=mesh.faces.copy())
    assert [m.action for m in same.markers] == [Marker.ADD]
    flagged = to_marker_array(random_mesh(30, seed=3, topology_changed=True), HEADER)
    assert [m.action for m in flagged.markers] == [Marker.DELETEALL, Marker.ADD]
    assert flagged.markers[0].ns == "occflow" and flagged.markers[0].header.frame_id == HEADER.frame_id
    other_faces = mesh.faces.copy()
    other_faces[0] = other_faces[0][::-1]
    changed = to_marker_array(mesh, HEADER, previous_faces=other_faces)
    assert [m.action for m in changed.markers] == [Marker.DELETEALL, Marker.ADD]
    fewer = to_marker_array(mesh, HEADER, previous_faces=mesh.faces[:-1])
    assert [m.action for m in fewer.markers] == [Marker.DELETEALL, Marker.ADD]
    assert [m.action for m in to_marker_array(mesh, HEADER).markers] == [Marker.ADD]


def test_mesh_without_faces_only_clears_the_namespace():
    empty = random_mesh(10, seed=4, n_faces=0)
    array = to_marker_array(empty, HEADER)
    assert [m.action for m in array.markers] == [Marker.DELETEALL]
    assert deserialize_message(to_marker_array_cdr(empty, HEADER), MarkerArray) == array


def test_inconsistent_meshes_and_options_are_refused_naming_the_problem():
    mesh = random_mesh(10, seed=5)
    bad_faces = random_mesh(10, seed=5)
    bad_faces.faces = bad_faces.faces.astype(np.int64)
    bad_faces.faces[0, 0] = 10
    with pytest.raises(ConversionError, match=r"face indices must lie in \[0, 10\)"):
        to_marker_array_cdr(bad_faces, HEADER)
    short_canonical = random_mesh(10, seed=5)
    short_canonical.canonical_vertices = short_canonical.canonical_vertices[:9]
    with pytest.raises(ConversionError, match="canonical_vertices"):
        to_marker_array(short_canonical, HEADER)
    with pytest.raises(ConversionError, match=r"alpha must lie in \[0, 1\]"):
        to_marker_array_cdr(mesh, HEADER, alpha=1.5)
    with pytest.raises(MessageError, match="color_box must be a ColorBox"):
        to_marker_array_cdr(mesh, HEADER, color_box=((0, 0, 0), (1, 1, 1)))


def rclpy_bytes_with_padding_zeroed(msg, padding):
    """rclpy's serialization with the alignment gaps (uninitialised memory in Fast CDR) set to zero."""
    data = bytearray(serialize_message(msg))
    for offset, length in padding:
        data[4 + offset:4 + offset + length] = bytes(length)
    return bytes(data)


@settings(max_examples=12, deadline=None)
@given(n_vertices=st.integers(1, 60), seed=st.integers(0, 2**16), changed=st.booleans(),
       frame=st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=12),
       ns=st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=8), alpha=st.floats(0, 1))
def test_cdr_fast_path_equals_rclpy_serialization_byte_for_byte(n_vertices, seed, changed, frame, ns, alpha):
    """Every byte but the alignment gaps equals rclpy's serialization of the object-built message, and
    rclpy deserializes the fast bytes into exactly that message."""
    mesh = random_mesh(n_vertices, seed=seed, topology_changed=changed)
    header = Header(frame_id=frame, stamp=Time(sec=seed, nanosec=seed * 7919))
    kwargs = dict(ns=ns, marker_id=seed % 100, alpha=alpha)
    reference = to_marker_array(mesh, header, **kwargs)
    fast = to_marker_array_cdr(mesh, header, **kwargs)
    padding = []
    assert serialize_cdr(reference, padding=padding) == fast  # the generic writer on the object message
    assert fast == rclpy_bytes_with_padding_zeroed(reference, padding)
    assert deserialize_message(fast, MarkerArray) == reference


def installed_typestore(typename: str):
    """A rosbags typestore of the installed .msg files of typename and everything it uses (independent
    of the package's own definition loader)."""
    from pathlib import Path

    from ament_index_python.packages import get_package_share_directory
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.EMPTY)
    pending = [typename]
    while pending:
        name = pending.pop()
        if name in store.fielddefs:
            continue
        package, _, short = name.split("/")
        text = (Path(get_package_share_directory(package)) / "msg" / f"{short}.msg").read_text()
        types = get_types_from_msg(text, name)
        store.register(types)
        for _, (kind, spec) in types[name][1]:
            while kind in (3, 4):  # array, sequence: look at the element
                kind, spec = spec[0]
            if kind == 2:  # a named message type
                pending.append(spec)
    return store


def test_cdr_fast_path_is_what_rosbags_reads_and_writes_for_the_installed_definition():
    """An independent CDR implementation (rosbags, zero padding) decodes the fast bytes to the mesh's
    corners and colours and re-encodes them to the very same bytes."""
    store = installed_typestore("visualization_msgs/msg/MarkerArray")
    mesh = random_mesh(200, seed=9, topology_changed=True)
    fast = to_marker_array_cdr(mesh, HEADER, alpha=0.8)
    decoded = store.deserialize_cdr(fast, "visualization_msgs/msg/MarkerArray")
    assert [m.action for m in decoded.markers] == [Marker.DELETEALL, Marker.ADD]
    marker = decoded.markers[1]
    points = np.array([(p.x, p.y, p.z) for p in marker.points])
    colors = np.array([(c.r, c.g, c.b, c.a) for c in marker.colors], dtype=np.float32)
    np.testing.assert_array_equal(points, mesh.vertices[mesh.faces.reshape(-1)])
    np.testing.assert_array_equal(colors, ColorBox().colors(mesh.canonical_vertices, 0.8)[mesh.faces.reshape(-1)])
    assert (marker.header.frame_id, marker.header.stamp.sec, marker.header.stamp.nanosec) == (
        HEADER.frame_id, HEADER.stamp.sec, HEADER.stamp.nanosec)
    assert bytes(store.serialize_cdr(decoded, "visualization_msgs/msg/MarkerArray")) == fast


def test_cdr_writer_handles_other_messages_like_rclpy():
    """The generic writer on strings, octets, nested sequences and uint8[] (Diagnostics, PointCloud2, TrackedMesh)."""
    messages = [
        DiagnosticArray(header=HEADER, status=[DiagnosticStatus(level=DiagnosticStatus.WARN, name="ü", message="x",
                                                                values=[KeyValue(key="k", value="v")] * 3)]),
        to_correspondence_cloud(random_mesh(17, seed=1), HEADER),
        to_tracked_mesh_msg(random_mesh(9, seed=2), HEADER),
        Marker(text="three", points=[Point(x=1.0)], colors=[ColorRGBA(a=0.5)], frame_locked=True),
    ]
    for msg in messages:
        padding = []
        ours = serialize_cdr(msg, padding=padding)
        assert ours == rclpy_bytes_with_padding_zeroed(msg, padding), type(msg).__name__
        assert deserialize_message(ours, type(msg)) == msg
    with pytest.raises(ConversionError, match=r"must have shape \(n, 3\)"):
        marker = Marker()
        serialize_cdr(marker, sequence_arrays={(id(marker), "points"): np.zeros((4, 2))})


# ----------------------------------------------------------------------------------------- clouds and msg


def test_correspondence_cloud_decodes_to_exactly_the_mesh_arrays():
    mesh = random_mesh(25, seed=6, id_offset=2**32 - 30)
    msg = deserialize_message(serialize_message(to_correspondence_cloud(mesh, HEADER)), PointCloud2)
    view = cloud_view(msg)
    assert [f.name for f in msg.fields] == ["x", "y", "z", "vertex_id", "x0", "y0", "z0"]
    assert view.dtype["vertex_id"] == np.uint32 and view.dtype["x0"] == np.float32
    np.testing.assert_array_equal(np.stack([view["x"], view["y"], view["z"]], 1), mesh.vertices)
    np.testing.assert_array_equal(view["vertex_id"], mesh.vertex_ids)
    np.testing.assert_array_equal(np.stack([view["x0"], view["y0"], view["z0"]], 1), mesh.canonical_vertices)
    assert msg.header == HEADER and (msg.height, msg.width) == (1, 25)


def test_input_correspondence_cloud_carries_points_and_keyframe_points_or_is_none():
    mesh = random_mesh(12, seed=7, with_inputs=True)
    view = cloud_view(to_input_correspondence_cloud(mesh, HEADER))
    assert view.dtype.names == ("x", "y", "z", "xk", "yk", "zk")
    np.testing.assert_array_equal(np.stack([view["x"], view["y"], view["z"]], 1), mesh.input_points)
    np.testing.assert_array_equal(np.stack([view["xk"], view["yk"], view["zk"]], 1), mesh.input_keyframe_points)
    assert to_input_correspondence_cloud(random_mesh(12, seed=7), HEADER) is None
    mesh.input_keyframe_points = mesh.input_keyframe_points[:-1]
    with pytest.raises(ConversionError, match="input_keyframe_points"):
        to_input_correspondence_cloud(mesh, HEADER)


def test_tracked_mesh_msg_carries_arrays_header_and_exact_keyframe_stamp():
    mesh = random_mesh(20, seed=8)
    mesh.keyframe_stamp = 1_700_000_000.25
    msg = deserialize_message(serialize_message(to_tracked_mesh_msg(mesh, HEADER)), TrackedMeshMsg)
    arrays = read_tracked_mesh_msg(msg)
    np.testing.assert_array_equal(arrays.vertices, mesh.vertices)
    np.testing.assert_array_equal(arrays.canonical_vertices, mesh.canonical_vertices)
    np.testing.assert_array_equal(arrays.triangles, mesh.faces)
    np.testing.assert_array_equal(arrays.vertex_ids, mesh.vertex_ids)
    assert (msg.keyframe_stamp.sec, msg.keyframe_stamp.nanosec, msg.keyframe_id) == (1_700_000_000, 250_000_000, 3)
    assert msg.header == HEADER


# ----------------------------------------------------------------------------------------- stamps


@given(sec=st.integers(0, 2**31 - 1), nanosec=st.integers(0, 10**9 - 1))
def test_stamps_round_trip_through_integer_nanoseconds_exactly(sec, nanosec):
    stamp = Time(sec=sec, nanosec=nanosec)
    assert stamp_to_ns(stamp) == sec * 10**9 + nanosec
    assert ns_to_stamp(stamp_to_ns(stamp)) == stamp


@given(sec=st.integers(0, 2**22 - 1), nanosec=st.integers(0, 10**9 - 1))
def test_stamps_round_trip_through_float_seconds_to_the_nanosecond_while_floats_resolve_it(sec, nanosec):
    stamp = Time(sec=sec, nanosec=nanosec)
    assert seconds_to_stamp(stamp_to_seconds(stamp)) == stamp


@given(seconds=st.floats(0, 2**31 - 1, allow_nan=False))
def test_seconds_become_the_nearest_nanosecond(seconds):
    stamp = seconds_to_stamp(seconds)
    assert abs(Fraction(stamp_to_ns(stamp)) - Fraction(seconds) * 10**9) <= Fraction(1, 2)
    assert 0 <= stamp.nanosec < 10**9


@given(seconds=st.floats(2**23, 2**31 - 1))
def test_epoch_seconds_come_back_as_the_same_float(seconds):
    assert stamp_to_seconds(seconds_to_stamp(seconds)) == seconds


def test_stamp_seconds_are_correctly_rounded_and_bad_times_are_refused():
    stamp = Time(sec=1_700_000_000, nanosec=123_456_789)
    assert stamp_to_seconds(stamp) == float(Fraction(1_700_000_000_123_456_789, 10**9))
    assert ns_to_stamp(-1) == Time(sec=-1, nanosec=999_999_999)
    for bad in (math.nan, math.inf, 2.0**31):
        with pytest.raises(ConversionError):
            seconds_to_stamp(bad)
    with pytest.raises(ConversionError, match="must be an integer"):
        ns_to_stamp(1.5)


# ----------------------------------------------------------------------------------------- diagnostics


def test_diagnostics_level_message_and_formatted_values():
    status = {"level": "warn", "message": "falling behind", "rate_hz": 29.97126, "latency_ms": 41.0,
              "dropped_frames": np.int64(3), "keyframes": 12, "device": "cuda:0", "half_precision": True,
              "solver": {"steps": 40, "rtol": 1e-5}, "window": [0.1, 0.25], "last_error": None}
    array = to_diagnostics(status, HEADER)
    (entry,) = array.status
    assert entry.level == DiagnosticStatus.WARN and entry.message == "falling behind"
    assert entry.name == "occflow_ros: reconstruct" and entry.hardware_id == "cuda:0"
    assert {kv.key: kv.value for kv in entry.values} == {
        "rate_hz": "29.971", "latency_ms": "41", "dropped_frames": "3", "keyframes": "12", "device": "cuda:0",
        "half_precision": "true", "solver.steps": "40", "solver.rtol": "1e-05", "window": "0.1, 0.25",
        "last_error": "n/a"}
    assert array.header == HEADER
    ok = to_diagnostics({"rate_hz": 30}, Time(sec=5, nanosec=6), name="x", hardware_id="cam0")
    assert ok.status[0].level == DiagnosticStatus.OK and ok.status[0].message == "OK"
    assert (ok.header.stamp.sec, ok.header.stamp.nanosec, ok.status[0].hardware_id) == (5, 6, "cam0")
    assert to_diagnostics({"level": 2}, HEADER).status[0].level == DiagnosticStatus.ERROR
    assert to_diagnostics({"level": DiagnosticStatus.STALE}, HEADER).status[0].message == "stale"
    with pytest.raises(ConversionError, match="status 'level' must be one of"):
        to_diagnostics({"level": "fine"}, HEADER)
    assert (format_value(1234.5), format_value(0.0), format_value(-2.5e9), format_value(float("nan"))) == (
        "1234.5", "0", "-2.5e+09", "nan")


def test_serialization_needs_no_rclpy_init():
    """rclpy.serialization runs in a process that never called rclpy.init() (offline replay)."""
    code = (
        "import rclpy\n"
        "from rclpy.serialization import serialize_message, deserialize_message\n"
        "from std_msgs.msg import Header\n"
        "msg = Header(frame_id='cam')\n"
        "assert deserialize_message(serialize_message(msg), Header) == msg\n"
        "assert not rclpy.ok()\n"
        "print('fine')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "fine", result.stderr
