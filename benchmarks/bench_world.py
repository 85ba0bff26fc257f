"""Speed of the synthetic 4D world: building a figure, exact queries, sampling, meshes, depth frames.

Run from the repository root:  . tools/env.sh && python benchmarks/bench_world.py

Prints, for random human figures: construction plus canonical mesh (the one-off setup per shape),
exact occupancy queries per second (uniform in the figure's box, and within 2 cm of the surface),
surface sampling and trajectories, ``mesh(t)``, and depth frames from ``DepthCamera.render`` at
640x480 and 160x120 with the default sensor model, without and with exact refinement. Times are
medians over --repeats runs after a warm-up. Numbers only, no pass/fail; the machine's load average is
printed because the development machines are shared.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np

from occflow_ros.data import DepthCamera, Human, SensorConfig, realsense_d435, view_of


def median_time(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--queries", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(f"python {platform.python_version()}, numpy {np.__version__}, {os.cpu_count()} cpus, "
          f"load average {os.getloadavg()[0]:.2f}")

    # one-off setup per shape: draw the figure, build its canonical mesh
    builds, seeds = [], iter(range(args.seed, args.seed + 1000))
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        shape = Human.random(next(seeds))
        shape.canonical_mesh()
        builds.append(time.perf_counter() - t0)
    verts, faces = shape.canonical_mesh()
    print(f"build human + canonical mesh   {statistics.median(builds) * 1e3:8.1f} ms  "
          f"({len(verts)} vertices, {len(faces)} faces)")

    rng = np.random.default_rng(args.seed)
    t = 0.37
    lo, hi = shape.bounds(t, margin=0.05)
    uniform = rng.uniform(lo, hi, size=(args.queries, 3))
    surf, mat = shape.sample_surface(args.queries, t, rng)
    near = surf + rng.uniform(-0.02, 0.02, size=(args.queries, 1)) * shape.surface_normals(mat, t)
    for name, pts in (("uniform in box", uniform), ("within 2 cm of surface", near)):
        sec = median_time(lambda: shape.occupancy(pts, t), max(1, args.repeats // 3))
        print(f"occupancy, {name:<22} {len(pts) / sec / 1e3:8.1f} k points/s")
    sec = median_time(lambda: shape.sample_surface(10_000, t, rng), args.repeats)
    print(f"sample_surface                 {10_000 / sec / 1e3:8.1f} k points/s")
    times = np.linspace(0.0, 1.0, 17)
    sec = median_time(lambda: shape.trajectory(mat[:10_000], times), args.repeats)
    print(f"trajectory (17 times)          {10_000 * 17 / sec / 1e6:8.2f} M point-times/s")
    sec = median_time(lambda: shape.mesh(t + 0.01), args.repeats)
    print(f"mesh(t)                        {sec * 1e3:8.2f} ms")

    pose = view_of(shape, 2.5, azimuth=0.3)
    for width, height in ((640, 480), (160, 120)):
        for refine in (False, True):
            cam = DepthCamera(realsense_d435(width, height), pose, SensorConfig(refine=refine))
            frame_times = iter(np.linspace(0.0, 2.0, 4 * args.repeats + 2))
            sec = median_time(lambda: cam.render(shape, next(frame_times), rng), 4 * args.repeats)
            label = f"render {width}x{height}" + (" refined" if refine else "")
            print(f"{label:<30} {sec * 1e3:8.1f} ms/frame  ({1 / sec:5.1f} Hz)")


if __name__ == "__main__":
    main()
