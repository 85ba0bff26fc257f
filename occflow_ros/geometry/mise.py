"""Multiresolution IsoSurface Extraction (MISE) and marching cubes, in the model's normalised space.

The field is any callable ``field(points) -> values`` with ``points`` (M, 3) float32 normalised
coordinates and ``values`` (M,) numbers (numpy, or anything with ``.detach().cpu().numpy()`` such as
a torch tensor); the inside of the shape is where ``value > threshold``. A model's occupancy logits
fit directly with ``threshold=0.0`` (probability 0.5); use ``threshold=logit(p)`` for another
probability.

The grid covers the cube ``[-box_size/2, box_size/2]^3`` with ``R = resolution0 * 2**upsampling_steps``
cells per axis, i.e. ``(R + 1)^3`` corner points; grid index ``i`` sits at ``-box_size/2 + i * box_size/R``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .errors import MeshingError

__all__ = ["MeshResult", "extract_mesh", "extract_mesh_dense", "marching_cubes", "logit"]

Field = Callable[[np.ndarray], Any]


@dataclass
class MeshResult:
    """A triangle mesh from iso-surface extraction, in normalised coordinates.

    Attributes:
        vertices: (V, 3) float32, normalised space (``Normalization.to_metres`` gives metres).
        faces: (F, 3) int64 vertex indices, counter-clockwise seen from outside (outward normals,
            positive signed volume).
        n_queries: how many points the field was evaluated at.
        resolution: cells per axis of the final grid.
        box_size: edge of the cube the grid covers, normalised units.
    An extraction that finds no surface gives V = F = 0, not an error.
    """

    vertices: np.ndarray
    faces: np.ndarray
    n_queries: int
    resolution: int
    box_size: float

    @property
    def dense_queries(self) -> int:
        """Field evaluations a dense grid at the same resolution would need: (R + 1)^3."""
        return (self.resolution + 1) ** 3

    @property
    def query_ratio(self) -> float:
        """n_queries / dense_queries."""
        return self.n_queries / self.dense_queries

    @property
    def is_empty(self) -> bool:
        return len(self.faces) == 0


def logit(p: float) -> float:
    """The logit threshold equivalent to occupancy probability ``p`` in (0, 1): log(p / (1 - p))."""
    p = float(p)
    if not 0.0 < p < 1.0:
        raise MeshingError(f"probability threshold must be in (0, 1), got {p}")
    return math.log(p / (1.0 - p))


# ---- public entry points -------------------------------------------------------------------------
def extract_mesh(field: Field, *, threshold: float = 0.0, resolution0: int = 32,
                 upsampling_steps: int = 2, box_size: float = 1.1,
                 max_batch: int = 100_000) -> MeshResult:
    """Mesh the surface ``field == threshold`` with MISE, then marching cubes (PyMCubes).

    1. Evaluate the coarse grid (``resolution0`` cells per axis) everywhere.
    2. At each level, the *active* cells are those whose 8 corners do not all lie on the same side
       (inside is ``value > threshold``), dilated by one cell in all 26 directions so that surface
       crossing a cell face without flipping any corner of that cell is still caught. Active cells
       are split in 8; the new corner points are evaluated; every other point of the finer grid
       inherits the trilinear interpolation of its coarse cell's corners, which all lie on one side,
       so the inherited value has the right side.
    3. Closure, at every level: a cell whose corners straddle the threshold but include an inherited
       (not evaluated) point gets its missing corners evaluated, until no such cell remains. So every
       cell that marching cubes turns into triangles has exactly evaluated corners.

    For fields whose features are larger than a coarse cell (no surface piece hides inside one
    coarse cell), the result is the same mesh - identical faces, identical vertices - as marching
    cubes on the dense grid (:func:`extract_mesh_dense`) at the final resolution, for a fraction of
    the field evaluations. Smaller features may be missed, as with any MISE.

    Args:
        field: ``field(points (M, 3) float32 normalised) -> (M,) values``, called with
            M <= ``max_batch``; must return finite values.
        threshold: iso-value; inside is ``value > threshold``. 0.0 for logits at probability 0.5.
        resolution0: cells per axis of the coarse grid, >= 1.
        upsampling_steps: number of refinements, >= 0; final resolution ``resolution0 * 2**steps``.
        box_size: edge of the cube ``[-box_size/2, box_size/2]^3`` (1 + padding), > 0.
        max_batch: largest number of points per field call, >= 1.

    Returns:
        MeshResult with vertices (V, 3) float32 normalised and faces (F, 3) int64, outward oriented.

    Raises:
        MeshingError: invalid parameters, or the field returned the wrong number of values or
            non-finite values.
    """
    resolution0, upsampling_steps, box_size, max_batch, threshold = _check_params(
        resolution0, upsampling_steps, box_size, max_batch, threshold)
    resolution = resolution0 * 2 ** upsampling_steps
    evaluator = _Evaluator(field, resolution, box_size, max_batch)

    # level 0: the whole coarse grid, exactly
    n = resolution0
    values = evaluator.dense(n).reshape(n + 1, n + 1, n + 1)
    exact = np.ones(values.shape, dtype=bool)
    stride = 2 ** upsampling_steps  # final-grid indices per step of the current level

    for _ in range(upsampling_steps):
        _close(values, exact, threshold, evaluator, stride)
        active = _dilate26(_sign_change_cells(values > threshold))
        # one level finer
        values = _upsample_trilinear(values)
        exact_fine = np.zeros(values.shape, dtype=bool)
        exact_fine[::2, ::2, ::2] = exact
        exact = exact_fine
        stride //= 2
        n *= 2
        children = active.repeat(2, axis=0).repeat(2, axis=1).repeat(2, axis=2)
        _evaluate_into(values, exact, _cell_corners(children) & ~exact, evaluator, stride)

    _close(values, exact, threshold, evaluator, stride)
    vertices, faces = marching_cubes(values, threshold, box_size)
    return MeshResult(vertices, faces, evaluator.n_queries, resolution, box_size)


def extract_mesh_dense(field: Field, threshold: float = 0.0, resolution: int = 128,
                       box_size: float = 1.1, max_batch: int = 100_000) -> MeshResult:
    """Reference extraction: evaluate every one of the (R + 1)^3 grid points, then marching cubes.

    Same grid, same point coordinates and same conventions as :func:`extract_mesh` with
    ``resolution0 * 2**upsampling_steps == resolution``.
    """
    resolution, _, box_size, max_batch, threshold = _check_params(
        resolution, 0, box_size, max_batch, threshold)
    evaluator = _Evaluator(field, resolution, box_size, max_batch)
    values = evaluator.dense(resolution).reshape((resolution + 1,) * 3)
    vertices, faces = marching_cubes(values, threshold, box_size)
    return MeshResult(vertices, faces, evaluator.n_queries, resolution, box_size)


def marching_cubes(values: np.ndarray, threshold: float = 0.0,
                   box_size: float = 1.1) -> tuple[np.ndarray, np.ndarray]:
    """PyMCubes on a (R+1, R+1, R+1) grid of values covering ``[-box_size/2, box_size/2]^3``.

    Inside is ``value > threshold`` (a value equal to the threshold counts as outside, as in
    PyMCubes). PyMCubes orients faces counter-clockwise seen from the side of *lower* values, so
    with the inside holding the higher values its faces already point outward; nothing is flipped.

    The mesh is always closed: where the inside reaches the faces of the box, the grid is padded
    with one layer of outside values, so the surface is capped one cell beyond the box instead of
    being left open (a watertight mesh whatever the field does at the border).

    Returns:
        vertices (V, 3) float32 normalised, faces (F, 3) int64.
    """
    import mcubes

    values = np.ascontiguousarray(values, dtype=np.float64)
    if values.ndim != 3 or len(set(values.shape)) != 1 or values.shape[0] < 2:
        raise MeshingError(f"values must be a cubic (R+1)^3 grid with R >= 1, got {values.shape}")
    resolution = values.shape[0] - 1
    offset = 0
    if _inside_on_border(values, threshold):
        values = np.pad(values, 1, mode="constant", constant_values=float(threshold) - 1.0)
        offset = 1
    verts, tris = mcubes.marching_cubes(values, float(threshold))
    verts = np.asarray(verts, dtype=np.float64).reshape(-1, 3) - offset
    faces = np.asarray(tris, dtype=np.int64).reshape(-1, 3)
    # grid index -> normalised coordinates, the same formula as the field's query points
    vertices = (verts * (box_size / resolution) - box_size / 2.0).astype(np.float32)
    return vertices, faces


def _inside_on_border(values: np.ndarray, threshold: float) -> bool:
    """Whether any point on the grid's outer faces is inside (value > threshold)."""
    return any(bool((face > threshold).any()) for face in (
        values[0], values[-1], values[:, 0], values[:, -1], values[:, :, 0], values[:, :, -1]))


