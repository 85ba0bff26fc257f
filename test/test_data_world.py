"""The synthetic 4D world: exact occupancy, inverse maps, correspondences, motions, determinism, registry."""

from __future__ import annotations

import json

import numpy as np
import pytest

from occflow_ros.data import (FAMILY_MOTIONS, HUMAN_MOTIONS, SHAPE_FAMILIES, BendingBar,
                              BodyParams, BreathingBlob, GlobalMotion, Human, HumanMotion, MotionRanges,
                              Shape4D, ShapeError, TwistingBox, make_shape, random_shape,
                              shape_from_description)
from occflow_ros.data.implicit import mesh_signed_volume

FULL = MotionRanges(amplitude=(1.0, 1.0))


@pytest.fixture(scope="module")
def human() -> Human:
    """A figure with a slow yaw and drift on top of jumping jacks (the largest limb excursions)."""
    shape = Human.random(11, motion="jumping_jacks", ranges=FULL, global_motion=True)
    shape.canonical_mesh()
    return shape


@pytest.fixture(scope="module")
def deformers() -> list:
    return [BendingBar.random(3, ranges=FULL), TwistingBox.random(4, ranges=FULL, global_motion=True),
            BreathingBlob.random(5, ranges=FULL)]


@pytest.fixture(scope="module")
def motion_humans(human) -> dict:
    """One figure per motion family, all with ``human``'s body (so they share canonical points)."""
    return {name: Human(human.body, HumanMotion.random(np.random.default_rng(i), name, FULL))
            for i, name in enumerate(sorted(HUMAN_MOTIONS))}


def _times(shape, n: int = 5) -> np.ndarray:
    return np.linspace(0.0, shape.duration, n)


def test_every_family_is_a_shape4d_and_registered(human, deformers):
    for shape in [human, *deformers]:
        assert isinstance(shape, Shape4D)
        assert shape.family in SHAPE_FAMILIES and shape.motion_name() in FAMILY_MOTIONS[shape.family]
        assert shape.height > 0 and shape.duration > 0
    assert set(FAMILY_MOTIONS["human"]) == set(HUMAN_MOTIONS) >= {
        "hopping", "jumping_jacks", "punching", "running_on_spot", "arm_waves", "knee_raises", "hip_shakes"}


def test_inverse_map_round_trips_to_1e9(human, deformers):
    """phi_t^-1(phi_t(X)) == X for material points inside, on and near the surface, at several t."""
    rng = np.random.default_rng(0)
    for shape in [human, *deformers]:
        surf = shape.sample_canonical_surface(600, rng)
        _, grad = shape.canonical_field(surf)
        material = surf + grad * rng.uniform(-0.02, 0.02, size=(len(surf), 1))
        times = list(_times(shape, 4))
        if isinstance(shape, BendingBar):           # include an instant of zero curvature
            times.append(float(-shape.phase / (2 * np.pi * shape.frequency)))
        for t in times:
            back, found = shape.inverse(shape.forward(material, t), t)
            assert found.all(), f"{shape.family}: inverse not found at t={t}"
            err = np.abs(back - material).max()
            assert err < 1e-8, f"{shape.family}: inverse error {err:.2e} m at t={t}"


def test_forward_mapped_interior_is_inside_and_nearby_exterior_is_outside(human, deformers):
    """Exact occupancy: occupancy(phi_t(X)) == (S(X) < 0) for X inside and within 3 cm outside."""
    rng = np.random.default_rng(1)
    for shape in [human, *deformers]:
        surf = shape.sample_canonical_surface(800, rng)
        _, grad = shape.canonical_field(surf)
        offset = rng.uniform(0.002, 0.03, size=(len(surf), 1)) * rng.choice([-1.0, 1.0], size=(len(surf), 1))
        material = surf + grad * offset
        inside = shape.canonical_sdf(material) < 0
        assert 0.3 < inside.mean() < 0.7
        for t in _times(shape, 3):
            occ = shape.occupancy(shape.forward(material, t), t)
            wrong = int((occ != inside).sum())
            assert wrong == 0, f"{shape.family}: {wrong} points with the wrong occupancy at t={t}"


