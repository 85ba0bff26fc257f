"""Implicit primitives with analytic gradients, smooth union, and meshing/sampling of implicit surfaces.

Conventions: an implicit function ``S`` is negative inside, zero on the surface and positive outside;
every primitive here is 1-Lipschitz (``|grad S| <= 1``), so ``|S(x)|`` never exceeds the distance from
``x`` to the surface. Points are float64 metres. Primitive families evaluate ``P`` primitives at once:
``evaluate(x)`` takes ``x`` of shape ``(..., P, 3)`` or anything that broadcasts to it (``x[:, None]``
for "every point against every primitive", ``(N, P, 3)`` for "point n, p against primitive p") and
returns ``(d (..., P), grad (..., P, 3))``.

The radial coordinate of round cones and the norm of ellipsoids and superquadrics are smoothed with a
small ``eps`` (``sqrt(q**2 + eps**2)``), so every primitive is C1 everywhere, including on its axis or
at its centre (deep inside, far from the surface); the surface moves by about ``eps**2 / (2 r)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import mcubes
import numpy as np

from .errors import ShapeError

__all__ = [
    "RoundCones", "Ellipsoids", "Superquadrics", "smooth_union", "mesh_implicit",
    "project_to_surface", "sample_mesh", "mesh_signed_volume",
]


def _as_params(name: str, value, shape: tuple[int, ...]) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape != shape or not np.all(np.isfinite(arr)):
        raise ShapeError(f"{name} must be a finite array of shape {shape}, got {arr.shape}")
    return arr


@dataclass(frozen=True, eq=False)
class RoundCones:
    """``P`` round cones: the convex hull of a sphere (``a``, ``r1``) and a sphere (``b``, ``r2``).

    Exact Euclidean distance in the (axial, smoothed radial) half-plane, so 1-Lipschitz and C1 (the
    sphere caps meet the conical side tangentially). Requires ``|r1 - r2| < |b - a|``.

    Attributes:
        a, b: (P, 3) sphere centres, metres.
        r1, r2: (P,) radii, metres.
        eps: radial smoothing length, metres.
    """

    a: np.ndarray
    b: np.ndarray
    r1: np.ndarray
    r2: np.ndarray
    eps: float = 0.004

    def __post_init__(self) -> None:
        a = np.atleast_2d(np.asarray(self.a, dtype=np.float64))
        n = a.shape[0]
        object.__setattr__(self, "a", _as_params("a", a, (n, 3)))
        object.__setattr__(self, "b", _as_params("b", np.atleast_2d(self.b), (n, 3)))
        object.__setattr__(self, "r1", _as_params("r1", np.atleast_1d(self.r1), (n,)))
        object.__setattr__(self, "r2", _as_params("r2", np.atleast_1d(self.r2), (n,)))
        axis = self.b - self.a
        length = np.linalg.norm(axis, axis=1)
        if np.any(self.r1 <= 0) or np.any(self.r2 <= 0):
            raise ShapeError("round cone radii must be > 0")
        if np.any(np.abs(self.r1 - self.r2) >= length):
            raise ShapeError("round cone needs |r1 - r2| < |b - a| (one sphere would contain the other)")
        sin_a = (self.r1 - self.r2) / length
        object.__setattr__(self, "_e", axis / length[:, None])
        object.__setattr__(self, "_len", length)
        object.__setattr__(self, "_sin", sin_a)
        object.__setattr__(self, "_cos", np.sqrt(1.0 - sin_a**2))

    def __len__(self) -> int:
        return self.a.shape[0]

    def evaluate(self, x: np.ndarray, grad: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """Distance ``(..., P)`` and gradient ``(..., P, 3)`` (None unless ``grad``) at ``x``
        broadcastable to ``(..., P, 3)``."""
        e, length, sin_a, cos_a = self._e, self._len, self._sin, self._cos
        p = x - self.a                                           # (..., P, 3)
        h = np.einsum("...pk,pk->...p", p, e)                    # axial coordinate
        qv = p - h[..., None] * e                                # radial vector
        q = np.sqrt(np.einsum("...k,...k->...", qv, qv) + self.eps**2)
        s = h * cos_a - q * sin_a                                # coordinate along the cone's side
        cap1 = s < 0.0
        cap2 = s > length * cos_a
        d = h * sin_a + q * cos_a - self.r1
        n1 = np.sqrt(h**2 + q**2)
        d = np.where(cap1, n1 - self.r1, d)
        h2 = h - length
        n2 = np.sqrt(h2**2 + q**2)
        d = np.where(cap2, n2 - self.r2, d)
        if not grad:
            return d, None
        g = sin_a[:, None] * e + (cos_a / q)[..., None] * qv
        g = np.where(cap1[..., None], (h[..., None] * e + qv) / n1[..., None], g)
        g = np.where(cap2[..., None], (h2[..., None] * e + qv) / n2[..., None], g)
        return d, g


@dataclass(frozen=True, eq=False)
class Ellipsoids:
    """``P`` ellipsoids, ``S = s_min * (|R^T (x - c) / s| - 1)`` (1-Lipschitz, exact on the surface).

    Attributes:
        centre: (P, 3) metres.
        axes: (P, 3, 3) rotation matrices; column j is the direction of semi-axis j.
        semi: (P, 3) semi-axis lengths, metres.
        eps: smoothing of the normalised radius at the centre (dimensionless).
    """

    centre: np.ndarray
    axes: np.ndarray
    semi: np.ndarray
    eps: float = 0.05

    def __post_init__(self) -> None:
        c = np.atleast_2d(np.asarray(self.centre, dtype=np.float64))
        n = c.shape[0]
        object.__setattr__(self, "centre", _as_params("centre", c, (n, 3)))
        axes = np.asarray(self.axes, dtype=np.float64).reshape(n, 3, 3)
        object.__setattr__(self, "axes", _as_params("axes", axes, (n, 3, 3)))
        object.__setattr__(self, "semi", _as_params("semi", np.atleast_2d(self.semi), (n, 3)))
        if np.any(self.semi <= 0):
            raise ShapeError("ellipsoid semi-axes must be > 0")
        if not np.allclose(np.einsum("pji,pjk->pik", axes, axes), np.eye(3), atol=1e-9):
            raise ShapeError("ellipsoid axes must be rotation matrices")
        object.__setattr__(self, "_smin", self.semi.min(axis=1))

    def __len__(self) -> int:
        return self.centre.shape[0]

    def evaluate(self, x: np.ndarray, grad: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """Implicit value ``(..., P)`` and gradient ``(..., P, 3)`` (None unless ``grad``)."""
        local = np.einsum("...pk,pkj->...pj", x - self.centre, self.axes) / self.semi
        n = np.sqrt(np.einsum("...k,...k->...", local, local) + self.eps**2)
        d = self._smin * (n - 1.0)
        if not grad:
            return d, None
        g_local = (self._smin / n)[..., None] * local / self.semi
        return d, np.einsum("pjk,...pk->...pj", self.axes, g_local)


@dataclass(frozen=True, eq=False)
class Superquadrics:
    """``P`` axis-aligned superellipsoids, ``S = s_min * (||(x - c) / s||_p - 1)`` with ``p >= 2``.

    Box-like for large ``p``; 1-Lipschitz because the p-norm's gradient has Euclidean length <= 1.

    Attributes:
        centre: (P, 3) metres.
        semi: (P, 3) half extents, metres.
        exponent: (P,) the norm's ``p`` (>= 2).
        eps: smoothing of the normalised norm at the centre (dimensionless).
    """

    centre: np.ndarray
    semi: np.ndarray
    exponent: np.ndarray
    eps: float = 0.05

    def __post_init__(self) -> None:
        c = np.atleast_2d(np.asarray(self.centre, dtype=np.float64))
        n = c.shape[0]
        object.__setattr__(self, "centre", _as_params("centre", c, (n, 3)))
        object.__setattr__(self, "semi", _as_params("semi", np.atleast_2d(self.semi), (n, 3)))
        object.__setattr__(self, "exponent", _as_params("exponent", np.atleast_1d(self.exponent), (n,)))
        if np.any(self.semi <= 0):
            raise ShapeError("superquadric semi-axes must be > 0")
        if np.any(self.exponent < 2.0):
            raise ShapeError("superquadric exponent must be >= 2")
        object.__setattr__(self, "_smin", self.semi.min(axis=1))

    def __len__(self) -> int:
        return self.centre.shape[0]

    def evaluate(self, x: np.ndarray, grad: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """Implicit value ``(..., P)`` and gradient ``(..., P, 3)`` (None unless ``grad``)."""
        v = (x - self.centre) / self.semi
        p = self.exponent[:, None]
        av = np.abs(v)
        total = np.sum(av**p, axis=-1) + self.eps ** self.exponent
        norm = total ** (1.0 / self.exponent)
        d = self._smin * (norm - 1.0)
        if not grad:
            return d, None
        dn_dv = np.sign(v) * av ** (p - 1.0) * (norm ** (1.0 - self.exponent))[..., None]
        return d, (self._smin[:, None] * dn_dv) / self.semi


def smooth_union(d: np.ndarray, g: np.ndarray | None, k: float) -> tuple[np.ndarray, np.ndarray | None]:
    """Exponential smooth minimum ``-k log sum_p exp(-d_p / k)`` of ``P`` implicit functions.

    C-infinity, associative, at most ``min_p d_p`` and at least ``min_p d_p - k log P``; its gradient is
    a convex combination of the inputs' gradients, so it stays 1-Lipschitz.

    Args:
        d: (..., P) values; g: (..., P, 3) gradients or None; k: blend length, metres.

    Returns:
        (S (...), grad S (..., 3) or None when ``g`` is None).
    """
    m = d.min(axis=-1)
    w = np.exp(-(d - m[..., None]) / k)
    total = w.sum(axis=-1)
    s = m - k * np.log(total)
    if g is None:
        return s, None
    w /= total[..., None]
    return s, np.einsum("...p,...pk->...k", w, g)


def project_to_surface(field: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], x: np.ndarray,
                       *, iterations: int = 8, tol: float = 1e-11) -> tuple[np.ndarray, np.ndarray]:
    """Move points onto ``S = 0`` with Newton steps along the gradient, ``x -= S grad / |grad|^2``.

    Args:
        field: ``field(x (M, 3)) -> (S (M,), grad (M, 3))``.
        x: (M, 3) float64 starting points near the surface (e.g. mesh vertices), metres.
        iterations: the most steps; points already below ``tol`` stop moving.

    Returns:
        (points (M, 3) float64, |S| at them (M,)).
    """
    x = np.array(x, dtype=np.float64, copy=True)
    active = np.arange(len(x))
    resid = np.full(len(x), np.inf)
    for _ in range(iterations + 1):
        if active.size == 0:
            break
        s, g = field(x[active])
        resid[active] = np.abs(s)
        keep = np.abs(s) > tol
        active, s, g = active[keep], s[keep], g[keep]
        if active.size == 0:
            break
        gg = np.maximum(np.einsum("ij,ij->i", g, g), 1e-12)
        x[active] -= (s / gg)[:, None] * g
    return x, resid


def mesh_implicit(field: Callable[[np.ndarray], np.ndarray], lo, hi, voxel: float, *,
                  coarse_stride: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Triangle mesh of ``{S = 0}`` for a 1-Lipschitz ``S`` by narrow-band marching cubes (PyMCubes).

    Coarse to fine: ``S`` is evaluated on a grid of spacing ``coarse_stride * voxel``; a cell whose
    corners share one sign and all have ``|S|`` above half the cell diagonal cannot contain the surface
    (every point of the cell is within half a diagonal of a corner), so only the nodes of the other
    cells are evaluated at the next, twice finer level, and so on down to ``voxel``. Nodes of cells
    ruled out inherit a corner value of the right sign. The result equals dense marching cubes on the
    fine grid, for a fraction of the evaluations.

    Args:
        field: ``field(x (M, 3) float64) -> S (M,)``.
        lo, hi: (3,) corners of the box, metres; the surface must lie strictly inside.
        voxel: fine grid spacing, metres.
        coarse_stride: spacing of the first grid in voxels, a power of two.

    Returns:
        (vertices (V, 3) float64 metres, faces (F, 3) int64), outward (counter-clockwise) orientation.

    Raises:
        ShapeError: bad box, voxel or stride, or the surface touches the box.
    """
    lo = np.asarray(lo, dtype=np.float64)
    hi = np.asarray(hi, dtype=np.float64)
    if not (voxel > 0 and np.all(hi > lo)):
        raise ShapeError(f"mesh_implicit needs voxel > 0 and hi > lo, got voxel={voxel}")
    if coarse_stride < 1 or coarse_stride & (coarse_stride - 1):
        raise ShapeError(f"mesh_implicit coarse_stride must be a power of two, got {coarse_stride}")
    cells = np.maximum(np.ceil((hi - lo) / (voxel * coarse_stride)).astype(int), 1)
    stride = coarse_stride
    shape = cells + 1
    grid = np.stack(np.meshgrid(*[np.arange(k) for k in shape], indexing="ij"), axis=-1).reshape(-1, 3)
    values = field(lo + grid * (stride * voxel)).reshape(shape)
    near = _near_cells(values, stride * voxel)
    while stride > 1:
        stride //= 2
        shape = 2 * (shape - 1) + 1
        fine = values.repeat(2, 0).repeat(2, 1).repeat(2, 2)[:shape[0], :shape[1], :shape[2]]
        # nodes of near coarse cells (closed cells: faces and corners included)
        cell_fine = near.repeat(2, 0).repeat(2, 1).repeat(2, 2)
        padded = np.pad(cell_fine, 1)
        todo = np.zeros(tuple(shape), dtype=bool)
        for i in (0, 1):
            for j in (0, 1):
                for k in (0, 1):
                    todo |= padded[i:i + shape[0], j:j + shape[1], k:k + shape[2]]
        todo[::2, ::2, ::2] = False                     # already exact
        idx = np.nonzero(todo)
        if idx[0].size:
            fine[idx] = field(lo + np.stack(idx, axis=-1) * (stride * voxel))
        values = fine
        near = _near_cells(values, stride * voxel) & cell_fine
    boundary = np.concatenate([values[[0, -1]].ravel(), values[:, [0, -1]].ravel(),
                               values[:, :, [0, -1]].ravel()])
    if np.any(boundary <= 0):
        raise ShapeError("mesh_implicit: the surface reaches the box boundary; enlarge lo/hi")
    # PyMCubes orients triangles outward for "inside = value above the iso-level": feed -S.
    verts, faces = mcubes.marching_cubes(-values, 0.0)
    verts = lo + verts * voxel
    faces = np.asarray(faces, dtype=np.int64)
    if len(faces) and mesh_signed_volume(verts, faces) < 0:
        faces = faces[:, ::-1].copy()
    return verts, faces


