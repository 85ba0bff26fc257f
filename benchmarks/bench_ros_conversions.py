"""TrackedMesh -> ROS message timings: MarkerArray as rclpy objects vs the numpy CDR fast path, clouds, bag writing.

Run from the repository root:  . tools/env.sh && python benchmarks/bench_ros_conversions.py  [--repeats N]
Humble's generated message classes always check every field assignment; newer distros only when
ROS_PYTHON_CHECK_FIELDS=1. To time the object path as Humble would run it:
    ROS_PYTHON_CHECK_FIELDS=1 python benchmarks/bench_ros_conversions.py

Prints median and 95th percentile (milliseconds), for meshes of 3k and 10k vertices (2V triangles,
so 6V triangle corners), of:
- to_marker_array (one Point and one ColorRGBA object per corner), also with the garbage collector
  off (its passes over the ~36k new objects per 3k-vertex mesh dominate), + rclpy serialize_message;
- rclpy deserialize_message of the CDR (the other way to get rclpy objects);
- to_marker_array_cdr (publishable bytes), with and without a DELETEALL;
- to_correspondence_cloud + serialize, to_tracked_mesh_msg + serialize;
- OutputBag (mcap): write per frame of markers + TrackedMesh + cloud, and close() (what a SIGINT'd
  replay pays to finish its bag).
No asserts: numbers only. Wall clock, on whatever else the machine is doing.
"""

from __future__ import annotations

import argparse
import gc
import os
import tempfile
import time
from pathlib import Path
from typing import Callable, List

import numpy as np
from builtin_interfaces.msg import Time
from occflow_ros_msgs.msg import TrackedMesh as TrackedMeshMsg
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from occflow_ros.ros import (
    OutputBag,
    to_correspondence_cloud,
    to_marker_array,
    to_marker_array_cdr,
    to_tracked_mesh_msg,
)
from occflow_ros.tracking import TrackedMesh


def timings(fn: Callable[[], object], repeats: int) -> List[float]:
    """Seconds per call over `repeats` calls, after one warm-up call."""
    fn()
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def report(label: str, seconds: List[float], note: str = "") -> None:
    ms = np.asarray(seconds) * 1e3
    print(f"{label:<62s} median {np.median(ms):8.2f} ms   p95 {np.percentile(ms, 95):8.2f} ms"
          + (f"   ({note})" if note else ""))


def sphere_like_mesh(rng: np.random.Generator, n_vertices: int, topology_changed: bool) -> TrackedMesh:
    """Vertices on a 0.3 m sphere 1.5 m ahead of the camera, 2V random triangles."""
    directions = rng.normal(size=(n_vertices, 3))
    vertices = (0.3 * directions / np.linalg.norm(directions, axis=1, keepdims=True) + [0, 0, 1.5])
    vertices = vertices.astype(np.float32)
    return TrackedMesh(stamp=1.0, keyframe_stamp=0.5, keyframe_id=1, vertices=vertices,
                       faces=rng.integers(0, n_vertices, size=(2 * n_vertices, 3)).astype(np.uint32),
                       vertex_ids=np.arange(n_vertices, dtype=np.uint32), canonical_vertices=vertices.copy(),
                       topology_changed=topology_changed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30, help="timed calls per fast measurement")
    parser.add_argument("--slow-repeats", type=int, default=5, help="timed calls of the rclpy-object path")
    parser.add_argument("--bag-frames", type=int, default=60, help="frames written in the bag measurement")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    header = Header(frame_id="camera_depth_optical_frame", stamp=Time(sec=1_700_000_000, nanosec=1))
    checks = os.environ.get("ROS_PYTHON_CHECK_FIELDS", "") == "1"
    print(f"field checks in rclpy message setters: {'on (Humble behaviour)' if checks else 'off'}")

    for n_vertices in (3000, 10000):
        mesh = sphere_like_mesh(rng, n_vertices, topology_changed=False)
        keyframe = sphere_like_mesh(rng, n_vertices, topology_changed=True)
        data = to_marker_array_cdr(mesh, header)
        tag = f"{n_vertices} vertices, {6 * n_vertices} corners"
        report(f"MarkerArray {tag}: to_marker_array (objects)",
               timings(lambda: to_marker_array(mesh, header), args.slow_repeats))
        gc.disable()
        report(f"MarkerArray {tag}: to_marker_array, garbage collector off",
               timings(lambda: to_marker_array(mesh, header), args.slow_repeats))
        gc.enable()
        objects = to_marker_array(mesh, header)
        report(f"MarkerArray {tag}: serialize_message(objects)",
               timings(lambda: serialize_message(objects), args.slow_repeats))
        report(f"MarkerArray {tag}: deserialize_message(cdr) -> objects",
               timings(lambda: deserialize_message(data, MarkerArray), args.slow_repeats))
        report(f"MarkerArray {tag}: to_marker_array_cdr",
               timings(lambda: to_marker_array_cdr(mesh, header), args.repeats), note=f"{len(data) / 1e6:.2f} MB")
        report(f"MarkerArray {tag}: to_marker_array_cdr + DELETEALL",
               timings(lambda: to_marker_array_cdr(keyframe, header), args.repeats))
        report(f"correspondence cloud {n_vertices}: build + serialize",
               timings(lambda: serialize_message(to_correspondence_cloud(mesh, header)), args.repeats))
        report(f"TrackedMesh msg {n_vertices}: build + serialize",
               timings(lambda: serialize_message(to_tracked_mesh_msg(mesh, header)), args.repeats))

    mesh = sphere_like_mesh(rng, 3000, topology_changed=False)
    cloud = to_correspondence_cloud(mesh, header)
    with tempfile.TemporaryDirectory() as tmp:
        bag = OutputBag(Path(tmp) / "bench", storage="mcap")
        bag.open()
        bag.add_topic("/points", PointCloud2)
        bag.add_topic("/mesh", MarkerArray)
        bag.add_topic("/tracked_mesh", TrackedMeshMsg)
        per_frame = []
        for i in range(args.bag_frames):
            start = time.perf_counter()
            bag.write("/points", i + 1, cloud)
            bag.write("/mesh", i + 1, to_marker_array_cdr(mesh, header))
            bag.write("/tracked_mesh", i + 1, to_tracked_mesh_msg(mesh, header))
            per_frame.append(time.perf_counter() - start)
        start = time.perf_counter()
        bag.close()
        closing = time.perf_counter() - start
        size = sum(f.stat().st_size for f in (Path(tmp) / "bench").iterdir())
        report("bag (mcap) write per frame: cloud + markers (cdr) + TrackedMesh, 3k", per_frame)
        report(f"bag (mcap) close after {args.bag_frames} frames", [closing], note=f"{size / 1e6:.0f} MB bag")


if __name__ == "__main__":
    main()
