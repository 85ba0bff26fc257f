"""Questions 1-3 and 6: keyframe + tracking vs per-frame reconstruction, correspondence baselines, solvers.

Run on its own (prints the tables):  . tools/env.sh && python benchmarks/bench_tracking.py [--model PATH]
(``benchmarks/run_all.py`` runs it with the other questions and writes docs/benchmarks.md).

Everything goes through the product's ``Tracker`` (preprocessing, keyframe meshing with MISE +
marching cubes + simplification, the causal motion code, the ODE flow), fed frame by frame with the
evaluation settings (``occflow_ros.evaluation.evaluate.evaluation_tracker_config``: no re-keying
inside the window, records are already filtered). Lengths are metres inside, and reported in the
paper's normalised units (divided by the object's size, ``sequences.object_size``) and in cm.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch

from occflow_ros.evaluation.evaluate import evaluation_tracker_config
from occflow_ros.evaluation.metrics import (
    chamfer_l1,
    correspondence_l2,
    nearest_indices,
    nearest_neighbour_tracks,
    sample_surface,
)
from occflow_ros.model import SolverConfig
from occflow_ros.tracking import (DeformationConfig, MeshingConfig, TrackedMesh, Tracker,
                                  TrackerConfig)

from harness import BenchError, Table, Target, median
from sequences import Sequence as BenchSequence

__all__ = ["Run", "track_window", "reconstruct_every_frame", "vertex_tracks", "corr_errors",
           "chamfer_errors", "cpd_tracks", "why_occupancy_flow", "correspondence_baselines",
           "solvers_and_sizes", "solver_verdict", "gpu_table", "Q1_COLUMNS", "Q2_COLUMNS", "Q3_COLUMNS",
           "Q6_COLUMNS", "solver_config", "REFERENCE_SOLVER"]

Model = Any  # OccupancyFlow | Checkpoint

#: The reference integration of question 3 (what "exact" means for the solver comparison).
REFERENCE_SOLVER = SolverConfig("dopri5", rtol=1e-6, atol=1e-7)


def solver_config(name: str) -> SolverConfig:
    """The solver settings compared in question 3: fixed-step solvers with the default step 0.1 in
    normalised time, dopri5 with the default tolerances (rtol 1e-3, atol 1e-5)."""
    if name == "dopri5":
        return SolverConfig("dopri5", rtol=1e-3, atol=1e-5)
    return SolverConfig(name, step_size=0.1)


# -- running the tracker -------------------------------------------------------------------------------
@dataclass
class Run:
    """One pass of a tracker over a window: the mesh and the wall time of ``Tracker.feed`` per frame."""

    meshes: list[TrackedMesh | None]
    seconds: list[float]

    @property
    def keyframe(self) -> list[bool]:
        return [m is not None and m.topology_changed for m in self.meshes]

    def step_seconds(self) -> list[float]:
        """Wall times of the frames that were tracked (not keyframes)."""
        return [s for s, k in zip(self.seconds, self.keyframe) if not k]

    def info(self, key: str) -> list[float]:
        """A number from each tracked (non-keyframe) frame's ``info`` (e.g. "flow_ms")."""
        return [float(m.info[key]) for m, k in zip(self.meshes, self.keyframe)
                if m is not None and not k and key in m.info]


def make_tracker(model: Model, device: torch.device, precision: str = "auto", *,
                 meshing: MeshingConfig | None = None, solver: SolverConfig | None = None
                 ) -> Tracker:
    """A Tracker with the evaluation settings (no re-keying in the window, no second filtering of the
    already filtered object points), the given meshing and solver (default: the product's), on
    ``device``."""
    # questions 1-3 and 6 measure the velocity field's machinery (keyframe + flow against per-frame
    # reconstruction, solvers, sizes, devices): the flow carries the mesh here, not the product's
    # default deformation graph (whose accuracy and cost docs/tracking.md reports)
    base = TrackerConfig(deformation=DeformationConfig(enabled=False))
    changes: dict[str, Any] = {}
    if meshing is not None:
        changes["meshing"] = meshing
    if solver is not None:
        changes["solver"] = solver
    config = evaluation_tracker_config(dataclasses.replace(base, **changes))
    # The windows hold the object's points alone: no dominant-plane removal on them (see
    # sequences.OBJECT_FILTERING), whatever the evaluation settings say.
    config = dataclasses.replace(config, preprocess=dataclasses.replace(config.preprocess,
                                                                        remove_plane=False))
    return Tracker(model, config, device=device, precision=precision)


