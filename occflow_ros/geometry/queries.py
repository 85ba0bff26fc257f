"""Queries against a triangle mesh through one open3d ray-casting scene: the closest surface point
to each query point, and which vertices a camera at the origin sees."""

from __future__ import annotations

import numpy as np

from .errors import GeometryError

__all__ = ["MeshScene", "closest_surface_points", "vertex_normals"]


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals (V, 3) of a triangle mesh (outward for a marching-cubes
    mesh of an occupancy field); a vertex on no face gets (0, 0, 0)."""
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    n = np.zeros_like(v)
    if len(f):
        face_n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
        index = f.T.ravel()  # every face's normal to each of its three corners
        for c in range(3):
            n[:, c] = np.bincount(index, np.tile(face_n[:, c], 3), minlength=len(v))
    length = np.linalg.norm(n, axis=1, keepdims=True)
    return np.where(length > 0, n / np.maximum(length, 1e-300), 0.0)


class MeshScene:
    """One mesh (vertices (V, 3), faces (F, 3)) ready for queries; building it costs about a
    millisecond for a few thousand triangles. Raises GeometryError on an empty or non-finite
    mesh."""

    def __init__(self, vertices: np.ndarray, faces: np.ndarray) -> None:
        import open3d as o3d

        self.vertices = np.ascontiguousarray(vertices, np.float32)
        self.faces = np.ascontiguousarray(faces, np.uint32).reshape(-1, 3)
        v = self.vertices
        if v.ndim != 2 or v.shape[1] != 3 or not len(v) or not np.isfinite(v).all() \
                or not len(self.faces):
            raise GeometryError("MeshScene: a finite mesh with vertices and faces is needed")
        self._o3d = o3d
        self.scene = o3d.t.geometry.RaycastingScene()
        self.scene.add_triangles(o3d.core.Tensor(v), o3d.core.Tensor(self.faces))

    def closest_points(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For each query (Q, 3), the closest point on the mesh: (distance (Q,), triangle index (Q,)
        int64, barycentric weights (Q, 3) of that triangle's three corners)."""
        q = np.ascontiguousarray(queries, np.float32)
        result = self.scene.compute_closest_points(self._o3d.core.Tensor(q))
        points = result["points"].numpy()
        tri = result["primitive_ids"].numpy().astype(np.int64)
        uv = result["primitive_uvs"].numpy().astype(np.float64)
        bary = np.stack([1.0 - uv[:, 0] - uv[:, 1], uv[:, 0], uv[:, 1]], axis=1)
        return np.linalg.norm(points - q, axis=1), tri, bary

    def visible(self, subset: np.ndarray | None = None, *, tolerance: float = 1e-3) -> np.ndarray:
        """Indices of the vertices (among ``subset``, default all) a camera at the origin sees: the
        vertex's outward normal faces the camera, and the ray from the camera to it meets no
        surface more than ``tolerance`` (relative to its distance) before it. The mesh is in the
        camera's frame; the camera may look along any axis."""
        index = np.arange(len(self.vertices)) if subset is None else np.asarray(subset)
        v = self.vertices[index]
        normals = vertex_normals(self.vertices, self.faces)[index]
        distance = np.linalg.norm(v, axis=1)
        facing = ((-v * normals).sum(1) > 0) & (distance > 0)
        index, v, distance = index[facing], v[facing], distance[facing]
        if not len(index):
            return index
        rays = np.concatenate([np.zeros_like(v), v / distance[:, None]], 1).astype(np.float32)
        hit = self.scene.cast_rays(self._o3d.core.Tensor(rays))["t_hit"].numpy()
        return index[hit >= distance * (1.0 - tolerance)]


def closest_surface_points(vertices: np.ndarray, faces: np.ndarray, queries: np.ndarray
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each query (Q, 3), the closest point on the triangle mesh: (distance (Q,), triangle
    index (Q,) int64, barycentric weights (Q, 3)); see ``MeshScene.closest_points``."""
    return MeshScene(vertices, faces).closest_points(queries)
