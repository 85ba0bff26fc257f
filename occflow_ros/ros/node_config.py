"""The reconstruct node's parameters: one table (name, default, range, description), validated into a NodeConfig.

The node declares every parameter in :data:`PARAMETERS` with a descriptor built from its row, reads the
values (from ``config/reconstruct.yaml``, ``-p`` overrides or a launch file) and hands them to
:func:`node_config_from_parameters`, which checks each one and maps the flat ``tracker.*`` names onto
:class:`~occflow_ros.tracking.TrackerConfig` / :class:`~occflow_ros.geometry.PreprocessConfig` in one
place (:func:`tracker_config_from_parameters`). Nothing here imports rclpy, so it is tested without ROS.
"""

from __future__ import annotations

import dataclasses

import difflib
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

from ..geometry import PreprocessConfig, PreprocessError
from ..model import SOLVERS, ModelError, SolverConfig, shipped_model_path
from ..model.checkpoint import SHIPPED_MODEL_FILE
from ..model.device import PRECISIONS
from ..tracking import DeformationConfig, MeshingConfig, TrackerConfig, TrackingError
from ..tracking.config import KEYFRAME_WORKERS

__all__ = [
    "DEFAULT_MODEL_FILE",
    "NODE_NAME",
    "INPUT_QOS",
    "INPUT_TYPES",
    "CLUSTER_MODES",
    "NodeConfig",
    "NodeConfigError",
    "OutputOptions",
    "ParamSpec",
    "PARAMETERS",
    "PARAMETERS_BY_NAME",
    "PRESETS",
    "apply_preset",
    "choose_preset",
    "preset_values",
    "check_parameter",
    "default_model_path",
    "node_config_from_parameters",
    "output_options_from_parameters",
    "resolve_model_path",
    "tracker_config_from_parameters",
    "unknown_parameters_message",
]

#: The node's name (its topics are ~/<output> under it, its parameters file section /<name>).
NODE_NAME = "occflow_reconstruct"

DEFAULT_MODEL_FILE = SHIPPED_MODEL_FILE
INPUT_QOS = ("sensor_data", "reliable")
INPUT_TYPES = ("points", "depth")
#: parameter presets for the machine (config/preset_<name>.yaml); auto: gpu on a CUDA device, else cpu
PRESETS = ("auto", "cpu", "gpu", "none")
CLUSTER_MODES = ("auto", "nearest", "none")
_DEVICE_HINT = "'auto', 'cpu', 'cuda' or 'cuda:N'"


class NodeConfigError(ValueError):
    """A node parameter with a wrong type, a value out of its range, or an unknown name; the message
    names the parameter and what is allowed."""


def default_model_path() -> Path:
    """The shipped model (``occflow_ros.model.shipped_model_path``)."""
    return shipped_model_path()


def resolve_model_path(value: str) -> Path:
    """``model_path`` as given (``~`` expanded), or the shipped model when it is empty."""
    value = value.strip()
    return default_model_path() if not value else Path(value).expanduser()


@dataclass(frozen=True)
class ParamSpec:
    """One node parameter.

    default: its value and type (bool, int, float, str, or a list of floats for a point).
    lo / hi: inclusive range of a number (None: unbounded on that side); choices: allowed strings.
    dynamic: may be changed while the node runs (``ros2 param set``); every other one is read-only.
    """

    name: str
    default: Any
    description: str
    lo: Optional[float] = None
    hi: Optional[float] = None
    choices: Optional[Tuple[str, ...]] = None
    dynamic: bool = False

    @property
    def kind(self) -> str:
        d = self.default
        if isinstance(d, bool):
            return "bool"
        if isinstance(d, int):
            return "integer"
        if isinstance(d, float):
            return "double"
        if isinstance(d, str):
            return "string"
        return "double array"

    def allowed(self) -> str:
        """Plain words for the allowed values, as error messages and descriptors say them."""
        if self.choices is not None:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        if self.kind == "bool":
            return "true or false"
        if self.kind == "double array":
            return "three finite numbers [x, y, z] in metres"
        article = "an" if self.kind[0] in "aeiou" else "a"
        if self.lo is None and self.hi is None:
            return f"{article} {self.kind}"
        lo = "-inf" if self.lo is None else _num(self.lo)
        hi = "inf" if self.hi is None else _num(self.hi)
        return f"{article} {self.kind} in [{lo}, {hi}]"


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"


