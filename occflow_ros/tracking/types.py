"""What the tracker returns for each frame: the tracked mesh with persistent vertex ids."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["TrackedMesh"]


@dataclass
class TrackedMesh:
    """The reconstruction at one input frame.

    All positions are float32 metres in the frame of the input points (the sensor frame when fed from
    a camera). Between keyframes the topology (``faces``, ``vertex_ids``) is fixed and only
    ``vertices`` move; a keyframe brings a new mesh whose vertices inherit the ids of the tracked
    surface they lie on (new surface gets fresh ids).

    stamp: time of the input frame, seconds (sensor clock).
    keyframe_stamp: time of the keyframe whose mesh is being carried, seconds.
    keyframe_id: counts keyframes since the tracker (re)started, from 0.
    run: counts the tracker's (re)starts, from 0 (``Tracker.reset``): a new run restarts
      ``keyframe_id``, and no vertex id carries over into it (ids are never reused).
    vertices: (V, 3) current vertex positions.
    faces: (F, 3) uint32 indices into vertices, counter-clockwise seen from outside.
    vertex_ids: (V,) uint32 persistent id of each vertex (unique within the mesh).
    canonical_vertices: (V, 3) where each vertex id was first seen (its first keyframe position).
    topology_changed: True on the first frame of a keyframe segment (faces/ids are new).
    input_points: (N, 3) the observed points of this frame the model was given (preprocessed and
      subsampled to the model's input size), or None.
    input_keyframe_points: (N, 3) where those observed points were at the keyframe time (carried
      backwards through the flow): per-input-point correspondences; None when not computed.
    info: timings and diagnostics of this step (plain numbers and strings).
    """

    stamp: float
    keyframe_stamp: float
    keyframe_id: int
    vertices: np.ndarray
    faces: np.ndarray
    vertex_ids: np.ndarray
    canonical_vertices: np.ndarray
    topology_changed: bool = False
    run: int = 0
    input_points: np.ndarray | None = None
    input_keyframe_points: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def num_vertices(self) -> int:
        return int(self.vertices.shape[0])

    @property
    def num_faces(self) -> int:
        return int(self.faces.shape[0])
