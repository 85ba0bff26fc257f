"""The simulated depth camera: exact visible surface, optical frame, sensor flaws, background, streams."""

from __future__ import annotations

import numpy as np
import pytest

from occflow_ros.data import (LABEL_FLOOR, LABEL_NONE, LABEL_OBJECT, LABEL_WALL, CameraError,
                              CameraIntrinsics, DepthCamera, Human, MotionRanges, SensorConfig,
                              TwistingBox, look_at, realsense_d435, stream, view_of)

T = 0.4


@pytest.fixture(scope="module")
def human() -> Human:
    shape = Human.random(11, motion="jumping_jacks", ranges=MotionRanges(amplitude=(1.0, 1.0)),
                         global_motion=False)
    shape.canonical_mesh()
    return shape


@pytest.fixture(scope="module")
def pose(human) -> np.ndarray:
    return view_of(human, 2.5, azimuth=0.3)


def _world_points(cam: DepthCamera, render, mask) -> np.ndarray:
    """float64 world points of the masked pixels from the noiseless depth."""
    return cam.to_world(cam.intrinsics.directions()[mask] * render.depth[mask][:, None])


def test_look_at_follows_the_ros_optical_convention():
    pose = look_at((3.0, 0.0, 1.0), (0.0, 0.0, 1.0))
    assert np.allclose(pose[:3, 2], [-1, 0, 0])        # z forward, at the target
    assert np.allclose(pose[:3, 0], [0, 1, 0])         # x right: looking along -x, +y is on the right
    assert np.allclose(pose[:3, 1], [0, 0, -1])        # y down
    cam = DepthCamera(realsense_d435(160, 120), pose, SensorConfig.ideal())
    intr = cam.intrinsics
    up, right = cam.to_optical(np.array([[0.0, 0.0, 1.5], [0.0, 0.5, 1.0]]))
    (u_up, v_up), (u_right, v_right) = intr.project(np.stack([up, right]))
    assert v_up < intr.cy and abs(u_up - intr.cx) < 1e-9
    assert u_right > intr.cx and abs(v_right - intr.cy) < 1e-9
    with pytest.raises(CameraError, match="coincide"):
        look_at((1, 1, 1), (1, 1, 1))
    with pytest.raises(CameraError, match="parallel"):
        look_at((0, 0, 3), (0, 0, 0))


def test_realsense_preset_scales_with_the_resolution():
    full, half = realsense_d435(), realsense_d435(320, 240)
    assert (full.width, full.height) == (640, 480)
    assert np.isclose(half.fx, full.fx / 2) and np.isclose(half.fy, full.fy / 2)
    assert np.isclose(full.cx, 319.5) and np.isclose(full.cy, 239.5)
    hfov = 2 * np.degrees(np.arctan(full.width / 2 / full.fx))
    assert 75 < hfov < 90
    dirs = full.directions()
    uv = full.project(dirs.reshape(-1, 3))
    assert np.allclose(uv.reshape(480, 640, 2)[5, 7], [7, 5])


def test_refined_points_lie_on_the_exact_visible_surface(human, pose):
    cam = DepthCamera(realsense_d435(320, 240), pose, SensorConfig.ideal(refine=True))
    r = cam.render_full(human, T)
    obj = r.labels == LABEL_OBJECT
    assert obj.sum() > 1000
    pts = _world_points(cam, r, obj)
    assert np.abs(human.surface_residual(pts, T)).max() < 1e-6
    # the float32 cloud is the same point, in the optical frame
    assert np.allclose(cam.to_world(r.cloud[obj].astype(np.float64)), pts, atol=1e-5)
    assert np.allclose(r.cloud[obj][:, 2], r.depth[obj], atol=1e-5)
    # visible: the open segment from the camera centre to the point never enters the body
    rng = np.random.default_rng(0)
    pick = pts[rng.choice(len(pts), 300, replace=False)]
    centre = cam.position
    dist = np.linalg.norm(pick - centre, axis=1, keepdims=True)
    fractions = np.linspace(0.0, 1.0, 80)[None, :, None]
    stop = (dist - 0.002) / dist                                    # up to 2 mm before the hit
    seg = centre + (pick - centre)[:, None, :] * (fractions * stop[:, :, None])
    assert not human.occupancy(seg.reshape(-1, 3), T).any()
    # the exact material coordinates of the pixels map onto the observed points
    assert np.abs(human.forward(r.material[obj], T) - pts).max() < 1e-8


