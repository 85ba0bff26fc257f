"""Score a whole tracked sequence (e.g. a replayed bag) against per-frame truth: per-frame rows, means, drift.

The inputs are plain arrays (what a replayed bag holds: the tracked mesh of each frame, the truth of
each frame, the replay's per-frame status), so this room stays free of ROS. Per frame with truth:

- Chamfer-L1 between the tracked mesh and the truth surface points, and correspondence L2 with the
  paper's definition (each keyframe mesh's vertices matched to their nearest truth points at the
  keyframe, then followed until the next keyframe) -- both by :class:`~.stream.StreamScorer`;
- correspondence L2 by vertex id: each persistent vertex id is matched to its nearest truth point
  when it first appears and followed across keyframes (what the ids promise a user);
- IoU against exact occupancy where the frame has occupancy queries.

Lengths are reported in the paper's normalised units (divided by ``unit_m``, the object's size: the
longest side of its bounding box at the first frame, D-FAUST's ``scale``) and in centimetres.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from ..data.ground_truth import GroundTruthFrame
from ..tracking import TrackedMesh
from .metrics import mesh_iou, nearest_indices
from .stream import StreamScorer

__all__ = ["EvaluationError", "FrameStatus", "LENGTH_METRICS", "TrackedFrame", "score_sequence"]

#: Length metrics of a row: name -> what it is (each has ``<name>`` normalised and ``<name>_cm``).
LENGTH_METRICS = {
    "chamfer_l1": "Chamfer-L1",
    "corr_l2": "correspondence L2 (per keyframe, the paper's)",
    "id_corr_l2": "correspondence L2 by vertex id (across keyframes)",
}


class EvaluationError(ValueError):
    """Inputs to an evaluation that do not fit together (no truth, ids that change, a bad unit, an
    output directory that exists); the message names the problem."""


@dataclass
class TrackedFrame:
    """The tracker's output for one input frame (a TrackedMesh message), metres in the sensor frame.

    stamp_ns: the input cloud's header stamp; keyframe_id / keyframe_stamp_ns: the segment it belongs
    to; vertices (V, 3) float32, faces (F, 3) uint32, vertex_ids (V,) uint32, canonical_vertices (V, 3).
    """

    stamp_ns: int
    keyframe_id: int
    keyframe_stamp_ns: int
    vertices: np.ndarray
    faces: np.ndarray
    vertex_ids: np.ndarray
    canonical_vertices: np.ndarray

    def as_tracked_mesh(self, topology_changed: bool = False) -> TrackedMesh:
        return TrackedMesh(stamp=self.stamp_ns / 1e9, keyframe_stamp=self.keyframe_stamp_ns / 1e9,
                           keyframe_id=self.keyframe_id, vertices=self.vertices, faces=self.faces,
                           vertex_ids=self.vertex_ids, canonical_vertices=self.canonical_vertices,
                           topology_changed=topology_changed)


@dataclass
class FrameStatus:
    """What the replay did with one input frame: processing time (ms, wall clock), whether it was a
    keyframe, and its status level ('ok', 'warn', 'error') and message."""

    stamp_ns: int
    processing_ms: float | None
    keyframe: bool
    level: str = "ok"
    message: str = ""


def _stats(values: Sequence[float]) -> dict[str, float | None]:
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], np.float64)
    if not len(v):
        return {"mean": None, "p50": None, "p95": None, "max": None}
    return {"mean": float(v.mean()), "p50": float(np.percentile(v, 50)), "p95": float(np.percentile(v, 95)),
            "max": float(v.max())}


def _mean(values: Sequence[Any]) -> float | None:
    v = [float(x) for x in values if x is not None and np.isfinite(x)]
    return float(np.mean(v)) if v else None


class _TruthIds:
    """Puts every frame's truth rows in the first truth frame's id order (ids must be the same set)."""

    def __init__(self, first: GroundTruthFrame) -> None:
        self.ids = np.asarray(first.surface_ids)
        if len(np.unique(self.ids)) != len(self.ids):
            raise EvaluationError(f"ground truth at stamp {first.stamp_ns} ns repeats surface ids")

    def align(self, frame: GroundTruthFrame) -> np.ndarray:
        ids = np.asarray(frame.surface_ids)
        if np.array_equal(ids, self.ids):
            return np.asarray(frame.surface, np.float64)
        if len(ids) != len(self.ids) or not np.array_equal(np.sort(ids), np.sort(self.ids)):
            raise EvaluationError(
                f"ground truth at stamp {frame.stamp_ns} ns has other surface ids than the first truth frame "
                "(the same material points must carry the same ids in every frame)")
        order = np.argsort(ids)[np.searchsorted(np.sort(ids), self.ids)]
        return np.asarray(frame.surface, np.float64)[order]


class _IdMatches:
    """vertex id -> truth row, fixed when the id is first seen with truth."""

    def __init__(self) -> None:
        self.ids = np.zeros(0, np.uint32)  # sorted
        self.rows = np.zeros(0, np.int64)

    def error(self, vertices: np.ndarray, vertex_ids: np.ndarray, truth: np.ndarray) -> float:
        ids = np.asarray(vertex_ids, np.uint32)
        if len(self.ids):
            known = self.ids[np.minimum(np.searchsorted(self.ids, ids), len(self.ids) - 1)] == ids
        else:
            known = np.zeros(len(ids), bool)
        if (~known).any():
            new_rows = nearest_indices(vertices[~known], truth)
            all_ids = np.concatenate([self.ids, ids[~known]])
            order = np.argsort(all_ids, kind="stable")
            self.ids, self.rows = all_ids[order], np.concatenate([self.rows, new_rows])[order]
        rows = self.rows[np.searchsorted(self.ids, ids)]
        return float(np.linalg.norm(np.asarray(vertices, np.float64) - truth[rows], axis=1).mean())


def _drift(rows: list[dict], bins: int) -> list[dict[str, Any]]:
    scored = [r for r in rows if r.get("corr_l2") is not None or r.get("chamfer_l1") is not None]
    if not scored:
        return []
    since = np.array([r["since_keyframe_s"] for r in scored])
    top = float(since.max())
    edges = np.linspace(0.0, top, bins + 1) if top > 0 else np.array([0.0, 0.0])
    out = []
    for i in range(len(edges) - 1):
        lo, hi = float(edges[i]), float(edges[i + 1])
        last = i == len(edges) - 2
        pick = [r for r, s in zip(scored, since) if lo <= s < hi or (last and s == hi)]
        if not pick:
            continue
        entry: dict[str, Any] = {"since_keyframe_s": [lo, hi], "frames": len(pick)}
        for key in LENGTH_METRICS:
            entry[key] = _mean([r.get(key) for r in pick])
            entry[f"{key}_cm"] = _mean([r.get(f"{key}_cm") for r in pick])
        entry["iou"] = _mean([r.get("iou") for r in pick])
        out.append(entry)
    return out


def score_sequence(tracked: Sequence[TrackedFrame], truth: Mapping[int, GroundTruthFrame],
                   statuses: Sequence[FrameStatus] = (), *, unit_m: float, chamfer_points: int = 100_000,
                   seed: int = 0, drift_bins: int = 8) -> dict[str, Any]:
    """Per-frame metrics of a tracked sequence and their summary.

    ``tracked``: the tracker's output frames (any order; sorted by stamp here). ``truth``: stamp_ns
    -> truth of that input frame (surface points with fixed ids; occupancy optional); a tracked
    frame is scored when the truth has its stamp. ``statuses``: the replay's per-input-frame
    status (processing times). ``unit_m``: metres per normalised unit (the object's size).
    ``chamfer_points``: points sampled on each tracked mesh (the paper: 100k); ``seed`` seeds them.

    Returns ``{"frames": rows, "summary": ...}``. A row: ``stamp_ns``, ``t_s`` (seconds since the first
    input frame), ``since_keyframe_s``, ``keyframe_id``, ``keyframe`` (the first scored frame of a
    keyframe segment, where vertices are matched), ``vertices``, ``processing_ms`` and, with truth,
    ``chamfer_l1`` / ``corr_l2`` / ``id_corr_l2`` (normalised) with ``*_cm`` twins, and ``iou`` where
    occupancy is known. The summary: counts, per metric the mean over scored frames, over frames
    after their keyframe (``since_keyframe_s > 0``) and at the last scored frame, ``drift`` (means in
    bins of time since the keyframe), and processing-time statistics. Raises EvaluationError.
    """
    unit = float(unit_m)
    if not (np.isfinite(unit) and unit > 0):
        raise EvaluationError(f"unit_m must be a positive length in metres, got {unit_m!r}")
    frames = sorted(tracked, key=lambda f: f.stamp_ns)
    stamps = [f.stamp_ns for f in frames] + [s.stamp_ns for s in statuses] + list(truth)
    start_ns = min(stamps) if stamps else 0
    status_of = {s.stamp_ns: s for s in statuses}
    truth_stamps = sorted(truth)
    ids = _TruthIds(truth[truth_stamps[0]]) if truth_stamps else None
    scorer = StreamScorer(chamfer_points=chamfer_points, seed=seed)
    id_matches = _IdMatches()
    rows: list[dict[str, Any]] = []
    previous = None
    for frame in frames:
        segment = (frame.keyframe_id, frame.keyframe_stamp_ns)
        new_segment = segment != previous
        previous = segment
        status = status_of.get(frame.stamp_ns)
        row: dict[str, Any] = {
            "stamp_ns": int(frame.stamp_ns), "t_s": (frame.stamp_ns - start_ns) / 1e9,
            # to the microsecond: the keyframe stamp went through float seconds (~240 ns steps at epoch times)
            "since_keyframe_s": round((frame.stamp_ns - frame.keyframe_stamp_ns) / 1e3) / 1e6,
            "keyframe_id": int(frame.keyframe_id), "keyframe": False, "vertices": int(len(frame.vertices)),
            "processing_ms": status.processing_ms if status is not None else None}
        gt = truth.get(frame.stamp_ns)
        if gt is not None and len(frame.faces):
            surface = ids.align(gt)
            scored = scorer.update(frame.as_tracked_mesh(topology_changed=new_segment), surface)
            row["keyframe"] = bool(scored["keyframe"])
            metres = {"chamfer_l1": scored.get("chamfer_l1_m"), "corr_l2": scored["corr_l2_m"],
                      "id_corr_l2": id_matches.error(frame.vertices, frame.vertex_ids, surface)}
            for key, value in metres.items():
                if value is not None:
                    row[key] = value / unit
                    row[f"{key}_cm"] = 100.0 * value
            if gt.occ_points is not None and gt.occ_inside is not None:
                row["iou"] = mesh_iou(frame.vertices, frame.faces, gt.occ_points, gt.occ_inside)
        rows.append(row)

    scored_rows = [r for r in rows if "corr_l2" in r]
    later = [r for r in scored_rows if r["since_keyframe_s"] > 0]
    metrics: dict[str, Any] = {}
    for key in [*LENGTH_METRICS, *(f"{k}_cm" for k in LENGTH_METRICS), "iou"]:
        values = [r.get(key) for r in scored_rows]
        if all(v is None for v in values):
            continue
        metrics[key] = {"mean": _mean(values), "mean_after_keyframe": _mean([r.get(key) for r in later]),
                        "last": scored_rows[-1].get(key), "max": max(v for v in values if v is not None)}
    timing = [s.processing_ms for s in statuses]
    key_ms = [s.processing_ms for s in statuses if s.keyframe]
    track_ms = [s.processing_ms for s in statuses if not s.keyframe and s.level == "ok"]
    tracked_stamps = {f.stamp_ns for f in frames}
    summary = {
        "unit_m": unit,
        "frames_in": len(statuses) if statuses else None,
        "frames_tracked": len(frames),
        "frames_with_truth": len(truth_stamps),
        "frames_scored": len(scored_rows),
        "truth_frames_without_mesh": sum(1 for s in truth_stamps if s not in tracked_stamps),
        "keyframe_segments": len({(f.keyframe_id, f.keyframe_stamp_ns) for f in frames}),
        "duration_s": (max(stamps) - start_ns) / 1e9 if stamps else 0.0,
        "chamfer_points": int(chamfer_points),
        "metrics": metrics,
        "drift": _drift(scored_rows, drift_bins),
        "processing_ms": {**_stats(timing), "keyframe_p50": _stats(key_ms)["p50"],
                          "tracking_p50": _stats(track_ms)["p50"],
                          "frames_with_problems": sum(1 for s in statuses if s.level != "ok")},
    }
    return {"frames": rows, "summary": summary}
