"""Geometry room, preprocessing: invalid points, ROI, plane, cluster rule, sampling, normalisation."""

from __future__ import annotations

import numpy as np
import pytest

from occflow_ros.geometry import (PreprocessConfig, PreprocessError, fit_normalization, preprocess,
                                  voxel_downsample)
from occflow_ros.geometry.analytic import depth_frame
from occflow_ros.geometry.preprocess import roi_mask

# every stage off: each test switches on the one it is about
BARE = dict(cluster=False, voxel_size=0.0, outlier_neighbors=0, n_points=None)


def shell(center, radius, n, rng, noise=0.001):
    """n points on a sphere's surface (float32 metres)."""
    d = rng.normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return (np.asarray(center) + radius * d + rng.normal(0, noise, (n, 3))).astype(np.float32)


def as_set(points):
    return {tuple(p) for p in np.asarray(points, np.float32).tolist()}


# ---- valid points, ROI ----------------------------------------------------------------------------
def test_nan_inf_and_zero_points_are_dropped_and_counted():
    rng = np.random.default_rng(0)
    good = rng.uniform(-1, 1, (50, 3)).astype(np.float32)
    bad = np.array([[np.nan, 0, 1], [0, np.inf, 1], [-np.inf, 1, 1], [0, 0, 0], [0, 0, 0],
                    [np.nan] * 3], np.float32)
    points = np.vstack([good[:20], bad, good[20:]])
    result = preprocess(points, PreprocessConfig(**BARE), rng)
    np.testing.assert_array_equal(result.points, good)
    assert result.counts.input == 56 and result.counts.valid == 50 and result.counts.output == 50


def test_roi_crop_keeps_exactly_the_points_inside_the_box_bounds_included():
    rng = np.random.default_rng(1)
    points = rng.uniform(-2, 2, (5000, 3)).astype(np.float32)
    lo, hi = (-0.5, -1.0, 0.25), (1.0, 0.5, 1.5)
    points[:3] = [lo, hi, (lo[0], 0.0, hi[2])]  # exactly on the faces: inside
    points[3] = (np.nextafter(np.float32(hi[0]), np.float32(9)), 0.0, 1.0)  # just outside
    result = preprocess(points, PreprocessConfig(roi_min=lo, roi_max=hi, **BARE), rng)
    inside = np.all((points >= np.array(lo)) & (points <= np.array(hi)), axis=1)
    np.testing.assert_array_equal(result.points, points[inside])
    assert inside[:3].all() and not inside[3]
    assert result.counts.roi == inside.sum() < result.counts.valid


def test_roi_decides_like_a_float64_comparison_at_bounds_float32_cannot_hold():
    """Bounds like 1.1 fall between two float32 values: the points at those two neighbours (and one
    further each way) are inside or outside exactly as comparing in float64 says; NaN is outside."""
    lo, hi = (-0.3, -1.1, 0.1), (1.1, 0.7, 2.9)
    near = []
    for axis in range(3):
        for bound in (lo[axis], hi[axis]):
            b32 = np.float32(bound)
            for v in (np.nextafter(np.nextafter(b32, np.float32(-9)), np.float32(-9)),
                      np.nextafter(b32, np.float32(-9)), b32, np.nextafter(b32, np.float32(9)),
                      np.nextafter(np.nextafter(b32, np.float32(9)), np.float32(9))):
                p = np.array([0.5, 0.0, 1.0], np.float32)
                p[axis] = v
                near.append(p)
    points = np.concatenate([np.array(near), [[np.nan, 0.0, 1.0], [0.5, np.inf, 1.0]]]).astype(np.float32)
    with np.errstate(invalid="ignore"):
        expected = np.all((points.astype(np.float64) >= np.array(lo)) & (points <= np.array(hi)), axis=1)
    assert 0 < expected.sum() < len(points) - 2
    np.testing.assert_array_equal(roi_mask(points, lo, hi), expected)