def test_rays_that_miss_the_mesh_miss_the_body(human, pose):
    cam = DepthCamera(realsense_d435(160, 120), pose, SensorConfig.ideal())
    r = cam.render_full(human, T)
    obj = r.labels == LABEL_OBJECT
    near_obj = obj.copy()
    near_obj[1:] |= obj[:-1]
    near_obj[:-1] |= obj[1:]
    near_obj[:, 1:] |= near_obj[:, :-1].copy()
    near_obj[:, :-1] |= near_obj[:, 1:].copy()
    rows, cols = np.nonzero(~near_obj)
    rng = np.random.default_rng(1)
    idx = rng.choice(len(rows), 400, replace=False)
    dirs = cam.intrinsics.directions()[rows[idx], cols[idx]] @ cam.camera_to_world[:3, :3].T
    depths = np.linspace(0.2, 5.0, 200)
    pts = cam.position + dirs[:, None, :] * depths[None, :, None]
    assert not human.occupancy(pts.reshape(-1, 3), T).any()


def test_unrefined_points_are_on_the_mesh_within_millimetres(human, pose):
    """Without refinement hits lie on the mesh: chords of a ~1.4 cm grid, within ~2 mm of the surface."""
    cam = DepthCamera(realsense_d435(160, 120), pose, SensorConfig.ideal())
    r = cam.render_full(human, T)
    obj = r.labels == LABEL_OBJECT
    pts = _world_points(cam, r, obj)
    assert np.abs(human.surface_residual(pts, T)).max() < 3e-3
    assert np.abs(human.forward(r.material[obj], T) - pts).max() < 3e-3


def test_invalid_pixels_are_nan_or_zero_as_configured(human, pose):
    for invalid in ("nan", "zero"):
        cam = DepthCamera(realsense_d435(160, 120), pose,
                          SensorConfig(invalid=invalid, dropout=0.1, holes=5.0, max_range=4.0))
        r = cam.render_full(human, T, np.random.default_rng(2))
        assert r.cloud.dtype == np.float32 and r.cloud.shape == (120, 160, 3)
        missing = r.labels == LABEL_NONE
        assert 0.05 < missing.mean() < 0.95
        if invalid == "nan":
            assert np.isnan(r.cloud[missing]).all() and np.isfinite(r.cloud[~missing]).all()
        else:
            assert not np.isnan(r.cloud).any()
            assert (r.cloud[missing] == 0).all() and (r.cloud[~missing][:, 2] > 0).all()


def test_depth_noise_grows_as_k_z_squared(human, pose):
    k = 0.004
    cam = DepthCamera(realsense_d435(320, 240), look_at((0.0, 4.0, 1.2), (0.0, 0.0, 0.0)),
                      SensorConfig.ideal(noise_k=k, floor=True))
    r = cam.render_full(human, T, np.random.default_rng(3))
    floor = r.labels == LABEL_FLOOR
    err = r.cloud[floor][:, 2].astype(np.float64) - r.depth[floor]
    z = r.depth[floor]
    ratios, stds = [], []
    for lo, hi in ((1.5, 2.0), (2.5, 3.0), (3.5, 4.5)):
        sel = (z >= lo) & (z < hi)
        assert sel.sum() > 1000
        stds.append(err[sel].std())
        ratios.append(stds[-1] / (k * np.mean(z[sel] ** 2)))
    assert stds[0] < stds[1] < stds[2]
    assert np.allclose(ratios, 1.0, atol=0.08), ratios
    # noise moves points along their rays: the direction of every point is unchanged
    dirs = cam.intrinsics.directions()[floor]
    assert np.allclose(r.cloud[floor][:, :2] / r.cloud[floor][:, 2:], dirs[:, :2], atol=1e-5)


