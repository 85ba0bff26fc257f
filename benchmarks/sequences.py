"""The benchmark's inputs: a synthetic person's 1 s window and the D-FAUST sequence, with truth at every frame.

Both are ``occflow_ros.data.records.WindowRecord``s in the camera's optical frame (metres): per frame
the object's points a depth camera saw (after the filtering the synthetic records get), and at every
frame the same material surface points (ground-truth correspondences, also the Chamfer reference).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from occflow_ros.data import DepthCamera, SensorConfig, make_shape, realsense_d435, view_of
from occflow_ros.data.dfaust import DFAUST_FPS, dfaust_window_record, load_dfaust_sequence
from occflow_ros.data.records import WindowRecord
from occflow_ros.data.synthetic import SyntheticConfig, window_record
from occflow_ros.geometry import PreprocessConfig

from harness import BenchError

__all__ = ["Sequence", "synthetic_person", "dfaust_sequence", "object_size", "OBJECT_FILTERING"]

#: How the object's points of each frame are filtered when the windows are made: the records' own
#: filtering (voxel grid 1 cm, statistical outliers) WITHOUT dominant-plane removal. The points are
#: the object's alone (the camera's object labels, or the body's visible points), so the "dominant
#: plane" RANSAC finds there is part of the body (the front of the torso): with plane removal on
#: (PreprocessConfig's default since it was made the default) about 30 % of a person's points go.
OBJECT_FILTERING = PreprocessConfig(cluster=False, n_points=None, remove_plane=False)


@dataclass
class Sequence:
    """A named window record, its object size (metres; the unit of the paper's normalised lengths)
    and a one-line description for the report."""

    name: str
    record: WindowRecord
    size_m: float
    description: str

    @property
    def frames(self) -> int:
        return len(self.record.frame_times)


def object_size(record: WindowRecord) -> float:
    """The object's size in metres: the longest side of the ground-truth bounding box at the keyframe.

    For D-FAUST this is the files' own ``scale`` (recorded in ``meta['normalization']``); otherwise the
    bounding box of the keyframe's ground-truth surface points. Raises BenchError without truth.
    """
    norm = record.meta.get("normalization")
    if norm and "scale" in norm:
        return float(norm["scale"])
    surface = record.surface_at(0)
    if surface is None or len(surface) == 0:
        raise BenchError("the record has no ground-truth surface at its first frame")
    return float((surface.max(0) - surface.min(0)).max())


def _require_truth_everywhere(record: WindowRecord, name: str) -> None:
    if record.corr is None:
        raise BenchError(f"{name}: the record has no ground-truth correspondences")


def synthetic_person(seed: int = 1001, motion: str = "jumping_jacks", *, frames: int = 30,
                     fps: float = 30.0, t_start: float = 0.3, width: int = 640, height: int = 480,
                     corr_points: int = 4096) -> Sequence:
    """``frames`` frames at ``fps`` of a synthetic person (``make_shape("human", seed, motion)``) seen by
    a D435-like ``width`` x ``height`` camera 2.4 m away with RealSense-like noise, dropouts and holes,
    floor and back wall (object pixels kept, filtered like the training records), starting at the
    shape's time ``t_start`` s; no jitter, no dropped frames; truth (``corr_points`` material points)
    at every frame."""
    shape = make_shape("human", seed, motion=motion, duration=t_start + frames / fps + 1.0)
    camera = DepthCamera(realsense_d435(width, height), view_of(shape, 2.4, 0.35), SensorConfig())
    cfg = SyntheticConfig(fps=float(fps), window_seconds=(frames - 1) / fps, jitter_std=0.0,
                          drop_prob=0.0, gt_frames=frames, occ_points=2, corr_points=corr_points,
                          width=width, height=height, preprocess=OBJECT_FILTERING)
    record = window_record(shape, camera, t_start, np.random.default_rng(seed), cfg)
    if len(record.frame_times) != frames:
        raise BenchError(f"synthetic window has {len(record.frame_times)} frames, expected {frames}")
    size = object_size(record)
    return Sequence(
        name="synthetic person", record=record, size_m=size,
        description=(f"`make_shape('human', {seed}, motion='{motion}')`, {frames} frames at "
                     f"{fps:g} Hz ({(frames - 1) / fps:.3f} s) from t = {t_start:g} s, a "
                     f"{width}x{height} D435-like camera 2.4 m away (azimuth 0.35 rad), default "
                     f"sensor flaws; object pixels filtered (voxel 1 cm, outliers, no plane removal), "
                     f"<= 1024 points per frame; {corr_points} truth points; "
                     f"object size {size:.3f} m"))


def dfaust_sequence(path: str | Path, *, seed: int = 0) -> Sequence:
    """The D-FAUST sequence's frames at 60 Hz seen by one simulated depth camera 2.5 m in front of the
    body (hidden-point removal, depth noise 1.5 mm at 1 m, the tracker's filtering; occflow_ros.data.
    dfaust.dfaust_window_record), with 4096 of the registration's points as truth at every frame."""
    path = Path(path)
    if not path.is_dir():
        raise BenchError(f"D-FAUST sequence folder {path} does not exist (pass --dfaust PATH, or "
                         "--no-dfaust to skip it)")
    seq = load_dfaust_sequence(path)
    record = dfaust_window_record(seq, np.random.default_rng(seed), filtering=OBJECT_FILTERING)
    _require_truth_everywhere(record, path.name)
    size = object_size(record)
    return Sequence(
        name="D-FAUST", record=record, size_m=size,
        description=(f"`{path.name}` (real D-FAUST registrations), {seq.frames} frames at "
                     f"{DFAUST_FPS:g} Hz ({(seq.frames - 1) / DFAUST_FPS:.3f} s), one simulated depth "
                     f"view 2.5 m in front (hidden-point removal, noise 1.5 mm at 1 m), filtered like the "
                     f"synthetic one; <= 1024 points per frame; 4096 registration points as truth; "
                     f"object size {size:.3f} m "
                     "(the files' scale)"))