def _feed(tracker: Tracker, points: np.ndarray, stamp: float) -> tuple[TrackedMesh | None, float]:
    start = time.perf_counter()
    mesh = tracker.feed(points, stamp)  # returns numpy arrays: device work is finished
    return mesh, time.perf_counter() - start


def warm_up(tracker: Tracker, seq: BenchSequence) -> None:
    """One keyframe and one tracked frame, untimed (imports, allocator, thread pools), then reset."""
    r = seq.record
    tracker.reset()
    for f in range(min(2, len(r.frame_times))):
        tracker.feed(r.frame_points[f], float(r.frame_times[f]))
    tracker.reset()


def track_window(tracker: Tracker, seq: BenchSequence) -> Run:
    """Keyframe + tracking: the first frame is a keyframe, every later one is tracked."""
    r = seq.record
    tracker.reset()
    meshes, seconds = [], []
    for t, points in zip(r.frame_times, r.frame_points):
        mesh, dt = _feed(tracker, points, float(t))
        meshes.append(mesh)
        seconds.append(dt)
    return Run(meshes, seconds)


def reconstruct_every_frame(tracker: Tracker, seq: BenchSequence) -> Run:
    """Per-frame reconstruction with the same network: every frame is encoded as a keyframe and meshed
    (MISE + marching cubes + the same cleanup and simplification); nothing is carried between frames."""
    r = seq.record
    meshes, seconds = [], []
    for t, points in zip(r.frame_times, r.frame_points):
        tracker.reset()
        mesh, dt = _feed(tracker, points, float(t))
        meshes.append(mesh)
        seconds.append(dt)
    tracker.reset()
    return Run(meshes, seconds)


# -- scoring -------------------------------------------------------------------------------------------
def vertex_tracks(run: Run) -> list[np.ndarray]:
    """Per frame, the keyframe mesh's vertices where the tracker carried them ((V, 3) each).

    Raises BenchError when the window has no mesh at its first frame or the topology changed inside it
    (the evaluation settings never re-key, so that would be a tracker fault)."""
    first = run.meshes[0]
    if first is None:
        raise BenchError("the tracker gave no mesh at the keyframe (empty occupancy)")
    out = []
    for m in run.meshes:
        if m is None or m.num_vertices != first.num_vertices or m.keyframe_id != first.keyframe_id:
            raise BenchError("the mesh changed inside the window; expected one keyframe segment")
        out.append(m.vertices)
    return out


def per_frame_nn_tracks(run: Run) -> list[np.ndarray]:
    """Correspondences for per-frame reconstruction: the first frame's vertices, each matched to the
    nearest vertex of the next frame's new mesh, and so on (metrics.nearest_neighbour_tracks over the
    meshes' vertices; a frame whose mesh came out empty keeps the previous positions)."""
    if run.meshes[0] is None:
        raise BenchError("per-frame reconstruction gave no mesh at the first frame (empty occupancy)")
    start = run.meshes[0].vertices
    later = [np.zeros((0, 3)) if m is None else m.vertices for m in run.meshes[1:]]
    return [start] + nearest_neighbour_tracks(start, later)


def corr_errors(tracks: Sequence[np.ndarray], seq: BenchSequence,
                subset: np.ndarray | None = None) -> dict[int, float]:
    """Correspondence L2 (metres) at each ground-truth frame, the paper's definition: each keyframe
    vertex is matched to its nearest truth point at the keyframe (frame 0); at frame f the error is the
    mean distance between where the vertex is predicted and where its truth point really is.
    subset: score only these vertex indices."""
    r = seq.record
    start = np.asarray(tracks[0])
    pick = slice(None) if subset is None else subset
    matches = nearest_indices(start[pick], r.corr[0])
    return {int(f): correspondence_l2(np.asarray(tracks[f])[pick], r.corr[k], matches)
            for k, f in enumerate(r.gt_frames)}


