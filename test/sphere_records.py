"""Window records of a sphere sliding in front of a camera: exact occupancy and correspondences.

A small stand-in for the synthetic world, for tests of the data and training machinery.
"""

from __future__ import annotations

import numpy as np

from occflow_ros.data.records import WindowRecord


def sphere_record(rng: np.random.Generator, *, frames: int = 8, radius: float = 0.3,
                  velocity=(0.4, 0.0, 0.0), occ_points: int = 256, corr_points: int = 128,
                  frame_points: int = 300) -> WindowRecord:
    times = np.sort(rng.uniform(0.05, 0.9, size=frames - 1))
    times = np.r_[0.0, times]
    v = np.asarray(velocity, float)
    start = np.array([rng.uniform(-0.2, 0.2), rng.uniform(-0.2, 0.2), 2.0])
    centres = start + times[:, None] * v

    def surface(n):
        d = rng.normal(size=(n, 3))
        return d / np.linalg.norm(d, axis=1, keepdims=True)

    points = []
    for c in centres:
        d = surface(2 * frame_points)
        d = d[d[:, 2] < 0][:frame_points]  # camera-facing half
        points.append((c + radius * d).astype(np.float32))
    gt = np.array([0, frames // 2, frames - 1])
    occ_p, occ = [], []
    for c in centres[gt]:
        q = c + rng.uniform(-1.5 * radius, 1.5 * radius, size=(occ_points, 3))
        occ_p.append(q)
        occ.append(np.linalg.norm(q - c, axis=1) < radius)
    material = surface(corr_points) * radius
    corr = np.stack([centres[g] + material for g in gt])
    return WindowRecord(times, points, gt, occ_points=np.stack(occ_p), occ=np.stack(occ),
                        corr=corr, meta={"family": "sphere", "velocity": v.tolist()})
