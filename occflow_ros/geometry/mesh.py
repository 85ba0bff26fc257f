"""Triangle-mesh utilities on plain arrays: cleanup and simplification (open3d inside), measures.

Every function takes ``vertices`` (V, 3) float and ``faces`` (F, 3) integer vertex indices and gives
back numpy arrays: vertices float32 when given float32 (else float64), faces int64. Units are
whatever the vertices are in (normalised or metres); areas and volumes are in those units squared
and cubed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import MeshError

__all__ = ["clean_mesh", "simplify_mesh", "mesh_area", "mesh_volume", "is_watertight"]


def clean_mesh(vertices: Any, faces: Any, *, largest_component_only: bool = False
               ) -> tuple[np.ndarray, np.ndarray]:
    """Remove degenerate and duplicated triangles, merge duplicated vertices, drop unreferenced ones.

    Args:
        vertices: (V, 3) float.
        faces: (F, 3) int.
        largest_component_only: keep only the connected component (triangles connected through
            shared edges) with the most triangles; drops floating debris around an object.

    Returns:
        (vertices (V', 3), faces (F', 3) int64); face orientation is kept.
    """
    v, f, dtype = _check(vertices, faces)
    if len(f) == 0:
        return np.zeros((0, 3), dtype), np.zeros((0, 3), np.int64)
    mesh = _to_o3d(v, f)
    mesh.remove_duplicated_vertices()
    mesh.remove_degenerate_triangles()
    mesh.remove_duplicated_triangles()
    if largest_component_only:
        clusters, counts, _ = mesh.cluster_connected_triangles()
        clusters = np.asarray(clusters)
        counts = np.asarray(counts)
        if len(counts) > 1:
            mesh.remove_triangles_by_mask(clusters != int(np.argmax(counts)))
    mesh.remove_unreferenced_vertices()
    return _from_o3d(mesh, dtype)


def simplify_mesh(vertices: Any, faces: Any, *, target_vertices: int | None = None,
                  target_faces: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Quadric-error decimation (open3d) down to a target size, then :func:`clean_mesh`.

    Give exactly one target. ``target_faces`` is passed to open3d as is. ``target_vertices`` is
    turned into a face target with the mesh's own face/vertex ratio (F ~ 2V for a closed mesh, by
    Euler's formula), so the result has roughly that many vertices. A target at or above the current
    size returns the cleaned mesh unchanged.

    Raises:
        MeshError: no target or both targets given, or a target < 4.
    """
    if (target_vertices is None) == (target_faces is None):
        raise MeshError("give exactly one of target_vertices and target_faces")
    target = target_vertices if target_vertices is not None else target_faces
    name = "target_vertices" if target_vertices is not None else "target_faces"
    if isinstance(target, bool) or not isinstance(target, (int, np.integer)) or target < 4:
        raise MeshError(f"{name} must be an integer >= 4, got {target!r}")
    v, f = clean_mesh(vertices, faces)
    if len(f) == 0:
        return v, f
    if target_vertices is not None:
        if target_vertices >= len(v):
            return v, f
        target_faces = int(round(target_vertices * len(f) / len(v)))
    if target_faces >= len(f):
        return v, f
    dtype = v.dtype
    mesh = _to_o3d(v, f).simplify_quadric_decimation(target_number_of_triangles=int(target_faces))
    v2, f2 = _from_o3d(mesh, dtype)
    return clean_mesh(v2, f2)


def mesh_area(vertices: Any, faces: Any) -> float:
    """Total surface area (units^2), float64 arithmetic."""
    v, f, _ = _check(vertices, faces)
    if len(f) == 0:
        return 0.0
    v = v.astype(np.float64)
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    return float(0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1).sum())


def mesh_volume(vertices: Any, faces: Any) -> float:
    """Signed enclosed volume (units^3) by the divergence theorem: sum of a.(b x c) / 6.

    Positive when the faces are counter-clockwise seen from outside (outward normals); exact for a
    closed mesh and independent of the origin only then.
    """
    v, f, _ = _check(vertices, faces)
    if len(f) == 0:
        return 0.0
    v = v.astype(np.float64)
    # centre on the mean vertex: the same value for a closed mesh, less cancellation far from 0
    v = v - v.mean(axis=0)
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


def is_watertight(vertices: Any, faces: Any) -> bool:
    """True when every (undirected) edge is shared by exactly two faces; False for an empty mesh."""
    _, f, _ = _check(vertices, faces)
    if len(f) == 0:
        return False
    edges = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    edges.sort(axis=1)
    keys = np.sort(edges[:, 0] * (int(f.max()) + 1) + edges[:, 1])  # one int64 per undirected edge
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    counts = np.diff(np.r_[starts, len(keys)])
    return bool(np.all(counts == 2))


# ---- internals -----------------------------------------------------------------------------------
def _check(vertices: Any, faces: Any) -> tuple[np.ndarray, np.ndarray, np.dtype]:
    v = np.asarray(vertices)
    f = np.asarray(faces)
    if v.ndim != 2 or v.shape[1] != 3 or not np.issubdtype(v.dtype, np.floating):
        raise MeshError(f"vertices must be (V, 3) float, got shape {v.shape} dtype {v.dtype}")
    if f.size == 0:
        f = f.reshape(0, 3)
    if f.ndim != 2 or f.shape[1] != 3 or not np.issubdtype(f.dtype, np.integer):
        raise MeshError(f"faces must be (F, 3) integer, got shape {f.shape} dtype {f.dtype}")
    f = f.astype(np.int64, copy=False)
    if len(f) and (f.min() < 0 or f.max() >= len(v)):
        raise MeshError(f"face indices must lie in [0, {len(v)}), got [{f.min()}, {f.max()}]")
    dtype = np.dtype(np.float32) if v.dtype == np.float32 else np.dtype(np.float64)
    return v, f, dtype


def _to_o3d(v: np.ndarray, f: np.ndarray):
    import open3d as o3d

    return o3d.geometry.TriangleMesh(
        o3d.utility.Vector3dVector(np.ascontiguousarray(v, dtype=np.float64)),
        o3d.utility.Vector3iVector(np.ascontiguousarray(f, dtype=np.int32)))


def _from_o3d(mesh, dtype) -> tuple[np.ndarray, np.ndarray]:
    v = np.asarray(mesh.vertices, dtype=np.float64).reshape(-1, 3).astype(dtype)
    f = np.asarray(mesh.triangles, dtype=np.int64).reshape(-1, 3)
    return v, f
