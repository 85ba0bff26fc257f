"""Training and validation samples from window records: causal, irregular, normalised like the tracker."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from .errors import DataError
from .records import WindowRecord

__all__ = ["WindowSampling", "WindowDataset", "collate_windows", "keyframe_normalization"]


@dataclass(frozen=True)
class WindowSampling:
    """How samples are cut from records (counts are per sample).

    input_points: points per input frame given to the encoders (subsampled, with replacement only
      when a frame has fewer). min_frames/max_frames: frames per causal window, keyframe and target
      frame included; the frames in between are a random subset (irregular times, dropped frames).
    occ_points / corr_points: occupancy queries per GT time, correspondences per sample.
    window_seconds: seconds that map to normalised time 1. margin: the ``padding`` of
      ``occflow_ros.geometry.fit_normalization``: the keyframe points' longest bounding-box side spans
      1 - margin of the unit cube, leaving room for the unseen back and for motion in the window.
    shape_points: points of the keyframe given to the shape network (samples get ``shape_inputs``);
      0: the shape network reads the keyframe's ``input_points`` (``inputs[0]``).
    shape_gaps: in training, the share of samples whose keyframe points (``shape_inputs``) lose a
      band across the image (a straight strip 4-12 cm wide at a random angle through a random
      point, at most half the points): what a real depth camera leaves where a surface returns no
      light (dark cloth, hair, a strap) or hides a fold, so the shape network learns that a gap is
      not missing body depth (docs/training.md, "The D-FAUST view"). 0: off.
    """

    input_points: int = 512
    min_frames: int = 2
    max_frames: int = 12
    occ_points: int = 1024
    corr_points: int = 512
    window_seconds: float = 1.0
    margin: float = 0.15
    shape_points: int = 0
    shape_gaps: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.shape_gaps <= 1.0:
            raise DataError(f"shape_gaps must be in [0, 1], got {self.shape_gaps}")
        if not 1 <= self.input_points <= 100_000:
            raise DataError(f"input_points must be in [1, 100000], got {self.input_points}")
        if not 0 <= self.shape_points <= 100_000:
            raise DataError(f"shape_points must be in [0, 100000], got {self.shape_points}")
        if not 2 <= self.min_frames <= self.max_frames <= 256:
            raise DataError(f"need 2 <= min_frames <= max_frames <= 256, got "
                            f"{self.min_frames}, {self.max_frames}")
        if self.occ_points < 1 or self.corr_points < 1:
            raise DataError("occ_points and corr_points must be >= 1")
        if not self.window_seconds > 0:
            raise DataError(f"window_seconds must be > 0, got {self.window_seconds}")


def drop_band(points: np.ndarray, rng: np.random.Generator, width=(0.04, 0.12),
              keep: float = 0.5) -> np.ndarray:
    """The points (N, 3) of a camera's optical frame (z along the view) less a straight band
    across the image: the points within ``width`` (metres, drawn uniformly) of a line in the x-y
    plane at a random angle through a random point; the input itself where that would leave fewer
    than ``keep`` of them."""
    angle = rng.uniform(0.0, np.pi)
    across = np.array([np.cos(angle), np.sin(angle)])
    offset = points[:, :2] @ across
    centre = offset[rng.integers(len(points))]
    kept = points[np.abs(offset - centre) > 0.5 * rng.uniform(*width)]
    return kept if len(kept) >= keep * len(points) else points


def keyframe_normalization(points: np.ndarray, margin: float):
    """The normalisation the tracker uses at a keyframe (from ``occflow_ros.geometry``)."""
    from ..geometry import fit_normalization

    return fit_normalization(points, padding=margin)


class WindowDataset(torch.utils.data.Dataset):
    """Samples of causal windows; sample i is a pure function of (seed, i), whatever the workers.

    train=True: index i draws a random record, a random GT frame as target and a random subset of the
    frames before it (so an epoch is as long as ``length`` says). train=False: index i is record i,
    the target is its last GT frame (the window's end), the frames are spread evenly up to it.
    Each sample (dict of numpy arrays, normalised space of its keyframe):
      inputs (T, N, 3) float32, times (T,) float32, occ0_points (M, 3), occ0 (M,) float32,
      occt_points (M, 3), occt (M,), t () float32 target time, k () int64 index of the target frame,
      corr0 (C, 3), corrt (C, 3), has_corr () bool, scale () float32 metres per normalised unit,
      corr_times (K,), corr_targets (K, C, 3), corr_mask (K,) bool: the correspondences at every
      ground-truth time up to the target (K = ground-truth frames after the keyframe; masked
      entries are padding). With ``sampling.shape_points`` also shape_inputs (N_s, 3): the
      keyframe's points for the shape network.
      With poses=True also poses (T, 4, 4) float32: each input frame's rigid pose relative to the
      keyframe, by ICP of the input points (``occflow_ros.geometry.frame_poses``), for a velocity
      field with the rigid prior.
    """

    def __init__(self, records: Sequence[WindowRecord], sampling: WindowSampling, *, seed: int = 0,
                 train: bool = True, length: int | None = None, poses: bool = False) -> None:
        usable = [r for r in records if len(r.frame_points[0]) > 0 and r.occ is not None]
        if not usable:
            raise DataError("no usable records (each needs keyframe points and occupancy labels)")
        self.records = usable
        self.sampling = sampling
        self.seed = seed
        self.train = train
        self.length = length if length is not None else len(usable)
        self.poses = poses

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, int(index), 1 if self.train else 0])
        if self.train:
            record = self.records[int(rng.integers(len(self.records)))]
        else:
            record = self.records[index % len(self.records)]
        return self.sample(record, rng)

    def _frames_before(self, record: WindowRecord, g_frame: int, rng: np.random.Generator
                       ) -> np.ndarray:
        s = self.sampling
        candidates = np.array([i for i in range(1, g_frame) if len(record.frame_points[i]) > 0])
        if self.train:
            want = int(rng.integers(s.min_frames, s.max_frames + 1)) - 2
            want = min(want, len(candidates))
            middle = np.sort(rng.choice(candidates, size=want, replace=False)) if want > 0 \
                else np.zeros(0, np.int64)
        else:
            want = min(s.max_frames - 2, len(candidates))
            middle = candidates[np.round(np.linspace(0, len(candidates) - 1, want)).astype(int)] \
                if want > 0 else np.zeros(0, np.int64)
        frames = [0, *middle.tolist()]
        if g_frame != 0:
            frames.append(g_frame)
        return np.asarray(frames, dtype=np.int64)

    def sample(self, record: WindowRecord, rng: np.random.Generator) -> dict[str, np.ndarray]:
        s = self.sampling
        n_gt = len(record.gt_frames)
        if self.train:
            gi = int(rng.integers(1, n_gt)) if n_gt > 1 else 0
        else:
            gi = n_gt - 1
        g_frame = int(record.gt_frames[gi])
        frames = self._frames_before(record, g_frame, rng)
        if len(record.frame_points[g_frame]) == 0:
            frames = frames[:-1] if len(frames) > 1 else frames
        norm = keyframe_normalization(record.frame_points[0], s.margin)

        inputs = np.empty((len(frames), s.input_points, 3), np.float32)
        for j, f in enumerate(frames):
            pts = record.frame_points[f]
            idx = rng.choice(len(pts), size=s.input_points, replace=len(pts) < s.input_points)
            inputs[j] = norm.to_normalized(pts[idx])
        shape_inputs = None
        if s.shape_points:
            pts = record.frame_points[0]
            if self.train and s.shape_gaps and rng.random() < s.shape_gaps:
                pts = drop_band(pts, rng)
            idx = rng.choice(len(pts), size=s.shape_points, replace=len(pts) < s.shape_points)
            shape_inputs = norm.to_normalized(pts[idx]).astype(np.float32)
        times = (record.frame_times[frames] / s.window_seconds).astype(np.float32)
        t = np.float32(record.frame_times[g_frame] / s.window_seconds)

        def pick(n_total: int, n: int) -> np.ndarray:
            return rng.choice(n_total, size=n, replace=n_total < n)

        m = record.occ_points.shape[1]
        i0, it = pick(m, s.occ_points), pick(m, s.occ_points)
        out = {
            "inputs": inputs,
            "times": times,
            "occ0_points": norm.to_normalized(record.occ_points[0][i0]),
            "occ0": record.occ[0][i0].astype(np.float32),
            "occt_points": norm.to_normalized(record.occ_points[gi][it]),
            "occt": record.occ[gi][it].astype(np.float32),
            "t": t,
            "k": np.int64(len(frames) - 1),  # the code of the window ending at the target
            "scale": np.float32(norm.scale),
        }
        if shape_inputs is not None:
            out["shape_inputs"] = shape_inputs
        if self.poses:
            from ..geometry import frame_poses

            out["poses"] = frame_poses(list(inputs))
        # Correspondences at every ground-truth time up to the target (one solve carries the
        # keyframe points to all of them): entry k is GT frame k + 1; entries after the target
        # are padding (corr_mask False).
        k_all = max(n_gt - 1, 1)
        corr_mask = np.zeros(k_all, bool)
        corr_mask[:max(gi, 1)] = gi > 0
        corr_times = np.full(k_all, t, np.float32)
        corr_times[:gi] = record.frame_times[record.gt_frames[1:gi + 1]] / s.window_seconds
        targets = np.zeros((k_all, s.corr_points, 3), np.float32)
        if record.corr is not None:
            ic = pick(record.corr.shape[1], s.corr_points)
            out["corr0"] = norm.to_normalized(record.corr[0][ic])
            out["corrt"] = norm.to_normalized(record.corr[gi][ic])
            for k in range(gi):
                targets[k] = norm.to_normalized(record.corr[k + 1][ic])
            out["has_corr"] = np.bool_(True)
        else:
            out["corr0"] = np.zeros((s.corr_points, 3), np.float32)
            out["corrt"] = np.zeros((s.corr_points, 3), np.float32)
            out["has_corr"] = np.bool_(False)
            corr_mask[:] = False
        out.update(corr_times=corr_times, corr_targets=targets, corr_mask=corr_mask)
        return out


def collate_windows(samples: Sequence[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
    """Stack samples into a batch, padding windows to the longest with ``frame_mask``."""
    t_max = max(s["inputs"].shape[0] for s in samples)
    n = samples[0]["inputs"].shape[1]
    batch = len(samples)
    inputs = np.zeros((batch, t_max, n, 3), np.float32)
    times = np.zeros((batch, t_max), np.float32)
    frame_mask = np.zeros((batch, t_max), bool)
    for b, s in enumerate(samples):
        t = s["inputs"].shape[0]
        inputs[b, :t] = s["inputs"]
        times[b, :t] = s["times"]
        times[b, t:] = s["times"][-1]
        frame_mask[b, :t] = True
    out = {"inputs": torch.from_numpy(inputs), "times": torch.from_numpy(times),
           "frame_mask": torch.from_numpy(frame_mask)}
    if "poses" in samples[0]:
        poses = np.tile(np.eye(4, dtype=np.float32), (batch, t_max, 1, 1))
        for b, s in enumerate(samples):
            poses[b, :len(s["poses"])] = s["poses"]
            poses[b, len(s["poses"]):] = s["poses"][-1]
        out["poses"] = torch.from_numpy(poses)
    for key in samples[0]:
        if key in ("inputs", "times", "poses"):
            continue
        values = [np.asarray(s[key]) for s in samples]
        if key in ("corr_times", "corr_targets", "corr_mask"):
            # records may hold different numbers of ground-truth frames: pad (masked out)
            k = max(v.shape[0] for v in values)
            values = [np.concatenate([v, np.repeat(v[-1:], k - v.shape[0], axis=0)])
                      if key != "corr_mask" else np.pad(v, (0, k - v.shape[0]))
                      for v in values]
        out[key] = torch.from_numpy(np.stack(values))
    return out
