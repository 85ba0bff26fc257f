"""Reconstruction and correspondence metrics with the Occupancy Flow paper's definitions."""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

__all__ = ["chamfer_l1", "sample_surface", "mesh_iou", "nearest_indices",
           "correspondence_l2", "nearest_neighbour_tracks"]


def sample_surface(vertices: np.ndarray, faces: np.ndarray, n: int,
                   rng: np.random.Generator) -> np.ndarray:
    """n points uniformly by area on a triangle mesh: (n, 3) float64."""
    v = np.asarray(vertices, np.float64)
    tri = v[np.asarray(faces, np.int64)]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    if len(tri) == 0 or area.sum() <= 0:
        return np.zeros((0, 3))
    pick = rng.choice(len(tri), size=n, p=area / area.sum())
    r1, r2 = rng.random(n), rng.random(n)
    s = np.sqrt(r1)
    w = np.stack([1 - s, s * (1 - r2), s * r2], axis=1)
    return np.einsum("nk,nkd->nd", w, tri[pick])


def chamfer_l1(pred: np.ndarray, gt: np.ndarray) -> float:
    """Chamfer-L1: the mean of accuracy (pred -> gt) and completeness (gt -> pred) distances.

    Distances are Euclidean ("L1" means they are averaged unsquared, as in Occupancy Networks and
    Occupancy Flow). An empty prediction scores inf.
    """
    pred = np.asarray(pred, np.float64)
    gt = np.asarray(gt, np.float64)
    if len(pred) == 0 or len(gt) == 0:
        return float("inf")
    accuracy = cKDTree(gt).query(pred)[0].mean()
    completeness = cKDTree(pred).query(gt)[0].mean()
    return float(0.5 * (accuracy + completeness))


def mesh_iou(vertices: np.ndarray, faces: np.ndarray, queries: np.ndarray,
             labels: np.ndarray) -> float:
    """Volumetric IoU between a closed mesh and true occupancy at query points (open3d occupancy)."""
    import open3d as o3d

    labels = np.asarray(labels, bool)
    if len(faces) == 0:
        inside = np.zeros(len(queries), bool)
    else:
        scene = o3d.t.geometry.RaycastingScene()
        scene.add_triangles(o3d.core.Tensor(np.ascontiguousarray(vertices, np.float32)),
                            o3d.core.Tensor(np.ascontiguousarray(faces, np.uint32)))
        inside = scene.compute_occupancy(
            o3d.core.Tensor(np.ascontiguousarray(queries, np.float32))).numpy() > 0.5
    union = (inside | labels).sum()
    return float((inside & labels).sum() / union) if union else 1.0


def nearest_indices(points: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Index of the nearest reference point for each point."""
    return cKDTree(np.asarray(reference, np.float64)).query(np.asarray(points, np.float64))[1]


def correspondence_l2(tracked: np.ndarray, gt_at_t: np.ndarray, matches: np.ndarray) -> float:
    """Mean distance between where tracked points are and where their matched truth points are.

    The paper's definition: each vertex of the keyframe mesh is matched (``matches``) to its nearest
    ground-truth point at the keyframe; at time t the error is the distance from the vertex's
    predicted position ``tracked`` (V, 3) to that ground-truth point's true position ``gt_at_t[m]``.
    """
    return float(np.linalg.norm(np.asarray(tracked, np.float64)
                                - np.asarray(gt_at_t, np.float64)[matches], axis=1).mean())


def nearest_neighbour_tracks(start: np.ndarray, observations: list[np.ndarray]) -> list[np.ndarray]:
    """The nearest-neighbour tracking baseline: each point jumps to its nearest observed point.

    start: (V, 3) positions at the first frame; observations: the observed points of each later frame.
    Returns the positions at each later frame (a frame with no points keeps the previous ones).
    Without a motion model this is what correspondences from the raw input alone give.
    """
    current = np.asarray(start, np.float64)
    out = []
    for obs in observations:
        obs = np.asarray(obs, np.float64)
        if len(obs):
            current = obs[cKDTree(obs).query(current)[1]]
        out.append(current.copy())
    return out
