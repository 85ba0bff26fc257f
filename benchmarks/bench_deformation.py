"""The deformation graph's fit per frame: milliseconds on one CPU core for a 2000-vertex keyframe mesh
and 1000 observed points (the tracking issue's target: at most 10 ms).

Run:  . tools/env.sh && python benchmarks/bench_deformation.py [--windows 3] [--vertices 2000]
      [--pair-every 1] [--min-decrease 0.01] [--coverage 0.3] [--fit-vertices 0] [--rigid-gate G]

A held-out synthetic person (seed 1001's human windows) is meshed exactly at the window's first
frame (the shape's own mesh, decimated to ``--vertices``), put in the normalised space the tracker
uses, and the graph is fit to each later frame's observed points (an even stride of 1000), as the
tracker does (momentum 0.8 over the frames' intervals, the tracker's default). Printed: nodes, the
fit's median and p95 per frame, the rigid stage's median and how often it ran, and the steps.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from occflow_ros.data import MotionRanges
from occflow_ros.data.synthetic import SyntheticConfig, synthetic_records
from occflow_ros.data.world import shape_from_description
from occflow_ros.geometry import DeformationGraph, fit_normalization, simplify_mesh


def windows(count: int, vertices: int):
    """(graph inputs, frames) of ``count`` held-out human windows: the keyframe mesh (normalised),
    its faces, the normalised frames and the camera position."""
    cfg = SyntheticConfig(ranges=MotionRanges(amplitude=(1.0, 1.2)), families=("human",),
                          family_weights=(1.0,), frame_points=4096)
    for record in synthetic_records(1001, count, cfg):
        shape = shape_from_description(record.meta["shape"])
        world_to_camera = np.linalg.inv(np.asarray(record.meta["camera_to_world"]))
        v, f = shape.mesh(float(record.meta["t_start"]))
        v = v @ world_to_camera[:3, :3].T + world_to_camera[:3, 3]
        v, f = simplify_mesh(v, f, target_vertices=vertices)
        norm = fit_normalization(record.frame_points[0], padding=0.15)
        frames = [norm.to_normalized(p) for p in record.frame_points[1:]]
        intervals = np.diff(np.asarray(record.frame_times, dtype=np.float64))
        yield ((norm.to_normalized(v), f), list(zip(frames, intervals)),
               norm.to_normalized(np.zeros((1, 3)))[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=3)
    parser.add_argument("--vertices", type=int, default=2000)
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument("--pair-every", type=int, default=1,
                        help="renew the nearest vertices every this many steps (default 1)")
    parser.add_argument("--min-decrease", type=float, default=0.01,
                        help="end a frame's steps below this energy decrease (default 0.01)")
    parser.add_argument("--coverage", type=float, default=0.3,
                        help="weight of the facing vertices no point chose (default 0.3; 0: off)")
    parser.add_argument("--fit-vertices", type=int, default=0,
                        help="the fit pairs with at most this many vertices (default 0: all)")
    parser.add_argument("--momentum", type=float, default=0.8,
                        help="each node continues this much of its last motion (default 0.8)")
    parser.add_argument("--rigid-gate", type=float, default=None,
                        help="skip the rigid stage where the start explains the frame within this "
                             "of the last fit (default: the graph's, 0.05; 0: always run it)")
    args = parser.parse_args()
    from occflow_ros.model import limit_cpu_threads

    limit_cpu_threads(1)  # torch and BLAS, as the node does
    fits, rigid, ran, steps = [], [], [], []
    for (v, f), frames, camera in windows(args.windows, args.vertices):
        graph = DeformationGraph(v, f, pair_every=args.pair_every, min_decrease=args.min_decrease,
                                 coverage=args.coverage, fit_vertices=args.fit_vertices,
                                 momentum=args.momentum)
        if args.rigid_gate is not None:
            graph.rigid_gate = args.rigid_gate
        for p, dt in frames:
            p = p[:: max(1, -(-len(p) // args.points))]
            t0 = time.perf_counter()
            graph.fit(p, camera=camera, max_rotation=0.2, max_translation=0.05, dt=dt)
            fits.append(time.perf_counter() - t0)
            rigid.append(graph.last_timings.get("rigid", 0.0))
            ran.append(graph.last_rigid_ran)
            steps.append(graph.last_steps)
        print(f"window: {len(v)} vertices, {graph.num_nodes} nodes, {len(graph.edges) // 2} links, "
              f"{len(frames)} frames, {graph.last_pairs} pairs in the last")
    ms = 1e3 * np.asarray(fits)
    print(f"fit per frame (1 thread): median {np.median(ms):.1f} ms, p95 {np.percentile(ms, 95):.1f} ms; "
          f"rigid stage median {1e3 * np.median(rigid):.1f} ms (ran on {np.mean(ran):.0%} of the "
          f"frames); {np.mean(steps):.2f} steps a frame "
          f"(pair_every {args.pair_every}, min_decrease {args.min_decrease:g}, coverage "
          f"{args.coverage:g}, fit_vertices {len(graph.fit_ids)}); target <= 10 ms")


if __name__ == "__main__":
    main()
