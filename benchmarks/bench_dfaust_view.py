"""How the D-FAUST eval's simulated view compares with the hidden-point removal it used until
2026-12-08: per azimuth, frame 0 of a sequence, the points each method calls visible.

Run:  . tools/env.sh && python benchmarks/bench_dfaust_view.py [../shared/data/dfaust/SEQUENCE]

The view (``occflow_ros.data.dfaust.dfaust_visible_rows``) is a z-buffer at the synthetic world's
camera (320x240, 69 degrees): one point per pixel, the nearest. A registration point counts as on
the visible surface when it lies within 1.5 cm of a point the z-buffer kept (the z-buffer keeps
one of the several points a pixel holds). Printed per azimuth: the points each method keeps, the
share of the visible surface that hidden-point removal (open3d, radius 100 x the camera distance,
as the eval had it) misses, and the share of its points that are not on the visible surface.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from occflow_ros.data.dfaust import dfaust_camera, dfaust_visible_rows, load_dfaust_sequence

DEFAULT = Path(__file__).resolve().parents[2] / "shared/data/dfaust/50002_light_hopping_loose"


def hidden_point_removal(points: np.ndarray, eye: np.ndarray, radius: float) -> np.ndarray:
    import open3d as o3d

    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points.astype(np.float64)))
    return np.asarray(cloud.hidden_point_removal(eye, radius)[1], np.int64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sequence", nargs="?", default=str(DEFAULT))
    args = parser.parse_args()
    seq = load_dfaust_sequence(args.sequence)
    points = seq.points[0].astype(np.float64)
    for degrees in (0, 90, 180, 270):
        pose = dfaust_camera(seq, azimuth=np.deg2rad(degrees))
        zbuffer = dfaust_visible_rows(points, pose)
        hpr = hidden_point_removal(points, pose[:3, 3], 100.0 * 2.5)
        on_surface = cKDTree(points[zbuffer]).query(points)[0] < 0.015
        in_hpr = np.zeros(len(points), bool)
        in_hpr[hpr] = True
        missed = (on_surface & ~in_hpr).sum() / on_surface.sum()
        hidden = (in_hpr & ~on_surface).sum() / in_hpr.sum()
        print(f"azimuth {degrees:3d}: z-buffer {len(zbuffer)} points, hidden-point removal "
              f"{len(hpr)}; it misses {missed:.0%} of the visible surface and {hidden:.0%} of its "
              f"points are hidden")


if __name__ == "__main__":
    main()