# ---- plane ----------------------------------------------------------------------------------------
def floor_and_object(rng, floor_step=0.01):
    x, z = np.meshgrid(np.arange(-1, 1, floor_step), np.arange(1, 3, floor_step))
    floor = np.stack([x.ravel(), np.full(x.size, 0.8), z.ravel()], 1)
    floor = (floor + rng.normal(0, 0.002, floor.shape)).astype(np.float32)
    obj = shell((0.0, 0.3, 1.8), 0.3, 5000, rng)  # 20 cm above the floor
    return floor, obj


def test_plane_removal_removes_the_floor_under_an_object_and_keeps_the_object():
    rng = np.random.default_rng(2)
    floor, obj = floor_and_object(rng)
    points = rng.permutation(np.vstack([floor, obj]))
    result = preprocess(points, PreprocessConfig(remove_plane=True, **BARE), rng)
    assert as_set(result.points) == as_set(obj)
    normal, d = result.plane[:3], result.plane[3]
    assert abs(abs(normal[1]) - 1) < 1e-3 and abs(abs(d) - 0.8) < 2e-3
    assert result.counts.voxel == result.counts.plane == len(obj) < result.counts.roi == len(points)


def test_a_plane_hint_that_still_holds_is_removed_without_ransac_and_a_stale_one_is_not_used(
        monkeypatch):
    rng = np.random.default_rng(2)
    floor, obj = floor_and_object(rng)
    points = rng.permutation(np.vstack([floor, obj]))
    config = PreprocessConfig(remove_plane=True, **BARE)
    found = preprocess(points, config, rng)
    ransac_calls = []
    import open3d as o3d

    original = o3d.geometry.PointCloud.segment_plane
    monkeypatch.setattr(o3d.geometry.PointCloud, "segment_plane",
                        lambda self, *a: ransac_calls.append(1) or original(self, *a))
    again = preprocess(points, config, rng, plane_hint=found.plane)
    assert as_set(again.points) == as_set(obj) and not ransac_calls
    assert np.array_equal(again.plane, found.plane)
    # a hint that no longer holds (the camera moved): RANSAC finds the floor again
    stale = np.array([1.0, 0.0, 0.0, -5.0])
    moved = preprocess(points, config, rng, plane_hint=stale)
    assert ransac_calls and as_set(moved.points) == as_set(obj)
    assert abs(abs(moved.plane[1]) - 1) < 1e-3


def test_a_plane_holding_less_than_the_minimum_fraction_is_kept():
    rng = np.random.default_rng(3)
    floor, _ = floor_and_object(rng, floor_step=0.05)  # 1600 floor points
    obj = shell((0.0, 0.3, 1.8), 0.3, 20000, rng)
    points = np.vstack([floor, obj])
    config = PreprocessConfig(remove_plane=True, plane_min_fraction=0.2, **BARE)
    result = preprocess(points, config, rng)
    assert result.plane is None
    assert result.counts.plane == len(points)


# ---- cluster rule ---------------------------------------------------------------------------------
CLUSTER = dict(BARE, cluster=True, cluster_eps=0.05, cluster_min_fraction=0.05)


def scene_with_blobs(rng, far_points):
    obj = shell((0.0, 0.0, 1.5), 0.2, 3000, rng)                    # the object
    far = shell((0.4, 0.1, 3.0), 0.5, far_points, rng)              # a bigger blob, farther
    near = [shell((x, -0.2, 0.5), 0.015, 40, rng) for x in (-0.3, -0.1, 0.1, 0.3)]  # near noise
    return obj, far, np.vstack([obj, far, *near])


def test_cluster_rule_picks_the_object_over_a_bigger_farther_blob_and_small_near_noise():
    rng = np.random.default_rng(4)
    obj, far, points = scene_with_blobs(rng, far_points=12000)  # 4x the object
    result = preprocess(rng.permutation(points), PreprocessConfig(**CLUSTER), rng)
    assert as_set(result.points) == as_set(obj)
    assert result.counts.cluster == len(obj)


def test_cluster_rule_takes_the_far_blob_when_the_object_is_under_the_size_fraction():
    """As documented: a cluster under cluster_min_fraction of the largest is not a candidate."""
    rng = np.random.default_rng(5)
    obj, far, points = scene_with_blobs(rng, far_points=80000)  # object = 3.75% of the blob
    result = preprocess(points, PreprocessConfig(**CLUSTER), rng)
    assert as_set(result.points) == as_set(far)
    result = preprocess(points, PreprocessConfig(**dict(CLUSTER, cluster_min_fraction=0.03)), rng)
    assert as_set(result.points) == as_set(obj)