def test_occupancy_volume_matches_independent_volumes(human):
    """Monte Carlo volume of occupancy(., t) == canonical volume x mean det J (forward map only) ==
    volume of mesh(t), for a skinned figure whose volume changes over time."""
    rng = np.random.default_rng(2)
    verts, faces = human.canonical_mesh()
    v_canonical = mesh_signed_volume(verts, faces)
    lo_c, hi_c = human.canonical_box()
    box_pts = rng.uniform(lo_c, hi_c, size=(60000, 3))
    interior = box_pts[human.canonical_sdf(box_pts) < 0]
    for t in (0.15, 0.6):
        det_mean = float(np.linalg.det(human.jacobian(interior, t)).mean())
        predicted = v_canonical * det_mean
        v_mesh = mesh_signed_volume(*human.mesh(t))
        lo, hi = human.bounds(t, margin=0.01)
        n = 120000
        pts = rng.uniform(lo, hi, size=(n, 3))
        frac = human.occupancy(pts, t).mean()
        box = float(np.prod(hi - lo))
        v_mc = box * frac
        sigma = box * np.sqrt(frac * (1 - frac) / n)
        assert abs(v_mc - predicted) < 4 * sigma + 0.005 * predicted, (t, v_mc, predicted, sigma)
        assert abs(v_mesh - predicted) < 0.01 * predicted, (t, v_mesh, predicted)


def test_twist_preserves_the_exact_volume(deformers):
    box = deformers[1]
    assert isinstance(box, TwistingBox)
    rng = np.random.default_rng(3)
    exact = box.rest_volume()
    for t in (0.3, 1.1):
        lo, hi = box.bounds(t, margin=0.01)
        n = 60000
        frac = box.occupancy(rng.uniform(lo, hi, size=(n, 3)), t).mean()
        vol = np.prod(hi - lo)
        assert abs(vol * frac - exact) < 4 * vol * np.sqrt(frac * (1 - frac) / n) + 1e-3 * exact
        assert abs(mesh_signed_volume(*box.mesh(t)) - exact) < 0.005 * exact


def test_correspondences_stay_on_the_surface_for_every_motion(human, motion_humans, deformers):
    """Material points of the canonical surface map to the world surface at every t: the residual is
    ~0 and the exact occupancy flips across the surface within 1e-3 of the height."""
    rng = np.random.default_rng(4)
    material = human.sample_canonical_surface(500, rng)
    cases = [(s, material) for s in motion_humans.values()]
    cases += [(s, s.sample_canonical_surface(400, rng)) for s in deformers]
    for shape, mat in cases:
        eps = 1e-3 * shape.height
        traj = shape.trajectory(mat, _times(shape, 5))
        for t, x in zip(_times(shape, 5), traj):
            resid = np.abs(shape.surface_residual(x, t))
            assert resid.max() < 1e-6 * shape.height, (shape.motion_name(), t, resid.max())
            n = shape.surface_normals(mat, t)
            assert not shape.occupancy(x + eps * n, t).any(), (shape.motion_name(), t)
            assert shape.occupancy(x - eps * n, t).all(), (shape.motion_name(), t)


def test_mesh_vertices_are_on_the_surface_and_keep_their_identity(human, deformers):
    for shape in [human, *deformers]:
        verts_c, faces = shape.canonical_mesh()
        assert np.abs(shape.canonical_sdf(verts_c)).max() < 1e-9
        for t in (0.0, 0.7):
            verts, faces_t = shape.mesh(t)
            assert faces_t is faces
            assert np.abs(shape.surface_residual(verts[::7], t)).max() < 1e-8
            assert np.allclose(verts[::7], shape.trajectory(verts_c[::7], [t])[0], atol=1e-12)
            assert mesh_signed_volume(verts, faces) > 0          # outward orientation kept


def test_points_far_from_the_body_are_outside_without_warnings(human):
    rng = np.random.default_rng(5)
    far = rng.normal(size=(2000, 3))
    far = 3.0 * far / np.linalg.norm(far, axis=1, keepdims=True) + np.array([0, 0, 1.0])
    with np.errstate(all="raise"):
        occ = human.occupancy(far, 0.3)
    assert not occ.any()
    assert np.all(np.isinf(human.surface_residual(far, 0.3)))
    material, found = human.inverse(far[:10], 0.3)
    assert not found.any() and np.isnan(material).all()


