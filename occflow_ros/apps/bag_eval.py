"""Evaluate a bag: replay it (or take a replayed bag), score it against its ground truth, write a report.

``occflow-eval bag <input-bag> [--replayed <output-bag>] --out <new dir>`` builds, in a directory that
must not exist (written under a temporary name and renamed when complete):

- ``replay/``: the replayed bag (when ``--replayed`` is not given): ``ros2 bag play`` it with RViz;
- ``report.json``: settings, summary and every frame's row (see
  :func:`occflow_ros.evaluation.sequence.score_sequence`);
- ``report.md``: the summary table (normalised units and centimetres; the paper's D-FAUST numbers
  beside ours for a D-FAUST bag), drift against time since the keyframe, processing time;
- ``error_vs_time.png``, ``error_vs_time_since_keyframe.png``, ``processing_time.png`` (matplotlib);
- ``tracked_mesh.gif`` and ``frame_first.png`` / ``frame_last.png``: the tracked mesh in
  correspondence colours (the node's :class:`~occflow_ros.ros.conversions.ColorBox`, fitted to the
  first mesh's canonical vertices), seen from the sensor and from the side (matplotlib renders).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Union

import numpy as np

from ..evaluation.report import new_directory, report_markdown, write_json, write_plots
from ..evaluation.sequence import EvaluationError, TrackedFrame, score_sequence
from ..ros.conversions import ColorBox
from ..ros.bag_io import bag_topics, open_input_bag
from .ground_truth_bag import read_ground_truth, read_replayed
from ..ros.node_config import NodeConfig
from .replay import GROUND_TRUTH_PREFIX, ReplayResult, replay_bag

__all__ = ["FIRST_KEYFRAME_ONLY", "evaluate_bag", "render_tracked"]

#: Node parameters that make the whole bag one keyframe segment (the paper's protocol: the mesh of the
#: first frame carried to the end), applied on top of the user's with ``keyframes="first"``.
FIRST_KEYFRAME_ONLY = {"tracker.residual_threshold": 0.0, "tracker.max_frames": 100_000,
                       "tracker.window_seconds": 3600.0, "tracker.max_gap_seconds": 3600.0}


def render_tracked(frames: Sequence[TrackedFrame], count: int, *, width: int = 320, height: int = 240
                   ) -> tuple[list[np.ndarray], list[int]]:
    """Renders of up to ``count`` frames spread evenly over the sequence (first and last included),
    coloured by canonical position through a ColorBox fitted to the first frame; returns the images
    and the indices of the frames they show."""
    from ..evaluation.pictures import render_meshes

    if not frames or count <= 0:
        return [], []
    picks = sorted(set(np.linspace(0, len(frames) - 1, min(count, len(frames))).round().astype(int).tolist()))
    box = ColorBox.around(frames[0].canonical_vertices) if len(frames[0].vertices) else ColorBox()
    meshes = [(frames[i].vertices, frames[i].faces, box.colors(frames[i].canonical_vertices)[:, :3])
              for i in picks]
    return render_meshes(meshes, width=width, height=height), picks


def _check_replayed_from(input_bag: Union[str, os.PathLike], replayed: Path, topic: Optional[str]) -> None:
    """The replayed bag's copy of the input topic must be the input's messages, byte for byte (a replay
    copies them): otherwise it was replayed from another bag. Raises EvaluationError / BagError."""
    import hashlib

    def digests(path: Union[str, os.PathLike], name: Optional[str]) -> tuple[str, list]:
        with open_input_bag(path, name, ignore=(GROUND_TRUTH_PREFIX,)) as bag:
            return bag.topic, [hashlib.sha1(raw).digest() for _, raw in bag.raw_messages()]

    name, source = digests(input_bag, topic)
    if name not in bag_topics(replayed):
        raise EvaluationError(f"replayed bag {replayed} has no copy of the input topic {name!r}: it is not a "
                              f"replay of {input_bag}")
    _, copied = digests(replayed, name)
    if not copied or copied != source[:len(copied)]:
        raise EvaluationError(f"replayed bag {replayed} holds no frame of {input_bag} (its {name} messages "
                              "differ from the input's): it was replayed from another bag")


def evaluate_bag(input_bag: Union[str, os.PathLike], out_dir: Union[str, os.PathLike], *,
                 replayed: Optional[Union[str, os.PathLike]] = None,
                 make_tracker: Optional[Callable[[], Any]] = None, config: Optional[NodeConfig] = None,
                 topic: Optional[str] = None, chamfer_points: int = 100_000, render_frames: int = 24,
                 render_size: tuple[int, int] = (320, 240), title: Optional[str] = None,
                 paper_for: Optional[Mapping[str, Mapping[str, float]]] = None, paper_note: str = "",
                 notes: Sequence[str] = (), progress: bool = False,
                 log: Optional[Callable[[str], None]] = None) -> Dict[str, Any]:
    """Score the tracker on a bag and write the report directory ``out_dir`` (see the module docstring).

    Without ``replayed``, the bag is replayed first into ``out_dir/replay`` with ``make_tracker()``
    (a fresh Tracker) and ``config`` (the node's configuration); with it, the replayed bag is read
    as it is (it must come from this input bag: frames are paired by header stamp). ``paper_for``:
    ground-truth source (``info['source']``, e.g. 'dfaust') -> reference numbers (normalised, per
    metric key) shown beside ours for such a bag, ``paper_note`` saying where they come from.
    ``render_frames``: frames in the GIF (0: no renders). Returns the report's JSON content.
    Raises BagError (bad bags), EvaluationError (existing ``out_dir``, unrelated bags), CheckpointError.
    """
    out = Path(out_dir)
    truth = read_ground_truth(input_bag)  # a bad input bag fails here, before anything is written
    with new_directory(out) as tmp:
        replay: Optional[ReplayResult] = None
        if replayed is None:
            if make_tracker is None or config is None:
                raise EvaluationError("evaluate_bag needs a replayed bag, or make_tracker and config to replay")
            replay = replay_bag(input_bag, tmp / "replay", make_tracker(), config, topic=topic,
                                progress=progress, log=log)
            replay.output_path = out / "replay"  # where it is once the report is complete
            replayed_path = tmp / "replay"
        else:
            replayed_path = Path(replayed)
            _check_replayed_from(input_bag, replayed_path, topic)
        frames, statuses = read_replayed(replayed_path)
        unit = truth.size_m() or 1.0
        result = score_sequence(frames, truth.frames, statuses, unit_m=unit, chamfer_points=chamfer_points)

        images: Dict[str, str] = write_plots(tmp, result, [
            {"processing_ms": s.processing_ms, "keyframe": s.keyframe} for s in statuses])
        renders, picks = render_tracked(frames, render_frames, width=render_size[0], height=render_size[1])
        if renders:
            from PIL import Image

            from ..evaluation.pictures import save_gif

            save_gif(tmp / "tracked_mesh.gif", renders, fps=8.0)
            Image.fromarray(renders[0]).save(tmp / "frame_first.png")
            Image.fromarray(renders[-1]).save(tmp / "frame_last.png")
            images = {"tracked mesh in correspondence colours (left: sensor view, right: side view)":
                      "tracked_mesh.gif", **images}
        source = truth.info.get("source", "unknown")
        paper = (paper_for or {}).get(source) if truth.frames else None
        title = title or f"Evaluation of {Path(input_bag).name} ({source})"
        lines = [f"input bag: `{input_bag}`" + (f" ({source}: {truth.info.get('sequence') or truth.info.get('family')})"
                                                 if truth.info else ""),
                 f"replayed bag: `{replayed if replayed is not None else out / 'replay'}`", *notes]
        if replay is not None:
            lines.append(f"replay: {replay.summary()}")
        if not truth.info.get("size_m") and truth.frames:
            lines.append("object size from the truth surface's bounding box at the first frame (no info topic)")
        markdown = report_markdown(title, result, paper=paper, paper_note=paper_note, notes=lines, images=images)
        (tmp / "report.md").write_text(markdown, encoding="utf-8")
        content = {
            "input_bag": str(input_bag), "replayed_bag": str(replayed) if replayed is not None else "replay",
            "ground_truth_info": truth.info, "paper": dict(paper) if paper else None,
            "replay": None if replay is None else {
                "frames": replay.frames, "meshes": replay.meshes, "keyframes": replay.keyframes,
                "resets": replay.resets, "rejected": replay.rejected, "tracker_errors": replay.tracker_errors,
                "seconds": replay.seconds, "topics": replay.topics},
            "summary": result["summary"], "frames": result["frames"], "files": sorted(images.values()),
        }
        write_json(tmp / "report.json", content)
    return content