def body_with_parted_arm(rng, gap):
    """A torso (3000 points) and an arm (400) reaching towards the camera, ``gap`` metres of
    empty space between them along z (a depth discontinuity)."""
    torso = shell((0.0, 0.0, 1.5), 0.2, 3000, rng)
    t = rng.uniform(0, 1, 400)
    arm = np.c_[0.25 + 0.3 * t, 0.02 * rng.normal(size=400), 1.3 - gap - 0.3 * t]
    return torso, arm.astype(np.float32)


def test_a_limb_a_depth_gap_parts_from_the_followed_body_stays_with_it():
    """The cluster rule alone keeps the nearer arm and drops the torso; following the last frame's
    object keeps both (demo frame 589, where the tracker re-keyed on an arm)."""
    rng = np.random.default_rng(40)
    torso0, arm0 = body_with_parted_arm(rng, gap=0.0)     # last frame: the arm joins the torso
    torso, arm = body_with_parted_arm(rng, gap=0.12)      # now 12 cm apart, the arm nearer
    points = np.vstack([torso, arm])
    alone = preprocess(points, PreprocessConfig(**CLUSTER), rng)
    assert as_set(alone.points) == as_set(arm)
    hint = np.vstack([torso0, arm0])[::3]
    followed = preprocess(points, PreprocessConfig(**CLUSTER), rng, object_hint=hint)
    assert as_set(followed.points) == as_set(points)
    # 0 switches following off
    off = preprocess(points, PreprocessConfig(**dict(CLUSTER, cluster_track_distance=0.0)), rng,
                     object_hint=hint)
    assert as_set(off.points) == as_set(arm)


def test_following_keeps_the_object_over_a_nearer_smaller_one_but_not_over_a_bigger_one():
    rng = np.random.default_rng(41)
    obj = shell((0.0, 0.0, 1.5), 0.2, 3000, rng)
    hint = shell((0.03, 0.0, 1.5), 0.2, 1000, rng)  # the object, 3 cm to the side a frame ago
    small = shell((0.5, 0.0, 0.8), 0.08, 600, rng)  # 20 % of the object, nearer
    points = np.vstack([obj, small])
    assert as_set(preprocess(points, PreprocessConfig(**CLUSTER), rng).points) == as_set(small)
    result = preprocess(points, PreprocessConfig(**CLUSTER), rng, object_hint=hint)
    assert as_set(result.points) == as_set(obj)
    # something larger than the object steps in front: the nearest large cluster rule takes it
    big = shell((0.5, 0.0, 0.8), 0.3, 6000, rng)
    result = preprocess(np.vstack([obj, big]), PreprocessConfig(**CLUSTER), rng, object_hint=hint)
    assert as_set(result.points) == as_set(big)
    # nothing near the hint any more (the object left): the rule decides as without a hint
    far_hint = hint + np.float32([3.0, 0.0, 0.0])
    result = preprocess(points, PreprocessConfig(**CLUSTER), rng, object_hint=far_hint)
    assert as_set(result.points) == as_set(small)


def test_a_hint_touching_an_edge_of_a_large_cluster_does_not_pull_it_in():
    """A hand resting on a table's edge: the table is not part of the object unless half of it
    is within reach of the last frame's object."""
    rng = np.random.default_rng(42)
    obj = shell((0.0, 0.0, 1.5), 0.2, 3000, rng)
    x, y = np.meshgrid(np.arange(0.25, 1.5, 0.01), np.arange(-0.6, 0.6, 0.01))
    table = np.c_[x.ravel(), y.ravel(), np.full(x.size, 1.9)].astype(np.float32)  # 1.2 m, farther
    hint = np.vstack([obj[::3], table[np.abs(table[:, 0] - 0.3) < 0.05]])  # touches its edge
    config = PreprocessConfig(**dict(CLUSTER, remove_plane=False))  # the table stays a cluster
    result = preprocess(np.vstack([obj, table]), config, rng, object_hint=hint)
    assert as_set(result.points) == as_set(obj)