_P = ParamSpec
PARAMETERS: Tuple[ParamSpec, ...] = (
    # -- model and device ---------------------------------------------------------------------------
    _P("model_path", "", "Occupancy Flow checkpoint file (occflow_ros.model.save_checkpoint); empty: the "
       "shipped model occflow_ros/weights/" + DEFAULT_MODEL_FILE),
    _P("model_input_points", 0, "the number of input points per frame the model must have been trained "
       "for (its config's input_points); a checkpoint trained for another number is refused at start-up. "
       "0: accept any (the node feeds the model as many points as it was trained for)", lo=0, hi=100_000),
    _P("device", "auto", "torch device: " + _DEVICE_HINT + " (auto: the first CUDA GPU if there is one, "
       "else the CPU)"),
    _P("allow_cpu_fallback", False, "when a CUDA device is asked for but absent, run on the CPU instead "
       "of refusing to start"),
    _P("precision", "auto", "network precision: auto (fp16 on CUDA, fp32 on the CPU), fp32, fp16 (CUDA "
       "only), bf16", choices=tuple(PRECISIONS)),
    _P("preset", "auto", "defaults sized for the machine: cpu (config/preset_cpu.yaml: one core, "
       "a 48^3 keyframe grid, 2000 vertices), gpu (config/preset_gpu.yaml: a 128^3 grid, 3000 "
       "vertices, keyframes in the background), auto (gpu when the networks run on a CUDA device, "
       "else cpu) or none (the built-in defaults). A preset only sets what the parameters file and "
       "-p leave unset; the log names the preset and what it set", choices=PRESETS),
    _P("threads", 0, "torch CPU threads (torch.set_num_threads); 0: torch's default (all cores). Keep it "
       "small when other processes share the cores: two torch processes with 2 threads each on 2 cores "
       "slow each other down ~9x", lo=0, hi=256),
    # -- input ----------------------------------------------------------------------------------------
    _P("input.type", "points", "what the node subscribes to: points (sensor_msgs/PointCloud2 on "
       "'points') or depth (sensor_msgs/Image on 'depth', 16UC1 millimetres or 32FC1 metres, with "
       "sensor_msgs/CameraInfo on 'camera_info', paired by stamp; undistorted images only: 0.6 MB "
       "a 640x480 frame instead of 4.9 MB)", choices=INPUT_TYPES),
    _P("input.qos", "sensor_data", "QoS of the 'points' subscription: sensor_data (best effort; also "
       "matches reliable publishers; large clouds need the shared-memory or LARGE_DATA Fast DDS "
       "transport, see README 'DDS and large clouds') or reliable", choices=INPUT_QOS),
    _P("input.depth", 2, "history depth of the 'points' subscription (the node keeps only the newest "
       "cloud anyway)", lo=1, hi=100),
    _P("input.stride", 0, "decimation in image space before anything else: every n-th pixel row "
       "and column of an organized cloud or depth image (every n^2-th point of an unorganized "
       "cloud). 0: automatic, the largest stride that leaves the image at least 320 pixels wide "
       "(640x480 -> 2, 1280x720 -> 4, 320x240 -> 1; unorganized clouds 1); 1: every point",
       lo=0, hi=16),
    _P("input.max_jump_seconds", 10.0, "a stamp more than this ahead of the previous one (s) is a clock "
       "jump: the tracker is reset", lo=0.001, hi=1e6),
    # -- output ---------------------------------------------------------------------------------------
    _P("output.publish_mesh", True, "publish ~/mesh (visualization_msgs/MarkerArray)", dynamic=True),
    _P("output.publish_correspondences", True, "publish ~/correspondences (PointCloud2: vertices with "
       "vertex_id and canonical x0, y0, z0)", dynamic=True),
    _P("output.publish_tracked_mesh", True, "publish ~/tracked_mesh (occflow_ros_msgs/TrackedMesh)",
       dynamic=True),
    _P("output.publish_input_correspondences", True, "publish ~/input_correspondences (PointCloud2: "
       "observed points with their keyframe positions xk, yk, zk) when the tracker computes them",
       dynamic=True),
    _P("output.mesh_alpha", 1.0, "opacity of the mesh marker (below 1 RViz draws it transparent)",
       lo=0.0, hi=1.0, dynamic=True),
    _P("output.fit_color_box", True, "colour the mesh by canonical position in a box fitted to the first "
       "keyframe after each (re)start (true), or in a fixed camera working volume x, y in [-1, 1] m, z in "
       "[0, 3] m (false)"),
    _P("output.depth", 1, "history depth of the output publishers (reliable)", lo=1, hi=100),
    # -- diagnostics and logging ----------------------------------------------------------------------
    _P("diagnostics.period", 1.0, "seconds between diagnostic_msgs/DiagnosticArray messages on "
       "/diagnostics", lo=0.05, hi=60.0),
    _P("diagnostics.window", 5.0, "rates and latency percentiles are over the last this many seconds",
       lo=0.5, hi=600.0),
    _P("log_period", 10.0, "seconds between one-line INFO summaries (rate, latency, drops); 0: never",
       lo=0.0, hi=3600.0),
    # -- tracker --------------------------------------------------------------------------------------
    _P("tracker.window_seconds", 0.0, "a new keyframe at most this long after the last one (s); 0: "
       "automatic: 2 s with the deformation graph alone, else the model's trained window",
       lo=0.0, hi=3600.0),
    _P("tracker.max_frames", 60, "frames per keyframe segment, keyframe included", lo=2, hi=100_000),
    _P("tracker.residual_threshold", 0.03, "growth (m) over the keyframe's values of the mean distance "
       "from the observed points to the tracked surface, or from its visible vertices to the points, "
       "that forces a keyframe; 0: never",
       lo=0.0, hi=100.0),
    _P("tracker.residual_clip", 0.2, "distances are clipped here (m) before averaging", lo=1e-6, hi=100.0),
    _P("tracker.residual_points", 1024, "the residual is averaged over at most this many observed points "
       "(an even stride); 0: all", lo=0, hi=10_000_000),
    _P("tracker.max_gap_seconds", 1.0, "a gap between processed frames longer than this (s) forces a "
       "keyframe (keep it above a keyframe's processing time)",
       lo=1e-3, hi=3600.0),
    _P("tracker.min_points", 50, "frames with fewer points after preprocessing hold the last mesh",
       lo=1, hi=10_000_000),
    _P("tracker.partial_fraction", 0.5, "a frame with fewer points than this fraction of the "
       "segment's usual count is partial (part of the object hidden): never a keyframe; where the "
       "checks say it is lost, the last good mesh is held; 0: off", lo=0.0, hi=1.0),
    _P("tracker.partial_max_seconds", 1.0, "partial frames for longer than this (s) count as whole "
       "again, so a keyframe due is made from them", lo=0.0, hi=3600.0),
    _P("tracker.id_match_distance", 0.03, "a new keyframe vertex inherits the id of a tracked vertex "
       "within this distance (m)", lo=1e-6, hi=10.0),
    _P("tracker.async_keyframes", False, "mesh keyframes in a background thread while the old mesh is "
       "carried on, so no frame waits for meshing; for machines with a core or a GPU to spare (the "
       "bag replay always meshes in line, to be reproducible)"),
    _P("tracker.keyframe_worker", "auto", "where background keyframes are meshed: process (a process "
       "with its own networks, another core for real), thread, auto (process on the CPU, thread on "
       "CUDA)", choices=KEYFRAME_WORKERS),
    _P("tracker.input_correspondences", True, "carry the observed points back to the keyframe time "
       "every frame (~/input_correspondences; one backward ODE solve per frame)"),
    _P("tracker.keyframe_history", 0.0, "a keyframe that falls due also reads the points of the "
       "segment's frames of the last this many seconds, carried to its time by the deformation "
       "graph (0: its own view only; docs/training.md, 'More of the body than one view shows')",
       lo=0.0, hi=60.0),
    _P("tracker.chunk_size", 10_000, "points per network batch / ODE solve", lo=1, hi=10_000_000),
    _P("tracker.seed", 0, "seed of the input subsampling (reproducible runs)", lo=0, hi=2**31 - 1),
    _P("tracker.solver.method", "rk4", "ODE solver carrying the vertices between frames",
       choices=SOLVERS),
    _P("tracker.solver.step_size", 0.1, "step of the fixed-step solvers, normalised time (1 = one "
       "window)", lo=1e-4, hi=10.0),
    _P("tracker.solver.rtol", 1e-3, "relative tolerance of dopri5", lo=1e-12, hi=1.0),
    _P("tracker.solver.atol", 1e-5, "absolute tolerance of dopri5", lo=1e-12, hi=1.0),
    _P("tracker.correspondence_solver.method", "midpoint", "ODE solver of the backward solve of the "
       "observed points", choices=SOLVERS),
    _P("tracker.correspondence_solver.step_size", 0.25, "its step, normalised time", lo=1e-4, hi=10.0),
    _P("tracker.meshing.threshold", 0.5, "occupancy probability of the surface", lo=0.001, hi=0.999),
    _P("tracker.meshing.resolution0", 32, "MISE coarse grid (cells per axis)", lo=4, hi=512),
    _P("tracker.meshing.upsampling_steps", 2, "MISE refinements (final grid resolution0 * 2^steps)",
       lo=0, hi=5),
    _P("tracker.meshing.box_size", 1.1, "edge of the meshed cube, normalised units", lo=0.5, hi=4.0),
    _P("tracker.meshing.target_vertices", 3000, "decimate keyframe meshes to about this many vertices; "
       "0: keep the marching-cubes mesh", lo=0, hi=1_000_000),
    _P("tracker.meshing.largest_component", True, "keep only the largest connected piece of a keyframe "
       "mesh"),
    _P("tracker.deformation.enabled", True, "carry the keyframe mesh by non-rigid registration to each "
       "frame (an embedded deformation graph, as rigid as possible, Levenberg-Marquardt); false: by the "
       "velocity field"),
    _P("tracker.deformation.flow_prior", False, "also integrate the velocity field over each frame's "
       "interval and use its prediction as the graph's motion prior"),
    _P("tracker.deformation.prior_weight", 0.1, "weight of the flow's predicted positions against the data",
       lo=0.0, hi=1e6),
    _P("tracker.deformation.rigid", True, "a bounded rigid stage first, kept only where it explains the "
       "frame better than the last state"),
    _P("tracker.deformation.max_angular_speed", 6.0, "how fast the tracked body may turn (rad/s)",
       lo=1e-6, hi=1e3),
    _P("tracker.deformation.max_speed", 3.0, "how fast the tracked body may move (m/s)", lo=1e-6, hi=1e3),
    _P("tracker.deformation.momentum", 0.8, "how much of each graph node's last motion it continues "
       "before the fit (constant velocity)", lo=0.0, hi=1.0),
    _P("tracker.deformation.node_spacing", 0.07, "graph node spacing, normalised units", lo=0.005, hi=1.0),
    _P("tracker.deformation.max_nodes", 200, "graph nodes at most: a bulkier keyframe mesh gets a wider "
       "spacing, so a frame's cost stays bounded", lo=1, hi=100_000),
    _P("tracker.deformation.rigidity", 1.0, "weight of keeping neighbouring nodes moving rigidly together",
       lo=0.0, hi=1e6),
    _P("tracker.deformation.sliding", 0.1, "weight of the point-to-point distance beside the point-to-plane "
       "one in the fit", lo=0.0, hi=1e6),
    _P("tracker.deformation.max_distance", 0.04, "observed points farther than this from the mesh "
       "(normalised units) are left out of the fit", lo=1e-6, hi=1.0),
    _P("tracker.deformation.coverage", 0.3, "weight of each camera-facing vertex no observed point "
       "chose drawn to its nearest point within max_distance; 0: off", lo=0.0, hi=1e6),
    _P("tracker.deformation.iterations", 4, "Levenberg-Marquardt steps per frame, at most", lo=1,
       hi=1000),
    _P("tracker.deformation.pair_every", 1, "the observed points' nearest vertices are renewed "
       "before every this many steps (2: a faster, less exact fit)", lo=1, hi=1000),
    _P("tracker.deformation.min_decrease", 0.01, "a frame's steps end after one that lowers the "
       "energy by less than this fraction (0: always all iterations)", lo=0.0, hi=0.5),
    _P("tracker.deformation.points", 1024, "observed points per frame the graph is fit to, at most (an "
       "even stride)", lo=3, hi=10_000_000),
    _P("tracker.deformation.fit_vertices", 0, "the fit pairs the observed points with at most this many "
       "mesh vertices (a voxel subsample; 0: all)", lo=0, hi=10_000_000),
    _P("tracker.preprocess.roi_enabled", False, "crop the input to the box roi_min..roi_max (sensor "
       "frame)"),
    _P("tracker.preprocess.roi_min", [-1.0, -1.0, 0.0], "region-of-interest box, low corner (m)"),
    _P("tracker.preprocess.roi_max", [1.0, 1.0, 3.0], "region-of-interest box, high corner (m)"),
    _P("tracker.preprocess.cluster", "auto", "object selection: nearest (keep the nearest large DBSCAN "
       "cluster), none (keep everything), auto (nearest when the ROI is off, none when it is on)",
       choices=CLUSTER_MODES),
    _P("tracker.preprocess.cluster_eps", 0.05, "DBSCAN radius (m)", lo=1e-4, hi=10.0),
    _P("tracker.preprocess.cluster_min_points", 3, "DBSCAN min_points (occupied cells)", lo=1,
       hi=1_000_000),
    _P("tracker.preprocess.cluster_min_fraction", 0.05, "clusters under this fraction of the largest "
       "are never selected", lo=1e-6, hi=1.0),
    _P("tracker.preprocess.cluster_track_distance", 0.1, "follow the object over the stream: the "
       "clusters with half their cells within this many metres of the last frame's object are kept "
       "together (a limb a depth gap parts from the torso); 0: off", lo=0.0, hi=10.0),
    _P("tracker.preprocess.remove_plane", True, "remove the dominant plane (floor, table) with RANSAC"),
    _P("tracker.preprocess.plane_distance", 0.01, "RANSAC inlier distance (m)", lo=1e-5, hi=1.0),
    _P("tracker.preprocess.plane_min_fraction", 0.2, "remove the plane only if it holds at least this "
       "fraction of the points", lo=1e-6, hi=1.0),
    _P("tracker.preprocess.plane_min_extent", 0.8, "... and only if its points span at least this "
       "many metres in both directions of the plane (a floor or table, not the flat front of a torso)",
       lo=0.0, hi=100.0),
    _P("tracker.preprocess.plane_iterations", 200, "RANSAC iterations", lo=1, hi=1_000_000),
    _P("tracker.preprocess.plane_sample", 5000, "RANSAC runs on at most this many points", lo=3,
       hi=10_000_000),
    _P("tracker.preprocess.outlier_neighbors", 20, "statistical outlier removal neighbours; 0: off", lo=0,
       hi=10_000),
    _P("tracker.preprocess.outlier_std_ratio", 2.0, "outlier threshold in standard deviations",
       lo=1e-3, hi=100.0),
    _P("tracker.preprocess.voxel_size", 0.01, "voxel downsampling edge (m); 0: off", lo=0.0, hi=10.0),
)
del _P

