"""Question 4: I/O — PointCloud2 decoding of 640x480 clouds, and the cost of building + serializing the outputs.

Run on its own:  . tools/env.sh && python benchmarks/bench_io.py   (prints the table)

Reuses the per-topic scripts' pieces: the camera-like cloud and the per-point decoder of
``bench_pointcloud2.py``, the sphere-like TrackedMesh of ``bench_ros_conversions.py``.
"""

from __future__ import annotations

import os
from typing import Callable

import numpy as np
from builtin_interfaces.msg import Time
from rclpy.serialization import serialize_message
from std_msgs.msg import Header

from occflow_ros.ros import (
    OutputBuilder,
    read_xyz,
    to_marker_array,
    to_marker_array_cdr,
    to_tracked_mesh_msg,
    xyz_cloud,
)
from occflow_ros.ros.node_config import OutputOptions

from bench_pointcloud2 import depth_cloud, python_loop_xyz
from bench_ros_conversions import sphere_like_mesh
from harness import Table, median, percentile, timings

__all__ = ["Q4_COLUMNS", "io_costs"]

Q4_COLUMNS = [("what", "measurement"), ("size", "size"), ("ms", "ms (median)"),
              ("p95", "ms (p95)"), ("vs", "speed-up vs baseline"), ("note", "note")]


def _serialize_all(outputs: list) -> int:
    """Bytes of one frame's outputs as they go on the wire (the mesh marker is CDR bytes already)."""
    return sum(len(m) if isinstance(m, (bytes, bytearray)) else len(serialize_message(m))
               for _, m in outputs)


def io_costs(*, repeats: int = 20, loop_points: int = 20_000, width: int = 640, height: int = 480,
             sizes: tuple[int, ...] = (3000, 10_000), seed: int = 0,
             progress: Callable[[str], None] = print) -> Table:
    """The question-4 table: decode times of a ``width`` x ``height`` cloud, and per mesh size the
    TrackedMesh message, the MarkerArray (numpy CDR fast path and rclpy objects) and all four node
    outputs, each built and serialized."""
    table = Table("4. I/O", Q4_COLUMNS)
    rng = np.random.default_rng(seed)
    xyz, rgb = depth_cloud(rng, height, width)
    header = Header(frame_id="camera_depth_optical_frame", stamp=Time(sec=1_700_000_000, nanosec=1))
    msg = xyz_cloud(header, xyz, rgb=rgb)
    n_points = width * height
    n_valid = read_xyz(msg).shape[0]
    size = f"{width}x{height}, {len(msg.data) / 1e6:.1f} MB"
    progress(f"Q4: PointCloud2 decode of a {size} cloud")
    ours = timings(lambda: read_xyz(msg), repeats)
    k = min(loop_points, n_points)
    loop = [s * n_points / k for s in timings(lambda: python_loop_xyz(msg, k), max(2, repeats // 4))]
    table.add({"what": "PointCloud2 -> (N, 3) valid points: `read_xyz` (ours, numpy view)",
               "size": size, "ms": 1e3 * median(ours), "p95": 1e3 * percentile(ours, 95),
               "vs": median(loop) / median(ours), "note": f"{n_valid} valid of {n_points} points"})
    table.add({"what": "PointCloud2 -> points: per-point Python loop (`struct.unpack_from`)",
               "size": size, "ms": 1e3 * median(loop), "p95": 1e3 * percentile(loop, 95), "vs": 1.0,
               "note": f"timed on {k} points, scaled x{n_points / k:.1f}"})
    options = OutputOptions()
    for n_vertices in sizes:
        progress(f"Q4: outputs of a {n_vertices}-vertex mesh")
        mesh = sphere_like_mesh(rng, n_vertices, topology_changed=False)
        mesh.input_points = mesh.vertices[:300].copy()
        mesh.input_keyframe_points = mesh.input_points.copy()
        tag = f"{n_vertices} vertices, {2 * n_vertices} triangles"
        tracked = timings(lambda: serialize_message(to_tracked_mesh_msg(mesh, header)), repeats)
        cdr = timings(lambda: to_marker_array_cdr(mesh, header), repeats)
        objects = timings(lambda: serialize_message(to_marker_array(mesh, header)),
                          max(2, repeats // 4))
        builder = OutputBuilder()
        everything = timings(lambda: _serialize_all(builder.build(mesh, header, options)), repeats)
        wire = _serialize_all(builder.build(mesh, header, options))
        marker_bytes = len(to_marker_array_cdr(mesh, header))
        table.add({"what": "TrackedMesh msg: `to_tracked_mesh_msg` + `serialize_message`", "size": tag,
                   "ms": 1e3 * median(tracked), "p95": 1e3 * percentile(tracked, 95), "vs": None,
                   "note": f"{len(serialize_message(to_tracked_mesh_msg(mesh, header))) / 1e3:.0f} kB"})
        table.add({"what": "MarkerArray: `to_marker_array_cdr` (ours, numpy -> CDR bytes)", "size": tag,
                   "ms": 1e3 * median(cdr), "p95": 1e3 * percentile(cdr, 95),
                   "vs": median(objects) / median(cdr), "note": f"{marker_bytes / 1e6:.2f} MB"})
        table.add({"what": "MarkerArray: rclpy objects (`to_marker_array`) + `serialize_message`",
                   "size": tag, "ms": 1e3 * median(objects), "p95": 1e3 * percentile(objects, 95),
                   "vs": 1.0, "note": "baseline: one Point and ColorRGBA object per corner"})
        table.add({"what": "all four node outputs: `OutputBuilder.build` + serialize", "size": tag,
                   "ms": 1e3 * median(everything), "p95": 1e3 * percentile(everything, 95),
                   "vs": None, "note": f"{wire / 1e6:.2f} MB per frame on the wire"})
    checks = os.environ.get("ROS_PYTHON_CHECK_FIELDS", "") == "1"
    table.notes += [
        f"Median and 95th percentile of {repeats} timed calls after one warm-up (the slow baselines: "
        f"{max(2, repeats // 4)} calls). The cloud is camera-like: x y z float32 + packed rgb, 16 B "
        "per point, ~15 % invalid points (zeros and NaN), from `bench_pointcloud2.depth_cloud`.",
        "Publish cost = building the message from the tracker's numpy arrays + serializing it (what "
        "rclpy does inside `publish`); the node publishes the MarkerArray as the CDR bytes "
        "`to_marker_array_cdr` makes. Meshes: `bench_ros_conversions.sphere_like_mesh` (2V "
        "triangles); the four outputs are MarkerArray, correspondence cloud, TrackedMesh and input "
        "correspondences (300 points).",
        "rclpy message field checks: " + ("on (ROS_PYTHON_CHECK_FIELDS=1, as Humble always does)"
                                          if checks else "off (this distro's default; Humble "
                                          "always checks, which makes the rclpy-object baseline "
                                          "slower still)") + ".",
    ]
    return table


if __name__ == "__main__":
    print(io_costs().markdown())
