"""The demo's numbers: rates and drops, tracking error vs truth and the static baseline, id persistence."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.spatial import ConvexHull

from occflow_ros.apps.demo_report import (
    DemoReportError,
    ReceivedMesh,
    id_persistence,
    latency_summary,
    score_tracking,
    summarize_errors,
)
from occflow_ros.tracking import TrackedMesh

VELOCITY = np.array([0.3, 0.0, 0.0])  # m/s: the truth slides along x
FPS = 30.0


def sphere_points(n: int, seed: int = 0) -> np.ndarray:
    d = np.random.default_rng(seed).normal(size=(n, 3))
    return 0.2 * d / np.linalg.norm(d, axis=1, keepdims=True) + [0.0, 0.0, 2.0]


def stream(follow: bool, frames: int = 30, window: int = 10):
    """Received meshes of a sliding sphere: a keyframe every ``window`` frames whose vertices are truth
    points; in between they follow the truth (``follow``) or stay at the keyframe."""
    truth0 = sphere_points(4000)
    times = np.arange(frames) / FPS
    received, key_vertices, key_t, ids = [], None, 0.0, None
    verts0 = sphere_points(300, seed=1)
    faces = ConvexHull(verts0).simplices.astype(np.uint32)
    for k, t in enumerate(times):
        if k % window == 0:
            key_vertices, key_t = verts0 + VELOCITY * t, float(t)
            ids = np.arange(300, dtype=np.uint32) + (k // window) * 100  # 200 of 300 ids carried over
        vertices = key_vertices + VELOCITY * (t - key_t) if follow else key_vertices
        mesh = TrackedMesh(stamp=float(t), keyframe_stamp=key_t, keyframe_id=k // window,
                           vertices=vertices.astype(np.float32), faces=faces, vertex_ids=ids,
                           canonical_vertices=verts0.astype(np.float32), topology_changed=k % window == 0)
        received.append(ReceivedMesh(mesh=mesh, frame=k, received_s=float(t) + 0.05))
    return received, (lambda k: truth0 + VELOCITY * times[k]), times


def test_a_tracker_that_follows_the_truth_scores_near_zero_and_beats_the_static_baseline():
    received, truth, _ = stream(follow=True)
    rows = score_tracking(received, truth, chamfer_points=2000)
    s = summarize_errors(rows)
    # vertices are the truth's own surface points moved exactly: only the nearest-point matching error
    assert s["corr_l2_cm"]["later_frames"] < 1.5
    # left still, a vertex is off by the distance slid since the keyframe: 30 cm/s * mean ~0.15 s
    assert s["corr_l2_cm"]["static_later_frames"] > 3.0
    assert s["segments_scored"] == 3
    bins = s["over_time"]
    assert [b["from_s"] for b in bins] == sorted(b["from_s"] for b in bins)
    assert bins[-1]["static_corr_l2_cm"] > bins[0]["static_corr_l2_cm"]  # static error grows
    assert s["chamfer_l1_cm"]["all"] < 2.0
    # the static mesh's surface slid away from the truth's: its Chamfer grows, the tracked one's not
    assert s["chamfer_l1_cm"]["static_later_frames"] > 2.0 * s["chamfer_l1_cm"]["later_frames"]


def test_vertices_left_still_score_exactly_the_static_baseline():
    received, truth, _ = stream(follow=False)
    rows = score_tracking(received, truth, chamfer_points=500)
    assert all(r["corr_l2_m"] == r["static_corr_l2_m"] for r in rows)
    assert all(r["chamfer_l1_m"] == r["static_chamfer_l1_m"] for r in rows)
    later = [r for r in rows if r["since_keyframe"] > 0]
    assert later and all(not r["keyframe"] for r in later), "a segment was re-matched mid-way"


def test_id_persistence_counts_the_ids_each_keyframe_keeps_and_checks_segments():
    received, _, _ = stream(follow=True)
    ids = id_persistence([r.mesh for r in received])
    assert ids["keyframe_changes"] == 2
    assert ids["kept"]["mean"] == pytest.approx(200 / 300)
    assert ids["inherited"]["min"] == pytest.approx(200 / 300)
    assert ids["segments_consistent"]
    meshes = [r.mesh for r in received]
    meshes[3].vertex_ids = meshes[3].vertex_ids[::-1].copy()  # ids reordered inside a segment
    assert not id_persistence(meshes)["segments_consistent"]


def test_latency_summary_counts_drops_rates_and_separates_keyframes():
    received, _, times = stream(follow=True)
    kept = received[::2]  # the node answered every second frame, keyframes 0, 10 and 20 among them
    live = latency_summary(times, times + 0.002, kept)
    assert live["frames_sent"] == 30 and live["frames_processed"] == 15 and live["frames_dropped"] == 15
    assert live["input_rate_hz"] == pytest.approx(FPS)
    assert live["processed_rate_hz"] == pytest.approx(15 / (29 / FPS))
    assert live["latency_ms"]["all"]["p50"] == pytest.approx(50.0)
    assert live["latency_ms"]["keyframes"]["n"] == 3 and live["latency_ms"]["tracking_frames"]["n"] == 12
    assert live["keyframes"] == 3
    assert live["publish_late_ms"]["p50"] == pytest.approx(2.0)
    json.dumps(live)  # plain data for report.json
    with pytest.raises(DemoReportError, match="at least 2 sent frames"):
        latency_summary([0.0], [0.0], kept)


def test_segments_are_told_apart_by_keyframe_stamp_when_ids_restart():
    """A tracker reset (a bag looping) restarts keyframe ids at 0: the second segment 0 is scored
    from its own first mesh, not as later frames of the first."""
    received, truth, _ = stream(follow=True, frames=20, window=10)
    looped = []
    for r in received[:10]:  # the same 10 frames again, ids restarting, stamps 1 s later
        m = r.mesh
        mesh = TrackedMesh(stamp=m.stamp + 1.0, keyframe_stamp=m.keyframe_stamp + 1.0,
                           keyframe_id=m.keyframe_id, vertices=m.vertices, faces=m.faces,
                           vertex_ids=m.vertex_ids + 1000, canonical_vertices=m.canonical_vertices,
                           topology_changed=m.topology_changed)
        looped.append(ReceivedMesh(mesh=mesh, frame=r.frame, received_s=r.received_s + 1.0))
    rows = score_tracking(received + looped, truth, chamfer_points=500)
    s = summarize_errors(rows)
    assert s["segments_scored"] == 3
    # times count from each segment's own first mesh: no frame is 1 s or more after it
    assert max(b["to_s"] for b in s["over_time"]) <= 0.4