# ---- internals -----------------------------------------------------------------------------------
def _check_params(resolution0, upsampling_steps, box_size, max_batch, threshold):
    def _int(name, v, lo):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            raise MeshingError(f"{name} must be an integer >= {lo}, got {v!r}")
        return int(v)

    resolution0 = _int("resolution0", resolution0, 1)
    upsampling_steps = _int("upsampling_steps", upsampling_steps, 0)
    max_batch = _int("max_batch", max_batch, 1)
    box_size = float(box_size)
    if not math.isfinite(box_size) or box_size <= 0.0:
        raise MeshingError(f"box_size must be finite and > 0, got {box_size}")
    threshold = float(threshold)
    if not math.isfinite(threshold):
        raise MeshingError(f"threshold must be finite, got {threshold}")
    if resolution0 * 2 ** upsampling_steps > 2048:
        raise MeshingError(f"final resolution {resolution0 * 2 ** upsampling_steps} > 2048 cells per axis")
    return resolution0, upsampling_steps, box_size, max_batch, threshold


class _Evaluator:
    """Calls the field in batches on final-grid indices and counts the evaluations."""

    def __init__(self, field: Field, resolution: int, box_size: float, max_batch: int):
        if not callable(field):
            raise MeshingError(f"field must be callable, got {type(field).__name__}")
        self.field = field
        self.resolution = resolution
        self.step = box_size / resolution
        self.half = box_size / 2.0
        self.max_batch = max_batch
        self.n_queries = 0

    def points(self, idx: np.ndarray) -> np.ndarray:
        """(M, 3) final-grid indices -> (M, 3) float32 normalised coordinates."""
        return (idx * self.step - self.half).astype(np.float32)

    def __call__(self, idx: np.ndarray) -> np.ndarray:
        """(M, 3) int final-grid indices -> (M,) float64 values."""
        out = np.empty(len(idx), dtype=np.float64)
        for start in range(0, len(idx), self.max_batch):
            chunk = idx[start:start + self.max_batch]
            out[start:start + len(chunk)] = self._call(self.points(chunk))
        self.n_queries += len(idx)
        return out

    def dense(self, n: int) -> np.ndarray:
        """All (n+1)^3 points of a level with n cells per axis, C order; values (n+1)^3 float64."""
        stride = self.resolution // n
        total = (n + 1) ** 3
        out = np.empty(total, dtype=np.float64)
        for start in range(0, total, self.max_batch):
            lin = np.arange(start, min(start + self.max_batch, total))
            idx = np.stack(np.unravel_index(lin, (n + 1,) * 3), axis=1) * stride
            out[start:start + len(lin)] = self._call(self.points(idx))
        self.n_queries += total
        return out

    def _call(self, pts: np.ndarray) -> np.ndarray:
        vals = self.field(pts)
        if hasattr(vals, "detach"):  # a torch tensor, without importing torch here
            vals = vals.detach().cpu().numpy()
        vals = np.asarray(vals, dtype=np.float64)
        if vals.size != len(pts) or (vals.ndim > 1 and vals.shape[0] != len(pts)):
            raise MeshingError(f"field returned shape {vals.shape} for {len(pts)} points; "
                               f"expected ({len(pts)},)")
        vals = vals.reshape(-1)
        if not np.all(np.isfinite(vals)):
            bad = int(np.count_nonzero(~np.isfinite(vals)))
            raise MeshingError(f"field returned {bad} non-finite values out of {len(pts)}")
        return vals


