"""Geometry room, meshing: MISE equals dense marching cubes for less work, meshes are right and clean."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from occflow_ros.geometry import (MeshError, MeshingError, Normalization, NormalizationError,
                                  clean_mesh, extract_mesh, extract_mesh_dense, is_watertight, logit,
                                  mesh_area, mesh_volume, simplify_mesh)
from occflow_ros.geometry import mise as mise_module
from occflow_ros.geometry.analytic import capsules_field, sphere_field, torus_field

# off-centre on purpose: no symmetry of the grid makes the comparison easier than it should be
SHAPES = {
    "sphere": sphere_field(center=(0.02, -0.01, 0.03), radius=0.35),
    "torus": torus_field(center=(0.01, 0.02, -0.015), major=0.3, minor=0.1),
    "capsules": capsules_field(),
}


@pytest.fixture(scope="module")
def dense_meshes():
    return {name: extract_mesh_dense(f, 0.0, 128, 1.1) for name, f in SHAPES.items()}


# ---- MISE ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(SHAPES))
def test_mise_gives_the_dense_mesh_with_far_fewer_queries(name, dense_meshes):
    mise = extract_mesh(SHAPES[name], threshold=0.0, resolution0=32, upsampling_steps=2, box_size=1.1)
    dense = dense_meshes[name]
    assert mise.resolution == dense.resolution == 128
    assert dense.n_queries == dense.dense_queries == 129 ** 3
    assert len(mise.faces) > 1000
    np.testing.assert_array_equal(mise.faces, dense.faces)
    np.testing.assert_allclose(mise.vertices, dense.vertices, rtol=0, atol=1e-6)
    ratio = mise.n_queries / mise.dense_queries
    print(f"{name}: MISE {mise.n_queries} queries vs dense {mise.dense_queries} ({ratio:.1%})")
    assert ratio < 0.40


def _same_mesh(a, b) -> bool:
    return (a.faces.shape == b.faces.shape and np.array_equal(a.faces, b.faces)
            and np.allclose(a.vertices, b.vertices, rtol=0, atol=1e-6))


def test_dilation_and_closure_each_recover_cells_that_plain_refinement_misses(monkeypatch):
    """On a coarse 8^3 grid, refining only straddling cells loses part of the capsules' surface;
    the 26-neighbour dilation alone, or the closure step alone, gets the dense mesh back."""
    field = SHAPES["capsules"]
    dense = extract_mesh_dense(field, 0.0, 32)
    dilate, close = mise_module._dilate26, mise_module._close

    def run(with_dilation, with_closure):
        monkeypatch.setattr(mise_module, "_dilate26", dilate if with_dilation else (lambda c: c))
        monkeypatch.setattr(mise_module, "_close", close if with_closure else (lambda *a: None))
        return extract_mesh(field, resolution0=8, upsampling_steps=2)

    assert not _same_mesh(run(False, False), dense)  # the case is a real one
    assert _same_mesh(run(True, False), dense)
    assert _same_mesh(run(False, True), dense)
    assert _same_mesh(run(True, True), dense)


def test_field_sees_float32_batches_no_larger_than_max_batch():
    seen = []
    base = SHAPES["sphere"]

    def field(points):
        seen.append((points.shape, points.dtype))
        return base(points)

    result = extract_mesh(field, resolution0=16, upsampling_steps=1, max_batch=1000)
    assert all(shape[1:] == (3,) and 0 < shape[0] <= 1000 and dtype == np.float32
               for shape, dtype in seen)
    assert sum(shape[0] for shape, _ in seen) == result.n_queries


def test_field_may_return_a_torch_tensor_or_a_column():
    import torch

    base = SHAPES["torus"]
    ref = extract_mesh(base, resolution0=16, upsampling_steps=1)
    as_tensor = extract_mesh(lambda p: torch.from_numpy(base(p)), resolution0=16, upsampling_steps=1)
    as_column = extract_mesh(lambda p: base(p)[:, None], resolution0=16, upsampling_steps=1)
    for other in (as_tensor, as_column):
        np.testing.assert_array_equal(other.faces, ref.faces)
        np.testing.assert_array_equal(other.vertices, ref.vertices)


def test_vertices_are_in_normalised_coordinates_on_the_surface():
    center, radius = np.array([0.1, -0.05, 0.02]), 0.3
    result = extract_mesh(sphere_field(center, radius), resolution0=16, upsampling_steps=2)
    assert result.vertices.dtype == np.float32 and result.faces.dtype == np.int64
    r = np.linalg.norm(result.vertices - center, axis=1)
    assert np.all(np.abs(r - radius) < 0.5 * 1.1 / 64)  # within half a final cell
    assert np.all(np.abs(result.vertices) <= 0.55)


def test_probability_threshold_through_logit_moves_the_surface():
    gain = 20.0  # logits = 20 * signed distance
    field = sphere_field(radius=0.35, gain=gain)
    assert logit(0.5) == 0.0
    r50 = np.linalg.norm(extract_mesh(field, threshold=logit(0.5)).vertices, axis=1).mean()
    r90 = np.linalg.norm(extract_mesh(field, threshold=logit(0.9)).vertices, axis=1).mean()
    assert r50 == pytest.approx(0.35, abs=1e-3)
    assert r90 == pytest.approx(0.35 - logit(0.9) / gain, abs=1e-3)


@pytest.mark.parametrize("p", [0.0, 1.0, -0.1, float("nan")])
def test_logit_rejects_probabilities_outside_the_open_interval(p):
    with pytest.raises(MeshingError):
        logit(p)


def test_a_field_that_is_outside_everywhere_gives_an_empty_mesh_after_the_coarse_grid():
    result = extract_mesh(lambda p: np.full(len(p), -1.0, np.float32), resolution0=32,
                          upsampling_steps=2)
    assert result.vertices.shape == (0, 3) and result.vertices.dtype == np.float32
    assert result.faces.shape == (0, 3) and result.faces.dtype == np.int64
    assert result.is_empty
    assert result.n_queries == 33 ** 3
    assert mesh_area(result.vertices, result.faces) == 0.0


def test_a_field_that_is_inside_everywhere_gives_the_closed_box_after_the_coarse_grid():
    result = extract_mesh(lambda p: np.full(len(p), 1.0, np.float32), resolution0=8,
                          upsampling_steps=2)
    assert result.n_queries == 9 ** 3  # no surface inside the box: nothing to refine
    assert is_watertight(result.vertices, result.faces)
    side = 1.1 + 2 * 0.5 * 1.1 / 32  # capped half a cell beyond each face (threshold halfway)
    # marching cubes bevels the cube's edges and corners by half a cell
    assert mesh_volume(result.vertices, result.faces) == pytest.approx(side ** 3, rel=3e-3)


@pytest.mark.parametrize("field, match", [
    (lambda p: np.zeros(len(p) + 1), "shape"),
    (lambda p: np.full(len(p), np.nan), "non-finite"),
])
def test_a_misbehaving_field_raises_meshing_error(field, match):
    with pytest.raises(MeshingError, match=match):
        extract_mesh(field, resolution0=4, upsampling_steps=1)


@pytest.mark.parametrize("kwargs", [
    {"resolution0": 0}, {"resolution0": 2.5}, {"upsampling_steps": -1}, {"box_size": 0.0},
    {"box_size": float("inf")}, {"max_batch": 0}, {"threshold": float("nan")},
])
def test_invalid_grid_parameters_raise_meshing_error(kwargs):
    with pytest.raises(MeshingError):
        extract_mesh(SHAPES["sphere"], **kwargs)


# ---- mesh quality ----------------------------------------------------------------------------------
def test_sphere_at_resolution_128_has_area_and_volume_within_one_percent():
    r = 0.4
    result = extract_mesh(sphere_field(center=(0.013, 0.0, -0.021), radius=r), resolution0=32,
                          upsampling_steps=2)
    area, volume = mesh_area(result.vertices, result.faces), mesh_volume(result.vertices, result.faces)
    assert area == pytest.approx(4 * math.pi * r ** 2, rel=0.01)
    assert volume == pytest.approx(4 / 3 * math.pi * r ** 3, rel=0.01)


@pytest.mark.parametrize("name", list(SHAPES))
def test_faces_point_outward_and_the_mesh_is_watertight(name, dense_meshes):
    result = extract_mesh(SHAPES[name])
    v, f = result.vertices, result.faces
    assert mesh_volume(v, f) > 0
    assert is_watertight(v, f)
    # every face normal points to where the field is lower (outside)
    a, b, c = (v[f[:, i]].astype(np.float64) for i in range(3))
    normal = np.cross(b - a, c - a)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True) + 1e-30
    centroid = (a + b + c) / 3
    step = 1e-3
    outside = SHAPES[name]((centroid + step * normal).astype(np.float32))
    inside = SHAPES[name]((centroid - step * normal).astype(np.float32))
    assert np.mean(outside < inside) > 0.999


# ---- mesh utilities --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sphere_mesh():
    result = extract_mesh(sphere_field(radius=0.4))
    return result.vertices, result.faces


@pytest.mark.parametrize("target", [3000, 800])
def test_simplify_to_a_vertex_target_stays_watertight_and_keeps_the_volume(sphere_mesh, target):
    v, f = sphere_mesh
    sv, sf = simplify_mesh(v, f, target_vertices=target)
    assert abs(len(sv) - target) <= 0.05 * target
    assert is_watertight(sv, sf)
    assert len(sf) == pytest.approx(2 * len(sv), abs=8)  # closed genus-0: F = 2V - 4
    assert mesh_volume(sv, sf) == pytest.approx(mesh_volume(v, f), rel=0.03)
    assert sv.dtype == np.float32 and sf.dtype == np.int64


def test_simplify_to_a_face_target(sphere_mesh):
    sv, sf = simplify_mesh(*sphere_mesh, target_faces=4000)
    assert abs(len(sf) - 4000) <= 200
    assert is_watertight(sv, sf)


def test_simplify_needs_exactly_one_sensible_target(sphere_mesh):
    for kwargs in ({}, {"target_vertices": 100, "target_faces": 200}, {"target_vertices": 2}):
        with pytest.raises(MeshError):
            simplify_mesh(*sphere_mesh, **kwargs)


def test_clean_mesh_merges_duplicates_and_drops_degenerate_and_repeated_triangles(sphere_mesh):
    v, f = sphere_mesh
    soup_v = v[f].reshape(-1, 3)  # every face with its own three vertices: no edge is shared
    soup_f = np.arange(len(soup_v)).reshape(-1, 3)
    assert not is_watertight(soup_v, soup_f)
    extra_f = np.vstack([soup_f, soup_f[:5], [[0, 0, 1]]])  # 5 repeated faces and a degenerate one
    cv, cf = clean_mesh(soup_v, extra_f)
    assert len(cv) == len(v) and len(cf) == len(f)
    assert is_watertight(cv, cf)
    assert mesh_volume(cv, cf) == pytest.approx(mesh_volume(v, f), rel=1e-9)


def test_clean_mesh_can_keep_only_the_largest_component(sphere_mesh):
    v, f = sphere_mesh
    small = extract_mesh(sphere_field(center=(0.3, 0.3, 0.3), radius=0.1), resolution0=16,
                         upsampling_steps=1)
    both_v = np.vstack([v, small.vertices])
    both_f = np.vstack([f, small.faces + len(v)])
    lone = np.array([[9.0, 9.0, 9.0]], np.float32)  # an unreferenced vertex
    cv, cf = clean_mesh(np.vstack([both_v, lone]), both_f, largest_component_only=True)
    assert len(cv) == len(v) and len(cf) == len(f)
    assert mesh_volume(cv, cf) == pytest.approx(mesh_volume(v, f), rel=1e-9)
    kv, kf = clean_mesh(np.vstack([both_v, lone]), both_f)
    assert len(kv) == len(both_v) and len(kf) == len(both_f)  # only the lone vertex went


def test_volume_is_signed_by_orientation_and_holes_break_watertightness(sphere_mesh):
    v, f = sphere_mesh
    assert mesh_volume(v, f[:, ::-1]) == pytest.approx(-mesh_volume(v, f))
    assert not is_watertight(v, f[1:])
    assert not is_watertight(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int64))


def test_mesh_utilities_reject_malformed_arrays():
    with pytest.raises(MeshError):
        mesh_area(np.zeros((3, 2)), np.array([[0, 1, 2]]))
    with pytest.raises(MeshError):
        mesh_volume(np.zeros((3, 3)), np.array([[0, 1, 3]]))
    with pytest.raises(MeshError):
        clean_mesh(np.zeros((3, 3)), np.array([[0.0, 1.0, 2.0]]))


# ---- Normalization ---------------------------------------------------------------------------------
def test_normalization_round_trip_keeps_dtype():
    norm = Normalization(loc=[0.1, -0.2, 1.5], scale=1.8)
    rng = np.random.default_rng(0)
    p32 = rng.uniform(-0.5, 0.5, (4, 7, 3)).astype(np.float32)
    m32 = norm.to_metres(p32)
    assert m32.dtype == np.float32 and m32.shape == p32.shape
    np.testing.assert_allclose(m32, 0.1 * np.array([1, -2, 15]) + 1.8 * p32, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(norm.to_normalized(m32), p32, atol=1e-6)
    p64 = p32.astype(np.float64)
    assert norm.to_metres(p64).dtype == np.float64
    np.testing.assert_allclose(norm.to_normalized(norm.to_metres(p64)), p64, atol=1e-12)


def test_normalization_dict_round_trip_is_plain_json():
    norm = Normalization(np.array([0.0229, 0.2983, -0.077], np.float16), np.float64(1.800786))
    data = json.loads(json.dumps(norm.as_dict()))
    assert Normalization.from_dict(data) == norm
    assert norm.loc.dtype == np.float64 and isinstance(norm.scale, float)


@pytest.mark.parametrize("loc, scale", [
    ([0, 0, float("nan")], 1.0), ([0, 0], 1.0), ([0, 0, 0], 0.0), ([0, 0, 0], -1.0),
    ([0, 0, 0], float("inf")), ("abc", 1.0), ([0, 0, 0], "x"),
])
def test_normalization_rejects_invalid_values(loc, scale):
    with pytest.raises(NormalizationError):
        Normalization(loc, scale)


def test_normalization_is_immutable_and_validates_dicts_and_points():
    norm = Normalization([0, 0, 0], 2.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        norm.scale = 3.0
    with pytest.raises(ValueError):
        norm.loc[0] = 1.0
    with pytest.raises(NormalizationError, match="scale"):
        Normalization.from_dict({"loc": [0, 0, 0]})
    with pytest.raises(NormalizationError):
        norm.to_metres(np.zeros((5, 2)))


def test_normalization_maps_a_real_dfaust_frame_to_a_human_in_metres(dfaust_sequence):
    frames = sorted(dfaust_sequence.glob("*.npz"))
    f0, f5 = np.load(frames[0]), np.load(frames[5])
    n0 = Normalization(f0["loc"], f0["scale"])
    n5 = Normalization(f5["loc"], f5["scale"])
    body = n0.to_metres(f0["points"].astype(np.float32))
    height = body[:, 1].max() - body[:, 1].min()  # y is up in D-FAUST
    assert 1.4 < height < 2.0
    # frame 5 in frame 0's normalised space, the formula of the paper's evaluation
    p5 = f5["points"].astype(np.float64)
    expected = (f5["loc"].astype(np.float64) + f5["scale"] * p5 - f0["loc"].astype(np.float64)) / f0["scale"]
    np.testing.assert_allclose(n0.to_normalized(n5.to_metres(p5)), expected, atol=1e-9)


def test_a_surface_leaving_the_box_is_capped_into_a_closed_mesh():
    """An object sticking out of the meshed cube still gives a watertight mesh (capped at the box)."""
    field = sphere_field(center=(0.0, 0.0, 0.3), radius=0.4)  # reaches z = 0.7 > 0.55
    result = extract_mesh(field, resolution0=16, upsampling_steps=2)
    assert is_watertight(result.vertices, result.faces)
    assert mesh_volume(result.vertices, result.faces) > 0
    top = result.vertices[:, 2].max()
    assert 0.55 <= top <= 0.55 + 1.1 / 64 + 1e-6  # the cap lies within one cell beyond the box
    dense = extract_mesh_dense(field, resolution=64)
    assert np.array_equal(dense.faces, result.faces)