PARAMETERS_BY_NAME: Dict[str, ParamSpec] = {p.name: p for p in PARAMETERS}


def choose_preset(preset: str, cuda: bool) -> str:
    """The preset a ``preset`` setting means on a machine whose networks run on CUDA or not."""
    if preset not in PRESETS:
        raise NodeConfigError(f"parameter 'preset' must be one of {', '.join(PRESETS)}, got "
                              f"{preset!r}")
    if preset == "auto":
        return "gpu" if cuda else "cpu"
    return preset


def preset_values(name: str) -> Dict[str, Any]:
    """The parameter values of a preset (``config/preset_<name>.yaml``, from the checkout or the
    installed share directory); {} for 'none'. Raises NodeConfigError for a file that is missing,
    or sets a parameter that does not exist or a value out of its range."""
    return dict(_preset_file(name))


@lru_cache(maxsize=None)
def _preset_file(name: str) -> Tuple[Tuple[str, Any], ...]:
    """A preset's checked values as (name, value) pairs, read once per process."""
    if name == "none":
        return ()
    from .params_file import load_params_file, shipped_config

    path = shipped_config(f"preset_{name}.yaml")
    values = load_params_file(path)
    unknown = sorted(set(values) - set(PARAMETERS_BY_NAME))
    if unknown or "preset" in values:
        raise NodeConfigError(f"preset file {path}: "
                              + (unknown_parameters_message(unknown) if unknown
                                 else "a preset cannot set 'preset'"))
    return tuple((k, check_parameter(PARAMETERS_BY_NAME[k], v)) for k, v in values.items())


