"""The tracker's machinery on a network with known answers: keyframes, propagation, ids, resets, holds.

The model (test/analytic_models.py) is a ball-shaped occupancy and a constant velocity field, and the
input is the camera-facing half of a sphere sliding along x. The ball is placed where the sphere
really is in the keyframe's normalised space, so the mesh, the flow and the residual all have
closed-form expectations. Accuracy of the trained model is tested elsewhere.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from analytic_models import ball_and_drift_model, sphere_model
from occflow_ros.geometry import is_watertight
from occflow_ros.tracking import (DeformationConfig, MeshingConfig, Tracker, TrackerConfig,
                                  TrackingError)

RADIUS = 0.3  # metres
SPEED = 0.5  # m/s along x
DEPTH = 2.0  # sphere centre's distance from the camera (z, optical frame)
PADDING = 0.15
# The visible half (z <= centre) has a bounding box 2R x 2R x R: its longest side is 2R, and its
# centre is R/2 in front of the sphere's centre.
SCALE = 2 * RADIUS / (1 - PADDING)
FAST_MESH = MeshingConfig(resolution0=16, upsampling_steps=2, target_vertices=600)
FLOW = DeformationConfig(enabled=False)  # the velocity field carries the mesh


def sphere_frame(t: float, rng: np.random.Generator, n: int = 3000, speed: float = SPEED,
                 offset=(0.0, 0.0, 0.0)) -> np.ndarray:
    d = rng.normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    d = d[d[:, 2] < 0]  # the half facing the camera at the origin
    centre = np.array([speed * t, 0.0, DEPTH]) + np.asarray(offset)
    return (centre + RADIUS * d).astype(np.float32)


def tracked_speed(tracker: Tracker) -> float:
    """The field's constant speed in m/s under the current keyframe's normalisation (whose scale
    is fitted to that frame's random points, so it differs slightly from SCALE)."""
    return SPEED * tracker.normalization.scale / SCALE


def make_tracker(window=1.0, speed=SPEED, **overrides) -> Tracker:
    model = sphere_model(radius=RADIUS, scale=SCALE, center_z=RADIUS / 2, velocity=(speed, 0, 0))
    # the flow carries the mesh here (these tests prove its mechanics with known velocity fields)
    settings = dict(window_seconds=window, meshing=FAST_MESH, residual_threshold=0.0,
                    input_correspondences=False, deformation=FLOW)
    settings.update(overrides)
    return Tracker(model, TrackerConfig(**settings), device="cpu", margin=PADDING)


def test_first_frame_is_a_keyframe_with_a_closed_mesh_and_fresh_unique_ids():
    rng = np.random.default_rng(0)
    tracker = make_tracker()
    mesh = tracker.feed(sphere_frame(0.0, rng), 0.0)
    assert mesh is not None and mesh.topology_changed and mesh.info["keyframe"]
    assert mesh.keyframe_id == 0 and mesh.keyframe_stamp == 0.0
    assert mesh.faces.dtype == np.uint32 and mesh.vertex_ids.dtype == np.uint32
    assert is_watertight(mesh.vertices, mesh.faces)
    assert np.array_equal(np.sort(mesh.vertex_ids), np.arange(mesh.num_vertices))
    assert np.array_equal(mesh.canonical_vertices, mesh.vertices)
    # the mesh is the sphere: vertices within a couple of grid cells of radius 0.3 around the centre
    r = np.linalg.norm(mesh.vertices - [0.0, 0.0, DEPTH], axis=1)
    assert abs(np.median(r) - RADIUS) < 0.02


def test_vertices_follow_the_velocity_field_between_keyframes_with_irregular_and_dropped_frames():
    rng = np.random.default_rng(1)
    tracker = make_tracker()
    stamps = np.cumsum(np.r_[0.0, rng.choice([1 / 30, 2 / 30, 3 / 30], size=10)])  # drops
    stamps += rng.uniform(-0.004, 0.004, size=stamps.shape)  # jitter
    stamps[0] = 0.0
    first = tracker.feed(sphere_frame(stamps[0], rng), stamps[0])
    previous = first
    for stamp in stamps[1:]:
        mesh = tracker.feed(sphere_frame(stamp, rng), stamp)
        assert not mesh.topology_changed and mesh.keyframe_id == 0
        assert np.array_equal(mesh.faces, first.faces) and np.array_equal(mesh.vertex_ids,
                                                                            first.vertex_ids)
        step = mesh.vertices - previous.vertices
        expected = tracked_speed(tracker) * (mesh.stamp - previous.stamp)
        assert np.allclose(step[:, 0], expected, atol=1e-4)
        assert np.allclose(step[:, 1:], 0.0, atol=1e-5)
        previous = mesh
    # the tracked sphere is where the real one is
    centre = previous.vertices.mean(axis=0)
    assert abs(centre[0] - SPEED * stamps[-1]) < 0.01


def test_ids_and_canonical_positions_persist_across_keyframes():
    rng = np.random.default_rng(2)
    tracker = make_tracker(window=0.3)
    meshes = [tracker.feed(sphere_frame(i / 30, rng), i / 30) for i in range(31)]
    keyframes = [m for m in meshes if m.topology_changed]
    assert len(keyframes) >= 3, "a 0.3 s window over 1 s gives several keyframes"
    for before, key in zip(meshes, meshes[1:]):
        if not key.topology_changed:
            continue
        assert len(np.unique(key.vertex_ids)) == key.num_vertices
        common, i_old, i_new = np.intersect1d(before.vertex_ids, key.vertex_ids,
                                              return_indices=True)
        assert len(common) >= 0.8 * key.num_vertices, "most surface keeps its ids"
        # an inherited id keeps its canonical (first-seen) position and is still near its vertex
        assert np.array_equal(before.canonical_vertices[i_old], key.canonical_vertices[i_new])
        moved = np.linalg.norm(before.vertices[i_old] - key.vertices[i_new], axis=1)
        assert moved.max() <= tracker.config.id_match_distance + 1e-6
    # ids never repeat for different surface: fresh ids are above every id used before
    seen = set()
    for key in keyframes:
        new = set(key.vertex_ids.tolist()) - seen
        assert not seen or min(new, default=max(seen) + 1) > max(seen)
        seen |= set(key.vertex_ids.tolist())


@pytest.mark.parametrize("worker", ["thread", "process"])
def test_a_background_keyframe_is_carried_to_the_present_and_takes_over_the_ids(worker):
    """async_keyframes: the frame that is due a keyframe starts meshing in the background and is
    answered by the old mesh carried on; frames keep being tracked on the old segment until the new
    mesh is ready; the first frame after that gets the new mesh, brought from the keyframe's time to
    the present (here the exact drift) and carrying the old mesh's ids. Whatever the timing, in a
    thread or in a process of its own."""
    rng = np.random.default_rng(12)
    tracker = make_tracker(window=0.3, async_keyframes=True, keyframe_worker=worker)
    assert tracker.keyframe_worker == worker
    stamps = [i / 30 for i in range(24)]
    meshes = []
    for k, t in enumerate(stamps):
        if k == 16:
            assert tracker.wait_for_keyframe(timeout=60)  # whatever is in flight is adopted next
        meshes.append(tracker.feed(sphere_frame(t, rng), t))
        if k == 0:
            assert meshes[0].topology_changed and meshes[0].info["keyframe"], "the first is synchronous"
    adopted = [k for k, m in enumerate(meshes) if m.topology_changed and k > 0]
    assert adopted, "no background keyframe was adopted"
    for k in adopted:
        m, before = meshes[k], meshes[k - 1]
        assert m.info["keyframe"] and m.keyframe_id == before.keyframe_id + 1
        start = stamps.index(m.keyframe_stamp)
        assert start < k, "a background keyframe is adopted after its own frame"
        # the frame that started it and those after it, up to the adoption, kept the old segment
        assert all(not x.topology_changed and x.keyframe_id == before.keyframe_id
                   for x in meshes[start:k])
        assert m.info["keyframe_frames_behind"] == k - 1 - start
        # carried to the present: the ball's centre is where the sphere is now
        centre = m.vertices.mean(axis=0)
        assert abs(centre[0] - SPEED * stamps[k]) < 0.01, (k, centre, SPEED * stamps[k])
        common = np.intersect1d(before.vertex_ids, m.vertex_ids)
        assert len(common) >= 0.8 * m.num_vertices, "most surface keeps its ids"
        assert not tracker.background_keyframe or tracker.background_keyframe > m.keyframe_stamp
    later = [m for m in meshes[1:] if not m.topology_changed]
    assert later and all(m.info["keyframe"] is False for m in later)
    tracker.close()


def test_a_keyframe_process_builds_the_in_line_mesh_and_stops_when_cancelled():
    """The process worker runs the tracker's own keyframe build on its own copy of the networks: the
    same mesh as in line for the same input; a job cancelled in flight raises TrackingCancelled."""
    from occflow_ros.tracking import TrackingCancelled
    from occflow_ros.tracking.keyframe_process import KeyframeProcess

    rng = np.random.default_rng(5)
    tracker = make_tracker()
    observed = sphere_frame(0.0, rng)
    norm, x = tracker._keyframe_input(observed)
    with torch.inference_mode():  # as Tracker.feed runs it
        here = tracker._build(observed, 0.0, "test", norm, x)
    worker = KeyframeProcess(tracker.model, tracker.config, tracker.margin)
    try:
        assert worker.started.result(timeout=120)
        there = worker.submit(observed, 0.0, "test", norm, x).result(timeout=120)
        assert there.faces.shape == here.faces.shape and (there.faces == here.faces).all()
        np.testing.assert_allclose(there.vertices, here.vertices, atol=1e-5)
        np.testing.assert_allclose(there.code.numpy(), here.code.numpy(), atol=1e-5)
        heavy = make_tracker(meshing=MeshingConfig(resolution0=64, upsampling_steps=3))
        slow = KeyframeProcess(heavy.model, heavy.config, heavy.margin)
        try:
            assert slow.started.result(timeout=120)
            job = slow.submit(observed, 0.0, "test", norm, x)
            slow.cancel.set()
            with pytest.raises(TrackingCancelled, match="abandoned"):
                job.result(timeout=120)
        finally:
            slow.close()
    finally:
        worker.close()


def test_a_gap_or_a_reset_drops_the_background_keyframe_and_meshes_synchronously():
    rng = np.random.default_rng(13)
    tracker = make_tracker(window=0.3, async_keyframes=True, max_gap_seconds=0.5)
    t = 0.0
    while tracker.background_keyframe is None:
        mesh = tracker.feed(sphere_frame(t, rng), t)
        t += 1 / 30
        assert t < 1.0, "no background keyframe started"
    # a long gap: the old segment cannot bridge it, a keyframe is meshed for this very frame
    t += 0.8
    mesh = tracker.feed(sphere_frame(t, rng), t)
    assert mesh.topology_changed and mesh.keyframe_stamp == t and mesh.info["keyframe"]
    assert tracker.background_keyframe is None
    before = mesh.keyframe_id
    assert tracker.wait_for_keyframe(timeout=1)  # nothing in flight
    mesh = tracker.feed(sphere_frame(t + 1 / 30, rng), t + 1 / 30)
    assert not mesh.topology_changed and mesh.keyframe_id == before, "the dropped job is not adopted"
    while tracker.background_keyframe is None:
        t += 1 / 30
        tracker.feed(sphere_frame(t, rng), t)
    tracker.reset()
    assert tracker.background_keyframe is None
    t += 1 / 30
    mesh = tracker.feed(sphere_frame(t, rng), t)
    assert mesh.topology_changed and mesh.keyframe_id == 0 and mesh.keyframe_stamp == t
    tracker.close()
    tracker.close()  # twice is fine


def test_a_stamp_going_backwards_resets_cleanly():
    rng = np.random.default_rng(3)
    tracker = make_tracker()
    for i in range(5):
        before = tracker.feed(sphere_frame(i / 30, rng), i / 30)
    mesh = tracker.feed(sphere_frame(0.05, rng), 0.05)
    assert "went backwards" in mesh.info["reset"]
    assert mesh.topology_changed and mesh.keyframe_id == 0 and mesh.keyframe_stamp == 0.05
    assert mesh.vertex_ids.min() > before.vertex_ids.max(), "ids are not reused after a reset"
    assert tracker.resets == 1
    assert (before.run, mesh.run) == (0, 1)  # the run tells a reset from a keyframe


def test_an_empty_frame_holds_the_last_mesh_and_says_so():
    rng = np.random.default_rng(4)
    tracker = make_tracker()
    nothing = np.full((1000, 3), np.nan, np.float32)
    assert tracker.feed(nothing, 0.0) is None  # nothing to hold yet
    mesh = tracker.feed(sphere_frame(0.1, rng), 0.1)
    held = tracker.feed(np.zeros((500, 3), np.float32), 0.2)  # RealSense-style zeros only
    assert "empty frame" in held.info["held"]
    assert held.stamp == 0.2 and np.array_equal(held.vertices, mesh.vertices)
    again = tracker.feed(sphere_frame(0.2, rng), 0.2)
    assert "repeated stamp" in again.info["held"]
    after = tracker.feed(sphere_frame(0.3, rng), 0.3)
    assert not after.topology_changed and "held" not in after.info
    assert np.allclose(after.vertices[:, 0] - mesh.vertices[:, 0], tracked_speed(tracker) * 0.2,
                       atol=1e-4)


@pytest.mark.parametrize("case", ["gap", "window", "max_frames", "residual"])
def test_keyframe_policy(case):
    rng = np.random.default_rng(5)
    overrides = {"gap": dict(max_gap_seconds=0.2), "window": dict(window_seconds=0.25),
                 "max_frames": dict(max_frames=4), "residual": dict(residual_threshold=0.05)}[case]
    window = overrides.pop("window_seconds", 1.0)
    tracker = make_tracker(window=window, **overrides)
    stamps = [0.0, 1 / 30, 2 / 30, 3 / 30]
    for s in stamps:
        mesh = tracker.feed(sphere_frame(s, rng), s)
    assert not mesh.topology_changed
    if case == "gap":
        mesh = tracker.feed(sphere_frame(0.4, rng), 0.4)
        assert "gap of" in mesh.info["keyframe_reason"]
    elif case == "window":
        mesh = tracker.feed(sphere_frame(0.26, rng), 0.26)
        assert "window of 0.25 s elapsed" in mesh.info["keyframe_reason"]
    elif case == "max_frames":
        mesh = tracker.feed(sphere_frame(4 / 30, rng), 4 / 30)  # a segment holds 4 frames at most
        assert "4 frames since the keyframe" in mesh.info["keyframe_reason"]
    else:
        # the object jumps 0.3 m sideways: the tracked mesh no longer explains the data
        mesh = tracker.feed(sphere_frame(4 / 30, rng, offset=(0.3, 0.0, 0.0)), 4 / 30)
        reason = mesh.info["keyframe_reason"]
        assert "tracking residual" in reason and "grew by more than 0.050 m" in reason
        assert float(reason.split()[2]) > 0.05  # what the tracked mesh left unexplained
        assert mesh.info["residual_m"] < 0.01  # the new keyframe's mesh explains the data again
    assert mesh.topology_changed and mesh.keyframe_id == 1


@pytest.mark.parametrize("deformation, window", [
    (DeformationConfig(), 2.0),                    # the graph alone: no trained window to keep
    (DeformationConfig(flow_prior=True), 1.0),     # the field as the graph's prior: its window
    (FLOW, 1.0)])                                  # the field carries: its window
def test_the_automatic_keyframe_window_follows_the_carrier(deformation, window):
    """window_seconds None: a keyframe every 2 s where the graph alone carries the mesh, every
    trained window (the analytic model's 1 s) where the velocity field is used."""
    rng = np.random.default_rng(9)
    tracker = make_tracker(window=None, speed=0.0, deformation=deformation)
    assert tracker.model.config.window_seconds == 1.0
    keyframes = []
    for stamp in np.arange(0.0, 2.25, 0.1):
        mesh = tracker.feed(sphere_frame(0.0, rng, speed=0.0), float(stamp))
        if mesh.info["keyframe"]:
            keyframes.append((round(float(stamp), 2), mesh.info["keyframe_reason"]))
    expected = [0.0] + [round(k * window, 2) for k in range(1, int(2.2 // window) + 1)]
    assert [k for k, _ in keyframes] == expected
    assert all(f"window of {window:g} s elapsed" in why for _, why in keyframes[1:])


def test_residual_is_small_while_tracking_well():
    rng = np.random.default_rng(6)
    tracker = make_tracker(residual_threshold=0.05)
    for i in range(10):
        mesh = tracker.feed(sphere_frame(i / 30, rng), i / 30)
    assert mesh.keyframe_id == 0
    assert mesh.info["residual_m"] < 0.015


def test_the_residual_over_a_stride_of_the_points_matches_the_residual_over_all():
    """A field 40% too slow: the tracked sphere lags and the residual grows, by the same amount
    whether it is averaged over every observed point or over ~100 of them."""
    frames = [sphere_frame(i / 30, np.random.default_rng(i)) for i in range(8)]
    got = {}
    for limit in (0, 100):
        tracker = make_tracker(speed=0.6 * SPEED, residual_points=limit)
        got[limit] = [tracker.feed(f, i / 30).info.get("residual_m") for i, f in enumerate(frames)]
    full, strided = np.array(got[0][1:]), np.array(got[100][1:])
    assert full[-1] > 0.01 and full[-1] > 3 * full[0]  # it did lag
    assert np.allclose(strided, full, rtol=0.15, atol=1e-3)
    with pytest.raises(TrackingError, match="residual_points"):
        TrackerConfig(residual_points=-1)


def test_input_points_are_carried_back_to_the_keyframe_time():
    rng = np.random.default_rng(7)
    tracker = make_tracker(input_correspondences=True)
    tracker.feed(sphere_frame(0.0, rng), 0.0)
    mesh = tracker.feed(sphere_frame(0.2, rng), 0.2)
    assert mesh.input_points.shape == mesh.input_keyframe_points.shape
    assert mesh.input_points.shape[0] == tracker.input_points
    back = mesh.input_points - mesh.input_keyframe_points
    assert np.allclose(back[:, 0], tracked_speed(tracker) * 0.2, atol=1e-4)
    assert np.allclose(back[:, 1:], 0.0, atol=1e-4)


def test_after_a_reset_the_same_frames_give_the_same_output():
    """A replay after reset() draws the same points as the first pass (the tracker's random draws
    restart with its seed), so evaluation windows do not depend on the ones before them."""
    rng = np.random.default_rng(9)
    frames = [(sphere_frame(t, rng), t) for t in (0.0, 0.1, 0.2)]
    tracker = make_tracker(input_correspondences=True)
    passes = []
    for _ in range(2):
        tracker.reset()
        meshes = [tracker.feed(points, t) for points, t in frames]
        passes.append([(m.vertices.copy(), m.input_points.copy()) for m in meshes])
    for (v1, p1), (v2, p2) in zip(*passes):
        assert np.array_equal(v1, v2) and np.array_equal(p1, p2)


def test_a_keyframe_with_no_occupied_space_holds_instead_of_publishing_nothing():
    rng = np.random.default_rng(8)
    tracker = make_tracker()
    assert tracker.feed(sphere_frame(0.0, rng), 0.0) is not None
    # swap in a model whose occupancy is empty everywhere
    empty = ball_and_drift_model(radius=-1.0)
    tracker.model = empty
    tracker.reset()
    assert tracker.feed(sphere_frame(0.1, rng), 0.1) is None
    assert tracker.last is None


def test_bad_settings_and_stamps_are_refused():
    with pytest.raises(TrackingError, match="max_frames"):
        TrackerConfig(max_frames=1)
    with pytest.raises(TrackingError, match="unknown tracker key"):
        TrackerConfig.from_dict({"windw": 1.0})
    with pytest.raises(TrackingError, match="meshing.threshold"):
        TrackerConfig.from_dict({"meshing": {"threshold": 1.5}})
    tracker = make_tracker()
    with pytest.raises(TrackingError, match="finite"):
        tracker.feed(np.zeros((10, 3), np.float32), float("nan"))
    cfg = TrackerConfig.from_dict({"solver": {"method": "euler", "step_size": 0.05},
                                   "preprocess": {"voxel_size": 0.02}})
    assert cfg.solver.method == "euler" and cfg.preprocess.voxel_size == 0.02
    assert dataclasses.asdict(cfg)["meshing"]["target_vertices"] == 3000


def test_with_the_rigid_prior_the_mesh_turns_and_slides_with_the_seen_body():
    """A still field plus the rigid prior: the tracker registers each frame to the keyframe (ICP)
    and carries the vertices with those poses, so the mesh follows a turning, sliding body."""
    from scipy.spatial.transform import Rotation

    from analytic_models import CONFIG
    from occflow_ros.model import ModelConfig, OccupancyFlow

    ball = sphere_model(radius=RADIUS, scale=SCALE, center_z=RADIUS / 2)
    model = OccupancyFlow(ModelConfig(**{**CONFIG.to_dict(), "velocity_rigid": True})).eval()
    model.load_state_dict(ball.state_dict())
    tracker = Tracker(model, TrackerConfig(window_seconds=2.0, meshing=FAST_MESH,
                                           residual_threshold=0.0, input_correspondences=True,
                                           deformation=FLOW),
                      device="cpu", margin=PADDING)
    rng = np.random.default_rng(3)
    axes = np.array([RADIUS, 0.6 * RADIUS, 0.4 * RADIUS])  # an ellipsoid: no symmetry to slide on

    def motion(t):
        rot = Rotation.from_rotvec([0.0, 0.0, 1.2 * t])
        return rot, np.array([0.3 * t, 0.1 * t, DEPTH])

    def frame(t):
        d = rng.normal(size=(6000, 3))
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        rot, centre = motion(t)
        p = rot.apply(d * axes) + centre
        return p[p[:, 2] < DEPTH].astype(np.float32)  # the camera-facing half

    stamps = np.arange(16) / 30
    first = tracker.feed(frame(0.0), 0.0)
    for stamp in stamps[1:]:
        mesh = tracker.feed(frame(stamp), stamp)
    assert mesh.keyframe_id == first.keyframe_id and not mesh.info["keyframe"]
    rot0, c0 = motion(0.0)
    rot, c = motion(stamps[-1])
    truth = rot.apply(rot0.inv().apply(first.vertices - c0)) + c  # where the body took them
    err = np.linalg.norm(mesh.vertices - truth, axis=1).mean()
    still = np.linalg.norm(first.vertices - truth, axis=1).mean()
    assert still > 0.1  # 0.5 s: turned 0.6 rad and slid 0.16 m
    assert err < 0.05 * still
    # the observed points carried back to the keyframe land where the body was then
    seen = mesh.input_points
    expected_back = rot0.apply(rot.inv().apply(seen - c)) + c0
    back_err = np.linalg.norm(mesh.input_keyframe_points - expected_back, axis=1).mean()
    assert back_err < 0.05 * still


def test_with_deformation_the_mesh_follows_the_frames_without_the_flow():
    """tracker.deformation: a still model, yet the mesh follows a turning, sliding ellipsoid,
    because the deformation graph is fit to every frame (the flow is not run); the observed points
    map back to where they were at the keyframe."""
    from scipy.spatial.transform import Rotation

    from analytic_models import ellipsoid_model
    from occflow_ros.tracking import DeformationConfig

    axes = np.array([RADIUS, 0.6 * RADIUS, 0.4 * RADIUS])
    # the camera-facing half's bounding box: 2a x 2b x c, centred c/2 in front of the centre
    scale = 2 * axes[0] / (1 - PADDING)
    model = ellipsoid_model(axes=axes, scale=scale, center_z=axes[2] / 2)
    rng = np.random.default_rng(5)

    def motion(t):
        return Rotation.from_rotvec([0.0, 0.0, 1.2 * t]), np.array([0.3 * t, 0.1 * t, DEPTH])

    def frame(t):
        d = rng.normal(size=(6000, 3))
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        rot, centre = motion(t)
        p = rot.apply(d * axes) + centre
        return p[p[:, 2] < DEPTH].astype(np.float32)

    def run(deformation: bool):
        tracker = Tracker(model, TrackerConfig(
            window_seconds=2.0, meshing=FAST_MESH, residual_threshold=0.0, input_correspondences=True,
            deformation=DeformationConfig(enabled=deformation)), device="cpu", margin=PADDING)
        first = tracker.feed(frame(0.0), 0.0)
        for stamp in stamps[1:]:
            mesh = tracker.feed(frame(stamp), stamp)
        return first, mesh

    stamps = np.arange(16) / 30
    first, mesh = run(True)
    assert not mesh.info["keyframe"] and mesh.keyframe_id == first.keyframe_id
    assert mesh.info["deformation_pairs"] > 100 and "flow_ms" not in mesh.info
    rot0, c0 = motion(0.0)
    rot, c = motion(stamps[-1])
    truth = rot.apply(rot0.inv().apply(first.vertices - c0)) + c  # where the body took them
    still = np.linalg.norm(first.vertices - truth, axis=1).mean()
    assert still > 0.1  # 0.5 s: turned 0.6 rad and slid 0.16 m
    # measured 0.088 and 0.093 of still; 0.22 and 0.22 while momentum judged how firmly the data
    # pin this turn by its own size rather than against the least-pinned shift (docs/tracking.md,
    # "Turns the data cannot see")
    tracked = np.linalg.norm(mesh.vertices - truth, axis=1).mean() / still
    seen = mesh.input_points
    expected_back = rot0.apply(rot.inv().apply(seen - c)) + c0
    # the observed points go back with the fit, whose own error it is
    back = np.linalg.norm(mesh.input_keyframe_points - expected_back, axis=1).mean() / still
    assert tracked < 0.1 and back < 0.12, (tracked, back)
    # without it, the still field leaves the mesh where it was
    first, kept = run(False)
    assert np.linalg.norm(kept.vertices - first.vertices, axis=1).max() < 1e-4



@pytest.mark.parametrize("mode", ["synchronous", "async_keyframes", "partial_guard"])
def test_a_mesh_turned_away_from_the_data_is_caught_on_that_frame_by_its_coverage(mode):
    """A bar seen from the side turns in one frame to point at the camera, about the point of its
    surface nearest the camera: the camera now sees only its end cap, right where the bar's middle
    was, so every observed point still lies near the tracked mesh (the one-way residual barely
    moves), while the mesh shows the camera a whole bar where nothing is seen. The coverage check
    catches it on that very frame: a synchronous keyframe re-meshes it there, and with background
    keyframes the frame falls back to the last good mesh while the new one is meshed. The end cap
    is also far fewer points than the bar's side: with the partial-frame guard on (the default)
    the frame falls back to the last good mesh and no keyframe is made from the cap; the first two
    cases switch the guard off to show the re-keying."""
    from analytic_models import ellipsoid_model

    axes = np.array([0.35, 0.08, 0.08])  # a horizontal bar, along x
    scale = 2 * axes[0] / (1 - PADDING)
    model = ellipsoid_model(axes=axes, scale=scale, center_z=axes[2] / 2)
    rng = np.random.default_rng(9)

    def frame(turned: bool) -> np.ndarray:
        d = rng.normal(size=(8000, 3))
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        if turned:  # the bar along z, its tip where the side-on bar's nearest point was
            shape, centre = axes[[2, 1, 0]], np.array([0.0, 0.0, DEPTH - axes[2] + axes[0]])
        else:
            shape, centre = axes, np.array([0.0, 0.0, DEPTH])
        p, normal = d * shape + centre, d / shape
        # what a depth camera at the origin measures of a convex body: the surface facing it, less
        # what it sees at grazing incidence (more than 60 degrees off the ray: no depth there)
        cosine = (normal * -p).sum(1) / np.linalg.norm(normal, axis=1) / np.linalg.norm(p, axis=1)
        return p[cosine > 0.5]

    background = mode == "async_keyframes"
    guard = 0.5 if mode == "partial_guard" else 0.0
    tracker = Tracker(model, TrackerConfig(window_seconds=2.0, meshing=FAST_MESH,
                                           async_keyframes=background, partial_fraction=guard),
                      device="cpu", margin=PADDING)
    stamps = np.arange(8) / 30
    first = tracker.feed(frame(False), 0.0)
    for stamp in stamps[1:-1]:
        held = tracker.feed(frame(False), stamp)
        assert not held.info["keyframe"] and "fallback" not in held.info
    good = held
    caught = tracker.feed(frame(True), stamps[-1])
    if background:
        reason = caught.info["fallback"]
        assert not caught.info["keyframe"] and tracker.background_keyframe == stamps[-1]
        np.testing.assert_array_equal(caught.vertices, good.vertices)  # the last good mesh
        tracker.close()
    elif guard:
        reason = caught.info["fallback"]
        assert caught.info["partial"].startswith("partial frame") and not caught.info["keyframe"]
        assert caught.info["keyframe_deferred"] == reason
        np.testing.assert_array_equal(caught.vertices, good.vertices)  # the last good mesh
    else:
        reason = caught.info["keyframe_reason"]
        assert caught.info["keyframe"] and caught.keyframe_id == first.keyframe_id + 1
    assert reason.startswith("tracking coverage"), reason  # not the one-way residual


def half_hidden(points: np.ndarray) -> np.ndarray:
    """What the camera sees of a sphere frame with an occluder in front of two thirds of it."""
    return points[points[:, 0] < -RADIUS / 3]


@pytest.mark.parametrize("guard", [True, False], ids=["partial_guard", "off"])
def test_a_partly_hidden_object_is_never_made_a_keyframe(guard):
    """An occluder hides two thirds of the object for a while: with the guard those frames are
    partial: none becomes a keyframe (it would be the third that was seen); where the coverage
    check says the mesh no longer explains such a frame (the hidden part has no point near it, as
    a wrong pose would not) the last good mesh is held; the keyframe that falls due meanwhile waits
    for the first whole frame. Without it (0) the first hidden frame re-keys on a third of a
    sphere."""
    rng = np.random.default_rng(11)
    tracker = make_tracker(window=0.5, speed=0.0, deformation=DeformationConfig(),
                           residual_threshold=0.03,
                           partial_fraction=0.5 if guard else 0.0, partial_max_seconds=1.0)
    whole = lambda: sphere_frame(0.0, rng, speed=0.0)  # noqa: E731
    meshes = {}
    for stamp in np.round(np.arange(0.0, 1.01, 0.1), 2):
        hidden = 0.35 < stamp < 0.85
        meshes[stamp] = tracker.feed(half_hidden(whole()) if hidden else whole(), float(stamp))
    keyframes = [s for s, m in meshes.items() if m.info["keyframe"]]
    if not guard:
        assert 0.4 in keyframes, keyframes  # re-keyed on the first hidden frame
        return
    good = meshes[0.3]
    for stamp in (0.4, 0.5, 0.6, 0.7, 0.8):
        mesh = meshes[stamp]
        assert mesh.info["partial"].startswith("partial frame"), mesh.info
        assert not mesh.info["keyframe"] and mesh.keyframe_id == 0, mesh.info
        assert mesh.info["fallback"].startswith("tracking coverage"), mesh.info
        np.testing.assert_array_equal(mesh.vertices, good.vertices)  # the last good mesh, held
    assert keyframes == [0.0, 0.9], keyframes  # the keyframe due came with the first whole frame
    assert "window of 0.5 s" in meshes[0.9].info["keyframe_reason"]
    assert "partial" not in meshes[0.9].info


def test_partial_frames_for_longer_than_the_limit_are_keyframed():
    """A part hidden for longer than partial_max_seconds may be gone for good: the keyframe due
    is then made from what is seen."""
    rng = np.random.default_rng(12)
    tracker = make_tracker(window=0.5, speed=0.0, deformation=DeformationConfig(),
                           partial_fraction=0.5, partial_max_seconds=0.65)
    tracker.feed(sphere_frame(0.0, rng, speed=0.0), 0.0)
    tracker.feed(sphere_frame(0.0, rng, speed=0.0), 0.1)
    keyframes = []
    for stamp in np.round(np.arange(0.2, 1.01, 0.1), 2):
        mesh = tracker.feed(half_hidden(sphere_frame(0.0, rng, speed=0.0)), float(stamp))
        if mesh.info["keyframe"]:
            keyframes.append(stamp)
    assert keyframes == [0.9], keyframes  # hidden since 0.2: partial until 0.8, then whole


def test_with_the_graph_the_outlier_stage_runs_on_keyframe_frames_only():
    """Statistical outlier removal cleans the points a keyframe mesh is built from; tracked frames
    skip it (the graph's distance gate leaves stray points out) and their stray points do not move
    the mesh; with the flow carrying the mesh every frame gets it."""
    from occflow_ros.geometry import PreprocessConfig, remove_outliers

    rng = np.random.default_rng(5)
    stray = np.array([[0.0, 0.0, DEPTH - 0.6], [0.1, 0.05, DEPTH - 0.55]], np.float32)

    def frame(t):
        return np.concatenate([sphere_frame(t, rng, speed=0.0), stray])

    pre = PreprocessConfig(outlier_neighbors=8, outlier_std_ratio=1.0, voxel_size=0.0,
                           remove_plane=False, cluster=False)
    graph = make_tracker(speed=0.0, preprocess=pre, deformation=DeformationConfig())
    key = graph.feed(frame(0.0), 0.0)
    assert key.info["keyframe"] and "outliers_ms" in key.info
    tracked = graph.feed(frame(1 / 30), 1 / 30)
    assert not tracked.info["keyframe"] and "outliers_ms" not in tracked.info
    assert tracked.info["points"]["outliers"] == tracked.info["points"]["cluster"]  # skipped
    assert np.abs(tracked.vertices - key.vertices).max() < 0.01  # the stray points pulled nothing
    cleaned = remove_outliers(frame(0.0), pre)
    assert not np.isin(stray[:, 2], cleaned[:, 2]).any() and len(cleaned) > 1000
    flow = make_tracker(speed=0.0, preprocess=pre)
    flow.feed(frame(0.0), 0.0)
    moved = flow.feed(frame(1 / 30), 1 / 30)
    assert moved.info["points"]["outliers"] < moved.info["points"]["cluster"]


def test_the_tracker_follows_its_object_when_a_depth_gap_parts_a_hand_from_the_body():
    """A hand touching the sphere's front moves 9 cm towards the camera: the cluster rule alone
    would keep the nearer hand and drop the body; the tracker hands each frame's object to the
    next frame's cluster stage, so both stay (with following off, the hand alone)."""
    from occflow_ros.geometry import PreprocessConfig

    def frame(rng, hand_gap):
        d = rng.normal(size=(500, 3))
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        hand = np.array([0.0, 0.0, DEPTH - RADIUS - 0.07 - hand_gap]) + 0.06 * d
        return np.concatenate([sphere_frame(0.0, rng, speed=0.0), hand.astype(np.float32)])

    def kept(track_distance):
        rng = np.random.default_rng(6)
        pre = PreprocessConfig(voxel_size=0.0, outlier_neighbors=0, remove_plane=False,
                               cluster=True, cluster_track_distance=track_distance)
        tracker = make_tracker(speed=0.0, preprocess=pre, deformation=DeformationConfig())
        first = tracker.feed(frame(rng, 0.0), 0.0)
        # one object (DBSCAN may call a stray point at the rim noise)
        assert first.info["points"]["cluster"] >= 0.99 * first.info["points"]["voxel"]
        parted = tracker.feed(frame(rng, 0.09), 1 / 30)
        return parted.info["points"]["cluster"], parted.info["points"]["voxel"]

    cluster, everything = kept(0.1)
    assert cluster >= 0.99 * everything
    cluster, everything = kept(0.0)
    assert 0.9 * 500 <= cluster <= 500 and everything > 1500


def test_a_keyframe_due_reads_the_last_frames_carried_to_its_time_and_a_forced_one_not():
    """tracker.keyframe_history: with the deformation graph (which can carry points forward) and
    the shipped model (a shape network reading more points than the motion encoder), a keyframe
    at the window's end is also given the last frames' points carried to its time; a keyframe
    forced by a gap between frames is not (the segment no longer says where they went), nor is
    any keyframe with the history off."""
    from occflow_ros.model import load_checkpoint, shipped_model_path

    checkpoint = load_checkpoint(shipped_model_path())

    def keyframes(history: float) -> list[dict]:
        tracker = Tracker(checkpoint, TrackerConfig(window_seconds=0.3, meshing=FAST_MESH,
                                                    keyframe_history=history),
                          device="cpu")
        rng = np.random.default_rng(4)
        stamps = [k / 30 for k in range(14)] + [2.0 + k / 30 for k in range(3)]
        infos = []
        for t in stamps:
            mesh = tracker.feed(sphere_frame(t, rng, speed=0.3), t)
            if mesh.info.get("keyframe"):
                infos.append(dict(mesh.info, stamp=t))
        return infos

    with_history = keyframes(0.1)
    assert [info["stamp"] for info in with_history] == [0.0, 9 / 30, 2.0]
    assert "window" in with_history[1]["keyframe_reason"]  # due; the one at 2.0 s follows a gap
    # the frames of the last 0.1 s (4 of them at 30 Hz), each its motion encoder's 300 points
    assert 3 * 300 <= with_history[1]["keyframe_carried_points"] <= 4 * 300
    assert "keyframe_carried_points" not in with_history[0]
    assert "keyframe_carried_points" not in with_history[2]
    assert all("keyframe_carried_points" not in info for info in keyframes(0.0))