def _evaluate_into(values, exact, mask, evaluator, stride) -> None:
    """Evaluate the points of ``mask`` (indices of the current level) and mark them exact."""
    idx = np.argwhere(mask)
    if len(idx) == 0:
        return
    values[tuple(idx.T)] = evaluator(idx * stride)
    exact[tuple(idx.T)] = True


def _close(values, exact, threshold, evaluator, stride) -> None:
    """Evaluate inherited corners of straddling cells until every straddling cell is exact."""
    while True:
        need = _sign_change_cells(values > threshold) & _cell_any(~exact)
        if not need.any():
            return
        _evaluate_into(values, exact, _cell_corners(need) & ~exact, evaluator, stride)


def _cell_any(b: np.ndarray) -> np.ndarray:
    """(n+1)^3 point flags -> n^3 cell flags: any of the 8 corners."""
    b = b[:-1] | b[1:]
    b = b[:, :-1] | b[:, 1:]
    return b[:, :, :-1] | b[:, :, 1:]


def _cell_all(b: np.ndarray) -> np.ndarray:
    """(n+1)^3 point flags -> n^3 cell flags: all of the 8 corners."""
    b = b[:-1] & b[1:]
    b = b[:, :-1] & b[:, 1:]
    return b[:, :, :-1] & b[:, :, 1:]


