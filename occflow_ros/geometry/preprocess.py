"""One depth frame -> the object's points: drop invalid points, crop or cluster, filter, subsample.

Input and output are (N, 3) points in metres in the sensor frame. The stages, in this order (each
one optional except the first):

1. **valid**: drop NaN/Inf points and (0, 0, 0) (RealSense publishes invalid depth as zeros).
2. **roi**: keep the points inside an axis-aligned box (sensor frame, bounds inclusive).
3. **plane**: RANSAC (open3d ``segment_plane``) finds the dominant plane (floor, table, wall); its
   inliers are removed only if they are at least ``plane_min_fraction`` of the points and span at
   least ``plane_min_extent`` in both directions of the plane (a floor, not the front of a torso).
   Before the voxels: a floor or a wall is most of a frame's points, and the voxel stage's sort
   then runs on the object alone (~0.5 ms instead of ~1.7 ms on the demo's frame).
4. **voxel**: one point per occupied cube of edge ``voxel_size`` (the centroid of its points); the
   grid is anchored at the sensor origin, so it does not move with the content of the frame.
5. **cluster**: DBSCAN (open3d ``cluster_dbscan``), then the clusters that continue the previous
   frame's object (``object_hint``), or else the *nearest large cluster* (see
   :class:`PreprocessConfig`); by default only when no ROI box is given.
6. **outliers**: statistical outlier removal (open3d), on what the stages above kept, i.e. on the
   object alone: its statistics are the object's own, and it costs ~5 ms there instead of ~50 ms
   on a whole 640x480 scene.
7. **sample**: exactly ``n_points`` points, drawn with a seeded generator; without replacement, or,
   when fewer points are left, every point once plus random repeats (``n_unique`` says how many
   are real).

A frame with nothing left at some stage gives an empty result with the counts, not an exception;
:class:`~occflow_ros.geometry.errors.PreprocessError` is raised only for misuse (a non-(N, 3) or
non-float array, an invalid config).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping, Optional, Tuple

import numpy as np
from scipy.spatial import cKDTree

from .errors import PreprocessError
from .normalization import Normalization

__all__ = ["PreprocessConfig", "PreprocessResult", "StageCounts", "preprocess", "fit_normalization",
           "valid_mask", "roi_mask", "voxel_downsample", "remove_outliers", "even_stride"]

Vec3 = Tuple[float, float, float]


@dataclass(frozen=True)
class PreprocessConfig:
    """Parameters of :func:`preprocess`; lengths in metres, sensor frame. Validated on creation.

    Attributes:
        roi_min, roi_max: corners of the region-of-interest box, both or neither; None: no crop.
        cluster: pick one cluster (True), keep everything (False), or None: cluster exactly when
            no ROI box is given.
        cluster_eps: DBSCAN neighbourhood radius, > 0. DBSCAN runs on the centroids of a coarse
            grid of edge ``cluster_eps / 1.5`` (so face- and edge-adjacent cells are neighbours),
            and every point takes the label of its cell: same clusters for a fraction of the cost
            of point-level DBSCAN on a whole frame (50-100 ms there).
        cluster_min_points: DBSCAN ``min_points``, counted in occupied coarse cells (>= 1); cells
            with fewer neighbours that are not reachable from a core cell are noise and dropped.
        cluster_min_fraction: the selection rule. Among the clusters holding at least this fraction
            of the largest cluster's points, keep the one nearest the camera: smallest mean
            distance of its points from the sensor origin. So small clusters near the camera
            (noise, a hand) lose to the object, and a larger blob farther away (furniture, a wall
            left after plane removal) loses to a nearer object unless it is more than
            ``1 / cluster_min_fraction`` times the object's size. In (0, 1]; the default 0.05 lets
            a person (~7k points at 1 cm voxels, 1.5 m away) win over a back wall with ten times
            as many points, and drops clusters under 5% of the largest.
        cluster_track_distance: the object followed over a stream, >= 0 (0: off). Given the
            points the previous frame kept (``object_hint``), every cluster with at least half of
            its cells within this distance of them is the object, together (a limb that a depth
            gap parts from the torso in one frame stays with it, where the rule above would keep
            the limb alone when it is nearer the camera). The rule above decides when no cluster
            continues the hint (the first frame, the object lost) or when the cluster it picks is
            larger than all of those together (a new object stepped in front). The default 0.1 m
            is what a hand moves in a frame at 3 m/s and 30 Hz.
        remove_plane: run the dominant-plane stage.
        plane_distance: RANSAC inlier distance, > 0.
        plane_min_fraction: remove the plane only if it holds at least this fraction of the
            points, in (0, 1].
        plane_min_extent: ... and only if its points span at least this many metres along both
            in-plane directions (2nd-98th percentile), >= 0: a floor or a table is large, while the
            front of a torso seen by the camera is flat within a centimetre too, but ~0.5 m wide.
        plane_iterations: RANSAC iterations, >= 1.
        plane_sample: RANSAC runs on at most this many points drawn at random (>= 3); the inliers
            are then found among all points. Keeps the stage at a few ms on a full frame.
        outlier_neighbors: neighbours of the statistical outlier test, 0 to skip the stage.
        outlier_std_ratio: a point is an outlier when its mean neighbour distance exceeds the
            mean over points by this many standard deviations, > 0.
        voxel_size: edge of the downsampling voxel, 0 to skip the stage.
        n_points: points in the output, None to keep all of them.
    """

    roi_min: Optional[Vec3] = None
    roi_max: Optional[Vec3] = None
    cluster: Optional[bool] = None
    cluster_eps: float = 0.05
    cluster_min_points: int = 3
    cluster_min_fraction: float = 0.05
    cluster_track_distance: float = 0.1
    remove_plane: bool = True
    plane_distance: float = 0.01
    plane_min_fraction: float = 0.2
    plane_min_extent: float = 0.8
    plane_iterations: int = 200
    plane_sample: int = 5000
    outlier_neighbors: int = 20
    outlier_std_ratio: float = 2.0
    voxel_size: float = 0.01
    n_points: Optional[int] = 512

    def __post_init__(self) -> None:
        if (self.roi_min is None) != (self.roi_max is None):
            raise PreprocessError("roi_min and roi_max must be given together (or neither)")
        if self.roi_min is not None:
            lo, hi = _vec3("roi_min", self.roi_min), _vec3("roi_max", self.roi_max)
            if any(a > b for a, b in zip(lo, hi)):
                raise PreprocessError(f"roi_min {lo} must be <= roi_max {hi} on every axis")
            object.__setattr__(self, "roi_min", lo)
            object.__setattr__(self, "roi_max", hi)
        if self.cluster not in (None, True, False):
            raise PreprocessError(f"cluster must be true, false or null, got {self.cluster!r}")
        if not isinstance(self.remove_plane, bool):
            raise PreprocessError(f"remove_plane must be true or false, got {self.remove_plane!r}")
        _number(self, "cluster_eps", lo=0.0, lo_open=True)
        _integer(self, "cluster_min_points", lo=1)
        _number(self, "cluster_min_fraction", lo=0.0, hi=1.0, lo_open=True)
        _number(self, "cluster_track_distance", lo=0.0)
        _number(self, "plane_distance", lo=0.0, lo_open=True)
        _number(self, "plane_min_fraction", lo=0.0, hi=1.0, lo_open=True)
        _number(self, "plane_min_extent", lo=0.0)
        _integer(self, "plane_iterations", lo=1)
        _integer(self, "plane_sample", lo=3)
        _integer(self, "outlier_neighbors", lo=0)
        _number(self, "outlier_std_ratio", lo=0.0, lo_open=True)
        _number(self, "voxel_size", lo=0.0)
        if self.n_points is not None:
            _integer(self, "n_points", lo=1)

    @property
    def clusters(self) -> bool:
        """Whether the cluster stage runs."""
        return self.roi_min is None if self.cluster is None else self.cluster

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "PreprocessConfig":
        """From a plain mapping (YAML, ROS parameters); unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise PreprocessError(f"unknown preprocess key(s) {unknown}; known: {sorted(known)}")
        return cls(**dict(data))

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class StageCounts:
    """Points left after each stage, in pipeline order (a skipped stage repeats the count before).

    ``output`` is the number of points returned (``n_points`` when sampling, repeats included);
    ``unique`` how many distinct real points are among them.
    """

    input: int = 0
    valid: int = 0
    roi: int = 0
    plane: int = 0
    voxel: int = 0
    cluster: int = 0
    outliers: int = 0
    output: int = 0
    unique: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class PreprocessResult:
    """Output of :func:`preprocess`.

    Attributes:
        points: (M, 3) float32, metres, sensor frame: the object's points (M = n_points, or 0).
        counts: points left after each stage.
        plane: (4,) float64 plane ``a x + b y + c z + d = 0`` (unit normal) that was removed, or
            None when the stage was off or found no plane large enough.
        seconds: wall time of each stage (keys as in StageCounts, "output" being the sampling).
    """

    points: np.ndarray
    counts: StageCounts
    plane: Optional[np.ndarray] = None
    seconds: dict = field(default_factory=dict)

    @property
    def total_seconds(self) -> float:
        return float(sum(self.seconds.values()))

    @property
    def is_empty(self) -> bool:
        return len(self.points) == 0


