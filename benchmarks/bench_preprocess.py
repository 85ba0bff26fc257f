"""Point-cloud preprocessing speed on a simulated 640x480 depth frame, per stage.

Run from the repository root:  . tools/env.sh && python benchmarks/bench_preprocess.py

The frame (occflow_ros.geometry.analytic.depth_frame): an ellipsoid "body" 1.5 m away in front of
a wall at 3 m with a floor, Gaussian noise of 2 mm, a third of the pixels valid, the rest (0, 0, 0)
and 1% NaN. Prints the median time of --repeats runs (after one warm-up) for the default pipeline
(valid -> voxel 1 cm -> cluster -> outliers on the object -> 512 points), the same with plane
removal, and with an ROI box instead of clustering. Numbers only, no pass/fail.

Measured on the 2-core x86_64 development machine (Python 3.11, numpy 2.4, open3d 0.20), median of
30: default 28 ms (valid 3, voxel 6, cluster 14, outliers 5.5), +plane 20 ms, ROI box 12 ms.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np

from occflow_ros.geometry import PreprocessConfig, preprocess
from occflow_ros.geometry.analytic import depth_frame

STAGES = ("valid", "roi", "voxel", "plane", "cluster", "outliers", "output")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--valid-fraction", type=float, default=1 / 3)
    ap.add_argument("--n-points", type=int, default=512)
    args = ap.parse_args()

    points, on_object = depth_frame(valid_fraction=args.valid_fraction, seed=0)
    configs = {
        "default": PreprocessConfig(n_points=args.n_points),
        "+plane": PreprocessConfig(n_points=args.n_points, remove_plane=True),
        "roi box": PreprocessConfig(n_points=args.n_points, roi_min=(-0.5, -0.6, 1.0),
                                    roi_max=(0.5, 0.79, 2.0)),
    }
    print(f"python {platform.python_version()}, numpy {np.__version__}, "
          f"{platform.processor() or platform.machine()}")
    print(f"frame: {len(points)} points, {np.count_nonzero(np.isfinite(points).all(1) & (points != 0).any(1))}"
          f" valid, {on_object.sum()} on the object; median of {args.repeats} runs, ms")
    header = f"{'config':<8} {'total':>6} " + " ".join(f"{s:>8}" for s in STAGES) + "   counts"
    print(header)
    print("-" * len(header))
    for name, config in configs.items():
        rng = np.random.default_rng(0)
        preprocess(points, config, rng)  # warm-up: imports, open3d thread pool
        totals, stages = [], {s: [] for s in STAGES}
        result = None
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            result = preprocess(points, config, rng)
            totals.append(time.perf_counter() - t0)
            for s in STAGES:
                stages[s].append(result.seconds[s])
        c = result.counts
        print(f"{name:<8} {statistics.median(totals) * 1e3:>6.1f} "
              + " ".join(f"{statistics.median(stages[s]) * 1e3:>8.2f}" for s in STAGES)
              + f"   {c.valid} -> roi {c.roi} -> voxel {c.voxel} -> plane {c.plane} -> cluster "
                f"{c.cluster} -> outliers {c.outliers} -> {c.output}")


if __name__ == "__main__":
    main()
