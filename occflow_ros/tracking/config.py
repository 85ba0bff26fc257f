"""Configuration of the streaming tracker: keyframe policy, meshing, propagation, ids."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..geometry import PreprocessConfig
from ..model import SolverConfig

__all__ = ["TrackingError", "TrackerConfig", "MeshingConfig", "DeformationConfig"]


class TrackingError(ValueError):
    """A tracker setting or input the tracker refuses; the message names the key or the problem."""


def _num(owner: str, name: str, value: Any, lo: float, hi: float, *, integer: bool = False,
         lo_open: bool = False) -> None:
    ok = not isinstance(value, bool) and isinstance(value, int if integer else (int, float))
    if ok and not integer:
        ok = math.isfinite(value)
    if ok:
        ok = (value > lo if lo_open else value >= lo) and value <= hi
    if not ok:
        kind = "an integer" if integer else "a number"
        bracket = "(" if lo_open else "["
        raise TrackingError(f"{owner}.{name} must be {kind} in {bracket}{lo}, {hi}], got {value!r}")


@dataclass(frozen=True)
class MeshingConfig:
    """Keyframe meshing: MISE + marching cubes in the model's normalised space, then simplification.

    threshold: occupancy probability of the surface (0.5: where the network is undecided).
    resolution0 / upsampling_steps: coarse grid and refinements (final 32 * 2**2 = 128 cells/axis).
    box_size: edge of the meshed cube in normalised units (1 + padding).
    target_vertices: decimate to about this many vertices (0: keep the marching-cubes mesh).
    largest_component: keep only the largest connected piece (drops floating debris).
    """

    threshold: float = 0.5
    resolution0: int = 32
    upsampling_steps: int = 2
    box_size: float = 1.1
    target_vertices: int = 3000
    largest_component: bool = True

    def __post_init__(self) -> None:
        _num("meshing", "threshold", self.threshold, 0.0, 1.0, lo_open=True)
        if self.threshold >= 1.0:
            raise TrackingError(f"meshing.threshold must be < 1, got {self.threshold}")
        _num("meshing", "resolution0", self.resolution0, 4, 512, integer=True)
        _num("meshing", "upsampling_steps", self.upsampling_steps, 0, 5, integer=True)
        _num("meshing", "box_size", self.box_size, 0.5, 4.0)
        _num("meshing", "target_vertices", self.target_vertices, 0, 1_000_000, integer=True)
        if 0 < self.target_vertices < 4:
            raise TrackingError("meshing.target_vertices must be 0 (no decimation) or >= 4")
        if not isinstance(self.largest_component, bool):
            raise TrackingError("meshing.largest_component must be true or false")


@dataclass(frozen=True)
class DeformationConfig:
    """Carry the keyframe mesh by non-rigid registration to each frame
    (``occflow_ros.geometry.DeformationGraph``: an embedded deformation graph on the keyframe mesh,
    fit to the frame's observed points by Levenberg-Marquardt from the last frame's fit).

    enabled: the graph carries the mesh (and the input correspondences); otherwise the velocity
      field does.
    flow_prior: with the graph, also integrate the velocity field over the frame's interval and use
      the predicted vertices as the fit's motion prior (its rigid stage may start there, and each
      vertex is drawn towards its prediction with weight ``prior_weight``); costs the motion
      encoder and one flow step per frame.
    prior_weight: weight of the flow's predicted positions against the data term.
    rigid: a rigid stage first: one motion of the whole mesh fit to the frame, bounded by
      ``max_angular_speed`` and ``max_speed`` times the time since the last frame, and kept only
      where it explains the frame better than the state it started from.
    max_angular_speed / max_speed: how fast the tracked body may turn (rad/s) and move (m/s).
    momentum: each graph node first continues this much of its last frame's motion (constant
      velocity, 0..1), and the fit starts there: a limb that swings faster than ``max_distance``
      per frame is not left behind.
    node_spacing: graph node spacing, normalised units (1 = the keyframe's size / (1 - margin)).
    max_nodes: at most this many graph nodes; a keyframe mesh that would need more at
      ``node_spacing`` (a round or bulky object: a ball filling the cube gets ~700) gets a wider
      spacing, so a frame's cost stays bounded (the solve grows with the nodes' cube).
    rigidity: weight of the as-rigid-as-possible term between neighbouring nodes.
    sliding: weight of the point-to-point distance beside the point-to-plane one.
    max_distance: observed points farther than this from the mesh (normalised) are left out.
    coverage: weight of the other way round: each camera-facing vertex that no observed point
      chose is drawn to its nearest observed point within ``max_distance`` (0: off). A limb the
      points have moved away from is pulled along instead of waiting for the as-rigid-as-possible
      term (held-out windows 0.0644 -> 0.0556 at the window's end, D-FAUST 0.0239 -> 0.0224; ~5 ms
      more a frame; docs/tracking.md, "The other way round").
    iterations: Levenberg-Marquardt steps per frame, at most.
    pair_every: the observed points' nearest vertices are renewed before every this many steps
      (2 with ``min_decrease``: a frame mostly takes 2 steps on one set of pairs, ~10 ms instead of
      ~17 ms, and follows real people less closely; docs/tracking.md, "Cost").
    min_decrease: a frame's steps end after one that lowers the energy by less than this fraction
      (0: always ``iterations`` steps).
    points: observed points per frame at most (an even stride through them).
    fit_vertices: the fit pairs the points with at most this many of the mesh's vertices (a voxel
      subsample; 0: all of them); the whole mesh moves with the graph as before. 1000 of a
      3000-vertex keyframe: the same held-out accuracy and ~7 ms less a frame, but a smooth body
      turning about the viewing axis followed half as well (docs/tracking.md, "Cost").
    """

    enabled: bool = True
    flow_prior: bool = False
    prior_weight: float = 0.1
    rigid: bool = True
    max_angular_speed: float = 6.0
    max_speed: float = 3.0
    momentum: float = 0.8
    node_spacing: float = 0.07
    max_nodes: int = 200
    rigidity: float = 1.0
    sliding: float = 0.1
    max_distance: float = 0.04
    coverage: float = 0.3
    iterations: int = 4
    pair_every: int = 1
    min_decrease: float = 0.01
    points: int = 1024
    fit_vertices: int = 0

    def __post_init__(self) -> None:
        for name in ("enabled", "flow_prior", "rigid"):
            if not isinstance(getattr(self, name), bool):
                raise TrackingError(f"deformation.{name} must be true or false")
        _num("deformation", "prior_weight", self.prior_weight, 0.0, 1e6)
        _num("deformation", "max_angular_speed", self.max_angular_speed, 0.0, 1e3, lo_open=True)
        _num("deformation", "max_speed", self.max_speed, 0.0, 1e3, lo_open=True)
        _num("deformation", "momentum", self.momentum, 0.0, 1.0)
        _num("deformation", "node_spacing", self.node_spacing, 0.005, 1.0)
        _num("deformation", "max_nodes", self.max_nodes, 1, 100_000, integer=True)
        _num("deformation", "rigidity", self.rigidity, 0.0, 1e6)
        _num("deformation", "sliding", self.sliding, 0.0, 1e6)
        _num("deformation", "max_distance", self.max_distance, 0.0, 1.0, lo_open=True)
        _num("deformation", "coverage", self.coverage, 0.0, 1e6)
        _num("deformation", "iterations", self.iterations, 1, 1000, integer=True)
        _num("deformation", "pair_every", self.pair_every, 1, 1000, integer=True)
        _num("deformation", "min_decrease", self.min_decrease, 0.0, 0.5)
        _num("deformation", "points", self.points, 3, 10_000_000, integer=True)
        _num("deformation", "fit_vertices", self.fit_vertices, 0, 10_000_000, integer=True)


KEYFRAME_WORKERS = ("auto", "process", "thread")

#: The automatic keyframe window (s) where the deformation graph alone carries the mesh. The graph
#: has no trained window, so the keyframe need only come as often as the shape should be renewed:
#: every 2 s instead of every second halves the frames that keyframes stall on one core (make demo:
#: 28.2-28.3 Hz processed against 25.0-26.1 Hz, tracked / still 0.37-0.39 against 0.39-0.41;
#: docs/tracking.md, "How often a keyframe").
GRAPH_WINDOW_SECONDS = 2.0


@dataclass(frozen=True)
class TrackerConfig:
    """The streaming tracker's settings. Times in seconds, lengths in metres.

    window_seconds: a keyframe at most this long ago. None: automatic (``keyframe_window``): the
      model's trained window where the velocity field carries the mesh or is the graph's prior,
      ``GRAPH_WINDOW_SECONDS`` where the deformation graph alone carries it. Time is always
      normalised with the model's own window; a longer window with the field in use makes it
      extrapolate beyond the times it was trained on.
    max_frames: frames per keyframe segment, keyframe included, before a new keyframe (60: two
      seconds of a 30 Hz camera).
    residual_threshold: each tracked frame is checked both ways: the residual, the mean distance (m)
      from the observed points to the tracked surface, and the coverage, the mean distance from the
      mesh's camera-visible vertices to the observed points; when either has grown by more than
      this over its value at the keyframe, the tracked mesh no longer explains the data as well as
      the keyframe did and a new keyframe is forced (with the deformation graph, the frame falls
      back to the last good state); 0 disables the check. (Relative to the keyframe, so a model that reconstructs an
      object less exactly does not re-key on every frame.)
    residual_clip: distances are clipped here (m) before averaging (robust to stray points).
    residual_points: the residual is averaged over at most this many observed points, an even
      stride through the frame's points (0: all). The mean of ~1000 clipped distances is within a
      fraction of a millimetre of the full mean, while the distance queries over a whole frame's
      ~8000 points cost ~10 ms per frame on one CPU core.
    max_gap_seconds: a gap between frames longer than this forces a keyframe.
    min_points: frames with fewer preprocessed points are treated as empty (mesh held).
    partial_fraction: a frame with fewer preprocessed points than this fraction of the segment's
      usual count (the median of its last 30 whole frames) is partial: something hides part of the
      object, the sensor lost part of it, or the object turned its narrow side to the camera. A
      partial frame is never made a keyframe (its shape would be the part that was seen): a
      keyframe that falls due waits for a whole frame, and where the residual or coverage check
      says the mesh no longer explains a partial frame, the last good mesh is held (the coverage
      check cannot tell a hidden part from a wrong pose). 0: off.
    partial_max_seconds: partial frames for longer than this are whole again (the object may have
      changed for good): the next keyframe due is made from them.
    id_match_distance: a new keyframe vertex inherits the id of a tracked vertex within this
      distance (m), one-to-one, nearest pairs first; others get fresh ids.
    input_correspondences: carry the observed points back to the keyframe time every frame
      (per-input-point correspondences); costs one backward solve per frame.
    keyframe_history: a keyframe that falls due (not one forced by a lost mesh or a gap) also
      reads the points of the segment's frames of the last this many seconds, carried by the
      segment's carrier to the keyframe's time: a body that turned shows the shape network sides
      the keyframe's own view no longer sees. 0: the keyframe's own points only. Only carriers
      that can carry points forward (the deformation graph) take part.
    async_keyframes: mesh keyframes in the background while the old mesh is carried on, so no
      frame waits for meshing (see Tracker); results then depend on timing.
    keyframe_worker: where background keyframes are meshed: "process" (a process of its own with
      its own copy of the networks: another CPU core for real), "thread" (a thread: the networks
      run on the GPU, the thread only feeds them), "auto" (process on the CPU, thread on CUDA).
    solver: integrates the vertices from one frame to the next.
    correspondence_solver: the backward solve of the observed points (coarser is fine).
    chunk_size: points per ODE solve. seed: subsampling of input points (reproducible runs).
    deformation: how the mesh is carried: non-rigid registration (the default) or the flow.
    """

    window_seconds: float | None = None
    max_frames: int = 60
    residual_threshold: float = 0.03
    residual_clip: float = 0.2
    residual_points: int = 1024
    max_gap_seconds: float = 1.0
    min_points: int = 50
    partial_fraction: float = 0.5
    partial_max_seconds: float = 1.0
    id_match_distance: float = 0.03
    input_correspondences: bool = True
    keyframe_history: float = 0.0
    async_keyframes: bool = False
    keyframe_worker: str = "auto"
    solver: SolverConfig = field(default_factory=lambda: SolverConfig("rk4", step_size=0.1))
    correspondence_solver: SolverConfig = field(
        default_factory=lambda: SolverConfig("midpoint", step_size=0.25))
    chunk_size: int = 10_000
    seed: int = 0
    meshing: MeshingConfig = field(default_factory=MeshingConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    deformation: DeformationConfig = field(default_factory=DeformationConfig)

    def keyframe_window(self, trained_seconds: float) -> float:
        """The keyframe window in seconds: ``window_seconds``, or where it is None the model's
        trained window (``trained_seconds``) when the velocity field is in use, else
        ``GRAPH_WINDOW_SECONDS``."""
        if self.window_seconds is not None:
            return float(self.window_seconds)
        graph_alone = self.deformation.enabled and not self.deformation.flow_prior
        return GRAPH_WINDOW_SECONDS if graph_alone else float(trained_seconds)

    def __post_init__(self) -> None:
        if not isinstance(self.deformation, DeformationConfig):
            raise TrackingError("tracker.deformation must be a DeformationConfig")
        if self.window_seconds is not None:
            _num("tracker", "window_seconds", self.window_seconds, 0.0, 3600.0, lo_open=True)
        _num("tracker", "max_frames", self.max_frames, 2, 100_000, integer=True)
        _num("tracker", "residual_threshold", self.residual_threshold, 0.0, 100.0)
        _num("tracker", "residual_clip", self.residual_clip, 0.0, 100.0, lo_open=True)
        _num("tracker", "residual_points", self.residual_points, 0, 10_000_000, integer=True)
        _num("tracker", "max_gap_seconds", self.max_gap_seconds, 0.0, 3600.0, lo_open=True)
        _num("tracker", "min_points", self.min_points, 1, 10_000_000, integer=True)
        _num("tracker", "partial_fraction", self.partial_fraction, 0.0, 1.0)
        _num("tracker", "partial_max_seconds", self.partial_max_seconds, 0.0, 3600.0)
        _num("tracker", "id_match_distance", self.id_match_distance, 0.0, 10.0, lo_open=True)
        _num("tracker", "keyframe_history", self.keyframe_history, 0.0, 60.0)
        _num("tracker", "chunk_size", self.chunk_size, 1, 10_000_000, integer=True)
        _num("tracker", "seed", self.seed, 0, 2**63 - 1, integer=True)
        if not isinstance(self.input_correspondences, bool):
            raise TrackingError("tracker.input_correspondences must be true or false")
        if not isinstance(self.async_keyframes, bool):
            raise TrackingError("tracker.async_keyframes must be true or false")
        if self.keyframe_worker not in KEYFRAME_WORKERS:
            raise TrackingError(f"tracker.keyframe_worker must be one of {list(KEYFRAME_WORKERS)}, "
                                f"got {self.keyframe_worker!r}")
        for name in ("solver", "correspondence_solver"):
            if not isinstance(getattr(self, name), SolverConfig):
                raise TrackingError(f"tracker.{name} must be a SolverConfig")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrackerConfig:
        """From plain data (YAML / ROS parameters); nested dicts for meshing, preprocess, solvers."""
        data = dict(data)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise TrackingError(f"unknown tracker key(s) {unknown}; known: {sorted(known)}")
        try:
            if isinstance(data.get("meshing"), Mapping):
                data["meshing"] = MeshingConfig(**data["meshing"])
            if isinstance(data.get("deformation"), Mapping):
                data["deformation"] = DeformationConfig(**data["deformation"])
            if isinstance(data.get("preprocess"), Mapping):
                data["preprocess"] = PreprocessConfig.from_dict(data["preprocess"])
            for name in ("solver", "correspondence_solver"):
                if isinstance(data.get(name), Mapping):
                    data[name] = SolverConfig.from_dict(data[name])
        except TypeError as e:
            raise TrackingError(f"tracker config: {e}") from None
        return cls(**data)