def test_same_seed_gives_the_same_shape_bit_for_bit():
    a = Human.random(21, global_motion=True)
    b = Human.random(21, global_motion=True)
    assert a.describe() == b.describe()
    rng_a, rng_b = np.random.default_rng(9), np.random.default_rng(9)
    pa, ma = a.sample_surface(300, 0.4, rng_a)
    pb, mb = b.sample_surface(300, 0.4, rng_b)
    assert np.array_equal(pa, pb) and np.array_equal(ma, mb)
    assert np.array_equal(a.trajectory(ma, [0.0, 0.5, 1.3]), b.trajectory(mb, [0.0, 0.5, 1.3]))
    x = pa + np.random.default_rng(1).normal(scale=0.05, size=pa.shape)
    assert np.array_equal(a.occupancy(x, 0.4), b.occupancy(x, 0.4))
    for family in SHAPE_FAMILIES:
        assert make_shape(family, 5).describe() == make_shape(family, 5).describe()


def test_proportions_and_motions_vary_between_seeds():
    shapes = [Human.random(s, motion="running_on_spot") for s in range(6)]
    heights = {round(s.height, 6) for s in shapes}
    assert len(heights) == 6 and min(heights) >= 1.5 and max(heights) <= 1.95
    arm = [np.linalg.norm(s.rest_joints()["forearm_l"] - s.rest_joints()["upper_arm_l"]) / s.height
           for s in shapes]
    assert np.ptp(arm) > 0.01                                   # relative limb lengths differ
    freqs = {round(s.motion.frequency, 6) for s in shapes}
    phases = {round(s.motion.phase, 6) for s in shapes}
    amps = {round(s.motion.amplitude, 6) for s in shapes}
    assert len(freqs) == len(phases) == len(amps) == 6
    assert len({HumanMotion.random(np.random.default_rng(s)).name for s in range(60)}) == len(HUMAN_MOTIONS)


def test_every_motion_moves_smoothly(motion_humans, human):
    """Each family moves the body by centimetres at least, with finite velocities and no velocity jumps."""
    material = human.sample_canonical_surface(300, np.random.default_rng(6))
    dt = 1.0 / 240.0
    for name, shape in motion_humans.items():
        period = 1.0 / shape.motion.frequency
        times = np.arange(0.0, period, dt)
        traj = shape.trajectory(material, times)
        assert np.linalg.norm(traj - traj[:1], axis=2).max() > 0.05 * shape.height, name
        vel = np.stack([shape.velocity(material, t) for t in times[::8]])
        assert np.all(np.isfinite(vel)) and np.abs(vel).max() < 20.0, name
        fd = np.diff(traj, axis=0) / dt                       # mean velocity over each step
        jumps = np.abs(np.diff(fd, axis=0)).max() / dt        # bounded change => no kinks
        assert jumps < 150.0, f"{name}: acceleration {jumps:.0f} m/s^2 (a kink in the motion?)"
        v_mid = shape.velocity(material, times[10] + dt / 2)
        assert np.allclose(v_mid, fd[10], atol=2e-3), name


def test_skinning_never_folds_the_body():
    """det J > 0 on the whole surface, for slim to heavy bodies, every family, amplitudes up to 1.5:
    the map stays orientation-preserving, so occupancy and correspondences are well defined."""
    rng = np.random.default_rng(12)
    bodies = [BodyParams(height=1.55, girth=0.85, upper_girth=0.93, shoulders=0.9),
              BodyParams(height=1.95, girth=1.15, upper_girth=1.07, lower_girth=1.07, hips=1.12)]
    for body in bodies:
        material = None
        for name in sorted(HUMAN_MOTIONS):
            for amplitude in (1.0, 1.5):
                shape = Human(body, HumanMotion(name, amplitude=amplitude, frequency=1.0))
                if material is None:
                    material = shape.sample_canonical_surface(600, rng)
                det = min(np.linalg.det(shape.jacobian(material, t)).min() for t in np.linspace(0, 1, 13))
                assert det > 0.02, f"{name} amplitude {amplitude}: det J {det:.3f} (the skin folds)"


