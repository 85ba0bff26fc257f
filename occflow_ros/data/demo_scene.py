"""The demo's scene: a seeded synthetic person seen by a RealSense-like camera, pre-rendered, with truth.

A :class:`DemoScene` renders every frame of the stream once, up front (a 640x480 frame takes ~40 ms
here, more than a 30 Hz period), and keeps each one as what a RealSense driver has before it makes a
cloud: a uint16 depth image in millimetres (0 = no depth) and a bit mask of the person's pixels
(for pictures). :meth:`DemoScene.cloud` rebuilds the organized (H, W, 3) float32 cloud in ~2 ms. The
ground truth of frame k is the shape's time ``times[k]``, the static camera pose and the shape itself,
which gives any material point's position at any time (``Shape4D.trajectory``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from ..data import (
    HUMAN_MOTIONS,
    LABEL_OBJECT,
    DepthCamera,
    SensorConfig,
    make_shape,
    realsense_d435,
    stream,
    view_of,
)
from ..data.shape import Shape4D
from .errors import DataError

__all__ = ["DemoSceneError", "SceneConfig", "DemoScene"]

_MM = 1000.0


class DemoSceneError(DataError):
    """An invalid demo scene setting; the message names the key and the allowed range."""


@dataclass(frozen=True)
class SceneConfig:
    """What the demo's camera sees. Times in seconds, lengths in metres.

    seed: the person's seed (body and motion parameters, ``make_shape("human", seed, ...)``) and the
      sensor's noise stream. motion: a key of ``HUMAN_MOTIONS``. seconds / fps / jitter_std: the
      stream (frame k captured at ``k / fps`` plus Gaussian jitter, clipped to 0.4 periods).
    width / height: the D435-like depth image (focal length scales with the width). distance /
      azimuth: the camera, ``distance`` in front of the person's middle (horizontally), ``azimuth``
      radians off the direction the person faces. The sensor: RealSense-like noise, dropouts,
      holes, edge artefacts, floor and back wall on, invalid pixels written as zeros.
    truth_points: material points sampled (uniformly by area at t = 0) as the dense ground truth.
    """

    seed: int = 7
    motion: str = "jumping_jacks"
    seconds: float = 20.0
    fps: float = 30.0
    jitter_std: float = 0.003
    width: int = 640
    height: int = 480
    distance: float = 2.4
    azimuth: float = 0.35
    truth_points: int = 20_000
    sensor: SensorConfig = field(default_factory=lambda: SensorConfig(invalid="zero"))

    def __post_init__(self) -> None:
        def check(key: str, ok: bool, allowed: str) -> None:
            if not ok:
                raise DemoSceneError(f"scene.{key} must be {allowed}, got {getattr(self, key)!r}")

        check("seed", isinstance(self.seed, int) and not isinstance(self.seed, bool)
              and self.seed >= 0, "an integer >= 0")
        check("motion", self.motion in HUMAN_MOTIONS, f"one of {sorted(HUMAN_MOTIONS)}")
        check("seconds", 0.5 <= float(self.seconds) <= 600.0, "in [0.5, 600] s")
        check("fps", 1.0 <= float(self.fps) <= 120.0, "in [1, 120] Hz")
        check("jitter_std", 0.0 <= float(self.jitter_std) <= 0.1, "in [0, 0.1] s")
        check("width", isinstance(self.width, int) and 32 <= self.width <= 1920, "an int in [32, 1920]")
        check("height", isinstance(self.height, int) and 24 <= self.height <= 1440,
              "an int in [24, 1440]")
        check("distance", 1.0 <= float(self.distance) <= 5.0, "in [1, 5] m")
        check("azimuth", abs(float(self.azimuth)) <= np.pi, "in [-pi, pi] rad")
        check("truth_points", isinstance(self.truth_points, int) and 1000 <= self.truth_points
              <= 1_000_000, "an int in [1000, 1000000]")
        check("sensor", isinstance(self.sensor, SensorConfig) and self.sensor.max_range * _MM < 65535,
              "a SensorConfig with max_range < 65.5 m (depth is kept as uint16 mm)")


class DemoScene:
    """The person, the camera and the pre-rendered stream of :class:`SceneConfig`.

    Construction builds the person, the camera and the dense truth (fast); :meth:`render` renders
    every frame (slow: ~40 ms a 640x480 frame). Attributes:
        config: the SceneConfig.
        shape: the person (a ``Shape4D``; world metres, z up).
        camera: the ``DepthCamera`` (static pose ``camera.camera_to_world``, optical frame x right,
          y down, z forward).
        material: (M, 3) float64 material points of the dense truth (canonical metres).
        times: (N,) float64 capture time of each frame, seconds from the stream start (the shape's
          time: frame k shows ``shape`` at ``times[k]``); empty before :meth:`render`.
        depth_mm: (N, H, W) uint16 depth in millimetres, 0 where the sensor has none.
        object_bits: (N, ceil(H * W / 8)) uint8, ``np.packbits`` of the person's pixels per frame.
        render_seconds: wall time the rendering took.
    """

    def __init__(self, config: SceneConfig) -> None:
        self.config = config
        self.shape: Shape4D = make_shape("human", config.seed, motion=config.motion,
                                         duration=float(config.seconds) + 1.0)
        pose = view_of(self.shape, distance=config.distance, azimuth=config.azimuth)
        self.camera = DepthCamera(realsense_d435(config.width, config.height), pose, config.sensor)
        self._dirs = self.camera.intrinsics.directions().astype(np.float32)  # (H, W, 3), z = 1
        self._rng = np.random.default_rng(config.seed)
        _, self.material = self.shape.sample_surface(config.truth_points, 0.0, self._rng)
        h, w = config.height, config.width
        self.times = np.zeros(0)
        self.depth_mm = np.zeros((0, h, w), np.uint16)
        self.object_bits = np.zeros((0, (h * w + 7) // 8), np.uint8)
        self.render_seconds = 0.0

    @property
    def frame_count(self) -> int:
        """How many frames :meth:`render` makes."""
        return int(np.floor(self.config.seconds * self.config.fps + 1e-9)) + 1

    @property
    def rendered_bytes(self) -> int:
        """What the rendered stream holds: a uint16 depth image and a bit mask per frame."""
        h, w = self.config.height, self.config.width
        return self.frame_count * (2 * h * w + (h * w + 7) // 8)

    def render(self, progress: Optional[Callable[[int, int], None]] = None, *,
               store: Optional[Path] = None) -> None:
        """Render the whole stream (``progress(done, total)`` after each frame). store: a directory
        to keep the frames in, as memory-mapped files (``depth_mm.npy``, ``object_bits.npy``), so
        that a long stream (600 s at 640x480 is ~11 GB) is not held in memory; None: in memory."""
        config = self.config
        started = time.perf_counter()
        n = self.frame_count
        h, w = config.height, config.width
        if store is None:
            depth_mm = np.zeros((n, h, w), np.uint16)
            object_bits = np.zeros((n, (h * w + 7) // 8), np.uint8)
        else:
            store = Path(store)
            store.mkdir(parents=True, exist_ok=True)
            depth_mm = np.lib.format.open_memmap(store / "depth_mm.npy", mode="w+",
                                                 dtype=np.uint16, shape=(n, h, w))
            object_bits = np.lib.format.open_memmap(store / "object_bits.npy", mode="w+",
                                                    dtype=np.uint8, shape=(n, (h * w + 7) // 8))
        times = np.zeros(n)
        k = 0
        for frame in stream(self.shape, self.camera, fps=config.fps, duration=config.seconds,
                            jitter_std=config.jitter_std, rng=self._rng):
            z = np.nan_to_num(frame.cloud[:, :, 2], nan=0.0)
            depth_mm[k] = np.rint(z * _MM).astype(np.uint16)
            object_bits[k] = np.packbits(frame.labels.reshape(-1) == LABEL_OBJECT)
            times[k] = frame.t
            k += 1
            if progress is not None:
                progress(k, n)
        self.times, self.depth_mm, self.object_bits = times[:k], depth_mm[:k], object_bits[:k]
        self.render_seconds = time.perf_counter() - started

    def __len__(self) -> int:
        return len(self.times)

    @property
    def frame_id(self) -> str:
        """The optical frame's name, as a RealSense driver publishes it."""
        return "camera_depth_optical_frame"

    def cloud(self, k: int) -> np.ndarray:
        """Frame k as an organized (H, W, 3) float32 cloud, optical frame, metres; (0, 0, 0) where
        the sensor has no depth (the RealSense convention)."""
        z = self.depth_mm[k].astype(np.float32) * np.float32(1.0 / _MM)
        return self._dirs * z[:, :, None]

    def object_mask(self, k: int) -> np.ndarray:
        """(H, W) bool: pixels of frame k that see the person (with a depth)."""
        h, w = self.config.height, self.config.width
        return np.unpackbits(self.object_bits[k], count=h * w).reshape(h, w).astype(bool)

    def truth(self, t: float) -> np.ndarray:
        """(M, 3) float64: the dense truth's material points at time ``t`` (s), optical frame, metres.
        Row i is the same material point at every time (the correspondences)."""
        world = self.shape.trajectory(self.material, np.array([float(t)]))[0]
        return self.camera.to_optical(world)

    def truth_mesh(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """The exact surface at ``t`` as a mesh: (vertices (V, 3) optical metres, faces (F, 3))."""
        v, f = self.shape.mesh(float(t))
        return self.camera.to_optical(v), f

    def object_box(self, margin: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
        """An axis-aligned box in the optical frame (lo (3,), hi (3,), metres) around the person
        over the whole stream, grown by ``margin``: the region of interest a user would set."""
        lo = np.full(3, np.inf)
        hi = np.full(3, -np.inf)
        for t in np.linspace(0.0, float(self.config.seconds), 24):
            v, _ = self.truth_mesh(float(t))
            lo, hi = np.minimum(lo, v.min(0)), np.maximum(hi, v.max(0))
        return lo - margin, hi + margin

    def describe(self) -> dict[str, Any]:
        """Plain data for the report: the shape's provenance, the camera and the stream."""
        c = self.config
        intr = self.camera.intrinsics
        return {"shape": self.shape.describe(), "frames": len(self),
                "seconds": float(c.seconds), "fps": float(c.fps), "jitter_std_s": c.jitter_std,
                "camera": {"width": intr.width, "height": intr.height, "fx": intr.fx,
                           "distance_m": c.distance, "azimuth_rad": c.azimuth,
                           "camera_to_world": self.camera.camera_to_world.round(6).tolist()},
                "sensor": {k: getattr(c.sensor, k) for k in (
                    "noise_k", "depth_quantum", "dropout", "holes", "edge_dropout", "invalid",
                    "floor", "wall_distance")},
                "truth_points": c.truth_points, "render_seconds": round(self.render_seconds, 2)}
