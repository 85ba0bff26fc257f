"""Persistent vertex ids across keyframes: a new mesh inherits ids and canonical positions from the old."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from ..geometry.queries import closest_surface_points

__all__ = ["IdAssignment", "inherit_ids"]


@dataclass
class IdAssignment:
    """Ids and canonical positions of a new keyframe mesh's vertices.

    ids: (V,) uint32; canonical: (V, 3) float32 metres; next_id: the first id not yet used;
    inherited: how many vertices kept an old id.
    """

    ids: np.ndarray
    canonical: np.ndarray
    next_id: int
    inherited: int


def inherit_ids(new_vertices: np.ndarray, old_vertices: np.ndarray, old_faces: np.ndarray,
                old_ids: np.ndarray, old_canonical: np.ndarray, next_id: int,
                match_distance: float, neighbours: int = 8) -> IdAssignment:
    """Give a new keyframe mesh the identities of the tracked mesh it replaces.

    new_vertices: (V, 3) the new mesh, metres. old_*: the tracked mesh at the same instant (its
    vertices (U, 3) metres, faces (F, 3), ids (U,), canonical (U, 3)).
    Ids: one-to-one, nearest pairs first — a new vertex takes the id of a tracked vertex within
    ``match_distance`` unless a nearer new vertex took it; the rest get fresh ids from next_id.
    Canonical positions: an inherited id brings its canonical position; a fresh vertex gets the
    canonical position of the closest point of the old surface (barycentric interpolation on its
    triangle) when that point is within 3 * match_distance, so colours and canonical coordinates
    stay continuous across keyframes; otherwise (really new surface) its own position.
    """
    new_vertices = np.asarray(new_vertices, np.float64)
    v = len(new_vertices)
    ids = np.zeros(v, np.int64)
    canonical = np.zeros((v, 3), np.float32)
    taken_new = np.zeros(v, bool)
    if len(old_vertices) and v:
        tree = cKDTree(np.asarray(old_vertices, np.float64))
        k = min(neighbours, len(old_vertices))
        dist, idx = tree.query(new_vertices, k=k, distance_upper_bound=match_distance)
        dist, idx = dist.reshape(v, k), idx.reshape(v, k)
        ok = np.isfinite(dist)
        rows = np.nonzero(ok)[0]
        cand_d, cand_old = dist[ok], idx[ok]
        order = np.argsort(cand_d, kind="stable")
        taken_old = np.zeros(len(old_vertices), bool)
        for i_new, j_old in zip(rows[order].tolist(), cand_old[order].tolist()):
            if taken_new[i_new] or taken_old[j_old]:
                continue
            taken_new[i_new] = True
            taken_old[j_old] = True
            ids[i_new] = old_ids[j_old]
            canonical[i_new] = old_canonical[j_old]
    fresh = np.nonzero(~taken_new)[0]
    ids[fresh] = np.arange(next_id, next_id + len(fresh))
    canonical[fresh] = new_vertices[fresh]
    if len(fresh) and len(old_faces):
        dist, tri, bary = closest_surface_points(old_vertices, old_faces, new_vertices[fresh])
        near = dist <= 3.0 * match_distance
        corners = np.asarray(old_faces, np.int64)[tri[near]]  # (Q, 3)
        interp = np.einsum("qk,qkd->qd", bary[near], np.asarray(old_canonical, np.float64)[corners])
        canonical[fresh[near]] = interp
    if next_id + len(fresh) > np.iinfo(np.uint32).max:
        raise OverflowError("vertex ids exhausted the uint32 range")
    return IdAssignment(ids.astype(np.uint32), canonical, next_id + len(fresh),
                        int(taken_new.sum()))
