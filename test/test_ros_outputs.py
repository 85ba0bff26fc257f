"""The node's and the replay's shared output builder: exact keyframe stamps, colours, topology."""

from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Time
from std_msgs.msg import Header

from occflow_ros.ros.node_config import OutputOptions
from occflow_ros.ros.outputs import OutputBuilder
from occflow_ros.tracking import TrackedMesh

# an epoch-sized stamp whose nanoseconds float seconds cannot hold exactly
KEY = Time(sec=1_764_000_123, nanosec=123_456_789)
LATER = Time(sec=1_764_000_123, nanosec=156_790_123)


def mesh_at(stamp: Time, key: Time, topology_changed: bool) -> TrackedMesh:
    v = np.array([[0, 0, 1], [1, 0, 1], [0, 1, 1], [0, 0, 2]], np.float32)
    f = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]], np.uint32)
    seconds = lambda t: t.sec + t.nanosec * 1e-9  # noqa: E731 - what the node hands the tracker
    return TrackedMesh(stamp=seconds(stamp), keyframe_stamp=seconds(key), keyframe_id=0,
                       vertices=v, faces=f, vertex_ids=np.arange(4, dtype=np.uint32),
                       canonical_vertices=v, topology_changed=topology_changed)


def tracked_msg(builder, mesh, stamp):
    out = builder.build(mesh, Header(stamp=stamp, frame_id="cam"), OutputOptions())
    builder.sent(mesh, out)
    return dict((o.name, m) for o, m in out)["tracked_mesh"]


def test_keyframe_stamp_is_the_keyframe_clouds_header_stamp_to_the_nanosecond():
    builder = OutputBuilder()
    first = tracked_msg(builder, mesh_at(KEY, KEY, True), KEY)
    assert (first.keyframe_stamp.sec, first.keyframe_stamp.nanosec) == (KEY.sec, KEY.nanosec)
    later = tracked_msg(builder, mesh_at(LATER, KEY, False), LATER)
    assert (later.keyframe_stamp.sec, later.keyframe_stamp.nanosec) == (KEY.sec, KEY.nanosec)
    assert (later.header.stamp.sec, later.header.stamp.nanosec) == (LATER.sec, LATER.nanosec)
    # after a reset the remembered stamp is gone: a mesh of an unseen keyframe falls back to seconds
    builder.reset()
    other = tracked_msg(builder, mesh_at(LATER, KEY, False), LATER)
    assert other.keyframe_stamp.sec == KEY.sec
    assert abs(other.keyframe_stamp.nanosec - KEY.nanosec) < 1000


def test_the_tracked_mesh_says_its_run_and_when_its_topology_changed():
    """topology_changed: on a keyframe (the tracker says so) and whenever the faces differ from
    those of the TrackedMesh sent before; the tracker's run is passed through."""
    builder = OutputBuilder()
    key = mesh_at(KEY, KEY, True)
    key.run = 4
    first = tracked_msg(builder, key, KEY)
    assert first.topology_changed and first.run == 4
    assert not tracked_msg(builder, mesh_at(LATER, KEY, False), LATER).topology_changed
    flipped = mesh_at(LATER, KEY, False)
    flipped.faces = flipped.faces[:, ::-1].copy()
    assert tracked_msg(builder, flipped, LATER).topology_changed
    assert not tracked_msg(builder, flipped, LATER).topology_changed
