"""The tracker under faults: a keyframe abandoned mid-way, GPU out-of-memory shrinking the batches, hold reasons.

Same analytic sphere and ball network as test_tracking_mechanics.py. Running out of GPU memory cannot
happen on this CPU-only machine, so the occupancy decoder is wrapped to raise torch's own
``torch.cuda.OutOfMemoryError`` for batches above a size, as a small GPU would.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_tracking_mechanics import make_tracker, sphere_frame

from occflow_ros.model.flow import MIN_CHUNK
from occflow_ros.tracking import TrackingCancelled, TrackingError


class Countdown:
    """should_stop() that turns true on its ``n``-th call, and counts calls after that."""

    def __init__(self, n: int) -> None:
        self.n, self.calls = n, 0

    def __call__(self) -> bool:
        self.calls += 1
        return self.calls >= self.n


def test_a_keyframe_stops_at_the_first_check_after_should_stop_turns_true_and_the_tracker_resets():
    rng = np.random.default_rng(0)
    full = Countdown(10**9)
    tracker = make_tracker()
    assert tracker.feed(sphere_frame(0.0, rng), 0.0, should_stop=full) is not None
    checks_per_keyframe = full.calls
    assert checks_per_keyframe >= 4, "a keyframe polls should_stop between its batches and steps"

    tracker = make_tracker()
    first = tracker.feed(sphere_frame(0.0, rng), 0.0)
    for n in (1, 2, checks_per_keyframe):  # the first batch, a later batch, the last step
        stop = Countdown(n)
        tracker.reset()
        with pytest.raises(TrackingCancelled, match="keyframe at stamp 1.000000 s abandoned"):
            tracker.feed(sphere_frame(1.0, rng), 1.0, should_stop=stop)
        assert stop.calls == n, "work went on after should_stop() said stop"
        assert tracker.last is None and tracker.normalization is None, "not reset"
    assert isinstance(TrackingCancelled("x"), TrackingError)
    again = tracker.feed(sphere_frame(2.0, rng), 2.0)  # usable afterwards: a fresh keyframe
    assert again.topology_changed and again.keyframe_id == 0
    assert again.vertex_ids.min() > first.vertex_ids.max(), "ids of abandoned or old keyframes reused"


def test_tracking_steps_between_keyframes_ignore_should_stop():
    rng = np.random.default_rng(1)
    tracker = make_tracker()
    tracker.feed(sphere_frame(0.0, rng), 0.0)
    mesh = tracker.feed(sphere_frame(0.03, rng), 0.03, should_stop=lambda: True)
    assert mesh is not None and not mesh.topology_changed


def test_out_of_gpu_memory_in_meshing_halves_the_batch_and_the_tracker_reports_it():
    rng = np.random.default_rng(2)
    tracker = make_tracker(chunk_size=4000)
    decoder = tracker.model.decoder
    forward = decoder.forward
    sizes = []

    def small_gpu(points, *args, **kwargs):
        sizes.append(points.shape[1])
        if points.shape[1] > 1000:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return forward(points, *args, **kwargs)

    reference = make_tracker(chunk_size=4000).feed(sphere_frame(0.0, np.random.default_rng(2)), 0.0)
    decoder.forward = small_gpu
    assert tracker.chunk_size == 4000
    mesh = tracker.feed(sphere_frame(0.0, rng), 0.0)
    assert max(sizes) == 4000 and MIN_CHUNK <= tracker.chunk_size <= 1000, sizes  # halved until it fits
    assert np.array_equal(mesh.faces, reference.faces), "the smaller batches changed the mesh"
    tracker.reset()
    sizes.clear()
    tracker.feed(sphere_frame(1.0, rng), 1.0)
    assert max(sizes) <= 1000, "the reduced size is kept after a reset"

    decoder.forward = lambda *a, **k: (_ for _ in ()).throw(
        torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)"))
    tracker.reset()
    with pytest.raises(torch.cuda.OutOfMemoryError):  # even MIN_CHUNK points fail: not a chunking problem
        tracker.feed(sphere_frame(2.0, rng), 2.0)
    assert tracker.chunk_size == MIN_CHUNK


def test_last_hold_says_why_no_new_mesh_came_even_before_the_first_mesh():
    rng = np.random.default_rng(3)
    tracker = make_tracker()
    assert tracker.feed(np.zeros((0, 3), np.float32), 0.0) is None
    assert "empty frame: 0 points" in tracker.last_hold
    assert tracker.feed(sphere_frame(0.1, rng), 0.1) is not None and tracker.last_hold is None
    held = tracker.feed(sphere_frame(0.1, rng), 0.1)
    assert held is not None and tracker.last_hold == "repeated stamp: frame ignored"