def chamfer_errors(run: Run, seq: BenchSequence, n_points: int, seed: int = 0) -> dict[int, float]:
    """Chamfer-L1 (metres) of each ground-truth frame's mesh against the truth surface points (frames
    without a mesh are left out)."""
    rng = np.random.default_rng(seed)
    r = seq.record
    out = {}
    for k, f in enumerate(r.gt_frames):
        m = run.meshes[int(f)]
        if m is not None and m.num_faces:
            out[int(f)] = chamfer_l1(sample_surface(m.vertices, m.faces, n_points, rng),
                                     r.surface_at(k))
    return out


def _later_mean(errors: dict[int, float]) -> float:
    later = [v for f, v in errors.items() if f > 0]
    return float(np.mean(later)) if later else float("nan")


def _last(errors: dict[int, float]) -> float:
    return errors[max(errors)]


# -- Coherent Point Drift --------------------------------------------------------------------------------
def cpd_tracks(start: np.ndarray, observations: Sequence[np.ndarray], *, iterations: int,
               ) -> tuple[list[np.ndarray], list[float]]:
    """Non-rigid Coherent Point Drift (pycpd ``DeformableRegistration``) frame to frame.

    start: (M, 3) keyframe vertices (metres); observations: each later frame's observed points. Each
    frame registers the current vertices (the moving GMM centroids, pycpd's Y) to the frame's points
    (pycpd's X) and keeps the result as the next frame's start. Both sets are mapped once to the
    keyframe vertices' zero mean and unit RMS radius, where the CPD paper's defaults apply (alpha =
    lambda = 2, beta = 2; pycpd's defaults, no outlier weight, tolerance 1e-3), with at most
    ``iterations`` EM iterations. Returns the positions at each later frame (metres) and the wall time
    of each frame's registration (seconds).
    """
    from pycpd import DeformableRegistration

    start = np.asarray(start, np.float64)
    centre = start.mean(axis=0)
    scale = float(np.sqrt(((start - centre) ** 2).sum(axis=1).mean())) or 1.0
    current = (start - centre) / scale
    tracks, seconds = [], []
    for obs in observations:
        t0 = time.perf_counter()
        target = (np.asarray(obs, np.float64) - centre) / scale
        if len(target):
            reg = DeformableRegistration(X=target, Y=current, max_iterations=iterations)
            current, _ = reg.register()
        seconds.append(time.perf_counter() - t0)
        tracks.append(current * scale + centre)
    return tracks, seconds


# -- question 1 ------------------------------------------------------------------------------------------
Q1_COLUMNS = [
    ("sequence", "sequence"), ("method", "method"), ("frames", "frames"),
    ("empty", "frames without mesh"), ("vertices", "vertices (mean)"),
    ("ms_frame", "ms / frame (median)"), ("ms_window", "ms / frame incl. keyframe (window mean)"),
    ("speedup", "speed-up vs per-frame"),
    ("chamfer", "Chamfer-L1 (norm.)"), ("chamfer_cm", "Chamfer-L1 (cm)"),
    ("corr0_cm", "corr. L2 at frame 0 (cm)"), ("corr", "corr. L2 (norm.)"),
    ("corr_cm", "corr. L2 (cm)"), ("corr_end_cm", "corr. L2 at end (cm)"),
]


@dataclass
class SequenceResult:
    """What question 1 measured on one sequence, kept for questions 2 and 6."""

    seq: BenchSequence
    ours: Run
    per_frame: Run
    ours_tracks: list[np.ndarray]
    ours_corr: dict[int, float]


