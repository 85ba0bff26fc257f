"""The streaming tracker: mesh at keyframes, carry the vertices in between (a deformation graph fit
to each frame by default, or the velocity field)."""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import torch
from scipy.spatial import cKDTree

from ..geometry import (
    Normalization,
    clean_mesh,
    even_stride,
    extract_mesh,
    fit_normalization,
    logit,
    preprocess,
    remove_outliers,
    simplify_mesh,
)
from ..model import (
    Checkpoint,
    EncoderState,
    OccupancyFlow,
    autocast_dtype,
    select_device,
)
from ..model.flow import MIN_CHUNK
from .carriers import CARRIERS, Carrier, CarrierContext, Frame, SegmentStart, carrier_name, make_carrier
from .config import TrackerConfig, TrackingError
from ..geometry.queries import MeshScene
from .ids import inherit_ids
from .types import TrackedMesh

__all__ = ["Tracker", "TrackingCancelled"]

# points of the last frame the cluster stage follows the object from (an even stride of what it
# kept): 500 on a person are ~4 cm apart, well inside cluster_track_distance (0.1 m), and cost the
# stage ~0.3 ms a frame less than 2000 (the demo's frames, one core)
_OBJECT_HINT_POINTS = 500
# whole frames (their preprocessed point counts) whose median is a segment's usual count
_USUAL_COUNT_FRAMES = 30


class TrackingCancelled(TrackingError):
    """``feed`` was abandoned because its ``should_stop()`` turned true (a node shutting down); the
    tracker has been reset."""


@dataclass
class _Segment:
    """State of one keyframe segment (everything in the keyframe's normalised space); what moves
    its mesh is its ``carrier`` (``occflow_ros.tracking.carriers``)."""

    keyframe_id: int
    key_stamp: float
    norm: Normalization
    carrier: Carrier
    vertices: np.ndarray  # (V, 3) float32 normalised, at t_prev
    faces: np.ndarray  # (F, 3) uint32
    ids: np.ndarray  # (V,) uint32
    canonical: np.ndarray  # (V, 3) float32 metres
    t_prev: float  # normalised time of the last frame
    frames: int
    residual: float  # mean distance (m) of the keyframe's points to the keyframe's own mesh
    coverage: float  # mean distance (m) of the keyframe mesh's visible vertices to its points
    counts: deque = field(default_factory=lambda: deque(maxlen=_USUAL_COUNT_FRAMES))
    # (stamp, the frame's model input points at the keyframe (N, 3) normalised) of the last
    # ``keyframe_history`` seconds: what the next keyframe due may read besides its own view
    history: deque = field(default_factory=deque)


@dataclass
class _KeyframeBuild:
    """What meshing a keyframe produces before it changes any tracker state (computed in the
    caller's thread, or in the background with ``async_keyframes``)."""

    stamp: float
    reason: str
    observed: np.ndarray  # the keyframe's preprocessed points (metres), for its residual
    norm: Normalization
    x: torch.Tensor  # (1, N, 3) the model's input points, normalised
    encoder: EncoderState
    code: torch.Tensor  # (1, C)
    vertices: np.ndarray  # (V, 3) float32 normalised; V = 0: nothing inside
    vertices_m: np.ndarray  # the same in metres
    faces: np.ndarray  # (F, 3)
    queries: int
    seconds: float


class _KeyframeJob:
    """A keyframe being meshed in the background, and the frames tracked on the old segment since."""

    def __init__(self, future: Future, cancel: threading.Event, stamp: float) -> None:
        self.future = future
        self.stamp = stamp
        self.cancel = cancel
        self.pending: list[tuple[np.ndarray, float]] = []  # (preprocessed points, stamp) after it