def test_background_planes_appear_and_occlude_correctly(human, pose):
    intr = realsense_d435(160, 120)
    full = DepthCamera(intr, pose, SensorConfig.ideal(floor=True, wall_distance=1.5)).render_full(human, T)
    alone = DepthCamera(intr, pose, SensorConfig.ideal()).render_full(human, T)
    assert set(np.unique(alone.labels)) == {LABEL_NONE, LABEL_OBJECT}
    assert {LABEL_OBJECT, LABEL_FLOOR, LABEL_WALL} <= set(np.unique(full.labels))
    cam = DepthCamera(intr, pose, SensorConfig.ideal(floor=True, wall_distance=1.5))
    # independent ray-plane depths, per pixel
    dirs = intr.directions() @ cam.camera_to_world[:3, :3].T
    candidates = [alone.depth]
    for _, point, normal in cam.planes():
        denom = dirs @ normal
        with np.errstate(divide="ignore", invalid="ignore"):
            s = ((point - cam.position) @ normal) / denom
        candidates.append(np.where(s > 0, s, np.inf))
    stack = np.stack(candidates)
    expected = stack.min(axis=0)
    assert np.allclose(full.depth, expected, rtol=1e-9)
    winner = np.array([LABEL_OBJECT, LABEL_FLOOR, LABEL_WALL])[stack.argmin(axis=0)]
    hit = np.isfinite(expected)
    assert np.array_equal(full.labels[hit], winner[hit])
    floor_pts = _world_points(cam, full, full.labels == LABEL_FLOOR)
    assert np.abs(floor_pts[:, 2]).max() < 1e-6
    (_, wall_p, wall_n) = cam.planes()[1]
    assert np.abs((_world_points(cam, full, full.labels == LABEL_WALL) - wall_p) @ wall_n).max() < 1e-6
    # from below the floor, the floor hides the whole figure
    under = DepthCamera(intr, look_at((2.5, 0.0, -0.3), (0.0, 0.0, 1.0)), SensorConfig.ideal(floor=True))
    seen = under.render_full(human, T)
    assert not (seen.labels == LABEL_OBJECT).any() and (seen.labels == LABEL_FLOOR).mean() > 0.4
    assert (DepthCamera(intr, under.camera_to_world, SensorConfig.ideal()).render_full(human, T).labels
            == LABEL_OBJECT).any()


def test_range_limits_invalidate_points(human, pose):
    cam = DepthCamera(realsense_d435(160, 120), pose,
                      SensorConfig.ideal(floor=True, wall_distance=3.0, max_range=3.5))
    r = cam.render_full(human, T)
    valid = r.labels != LABEL_NONE
    assert valid.any() and np.nanmax(r.cloud[..., 2]) <= 3.5
    assert not (r.labels == LABEL_WALL).any()                       # the wall is ~5.5 m away
    near = DepthCamera(realsense_d435(160, 120), pose, SensorConfig.ideal(min_range=3.0)).render_full(human, T)
    assert not (near.labels == LABEL_OBJECT).any()


def test_dropout_holes_and_edges_remove_pixels(human, pose):
    intr = realsense_d435(160, 120)
    ideal = DepthCamera(intr, pose, SensorConfig.ideal(floor=True)).render_full(human, T)
    valid = ideal.labels != LABEL_NONE
    drop = DepthCamera(intr, pose, SensorConfig.ideal(floor=True, dropout=0.3)).render_full(
        human, T, np.random.default_rng(4))
    lost = valid & (drop.labels == LABEL_NONE)
    assert abs(lost.sum() / valid.sum() - 0.3) < 0.03
    holes = DepthCamera(intr, pose, SensorConfig.ideal(floor=True, holes=30.0, hole_radius=(24, 40))).render_full(
        human, T, np.random.default_rng(5))
    gone = valid & (holes.labels == LABEL_NONE)
    assert gone.sum() > 200
    neighbour = np.zeros_like(gone)
    neighbour[1:] |= gone[:-1]
    neighbour[:-1] |= gone[1:]
    assert (gone & neighbour).sum() > 0.8 * gone.sum()              # blobs, not isolated pixels
    edges = DepthCamera(intr, pose, SensorConfig.ideal(floor=True, edge_dropout=1.0)).render_full(human, T)
    edge_lost = valid & (edges.labels == LABEL_NONE)
    # with edge_dropout = 1 exactly the valid pixels with a 4-neighbour > 5 cm nearer or farther go
    d = np.pad(np.where(valid, ideal.depth, 1e6), 1, mode="edge")
    centre = d[1:-1, 1:-1]
    near_jump = np.zeros_like(valid)
    for nb in (d[:-2, 1:-1], d[2:, 1:-1], d[1:-1, :-2], d[1:-1, 2:]):
        near_jump |= np.abs(nb - centre) > 0.05
    assert edge_lost.sum() > 50 and np.array_equal(edge_lost, valid & near_jump)


