"""TrackedMesh message helpers: numpy in with one copy, numpy views out, inconsistencies named."""

from __future__ import annotations

import array

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from occflow_ros_msgs.msg import TrackedMesh
from rclpy.serialization import deserialize_message, serialize_message
from std_msgs.msg import Header

from occflow_ros.ros import MessageError, TrackedMeshMsgError, make_tracked_mesh_msg, read_tracked_mesh_msg


def mesh_arrays(n_vertices: int = 40, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "vertices": rng.normal(size=(n_vertices, 3)),                      # float64 in: cast to float32
        "canonical_vertices": rng.normal(size=(n_vertices, 3)).astype(np.float32),
        "triangles": rng.integers(0, n_vertices, size=(2 * n_vertices, 3)),  # int64 in: cast to uint32
        "vertex_ids": np.arange(n_vertices, dtype=np.int64) + 2**32 - 1 - n_vertices,
    }


def build(**overrides) -> TrackedMesh:
    kwargs = dict(header=Header(frame_id="cam", stamp=Time(sec=5, nanosec=6)),
                  keyframe_stamp=Time(sec=4, nanosec=7), keyframe_id=3, **mesh_arrays())
    kwargs.update(overrides)
    return make_tracked_mesh_msg(**kwargs)


def test_arrays_survive_serialization_with_dtypes_shapes_and_stamps():
    arrays = mesh_arrays()
    msg = deserialize_message(serialize_message(build()), TrackedMesh)
    got = read_tracked_mesh_msg(msg)
    assert got.vertices.dtype == np.float32 and got.vertices.shape == (40, 3)
    assert np.array_equal(got.vertices, arrays["vertices"].astype(np.float32))
    assert np.array_equal(got.canonical_vertices, arrays["canonical_vertices"])
    assert got.triangles.dtype == np.uint32 and np.array_equal(got.triangles, arrays["triangles"])
    assert got.vertex_ids.dtype == np.uint32 and np.array_equal(got.vertex_ids, arrays["vertex_ids"])
    assert (msg.header.frame_id, msg.header.stamp.sec, msg.keyframe_stamp.nanosec, msg.keyframe_id) == ("cam", 5, 7, 3)
    assert (msg.run, msg.topology_changed) == (0, False)
    again = deserialize_message(serialize_message(build(run=2**32 - 1, topology_changed=True)), TrackedMesh)
    assert (again.run, again.topology_changed) == (2**32 - 1, True)


def test_fields_are_array_arrays_and_reads_are_views_of_them():
    msg = build()
    assert (msg.vertices.typecode, msg.triangles.typecode, msg.vertex_ids.typecode) == ("f", "I", "I")
    assert all(isinstance(getattr(msg, n), array.array) for n in ("vertices", "canonical_vertices"))
    got = read_tracked_mesh_msg(msg)
    assert np.shares_memory(got.vertices, msg.vertices)
    assert np.shares_memory(got.triangles, msg.triangles)


def test_an_existing_message_is_refilled_and_an_empty_mesh_is_allowed():
    msg = build()
    empty = np.zeros((0, 3))
    same = build(msg=msg, vertices=empty, canonical_vertices=empty, triangles=np.zeros((0, 3), int),
                 vertex_ids=np.zeros(0, int))
    assert same is msg
    got = read_tracked_mesh_msg(msg)
    assert got.vertices.shape == (0, 3) and got.triangles.shape == (0, 3) and got.vertex_ids.shape == (0,)


@pytest.mark.parametrize("overrides,message", [
    ({"canonical_vertices": np.zeros((39, 3))}, r"canonical_vertices \(39, 3\)"),
    ({"vertex_ids": np.zeros(41, int)}, r"vertex_ids \(41,\)"),
    ({"vertices": np.zeros((40, 2)), "canonical_vertices": np.zeros((40, 2))}, r"vertices must have shape \(n, 3\)"),
    ({"triangles": np.array([[0, 1, 40]])}, r"triangles values must lie in \[0, 40\), got \[0, 40\]"),
    ({"triangles": np.array([[0, -1, 2]])}, r"triangles values must lie in \[0, 40\), got \[-1, 2\]"),
    ({"triangles": np.zeros((1, 3), np.float32)}, "triangles must be integers"),
    ({"triangles": np.zeros((4, 2), int)}, r"triangles must have shape \(n, 3\)"),
    ({"vertex_ids": np.full(40, 2**32)}, r"vertex_ids values must lie in \[0, 4294967296\)"),
    ({"keyframe_id": -1}, "keyframe_id must lie in"),
    ({"run": 2**32}, r"run must lie in \[0, 2\*\*32\)"),
])
def test_inconsistent_arrays_are_refused_naming_the_problem(overrides, message):
    with pytest.raises(TrackedMeshMsgError, match=message):
        build(**overrides)


def _set(msg, name, values, typecode):
    setattr(msg, name, array.array(typecode, values))


@pytest.mark.parametrize("mutate,message", [
    (lambda m: _set(m, "vertices", [0.0] * 7, "f"), "vertices has 7 values, not a multiple of 3"),
    (lambda m: _set(m, "canonical_vertices", [0.0] * 3, "f"), "40 vertices but 1 canonical_vertices and 40 vertex_ids"),
    (lambda m: _set(m, "vertex_ids", [1, 2], "I"), "40 vertices but 40 canonical_vertices and 2 vertex_ids"),
    (lambda m: _set(m, "triangles", [0, 1, 99], "I"), "triangle index 99 is out of range for 40 vertices"),
])
def test_malformed_received_messages_are_refused_naming_the_problem(mutate, message):
    msg = build()
    mutate(msg)
    with pytest.raises(TrackedMeshMsgError, match=message):
        read_tracked_mesh_msg(msg)
    assert issubclass(TrackedMeshMsgError, MessageError)
