"""Depth streams with per-frame ground truth (dense surface points with fixed ids, occupancy), ready for a bag.

Two sources: a shape of the synthetic 4D world seen by the simulated depth camera
(:func:`synthetic_ground_truth`), and a D-FAUST sequence seen by a simulated single-view camera
(:func:`dfaust_ground_truth`). Each yields a JSON-able ``info`` dict and :class:`GroundTruthFrame`s,
everything in the camera's optical frame (x right, y down, z forward), metres — the frame the depth
cloud is in, so truth and reconstruction compare without any transform. ``occflow_ros.ros``
writes them into a rosbag2 bag (``occflow-make-bag``). No ROS here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Tuple

import numpy as np

from .camera import LABEL_OBJECT, DepthCamera, SensorConfig, realsense_d435, stream, view_of
from .dfaust import (
    DFAUST_FPS,
    DFaustSequence,
    dfaust_camera,
    dfaust_depth_noise,
    dfaust_visible_rows,
)
from .errors import DataError
from .ranges import MotionRanges
from .world import SHAPE_FAMILIES, make_shape, random_shape

__all__ = ["BACKGROUNDS", "GROUND_TRUTH_LAYOUT", "GroundTruthFrame", "dfaust_ground_truth",
           "synthetic_ground_truth"]

GROUND_TRUTH_LAYOUT = "occflow_ros.ground_truth/1"
BACKGROUNDS = ("none", "floor", "room")
DEFAULT_START_NS = 1_700_000_000 * 10**9  # a plausible epoch stamp (2023-11-14), like a live camera's


@dataclass
class GroundTruthFrame:
    """One depth frame with its truth, optical frame, metres.

    stamp_ns: capture time, integer nanoseconds (the header stamp and bag time).
    cloud: (H, W, 3) float32 organized depth cloud (NaN where there is no depth), or (N, 3) float32
      unorganized points (a view of scanned points, as for D-FAUST).
    surface: (S, 3) float32 surface points of fixed material points; surface_ids: (S,) uint32, the
      same ids every frame: the row with id i is the same material point at every time (the
      ground-truth correspondences).
    occ_points: (M, 3) float32 query points and occ_inside: (M,) bool exact occupancy there, or None.
    """

    stamp_ns: int
    cloud: np.ndarray
    surface: np.ndarray
    surface_ids: np.ndarray
    occ_points: np.ndarray | None = None
    occ_inside: np.ndarray | None = None


def _check_count(name: str, value: int, lo: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo:
        raise DataError(f"{name} must be an integer >= {lo}, got {value!r}")


def synthetic_ground_truth(seed: int, *, family: str | None = None, motion: str | None = None,
                           duration: float = 2.0, fps: float = 30.0, width: int = 320, height: int = 240,
                           distance: float = 2.5, azimuth: float = 0.0, background: str = "floor",
                           segment: bool = False, surface_points: int = 20_000,
                           occupancy_points: int = 10_000, amplitude: Tuple[float, float] | None = None,
                           start_ns: int = DEFAULT_START_NS
                           ) -> Tuple[dict, Iterator[GroundTruthFrame]]:
    """A deforming shape of the synthetic world watched by a static simulated depth camera.

    ``seed`` draws the shape (``family``/``motion`` fixed, else random as for training data; the same
    arguments give the same stream bit for bit). Camera: D435-like intrinsics at ``width`` x
    ``height`` (640 x 480 or smaller), ``distance`` metres from the shape's middle at ``azimuth``
    radians (0: in front of a human), with the default sensor model (noise ~ k z^2, quantisation,
    dropouts, holes). ``background``: 'floor' (the object stands on it; the node's default
    ``tracker.preprocess.remove_plane`` takes it away), 'room' (floor and a back wall: needs an ROI)
    or 'none' (the object alone); ``segment``: NaN on every pixel that is not the object, like a
    perfect segmentation. ``fps`` frames over
    ``duration`` seconds, stamps from ``start_ns``.
    Truth per frame: ``surface_points`` material points sampled uniformly by area at the first
    frame, at their true positions (ids 0..S-1); ``occupancy_points`` (0: none) uniform queries in
    the shape's bounding box at that time, grown by 5 % of its longest side per side, with exact
    occupancy. ``info['size_m']``: the longest side of the world bounding box at the first frame.
    Raises DataError / ShapeError / CameraError naming the bad setting.
    """
    _check_count("surface_points", surface_points, 1)
    _check_count("occupancy_points", occupancy_points, 0)
    if background not in BACKGROUNDS:
        raise DataError(f"background must be one of {BACKGROUNDS}, got {background!r}")
    if not (np.isfinite(duration) and duration > 0 and np.isfinite(fps) and fps > 0):
        raise DataError(f"duration and fps must be > 0, got {duration!r} and {fps!r}")
    rng = np.random.default_rng(seed)
    ranges = MotionRanges(amplitude=tuple(amplitude)) if amplitude is not None else None
    if family is None:
        if motion is not None:
            raise DataError("a motion needs its family")
        shape = random_shape(rng, list(SHAPE_FAMILIES), weights=(0.7, 0.1, 0.1, 0.1), ranges=ranges,
                             duration=max(2.0, float(duration)))
    else:
        shape = make_shape(family, int(rng.integers(0, 2**62)), motion=motion, ranges=ranges,
                           global_motion=True, duration=max(2.0, float(duration)))
    sensor = SensorConfig(floor=background != "none", wall_distance=2.0 if background == "room" else None)
    camera = DepthCamera(realsense_d435(width, height), view_of(shape, distance, azimuth), sensor)
    lo, hi = shape.bounds(0.0)
    size = float((hi - lo).max())
    _, material = shape.sample_surface(surface_points, 0.0, rng)
    ids = np.arange(surface_points, dtype=np.uint32)
    description = shape.describe()
    info = {
        "layout": GROUND_TRUTH_LAYOUT, "source": "synthetic", "seed": int(seed),
        "family": description.get("family"), "motion": description.get("motion"),
        "size_m": size, "fps": float(fps), "duration_s": float(duration),
        "camera": {"width": width, "height": height, "intrinsics": camera.intrinsics.matrix().tolist(),
                   "camera_to_world": camera.camera_to_world.tolist(), "background": background,
                   "segmented": bool(segment)},
        "surface_points": int(surface_points), "occupancy_points": int(occupancy_points),
        "shape": description,
    }

    def frames() -> Iterator[GroundTruthFrame]:
        for frame in stream(shape, camera, fps=fps, duration=duration, rng=rng):
            cloud = frame.cloud
            if segment:
                cloud = cloud.copy()
                cloud[frame.labels != LABEL_OBJECT] = np.nan
            surface = camera.to_optical(shape.trajectory(material, np.array([frame.t]))[0])
            occ_points = occ_inside = None
            if occupancy_points:
                lo_t, hi_t = shape.bounds(frame.t, margin=0.05 * size)
                q = rng.uniform(lo_t, hi_t, size=(occupancy_points, 3))
                occ_inside = shape.occupancy(q, frame.t).astype(bool)
                occ_points = camera.to_optical(q).astype(np.float32)
            yield GroundTruthFrame(start_ns + int(round(frame.stamp * 1e9)), cloud,
                                   surface.astype(np.float32), ids, occ_points, occ_inside)

    return info, frames()


def dfaust_ground_truth(seq: DFaustSequence, *, seed: int = 0, distance: float = 2.5, azimuth: float = 0.0,
                        eye_height: float = 0.4, noise_k: float = 0.0015, surface_points: int = 0,
                        fps: float = DFAUST_FPS, start_ns: int = DEFAULT_START_NS
                        ) -> Tuple[dict, Iterator[GroundTruthFrame]]:
    """A D-FAUST sequence seen by a simulated single-view depth camera, with the registrations as truth.

    The camera and its visibility are :func:`~occflow_ros.data.dfaust.dfaust_window_record`'s: a
    camera ``distance`` m from the body's frame-0 centre at ``azimuth``, ``eye_height`` m above it;
    each frame it sees the points its pixel grid sees (one per pixel), with depth noise
    ``noise_k * z^2`` (``seed`` draws it): an unorganized (N, 3) cloud of everything visible (the
    tracker filters it as it filters a camera's cloud). Frames at ``fps`` (D-FAUST: 60).
    Truth: the registration rows themselves (``surface_points`` of them drawn once, 0: all), id =
    row, so the same id is the same body point in every frame; occupancy when the sequence has
    points_seq/. ``info['size_m']`` is frame 0's ``scale`` (the paper's unit of length).
    """
    _check_count("surface_points", surface_points, 0)
    rng = np.random.default_rng(seed)
    pose = dfaust_camera(seq, distance=distance, azimuth=azimuth, eye_height=eye_height)
    rot, origin = pose[:3, :3], pose[:3, 3]
    n_rows = seq.points.shape[1]
    if surface_points and surface_points < n_rows:
        rows = np.sort(rng.choice(n_rows, size=surface_points, replace=False))
    else:
        rows = np.arange(n_rows)
    info: dict[str, Any] = {
        "layout": GROUND_TRUTH_LAYOUT, "source": "dfaust", "sequence": seq.name,
        "size_m": float(seq.scale[0]), "fps": float(fps), "frames": seq.frames,
        "camera": {"camera_to_world": pose.tolist(), "distance_m": distance, "azimuth_rad": azimuth,
                   "eye_height_m": eye_height, "noise_k": noise_k, "organized": False},
        "surface_points": int(len(rows)),
        "occupancy_points": int(seq.occ.shape[1]) if seq.occ is not None else 0,
    }

    def to_optical(p: np.ndarray) -> np.ndarray:
        return ((np.asarray(p, np.float64) - origin) @ rot).astype(np.float32)

    def frames() -> Iterator[GroundTruthFrame]:
        for t in range(seq.frames):
            visible = dfaust_visible_rows(seq.points[t], pose)
            cloud = dfaust_depth_noise(to_optical(seq.points[t][visible]), rng, noise_k)
            occ_points = occ_inside = None
            if seq.occ is not None:
                occ_points, occ_inside = to_optical(seq.occ_points[t]), seq.occ[t].astype(bool)
            yield GroundTruthFrame(start_ns + int(round(t * 1e9 / fps)), cloud.astype(np.float32),
                                   to_optical(seq.points[t][rows]), rows.astype(np.uint32),
                                   occ_points, occ_inside)

    return info, frames()