def test_feet_stay_on_or_above_the_floor(human, motion_humans):
    """No motion pushes the body more than a few millimetres through the floor z = 0."""
    material = human.sample_canonical_surface(20000, np.random.default_rng(13))
    soles = material[material[:, 2] < 0.02 * human.height]
    assert len(soles) > 50
    for name, shape in motion_humans.items():
        lowest = shape.trajectory(soles, np.linspace(0.0, 1.0 / shape.motion.frequency, 25))[..., 2].min()
        assert lowest > -0.006, f"{name}: a foot {-lowest * 100:.1f} cm below the floor"


def test_motions_do_what_their_names_say(human):
    body = human.body
    h = body.height

    def series(name, fn, amplitude=1.0):
        shape = Human(body, HumanMotion(name, amplitude=amplitude, frequency=1.0))
        rest = shape.rest_joints()
        return np.array([fn(shape.joints(t), rest) for t in np.linspace(0.0, 1.0, 41)])

    knee_above_hip = series("knee_raises", lambda j, r: j["shin_l"][2] - j["thigh_l"][2])
    assert knee_above_hip.max() > -0.08 * h and knee_above_hip.min() < -0.2 * h
    wrist_over_shoulder = lambda j, r: j["hand_l"][2] - j["upper_arm_l"][2]  # noqa: E731
    assert series("jumping_jacks", wrist_over_shoulder).max() > 0.1 * h
    assert (series("jumping_jacks", wrist_over_shoulder, 1.2).max()
            > series("jumping_jacks", wrist_over_shoulder, 0.6).max() + 0.05 * h)
    assert series("punching", lambda j, r: j["hand_r"][0] - j["upper_arm_r"][0]).max() > 0.2 * h
    assert series("running_on_spot", lambda j, r: j["foot_r"][2] - r["foot_r"][2]).max() > 0.08 * h
    both_feet_up = series("hopping", lambda j, r: min(j["foot_l"][2], j["foot_r"][2]) - r["foot_l"][2])
    assert both_feet_up.max() > 0.02 * h
    assert series("arm_waves", lambda j, r: j["hand_l"][1]).min() > 0.25 * h
    assert series("hip_shakes", lambda j, r: j["pelvis"][1]).max() > 0.02 * h


def test_amplitude_range_reaches_unseen_amplitudes():
    low = Human.random(3, motion="punching", ranges=MotionRanges(amplitude=(0.5, 0.6)))
    high = Human.random(3, motion="punching", ranges=MotionRanges(amplitude=(1.2, 1.3)))
    assert 0.5 <= low.motion.amplitude <= 0.6 and 1.2 <= high.motion.amplitude <= 1.3
    mat = high.sample_canonical_surface(200, np.random.default_rng(0))
    ts = np.linspace(0, 2, 21)
    reach = [np.linalg.norm(s.trajectory(mat, ts) - s.trajectory(mat, [0.0]), axis=2).max() for s in (low, high)]
    assert reach[1] > reach[0]


def test_global_motion_is_a_rigid_motion_on_top(human):
    still = Human(human.body, human.motion, global_motion=None)
    mat = human.sample_canonical_surface(100, np.random.default_rng(7))
    for t in (0.0, 0.9):
        rot, trans = human.global_motion.at(t)
        assert np.allclose(human.forward(mat, t), still.forward(mat, t) @ rot.T + trans, atol=1e-12)
    assert human.global_motion.yaw_rate != 0.0


def test_sample_surface_is_uniform_by_world_area():
    """A strongly bulging blob stretches its surface; samples follow the world area, not the canonical."""
    blob = BreathingBlob(semi=(0.25, 0.25, 0.25), breath=0.0, frequency=1.0, bump_amplitudes=[0.5],
                         bump_sharpness=[4.0], bump_directions=[[1.0, 0.0, 0.0]], bump_axes=[[0, 0, 1.0]],
                         bump_spins=[0.0])
    rng = np.random.default_rng(8)
    n = 20000
    pts, _ = blob.sample_surface(n, 0.0, rng)
    verts, faces = blob.mesh(0.0)
    tri = verts[faces]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    side = tri.mean(axis=1)[:, 0] > blob.centre[0]
    expected = area[side].sum() / area.sum()
    got = np.mean(pts[:, 0] > blob.centre[0])
    assert abs(got - expected) < 4 * np.sqrt(expected * (1 - expected) / n) + 0.005
    naive = blob.forward(blob.sample_canonical_surface(n, rng), 0.0)
    assert abs(np.mean(naive[:, 0] > blob.centre[0]) - expected) > 0.05   # the correction matters