def test_cluster_stage_runs_by_default_only_without_a_roi_box():
    assert PreprocessConfig().clusters
    assert not PreprocessConfig(roi_min=(-1, -1, 0), roi_max=(1, 1, 3)).clusters
    assert PreprocessConfig(roi_min=(-1, -1, 0), roi_max=(1, 1, 3), cluster=True).clusters


# ---- voxel, outliers, sampling --------------------------------------------------------------------
def test_voxel_downsampling_keeps_one_centroid_per_occupied_voxel():
    rng = np.random.default_rng(6)
    points = rng.uniform(0, 0.1, (20000, 3)).astype(np.float32)  # fills all 1000 1-cm voxels
    points = np.vstack([points, [[0.505, 0.505, 0.505], [0.507, 0.503, 0.509]]]).astype(np.float32)
    out = voxel_downsample(points, 0.01)
    assert out.dtype == np.float32 and len(out) == 1001
    assert len(np.unique(np.floor(out / 0.01).astype(int), axis=0)) == 1001
    np.testing.assert_allclose(out[-1], [0.506, 0.504, 0.507], atol=1e-6)


def test_statistical_outliers_around_an_object_are_removed():
    rng = np.random.default_rng(7)
    obj = shell((0, 0, 1.5), 0.2, 4000, rng)
    strays = (np.array([0, 0, 1.5]) + rng.uniform(-0.6, 0.6, (30, 3))).astype(np.float32)
    strays = strays[np.abs(np.linalg.norm(strays - [0, 0, 1.5], axis=1) - 0.2) > 0.1]
    result = preprocess(np.vstack([obj, strays]), PreprocessConfig(**dict(BARE, outlier_neighbors=20)),
                        rng)
    assert not (as_set(strays) & as_set(result.points))
    assert result.counts.outliers >= 0.95 * len(obj)


def test_subsampling_gives_exactly_n_points_and_reports_the_real_ones():
    rng = np.random.default_rng(8)
    many = rng.uniform(-1, 1, (3000, 3)).astype(np.float32)
    result = preprocess(many, PreprocessConfig(**dict(BARE, n_points=512)), rng)
    assert result.points.shape == (512, 3) and result.points.dtype == np.float32
    assert result.counts.output == result.counts.unique == 512
    assert len(as_set(result.points)) == 512 and as_set(result.points) <= as_set(many)

    few = many[:100]
    result = preprocess(few, PreprocessConfig(**dict(BARE, n_points=512)), rng)
    assert result.points.shape == (512, 3)
    assert result.counts.output == 512 and result.counts.unique == 100
    assert as_set(result.points) == as_set(few)  # every real point at least once


def test_the_same_seed_gives_the_same_output():
    points, _ = depth_frame(seed=3)
    config = PreprocessConfig(remove_plane=True)
    a = preprocess(points, config, np.random.default_rng(42))
    b = preprocess(points, config, np.random.default_rng(42))
    np.testing.assert_array_equal(a.points, b.points)
    assert a.counts == b.counts


# ---- empty frames and misuse ----------------------------------------------------------------------
@pytest.mark.parametrize("points", [
    np.zeros((0, 3), np.float32),
    np.zeros((1000, 3), np.float32),
    np.full((1000, 3), np.nan, np.float32),
])
def test_empty_or_all_invalid_frames_give_an_empty_result_not_an_error(points):
    result = preprocess(points, PreprocessConfig(remove_plane=True), np.random.default_rng(0))
    assert result.is_empty and result.points.shape == (0, 3) and result.points.dtype == np.float32
    counts = result.counts.as_dict()
    assert counts.pop("input") == len(points)
    assert set(counts.values()) == {0}


def test_a_frame_of_scattered_noise_clusters_to_nothing():
    rng = np.random.default_rng(9)
    sparse = rng.uniform(-3, 3, (200, 3)).astype(np.float32)  # no two points within eps
    result = preprocess(sparse, PreprocessConfig(), rng)
    assert result.is_empty and result.counts.valid == 200 and result.counts.cluster == 0


