"""Score the tracker on windows with ground truth: IoU, Chamfer-L1, correspondence L2, and two baselines.

Each window is fed frame by frame to a real ``Tracker`` (the product path: keyframe meshing, then the
flow), with re-keying disabled so the mesh of the window's first frame is carried to its end. Metrics
are reported in the paper's normalised units: lengths divided by the keyframe's ground-truth size
(the longest side of the ground-truth surface's bounding box, which is D-FAUST's ``scale``).

Baselines: nearest-neighbour tracking (each vertex snaps to the nearest observed point of the next
frame, ``nn_corr_l2``) and the static mesh (the keyframe mesh left where it was, ``static_iou`` and
``static_corr_l2``): what the flow adds is the gap between the tracked and the static numbers.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Iterable, Sequence

import numpy as np

from ..data.records import WindowRecord
from ..geometry import PreprocessConfig
from ..model import Checkpoint
from ..tracking import Tracker, TrackerConfig
from .metrics import (
    chamfer_l1,
    correspondence_l2,
    mesh_iou,
    nearest_indices,
    nearest_neighbour_tracks,
    sample_surface,
)

__all__ = ["evaluation_tracker_config", "evaluate_window", "evaluate_records", "summarize",
           "window_group"]

# Records already hold filtered object points (see occflow_ros.data.synthetic): no second filtering.
RECORD_PREPROCESS = PreprocessConfig(cluster=False, remove_plane=False, voxel_size=0.0,
                                     outlier_neighbors=0, n_points=None)


def evaluation_tracker_config(base: TrackerConfig | None = None, *,
                              horizon: float = 10.0) -> TrackerConfig:
    """The tracker settings for scoring one window: no re-keying inside it."""
    base = base or TrackerConfig()
    return dataclasses.replace(base, residual_threshold=0.0, max_frames=100_000,
                               max_gap_seconds=horizon, window_seconds=horizon,
                               preprocess=RECORD_PREPROCESS)


def _unit(record: WindowRecord) -> float:
    norm = record.meta.get("normalization")
    if norm:
        return float(norm["scale"])
    surface = record.surface_at(0)
    return float((surface.max(0) - surface.min(0)).max())


def evaluate_window(tracker: Tracker, record: WindowRecord, *, rng: np.random.Generator,
                    chamfer_points: int = 10_000, baseline: bool = True) -> dict[str, Any]:
    """Metrics at each ground-truth frame of one window (see the module docstring)."""
    tracker.reset()
    unit = _unit(record)
    gt_frames = set(record.gt_frames.tolist())
    results: list[dict[str, Any]] = []
    matches = None
    keyframe_vertices = None
    timings = []
    frames_seen = []
    meshes = {}
    for f, (t, pts) in enumerate(zip(record.frame_times, record.frame_points)):
        t0 = time.perf_counter()
        mesh = tracker.feed(pts, float(t))
        timings.append(time.perf_counter() - t0)
        frames_seen.append(pts)
        if mesh is None:
            continue
        if keyframe_vertices is None:
            keyframe_vertices = mesh.vertices.copy()
            keyframe_frame = f
        if f in gt_frames:
            meshes[f] = mesh
    if keyframe_vertices is None:
        return {"failed": "no mesh (empty keyframe)", "unit_m": unit}
    k_index = {int(g): k for k, g in enumerate(record.gt_frames)}
    corr_key = record.corr[k_index[keyframe_frame]] if record.corr is not None and \
        keyframe_frame in k_index else None
    if corr_key is not None:
        matches = nearest_indices(keyframe_vertices, corr_key)
    nn = None
    if baseline and corr_key is not None:
        later = record.frame_points[keyframe_frame + 1:]
        nn = [keyframe_vertices] + nearest_neighbour_tracks(keyframe_vertices, later)
    for f in sorted(meshes):
        mesh = meshes[f]
        k = k_index[f]
        row: dict[str, Any] = {"frame": f, "t": float(record.frame_times[f]),
                               "dt": float(record.frame_times[f] - record.frame_times[keyframe_frame]),
                               "vertices": mesh.num_vertices}
        surface = record.surface_at(k)
        # the static baseline: the keyframe mesh left where it was (same vertices, same faces)
        still = mesh.num_vertices == len(keyframe_vertices)
        if surface is not None:
            pred = sample_surface(mesh.vertices, mesh.faces, chamfer_points, rng)
            row["chamfer_l1"] = chamfer_l1(pred, surface) / unit
            if still:  # its own generator: the tracked numbers' draws stay as they were
                kept = sample_surface(keyframe_vertices, mesh.faces, chamfer_points,
                                      np.random.default_rng(f))
                row["static_chamfer_l1"] = chamfer_l1(kept, surface) / unit
        if record.occ is not None:
            n_uniform = int(record.meta.get("occ_uniform", record.occ.shape[1]))
            occ_points, occ = record.occ_points[k][:n_uniform], record.occ[k][:n_uniform]
            row["iou"] = mesh_iou(mesh.vertices, mesh.faces, occ_points, occ)
            if still:
                row["static_iou"] = mesh_iou(keyframe_vertices, mesh.faces, occ_points, occ)
        if matches is not None:
            row["corr_l2"] = correspondence_l2(mesh.vertices, record.corr[k], matches) / unit
            if still:
                row["static_corr_l2"] = correspondence_l2(keyframe_vertices, record.corr[k],
                                                          matches) / unit
            if nn is not None:
                row["nn_corr_l2"] = correspondence_l2(nn[f - keyframe_frame], record.corr[k],
                                                      matches) / unit
        results.append(row)
    return {"unit_m": unit, "frames": results, "keyframe_frame": keyframe_frame,
            "step_ms": [1e3 * s for s in timings], "meta": record.meta}


def evaluate_records(checkpoint: Checkpoint, records: Iterable[WindowRecord], *,
                     tracker_config: TrackerConfig | None = None, device: str = "cpu",
                     seed: int = 0, progress: bool = True) -> list[dict[str, Any]]:
    """evaluate_window for each record with one tracker (reset between windows)."""
    from tqdm import tqdm

    tracker = Tracker(checkpoint, evaluation_tracker_config(tracker_config), device=device)
    rng = np.random.default_rng(seed)
    records = list(records)
    return [evaluate_window(tracker, r, rng=rng)
            for r in tqdm(records, desc="windows", disable=not progress)]


def _mean(values: Sequence[float]) -> float | None:
    values = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(values)) if values else None


def window_group(meta: dict[str, Any]) -> str:
    """'family/motion' of a synthetic window (e.g. 'human/knee_raises'), else the record's source."""
    shape = meta.get("shape")
    if isinstance(shape, dict) and "family" in shape:
        return f"{shape['family']}/{shape.get('motion', '?')}"
    return str(meta.get("source", "windows"))