def preprocess(points: Any, config: PreprocessConfig | None = None,
               rng: np.random.Generator | int | None = None, *,
               plane_hint: Optional[np.ndarray] = None,
               object_hint: Optional[np.ndarray] = None) -> PreprocessResult:
    """Run the stages of this module on one frame.

    Args:
        points: (N, 3) float array (float32 expected; float16/64 accepted), metres, sensor frame;
            may hold NaN/Inf and (0, 0, 0) invalid points.
        config: the stages' parameters; default ``PreprocessConfig()`` (no ROI, so clustering).
        rng: the generator for subsampling and RANSAC (or a seed); pass one per stream for
            reproducible output.
        plane_hint: the plane a previous frame of the same camera removed (``result.plane``): if
            it still holds at least ``plane_min_fraction`` of the points it is removed again
            without RANSAC (a static camera's floor; a few ms a frame), else RANSAC runs.
        object_hint: (M, 3) points the cluster stage kept in the previous frame of the stream
            (``result.points``, a few thousand are plenty): the clusters that continue them are
            kept (``cluster_track_distance``). None: the nearest large cluster alone.

    Returns:
        PreprocessResult: kept points (float32, metres, sensor frame) and per-stage counts.

    Raises:
        PreprocessError: ``points`` is not an (N, 3) floating array, or ``config`` is not a
            PreprocessConfig.
    """
    if config is None:
        config = PreprocessConfig()
    if not isinstance(config, PreprocessConfig):
        raise PreprocessError(f"config must be a PreprocessConfig, got {type(config).__name__}")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    pts = _check_points(points)
    counts = {"input": len(pts)}
    seconds: dict = {}
    plane = None
    clock = time.perf_counter()

    def done(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        counts[stage] = len(pts)
        seconds[stage] = now - clock
        clock = now

    valid = valid_mask(pts)
    if config.roi_min is None:
        pts = pts[valid]
        done("valid")
        done("roi")
    else:
        # one gather for both stages (the copy of a whole frame is the costly part: ~0.9 ms of a
        # 640x480 frame at stride 2), the valid stage's count kept
        counts["valid"] = int(np.count_nonzero(valid))
        seconds["valid"] = 0.0
        pts = pts[valid & roi_mask(pts, config.roi_min, config.roi_max)]
        done("roi")

    if config.remove_plane and len(pts) >= 3:
        pts, plane = _remove_plane(pts, config, rng, plane_hint)
    done("plane")

    if config.voxel_size > 0 and len(pts):
        pts = voxel_downsample(pts, config.voxel_size)
    done("voxel")

    if config.clusters and len(pts):
        pts = _select_clusters(pts, config, object_hint)
    done("cluster")

    pts = remove_outliers(pts, config)
    done("outliers")

    unique = len(pts)
    if config.n_points is not None and len(pts):
        pts, unique = _subsample(pts, config.n_points, rng)
    done("output")
    counts["unique"] = unique
    return PreprocessResult(np.ascontiguousarray(pts, dtype=np.float32), StageCounts(**counts),
                            plane, seconds)


def fit_normalization(points: Any, padding: float = 0.0) -> Normalization:
    """The normalisation that puts ``points`` (metres) centred in the unit cube.

    ``loc`` is the centre of the axis-aligned bounding box and ``scale = longest side / (1 - padding)``,
    so the longest side spans ``1 - padding`` normalised units: every point lands in
    ``[-(1 - padding)/2, (1 - padding)/2]^3`` inside the unit cube [-0.5, 0.5]^3.

    Margin: the default ``padding=0`` is the convention of the D-FAUST files and of Occupancy
    Networks' preprocessing (``bbox_padding=0``: longest side exactly 1), i.e. the scale the model
    is trained at; the margin is then the meshing grid's own, box_size 1.1 = 0.05 normalised units
    on every side of the unit cube. A padding > 0 leaves ``padding / 2`` of the unit cube free on
    each side of the longest axis as well, at the price of showing the model a smaller object.

    Raises:
        PreprocessError: no points, non-finite points, a bounding box of zero size, or padding
            outside [0, 1).
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise PreprocessError(f"points must have shape (N, 3), got {pts.shape}")
    if len(pts) == 0:
        raise PreprocessError("cannot fit a normalisation to 0 points")
    if not np.all(np.isfinite(pts)):
        raise PreprocessError("cannot fit a normalisation to non-finite points")
    padding = float(padding)
    if not 0.0 <= padding < 1.0:
        raise PreprocessError(f"padding must be in [0, 1), got {padding}")
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    extent = float((hi - lo).max())
    if extent <= 0.0:
        raise PreprocessError("cannot fit a normalisation to points with a zero-size bounding box")
    return Normalization((lo + hi) / 2.0, extent / (1.0 - padding))


# ---- stages ----------------------------------------------------------------------------------------
def valid_mask(points: np.ndarray) -> np.ndarray:
    """(N,) bool: finite and not (0, 0, 0). One pass: |p|^2 is finite and > 0 exactly for those
    (up to float32 overflow past 1.8e19 m, which counts as invalid too)."""
    sq = np.einsum("ij,ij->i", points, points)
    return np.isfinite(sq) & (sq > 0)


def _float32_bounds(lo: Any, hi: Any) -> Tuple[np.ndarray, np.ndarray]:
    """The float32 box holding exactly the float32 values inside the float64 box [lo, hi]: the
    smallest float32 >= lo and the largest float32 <= hi on each axis."""
    lo64, hi64 = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
    lo32, hi32 = lo64.astype(np.float32), hi64.astype(np.float32)
    lo32 = np.where(lo32 < lo64, np.nextafter(lo32, np.float32(np.inf)), lo32)
    hi32 = np.where(hi32 > hi64, np.nextafter(hi32, np.float32(-np.inf)), hi32)
    return lo32, hi32


def roi_mask(points: np.ndarray, roi_min: Any, roi_max: Any) -> np.ndarray:
    """(N,) bool: float32 points (N, 3) inside the box [roi_min, roi_max], bounds included, exactly
    as a float64 comparison would decide (NaN is outside).

    Six column-wise float32 comparisons against bounds rounded inwards: ~2 ms on a 640x480 frame,
    against ~9 ms when numpy promotes the whole (N, 3) array to float64 for the comparison.
    """
    lo, hi = _float32_bounds(roi_min, roi_max)
    mask = np.ones(len(points), bool)
    for axis in range(3):
        column = points[:, axis]
        mask &= column >= lo[axis]
        mask &= column <= hi[axis]
    return mask


def voxel_downsample(points: np.ndarray, voxel_size: float) -> np.ndarray:
    """(N, 3) -> (M, 3) float32: the centroid of the points in each occupied voxel.

    Voxels are the cubes ``[i, i+1) * voxel_size`` on each axis (anchored at the origin); the
    output is ordered by voxel. Numpy (a sort of packed int64 keys): 4-5 ms for 100k points here,
    against ~12 ms for open3d's ``voxel_down_sample`` on the same points.
    """
    centroids, _ = _voxel_centroids(points, voxel_size)
    return centroids.astype(np.float32)


def _voxel_centroids(points: np.ndarray, voxel_size: float) -> tuple[np.ndarray, np.ndarray]:
    """Centroids (M, 3) float64 of the occupied voxels and each point's voxel index (N,)."""
    k = np.floor(points * np.float32(1.0 / voxel_size)).astype(np.int64)
    k -= k.min(axis=0)
    if np.all(k.max(axis=0) < (1 << 21)):
        key = (k[:, 0] << 42) | (k[:, 1] << 21) | k[:, 2]
        _, inverse, count = np.unique(key, return_inverse=True, return_counts=True)
    else:  # a frame spanning more than 2^21 voxels on an axis: slower row-wise unique
        _, inverse, count = np.unique(k, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    sums = np.stack([np.bincount(inverse, points[:, i], len(count)) for i in range(3)], axis=1)
    return sums / count[:, None], inverse


def _remove_plane(pts: np.ndarray, config: PreprocessConfig, rng: np.random.Generator,
                  hint: Optional[np.ndarray] = None) -> tuple[np.ndarray, Optional[np.ndarray]]:
    import open3d as o3d

    if hint is not None:
        model = np.asarray(hint, dtype=np.float64).reshape(4)
        inliers = np.abs(pts.astype(np.float64) @ model[:3] + model[3]) <= config.plane_distance
        if inliers.sum() >= config.plane_min_fraction * len(pts):
            return pts[~inliers], model  # its extent was checked when it was found

    sample = pts
    if len(pts) > config.plane_sample:
        sample = pts[rng.choice(len(pts), config.plane_sample, replace=False)]
    # open3d's RANSAC draws from its own global generator: seed it from ours for repeatability
    o3d.utility.random.seed(int(rng.integers(0, 2 ** 31 - 1)))
    model, _ = _to_cloud(sample).segment_plane(config.plane_distance, 3, config.plane_iterations)
    model = np.asarray(model, dtype=np.float64).reshape(4)
    norm = float(np.linalg.norm(model[:3]))
    if not np.isfinite(norm) or norm == 0.0:
        return pts, None
    model = model / norm
    inliers = np.abs(pts.astype(np.float64) @ model[:3] + model[3]) <= config.plane_distance
    if inliers.sum() < config.plane_min_fraction * len(pts):
        return pts, None
    if _plane_span(pts[inliers], model[:3]) < config.plane_min_extent:
        return pts, None  # flat, but too small to be a floor or a table: part of the object
    return pts[~inliers], model


def _plane_span(points: np.ndarray, normal: np.ndarray) -> float:
    """The smaller of the two in-plane extents (m) of the points (2nd to 98th percentile)."""
    helper = np.array([1.0, 0.0, 0.0]) if abs(normal[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    u = np.cross(normal, helper)
    u /= np.linalg.norm(u)
    v = np.cross(normal, u)
    flat = points.astype(np.float64) @ np.stack([u, v], axis=1)  # (N, 2) in-plane coordinates
    centred = flat - flat.mean(axis=0)
    # principal in-plane axes, so a long narrow strip is measured along its length and width
    _, _, axes = np.linalg.svd(centred, full_matrices=False)
    along = centred @ axes.T
    lo, hi = np.percentile(along, [2.0, 98.0], axis=0)
    return float((hi - lo).min())


def _select_clusters(pts: np.ndarray, config: PreprocessConfig,
                     hint: Optional[np.ndarray]) -> np.ndarray:
    cells, cell_of_point = _voxel_centroids(pts, config.cluster_eps / 1.5)
    cell_labels = np.asarray(_to_cloud(cells).cluster_dbscan(config.cluster_eps,
                                                             config.cluster_min_points))
    labels = cell_labels[cell_of_point]
    clustered = labels >= 0
    if not clustered.any():
        return pts[:0]
    sizes = np.bincount(labels[clustered])
    ranges = np.linalg.norm(pts[clustered], axis=1)
    distance = np.bincount(labels[clustered], ranges, len(sizes)) / np.maximum(sizes, 1)
    candidates = np.flatnonzero(sizes >= config.cluster_min_fraction * sizes.max())
    # nearest first; a tie goes to the larger cluster
    best = min(candidates, key=lambda c: (distance[c], -sizes[c]))
    followed = _clusters_near(cells, cell_labels, len(sizes), hint, config.cluster_track_distance)
    if len(followed) and (best in followed or sizes[best] <= sizes[followed].sum()):
        return pts[np.isin(labels, followed)]
    return pts[labels == best]


def _clusters_near(cells: np.ndarray, cell_labels: np.ndarray, n_clusters: int,
                   hint: Optional[np.ndarray], reach: float) -> np.ndarray:
    """The labels of the clusters with at least half of their cells within ``reach`` of the
    hint's points (none without a hint or with ``reach`` 0)."""
    if hint is None or reach <= 0:
        return np.zeros(0, np.int64)
    hint = np.asarray(hint, np.float64).reshape(-1, 3)
    hint = hint[np.isfinite(hint).all(axis=1)]
    if not len(hint):
        return np.zeros(0, np.int64)
    labelled = cell_labels >= 0
    gap, _ = cKDTree(hint).query(cells[labelled], distance_upper_bound=reach)
    near = np.bincount(cell_labels[labelled], np.isfinite(gap), n_clusters)
    total = np.bincount(cell_labels[labelled], minlength=n_clusters)
    return np.flatnonzero(near >= 0.5 * np.maximum(total, 1))


def remove_outliers(points: np.ndarray, config: PreprocessConfig) -> np.ndarray:
    """The outlier stage of :func:`preprocess` alone (statistical outlier removal with
    ``outlier_neighbors`` and ``outlier_std_ratio``; nothing when ``outlier_neighbors`` is 0 or
    there are too few points), for points preprocessed with it skipped. (M, 3) of the (N, 3)."""
    if config.outlier_neighbors > 0 and len(points) > config.outlier_neighbors:
        return _remove_statistical_outliers(np.asarray(points, np.float32), config)
    return points


def _remove_statistical_outliers(pts: np.ndarray, config: PreprocessConfig) -> np.ndarray:
    _, kept = _to_cloud(pts).remove_statistical_outlier(config.outlier_neighbors,
                                                        config.outlier_std_ratio)
    return pts[np.sort(np.asarray(kept, dtype=np.int64))]


def _subsample(pts: np.ndarray, n: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    if len(pts) >= n:
        return pts[rng.choice(len(pts), n, replace=False)], n
    idx = np.concatenate([np.arange(len(pts)), rng.integers(0, len(pts), n - len(pts))])
    return pts[rng.permutation(idx)], len(pts)


# ---- helpers ---------------------------------------------------------------------------------------
def _check_points(points: Any) -> np.ndarray:
    arr = np.asarray(points)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise PreprocessError(f"points must have shape (N, 3), got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise PreprocessError(f"points must be floating point (float32), got {arr.dtype}")
    return arr.astype(np.float32, copy=False)


def _to_cloud(pts: np.ndarray):
    import open3d as o3d

    return o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.asarray(pts, dtype=np.float64)))


def _vec3(name: str, value: Any) -> Vec3:
    try:
        vec = tuple(float(v) for v in value)
    except (TypeError, ValueError) as err:
        raise PreprocessError(f"{name} must be 3 numbers, got {value!r}") from err
    if len(vec) != 3 or not all(math.isfinite(v) for v in vec):
        raise PreprocessError(f"{name} must be 3 finite numbers, got {value!r}")
    return vec  # type: ignore[return-value]


def _number(cfg: PreprocessConfig, name: str, lo: float, hi: float = math.inf,
            lo_open: bool = False) -> None:
    value = getattr(cfg, name)
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    ok = ok and math.isfinite(float(value)) and (float(value) > lo if lo_open else float(value) >= lo)
    ok = ok and float(value) <= hi
    if not ok:
        bound = f"{'(' if lo_open else '['}{lo}, {hi}{']' if math.isfinite(hi) else ')'}"
        raise PreprocessError(f"{name} must be a number in {bound}, got {value!r}")
    object.__setattr__(cfg, name, float(value))


def _integer(cfg: PreprocessConfig, name: str, lo: int) -> None:
    value = getattr(cfg, name)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo:
        raise PreprocessError(f"{name} must be an integer >= {lo}, got {value!r}")
    object.__setattr__(cfg, name, int(value))


def even_stride(points: np.ndarray, limit: int) -> np.ndarray:
    """At most ``limit`` of the points (0: all), an even stride through them (deterministic)."""
    if limit and len(points) > limit:
        return points[:: -(-len(points) // limit)]
    return points