def why_occupancy_flow(model: Model, sequences: Sequence[BenchSequence], device: torch.device, *,
                       precision: str = "auto", chamfer_points: int = 10_000,
                       meshing: MeshingConfig | None = None,
                       progress: Callable[[str], None] = print) -> tuple[Table, list[SequenceResult]]:
    """Question 1: keyframe + tracking vs per-frame reconstruction with the same network, per sequence."""
    table = Table("1. Why Occupancy Flow: keyframe + tracking vs per-frame reconstruction", Q1_COLUMNS)
    results = []
    for seq in sequences:
        tracker = make_tracker(model, device, precision, meshing=meshing)
        warm_up(tracker, seq)
        progress(f"Q1 {seq.name}: keyframe + tracking over {seq.frames} frames")
        ours = track_window(tracker, seq)
        progress(f"Q1 {seq.name}: per-frame reconstruction of {seq.frames} frames")
        per_frame = reconstruct_every_frame(tracker, seq)
        unit = seq.size_m
        try:
            tracks = vertex_tracks(ours)
            ours_corr = corr_errors(tracks, seq)
            pf_corr = corr_errors(per_frame_nn_tracks(per_frame), seq)
        except BenchError as e:
            table.notes.append(f"{seq.name}: not measured: {e}.")
            table.targets.append(Target(f"{seq.name}: tracking >= 10x faster per frame than "
                                        "per-frame reconstruction", f"nothing ({e})", None))
            progress(f"Q1 {seq.name}: not measured: {e}")
            continue
        step = median(ours.step_seconds())
        rebuild = median(per_frame.seconds)
        for name, run, corr, ms_frame in (
                ("keyframe + tracking (ours)", ours, ours_corr, step),
                ("per-frame reconstruction", per_frame, pf_corr, rebuild)):
            cham = chamfer_errors(run, seq, chamfer_points)
            cham_mean = float(np.mean(list(cham.values()))) if cham else float("nan")
            table.add({
                "sequence": seq.name, "method": name, "frames": seq.frames,
                "empty": sum(m is None or m.num_faces == 0 for m in run.meshes),
                "vertices": int(round(np.mean([m.num_vertices for m in run.meshes if m is not None]))),
                "ms_frame": 1e3 * ms_frame, "ms_window": 1e3 * float(np.mean(run.seconds)),
                "speedup": rebuild / ms_frame if ms_frame > 0 else None,
                "chamfer": cham_mean / unit, "chamfer_cm": 100 * cham_mean,
                "corr": _later_mean(corr) / unit, "corr_cm": 100 * _later_mean(corr),
                "corr0_cm": 100 * corr[0], "corr_end_cm": 100 * _last(corr)})
        speedup = rebuild / step if step > 0 else float("nan")
        table.targets.append(Target(
            f"{seq.name}: tracking >= 10x faster per frame than per-frame reconstruction",
            f"{speedup:.1f}x ({1e3 * step:.0f} ms vs {1e3 * rebuild:.0f} ms, medians)",
            bool(speedup >= 10)))
        results.append(SequenceResult(seq, ours, per_frame, tracks, ours_corr))
    m = meshing or MeshingConfig()
    solver = TrackerConfig().solver
    table.notes += [
        f"Both methods use the same network and the product's `Tracker` (same preprocessing, the same "
        f"keyframe meshing: MISE {m.resolution0} -> {m.resolution0 * 2 ** m.upsampling_steps} cells "
        f"per axis, marching cubes, largest component, simplification to {m.target_vertices} "
        f"vertices). Keyframe + tracking: frame 0 is a keyframe, every later frame updates the causal "
        f"motion code with that frame and carries the vertices through the velocity field "
        f"({solver.method}, step {solver.step_size:g}), plus the product's per-frame extras (tracking "
        f"residual, observed points carried back to the keyframe). Per-frame reconstruction: the "
        f"tracker is reset before every frame, so every frame is encoded and meshed as a keyframe.",
        "ms / frame (median): ours over the tracked frames (keyframe excluded); per-frame "
        "reconstruction over all frames. 'incl. keyframe' is the window's total time divided by its "
        "frames. Wall time of `Tracker.feed` (input in, mesh as numpy arrays out).",
        "frames without mesh: the network's occupancy had no surface there (the tracker holds "
        "nothing to show); such frames are left out of Chamfer-L1, and the per-frame correspondence "
        "chain keeps the previous positions through them. Chamfer-L1: mean over the frames of the "
        "mean of accuracy and completeness distances between samples on the mesh and the truth "
        "surface points. Normalised = divided by the object's size "
        "(longest side of the truth bounding box at the keyframe; D-FAUST's scale).",
        "corr. L2 (the paper's): each vertex of the frame-0 mesh is matched to its nearest truth point "
        "at frame 0; at frame t the error is the mean distance between where the method says that "
        "vertex is and where its truth point really is; mean over frames 1..T-1, and at the last "
        "frame. At frame 0 it is the distance from the keyframe mesh's vertices to their matched "
        "truth points: the reconstruction's share of every later value. Ours: the tracked vertex. "
        "Per-frame reconstruction has no correspondences of its own: "
        "each vertex of frame t-1's path is matched to the nearest vertex of frame t's new mesh "
        "(`metrics.nearest_neighbour_tracks` over the meshes' vertices), starting from the frame-0 "
        "vertices, so a vertex's position at frame t is the end of that chain of nearest neighbours.",
    ]
    return table, results


