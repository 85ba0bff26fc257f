"""Window records from the synthetic world: a simulated depth camera watching a deforming shape.

Each record is what the tracker would see during one keyframe window — the object's points of every
frame, in the camera's optical frame, after the same filtering the tracker applies (voxel grid,
outlier removal) — together with exact ground truth at a few of its frames: occupancy of query
points, and the positions of the same material surface points (correspondences).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ..geometry import Normalization, PreprocessConfig, fit_normalization, preprocess
from .camera import LABEL_OBJECT, CameraIntrinsics, DepthCamera, SensorConfig, look_at
from .errors import DataError
from .ranges import MotionRanges
from .records import WindowRecord, save_shard
from .shape import DeformedShape
from .world import SHAPE_FAMILIES, random_shape

__all__ = ["SyntheticConfig", "synthetic_records", "window_record", "write_synthetic_shards",
           "random_camera", "with_iou_queries"]


@dataclass(frozen=True)
class SyntheticConfig:
    """How synthetic windows are drawn.

    families / family_weights: which shape families and how often (default: mostly humans).
    motions: restrict the human motions (None: all). ranges: motion amplitude/speed ranges.
    windows_per_shape: windows cut from one shape (different cameras and start times).
    width/height/fov_x_deg: the simulated camera (a 320x240 D435-like camera by default: the model
      sees a subsample of a few hundred points, so the full 640x480 adds nothing but time).
    distance / eye_height / yaw_spread: camera placement around the object (metres, metres,
      radians of azimuth either side of the object's front), with a small random roll.
    fps, jitter_std, drop_prob, window_seconds: the frame stream of a window.
    gt_frames: frames with ground truth per window (the keyframe, the last frame, others spread).
    occ_points: occupancy queries per GT frame: half uniform in the cube the model meshes at the
      keyframe (the keyframe normalisation with ``margin``, box edge ``box_size``), half near the
      surface (Gaussian offsets of 1 and 3 cm); corr_points: correspondence points.
    frame_points: points stored per frame at most (the trainer subsamples further).
    sensor: the sensor model (noise, dropouts, invalid pixels; background is rendered but only
      object pixels are kept, like a perfect segmentation before the tracker's own filtering).
    """

    families: tuple[str, ...] = tuple(SHAPE_FAMILIES)
    family_weights: tuple[float, ...] | None = (0.7, 0.1, 0.1, 0.1)
    motions: tuple[str, ...] | None = None
    ranges: MotionRanges = field(default_factory=MotionRanges)
    windows_per_shape: int = 3
    width: int = 320
    height: int = 240
    fov_x_deg: float = 69.0
    distance: tuple[float, float] = (1.6, 3.5)
    eye_height: tuple[float, float] = (0.6, 1.8)
    yaw_spread: float = np.pi
    max_roll_deg: float = 5.0
    fps: float = 30.0
    jitter_std: float = 0.003
    drop_prob: float = 0.1
    window_seconds: float = 1.0
    gt_frames: int = 4
    occ_points: int = 4096
    corr_points: int = 2048
    frame_points: int = 1024
    margin: float = 0.15
    box_size: float = 1.1
    sensor: SensorConfig = field(default_factory=SensorConfig)
    preprocess: PreprocessConfig = field(
        default_factory=lambda: PreprocessConfig(cluster=False, remove_plane=False, n_points=None))

    def __post_init__(self) -> None:
        if self.family_weights is not None and len(self.family_weights) != len(self.families):
            raise DataError("family_weights must have one weight per family")
        if self.windows_per_shape < 1 or self.gt_frames < 2:
            raise DataError("windows_per_shape must be >= 1 and gt_frames >= 2")
        if not 0 <= self.drop_prob < 1:
            raise DataError(f"drop_prob must be in [0, 1), got {self.drop_prob}")
        if not (self.fps > 0 and self.window_seconds > 0):
            raise DataError("fps and window_seconds must be > 0")


def random_camera(shape: DeformedShape, rng: np.random.Generator, cfg: SyntheticConfig,
                  t: float, azimuth: float | None = None) -> DepthCamera:
    """A camera at a random distance, height and azimuth (radians about the vertical; drawn in
    +-``cfg.yaw_spread`` unless given) around the shape, looking at its middle."""
    lo, hi = shape.bounds(t)
    centre = 0.5 * (lo + hi)
    distance = rng.uniform(*cfg.distance)
    drawn = rng.uniform(-cfg.yaw_spread, cfg.yaw_spread)
    azimuth = drawn if azimuth is None else float(azimuth)
    height = rng.uniform(*cfg.eye_height) * (shape.height / 1.75 if shape.height > 0 else 1.0)
    eye = centre + np.array([distance * np.cos(azimuth), distance * np.sin(azimuth), 0.0])
    eye[2] = height
    pose = look_at(eye, centre)
    roll = np.deg2rad(rng.uniform(-cfg.max_roll_deg, cfg.max_roll_deg))
    c, s = np.cos(roll), np.sin(roll)
    pose[:3, :3] = pose[:3, :3] @ np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    f = cfg.width / (2.0 * np.tan(np.deg2rad(cfg.fov_x_deg) / 2.0))
    intr = CameraIntrinsics(cfg.width, cfg.height, f, f, (cfg.width - 1) / 2.0,
                            (cfg.height - 1) / 2.0)
    return DepthCamera(intr, pose, cfg.sensor)


def _frame_times(rng: np.random.Generator, cfg: SyntheticConfig) -> np.ndarray:
    n = int(round(cfg.window_seconds * cfg.fps))
    times = np.arange(n + 1) / cfg.fps + rng.normal(0.0, cfg.jitter_std, size=n + 1)
    keep = rng.random(n + 1) >= cfg.drop_prob
    keep[0] = keep[-1] = True
    times = times[keep]
    times = np.maximum.accumulate(times)
    times = times - times[0]
    # strictly increasing even after jitter
    return np.unique(np.round(times, 6))


def _cube_queries(norm: Normalization, n: int, rng: np.random.Generator, cfg: SyntheticConfig) -> np.ndarray:
    """n points uniform in the cube the model meshes at the keyframe (edge ``cfg.box_size`` in the
    keyframe's normalised space ``norm``), in metres in the camera's optical frame."""
    return norm.to_metres(rng.uniform(-cfg.box_size / 2, cfg.box_size / 2, size=(n, 3)))


def window_record(shape: DeformedShape, camera: DepthCamera, t_start: float,
                  rng: np.random.Generator, cfg: SyntheticConfig) -> WindowRecord:
    """One window of ``shape`` seen by ``camera`` from ``t_start`` (seconds, shape time)."""
    rel = _frame_times(rng, cfg)
    frames = []
    for t in t_start + rel:
        render = camera.render_full(shape, float(t), rng)
        pts = render.cloud[render.labels == LABEL_OBJECT]
        kept = preprocess(pts, cfg.preprocess, rng).points
        if len(kept) > cfg.frame_points:
            kept = kept[rng.choice(len(kept), cfg.frame_points, replace=False)]
        frames.append(kept)
    n_frames = len(rel)
    gt = np.unique(np.round(np.linspace(0, n_frames - 1, cfg.gt_frames)).astype(int))
    gt_times = t_start + rel[gt]

    _, material = shape.sample_surface(cfg.corr_points, float(t_start), rng)
    corr_world = shape.trajectory(material, gt_times)  # (K, C, 3)
    occ_points, occ = [], []
    norm = fit_normalization(frames[0], padding=cfg.margin) if len(frames[0]) else None
    for t in gt_times:
        n_uniform = cfg.occ_points // 2
        if norm is not None:
            uniform = camera.to_world(_cube_queries(norm, n_uniform, rng, cfg))
        else:
            lo, hi = shape.bounds(float(t))
            uniform = rng.uniform(lo, hi, size=(n_uniform, 3))
        surf, _ = shape.sample_surface(cfg.occ_points - n_uniform, float(t), rng)
        sigma = np.where(rng.random(len(surf)) < 0.5, 0.01, 0.03)[:, None]
        near = surf + rng.normal(size=surf.shape) * sigma
        q = np.concatenate([uniform, near])
        occ_points.append(camera.to_optical(q))
        occ.append(shape.occupancy(q, float(t)))
    corr = camera.to_optical(corr_world).astype(np.float32)
    meta = {"shape": shape.describe(), "t_start": float(t_start),
            "occ_uniform": cfg.occ_points // 2,  # the first ones fill the meshing cube uniformly
            "camera_to_world": camera.camera_to_world.tolist(),
            "intrinsics": dataclasses.asdict(camera.intrinsics),
            "sensor": dataclasses.asdict(camera.config)}
    return WindowRecord(rel, frames, gt, occ_points=np.stack(occ_points).astype(np.float32),
                        occ=np.stack(occ), corr=corr, meta=meta)


def with_iou_queries(record: WindowRecord, n: int, seed: int | Sequence[int],
                     cfg: SyntheticConfig | None = None) -> WindowRecord:
    """The record with ``n`` fresh uniform occupancy queries per GT frame for IoU (the paper: 100k).

    A record's own uniform queries (``cfg.occ_points // 2``, 2048 by default) leave only ~10 points
    inside a person who fills ~0.5% of the meshing cube, so one window's IoU moves in steps of ~0.1.
    The queries fill the same cube as ``window_record``'s (the keyframe normalisation with
    ``cfg.margin``, edge ``cfg.box_size``); the shape is rebuilt from ``record.meta`` and labelled
    exactly at each GT frame's time. They are drawn from their own generator (``seed``), so the
    record's frames and the rest of a record stream stay as they were. The new queries replace the
    record's uniform ones (``meta["occ_uniform"]`` becomes ``n``); its near-surface queries follow.

    Raises DataError when the record's meta does not describe a synthetic shape and camera, or its
    keyframe has no points.
    """
    from .world import shape_from_description

    cfg = cfg or SyntheticConfig()
    if n < 1:
        raise DataError(f"with_iou_queries: n must be >= 1, got {n}")
    meta = record.meta
    try:
        shape = shape_from_description(meta["shape"])
        camera_to_world = np.asarray(meta["camera_to_world"], np.float64).reshape(4, 4)
        t_start = float(meta["t_start"])
        n_uniform = int(meta.get("occ_uniform", 0))
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"with_iou_queries: the record's meta does not describe a synthetic shape "
                        f"and camera ({exc!r})") from exc
    if not len(record.frame_points[0]):
        raise DataError("with_iou_queries: the keyframe has no points (no meshing cube)")
    norm = fit_normalization(record.frame_points[0], padding=cfg.margin)
    rng = np.random.default_rng(seed)
    points, labels = [], []
    for k, t in enumerate(t_start + record.gt_times):
        optical = _cube_queries(norm, n, rng, cfg)
        world = optical @ camera_to_world[:3, :3].T + camera_to_world[:3, 3]
        near_points = record.occ_points[k][n_uniform:] if record.occ is not None else np.zeros((0, 3))
        near = record.occ[k][n_uniform:] if record.occ is not None else np.zeros(0, bool)
        points.append(np.concatenate([optical, near_points]))
        labels.append(np.concatenate([shape.occupancy(world, float(t)), near]))
    return dataclasses.replace(record, occ_points=np.stack(points).astype(np.float32),
                               occ=np.stack(labels), meta={**meta, "occ_uniform": int(n)})


def synthetic_records(seed: int, count: int, cfg: SyntheticConfig | None = None
                      ) -> Iterator[WindowRecord]:
    """``count`` records drawn from the seed (the same seed gives the same records)."""
    cfg = cfg or SyntheticConfig()
    rng = np.random.default_rng(seed)
    made = 0
    while made < count:
        shape = random_shape(rng, list(cfg.families), weights=cfg.family_weights,
                             motions=list(cfg.motions) if cfg.motions else None,
                             ranges=cfg.ranges, duration=max(2.0, 2 * cfg.window_seconds))
        for _ in range(min(cfg.windows_per_shape, count - made)):
            t_start = float(rng.uniform(0.0, max(0.0, shape.duration - cfg.window_seconds)))
            camera = random_camera(shape, rng, cfg, t_start)
            record = window_record(shape, camera, t_start, rng, cfg)
            if len(record.frame_points[0]) == 0:
                continue  # the object was out of view at the keyframe
            made += 1
            yield record


def _write_one(args: tuple[Path, int, int, SyntheticConfig]) -> str:
    path, seed, count, cfg = args
    if path.exists():
        return f"{path}: exists, kept"
    save_shard(path, list(synthetic_records(seed, count, cfg)))
    return f"{path}: {count} windows"


def write_synthetic_shards(out_dir: str | os.PathLike, *, seed: int, shards: int,
                           per_shard: int, cfg: SyntheticConfig | None = None, workers: int = 1,
                           progress: bool = True) -> list[Path]:
    """Write ``shards`` shard files of ``per_shard`` windows; shard i is drawn from (seed, i).

    Existing shard files are kept (an interrupted run continues where it stopped); nothing is
    overwritten.
    """
    from tqdm import tqdm

    cfg = cfg or SyntheticConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(out / f"shard_{i:04d}.npz", seed * 100_003 + i, per_shard, cfg)
            for i in range(shards)]
    bar = tqdm(total=len(jobs), desc=f"shards -> {out}", disable=not progress)
    if workers <= 1:
        for job in jobs:
            bar.write(_write_one(job))
            bar.update(1)
    else:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(workers) as pool:
            for line in pool.imap_unordered(_write_one, jobs):
                bar.write(line)
                bar.update(1)
    bar.close()
    return [job[0] for job in jobs]