def apply_preset(values: Mapping[str, Any], cuda: Optional[bool] = None
                 ) -> Tuple[Dict[str, Any], str, Dict[str, Any]]:
    """The parameters as given (name -> value) with the preset's values filled in where a name is
    not given: (all values, the preset's name, what it filled in). ``cuda``: whether the networks
    run on a CUDA device (None: as ``device`` and ``allow_cpu_fallback`` select it here). Raises
    NodeConfigError for a bad ``preset`` or preset file."""
    spec = PARAMETERS_BY_NAME["preset"]
    preset = check_parameter(spec, values.get("preset", spec.default))
    if cuda is None:
        from ..model import select_device

        try:
            device = select_device(str(values.get("device", "auto")),
                                   fallback_to_cpu=bool(values.get("allow_cpu_fallback", False)))
            cuda = device.type == "cuda"
        except ModelError:
            cuda = False  # a device that cannot be had is refused by name where the model loads
    name = choose_preset(preset, cuda)
    added = {k: v for k, v in preset_values(name).items() if k not in values}
    return {**values, **added}, name, added


def check_parameter(spec: ParamSpec, value: Any) -> Any:
    """``value`` checked against ``spec`` (type, range, choices) and normalised (float for doubles, a
    tuple of 3 floats for a point). Raises NodeConfigError naming the parameter and what is allowed."""
    def fail(why: str = "") -> NodeConfigError:
        got = f"{value!r} ({type(value).__name__})"
        return NodeConfigError(f"parameter '{spec.name}' must be {spec.allowed()}, got {got}{why}")

    kind = spec.kind
    if kind == "bool":
        if not isinstance(value, bool):
            raise fail()
        return value
    if kind == "string":
        if not isinstance(value, str):
            raise fail()
        if spec.choices is not None and value not in spec.choices:
            raise fail()
        return value
    if kind == "double array":
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 3:
            raise fail()
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                   for v in value):
            raise fail()
        return tuple(float(v) for v in value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise fail()
    if kind == "integer" and not isinstance(value, int):
        raise fail(" (write an integer, without a decimal point)")
    if kind == "double":
        value = float(value)
        if not math.isfinite(value):
            raise fail()
    if (spec.lo is not None and value < spec.lo) or (spec.hi is not None and value > spec.hi):
        raise fail()
    return value


def _checked(values: Mapping[str, Any]) -> Dict[str, Any]:
    unknown = sorted(set(values) - set(PARAMETERS_BY_NAME))
    if unknown:
        raise NodeConfigError(unknown_parameters_message(unknown))
    out = {}
    for spec in PARAMETERS:
        out[spec.name] = check_parameter(spec, values.get(spec.name, spec.default))
    return out


def unknown_parameters_message(names: Sequence[str]) -> str:
    """'unknown parameter(s) ...' with the closest known name of each (a typo in a YAML file is
    otherwise silently ignored by ROS)."""
    parts = []
    for name in names:
        close = difflib.get_close_matches(name, list(PARAMETERS_BY_NAME), n=1, cutoff=0.6)
        parts.append(f"'{name}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
    return (f"unknown parameter(s) {', '.join(parts)}; the node's parameters are listed with their "
            "defaults in config/reconstruct.yaml")


def _group_error(group: str, exc: Exception) -> NodeConfigError:
    return NodeConfigError(f"parameters 'tracker.{group}*' do not form a valid setting: {exc}")


def tracker_config_from_parameters(values: Mapping[str, Any]) -> TrackerConfig:
    """The flat ``tracker.*`` parameters (others ignored; missing ones take their defaults) as a
    TrackerConfig with its MeshingConfig, PreprocessConfig and solvers. The one place that maps them.

    Raises NodeConfigError naming the parameter (or group) and what is allowed.
    """
    v = _checked({k: x for k, x in values.items() if k.startswith("tracker.")})
    t = "tracker."
    pre = t + "preprocess."
    roi = v[pre + "roi_enabled"]
    if roi and any(a > b for a, b in zip(v[pre + "roi_min"], v[pre + "roi_max"])):
        raise NodeConfigError(f"parameter '{pre}roi_min' {list(v[pre + 'roi_min'])} must be <= "
                              f"'{pre}roi_max' {list(v[pre + 'roi_max'])} on every axis")
    cluster = {"auto": None, "nearest": True, "none": False}[v[pre + "cluster"]]
    try:
        preprocess = PreprocessConfig(
            roi_min=v[pre + "roi_min"] if roi else None, roi_max=v[pre + "roi_max"] if roi else None,
            cluster=cluster, cluster_eps=v[pre + "cluster_eps"],
            cluster_min_points=v[pre + "cluster_min_points"],
            cluster_min_fraction=v[pre + "cluster_min_fraction"],
            cluster_track_distance=v[pre + "cluster_track_distance"],
            remove_plane=v[pre + "remove_plane"],
            plane_distance=v[pre + "plane_distance"], plane_min_fraction=v[pre + "plane_min_fraction"],
            plane_min_extent=v[pre + "plane_min_extent"],
            plane_iterations=v[pre + "plane_iterations"], plane_sample=v[pre + "plane_sample"],
            outlier_neighbors=v[pre + "outlier_neighbors"],
            outlier_std_ratio=v[pre + "outlier_std_ratio"], voxel_size=v[pre + "voxel_size"],
            n_points=None)  # the tracker samples the model's own input_points per frame
    except PreprocessError as e:
        raise _group_error("preprocess.", e) from None
    m = t + "meshing."
    try:
        meshing = MeshingConfig(
            threshold=v[m + "threshold"], resolution0=v[m + "resolution0"],
            upsampling_steps=v[m + "upsampling_steps"], box_size=v[m + "box_size"],
            target_vertices=v[m + "target_vertices"], largest_component=v[m + "largest_component"])
    except TrackingError as e:
        raise _group_error("meshing.", e) from None
    try:
        solver = SolverConfig(v[t + "solver.method"], step_size=v[t + "solver.step_size"],
                              rtol=v[t + "solver.rtol"], atol=v[t + "solver.atol"])
        correspondence_solver = SolverConfig(v[t + "correspondence_solver.method"],
                                             step_size=v[t + "correspondence_solver.step_size"])
    except ModelError as e:
        raise _group_error("solver", e) from None
    dd = t + "deformation."
    try:
        deformation = DeformationConfig(**{
            f.name: v[dd + f.name] for f in dataclasses.fields(DeformationConfig)})
    except TrackingError as e:
        raise _group_error("deformation.", e) from None
    window = v[t + "window_seconds"]
    try:
        return TrackerConfig(
            window_seconds=window if window > 0 else None, max_frames=v[t + "max_frames"],
            residual_threshold=v[t + "residual_threshold"], residual_clip=v[t + "residual_clip"],
            residual_points=v[t + "residual_points"],
            max_gap_seconds=v[t + "max_gap_seconds"], min_points=v[t + "min_points"],
            partial_fraction=v[t + "partial_fraction"],
            partial_max_seconds=v[t + "partial_max_seconds"],
            id_match_distance=v[t + "id_match_distance"],
            input_correspondences=v[t + "input_correspondences"],
            keyframe_history=v[t + "keyframe_history"],
            async_keyframes=v[t + "async_keyframes"],
            keyframe_worker=v[t + "keyframe_worker"], solver=solver,
            correspondence_solver=correspondence_solver, chunk_size=v[t + "chunk_size"],
            seed=v[t + "seed"], meshing=meshing, preprocess=preprocess, deformation=deformation)
    except TrackingError as e:
        raise _group_error("", e) from None


@dataclass(frozen=True)
class OutputOptions:
    """What the node publishes and how the mesh looks; may change while the node runs."""

    publish_mesh: bool = True
    publish_correspondences: bool = True
    publish_tracked_mesh: bool = True
    publish_input_correspondences: bool = True
    mesh_alpha: float = 1.0


def output_options_from_parameters(values: Mapping[str, Any]) -> OutputOptions:
    """The dynamic ``output.*`` parameters (missing ones: defaults) as OutputOptions."""
    v = _checked({k: x for k, x in values.items() if k.startswith("output.")})
    return OutputOptions(
        publish_mesh=v["output.publish_mesh"],
        publish_correspondences=v["output.publish_correspondences"],
        publish_tracked_mesh=v["output.publish_tracked_mesh"],
        publish_input_correspondences=v["output.publish_input_correspondences"],
        mesh_alpha=v["output.mesh_alpha"])


@dataclass(frozen=True)
class NodeConfig:
    """Everything the reconstruct node needs, validated. Times in seconds."""

    model_path: Path
    model_path_is_default: bool
    model_input_points: int
    device: str
    allow_cpu_fallback: bool
    precision: str
    threads: int
    input_type: str
    input_qos: str
    input_depth: int
    input_stride: int
    max_jump_seconds: float
    output: OutputOptions
    output_depth: int
    fit_color_box: bool
    diagnostics_period: float
    stats_window: float
    log_period: float
    tracker: TrackerConfig
    preset: str = "auto"


def _check_device(spec: str) -> str:
    d = spec.strip().lower()
    ok = d in ("auto", "cpu", "cuda") or (d.startswith("cuda:") and d[5:].isdigit())
    if not ok:
        raise NodeConfigError(f"parameter 'device' must be {_DEVICE_HINT}, got {spec!r}")
    return d


def node_config_from_parameters(values: Mapping[str, Any]) -> NodeConfig:
    """Validate the node's flat parameter values (name -> value; missing names take their defaults).

    Raises NodeConfigError for an unknown name, a wrong type, a value out of range, or settings that
    do not fit together; the message names the parameter and the allowed values.
    """
    v = _checked(values)
    model_value = v["model_path"]
    return NodeConfig(
        model_path=resolve_model_path(model_value),
        model_path_is_default=not model_value.strip(),
        model_input_points=v["model_input_points"],
        device=_check_device(v["device"]),
        allow_cpu_fallback=v["allow_cpu_fallback"],
        precision=v["precision"],
        threads=v["threads"],
        input_type=v["input.type"],
        input_qos=v["input.qos"],
        input_depth=v["input.depth"],
        input_stride=v["input.stride"],
        max_jump_seconds=v["input.max_jump_seconds"],
        output=output_options_from_parameters(v),
        output_depth=v["output.depth"],
        fit_color_box=v["output.fit_color_box"],
        diagnostics_period=v["diagnostics.period"],
        stats_window=v["diagnostics.window"],
        log_period=v["log_period"],
        tracker=tracker_config_from_parameters(v),
        preset=v["preset"],
    )