# -- question 2 ------------------------------------------------------------------------------------------
Q2_COLUMNS = [
    ("sequence", "sequence"), ("method", "method"), ("vertices", "vertices scored"),
    ("ms_frame", "ms / frame (median)"), ("corr", "corr. L2 (norm.)"), ("corr_cm", "corr. L2 (cm)"),
    ("corr_end_cm", "corr. L2 at end (cm)"),
]


def correspondence_baselines(results: Sequence[SequenceResult], *, cpd_vertices: int = 1000,
                             cpd_iterations: int = 20, cpd_full_mesh: bool = True, seed: int = 0,
                             progress: Callable[[str], None] = print) -> Table:
    """Question 2: our tracking vs nearest-neighbour tracking vs Coherent Point Drift on the same windows,
    all starting from our keyframe mesh and scored on the same vertices (a random subset of
    ``cpd_vertices`` keyframe vertices, or all of them when the mesh is smaller). cpd_full_mesh: also
    time one CPD iteration on the whole keyframe mesh (first sequence only), to show its cost there."""
    table = Table("2. Correspondence baselines", Q2_COLUMNS)
    for res in results:
        seq, r = res.seq, res.seq.record
        start = res.ours_tracks[0]
        rng = np.random.default_rng(seed)
        n = min(cpd_vertices, len(start)) if cpd_vertices else len(start)
        subset = np.sort(rng.choice(len(start), size=n, replace=False))
        unit = seq.size_m
        ours_sub = corr_errors(res.ours_tracks, seq, subset)
        rows = [("keyframe + tracking (ours)", ours_sub, median(res.ours.step_seconds()))]
        progress(f"Q2 {seq.name}: nearest-neighbour tracking")
        t0 = time.perf_counter()
        nn = [start] + nearest_neighbour_tracks(start, r.frame_points[1:])
        nn_s = (time.perf_counter() - t0) / max(1, len(r.frame_points) - 1)
        rows.append(("nearest-neighbour tracking", corr_errors(nn, seq, subset), nn_s))
        if cpd_vertices:
            progress(f"Q2 {seq.name}: Coherent Point Drift, {n} vertices, <= {cpd_iterations} "
                     f"iterations per frame, {seq.frames - 1} frames")
            tracks, seconds = cpd_tracks(start[subset], r.frame_points[1:], iterations=cpd_iterations)
            cpd = [start[subset]] + tracks
            rows.append((f"Coherent Point Drift (pycpd, {cpd_iterations} it.)",
                         corr_errors(cpd, seq), median(seconds)))
        for name, corr, seconds in rows:
            table.add({"sequence": seq.name, "method": name, "vertices": n,
                       "ms_frame": 1e3 * seconds, "corr": _later_mean(corr) / unit,
                       "corr_cm": 100 * _later_mean(corr), "corr_end_cm": 100 * _last(corr)})
        if cpd_full_mesh and cpd_vertices and n < len(start) and len(r.frame_points) > 1:
            progress(f"Q2 {seq.name}: one CPD iteration on all {len(start)} vertices (time only)")
            _, seconds = cpd_tracks(start, r.frame_points[1:2], iterations=1)
            table.add({"sequence": seq.name, "method": "Coherent Point Drift, 1 it., whole mesh "
                       "(time only)", "vertices": len(start), "ms_frame": 1e3 * seconds[0],
                       "corr": None, "corr_cm": None, "corr_end_cm": None})
            cpd_full_mesh = False  # once is enough to show the cost at the product's mesh size
        ours_c = _later_mean(ours_sub)
        nn_c = _later_mean(rows[1][1])
        table.targets.append(Target(
            f"{seq.name}: our correspondence error lower than nearest-neighbour tracking's",
            f"{100 * ours_c:.2f} cm vs {100 * nn_c:.2f} cm", bool(ours_c < nn_c)))
        if cpd_vertices:
            cpd_c = _later_mean(rows[2][1])
            ratio = rows[2][2] / rows[0][2] if rows[0][2] > 0 else float("nan")
            table.targets.append(Target(
                f"{seq.name}: our correspondence error lower than CPD's",
                f"{100 * ours_c:.2f} cm vs {100 * cpd_c:.2f} cm", bool(ours_c < cpd_c)))
            table.targets.append(Target(
                f"{seq.name}: ours >= 100x faster per frame than CPD",
                f"{ratio:.0f}x ({1e3 * rows[0][2]:.0f} ms for all {len(start)} vertices vs "
                f"{1e3 * rows[2][2]:.0f} ms for {n})", bool(ratio >= 100)))
    table.notes += [
        "All three start from our keyframe mesh (frame 0) and are scored with the same matches on the "
        "same vertices: a random subset (seed 0) of the keyframe mesh's vertices, as many as CPD "
        "registers. Ours carries every vertex (its time is for all of them, the whole "
        "`Tracker.feed`); the subset only selects which vertices are scored.",
        "Nearest-neighbour tracking (`metrics.nearest_neighbour_tracks`): each vertex jumps to the "
        "nearest observed point of the next frame (<= 1024 object points per frame, the points the "
        "tracker is given before it subsamples them to the model's input size).",
        "Coherent Point Drift: pycpd's `DeformableRegistration` registers the current vertices (GMM "
        "centroids) to each frame's observed points, frame to frame, in coordinates normalised once "
        "to the keyframe vertices' zero mean and unit RMS radius, with the CPD paper's default "
        "alpha = beta = 2 (pycpd's defaults, w = 0, tolerance 1e-3) and a capped number of EM "
        "iterations; its cost grows with the cube of the vertex count (an M x M solve per "
        "iteration), so it runs on a subset of the mesh to fit the run's time budget: at the full "
        "mesh it would be slower still, so the speed target is judged in CPD's favour.",
    ]
    return table


