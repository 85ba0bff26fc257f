"""Rigid registration of a window's frames to its keyframe (open3d's point-to-point ICP)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .errors import GeometryError

__all__ = ["frame_poses", "next_pose", "register_to_keyframe", "best_rigid_motion"]


def register_to_keyframe(keyframe: np.ndarray, frame: np.ndarray, init: np.ndarray | None = None,
                         max_distance: float = 0.02, iterations: int = 30,
                         coarse_distance: float | None = 0.08) -> np.ndarray:
    """The rigid transform (4, 4) that carries the keyframe's points onto ``frame``'s.

    keyframe (N, 3), frame (M, 3): points in one space (the model's normalised space, where the
    default ``max_distance`` of 0.02 is ~3.6 cm on a person). init: the starting guess (the previous
    frame's pose in a stream); None starts from the translation between the two centroids.
    Point-to-point ICP (open3d): on partial views of a deforming body it recovers the body's
    dominant rigid motion, which the velocity field then refines. Pairs farther apart than
    ``max_distance`` are left out, so limbs moving against the trunk do not pull the estimate. The
    body may have moved farther than that since the guess (a fast motion, dropped frames): a second
    run starts with a pass at ``coarse_distance`` (None: no second run), and its result is kept
    when it pairs at least 5% more of the keyframe's points within ``max_distance``. On 64
    validation windows, the keyframe's surface carried with the poses alone scored correspondence
    L2 (normalised units; left still: 0.0367):
    - 0.0249 as here; 0.0257 with the fine pass alone;
    - 0.0270 keeping the coarse run whenever it pairs more points; 0.0275 always coarse first;
    - 0.0269, 0.0291 and 0.0306 with one pass at 0.04, 0.08 and 0.15.
    Raises GeometryError on empty or non-finite input.
    """
    import open3d as o3d

    a = np.asarray(keyframe, dtype=np.float64)
    b = np.asarray(frame, dtype=np.float64)
    for name, x in (("keyframe", a), ("frame", b)):
        if x.ndim != 2 or x.shape[1] != 3 or len(x) == 0:
            raise GeometryError(f"register_to_keyframe: {name} points must be (N>0, 3), "
                                f"got {x.shape}")
        if not np.isfinite(x).all():
            raise GeometryError(f"register_to_keyframe: {name} points hold NaN or inf")
    if init is None:
        init = np.eye(4)
        init[:3, 3] = b.mean(axis=0) - a.mean(axis=0)
    source, target = o3d.geometry.PointCloud(), o3d.geometry.PointCloud()
    source.points = o3d.utility.Vector3dVector(a)
    target.points = o3d.utility.Vector3dVector(b)
    reg = o3d.pipelines.registration

    def icp(distance: float, start: np.ndarray):
        return reg.registration_icp(source, target, distance, start,
                                    reg.TransformationEstimationPointToPoint(),
                                    reg.ICPConvergenceCriteria(max_iteration=iterations))

    fine = icp(max_distance, np.asarray(init, dtype=np.float64))
    if coarse_distance:
        # the motion since the guess may be farther than the fine pass reaches: also try a coarse
        # pass first, and keep that result when it pairs clearly more points within max_distance
        other = icp(max_distance, np.asarray(icp(coarse_distance, init).transformation))
        if other.fitness > fine.fitness + 0.05:
            fine = other
    return np.asarray(fine.transformation, dtype=np.float64)


def next_pose(keyframe: np.ndarray, frame: np.ndarray, poses: Sequence[np.ndarray],
              max_distance: float = 0.02, iterations: int = 30) -> np.ndarray:
    """The pose (4, 4) float64 of the frame after those whose ``poses`` are known (the keyframe's,
    the identity, first): ICP from the last frame's pose; the first frame after the keyframe starts
    from the centroids instead. Training (``frame_poses``) and the tracker chain poses this one way."""
    return register_to_keyframe(keyframe, frame, poses[-1] if len(poses) > 1 else None,
                                max_distance, iterations)


def frame_poses(frames: Sequence[np.ndarray], max_distance: float = 0.02,
                iterations: int = 30) -> np.ndarray:
    """Poses (T, 4, 4) float32 of a window's frames (in time order, frame 0 the keyframe): pose t
    carries the keyframe's points onto frame t's; pose 0 is the identity (``next_pose`` for the
    others)."""
    poses = [np.eye(4)]
    for frame in frames[1:]:
        poses.append(next_pose(frames[0], frame, poses, max_distance, iterations))
    return np.stack(poses).astype(np.float32)


def best_rigid_motion(a: np.ndarray, b: np.ndarray, weights: np.ndarray | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
    """The rigid motion (R (3, 3), t (3,)) that carries points a (N, 3) onto their counterparts b
    (N, 3) with the least (weighted) squared error (Kabsch: SVD of the weighted cross-covariance;
    no reflection). weights: (N,) >= 0, default all 1."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    w = np.ones(len(a)) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    ca, cb = w @ a, w @ b
    u, _, vt = np.linalg.svd((a - ca).T @ ((b - cb) * w[:, None]))
    d = np.sign(np.linalg.det(vt.T @ u.T))
    R = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    return R, cb - R @ ca