@pytest.mark.parametrize("points", [
    np.zeros((10, 2), np.float32), np.zeros(30, np.float32), np.zeros((10, 3), np.int32),
    np.zeros((2, 10, 3), np.float32), np.array([["a", "b", "c"]]),
])
def test_wrong_shape_or_dtype_raises_preprocess_error(points):
    with pytest.raises(PreprocessError):
        preprocess(points)


def test_float64_and_strided_input_are_accepted():
    points, _ = depth_frame(seed=1)
    padded = np.zeros((len(points), 4), np.float32)  # x, y, z, padding: a PointCloud2-like view
    padded[:, :3] = points
    a = preprocess(padded[:, :3], PreprocessConfig(), np.random.default_rng(0))
    b = preprocess(points.astype(np.float64), PreprocessConfig(), np.random.default_rng(0))
    np.testing.assert_array_equal(a.points, b.points)


@pytest.mark.parametrize("kwargs, key", [
    ({"roi_min": (0, 0, 0)}, "roi_max"), ({"roi_min": (1, 0, 0), "roi_max": (0, 1, 1)}, "roi_min"),
    ({"roi_min": (0, 0, "x"), "roi_max": (1, 1, 1)}, "roi_min"), ({"voxel_size": -0.01}, "voxel_size"),
    ({"cluster_eps": 0}, "cluster_eps"), ({"cluster_min_fraction": 1.5}, "cluster_min_fraction"),
    ({"cluster_track_distance": -0.1}, "cluster_track_distance"),
    ({"n_points": 0}, "n_points"), ({"outlier_neighbors": 2.5}, "outlier_neighbors"),
    ({"plane_distance": float("nan")}, "plane_distance"), ({"cluster": "yes"}, "cluster"),
])
def test_invalid_config_names_the_key(kwargs, key):
    with pytest.raises(PreprocessError, match=key):
        PreprocessConfig(**kwargs)


def test_config_from_dict_rejects_unknown_keys_and_round_trips():
    config = PreprocessConfig.from_dict({"voxel_size": 0.02, "roi_min": [0, 0, 0], "roi_max": [1, 1, 1]})
    assert config.roi_min == (0.0, 0.0, 0.0) and config.voxel_size == 0.02
    assert PreprocessConfig.from_dict(config.as_dict()) == config
    with pytest.raises(PreprocessError, match="voxel"):
        PreprocessConfig.from_dict({"voxel": 0.01})


# ---- a whole simulated frame, normalisation -------------------------------------------------------
@pytest.mark.parametrize("remove_plane", [False, True])
def test_default_pipeline_on_a_simulated_frame_returns_the_object(remove_plane):
    center, radii = np.array([0.0, 0.2, 1.5]), np.array([0.25, 0.6, 0.2])
    points, on_object = depth_frame(object_center=center, object_radii=radii, seed=2)
    result = preprocess(points, PreprocessConfig(remove_plane=remove_plane), np.random.default_rng(0))
    assert result.points.shape == (512, 3) and result.counts.unique == 512
    assert result.counts.valid == np.count_nonzero(np.isfinite(points).all(1) & (points != 0).any(1))
    # every kept point lies on the ellipsoid (up to noise and 1 cm voxel averaging)
    radius = np.linalg.norm((result.points - center) / radii, axis=1)
    assert np.all(np.abs(radius - 1) < 0.1)
    assert result.counts.cluster <= on_object.sum()


def test_fit_normalization_puts_the_object_in_the_unit_cube():
    points, on_object = depth_frame(seed=4)
    obj = points[on_object]
    norm = fit_normalization(obj)
    p = norm.to_normalized(obj)
    assert p.dtype == np.float32
    assert np.all(p >= -0.5 - 1e-6) and np.all(p <= 0.5 + 1e-6)
    assert (p.max(0) - p.min(0)).max() == pytest.approx(1.0, abs=1e-5)  # longest side spans 1
    np.testing.assert_allclose((p.max(0) + p.min(0)) / 2, 0, atol=1e-5)  # centred
    padded = fit_normalization(obj, padding=0.1).to_normalized(obj)
    assert np.all(np.abs(padded) <= 0.45 + 1e-6)
    assert (padded.max(0) - padded.min(0)).max() == pytest.approx(0.9, abs=1e-5)