# -- question 3 ------------------------------------------------------------------------------------------
Q3_COLUMNS = [
    ("sequence", "sequence"), ("solver", "solver"), ("target", "target vertices"),
    ("vertices", "vertices"), ("flow_ms", "flow ms / frame (median)"),
    ("step_ms", "step ms / frame (median)"), ("corr", "corr. L2 (norm.)"),
    ("corr_cm", "corr. L2 (cm)"), ("dev_cm", "deviation from reference at end (cm)"),
]


def solvers_and_sizes(model: Model, sequences: Sequence[BenchSequence], device: torch.device, *,
                      precision: str = "auto", sizes: Sequence[int] = (1000, 3000, 10_000),
                      solvers: Sequence[str] = ("euler", "midpoint", "rk4", "dopri5"),
                      meshing: MeshingConfig | None = None,
                      progress: Callable[[str], None] = print) -> Table:
    """Question 3: tracking time and correspondence error per solver and keyframe mesh size."""
    table = Table("3. Solvers and mesh sizes", Q3_COLUMNS)
    base_meshing = meshing or MeshingConfig()
    default = TrackerConfig()
    for seq in sequences:
        unit = seq.size_m
        for size in sizes:
            mesh_cfg = dataclasses.replace(base_meshing, target_vertices=int(size))
            progress(f"Q3 {seq.name}: {size} vertices, reference solve (dopri5 rtol 1e-6)")
            ref = track_window(make_tracker(model, device, precision, meshing=mesh_cfg,
                                            solver=REFERENCE_SOLVER), seq)
            try:
                ref_end = vertex_tracks(ref)[-1]
            except BenchError as e:
                table.notes.append(f"{seq.name}, {size} vertices: not measured: {e}.")
                continue
            for name in solvers:
                solver = solver_config(name)
                tracker = make_tracker(model, device, precision, meshing=mesh_cfg, solver=solver)
                run = track_window(tracker, seq)
                tracks = vertex_tracks(run)
                if len(tracks[0]) != len(ref_end):
                    raise BenchError("the reference and the solver runs meshed different keyframes")
                corr = corr_errors(tracks, seq)
                is_default = (solver == default.solver and size == default.meshing.target_vertices)
                label = (f"{name} (step 0.1)" if solver.fixed_step else
                         f"{name} (rtol {solver.rtol:g}, atol {solver.atol:g})")
                table.add({
                    "sequence": seq.name, "solver": label + (" **default**" if is_default else ""),
                    "target": int(size), "vertices": len(tracks[0]),
                    "flow_ms": median(run.info("flow_ms")), "step_ms": 1e3 * median(run.step_seconds()),
                    "corr": _later_mean(corr) / unit, "corr_cm": 100 * _later_mean(corr),
                    "dev_cm": 100 * float(np.linalg.norm(tracks[-1] - ref_end, axis=1).mean())})
            progress(f"Q3 {seq.name}: {size} vertices done")
    default_size = default.meshing.target_vertices
    for seq in sequences:
        rows = [r for r in table.rows if r["sequence"] == seq.name]
        verdict = solver_verdict(rows, default_size, default.solver.method)
        if verdict:
            table.notes.append(f"{seq.name}: {verdict}")
    table.notes += [
        "Each row is a full pass of the tracker over the window (one keyframe, then tracked frames) "
        "with that solver and keyframe mesh size; same network inputs in every row (the tracker's "
        "subsampling is seeded), so rows differ only in the solver and the mesh. The marching-cubes "
        "mesh is simplified to the target; it keeps fewer vertices when it has fewer.",
        "flow ms: integrating the vertices from the previous frame's time to this one "
        "(`info['flow_ms']`); step ms: the whole `Tracker.feed` (also the motion-code update, the "
        "residual and the backward solve of the observed points, which do not depend on the solver).",
        "Fixed-step solvers use the default step 0.1 in normalised time (1 = one model window, here "
        "1 s); a shorter frame interval (1/30 s synthetic, 1/60 s D-FAUST) is integrated in one step "
        "of that solver. dopri5 is adaptive with the default tolerances.",
        f"deviation from reference: mean distance at the window's last frame between the vertices as "
        f"this solver carried them and as a tight dopri5 solve (rtol {REFERENCE_SOLVER.rtol:g}, atol "
        f"{REFERENCE_SOLVER.atol:g}) carried the same mesh: the integration error alone, separate "
        "from the model's error (corr. L2).",
    ]
    return table