def test_random_shape_and_registry():
    rng = np.random.default_rng(10)
    fams = {random_shape(rng, families=["bending_bar", "twisting_box"]).family for _ in range(8)}
    assert fams == {"bending_bar", "twisting_box"}
    shape = random_shape(rng, families=["human"], motions=["hip_shakes"], global_motion=False)
    assert shape.motion_name() == "hip_shakes" and shape.global_motion.is_identity()
    desc = shape.describe()
    assert isinstance(desc["seed"], int)
    again = make_shape("human", desc["seed"], motion="hip_shakes")
    assert again.describe() == desc
    with pytest.raises(ShapeError, match="unknown shape family 'dragon'"):
        random_shape(rng, families=["dragon"])
    with pytest.raises(ShapeError, match="moonwalk"):
        make_shape("human", 1, motion="moonwalk")
    with pytest.raises(ShapeError, match="weights"):
        random_shape(rng, families=["human"], weights=[1.0, 2.0])


def test_descriptions_rebuild_the_same_shape_after_json(human, deformers):
    mat_rng = np.random.default_rng(11)
    for shape in [human, *deformers]:
        desc = json.loads(json.dumps(shape.describe()))
        assert {"family", "motion", "seed", "parameters"} <= set(desc)
        rebuilt = shape_from_description(desc)
        mat = shape.sample_canonical_surface(50, mat_rng)
        assert np.array_equal(shape.trajectory(mat, [0.2, 0.9]), rebuilt.trajectory(mat, [0.2, 0.9]))
    with pytest.raises(ShapeError, match="malformed"):
        shape_from_description({"family": "human"})


def test_invalid_parameters_name_the_key():
    with pytest.raises(ShapeError, match="amplitude"):
        MotionRanges(amplitude=(0.5, 2.0))
    with pytest.raises(ShapeError, match="speed"):
        MotionRanges(speed=(0.0, 1.0))
    with pytest.raises(ShapeError, match="height"):
        BodyParams(height=2.5)
    with pytest.raises(ShapeError, match="frequency"):
        HumanMotion("hopping", frequency=-1.0)
    with pytest.raises(ShapeError, match="curvature"):
        BendingBar(length=1.0, r_bottom=0.1, r_top=0.1, curvature=9.0, frequency=1.0)
    with pytest.raises(ShapeError, match="drift"):
        GlobalMotion(drift=(0.0, np.nan, 0.0))
    with pytest.raises(ShapeError, match=r"shape \(N, 3\)"):
        Human.random(0).occupancy(np.zeros((4, 2)), 0.0)
    with pytest.raises(ShapeError, match="seed"):
        Human.random(-3)


def test_a_turning_copy_turns_about_the_vertical_and_drifts_with_the_same_motion():
    """world.turning: the same body and motion, its global motion replaced by a turn at yaw_rate
    rad/s about the vertical and a drift; with yaw_rate 0 and no drift, the shape itself."""
    from scipy.spatial.transform import Rotation

    from occflow_ros.data.world import turning

    shape = make_shape("human", 11, motion="punching", duration=2.0)
    still = turning(shape, 0.0)
    turned = turning(shape, 1.0, drift=(0.1, 0.0, 0.0))
    assert turned.describe()["parameters"]["global_motion"]["yaw_rate"] == 1.0
    v, f = still.mesh(0.5)
    moved, moved_faces = turned.mesh(0.5)
    assert np.array_equal(f, moved_faces) and np.allclose(v, shape.mesh(0.5)[0])
    expected = Rotation.from_rotvec([0.0, 0.0, 0.5]).apply(v) + np.array([0.05, 0.0, 0.0])
    assert np.abs(moved - expected).max() < 1e-9