class Tracker:
    """``feed(points, stamp) -> TrackedMesh | None`` for a stream of depth frames of one object.

    points: (N, 3) metres in the sensor frame, raw (NaN / zero points and background allowed; the
    configured preprocessing runs here). stamp: seconds on the sensor clock.
    - A keyframe (first frame, window elapsed, too many frames, a long gap, or a tracking residual
      over the threshold) encodes the frame, extracts a mesh with MISE + marching cubes, simplifies it
      and gives its vertices ids inherited from the tracked mesh it replaces.
    - Every other frame carries the vertices from the previous frame's time to this one: by default
      the segment's deformation graph is fit to the frame (``config.deformation``: a bounded rigid
      stage, then Levenberg-Marquardt over the graph's nodes); with ``deformation.enabled`` false
      the causal motion code takes this frame only (constant cost) and the velocity field carries
      them. Each tracked frame is checked both ways (``residual_m``: the points to the mesh;
      ``coverage_m``: the mesh's visible vertices to the points); either growing by more than
      ``residual_threshold`` over the keyframe's forces a keyframe, and the graph falls back to its
      state before the frame (the frame publishes the last good mesh, ``info["fallback"]``).
    - A stamp earlier than the previous one (bag loop, sim-time reset) resets the tracker; a repeated
      stamp or an empty frame returns the last mesh again with ``info["held"]`` saying why.
    Returns None until a first mesh exists. The tracker owns all its state; ``reset()`` clears it
    (vertex ids keep counting up, so an id is never reused in a run).
    ``feed(..., should_stop=f)`` polls ``f()`` between the network batches of a keyframe and between
    its meshing steps, and abandons the frame (reset, TrackingCancelled) once it is true: a keyframe
    stops within one batch or one mesh-simplification call instead of running to its end.

    ``config.async_keyframes``: a keyframe due while a segment is being tracked (window ending,
    residual grown, too many frames) is meshed in a background thread from that frame's points,
    while ``feed`` keeps carrying the old mesh forward, so no frame waits for meshing. The job
    starts early by the last keyframe's measured duration so that it is ready about when the window
    ends. The first ``feed`` after it finished adopts it: the frames seen meanwhile are encoded into
    the new segment's motion code in one pass, the new mesh is carried from the keyframe's time to
    the last of them, takes the ids of the old mesh there, and then follows this frame like any
    other; that result has ``topology_changed`` True and ``keyframe_stamp`` the keyframe frame's
    stamp, earlier than its own. Results then depend on timing (not reproducible frame by frame);
    the first keyframe, one after a reset and one after a long gap are meshed synchronously.
    Call ``close()`` when done (it stops a job in flight).
    """

    def __init__(self, model: OccupancyFlow | Checkpoint, config: TrackerConfig | None = None, *,
                 device: str | torch.device = "auto", precision: str = "auto",
                 margin: float | None = None) -> None:
        normalization = {}
        if isinstance(model, Checkpoint):
            normalization = model.normalization
            model = model.model
        if not isinstance(model, OccupancyFlow):
            raise TrackingError(f"model must be an OccupancyFlow or a Checkpoint, got "
                                f"{type(model).__name__}")
        self.config = config or TrackerConfig()
        self.device = device if isinstance(device, torch.device) else select_device(device)
        self.model = model.to(self.device).eval()
        self.autocast = autocast_dtype(self.device, precision)
        self.margin = float(margin if margin is not None else normalization.get("margin", 0.15))
        # Time is normalised with the window the model was trained on (t = 1 one window after the
        # keyframe); the keyframe policy may use another window (config.window_seconds).
        self.time_scale = float(model.config.window_seconds)
        self.window_seconds = self.config.keyframe_window(model.config.window_seconds)
        self.input_points = model.config.input_points
        # a keyframe's draw: the shape network may read more points than the motion encoder (the
        # first input_points of the draw are the motion encoder's)
        self.keyframe_points = max(model.config.keyframe_points, self.input_points)
        self._rng = np.random.default_rng(self.config.seed)
        self._plane = None  # the last frame's removed plane (preprocess's plane_hint)
        self._object = None  # the last non-empty frame's kept points (preprocess's object_hint)
        self._partial_since = None  # stamp of the first of the current run of partial frames
        # what every segment's carrier shares; its chunk shrinks if the GPU runs out of memory
        self._ctx = CarrierContext(model=self.model, config=self.config, device=self.device,
                                   autocast_dtype=self.autocast, time_scale=self.time_scale,
                                   chunk=self.config.chunk_size)
        self._threshold = logit(self.config.meshing.threshold)
        self._next_id = 0
        self._keyframes = 0
        self._segment: _Segment | None = None
        self._last: TrackedMesh | None = None
        self._last_stamp: float | None = None
        self._hold_reason: str | None = None
        self._job: _KeyframeJob | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._process = None  # KeyframeProcess: background keyframes in a process of their own
        if self.config.async_keyframes and self.keyframe_worker == "process":
            from .keyframe_process import KeyframeProcess

            self._process = KeyframeProcess(self.model, self.config, self.margin)
        self._keyframe_seconds = 0.0  # how long the last keyframe took to mesh (wall time)
        self.resets = 0

    @property
    def _chunk(self) -> int:
        return self._ctx.chunk

    @_chunk.setter
    def _chunk(self, value: int) -> None:
        self._ctx.chunk = int(value)

    # -- public ------------------------------------------------------------------------------------
    @property
    def carrier(self) -> str:
        """What carries the mesh between keyframes: ``"graph"`` or ``"flow"``
        (``occflow_ros.tracking.carriers``)."""
        return carrier_name(self.config)

    @property
    def keyframe_worker(self) -> str:
        """Where background keyframes are meshed: "process" or "thread" (``keyframe_worker``
        "auto": a process on the CPU, a thread when the networks run on CUDA)."""
        worker = self.config.keyframe_worker
        if worker == "auto":
            return "process" if self.device.type == "cpu" else "thread"
        return worker

    @property
    def last(self) -> TrackedMesh | None:
        """The most recent result (None before the first mesh or after a reset)."""
        return self._last

    @property
    def chunk_size(self) -> int:
        """Points per network batch and ODE solve now: ``config.chunk_size``, or less after the GPU
        ran out of memory (halved and retried, down to ``MIN_CHUNK``; kept across resets)."""
        return self._chunk

    @property
    def last_hold(self) -> str | None:
        """Why the last ``feed`` produced no new mesh (repeated stamp, empty frame, empty keyframe
        mesh), whether it returned the previous mesh again or None; None when it made a new one."""
        return self._hold_reason

    @property
    def normalization(self) -> Normalization | None:
        """The current keyframe's map between metres and the model's normalised space."""
        return None if self._segment is None else self._segment.norm

    @property
    def background_keyframe(self) -> float | None:
        """The stamp of the keyframe being meshed in the background (``async_keyframes``), or None."""
        return None if self._job is None else self._job.stamp

    def wait_for_keyframe(self, timeout: float | None = None) -> bool:
        """Block until the background keyframe (if any) is meshed; the next ``feed`` adopts it.
        False on timeout. For a caller that wants the next frame to adopt it (the tests do)."""
        if self._job is None:
            return True
        try:
            self._job.future.exception(timeout)
        except (TimeoutError, FutureTimeout):  # distinct classes before Python 3.11
            return False
        return True

    def reset(self) -> None:
        """Forget the current mesh and segment (and a keyframe being meshed in the background); the
        next frame is a keyframe."""
        self._cancel_job()
        self._segment = None
        self._last = None
        self._last_stamp = None
        self._plane = None
        self._object = None
        self._keyframes = 0
        self._partial_since = None
        self._rng = np.random.default_rng(self.config.seed)
        self.resets += 1

    @torch.inference_mode()
    def feed(self, points: np.ndarray, stamp: float, *,
             should_stop: Optional[Callable[[], bool]] = None) -> TrackedMesh | None:
        """One frame: ``points`` (N, 3) metres in the sensor frame, ``stamp`` seconds. Returns the
        tracked mesh at ``stamp`` (see the class docstring), or None before a first mesh exists.
        Raises TrackingError for a non-finite stamp, TrackingCancelled when ``should_stop()`` became
        true during the frame (the tracker is then reset)."""
        started = time.perf_counter()
        self._hold_reason = None
        stamp = float(stamp)
        if not math.isfinite(stamp):
            raise TrackingError(f"stamp must be a finite number of seconds, got {stamp}")
        info: dict = {}
        if self._last_stamp is not None and stamp < self._last_stamp:
            info["reset"] = (f"stamp went backwards by {self._last_stamp - stamp:.3f} s "
                             "(bag loop or clock reset): tracker reset")
            self.reset()
        # a carrier that does not need it (the deformation graph) gets the outlier stage only on
        # frames a keyframe mesh is built from (``cleaned``): the fit leaves stray points out by its
        # distance gate, and the stage is ~4 ms of a tracked frame's ~40 on one core
        # (docs/tracking.md, "Cost"); the flow's rigid prior registers frames to the keyframe's
        # points, so there every frame gets it
        late = (not CARRIERS[self.carrier].clean_frames
                and self.config.preprocess.outlier_neighbors > 0)
        stages = dataclasses.replace(self.config.preprocess, n_points=None,
                                     **({"outlier_neighbors": 0} if late else {}))
        pre = preprocess(points, stages, self._rng, plane_hint=self._plane,
                         object_hint=self._object)
        self._plane = pre.plane
        if len(pre.points) >= self.config.min_points:
            self._object = even_stride(pre.points, _OBJECT_HINT_POINTS)
        info["preprocess_ms"] = 1e3 * pre.total_seconds
        info["points"] = pre.counts.as_dict()
        observed = pre.points
        repeated = self._last_stamp is not None and stamp == self._last_stamp
        self._last_stamp = stamp
        if repeated:
            return self._hold(stamp, "repeated stamp: frame ignored", info, started)
        if len(observed) < self.config.min_points:
            return self._hold(stamp, f"empty frame: {len(observed)} points after preprocessing "
                                     f"(< min_points {self.config.min_points})", info, started)
        partial = self._partial(len(observed), stamp)
        if partial is not None:
            info["partial"] = partial


        def cleaned() -> np.ndarray:
            if not late:
                return observed
            t0 = time.perf_counter()
            kept = remove_outliers(observed, self.config.preprocess)
            info["outliers_ms"] = 1e3 * (time.perf_counter() - t0)
            return kept

        adopted = self._job is not None and self._job.future.done() and self._adopt(info)
        reason, gap = self._keyframe_reason(stamp)
        # a keyframe that falls due on a tracked segment may read the segment's last frames;
        # one forced by a gap or a lost mesh may not (the carried points are not to be trusted)
        scheduled = reason is not None and not gap
        if reason is not None and not gap and partial is not None:
            info["keyframe_deferred"] = reason  # a keyframe from a partial frame would be half
            reason = None
        started_job = False
        if reason is not None and self._job is not None:
            if not gap:
                reason = None  # a keyframe is being meshed in the background: keep tracking
            else:
                self._cancel_job()  # the old segment cannot bridge the gap: mesh here and now
        if reason is not None and self._background_ok(gap):
            self._start_job(cleaned(), stamp, reason, self._carried(stamp, scheduled))
            reason, started_job = None, True
        if reason is None:
            mesh = self._track(observed, stamp, info)
            if adopted:
                info["keyframe"] = True  # the new mesh appears with this frame
                mesh = dataclasses.replace(mesh, topology_changed=True)
            reason = self._lost(info) if not adopted and self._job is None else None
            if reason is not None:
                scheduled = False
                seg = self._segment
                if seg.history and seg.history[-1][0] == stamp:
                    seg.history.pop()  # this frame's carrying is what went wrong
                undone = seg.carrier.undo() if self._last is not None else None
                if undone is not None:
                    # fall back to the last good state: the carrier as it was before this frame,
                    # and the mesh published for it (the new keyframe inherits its ids)
                    seg.vertices = undone
                    info["fallback"] = reason
                    mesh = dataclasses.replace(self._last, stamp=stamp, topology_changed=False,
                                               info=info, input_points=None,
                                               input_keyframe_points=None)
                else:
                    self._last = mesh  # the new keyframe inherits ids from the tracked mesh now
                if undone is not None and partial is not None:
                    # the last good mesh is held: a keyframe from a partial frame would be the
                    # part that was seen (a hidden part and a wrong pose look alike to the
                    # coverage check, so holding is the safe answer to both)
                    info["keyframe_deferred"] = reason
                    reason = None
                if reason is not None and self._background_ok(False):
                    self._start_job(cleaned(), stamp, reason)
                    reason, started_job = None, True
            if self._job is not None and not started_job:
                self._job.pending.append((observed, stamp))
        if reason is not None:
            try:
                mesh = self._keyframe(cleaned(), stamp, reason, info, should_stop,
                                      self._carried(stamp, scheduled))
            except TrackingCancelled:
                self.reset()
                raise
        if mesh is not None:
            mesh.info["total_ms"] = 1e3 * (time.perf_counter() - started)
            self._last = mesh
        return mesh

    # -- steps -------------------------------------------------------------------------------------
    def _partial(self, count: int, stamp: float) -> str | None:
        """Why this frame is partial (None: it is whole): fewer preprocessed points than
        ``partial_fraction`` of the segment's usual count, for at most ``partial_max_seconds``.
        Whole frames' counts make the usual count."""
        seg, fraction = self._segment, self.config.partial_fraction
        if seg is None or fraction <= 0 or not seg.counts:
            self._partial_since = None
            return None
        usual = float(np.median(seg.counts))
        if count >= fraction * usual:
            self._partial_since = None
            seg.counts.append(count)
            return None
        if self._partial_since is None:
            self._partial_since = stamp
        if stamp - self._partial_since > self.config.partial_max_seconds:
            return None  # for too long: the next keyframe due is made from such frames
        return (f"partial frame: {count} points, under {fraction:g} of the segment's usual "
                f"{usual:.0f}")

    def _keyframe_reason(self, stamp: float) -> tuple[str | None, bool]:
        """Why this frame should be a keyframe (None: it need not), and whether that is a gap
        between frames (which the old segment cannot bridge, so no background keyframe)."""
        seg = self._segment
        if seg is None:
            return ("first frame" if self._last is None else "no tracked mesh"), True
        gap = stamp - (seg.key_stamp + seg.t_prev * self.time_scale)
        too_long = gap > self.config.max_gap_seconds
        age = stamp - seg.key_stamp
        # in the background, start early by what the last keyframe took, to be ready at the window's end
        lead = (min(1.2 * self._keyframe_seconds, 0.5 * self.window_seconds)
                if self.config.async_keyframes else 0.0)
        if age >= self.window_seconds - lead:
            return f"window of {self.window_seconds:g} s elapsed", too_long
        if seg.frames >= self.config.max_frames:
            return f"{self.config.max_frames} frames since the keyframe", too_long
        if too_long:
            return f"gap of {gap:.3f} s between frames", True
        return None, False

    def _model_input(self, observed: np.ndarray, norm: Normalization,
                     n: int | None = None) -> torch.Tensor:
        n = n or self.input_points
        idx = self._rng.choice(len(observed), size=n, replace=len(observed) < n)
        x = norm.to_normalized(observed[idx])
        return torch.from_numpy(np.ascontiguousarray(x, np.float32)).to(self.device)[None]

    def _keyframe_input(self, observed: np.ndarray, carried: np.ndarray | None = None
                        ) -> tuple[Normalization, torch.Tensor]:
        """A keyframe's normalisation (fitted to its points) and the model's input points in it
        (``keyframe_points`` of them: the shape network's; the first ``input_points`` are the
        motion encoder's). carried (M, 3) metres: earlier frames' points carried to this time
        (``_carried``); the shape network's points beyond the motion encoder's are then drawn
        from the keyframe's own and these together, where they fall in the meshed cube."""
        norm = fit_normalization(observed, padding=self.margin)
        extra = self.keyframe_points - self.input_points
        if carried is not None and len(carried) and extra > 0:
            inside = norm.to_normalized(carried)
            inside = inside[(np.abs(inside) <= 0.5).all(1)]
            if len(inside):
                both = np.concatenate([norm.to_normalized(observed), inside])
                x = self._model_input(observed, norm, self.input_points)
                idx = self._rng.choice(len(both), size=extra, replace=len(both) < extra)
                rest = torch.from_numpy(np.ascontiguousarray(both[idx], np.float32))
                return norm, torch.cat([x, rest.to(self.device)[None]], dim=1)
        return norm, self._model_input(observed, norm, self.keyframe_points)

    def _carried(self, stamp: float, scheduled: bool) -> np.ndarray | None:
        """The model input points of the segment's frames of the last ``keyframe_history``
        seconds, carried to the last tracked frame's time (metres, the sensor frame), for a
        keyframe that fell due (``scheduled``); None where there are none (also where the carrier
        cannot carry points forward: it keeps none) or the keyframe was forced (a gap, a lost
        mesh: what was carried is not to be trusted)."""
        seg = self._segment
        if not scheduled or seg is None or self.config.keyframe_history <= 0:
            return None
        recent = [y for t, y in seg.history if stamp - t <= self.config.keyframe_history]
        if not recent:
            return None
        return seg.norm.to_metres(seg.carrier.forward(np.concatenate(recent)))

    def _autocast(self):
        return self._ctx.autocast()  # the carriers' own: one place decides the precision

    def _build(self, observed: np.ndarray, stamp: float, reason: str, norm: Normalization,
               x: torch.Tensor, should_stop: Optional[Callable[[], bool]] = None) -> _KeyframeBuild:
        """Encode a keyframe and mesh it (MISE, marching cubes, cleaning, simplification). Touches no
        tracker state but the network batch size, so it can run in a background thread."""
        def check(step: str) -> None:
            if should_stop is not None and should_stop():
                raise TrackingCancelled(f"keyframe at stamp {stamp:.6f} s abandoned {step}")

        t0 = time.perf_counter()
        cfg = self.config.meshing
        model = self.model
        x_shape, x = x, x[:, :self.input_points]
        with self._autocast():
            c_s = model.encode_shape(x_shape)
            codes, encoder = model.encode_motion(x[:, None], torch.zeros(1, 1, device=self.device))
            cond = model.decoder.condition(c_s)

        def field(p: np.ndarray) -> np.ndarray:
            check("during meshing")
            try:
                q = torch.from_numpy(p).to(self.device)[None]
                with self._autocast():
                    values = model.decoder(q, cond=cond, context=x)
                return values[0].float().cpu().numpy()
            except torch.cuda.OutOfMemoryError:
                if len(p) <= MIN_CHUNK:
                    raise
                torch.cuda.empty_cache()  # out of GPU memory: halve the batch and remember it
                self._chunk = max(MIN_CHUNK, min(self._chunk, len(p) // 2))
                half = len(p) // 2
                return np.concatenate([field(p[:half]), field(p[half:])])

        result = extract_mesh(field, threshold=self._threshold, resolution0=cfg.resolution0,
                              upsampling_steps=cfg.upsampling_steps, box_size=cfg.box_size,
                              max_batch=self._chunk)
        v, f = result.vertices, result.faces
        if len(f):
            check("before mesh cleaning")
            v, f = clean_mesh(v, f, largest_component_only=cfg.largest_component)
            if cfg.target_vertices and len(v) > cfg.target_vertices:
                check("before simplification")
                v, f = simplify_mesh(v, f, target_vertices=cfg.target_vertices)
            check("after simplification")
        v = np.asarray(v, np.float32)
        return _KeyframeBuild(stamp=stamp, reason=reason, observed=observed, norm=norm, x=x,
                              encoder=encoder, code=codes[:, -1].float(), vertices=v,
                              vertices_m=norm.to_metres(v), faces=np.asarray(f),
                              queries=int(result.n_queries), seconds=time.perf_counter() - t0)

    def _inherit(self, vertices_m: np.ndarray):
        """Ids (and canonical positions) for new keyframe vertices (metres) from the last result."""
        old = self._last
        if old is not None and old.num_faces:
            assignment = inherit_ids(vertices_m, old.vertices, old.faces, old.vertex_ids,
                                     old.canonical_vertices, self._next_id,
                                     self.config.id_match_distance)
        else:
            assignment = inherit_ids(vertices_m, np.zeros((0, 3)), np.zeros((0, 3), np.int64),
                                     np.zeros(0, np.uint32), np.zeros((0, 3), np.float32),
                                     self._next_id, self.config.id_match_distance)
        self._next_id = assignment.next_id
        return assignment

    def _new_segment(self, build: _KeyframeBuild) -> _Segment:
        """The segment a keyframe starts (ids filled in by the caller), its vertices at its time."""
        keyframe_id = self._keyframes
        self._keyframes += 1
        faces = build.faces.astype(np.uint32)
        residual, coverage = self._residuals(build.vertices_m, faces, build.observed)
        self._keyframe_seconds = build.seconds
        carrier = make_carrier(self._ctx, SegmentStart(
            norm=build.norm, x=build.x, encoder=build.encoder, code=build.code,
            vertices=build.vertices, faces=faces))
        return _Segment(
            keyframe_id=keyframe_id, key_stamp=build.stamp, norm=build.norm, carrier=carrier,
            vertices=build.vertices, faces=faces, ids=np.zeros(0, np.uint32),
            canonical=np.zeros((0, 3), np.float32), t_prev=0.0, frames=1, residual=residual,
            coverage=coverage, counts=deque([len(build.observed)], maxlen=_USUAL_COUNT_FRAMES))

    def _keyframe(self, observed: np.ndarray, stamp: float, reason: str, info: dict,
                  should_stop: Optional[Callable[[], bool]] = None,
                  carried: np.ndarray | None = None) -> TrackedMesh | None:
        """A keyframe meshed here and now: the result is the keyframe mesh at ``stamp``."""
        if carried is not None:
            info["keyframe_carried_points"] = len(carried)
        build = self._build(observed, stamp, reason, *self._keyframe_input(observed, carried),
                            should_stop)
        info["keyframe_queries"] = build.queries
        info["keyframe_ms"] = 1e3 * build.seconds
        if len(build.faces) == 0:
            # Nothing inside: keep what we had rather than publish an empty mesh.
            self._segment = None
            return self._hold(stamp, "keyframe gave an empty mesh (no occupied space)", info,
                              None)
        seg = self._new_segment(build)
        vertices_m = build.vertices_m
        assignment = self._inherit(vertices_m)
        seg.ids, seg.canonical = assignment.ids, assignment.canonical
        self._segment = seg
        info["residual_m"], info["coverage_m"] = seg.residual, seg.coverage
        info.update(keyframe=True, keyframe_reason=reason, ids_inherited=assignment.inherited,
                    ids_fresh=len(vertices_m) - assignment.inherited)
        seen = build.norm.to_metres(build.x[0].float().cpu().numpy())  # the points the model was given
        return TrackedMesh(
            stamp=stamp, keyframe_stamp=stamp, keyframe_id=seg.keyframe_id, run=self.resets,
            vertices=vertices_m, faces=seg.faces, vertex_ids=assignment.ids,
            canonical_vertices=assignment.canonical, topology_changed=True, input_points=seen,
            input_keyframe_points=seen.copy() if self.config.input_correspondences else None,
            info=info)

    # -- keyframes in the background (config.async_keyframes) --------------------------------------
    def _start_job(self, observed: np.ndarray, stamp: float, reason: str,
                   carried: np.ndarray | None = None) -> None:
        # here: the generator is not thread-safe
        norm, x = self._keyframe_input(observed, carried)
        if self._process is not None:
            future = self._process.submit(observed, stamp, reason, norm, x)
            self._job = _KeyframeJob(future, self._process.cancel, stamp)
            return
        cancel = threading.Event()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="occflow-keyframe")

        def run() -> _KeyframeBuild:
            with torch.inference_mode():
                return self._build(observed, stamp, reason, norm, x, cancel.is_set)

        self._job = _KeyframeJob(self._executor.submit(run), cancel, stamp)

    def _cancel_job(self) -> None:
        if self._job is not None:
            self._job.cancel.set()
            self._job = None

    def _adopt(self, info: dict) -> bool:
        """Take over a finished background keyframe (see the class docstring); False when it gave
        nothing to adopt (an empty mesh, or cancelled), the old segment then goes on."""
        job, self._job = self._job, None
        try:
            build = job.future.result()
        except TrackingCancelled:
            return False
        info["keyframe_queries"] = build.queries
        info["keyframe_ms"] = 1e3 * build.seconds
        if len(build.faces) == 0:
            info["keyframe_empty"] = "background keyframe gave an empty mesh; the old one goes on"
            return False
        seg = self._new_segment(build)
        if job.pending:
            # the frames seen while it was meshed, carried in order (the flow: one encoder pass
            # and one solve to the last of them)
            frames = [Frame(p, self._model_input(p, build.norm),
                            (t - build.stamp) / self.time_scale, {}) for p, t in job.pending]
            seg.vertices = seg.carrier.catch_up(frames)
            seg.t_prev = frames[-1].t
            seg.frames += len(frames)
        # the old mesh (self._last) is at the last frame seen: compare the two meshes there
        vertices_m = seg.norm.to_metres(seg.vertices)
        assignment = self._inherit(vertices_m)
        seg.ids, seg.canonical = assignment.ids, assignment.canonical
        self._segment = seg
        info.update(keyframe=True, keyframe_reason=build.reason, ids_inherited=assignment.inherited,
                    ids_fresh=len(vertices_m) - assignment.inherited,
                    keyframe_frames_behind=len(job.pending))
        return True

    def _background_ok(self, gap: bool) -> bool:
        return (self.config.async_keyframes and not gap and self._job is None
                and self._segment is not None and self._last is not None)

    def close(self) -> None:
        """Stop a background keyframe in flight and its thread (waits for its current batch)."""
        self._cancel_job()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        if self._process is not None:
            self._process.close()
            self._process = None

    def _track(self, observed: np.ndarray, stamp: float, info: dict) -> TrackedMesh:
        """A tracked frame: the segment's carrier moves the mesh to this frame's time; the mesh is
        checked against the frame both ways; the input correspondences come from the carrier."""
        seg = self._segment
        assert seg is not None
        t_now = (stamp - seg.key_stamp) / self.time_scale
        x = self._model_input(observed, seg.norm)
        seg.vertices = seg.carrier.carry(Frame(observed, x, t_now, info))
        seg.t_prev = t_now
        seg.frames += 1
        t1 = time.perf_counter()
        vertices_m = seg.norm.to_metres(seg.vertices)
        info["keyframe"] = False
        info["residual_m"], info["coverage_m"] = self._residuals(vertices_m, seg.faces, observed)
        t2 = time.perf_counter()
        info["checks_ms"] = 1e3 * (t2 - t1)
        seen = seg.norm.to_metres(x[0].float().cpu().numpy())  # the points the model was given
        keyframe_points = back = None
        if self.config.input_correspondences:
            back = seg.carrier.back(x, t_now)
            keyframe_points = seg.norm.to_metres(back)
            info["correspondence_ms"] = 1e3 * (time.perf_counter() - t2)
        history = self.config.keyframe_history
        if history > 0 and seg.carrier.forwards_points:
            if back is None:
                back = seg.carrier.back(x, t_now)
            seg.history.append((stamp, np.asarray(back, np.float32)))
            while seg.history and stamp - seg.history[0][0] > history:
                seg.history.popleft()
        return TrackedMesh(
            stamp=stamp, keyframe_stamp=seg.key_stamp, keyframe_id=seg.keyframe_id, run=self.resets,
            vertices=vertices_m, faces=seg.faces, vertex_ids=seg.ids,
            canonical_vertices=seg.canonical, topology_changed=False, input_points=seen,
            input_keyframe_points=keyframe_points, info=info)

    def _residuals(self, vertices: np.ndarray, faces: np.ndarray, observed: np.ndarray
                   ) -> tuple[float, float]:
        """How well a mesh (metres) and a frame's points explain each other, both ways, over an
        even stride of at most ``residual_points`` points (deterministic), distances clipped at
        ``residual_clip``:
        - residual: the mean distance from the observed points to the mesh's surface;
        - coverage: the mean distance from the mesh's vertices that the camera sees (facing it, not
          hidden) to the nearest observed point. A mesh turned or slid away from the body shows the
          camera surface where nothing was seen, while the points may still lie near some of it."""
        clip = self.config.residual_clip
        observed = even_stride(observed, self.config.residual_points)
        scene = MeshScene(vertices, faces)
        dist, _, _ = scene.closest_points(observed)
        residual = float(np.minimum(dist, clip).mean())
        candidates = even_stride(np.arange(len(vertices)), self.config.residual_points)
        seen = vertices[scene.visible(candidates)]
        if not len(seen):
            return residual, clip
        gap, _ = cKDTree(observed).query(seen, distance_upper_bound=clip)
        return residual, float(np.minimum(gap, clip).mean())

    def _lost(self, info: dict) -> str | None:
        """Why the tracked mesh no longer explains the frame (None: it does): the residual or the
        coverage grew by more than ``residual_threshold`` over the keyframe's own."""
        threshold = self.config.residual_threshold
        seg = self._segment
        if threshold <= 0 or seg is None:
            return None
        for name, value, base in (("residual", info.get("residual_m", 0.0), seg.residual),
                                  ("coverage", info.get("coverage_m", 0.0), seg.coverage)):
            if value > base + threshold:
                return (f"tracking {name} {value:.3f} m grew by more than {threshold:.3f} m over "
                        f"the keyframe's {base:.3f} m")
        return None

    def _hold(self, stamp: float, why: str, info: dict, started: float | None
              ) -> TrackedMesh | None:
        info["held"] = why
        self._hold_reason = why
        if self._last is None:
            return None
        held = dataclasses.replace(self._last, stamp=stamp, topology_changed=False, info=info,
                                   input_points=None, input_keyframe_points=None)
        if started is not None:
            held.info["total_ms"] = 1e3 * (time.perf_counter() - started)
        return held
