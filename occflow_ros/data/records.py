"""Window records: one keyframe window of input frames with its ground truth, stored in npz shards.

A record is what the simulated (or a real, annotated) depth camera saw during one window, plus exact
ground truth at some of its frames. Everything is in metres in the SENSOR frame (the camera's optical
frame, as the node receives clouds), so training sees exactly what tracking will see. Normalisation
to the model's unit cube happens later, from the keyframe's points, the same way at training and at
run time.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from .errors import DataError

__all__ = ["WindowRecord", "save_shard", "load_shard", "load_records"]

SHARD_FORMAT = "occflow_ros.window_shard"
SHARD_VERSION = 1


@dataclass
class WindowRecord:
    """One window: frames with times, and exact ground truth at some frames.

    frame_times: (F,) float64 seconds since the keyframe; frame_times[0] == 0, increasing.
    frame_points: F arrays (n_f, 3) float32, metres, sensor frame, valid points only (n_f may be 0).
    gt_frames: (K,) int64 indices into the frames that carry ground truth; gt_frames[0] == 0.
    occ_points: (K, M, 3) float32 metres, query points at each GT frame's time (or None).
    occ: (K, M) bool, True inside the object (or None).
    corr: (K, C, 3) float32 metres: the same C material surface points at each GT frame's time,
      i.e. ground-truth correspondences (or None when unknown).
    surface: (K, S, 3) float32 metres: surface samples at each GT time for Chamfer (or None; corr
      doubles as surface samples when it is given).
    meta: JSON-serialisable provenance (shape family, motion, seed, camera, ...).
    """

    frame_times: np.ndarray
    frame_points: list[np.ndarray]
    gt_frames: np.ndarray
    occ_points: np.ndarray | None = None
    occ: np.ndarray | None = None
    corr: np.ndarray | None = None
    surface: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.frame_times = np.asarray(self.frame_times, dtype=np.float64)
        self.gt_frames = np.asarray(self.gt_frames, dtype=np.int64)
        f = self.frame_times.shape[0]
        if self.frame_times.ndim != 1 or f == 0:
            raise DataError(f"frame_times must be (F,) with F >= 1, got {self.frame_times.shape}")
        if self.frame_times[0] != 0.0 or np.any(np.diff(self.frame_times) <= 0):
            raise DataError("frame_times must start at 0 and increase strictly")
        if len(self.frame_points) != f:
            raise DataError(f"{len(self.frame_points)} point arrays for {f} frame times")
        self.frame_points = [np.asarray(p, dtype=np.float32).reshape(-1, 3) for p in self.frame_points]
        k = self.gt_frames.shape[0]
        if k == 0 or self.gt_frames[0] != 0 or np.any(np.diff(self.gt_frames) <= 0) \
                or self.gt_frames[-1] >= f:
            raise DataError(f"gt_frames must start at 0, increase and index the {f} frames, "
                            f"got {self.gt_frames.tolist()}")
        for name, ndim in (("occ_points", 3), ("occ", 2), ("corr", 3), ("surface", 3)):
            value = getattr(self, name)
            if value is None:
                continue
            value = np.asarray(value, dtype=bool if name == "occ" else np.float32)
            if value.ndim != ndim or value.shape[0] != k:
                raise DataError(f"{name} must have {ndim} dims with {k} GT frames first, "
                                f"got {value.shape}")
            setattr(self, name, value)
        if (self.occ_points is None) != (self.occ is None):
            raise DataError("occ_points and occ must be given together")
        if self.occ is not None and self.occ.shape != self.occ_points.shape[:2]:
            raise DataError(f"occ {self.occ.shape} does not match occ_points {self.occ_points.shape}")

    @property
    def gt_times(self) -> np.ndarray:
        return self.frame_times[self.gt_frames]

    def surface_at(self, k: int) -> np.ndarray | None:
        """Surface samples (S, 3) at GT frame k: ``surface`` if given, else the correspondences."""
        if self.surface is not None:
            return self.surface[k]
        return None if self.corr is None else self.corr[k]


def _pack(records: Sequence[WindowRecord]) -> dict[str, np.ndarray]:
    arrays: dict[str, list] = {
        "frame_times": [], "frame_counts": [], "points": [], "n_frames": [], "gt_frames": [],
        "n_gt": [], "meta": []}
    optional = {"occ_points": [], "occ": [], "corr": [], "surface": []}
    for r in records:
        arrays["n_frames"].append(len(r.frame_times))
        arrays["frame_times"].append(r.frame_times)
        arrays["frame_counts"].extend(len(p) for p in r.frame_points)
        arrays["points"].extend(r.frame_points)
        arrays["n_gt"].append(len(r.gt_frames))
        arrays["gt_frames"].append(r.gt_frames)
        arrays["meta"].append(json.dumps(r.meta, sort_keys=True))
        for name in optional:
            optional[name].append(getattr(r, name))
    out = {
        "format": np.array(SHARD_FORMAT), "version": np.array(SHARD_VERSION),
        "n_frames": np.asarray(arrays["n_frames"], np.int64),
        "frame_times": np.concatenate(arrays["frame_times"]),
        "frame_counts": np.asarray(arrays["frame_counts"], np.int64),
        "points": np.concatenate(arrays["points"]) if arrays["points"] else np.zeros((0, 3), np.float32),
        "n_gt": np.asarray(arrays["n_gt"], np.int64),
        "gt_frames": np.concatenate(arrays["gt_frames"]),
        "meta": np.asarray(arrays["meta"]),
    }
    for name, values in optional.items():
        present = [v is not None for v in values]
        if not any(present):
            continue
        if not all(present):
            raise DataError(f"either every record of a shard has {name} or none does")
        shapes = {v.shape[1:] for v in values}
        if len(shapes) != 1:
            raise DataError(f"{name} must have the same per-frame shape in every record of a shard, "
                            f"got {sorted(shapes)}")
        out[name] = np.concatenate(values)
    return out


def save_shard(path: str | os.PathLike, records: Sequence[WindowRecord], *,
               overwrite: bool = False) -> Path:
    """Write records to one .npz shard, atomically; refuses to replace a file unless ``overwrite``."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise DataError(f"{path}: exists; refusing to overwrite it")
    if not records:
        raise DataError(f"{path}: no records to write")
    arrays = _pack(records)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.stem + ".", suffix=".tmp.npz", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_shard(path: str | os.PathLike) -> list[WindowRecord]:
    """Read the records of one shard; raises DataError naming the file on any problem."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such shard file")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise DataError(f"{path}: unreadable shard ({type(e).__name__}: {e})") from None
    if str(data.get("format", "")) != SHARD_FORMAT:
        raise DataError(f"{path}: not an occflow_ros window shard")
    if int(data.get("version", -1)) != SHARD_VERSION:
        raise DataError(f"{path}: shard version {data.get('version')}, expected {SHARD_VERSION}")
    records = []
    f_off = p_off = g_off = 0
    counts = data["frame_counts"]
    for i, (nf, ng) in enumerate(zip(data["n_frames"], data["n_gt"])):
        times = data["frame_times"][f_off:f_off + nf]
        pts = []
        for c in counts[f_off:f_off + nf]:
            pts.append(data["points"][p_off:p_off + c])
            p_off += c
        kwargs = {name: data[name][g_off:g_off + ng] for name in ("occ_points", "occ", "corr",
                                                                   "surface") if name in data}
        records.append(WindowRecord(times, pts, data["gt_frames"][g_off:g_off + ng],
                                    meta=json.loads(str(data["meta"][i])), **kwargs))
        f_off += nf
        g_off += ng
    return records


def load_records(paths: Iterable[str | os.PathLike]) -> list[WindowRecord]:
    """Records of every shard given, or of every *.npz in a directory given, in sorted order."""
    files: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            found = sorted(p.glob("*.npz"))
            if not found:
                raise DataError(f"{p}: directory holds no .npz shards")
            files.extend(found)
        else:
            files.append(p)
    records: list[WindowRecord] = []
    for f in files:
        records.extend(load_shard(f))
    return records
