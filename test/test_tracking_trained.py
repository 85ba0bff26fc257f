"""The shipped model tracking 10 s of a simulated 30 Hz depth stream of a person, without ROS.

Ids persist across keyframes, the error against ground truth stays bounded, dropped and irregular
frames are tracked through, and a stamp going backwards (a bag looping) resets the tracker cleanly.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from occflow_ros.data import (LABEL_OBJECT, CameraIntrinsics, DepthCamera, SensorConfig, make_shape,
                              view_of)
from occflow_ros.evaluation.stream import StreamScorer
from occflow_ros.geometry import PreprocessConfig
from occflow_ros.model import load_checkpoint, shipped_model_path
from occflow_ros.tracking import MeshingConfig, Tracker, TrackerConfig

SECONDS = 10.0
FPS = 30.0


def model_path():
    path = os.environ.get("OCCFLOW_TEST_MODEL") or shipped_model_path()
    if not os.path.isfile(path):
        pytest.fail(f"no trained model at {path}: the shipped model belongs in the package "
                    "(occflow_ros/weights/); set OCCFLOW_TEST_MODEL to test another one")
    return path


def person_pixels(camera, shape, stamp, rng):
    """The camera's 320x240 frame with every pixel that is not the person made invalid (zeros, as a
    RealSense reports them): floor and wall are the node's ROI/plane/cluster business, tested with
    the demo scene (test_ros_demo.py); here the subject is tracking over time."""
    render = camera.render_full(shape, stamp, rng)
    cloud = np.where((render.labels == LABEL_OBJECT)[..., None], render.cloud, 0.0)
    return cloud.reshape(-1, 3).astype(np.float32)


@pytest.fixture(scope="module")
def run():
    """Track a person doing jumping jacks for 10 s, then loop the stream back to its start."""
    rng = np.random.default_rng(123)
    shape = make_shape("human", 424242, motion="jumping_jacks", duration=SECONDS + 1.0)
    intr = CameraIntrinsics(320, 240, 277.0, 277.0, 159.5, 119.5)  # a 320x240 RealSense-like view
    camera = DepthCamera(intr, view_of(shape, 2.4, 0.5), SensorConfig(invalid="zero"))
    _, material = shape.sample_surface(20_000, 0.0, rng)
    # 30 Hz with jitter, and dropped frames (about 1 in 8, plus one gap of 0.3 s)
    stamps = np.arange(0.0, SECONDS, 1 / FPS) + rng.normal(0, 0.003, int(SECONDS * FPS))
    keep = rng.random(len(stamps)) > 0.125
    keep[(stamps > 4.0) & (stamps < 4.3)] = False
    keep[0] = True
    stamps = np.maximum.accumulate(stamps[keep])
    config = TrackerConfig(meshing=MeshingConfig(resolution0=32, upsampling_steps=1,
                                                 target_vertices=0),
                           preprocess=PreprocessConfig(remove_plane=True))
    tracker = Tracker(load_checkpoint(model_path()), config, device="cpu")
    scorer = StreamScorer(chamfer_points=5000)
    rows, meshes = [], []
    for stamp in stamps:
        mesh = tracker.feed(person_pixels(camera, shape, float(stamp), rng), float(stamp))
        assert mesh is not None
        truth = camera.to_optical(shape.trajectory(material, np.array([stamp]))[0])
        rows.append(scorer.update(mesh, truth))
        meshes.append(mesh)
    looped = tracker.feed(person_pixels(camera, shape, 0.1, rng), 0.1)
    return {"rows": rows, "meshes": meshes, "looped": looped, "tracker": tracker}


def test_ids_persist_across_keyframes(run):
    meshes = run["meshes"]
    keyframes = [i for i, m in enumerate(meshes) if m.topology_changed]
    assert len(keyframes) >= 4, "the automatic 2 s window over 10 s"
    kept = []
    for i in keyframes[1:]:
        before, after = meshes[i - 1], meshes[i]
        assert len(np.unique(after.vertex_ids)) == after.num_vertices
        kept.append(np.isin(after.vertex_ids, before.vertex_ids).mean())
    # measured with the shipped model: median 0.48, min 0.38 (a keyframe 1 s after the last one, on
    # a body in full jumping jacks: arms and legs have moved far from where the last mesh put them)
    assert np.median(kept) > 0.4, f"fraction of ids kept at keyframes: {np.round(kept, 2)}"
    # between keyframes the same ids stay in the same order
    for a, b in zip(meshes, meshes[1:]):
        if not b.topology_changed:
            assert np.array_equal(a.vertex_ids, b.vertex_ids)


def test_tracking_error_against_ground_truth_is_bounded(run):
    rows = run["rows"]
    corr = np.array([r["corr_l2_m"] for r in rows])
    chamfer = np.array([r["chamfer_l1_m"] for r in rows])
    since = np.array([r["since_keyframe"] for r in rows])
    # a 1.7 m person: correspondence error a few cm, not growing without bound over the run.
    # Measured with the deformation graph: median 3.1 cm, p95 15.5 cm, where the keyframe meshes
    # left still score 6.1 / 13.1 cm (the velocity field alone scored 4.0 / 8.4): in two of the
    # first four 1 s segments the arms rising from the sides drag the mesh's vertices along the
    # surface for ~0.5 s (docs/tracking.md, "Known weaknesses")
    assert np.median(corr) < 0.05, np.percentile(corr, [50, 90])
    assert np.percentile(corr, 95) < 0.17
    assert np.median(chamfer) < 0.04
    assert (since > 0.5).any(), "segments long enough to drift"


def test_tracking_moves_the_vertices_with_the_body(run):
    vertex_motion = []
    meshes = run["meshes"]
    for a, b in zip(meshes, meshes[1:]):
        if not b.topology_changed:
            vertex_motion.append(np.linalg.norm(b.vertices - a.vertices, axis=1).mean())
    # the carrier moves the mesh with the body (the velocity field with the shipped model's rigid
    # prior measured 14.9 mm per tracked frame; the model before it, whose field had learnt little
    # more than the mean translation, 0.9 mm)
    assert np.mean(vertex_motion) > 0.005


def test_dropped_and_irregular_frames_are_tracked_through(run):
    meshes = run["meshes"]
    gaps = np.diff([m.stamp for m in meshes])
    assert gaps.max() > 0.25 and gaps.min() < 0.04
    assert all("held" not in m.info for m in meshes)


def test_a_stamp_going_backwards_resets_cleanly(run):
    looped = run["looped"]
    assert "went backwards" in looped.info["reset"]
    assert looped.topology_changed and looped.keyframe_id == 0 and looped.keyframe_stamp == 0.1
    last = run["meshes"][-1]
    assert looped.vertex_ids.min() > last.vertex_ids.max(), "ids are never reused"