def _sign_change_cells(inside: np.ndarray) -> np.ndarray:
    """Cells with corners on both sides of the threshold: exactly those marching cubes meshes."""
    return _cell_any(inside) & ~_cell_all(inside)


def _cell_corners(cells: np.ndarray) -> np.ndarray:
    """n^3 cell flags -> (n+1)^3 point flags: the corners of the flagged cells."""
    n0, n1, n2 = cells.shape
    a = np.zeros((n0 + 1, n1, n2), dtype=bool)
    a[:-1] |= cells
    a[1:] |= cells
    b = np.zeros((n0 + 1, n1 + 1, n2), dtype=bool)
    b[:, :-1] |= a
    b[:, 1:] |= a
    c = np.zeros((n0 + 1, n1 + 1, n2 + 1), dtype=bool)
    c[:, :, :-1] |= b
    c[:, :, 1:] |= b
    return c


def _dilate26(cells: np.ndarray) -> np.ndarray:
    """Dilate cell flags by one cell in all 26 directions (a separable 3x3x3 box)."""
    out = cells.copy()
    out[1:] |= cells[:-1]
    out[:-1] |= cells[1:]
    tmp = out.copy()
    out[:, 1:] |= tmp[:, :-1]
    out[:, :-1] |= tmp[:, 1:]
    tmp = out.copy()
    out[:, :, 1:] |= tmp[:, :, :-1]
    out[:, :, :-1] |= tmp[:, :, 1:]
    return out


def _upsample_trilinear(v: np.ndarray) -> np.ndarray:
    """(n+1)^3 -> (2n+1)^3: coarse points copied, new points the trilinear mean of their cell.

    Every new point is the mean of coarse points of one cell (an edge, face or the cell itself);
    when those all lie on one side of the threshold, so does the mean (also in floating point).
    """
    n = v.shape[0] - 1
    out = np.empty((2 * n + 1,) * 3, dtype=v.dtype)
    out[::2, ::2, ::2] = v
    out[1::2, ::2, ::2] = 0.5 * (out[:-1:2, ::2, ::2] + out[2::2, ::2, ::2])
    out[:, 1::2, ::2] = 0.5 * (out[:, :-1:2, ::2] + out[:, 2::2, ::2])
    out[:, :, 1::2] = 0.5 * (out[:, :, :-1:2] + out[:, :, 2::2])
    return out
