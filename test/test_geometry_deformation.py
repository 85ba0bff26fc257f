"""Non-rigid registration of a mesh to partial clouds (the embedded deformation graph, solved by
Levenberg-Marquardt), its bounded rigid stage, and the visibility of a mesh's vertices."""

from __future__ import annotations

import mcubes
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from occflow_ros.geometry import DeformationGraph, GeometryError
from occflow_ros.geometry import MeshScene

AXES = np.array([0.3, 0.15, 0.4])  # an upright ellipsoid, no symmetry to slide on
CAMERA = np.array([0.0, -2.0, 0.0])  # on the -y side, looking at the ellipsoid


def ellipsoid_mesh(resolution: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """The ellipsoid's surface as a marching-cubes mesh (outward normals, ~2000 vertices)."""
    xs = np.linspace(-0.5, 0.5, resolution)
    x, y, z = np.meshgrid(xs, xs, xs, indexing="ij")
    inside = 1.0 - ((x / AXES[0]) ** 2 + (y / AXES[1]) ** 2 + (z / AXES[2]) ** 2)
    v, f = mcubes.marching_cubes(inside, 0.0)
    return v / (resolution - 1) - 0.5, f.astype(np.int64)


def surface(n: int, rng: np.random.Generator) -> np.ndarray:
    d = rng.normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return d * AXES


def seen(points: np.ndarray) -> np.ndarray:
    """The half the camera on the -y side sees."""
    return points[points[:, 1] < 0]


def bend(points: np.ndarray, amount: float) -> np.ndarray:
    """Bend the ellipsoid towards the camera, the more the higher: the top moves by ``amount``."""
    out = points.copy()
    out[:, 1] -= amount * ((points[:, 2] / AXES[2] + 1) / 2) ** 2
    return out


def move(points: np.ndarray, s: float) -> np.ndarray:
    """Turn about the viewing axis by 0.4 s rad and slide by (0.1, -0.05, 0) s."""
    return Rotation.from_rotvec([0.0, 0.4 * s, 0.0]).apply(points) + np.array([0.1, -0.05, 0]) * s


def test_the_graph_follows_a_bend_and_carries_the_unseen_back_with_the_seen_front():
    rng = np.random.default_rng(0)
    vertices, faces = ellipsoid_mesh()
    graph = DeformationGraph(vertices, faces, spacing=0.07)
    assert 50 < graph.num_nodes < 500 and graph.oriented
    back = vertices[:, 1] > 0
    for amount in np.linspace(0.0, 0.18, 13)[1:]:
        # other random samples of the surface than the vertices, seen from one side
        warped = graph.fit(seen(bend(surface(1000, rng), amount)), camera=CAMERA)
    truth = bend(vertices, 0.18)
    err = np.linalg.norm(warped - truth, axis=1)
    still = np.linalg.norm(vertices - truth, axis=1)
    assert still.mean() > 0.05
    assert err.mean() < 0.5 * still.mean()  # measured 0.42 (0.41 with 4 nodes per vertex)
    # the unseen back follows through the as-rigid-as-possible term alone: measured 0.51 of the
    # still error with 3 nodes per vertex (the default), 0.48 with 4 (which scored no better on the
    # held-out windows, docs/tracking.md "Cost"); a back that stays put scores 1
    assert err[back].mean() < 0.55 * still[back].mean(), "the unseen back follows the front"
    assert graph.last_pairs > 400


@pytest.mark.parametrize("sliding, bound", [(0.1, 0.25), (0.0, 0.1)])
def test_a_turning_sliding_body_is_followed_and_observed_points_map_back_to_the_keyframe(sliding,
                                                                                          bound):
    """Turning about the viewing axis slides the seen surface along itself: point-to-plane pairs
    with the mesh's normals see it at the silhouette and through the curvature, and the rigid stage
    takes the whole body along. The point-to-point share (``sliding``, the tracker's default 0.1)
    holds a sliding surface back: measured 0.22 of the still mesh's error with it (0.16 before the
    coverage pairs, whose own share holds back too), 0.02 without."""
    rng = np.random.default_rng(1)
    vertices, faces = ellipsoid_mesh()
    graph = DeformationGraph(vertices, faces, spacing=0.07, sliding=sliding)
    steps = np.linspace(0.0, 1.0, 11)[1:]
    for s in steps:
        warped = graph.fit(seen(move(surface(1000, rng), s)), camera=CAMERA)
    truth = move(vertices, 1.0)
    still = np.linalg.norm(vertices - truth, axis=1).mean()
    err = np.linalg.norm(warped - truth, axis=1).mean()
    assert still > 0.1 and err < bound * still
    assert graph.frames == len(steps)
    observed = seen(move(surface(500, rng), 1.0))
    back = graph.keyframe_positions(observed)
    expected = Rotation.from_rotvec([0.0, -0.4, 0.0]).apply(observed - np.array([0.1, -0.05, 0]))
    assert np.linalg.norm(back - expected, axis=1).mean() < bound * still


def test_points_given_at_the_keyframe_are_carried_to_now_as_the_body_moved():
    """warp_points moves keyframe-time points (the hidden back included) as the fit moved the
    body, and undoes keyframe_positions: what the tracker's keyframes read of earlier frames."""
    rng = np.random.default_rng(2)
    vertices, faces = ellipsoid_mesh()
    graph = DeformationGraph(vertices, faces, spacing=0.07)
    for s in np.linspace(0.0, 1.0, 11)[1:]:
        graph.fit(seen(move(surface(1000, rng), s)), camera=CAMERA)
    back_side = surface(2000, rng)
    back_side = back_side[back_side[:, 1] > 0.05]  # never seen
    truth = move(back_side, 1.0)
    still = np.linalg.norm(back_side - truth, axis=1).mean()
    err = np.linalg.norm(graph.warp_points(back_side) - truth, axis=1).mean()
    assert still > 0.1 and err < 0.3 * still
    observed = seen(move(surface(500, rng), 1.0))
    round_trip = graph.warp_points(graph.keyframe_positions(observed))
    gap = np.linalg.norm(round_trip - observed, axis=1)  # the nodes' blend is the nearest
    assert np.median(gap) < 1e-4 and gap.max() < 0.01   # vertex's, now or at the keyframe


def test_the_steps_end_when_a_frame_has_converged_and_pairs_can_be_kept_for_two_steps(
        monkeypatch):
    """min_decrease (default 0.01) ends a frame's steps once one lowers the energy by under 1 %:
    fewer steps than always taking all four (measured 46 against 48 on this bend), and the bend
    followed as closely. pair_every=2 renews the nearest vertices (a k-d tree over the mesh) only
    every other step; the second step, on the first one's pairs, then lowers the energy little, so
    a frame takes 2 steps and one tree: measured 24 steps, and 0.40 of the still mesh's error
    against 0.34."""
    import occflow_ros.geometry.deformation as deformation

    trees = []

    class CountingTree(deformation.cKDTree):
        def __init__(self, *args, **kwargs):
            trees.append(1)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(deformation, "cKDTree", CountingTree)
    vertices, faces = ellipsoid_mesh()
    truth = bend(vertices, 0.18)
    still = np.linalg.norm(vertices - truth, axis=1).mean()
    result = {}
    for name, settings in {"all steps": dict(min_decrease=0.0), "default": {},
                           "pairs kept": dict(pair_every=2)}.items():
        rng = np.random.default_rng(0)
        graph = DeformationGraph(vertices, faces, spacing=0.07, **settings)
        trees.clear()
        steps = 0
        for amount in np.linspace(0.0, 0.18, 13)[1:]:
            warped = graph.fit(seen(bend(surface(1000, rng), amount)), camera=CAMERA)
            steps += graph.last_steps
        result[name] = (np.linalg.norm(warped - truth, axis=1).mean() / still, steps, len(trees))
    full, default, kept = result["all steps"], result["default"], result["pairs kept"]
    assert full[1] == 12 * 4 and default[1] < full[1] and default[0] < 1.05 * full[0]
    assert kept[1] <= 0.6 * full[1] and kept[2] < 0.75 * full[2] and kept[0] < 1.25 * full[0]
    assert max(full[0], default[0], kept[0]) < 0.45


def test_the_coverage_term_pairs_the_facing_vertices_no_point_chose_with_their_nearest_point():
    """The other way round: each camera-facing vertex that no observed point chose gets its nearest
    observed point within max_distance; vertices facing away, chosen ones, and ones with no point
    near are left out; the term moves the fit."""
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(3)
    vertices, faces = ellipsoid_mesh()
    graph = DeformationGraph(vertices, faces, spacing=0.07)
    assert graph.coverage == 0.3  # on by default
    points = seen(surface(300, rng))  # sparse: most vertices are nobody's nearest
    x, normals, dist, j = graph._query(graph.R, graph.t, points, CAMERA)
    chosen, _, _, _ = graph._pairs(dist, j, points, graph.max_distance)
    cid, target = graph._coverage_pairs(cKDTree(points), x, normals, points, CAMERA, chosen)
    facing = ((CAMERA - x) * normals).sum(1) > 0
    gap, nearest = cKDTree(points).query(x)
    expected = np.flatnonzero(facing & (gap <= graph.max_distance)
                              & ~np.isin(np.arange(len(x)), chosen))
    assert 100 < len(cid) and np.array_equal(cid, expected)
    np.testing.assert_array_equal(target, points[nearest[cid]])
    assert not np.isin(cid, chosen).any() and facing[cid].all()
    frame = seen(bend(surface(1000, rng), 0.05))
    one_way = DeformationGraph(vertices, faces, spacing=0.07, coverage=0.0)
    both = DeformationGraph(vertices, faces, spacing=0.07)
    a, b = one_way.fit(frame, camera=CAMERA), both.fit(frame, camera=CAMERA)
    assert not np.allclose(a, b)  # the term takes part
    assert np.linalg.norm(b - bend(vertices, 0.05), axis=1).mean() < 0.02


def test_the_rigid_stage_is_bounded_by_what_the_body_can_do_in_one_frame():
    """The frame shows the body turned by 90 degrees: a rigid stage allowed 0.1 rad per frame does
    not take it, and the mesh does not turn by more than the bound."""
    rng = np.random.default_rng(2)
    vertices, faces = ellipsoid_mesh()
    graph = DeformationGraph(vertices, faces, spacing=0.07)
    turned = Rotation.from_rotvec([0.0, np.pi / 2, 0.0])
    warped = graph.fit(seen(turned.apply(surface(2000, rng))), camera=CAMERA, max_rotation=0.1,
                       max_translation=0.02)
    assert not graph.last_rigid_accepted
    # what moved it is the non-rigid stage, locally: its best rigid fit is far from the 90 degrees
    centred = vertices - vertices.mean(0)
    u, _, vt = np.linalg.svd(centred.T @ (warped - warped.mean(0)))
    angle = np.linalg.norm(Rotation.from_matrix((u @ vt).T).as_rotvec())
    assert angle < 0.3
    # allowed to, it takes a turn within the bound
    graph = DeformationGraph(vertices, faces, spacing=0.07)
    small = Rotation.from_rotvec([0.0, 0.1, 0.0])
    graph.fit(seen(small.apply(surface(2000, rng))), camera=CAMERA, max_rotation=0.15)
    assert graph.last_rigid_accepted
    assert abs(Rotation.from_matrix(graph.R[0]).as_rotvec()[1] - 0.1) < 0.03


def test_the_rigid_stage_never_keeps_a_pose_that_explains_the_frame_worse_than_its_start():
    """On a frame the mesh already explains (the keyframe's own surface), whatever the rigid stage
    finds must not be worse than leaving the mesh where it is."""
    rng = np.random.default_rng(3)
    vertices, faces = ellipsoid_mesh()
    graph = DeformationGraph(vertices, faces, spacing=0.07, iterations=1)
    points = seen(surface(2000, rng))
    before = graph.explained(points, camera=CAMERA)
    for _ in range(5):
        graph.fit(points, camera=CAMERA, max_rotation=3.0, max_translation=1.0)
        assert graph.explained(points, camera=CAMERA) <= before + 1e-3


def test_the_rigid_stage_runs_only_when_the_frame_is_explained_worse_than_the_last_one():
    """A frame that the last fit, carried on, explains as well as that fit explained its own frame
    skips the rigid stage (it could not clear its margin: the time goes to the non-rigid steps);
    a frame where the body jumped runs it, and the mesh goes with the body."""
    rng = np.random.default_rng(6)
    vertices, faces = ellipsoid_mesh()
    graph = DeformationGraph(vertices, faces, spacing=0.07)
    graph.fit(seen(surface(2000, rng)), camera=CAMERA)
    assert graph.last_rigid_ran  # the first fit has no last one to compare with
    graph.fit(seen(surface(2000, rng)), camera=CAMERA)
    assert not graph.last_rigid_ran and not graph.last_rigid_accepted
    turned = Rotation.from_rotvec([0.0, 0.1, 0.0])
    graph.fit(seen(turned.apply(surface(2000, rng))), camera=CAMERA, max_rotation=0.15)
    assert graph.last_rigid_ran and graph.last_rigid_accepted
    assert abs(Rotation.from_matrix(graph.R[0]).as_rotvec()[1] - 0.1) < 0.03
    # with the gate off the stage runs on every frame
    graph = DeformationGraph(vertices, faces, spacing=0.07)
    graph.rigid_gate = 0.0
    for _ in range(2):
        graph.fit(seen(surface(2000, rng)), camera=CAMERA)
        assert graph.last_rigid_ran


def test_revert_restores_the_state_before_the_last_fit():
    rng = np.random.default_rng(4)
    vertices, faces = ellipsoid_mesh()
    graph = DeformationGraph(vertices, faces, spacing=0.07, momentum=0.8)
    first = graph.fit(seen(move(surface(1000, rng), 0.1)), camera=CAMERA, dt=1.0).copy()
    second = graph.fit(seen(move(surface(1000, rng), 0.2)), camera=CAMERA, dt=1.0)
    assert np.abs(second - first).max() > 1e-3
    np.testing.assert_array_equal(graph.revert(), first)
    np.testing.assert_array_equal(graph.warp(), first)


def test_a_frame_far_from_the_mesh_keeps_the_last_fit():
    rng = np.random.default_rng(5)
    vertices, faces = ellipsoid_mesh(24)
    graph = DeformationGraph(vertices, faces, spacing=0.1, max_distance=0.02)
    first = graph.fit(seen(bend(surface(2000, rng), 0.01)), camera=CAMERA).copy()
    assert graph.last_pairs > 0
    again = graph.fit(seen(surface(2000, rng)) + np.array([5.0, 0.0, 0.0]), camera=CAMERA)
    assert graph.last_pairs == 0
    np.testing.assert_array_equal(again, first)


def test_visible_vertices_are_the_camera_facing_ones_not_hidden_behind_nearer_surface():
    vertices, faces = ellipsoid_mesh(24)
    at = vertices + np.array([0.0, 0.0, 2.0])  # the camera at the origin looks along +z
    seen_mask = np.zeros(len(at), bool)
    seen_mask[MeshScene(at, faces).visible()] = True
    assert seen_mask[at[:, 2] < 2.0 - 0.1].all() and not seen_mask[at[:, 2] > 2.0 + 0.05].any()
    # a second ellipsoid right behind the first is hidden where the first covers it
    behind = at + np.array([0.0, 0.0, 1.0])
    both = np.concatenate([at, behind])
    mask = np.zeros(len(both), bool)
    mask[MeshScene(both, np.concatenate([faces, faces + len(at)])).visible()] = True
    covered = (np.abs(behind[:, 0]) < 0.2) & (np.abs(behind[:, 1]) < 0.1)
    assert not mask[len(at):][covered].any()
    assert mask[:len(at)].sum() == seen_mask.sum()


def test_a_bulky_mesh_gets_at_most_max_nodes_and_is_still_followed():
    """A ball filling the cube would get ~560 nodes at the default spacing (a solve ~10x dearer than
    a person's ~120); the cap widens the spacing instead, and the graph still follows a turn."""
    xs = np.linspace(-0.5, 0.5, 48)
    x, y, z = np.meshgrid(xs, xs, xs, indexing="ij")
    v, f = mcubes.marching_cubes(0.4 - np.sqrt(x ** 2 + y ** 2 + z ** 2 + 0.5 * x * y), 0.0)
    v = v / 47 - 0.5
    assert DeformationGraph(v, f, max_nodes=100_000).num_nodes > 400
    graph = DeformationGraph(v, f, max_nodes=150)
    assert 50 < graph.num_nodes <= 150 and graph.spacing > 0.07
    full = DeformationGraph(*ellipsoid_mesh(), max_nodes=100_000)
    small = DeformationGraph(*ellipsoid_mesh(), max_nodes=full.num_nodes)  # within the cap: as is
    assert small.spacing == 0.07 and small.num_nodes == full.num_nodes

    target = v + np.array([0.03, -0.02, 0.0])  # the ball moves and its top leans over
    target[:, 0] += 0.08 * np.clip(v[:, 2], 0.0, None)

    def error(g: DeformationGraph) -> float:
        rng = np.random.default_rng(3)
        for _ in range(3):
            g.fit(target[rng.choice(len(v), 1500, replace=False)])
        return float(np.linalg.norm(g.warp() - target, axis=1).mean())

    still = float(np.linalg.norm(v - target, axis=1).mean())
    capped, uncapped = error(graph), error(DeformationGraph(v, f, max_nodes=100_000))
    assert capped < 0.6 * still and capped < 1.25 * uncapped, (capped, uncapped, still)


def test_the_fit_pairs_with_a_voxel_subsample_of_the_vertices_and_moves_all_of_them():
    """``fit_vertices`` caps the vertices the data terms hold (each term's cost goes with them); the
    whole mesh is still moved, and a bend is followed about as closely as with every vertex."""
    vertices, faces = ellipsoid_mesh()
    assert len(vertices) > 1500

    def bend_error(graph: DeformationGraph) -> float:
        rng = np.random.default_rng(0)
        for amount in np.linspace(0.0, 0.18, 13)[1:]:
            warped = graph.fit(seen(bend(surface(1000, rng), amount)), camera=CAMERA)
        assert warped.shape == vertices.shape
        return float(np.linalg.norm(warped - bend(vertices, 0.18), axis=1).mean())

    sub = DeformationGraph(vertices, faces, fit_vertices=500)
    assert 250 < len(sub.fit_ids) <= 500
    assert len(np.unique(sub.fit_ids)) == len(sub.fit_ids)
    full = DeformationGraph(vertices, faces, fit_vertices=0)
    assert len(full.fit_ids) == len(vertices)
    assert len(DeformationGraph(vertices, faces, fit_vertices=10 * len(vertices)).fit_ids) == len(
        vertices)
    still = float(np.linalg.norm(vertices - bend(vertices, 0.18), axis=1).mean())
    e_sub, e_full = bend_error(sub), bend_error(full)
    assert e_sub < 0.5 * still and e_sub < 1.2 * e_full, (e_sub, e_full, still)


def sphere_mesh(bump: np.ndarray | None = None, resolution: int = 40):
    """A ball of radius 0.3 (with a bump towards ``bump``, see ``bumped``) as a marching-cubes mesh."""
    xs = np.linspace(-0.5, 0.5, resolution)
    p = np.stack(np.meshgrid(xs, xs, xs, indexing="ij"), -1)
    rho = np.linalg.norm(p, axis=-1)
    u = p / np.maximum(rho, 1e-9)[..., None]
    radius = 0.3 * (1 + 0.12 * np.exp(8.0 * (u @ bump - 1))) if bump is not None else 0.3
    v, f = mcubes.marching_cubes(radius - rho, 0.0)
    return v / (resolution - 1) - 0.5, f.astype(np.int64)


def bumped(bump: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n random points of the ball whose surface bulges by up to 12 % towards ``bump``: the
    material moves only along the radius when the bump travels."""
    d = rng.normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return d * 0.3 * (1 + 0.12 * np.exp(8.0 * (d @ bump - 1)))[:, None]


def test_a_turn_the_data_cannot_see_is_measured_as_such():
    """A ball seen from one side pins no turn about its centre (all unseen); a box seen across
    a corner pins every turn (almost none unseen)."""
    rng = np.random.default_rng(2)
    ball = DeformationGraph(*sphere_mesh())
    d = rng.normal(size=(1500, 3))
    ball.fit(seen(0.3 * d / np.linalg.norm(d, axis=1, keepdims=True)), camera=CAMERA)
    np.testing.assert_allclose(np.linalg.eigvalsh(ball._unseen_turn), 1.0, atol=1e-3)

    half = np.array([0.25, 0.12, 0.35])
    xs = np.linspace(-0.5, 0.5, 40)
    g = np.stack(np.meshgrid(xs, xs, xs, indexing="ij"), -1)
    v, f = mcubes.marching_cubes((half - np.abs(g)).min(-1), 0.0)
    box = DeformationGraph(v / 39 - 0.5, f.astype(np.int64))
    camera = np.array([-1.2, -1.6, 0.3])
    points = rng.uniform(-1, 1, size=(6000, 3)) * half
    face = rng.integers(0, 3, len(points))
    points[np.arange(len(points)), face] = np.sign(points[np.arange(len(points)), face]) * half[face]
    normal = np.zeros_like(points)
    normal[np.arange(len(points)), face] = np.sign(points[np.arange(len(points)), face])
    box.fit(points[((camera - points) * normal).sum(1) > 0], camera=camera)
    assert np.abs(np.linalg.eigvalsh(box._unseen_turn)).max() < 0.1  # measured 0.04


def test_momentum_does_not_continue_a_turn_the_data_cannot_see(monkeypatch):
    """A ball whose bump travels over it for 10 frames and then stays: the material only moves
    along the radius, but the fit follows the bump a little each frame, which is a turn of the
    whole ball. Continued by momentum frame after frame, that turn grows (the breathing blobs of
    the held-out windows turned 38-52 degrees in 1 s where the truth turned 17); momentum now
    continues only the turns the data pin. Measured: 2.2 degrees at the end, 7.8 when every turn
    is continued."""
    from occflow_ros.geometry import best_rigid_motion
    from occflow_ros.geometry import deformation

    start = np.array([0.0, -1.0, 0.3]) / np.hypot(1.0, 0.3)
    vertices, faces = sphere_mesh(bump=start)

    def turned_degrees() -> float:
        rng = np.random.default_rng(0)
        graph = DeformationGraph(vertices, faces, momentum=0.8)
        for k in range(20):
            bump = Rotation.from_rotvec([0.0, 0.0, 0.08 * min(k, 10)]).apply(start)
            graph.fit(seen(bumped(bump, 1500, rng)), camera=CAMERA, dt=1 / 30)
        R, _ = best_rigid_motion(graph.vertices, graph.warped)
        return float(np.degrees(np.linalg.norm(Rotation.from_matrix(R).as_rotvec())))

    assert turned_degrees() < 4.0
    monkeypatch.setattr(deformation, "OBSERVABLE_TURN", (-1.0, -0.5))  # every turn seen
    assert turned_degrees() > 6.0


@pytest.mark.parametrize("vertices, settings, message", [
    (np.zeros((0, 3)), {}, "vertices"),
    (np.array([[0.0, 0.0, np.nan]]), {}, "vertices"),
    (np.zeros((4, 2)), {}, "vertices"),
    (np.eye(3), {"spacing": 0.0}, "spacing"),
    (np.eye(3), {"iterations": 0}, "iterations"),
    (np.eye(3), {"momentum": 2.0}, "momentum"),
    (np.eye(3), {"normals": np.ones((2, 3))}, "normals"),
    (np.eye(3), {"sliding": -1.0}, "sliding"),
    (np.eye(3), {"faces": np.array([[0, 1, 7]])}, "faces"),
    (np.eye(3), {"max_nodes": 0}, "max_nodes"),
    (np.eye(3), {"fit_vertices": -1}, "fit_vertices"),
])
def test_bad_input_is_refused_with_a_message(vertices, settings, message):
    with pytest.raises(GeometryError, match=message):
        DeformationGraph(vertices, **settings)
