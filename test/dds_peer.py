"""Publisher process for the DDS tests: publishes a seeded PointCloud2 or TrackedMesh until stopped or timed out.

Run as ``python test/dds_peer.py {cloud,mesh} --topic T --seed S [--qos reliable|sensor]`` in the same
environment as the test (ROS_DOMAIN_ID, FASTDDS_DEFAULT_PROFILES_FILE). The tests import
``seeded_cloud`` and ``seeded_mesh`` to know what was sent.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from typing import Dict, List, Optional, Tuple

import numpy as np

CLOUD_FRAME = "camera_depth_optical_frame"
MESH_FRAME = "camera_color_optical_frame"


def seeded_cloud(seed: int, height: int = 480, width: int = 640) -> Tuple[np.ndarray, np.ndarray, Tuple[int, int]]:
    """An organized depth-camera cloud: xyz (H, W, 3) float32 metres with NaN and zero pixels, rgb (H, W, 3)
    uint8, and the header stamp (sec, nanosec)."""
    rng = np.random.default_rng(seed)
    v, u = np.mgrid[0:height, 0:width].astype(np.float32)
    depth = rng.uniform(0.3, 4.0, size=(height, width)).astype(np.float32)
    xyz = np.stack([(u - width / 2) * depth / 600.0, (v - height / 2) * depth / 600.0, depth], axis=-1)
    xyz[rng.random((height, width)) < 0.1] = 0.0      # "no depth", as RealSense publishes it
    xyz[rng.random((height, width)) < 0.05] = np.nan  # "no depth", as other drivers publish it
    rgb = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    return xyz.astype(np.float32), rgb, (1_700_000_000 + seed, seed * 1000 % 1_000_000_000)


def seeded_mesh(seed: int) -> Dict[str, object]:
    """A TrackedMesh's content: vertices/canonical_vertices (V, 3) float32, triangles (F, 3) uint32,
    vertex_ids (V,) uint32, keyframe_id, and stamps (sec, nanosec)."""
    rng = np.random.default_rng(seed)
    n_vertices = 3000 + seed % 7
    canonical = rng.normal(size=(n_vertices, 3)).astype(np.float32)
    return {
        "vertices": (canonical + rng.normal(scale=0.01, size=canonical.shape)).astype(np.float32),
        "canonical_vertices": canonical,
        "triangles": rng.integers(0, n_vertices, size=(2 * n_vertices, 3)).astype(np.uint32),
        "vertex_ids": rng.permutation(np.arange(10 * n_vertices, dtype=np.uint32))[:n_vertices],
        "keyframe_id": int(seed % 50),
        "stamp": (1_700_000_100 + seed, 123_456_789),
        "keyframe_stamp": (1_700_000_050 + seed, 987_654_321),
    }


def _message(kind: str, seed: int):
    from builtin_interfaces.msg import Time
    from std_msgs.msg import Header

    from occflow_ros.ros import make_tracked_mesh_msg, xyz_cloud

    if kind == "cloud":
        xyz, rgb, (sec, nanosec) = seeded_cloud(seed)
        return xyz_cloud(Header(frame_id=CLOUD_FRAME, stamp=Time(sec=sec, nanosec=nanosec)), xyz, rgb=rgb)
    mesh = seeded_mesh(seed)
    sec, nanosec = mesh["stamp"]
    kf_sec, kf_nanosec = mesh["keyframe_stamp"]
    return make_tracked_mesh_msg(
        Header(frame_id=MESH_FRAME, stamp=Time(sec=sec, nanosec=nanosec)),
        keyframe_stamp=Time(sec=kf_sec, nanosec=kf_nanosec), keyframe_id=mesh["keyframe_id"],
        vertices=mesh["vertices"], canonical_vertices=mesh["canonical_vertices"],
        triangles=mesh["triangles"], vertex_ids=mesh["vertex_ids"])


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["cloud", "mesh"])
    parser.add_argument("--topic", required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--qos", choices=["reliable", "sensor"], default="reliable",
                        help="reliable keep_last(depth), or sensor data (best effort, keep_last 5)")
    parser.add_argument("--depth", type=int, default=2, help="keep_last depth for --qos reliable")
    parser.add_argument("--period", type=float, default=0.1, help="seconds between publications")
    parser.add_argument("--timeout", type=float, default=30.0, help="stop after this many seconds")
    args = parser.parse_args(argv)

    import rclpy
    from rclpy.qos import QoSHistoryPolicy, QoSProfile, QoSReliabilityPolicy, qos_profile_sensor_data
    from rclpy.signals import SignalHandlerOptions

    stop = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.append(True))
    parent = os.getppid()

    if args.kind == "cloud":
        from sensor_msgs.msg import PointCloud2 as msg_type
    else:
        from occflow_ros_msgs.msg import TrackedMesh as msg_type
    qos = qos_profile_sensor_data if args.qos == "sensor" else QoSProfile(
        history=QoSHistoryPolicy.KEEP_LAST, depth=args.depth, reliability=QoSReliabilityPolicy.RELIABLE)
    message = _message(args.kind, args.seed)

    # our own handlers stay in place, so a SIGTERM from the test ends the loop and we shut down cleanly
    context = rclpy.Context()
    rclpy.init(context=context, signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node(f"dds_peer_{args.kind}_{os.getpid()}", context=context)
    try:
        publisher = node.create_publisher(msg_type, args.topic, qos)
        print(f"dds_peer: publishing {args.kind} on {args.topic}", flush=True)
        deadline = time.monotonic() + args.timeout
        # publish until stopped: discovery timing does not matter, and a late subscriber still gets one
        while not stop and time.monotonic() < deadline and os.getppid() == parent:
            publisher.publish(message)
            time.sleep(args.period)
    finally:
        node.destroy_node()
        context.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