#: A solver is accurate enough when its integration error is under this share of the model's error.
SOLVER_TOLERANCE = 0.05


def solver_verdict(rows: Sequence[dict[str, Any]], size: int, default_method: str) -> str:
    """Whether question 3's rows (one sequence) support the default solver and mesh size, in words.

    Rule (fixed before any run): at the default size, the solver to choose is the cheapest (median
    flow time) whose deviation from the reference is under SOLVER_TOLERANCE of the model's own
    correspondence error; the sizes are compared by correspondence error and flow time.
    """
    at = [r for r in rows if r["target"] == size]
    if not at:
        return ""
    good = [r for r in at if r["dev_cm"] <= SOLVER_TOLERANCE * r["corr_cm"]]
    default = [r for r in at if r["solver"].split()[0] == default_method]
    parts = []
    if good and default:
        best = min(good, key=lambda r: r["flow_ms"])
        d = default[0]
        name = best["solver"].split()[0]
        if name == default_method:
            parts.append(f"the data supports the default solver: {default_method} is the cheapest "
                         f"solver whose integration error ({d['dev_cm']:.3g} cm) stays under "
                         f"{SOLVER_TOLERANCE:.0%} of the model's correspondence error "
                         f"({d['corr_cm']:.3g} cm) at {size} vertices.")
        else:
            parts.append(f"the data does not support the default solver: {name} is "
                         f"{d['flow_ms'] / best['flow_ms']:.1f}x cheaper than {default_method} "
                         f"({best['flow_ms']:.3g} vs {d['flow_ms']:.3g} ms flow per frame at {size} "
                         f"vertices) and its integration error ({best['dev_cm']:.3g} cm) is still "
                         f"under {SOLVER_TOLERANCE:.0%} of the model's correspondence error "
                         f"({best['corr_cm']:.3g} cm).")
    elif default:
        parts.append(f"no solver keeps its integration error under {SOLVER_TOLERANCE:.0%} of the "
                     f"model's correspondence error at {size} vertices.")
    by_size = {}
    for r in rows:
        if r["solver"].split()[0] == default_method:
            by_size[r["target"]] = r
    if size in by_size and len(by_size) > 1:
        ref = by_size[size]
        others = [f"{t} vertices ({r['vertices']} kept): corr. L2 {r['corr_cm']:.3g} cm, flow "
                  f"{r['flow_ms']:.3g} ms" for t, r in sorted(by_size.items()) if t != size]
        parts.append(f"Mesh size with {default_method}: {size} vertices (the default): corr. L2 "
                     f"{ref['corr_cm']:.3g} cm, flow {ref['flow_ms']:.3g} ms; " + "; ".join(others)
                     + ".")
    return " ".join(parts)


