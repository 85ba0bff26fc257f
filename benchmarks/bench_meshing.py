"""Meshing speed: MISE vs the dense grid, marching cubes alone, and simplification, on analytic shapes.

Run from the repository root:  . tools/env.sh && python benchmarks/bench_meshing.py

Prints, per shape: MISE wall time and field queries at the final resolution (default 32 * 2^2 = 128)
against the dense (R+1)^3 grid, dense extraction time, marching cubes time alone on the final value
grid, and quadric simplification time down to a vertex target (default 3000). Times are the median
of --repeats runs, after one warm-up run. Numbers only, no pass/fail.

Measured on the 2-core x86_64 development machine (median of 5), final resolution 128: MISE 50-63 ms
with 9.4-12.6% of the 129^3 dense queries (dense extraction 64-223 ms), marching cubes alone 31 ms,
simplification to 3k vertices 200-340 ms.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np

from occflow_ros.geometry import (extract_mesh, extract_mesh_dense, marching_cubes, simplify_mesh)
from occflow_ros.geometry.analytic import capsules_field, sphere_field, torus_field

SHAPES = {
    "sphere": sphere_field(center=(0.02, -0.01, 0.03), radius=0.35),
    "torus": torus_field(center=(0.01, 0.02, -0.015), major=0.3, minor=0.1),
    "capsules": capsules_field(),
}


def timed(fn, repeats):
    fn()  # warm-up (imports, caches)
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resolution0", type=int, default=32)
    ap.add_argument("--upsampling-steps", type=int, default=2)
    ap.add_argument("--box-size", type=float, default=1.1)
    ap.add_argument("--target-vertices", type=int, default=3000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    args = ap.parse_args()

    res = args.resolution0 * 2 ** args.upsampling_steps
    print(f"python {platform.python_version()}, numpy {np.__version__}, {platform.processor() or platform.machine()}")
    print(f"MISE {args.resolution0} x 2^{args.upsampling_steps} = {res} cells/axis, box {args.box_size}, "
          f"median of {args.repeats}")
    header = (f"{'shape':<9} {'V':>7} {'F':>7} {'MISE ms':>8} {'queries':>9} {'dense':>9} {'ratio':>6} "
              f"{'dense ms':>9} {'MC ms':>6} {'simpl ms':>9} {'V simpl':>8}")
    print(header)
    print("-" * len(header))
    for name in args.shapes:
        field = SHAPES[name]
        t_mise, mesh = timed(lambda: extract_mesh(
            field, resolution0=args.resolution0, upsampling_steps=args.upsampling_steps,
            box_size=args.box_size), args.repeats)
        t_dense, dense = timed(lambda: extract_mesh_dense(field, 0.0, res, args.box_size), args.repeats)
        # marching cubes alone, on the dense value grid
        step = args.box_size / res
        axis = np.arange(res + 1) * step - args.box_size / 2
        grid = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
        values = field(grid.astype(np.float32)).reshape((res + 1,) * 3).astype(np.float64)
        t_mc, _ = timed(lambda: marching_cubes(values, 0.0, args.box_size), args.repeats)
        t_simp, (sv, _) = timed(lambda: simplify_mesh(mesh.vertices, mesh.faces,
                                                      target_vertices=args.target_vertices), args.repeats)
        same = np.array_equal(mesh.faces, dense.faces)
        print(f"{name:<9} {len(mesh.vertices):>7} {len(mesh.faces):>7} {t_mise * 1e3:>8.1f} "
              f"{mesh.n_queries:>9} {mesh.dense_queries:>9} {mesh.query_ratio:>6.1%} "
              f"{t_dense * 1e3:>9.1f} {t_mc * 1e3:>6.1f} {t_simp * 1e3:>9.1f} {len(sv):>8}"
              + ("" if same else "   (MISE != dense!)"))


if __name__ == "__main__":
    main()