def test_render_is_deterministic_given_the_rng(human, pose):
    cam = DepthCamera(realsense_d435(160, 120), pose, SensorConfig())
    a = cam.render(human, T, np.random.default_rng(6))
    b = cam.render(human, T, np.random.default_rng(6))
    c = cam.render(human, T, np.random.default_rng(7))
    assert np.array_equal(a, b, equal_nan=True)
    assert not np.array_equal(a, c, equal_nan=True)


def test_other_shapes_render_too():
    box = TwistingBox.random(2)
    cam = DepthCamera(realsense_d435(160, 120), view_of(box, 2.0), SensorConfig.ideal(refine=True))
    r = cam.render_full(box, 0.5)
    obj = r.labels == LABEL_OBJECT
    assert obj.sum() > 300
    assert np.abs(box.surface_residual(_world_points(cam, r, obj), 0.5)).max() < 1e-6


def test_stream_stamps_jitter_and_drops():
    box = TwistingBox(semi=(0.2, 0.2, 0.5), exponent=4.0, twist=1.0, frequency=0.5, mesh_voxel=0.05)
    pose = view_of(box, 2.0)
    cam = DepthCamera(realsense_d435(64, 48), pose, SensorConfig.ideal())
    frames = list(stream(box, cam, fps=30.0, duration=1.0, start_stamp=100.0, t0=0.5))
    assert [f.index for f in frames] == list(range(31))
    assert np.allclose([f.stamp for f in frames], 100.0 + np.arange(31) / 30.0, atol=1e-12)
    assert np.allclose([f.t for f in frames], 0.5 + np.arange(31) / 30.0, atol=1e-12)
    assert frames[3].cloud.shape == (48, 64, 3) and np.array_equal(frames[3].camera_to_world, pose)
    jit = list(stream(box, cam, fps=30.0, duration=2.0, jitter_std=0.004, rng=np.random.default_rng(8)))
    dev = np.array([f.stamp - f.index / 30.0 for f in jit])
    assert np.abs(dev).max() <= 0.4 / 30.0 + 1e-12 and 0.002 < dev.std() < 0.006
    assert np.all(np.diff([f.stamp for f in jit]) > 0)
    assert np.allclose([f.t for f in jit], [f.stamp for f in jit])
    kept = list(stream(box, cam, fps=30.0, duration=2.0, drop_prob=0.3, rng=np.random.default_rng(9)))
    idx = np.array([f.index for f in kept])
    assert 0.15 < 1 - len(idx) / 61 < 0.45 and np.all(np.diff(idx) >= 1) and np.any(np.diff(idx) > 1)
    assert np.allclose([f.stamp for f in kept], idx / 30.0)
    with pytest.raises(CameraError, match="drop_prob"):
        next(stream(box, cam, drop_prob=1.0))


def test_invalid_camera_settings_name_the_key(pose):
    with pytest.raises(CameraError, match="noise_k"):
        SensorConfig(noise_k=-0.1)
    with pytest.raises(CameraError, match="invalid"):
        SensorConfig(invalid="inf")
    with pytest.raises(CameraError, match="min_range < max_range"):
        SensorConfig(min_range=5.0, max_range=2.0)
    with pytest.raises(CameraError, match="fx"):
        CameraIntrinsics(width=640, height=480, fx=0.0, fy=1.0, cx=1.0, cy=1.0)
    with pytest.raises(CameraError, match="rigid"):
        DepthCamera(realsense_d435(), np.diag([2.0, 1.0, 1.0, 1.0]))
    with pytest.raises(CameraError, match="refine"):
        from occflow_ros.data.shape import Shape4D

        class Dummy(Shape4D):
            height = duration = 1.0
            occupancy = surface_residual = sample_surface = trajectory = describe = lambda *a: None

            def mesh(self, t):
                return np.zeros((3, 3)), np.array([[0, 1, 2]])

        DepthCamera(realsense_d435(64, 48), pose, SensorConfig(refine=True)).render(Dummy(), 0.0)