@pytest.mark.parametrize("points, padding", [
    (np.zeros((0, 3)), 0.0), (np.ones((5, 3)), 0.0), (np.array([[0, 0, np.nan], [1, 1, 1]]), 0.0),
    (np.eye(3), 1.0), (np.eye(3), -0.1),
])
def test_fit_normalization_rejects_what_cannot_be_normalised(points, padding):
    with pytest.raises(PreprocessError):
        fit_normalization(points, padding)


def test_a_flat_but_small_surface_of_the_object_is_not_taken_for_the_floor():
    """The front of a torso is flat within a centimetre over a large share of a person's points; a
    plane is removed only when it also spans plane_min_extent both ways, like a floor or a table."""
    rng = np.random.default_rng(7)
    # a 0.4 m x 0.5 m slab (the torso's front) in front of a rounded body, no floor in view
    front = np.c_[rng.uniform(-0.2, 0.2, 3000), rng.uniform(-0.25, 0.25, 3000), np.full(3000, 1.5)]
    back = rng.normal(size=(2000, 3))
    back = 0.2 * back / np.linalg.norm(back, axis=1, keepdims=True) + [0.0, 0.0, 1.7]
    body = np.concatenate([front, back]).astype(np.float32)
    cfg = PreprocessConfig(cluster=False, voxel_size=0.0, outlier_neighbors=0, n_points=None,
                           remove_plane=True)
    kept = preprocess(body, cfg, rng)
    assert kept.plane is None and len(kept.points) == len(body)
    # with a 3 m x 2 m floor under it, the floor goes and the body stays
    floor = np.c_[rng.uniform(-1.5, 1.5, 6000), np.full(6000, 0.9), rng.uniform(0.8, 2.8, 6000)]
    scene = np.concatenate([body, floor.astype(np.float32)])
    kept = preprocess(scene, cfg, rng)
    assert kept.plane is not None and abs(abs(kept.plane[1]) - 1.0) < 1e-3
    assert len(kept.points) == len(body)


def test_image_space_stride_2_gives_the_same_object_to_within_the_voxel_size():
    """The node's input.stride 2 against every pixel, on the demo's person (640x480 organized,
    floor and wall, the demo's preprocessing): the points out agree to within the 1 cm voxel
    (mean distance both ways), span the same box (1st-99th percentile) to within 4.5 cm, and the stride leaves a quarter
    of the pixels."""
    import dataclasses

    from scipy.spatial import cKDTree
    from std_msgs.msg import Header

    from occflow_ros.data.demo_scene import DemoScene, SceneConfig
    from occflow_ros.ros import read_xyz, xyz_cloud
    from occflow_ros.apps.demo import DemoConfig, demo_parameters
    from occflow_ros.ros.node_config import node_config_from_parameters

    scene = DemoScene(SceneConfig(seconds=0.5, fps=4.0))
    scene.render()
    config = node_config_from_parameters(demo_parameters(scene, DemoConfig())).tracker.preprocess
    config = dataclasses.replace(config, n_points=None)
    for k in range(len(scene)):
        msg = xyz_cloud(Header(frame_id="camera"), scene.cloud(k))
        full, strided = read_xyz(msg), read_xyz(msg, stride=2)
        assert abs(len(strided) / len(full) - 0.25) < 0.02
        a = preprocess(full, config, 0).points
        b = preprocess(strided, config, 0).points
        assert len(b) > 1000
        both_ways = max(cKDTree(a).query(b)[0].mean(), cKDTree(b).query(a)[0].mean())
        assert both_ways < config.voxel_size, both_ways
        spread = np.percentile(a, [1, 99], axis=0) - np.percentile(b, [1, 99], axis=0)
        # a pixel at stride 2 is ~1.5 cm wide on the person 2.4 m away, and the statistical outlier
        # test trims a sparse extremity (a hand) a little more: measured 3.1-3.7 cm on x's 1st
        # percentile, 1.3-2.3 cm with that stage off
        assert np.abs(spread).max() < 0.045, spread
