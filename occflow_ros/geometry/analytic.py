"""Analytic fields (sphere, torus, union of capsules) with a known surface, for tests and benchmarks.

Each function returns a field in the form :func:`~occflow_ros.geometry.extract_mesh` takes:
``field(points (M, 3) float32 normalised) -> (M,) float32``, positive inside. The value is the
signed distance to the surface (exact for the sphere and the torus; for the union of capsules the
maximum of the capsules' signed distances, exact outside the shape) times ``gain``, so a gain
turns it into a logit-like field with a steeper transition.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

__all__ = ["sphere_field", "torus_field", "capsules_field"]

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
