"""The demo's numbers and report: rates and latency of a live run, tracking error vs truth, id persistence.

Pure computations on what the demo recorded (no ROS): each received tracked mesh as a
:class:`~occflow_ros.tracking.TrackedMesh` (times in seconds from the stream start), when it was
received, and the ground truth of its frame. Errors follow the Occupancy Flow paper's definitions
through :class:`~occflow_ros.evaluation.stream.StreamScorer`: at each keyframe the mesh's vertices are
matched to the nearest dense ground-truth material point, and the correspondence error at a later
frame is the distance between a vertex and where its matched material point really is. The same scorer
on a mesh frozen at its keyframe gives the "static" baseline: the error of a tracker whose vertices
never move, which a working flow must beat.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

import numpy as np

from ..geometry import best_rigid_motion
from ..tracking import TrackedMesh
from ..evaluation.metrics import nearest_indices
from ..evaluation.sequence import EvaluationError
from ..evaluation.stream import StreamScorer

__all__ = [
    "DemoReportError",
    "ReceivedMesh",
    "id_persistence",
    "latency_summary",
    "score_tracking",
    "summarize_errors",
    "markdown_report",
    "write_report",
]


class DemoReportError(EvaluationError):
    """Demo records that cannot be summarised (nothing received, inconsistent arrays)."""


@dataclasses.dataclass
class ReceivedMesh:
    """One tracked mesh the demo received.

    mesh: the TrackedMesh (positions in metres, optical frame; ``stamp`` and ``keyframe_stamp`` in
      seconds from the stream start). frame: index of the input frame it answers.
    received_s: when it arrived, seconds from the stream start (same clock as the stamps).
    """

    mesh: TrackedMesh
    frame: int
    received_s: float

    @property
    def is_keyframe(self) -> bool:
        return self.mesh.stamp == self.mesh.keyframe_stamp

    @property
    def latency_ms(self) -> float:
        """Capture stamp to receipt in the demo process, ms."""
        return 1e3 * (self.received_s - self.mesh.stamp)


def _pct(values: Sequence[float]) -> dict[str, Optional[float]]:
    if len(values) == 0:
        return {"p50": None, "p95": None, "max": None, "n": 0}
    a = np.asarray(values, np.float64)
    p50, p95 = np.percentile(a, [50, 95])
    return {"p50": float(p50), "p95": float(p95), "max": float(a.max()), "n": int(len(a))}


def latency_summary(sent_s: Sequence[float], published_s: Sequence[float],
                    received: Sequence[ReceivedMesh]) -> dict[str, Any]:
    """Rates, drops and latency of a live run.

    sent_s: (N,) capture stamps of the frames sent, seconds from the stream start, increasing.
    published_s: (N,) when each was published (same clock): how late the publisher was.
    received: the tracked meshes received, one per processed frame.
    Rates are frames per second of stream time (first to last stamp sent); a frame is dropped when
    no mesh answering it arrived. Latency is stamp -> receipt in the demo process (ms).
    """
    sent = np.asarray(sent_s, np.float64)
    if sent.ndim != 1 or len(sent) < 2:
        raise DemoReportError(f"need at least 2 sent frames, got {len(sent)}")
    span = float(sent[-1] - sent[0])
    frames = {r.frame for r in received}
    key = [r.latency_ms for r in received if r.is_keyframe]
    other = [r.latency_ms for r in received if not r.is_keyframe]
    keyframes = len({r.mesh.keyframe_stamp for r in received})
    late = 1e3 * (np.asarray(published_s, np.float64) - sent)
    return {
        "stream_seconds": span,
        "frames_sent": int(len(sent)),
        "frames_processed": len(frames),
        "frames_dropped": int(len(sent) - len(frames)),
        "input_rate_hz": (len(sent) - 1) / span if span > 0 else None,
        "processed_rate_hz": len(frames) / span if span > 0 else None,
        "keyframes": keyframes,
        "keyframe_interval_s": span / keyframes if keyframes else None,
        "latency_ms": {"all": _pct(key + other), "tracking_frames": _pct(other),
                       "keyframes": _pct(key)},
        "publish_late_ms": _pct(late.tolist()),
    }


def _frozen(mesh: TrackedMesh, keyframe_vertices: np.ndarray) -> TrackedMesh:
    return dataclasses.replace(mesh, vertices=keyframe_vertices)


def _best_rigid_corr(vertices: np.ndarray, truth: np.ndarray, steps: int = 20) -> float:
    """The least mean distance (the correspondence L2) between vertices moved by one rigid motion
    and their truth points: iteratively reweighted Kabsch (weights 1 / distance, from the identity),
    never worse than leaving them still."""
    best = float(np.linalg.norm(vertices - truth, axis=1).mean())
    weights = None
    for _ in range(steps):
        R, t = best_rigid_motion(vertices, truth, weights)
        gap = np.linalg.norm(vertices @ R.T + t - truth, axis=1)
        best = min(best, float(gap.mean()))
        weights = 1.0 / np.maximum(gap, 1e-6)
    return best


def score_tracking(received: Sequence[ReceivedMesh], truth: Callable[[int], np.ndarray], *,
                   chamfer_points: int = 10_000, seed: int = 0) -> list[dict[str, Any]]:
    """Per received frame: correspondence L2 and Chamfer-L1 against the truth (metres), and the same
    two for the static baseline (the keyframe's vertices left where they were), and the
    correspondence L2 of the best rigid baseline (the keyframe's vertices moved by the one rigid
    motion that best fits where the truth took them: an oracle no rigid tracker can beat).

    truth(frame): (M, 3) dense ground-truth surface points of that input frame in the mesh's frame,
    row i the same material point in every frame. Rows are in arrival order; each holds ``frame``,
    ``t`` (stamp, s), ``since_keyframe`` (s), ``keyframe_id``, ``keyframe_stamp``, ``keyframe`` (the
    scorer re-matched here), ``corr_l2_m``, ``chamfer_l1_m``, ``static_corr_l2_m``,
    ``static_chamfer_l1_m``, ``rigid_corr_l2_m``.
    """
    scorer = StreamScorer(chamfer_points=chamfer_points, seed=seed)
    static = StreamScorer(chamfer_points=chamfer_points, seed=seed)
    rows = []
    key_vertices: Optional[np.ndarray] = None
    segment = None
    for r in received:
        m = r.mesh
        gt = truth(r.frame)
        if (m.keyframe_id, m.keyframe_stamp) != segment:
            segment = (m.keyframe_id, m.keyframe_stamp)
            key_vertices = m.vertices
            matches = nearest_indices(key_vertices, gt)  # as the scorers match at a keyframe
        row = scorer.update(m, gt)
        still = static.update(_frozen(m, key_vertices), gt)
        row["topology_changed"] = bool(m.topology_changed)
        row["static_corr_l2_m"] = still["corr_l2_m"]
        row["static_chamfer_l1_m"] = still.get("chamfer_l1_m")
        row["rigid_corr_l2_m"] = _best_rigid_corr(key_vertices, gt[matches])
        row["frame"] = r.frame
        row["keyframe_stamp"] = float(m.keyframe_stamp)
        row["t"] = row.pop("stamp")
        rows.append(row)
    return rows


def summarize_errors(rows: Sequence[Mapping[str, Any]], *, bin_seconds: float = 0.1
                     ) -> dict[str, Any]:
    """Tracking errors in centimetres: overall means, and the correspondence error over time since
    each segment's first mesh (mean per ``bin_seconds`` bin, tracked vs static), from
    :func:`score_tracking` rows. "keyframe" numbers are those first meshes'.
    """
    if not rows:
        raise DemoReportError("no tracked frames to score")
    # A segment is scored when the mesh that introduced its topology was received: the keyframe's
    # own mesh, or with background keyframes the mesh of the frame that adopted it (carried from
    # the keyframe's time to that frame). That first mesh is matched to the truth; times in the
    # table count from it. A segment whose first mesh was lost (matched late) is left out. A segment
    # is its (keyframe id, keyframe stamp): ids restart at 0 when the tracker resets (a bag looping).

    def segment(r: Mapping[str, Any]) -> tuple:
        return r["keyframe_id"], r.get("keyframe_stamp")

    first: dict = {}
    for r in rows:
        first.setdefault(segment(r), r)
    ok_segments = [k for k, r in first.items() if r["topology_changed"]]
    good = [r for r in rows if segment(r) in set(ok_segments)]
    keyrows = [first[k] for k in ok_segments]
    later = [r for r in good if r is not first[segment(r)]]
    cm = 100.0

    def mean(key: str, rs: Iterable[Mapping[str, Any]]) -> Optional[float]:
        vals = [r[key] for r in rs if r.get(key) is not None and math.isfinite(r[key])]
        return cm * float(np.mean(vals)) if vals else None

    over_time = []
    if later:
        since = np.array([r["t"] - first[segment(r)]["t"] for r in later])
        bins = np.floor(since / bin_seconds).astype(int)
        for b in sorted(set(bins.tolist())):
            sel = [r for r, k in zip(later, bins) if k == b]
            over_time.append({"from_s": round(b * bin_seconds, 6),
                              "to_s": round((b + 1) * bin_seconds, 6), "frames": len(sel),
                              "corr_l2_cm": mean("corr_l2_m", sel),
                              "static_corr_l2_cm": mean("static_corr_l2_m", sel)})
    return {
        "frames_scored": len(rows),
        "segments_scored": len(ok_segments),
        "corr_l2_cm": {"keyframe": mean("corr_l2_m", keyrows), "later_frames": mean("corr_l2_m", later),
                       "static_later_frames": mean("static_corr_l2_m", later),
                       "rigid_later_frames": mean("rigid_corr_l2_m", later)},
        "chamfer_l1_cm": {"keyframe": mean("chamfer_l1_m", keyrows),
                          "later_frames": mean("chamfer_l1_m", later),
                          "static_later_frames": mean("static_chamfer_l1_m", later),
                          "all": mean("chamfer_l1_m", rows)},
        "over_time": over_time,
    }


def id_persistence(meshes: Sequence[TrackedMesh]) -> dict[str, Any]:
    """How vertex ids survive keyframes, over meshes in arrival order.

    At each keyframe after the first (a new ``(keyframe_id, keyframe_stamp)``) two fractions: ``kept``,
    of the ids of the last mesh received before it that the new mesh still carries, and
    ``inherited``, of the new mesh's vertices whose id existed before. Also checks the within-segment
    rule: every mesh of a segment has its keyframe's ids in the same order (``segments_consistent``).
    """
    kept, inherited = [], []
    consistent = True
    prev: Optional[TrackedMesh] = None
    first_ids: Optional[np.ndarray] = None
    for m in meshes:
        ids = np.asarray(m.vertex_ids)
        new_segment = prev is None or (m.keyframe_id, m.keyframe_stamp) != (prev.keyframe_id,
                                                                             prev.keyframe_stamp)
        if new_segment:
            if prev is not None:
                before = np.asarray(prev.vertex_ids)
                kept.append(float(np.isin(before, ids).mean()) if len(before) else 0.0)
                inherited.append(float(np.isin(ids, before).mean()) if len(ids) else 0.0)
            first_ids = ids
        elif first_ids is not None and not np.array_equal(ids, first_ids):
            consistent = False
        prev = m

    def stats(v: list) -> dict[str, Optional[float]]:
        if not v:
            return {"mean": None, "min": None, "median": None}
        return {"mean": float(np.mean(v)), "min": float(np.min(v)), "median": float(np.median(v))}

    return {"keyframe_changes": len(kept), "kept": stats(kept), "inherited": stats(inherited),
            "kept_each": [round(k, 4) for k in kept], "segments_consistent": consistent}


def _f(value: Any, digits: int = 1) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown_report(summary: Mapping[str, Any]) -> str:
    """report.md's text from the demo's summary (see occflow_ros.apps.demo for its keys)."""
    s = summary
    live, err, ids = s["live"], s["errors"], s["ids"]
    lat = live["latency_ms"]
    scene = s["scene"]
    lines = [
        "# occflow_ros demo",
        "",
        f"{s['started']}: {scene['seconds']:g} s of a simulated {scene['camera']['width']}x"
        f"{scene['camera']['height']} RealSense-like depth stream at {scene['fps']:g} Hz (jitter "
        f"{1e3 * scene['jitter_std_s']:g} ms) of a person doing `{scene['shape'].get('motion')}` "
        f"(seed {scene['shape'].get('seed')}), streamed over DDS as organized PointCloud2 to the "
        "`reconstruct` node running as its own process; its outputs recorded by the demo.",
        "",
        f"Model: `{s['model']}`. Node: {s['node']['command_note']}",
        "",
        "## Live run",
        "",
        "| | |",
        "|---|---|",
        f"| input rate | {_f(live['input_rate_hz'])} Hz ({live['frames_sent']} frames) |",
        f"| processed rate | {_f(live['processed_rate_hz'])} Hz ({live['frames_processed']} frames) |",
        f"| dropped frames | {live['frames_dropped']} "
        f"({_f(100.0 * live['frames_dropped'] / live['frames_sent'])} %; node's count "
        f"{_f(s['node'].get('dropped_frames'))}) |",
        f"| keyframes | {live['keyframes']} (one every {_f(live['keyframe_interval_s'], 2)} s) |",
        f"| latency stamp -> receipt, all frames | p50 {_f(lat['all']['p50'], 0)} ms, p95 "
        f"{_f(lat['all']['p95'], 0)} ms |",
        f"| latency, tracking frames (outside keyframes) | p50 {_f(lat['tracking_frames']['p50'], 0)} ms, "
        f"p95 {_f(lat['tracking_frames']['p95'], 0)} ms |",
        f"| latency, keyframes | p50 {_f(lat['keyframes']['p50'], 0)} ms, p95 "
        f"{_f(lat['keyframes']['p95'], 0)} ms |",
        f"| node exit | {s['node']['exit_code']} after SIGINT |",
        "",
        "## Tracking against ground truth",
        "",
        f"Dense truth: {scene['truth_points']} material points of the exact surface. At each keyframe "
        "every mesh vertex is matched to its nearest truth point; later errors follow those material "
        "points (`Shape4D.trajectory`). Static = the keyframe's vertices left where they were (what "
        "tracking must beat); best rigid = the keyframe's vertices moved by the one rigid motion "
        "that best fits the truth at each frame (what no rigid tracker can beat). Lengths in cm.",
        "",
        "| | keyframe | later frames | static (later frames) | best rigid (later frames) |",
        "|---|---|---|---|---|",
        f"| correspondence L2 | {_f(err['corr_l2_cm']['keyframe'], 2)} | "
        f"{_f(err['corr_l2_cm']['later_frames'], 2)} | {_f(err['corr_l2_cm']['static_later_frames'], 2)} | "
        f"{_f(err['corr_l2_cm'].get('rigid_later_frames'), 2)} |",
        f"| Chamfer-L1 (mesh vs truth surface) | {_f(err['chamfer_l1_cm']['keyframe'], 2)} | "
        f"{_f(err['chamfer_l1_cm']['later_frames'], 2)} | {_f(err['chamfer_l1_cm'].get('static_later_frames'), 2)} | |",
        "",
        "Correspondence L2 over time since the keyframe:",
        "",
        "| since keyframe (s) | frames | tracked (cm) | static (cm) |",
        "|---|---|---|---|",
    ]
    for b in err["over_time"]:
        lines.append(f"| {b['from_s']:.1f}-{b['to_s']:.1f} | {b['frames']} | {_f(b['corr_l2_cm'], 2)} | "
                     f"{_f(b['static_corr_l2_cm'], 2)} |")
    lines += [
        "",
        "## Vertex ids across keyframes",
        "",
        f"{ids['keyframe_changes']} keyframe changes received: ids kept (of the previous mesh's) mean "
        f"{_f(100 * ids['kept']['mean'] if ids['kept']['mean'] is not None else None)} %, min "
        f"{_f(100 * ids['kept']['min'] if ids['kept']['min'] is not None else None)} %; new-keyframe "
        f"vertices with an inherited id mean "
        f"{_f(100 * ids['inherited']['mean'] if ids['inherited']['mean'] is not None else None)} %. "
        f"Ids fixed within every segment: {'yes' if ids['segments_consistent'] else 'NO'}.",
        "",
    ]
    if s.get("images"):
        lines += ["## Frames", "", s.get("image_caption", ""), ""]
        lines += [f"![{Path(p).stem}]({Path(p).name})" for p in s["images"]]
        lines.append("")
    lines += ["## Files", ""]
    lines += [f"- `{name}`: {what}" for name, what in s.get("files", {}).items()]
    lines += ["", "## Node parameters (demo overrides)", "", "```"]
    lines += [f"-p {k}:={v}" for k, v in s["node"]["overrides"].items()]
    lines += ["```", "", s["node"].get("why", ""), ""]
    return "\n".join(lines)


def write_report(out_dir: Path, summary: Mapping[str, Any]) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.json`` into ``out_dir`` (which must exist; neither file may)."""
    out_dir = Path(out_dir)
    md, js = out_dir / "report.md", out_dir / "report.json"
    for p in (md, js):
        if p.exists():
            raise DemoReportError(f"{p} exists; refusing to overwrite it")
    js.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    md.write_text(markdown_report(summary))
    return md, js