def summarize(windows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Means over windows: at the keyframe, at the window's end, and over all later GT frames."""
    ok = [w for w in windows if "frames" in w and w["frames"]]
    out: dict[str, Any] = {"windows": len(windows), "failed": len(windows) - len(ok)}
    for key in ("iou", "static_iou", "chamfer_l1", "static_chamfer_l1", "corr_l2", "static_corr_l2",
                "nn_corr_l2"):
        first = [w["frames"][0].get(key) for w in ok if w["frames"][0]["dt"] == 0.0]
        last = [w["frames"][-1].get(key) for w in ok]
        later = [r.get(key) for w in ok for r in w["frames"] if r["dt"] > 0]
        out[key] = {"keyframe": _mean(first), "end": _mean(last), "mean_later": _mean(later)}
    # where the error is: the same means at the window's end per kind of motion
    groups: dict[str, list[dict[str, Any]]] = {}
    for w in ok:
        groups.setdefault(window_group(w.get("meta", {})), []).append(w)
    out["by_motion"] = {
        name: {"windows": len(ws), **{key: _mean([w["frames"][-1].get(key) for w in ws])
                                      for key in ("iou", "static_iou", "corr_l2", "static_corr_l2",
                                                  "nn_corr_l2")}}
        for name, ws in sorted(groups.items())}
    queries = [int(w["meta"]["occ_uniform"]) for w in ok if "occ_uniform" in w.get("meta", {})]
    out["iou_queries"] = min(queries) if queries else None
    steps = [s for w in ok for s in w["step_ms"][1:]]
    keys = [w["step_ms"][0] for w in ok]
    out["tracking_step_ms"] = {"p50": float(np.percentile(steps, 50)) if steps else None,
                               "p95": float(np.percentile(steps, 95)) if steps else None}
    out["keyframe_ms"] = {"p50": float(np.percentile(keys, 50)) if keys else None}
    out["window_seconds_mean"] = _mean([w["frames"][-1]["dt"] for w in ok])
    return out