# -- question 6 ------------------------------------------------------------------------------------------
Q6_COLUMNS = [
    ("device", "device"), ("gpu", "GPU"), ("precision", "network precision"),
    ("sequence", "sequence"), ("keyframe_ms", "keyframe ms (median)"),
    ("step_ms", "tracking step ms (median)"), ("flow_ms", "flow ms (median)"),
]


def gpu_table(device_info: dict[str, str], results: Sequence[SequenceResult]) -> Table:
    """Question 6: the question-1 timings on the device this run chose (a CUDA GPU when there is one)."""
    table = Table("6. GPU", Q6_COLUMNS)
    for res in results:
        table.add({"device": device_info["device"], "gpu": device_info["GPU"],
                   "precision": device_info["network precision"], "sequence": res.seq.name,
                   "keyframe_ms": 1e3 * median(res.per_frame.seconds),
                   "step_ms": 1e3 * median(res.ours.step_seconds()),
                   "flow_ms": median(res.ours.info("flow_ms"))})
    if device_info["device"].startswith("cuda"):
        table.notes.append("Measured on the GPU: every network of questions 1-3 ran there, chosen "
                           "with `select_device`; the ODE state, codes and meshes stay float32.")
    else:
        table.notes.append(
            "No CUDA device on this machine: these are CPU numbers. On a CUDA machine the same "
            "command (`--device auto`, the default) runs every network of questions 1-3 on the "
            "first GPU (`occflow_ros.model.select_device`, as the node does) in fp16 (`precision "
            "auto`), and this table then holds the GPU's numbers.")
    return table


def main() -> None:
    import argparse

    from harness import BenchConfig, bench_device, load_model
    from occflow_ros.model import shipped_model_path
    from sequences import dfaust_sequence, synthetic_person

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(shipped_model_path()))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    cfg = BenchConfig(device=args.device, threads=args.threads)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = bench_device(cfg.device)
    checkpoint, _ = load_model(args.model, device)
    seqs = [synthetic_person(cfg.synthetic_seed, cfg.synthetic_motion, frames=cfg.frames, fps=cfg.fps)]
    if cfg.dfaust is not None:
        seqs.append(dfaust_sequence(cfg.dfaust))
    q1, results = why_occupancy_flow(checkpoint, seqs, device)
    print(q1.markdown())
    print(correspondence_baselines(results, cpd_vertices=cfg.cpd_vertices,
                                   cpd_iterations=cfg.cpd_iterations).markdown())
    print(solvers_and_sizes(checkpoint, seqs, device, sizes=cfg.sizes, solvers=cfg.solvers).markdown())


if __name__ == "__main__":
    main()
