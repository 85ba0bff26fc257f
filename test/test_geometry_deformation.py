"""Non-rigid registration of a mesh to partial clouds (the embedded deformation graph)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from occflow_ros.geometry import DeformationGraph, GeometryError

AXES = np.array([0.3, 0.15, 0.4])  # an upright ellipsoid, no symmetry to slide on


def surface(n: int, rng: np.random.Generator) -> np.ndarray:
    d = rng.normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return d * AXES


def seen(points: np.ndarray) -> np.ndarray:
    """The half a camera on the -y side sees."""
    return points[points[:, 1] < 0]


def bend(points: np.ndarray, amount: float) -> np.ndarray:
    """Bend the ellipsoid towards the camera, the more the higher: the top moves by ``amount``."""
    out = points.copy()
    out[:, 1] -= amount * ((points[:, 2] / AXES[2] + 1) / 2) ** 2
    return out


def test_the_graph_follows_a_bend_and_carries_the_unseen_back_with_the_seen_front():
    rng = np.random.default_rng(0)
    vertices = surface(2000, rng)
    graph = DeformationGraph(vertices, spacing=0.07)
    assert 50 < graph.num_nodes < 500
    back = vertices[:, 1] > 0
    with torch.inference_mode():  # the tracker calls it from inference mode
        for amount in np.linspace(0.0, 0.18, 13)[1:]:
            # other random samples of the surface than the vertices, seen from one side
            warped = graph.fit(seen(bend(surface(3000, rng), amount))).numpy()
    truth = bend(vertices, 0.18)
    err = np.linalg.norm(warped - truth, axis=1)
    still = np.linalg.norm(vertices - truth, axis=1)
    assert still.mean() > 0.05
    assert err.mean() < 0.5 * still.mean()
    assert err[back].mean() < 0.5 * still[back].mean(), "the unseen back follows the front"
    assert graph.last_pairs > 500


def test_a_rigid_motion_is_recovered_and_observed_points_map_back_to_the_keyframe():
    """A turning, sliding body: each frame's rigid motion comes from registering the keyframe's
    points (the anchor) to the frame's, and the graph keeps the vertices in place on the surface."""
    rng = np.random.default_rng(1)
    vertices = surface(2000, rng)
    graph = DeformationGraph(vertices, spacing=0.07, anchor=seen(surface(6000, rng)))

    def move(p, s):
        return Rotation.from_rotvec([0.0, 0.4 * s, 0.0]).apply(p) + np.array([0.1, -0.05, 0.0]) * s

    steps = np.linspace(0.0, 1.0, 11)[1:]
    for s in steps:
        warped = graph.fit(seen(move(surface(8000, rng), s))).numpy()
    truth = move(vertices, 1.0)
    still = np.linalg.norm(vertices - truth, axis=1).mean()
    err = np.linalg.norm(warped - truth, axis=1).mean()
    assert still > 0.1 and err < 0.15 * still  # measured 0.09 (ICP's pose alone: 0.11)
    assert graph.frames == len(steps)
    observed = seen(move(surface(500, rng), 1.0))
    back = graph.keyframe_positions(observed).numpy()
    expected = Rotation.from_rotvec([0.0, -0.4, 0.0]).apply(observed - np.array([0.1, -0.05, 0.0]))
    assert np.linalg.norm(back - expected, axis=1).mean() < 0.15 * still


def test_a_frame_far_from_the_mesh_keeps_the_last_fit():
    rng = np.random.default_rng(2)
    vertices = surface(1000, rng)
    graph = DeformationGraph(vertices, spacing=0.1, max_distance=0.02)
    first = graph.fit(seen(bend(surface(2000, rng), 0.01))).numpy()
    assert graph.last_pairs > 0
    again = graph.fit(seen(surface(2000, rng)) + np.array([5.0, 0.0, 0.0])).numpy()
    assert graph.last_pairs == 0
    np.testing.assert_array_equal(again, first)


@pytest.mark.parametrize("vertices, settings, message", [
    (np.zeros((0, 3)), {}, "vertices"),
    (np.array([[0.0, 0.0, np.nan]]), {}, "vertices"),
    (np.zeros((4, 2)), {}, "vertices"),
    (np.eye(3), {"spacing": 0.0}, "spacing"),
    (np.eye(3), {"rounds": 0}, "rounds"),
    (np.eye(3), {"anchor": np.zeros((0, 3))}, "anchor"),
    (np.eye(3), {"normals": np.ones((2, 3))}, "normals"),
    (np.eye(3), {"sliding": -1.0}, "sliding"),
])
def test_bad_input_is_refused_with_a_message(vertices, settings, message):
    with pytest.raises(GeometryError, match=message):
        DeformationGraph(vertices, **settings)
