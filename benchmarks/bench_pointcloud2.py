"""PointCloud2 decode/encode and TrackedMesh fill+serialize timings.

Run from the repository root:  . tools/env.sh && python benchmarks/bench_pointcloud2.py  [--repeats N]

Prints median and 95th percentile (milliseconds) of:
- read_xyz on a 640x480 organized cloud (x, y, z float32 + packed rgb, 16 B/point, ~15 % invalid)
  to (N, 3) float32 valid points, the fast path and the converting path (big-endian float64 xyz);
- a naive per-point Python decoder (struct.unpack_from per point) on a subset, extrapolated to
  640x480 (it would take seconds per repeat otherwise);
- cloud_view alone (validation + dtype + view);
- encoding the 640x480 cloud with xyz_cloud (with colour);
- make_tracked_mesh_msg + rclpy.serialization.serialize_message for 3k and 10k vertices (2V triangles).
No asserts: numbers only. Timings are wall clock on whatever else the machine is doing.
"""

from __future__ import annotations

import argparse
import math
import struct
import time
from typing import Callable, List

import numpy as np
from builtin_interfaces.msg import Time
from rclpy.serialization import serialize_message
from std_msgs.msg import Header

from occflow_ros.ros import cloud_view, make_cloud, make_tracked_mesh_msg, read_xyz, xyz_cloud


def timings(fn: Callable[[], object], repeats: int) -> List[float]:
    """Seconds per call over `repeats` calls, after one warm-up call."""
    fn()
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def report(label: str, seconds: List[float], scale: float = 1.0, note: str = "") -> None:
    ms = np.asarray(seconds) * scale * 1e3
    print(f"{label:<58s} median {np.median(ms):9.3f} ms   p95 {np.percentile(ms, 95):9.3f} ms"
          + (f"   ({note})" if note else ""))


def depth_cloud(rng: np.random.Generator, height: int, width: int):
    """A camera-like organized cloud: (H, W, 3) float32 metres with zero and NaN pixels, (H, W, 3) uint8."""
    v, u = np.mgrid[0:height, 0:width].astype(np.float32)
    depth = rng.uniform(0.3, 4.0, size=(height, width)).astype(np.float32)
    xyz = np.stack([(u - width / 2) * depth / 600.0, (v - height / 2) * depth / 600.0, depth], axis=-1)
    xyz[rng.random((height, width)) < 0.10] = 0.0
    xyz[rng.random((height, width)) < 0.05] = np.nan
    return xyz.astype(np.float32), rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def python_loop_xyz(msg, n_points: int) -> list:
    """The naive decoder: one struct.unpack_from per point, keep finite non-zero points."""
    data, step = msg.data, msg.point_step
    out = []
    for i in range(n_points):
        x, y, z = struct.unpack_from("<fff", data, i * step)
        if math.isfinite(x) and math.isfinite(y) and math.isfinite(z) and (x or y or z):
            out.append((x, y, z))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50, help="timed calls per measurement")
    parser.add_argument("--loop-points", type=int, default=20000,
                        help="points decoded by the Python loop per repeat (extrapolated to the full cloud)")
    parser.add_argument("--loop-repeats", type=int, default=10)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    n_points = args.height * args.width

    xyz, rgb = depth_cloud(rng, args.height, args.width)
    header = Header(frame_id="camera_depth_optical_frame")
    msg = xyz_cloud(header, xyz, rgb=rgb)
    n_valid = read_xyz(msg).shape[0]
    print(f"cloud {args.width}x{args.height}, point_step {msg.point_step} B, {len(msg.data) / 1e6:.1f} MB, "
          f"{n_valid} valid points; {args.repeats} repeats")

    report("decode: read_xyz -> (N,3) float32 valid points", timings(lambda: read_xyz(msg), args.repeats))
    report("decode: read_xyz organized -> (H,W,3), invalid = NaN",
           timings(lambda: read_xyz(msg, organized=True), args.repeats))
    report("decode: cloud_view only (validate + view)", timings(lambda: cloud_view(msg), args.repeats))
    big = np.zeros((args.height, args.width), [("x", ">f8"), ("y", ">f8"), ("z", ">f8"), ("rgb", ">f4")])
    for i, axis in enumerate("xyz"):
        big[axis] = xyz[..., i]
    big_msg = make_cloud(header, big)
    report("decode: read_xyz, big-endian float64 xyz (converting path)",
           timings(lambda: read_xyz(big_msg), args.repeats))
    k = min(args.loop_points, n_points)
    report("decode: Python per-point loop (baseline)", timings(lambda: python_loop_xyz(msg, k), args.loop_repeats),
           scale=n_points / k, note=f"measured on {k} points, x{n_points / k:.1f} extrapolated")

    report("encode: xyz_cloud(640x480 xyz + rgb)", timings(lambda: xyz_cloud(header, xyz, rgb=rgb), args.repeats))
    structured = cloud_view(msg).copy()
    report("encode: make_cloud(structured (H,W) array)", timings(lambda: make_cloud(header, structured), args.repeats))

    for n_vertices in (3000, 10000):
        canonical = rng.normal(size=(n_vertices, 3)).astype(np.float32)
        arrays = dict(vertices=canonical + np.float32(0.01), canonical_vertices=canonical,
                      triangles=rng.integers(0, n_vertices, size=(2 * n_vertices, 3)).astype(np.uint32),
                      vertex_ids=np.arange(n_vertices, dtype=np.uint32))

        def fill():
            return make_tracked_mesh_msg(header, keyframe_stamp=Time(), keyframe_id=0, **arrays)

        mesh_msg = fill()
        size = len(serialize_message(mesh_msg))
        report(f"TrackedMesh {n_vertices} vertices: fill", timings(fill, args.repeats))
        report(f"TrackedMesh {n_vertices} vertices: serialize_message",
               timings(lambda: serialize_message(mesh_msg), args.repeats), note=f"{size / 1e3:.0f} kB")
        report(f"TrackedMesh {n_vertices} vertices: fill + serialize",
               timings(lambda: serialize_message(fill()), args.repeats))


if __name__ == "__main__":
    main()
