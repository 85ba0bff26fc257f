"""Score a stream of tracked meshes against per-frame ground truth, keyframe by keyframe.

Ground truth for a frame is a dense set of surface points whose rows are the same material points in
every frame (the correspondences): synthetic trajectories, D-FAUST registrations, or a ground-truth
topic in a bag. At each keyframe the new mesh's vertices are matched to their nearest truth points
(the paper's definition); until the next keyframe the error is how far each vertex is from where its
matched material point really is.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..tracking import TrackedMesh
from .metrics import chamfer_l1, correspondence_l2, nearest_indices, sample_surface

__all__ = ["StreamScorer"]


class StreamScorer:
    """``update(mesh, truth) -> row`` for each tracked frame; lengths in metres.

    truth: (S, 3) ground-truth surface points at the mesh's time, rows fixed across frames.
    chamfer_points: samples on the predicted mesh for Chamfer-L1 (0: skip Chamfer).
    """

    def __init__(self, *, chamfer_points: int = 10_000, seed: int = 0) -> None:
        self.chamfer_points = chamfer_points
        self._rng = np.random.default_rng(seed)
        self._matches: np.ndarray | None = None
        self._segment: tuple[int, float] | None = None

    def update(self, mesh: TrackedMesh, truth: np.ndarray) -> dict[str, Any]:
        truth = np.asarray(truth, np.float64)
        segment = (mesh.keyframe_id, mesh.keyframe_stamp)
        rematched = mesh.topology_changed or segment != self._segment or self._matches is None
        if rematched:
            self._matches = nearest_indices(mesh.vertices, truth)
            self._segment = segment
        row: dict[str, Any] = {
            "stamp": float(mesh.stamp), "keyframe_id": int(mesh.keyframe_id),
            "since_keyframe": float(mesh.stamp - mesh.keyframe_stamp), "keyframe": rematched,
            "vertices": mesh.num_vertices,
            "corr_l2_m": correspondence_l2(mesh.vertices, truth, self._matches)}
        if self.chamfer_points:
            pred = sample_surface(mesh.vertices, mesh.faces, self.chamfer_points, self._rng)
            row["chamfer_l1_m"] = chamfer_l1(pred, truth)
        return row
