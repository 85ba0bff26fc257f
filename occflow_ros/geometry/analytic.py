"""Analytic fields (sphere, torus, capsules) and a simulated depth frame, for tests and benchmarks.

Each ``*_field`` function returns a field in the form that
:func:`~occflow_ros.geometry.extract_mesh` takes: ``field(points (M, 3) float32 normalised) ->
(M,) float32``, positive inside. The value is the
signed distance to the surface (exact for the sphere and the torus; for the union of capsules the
maximum of the capsules' signed distances, exact outside the shape) times ``gain``, so a gain
turns it into a logit-like field with a steeper transition.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

__all__ = ["sphere_field", "torus_field", "capsules_field", "depth_frame"]

Field = Callable[[np.ndarray], np.ndarray]


def sphere_field(center: Sequence[float] = (0.0, 0.0, 0.0), radius: float = 0.4,
                 gain: float = 1.0) -> Field:
    """Ball of ``radius`` around ``center``: ``gain * (radius - |p - center|)``."""
    c = np.asarray(center, dtype=np.float32).reshape(3)

    def field(points: np.ndarray) -> np.ndarray:
        return (gain * (radius - np.linalg.norm(points - c, axis=1))).astype(np.float32)

    return field


def torus_field(center: Sequence[float] = (0.0, 0.0, 0.0), major: float = 0.3, minor: float = 0.1,
                gain: float = 1.0) -> Field:
    """Torus around the z axis through ``center``, tube radius ``minor`` at distance ``major``."""
    c = np.asarray(center, dtype=np.float32).reshape(3)

    def field(points: np.ndarray) -> np.ndarray:
        q = points - c
        ring = np.sqrt(q[:, 0] ** 2 + q[:, 1] ** 2) - major
        return (gain * (minor - np.sqrt(ring ** 2 + q[:, 2] ** 2))).astype(np.float32)

    return field


# three limbs of different thickness, crossing each other: a small "body" inside [-0.5, 0.5]^3
DEFAULT_CAPSULES = (
    ((-0.30, -0.20, 0.00), (0.30, 0.10, 0.05), 0.08),
    ((0.00, -0.35, -0.10), (0.05, 0.30, 0.20), 0.07),
    ((-0.20, 0.20, -0.30), (0.25, 0.20, 0.30), 0.09),
)


def capsules_field(capsules: Sequence[tuple] = DEFAULT_CAPSULES, gain: float = 1.0) -> Field:
    """Union of capsules ``(a, b, radius)``: points within ``radius`` of the segment a-b."""
    segs = [(np.asarray(a, np.float32), np.asarray(b, np.float32), float(r)) for a, b, r in capsules]
    if not segs:
        raise ValueError("capsules_field needs at least one capsule")

    def field(points: np.ndarray) -> np.ndarray:
        best = None
        for a, b, r in segs:
            ab = b - a
            t = np.clip((points - a) @ ab / max(float(ab @ ab), 1e-30), 0.0, 1.0)
            d = np.linalg.norm(points - (a + t[:, None] * ab), axis=1)
            best = r - d if best is None else np.maximum(best, r - d)
        return (gain * best).astype(np.float32)

    return field


def depth_frame(width: int = 640, height: int = 480, focal: float = 600.0, *,
                object_center: Sequence[float] = (0.0, 0.2, 1.5),
                object_radii: Sequence[float] = (0.25, 0.6, 0.2),
                floor_y: float | None = 0.8, wall_z: float | None = 3.0,
                valid_fraction: float = 1 / 3, nan_fraction: float = 0.01, noise: float = 0.002,
                seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A simulated depth-camera frame of an ellipsoid "body" standing on a floor before a wall.

    Pinhole camera at the origin in the optical frame (x right, y down, z forward, metres), one
    ray per pixel, row-major like an organised PointCloud2. Each ray hits the nearest of: the
    ellipsoid (``object_center``, semi-axes ``object_radii``), the floor plane ``y = floor_y`` and
    the wall plane ``z = wall_z`` (either may be None); Gaussian noise of ``noise`` metres is added
    to every coordinate. Then a random ``1 - valid_fraction`` of the pixels become (0, 0, 0), as
    RealSense publishes invalid depth, and ``nan_fraction`` become NaN.

    Returns:
        points (height * width, 3) float32 metres, sensor frame; on_object (height * width,) bool,
        the pixels whose valid ray hit the ellipsoid.
    """
    rng = np.random.default_rng(seed)
    u, v = np.meshgrid(np.arange(width), np.arange(height))
    rays = np.stack([(u - (width - 1) / 2) / focal, (v - (height - 1) / 2) / focal,
                     np.ones(u.shape)], axis=-1).reshape(-1, 3)
    t = np.full(len(rays), np.inf)
    if floor_y is not None:
        with np.errstate(divide="ignore"):
            t_floor = np.where(rays[:, 1] * floor_y > 0, floor_y / rays[:, 1], np.inf)
        t = np.minimum(t, t_floor)
    if wall_z is not None:
        t = np.minimum(t, wall_z / rays[:, 2])
    c = np.asarray(object_center, float)
    r = np.asarray(object_radii, float)
    a_, b_ = rays / r, -c / r
    qa, qb, qc = (a_ * a_).sum(1), 2 * (a_ * b_).sum(1), (b_ * b_).sum() - 1
    disc = qb * qb - 4 * qa * qc
    t_obj = np.where(disc > 0, (-qb - np.sqrt(np.maximum(disc, 0))) / (2 * qa), np.inf)
    t_obj[t_obj <= 0] = np.inf
    on_object = t_obj < t
    t = np.minimum(t, t_obj)
    points = rays * t[:, None] + rng.normal(0.0, noise, rays.shape)
    invalid = ~np.isfinite(t) | (rng.random(len(points)) >= valid_fraction)
    points[invalid] = 0.0
    points[rng.random(len(points)) < nan_fraction] = np.nan
    on_object &= np.isfinite(points).all(1) & ~invalid
    return points.astype(np.float32), on_object