def _near_cells(values: np.ndarray, spacing: float) -> np.ndarray:
    """Cells (shape - 1 per axis) that may contain the zero set of a 1-Lipschitz field."""
    nx, ny, nz = (k - 1 for k in values.shape)
    corners = np.stack([values[i:i + nx, j:j + ny, k:k + nz]
                        for i in (0, 1) for j in (0, 1) for k in (0, 1)])
    half_diag = 0.5 * spacing * np.sqrt(3.0)
    same_sign = np.all(corners > 0, axis=0) | np.all(corners < 0, axis=0)
    return ~(same_sign & np.all(np.abs(corners) > half_diag, axis=0))


def mesh_signed_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    """Signed volume of a closed triangle mesh (divergence theorem); positive when oriented outward."""
    tri = vertices[faces]
    return float(np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() / 6.0)


def sample_mesh(vertices: np.ndarray, faces: np.ndarray, n: int, rng: np.random.Generator
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` points uniformly distributed by area over a triangle mesh.

    Returns:
        (points (n, 3) float64, face index (n,) int64, barycentric weights (n, 3)).
    """
    tri = vertices[faces]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    cdf = np.cumsum(area)
    face = np.minimum(np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right"), len(faces) - 1)
    r1 = np.sqrt(rng.random(n))
    r2 = rng.random(n)
    bary = np.stack([1.0 - r1, r1 * (1.0 - r2), r1 * r2], axis=1)
    pts = np.einsum("nk,nkj->nj", bary, tri[face])
    return pts, face.astype(np.int64), bary
