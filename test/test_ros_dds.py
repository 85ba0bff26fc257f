"""Over real Fast DDS on shared memory: a 640x480 PointCloud2 and a TrackedMesh from another process arrive intact."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
from dds_peer import CLOUD_FRAME, MESH_FRAME, seeded_cloud, seeded_mesh
from occflow_ros_msgs.msg import TrackedMesh
from rclpy.qos import QoSHistoryPolicy, QoSProfile, QoSReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import PointCloud2

from occflow_ros.ros import cloud_view, read_tracked_mesh_msg, read_xyz, unpack_rgb

PEER = Path(__file__).with_name("dds_peer.py")
RELIABLE = QoSProfile(history=QoSHistoryPolicy.KEEP_LAST, depth=2, reliability=QoSReliabilityPolicy.RELIABLE)


class Peer:
    """A dds_peer.py process; `log()` is what it printed so far."""

    def __init__(self, args, log_path: Path):
        self.log_path = log_path
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen([sys.executable, str(PEER), *args], stdout=log,
                                         stderr=subprocess.STDOUT, env=dict(os.environ))

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        """SIGTERM, then wait (kill after 10 s); returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


@pytest.fixture
def peer(tmp_path):
    """start(kind, topic, seed, *extra) -> Peer; every peer is stopped after the test, pass or fail."""
    peers = []

    def _start(kind: str, topic: str, seed: int, *extra: str) -> Peer:
        p = Peer([kind, "--topic", topic, "--seed", str(seed), *extra], tmp_path / f"peer{len(peers)}.log")
        peers.append(p)
        return p

    try:
        yield _start
    finally:
        for p in peers:
            p.stop()


def unique_topic(name: str) -> str:
    return f"/occflow_test/{name}_{uuid.uuid4().hex[:8]}"


def receive_one(make_node, spin_until, peer_proc: Peer, msg_type, topic: str, qos):
    """Subscribe in this process and spin until the peer's first message arrives (or it dies, or 30 s)."""
    node = make_node(f"listener_{uuid.uuid4().hex[:8]}")
    received = []
    node.create_subscription(msg_type, topic, received.append, qos)
    spin_until([node], lambda: bool(received) or peer_proc.proc.poll() is not None, timeout=30.0)
    assert received, f"nothing arrived on {topic}; peer exit {peer_proc.proc.poll()}, log:\n{peer_proc.log()}"
    assert peer_proc.stop() == 0, f"peer did not shut down cleanly:\n{peer_proc.log()}"
    return received[0]


def assert_is_the_seeded_cloud(msg: PointCloud2, seed: int) -> None:
    xyz, rgb, (sec, nanosec) = seeded_cloud(seed)
    valid = np.isfinite(xyz).all(axis=-1) & (xyz != 0).any(axis=-1)
    assert 0 < valid.sum() < valid.size  # the cloud really has invalid pixels of both kinds
    assert (msg.height, msg.width, msg.point_step) == (480, 640, 16)
    assert (msg.header.frame_id, msg.header.stamp.sec, msg.header.stamp.nanosec) == (CLOUD_FRAME, sec, nanosec)
    assert msg.is_dense is False
    assert np.array_equal(read_xyz(msg), xyz[valid])
    organized = read_xyz(msg, organized=True)
    assert np.array_equal(organized[valid], xyz[valid]) and np.isnan(organized[~valid]).all()
    assert np.array_equal(unpack_rgb(cloud_view(msg)["rgb"]), rgb)


def test_organized_cloud_from_another_process_decodes_to_the_points_sent(make_node, spin_until, peer):
    topic, seed = unique_topic("cloud"), 11
    p = peer("cloud", topic, seed, "--qos", "reliable", "--depth", "2")
    assert_is_the_seeded_cloud(receive_one(make_node, spin_until, p, PointCloud2, topic, RELIABLE), seed)


def test_best_effort_subscription_receives_the_large_cloud_on_shared_memory(make_node, spin_until, peer):
    """On default UDP, best effort delivers nothing of a 4.9 MB cloud (fragments drop); on SHM it arrives."""
    assert os.environ["FASTDDS_DEFAULT_PROFILES_FILE"].endswith("fastdds_shm.xml")
    topic, seed = unique_topic("cloud_be"), 12
    p = peer("cloud", topic, seed, "--qos", "sensor")
    msg = receive_one(make_node, spin_until, p, PointCloud2, topic, qos_profile_sensor_data)
    assert_is_the_seeded_cloud(msg, seed)


def test_tracked_mesh_from_another_process_arrives_with_every_field_intact(make_node, spin_until, peer):
    topic, seed = unique_topic("mesh"), 13
    p = peer("mesh", topic, seed, "--qos", "reliable", "--depth", "1")
    msg = receive_one(make_node, spin_until, p, TrackedMesh, topic, RELIABLE)
    sent = seeded_mesh(seed)

    assert (msg.header.frame_id, msg.header.stamp.sec, msg.header.stamp.nanosec) == (MESH_FRAME, *sent["stamp"])
    assert (msg.keyframe_stamp.sec, msg.keyframe_stamp.nanosec) == sent["keyframe_stamp"]
    assert msg.keyframe_id == sent["keyframe_id"]
    arrays = read_tracked_mesh_msg(msg)
    for name in ("vertices", "canonical_vertices", "triangles", "vertex_ids"):
        got, want = getattr(arrays, name), sent[name]
        assert got.dtype == want.dtype and np.array_equal(got, want), name
