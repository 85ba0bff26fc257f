"""Metrics with the paper's definitions, and scoring a tracker on windows with ground truth."""

from __future__ import annotations

import numpy as np
import pytest

from analytic_models import sphere_model
from occflow_ros.evaluation.evaluate import evaluate_records, summarize
from occflow_ros.evaluation.metrics import (
    chamfer_l1,
    correspondence_l2,
    mesh_iou,
    nearest_indices,
    nearest_neighbour_tracks,
    sample_surface,
)
from occflow_ros.geometry import extract_mesh
from occflow_ros.geometry.analytic import sphere_field
from occflow_ros.model import Checkpoint
from occflow_ros.tracking import DeformationConfig, MeshingConfig, TrackerConfig
from sphere_records import sphere_record


def unit_sphere_mesh(radius=0.4):
    mesh = extract_mesh(sphere_field(radius=radius), resolution0=16, upsampling_steps=2)
    return mesh.vertices, mesh.faces


def test_chamfer_l1_is_zero_for_equal_sets_and_the_offset_for_shifted_ones():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 3))
    assert chamfer_l1(a, a) == 0.0
    # two parallel planes of points 0.1 apart: every nearest distance is 0.1
    grid = np.stack(np.meshgrid(np.arange(20), np.arange(20), [0.0]), -1).reshape(-1, 3) * 1.0
    assert chamfer_l1(grid, grid + [0, 0, 0.1]) == pytest.approx(0.1)
    assert chamfer_l1(np.zeros((0, 3)), a) == float("inf")


def test_mesh_iou_of_a_sphere_mesh_against_exact_labels():
    v, f = unit_sphere_mesh(0.4)
    rng = np.random.default_rng(1)
    q = rng.uniform(-0.55, 0.55, size=(20000, 3))
    inside = np.linalg.norm(q, axis=1) < 0.4
    assert mesh_iou(v, f, q, inside) > 0.97
    assert mesh_iou(v, f, q, np.linalg.norm(q, axis=1) < 0.2) == pytest.approx(0.125, abs=0.02)


def test_surface_samples_lie_on_the_mesh_and_cover_it_by_area():
    v, f = unit_sphere_mesh(0.4)
    pts = sample_surface(v, f, 20000, np.random.default_rng(2))
    assert np.abs(np.linalg.norm(pts, axis=1) - 0.4).max() < 0.01
    assert abs(np.mean(pts[:, 2] > 0) - 0.5) < 0.02  # uniform by area: half above the equator


def test_correspondence_l2_and_the_nearest_neighbour_baseline():
    rng = np.random.default_rng(3)
    gt0 = rng.normal(size=(200, 3))
    verts = gt0[:50] + 1e-4
    matches = nearest_indices(verts, gt0)
    assert np.array_equal(matches, np.arange(50))
    gt1 = gt0 + [0.5, 0, 0]
    assert correspondence_l2(verts + [0.5, 0, 0], gt1, matches) == pytest.approx(1e-4 * 3 ** 0.5,
                                                                              rel=1e-3)
    # the baseline snaps to observed points: static observations keep the points where they are
    tracks = nearest_neighbour_tracks(gt0[:50], [gt0, gt0])
    assert np.array_equal(tracks[-1], gt0[:50])


def test_evaluating_windows_scores_the_tracked_mesh_and_beats_the_baseline():
    """A sphere sliding sideways; the ball model knows its shape and velocity exactly."""
    rng = np.random.default_rng(4)
    radius, speed = 0.3, 0.4
    # dense ground truth: the paper's matching of vertices to truth points and Chamfer's accuracy
    # term both need it (sparse points add their own spacing to the errors)
    records = [sphere_record(rng, radius=radius, velocity=(speed, 0, 0), occ_points=2000,
                             corr_points=20000, frame_points=800) for _ in range(2)]
    scale = 2 * radius / (1 - 0.15)  # the visible half's bounding box, with the 0.15 margin
    model = sphere_model(radius=radius, scale=scale, center_z=radius / 2, velocity=(speed, 0, 0))
    checkpoint = Checkpoint(model=model, config=model.config, normalization={"margin": 0.15},
                            training={})
    # the model's own (exact) velocity field carries the mesh: registration cannot tell how a
    # sphere turns, so only a model that knows the motion keeps the material points
    config = TrackerConfig(meshing=MeshingConfig(resolution0=16, upsampling_steps=2,
                                                 target_vertices=800),
                           deformation=DeformationConfig(enabled=False))
    windows = evaluate_records(checkpoint, records, tracker_config=config, progress=False)
    summary = summarize(windows)
    assert summary["failed"] == 0
    assert summary["iou"]["keyframe"] > 0.85 and summary["iou"]["end"] > 0.85
    assert summary["chamfer_l1"]["end"] < 0.02  # in units of the sphere's diameter
    assert summary["corr_l2"]["end"] < 0.02
    # snapping to a partial view cannot follow the back of the sphere: much worse
    assert summary["nn_corr_l2"]["end"] > 3 * summary["corr_l2"]["end"]
    # left still, the keyframe mesh misses the slide (0.4 m/s for ~1 s, the sphere 0.6 m wide): the
    # static baseline scores the same at the keyframe and far worse at the end
    assert summary["static_corr_l2"]["keyframe"] == pytest.approx(summary["corr_l2"]["keyframe"])
    assert summary["static_corr_l2"]["end"] > 0.5 and summary["static_iou"]["end"] < 0.5
    for w in windows:
        assert w["frames"][0]["dt"] == 0.0 and w["frames"][-1]["dt"] > 0.5
        assert len(w["step_ms"]) == len(w["meta"] and records[0].frame_times)


def test_the_synthetic_eval_scores_iou_on_dense_exact_queries_and_splits_the_end_by_motion(tmp_path, capsys):
    import json

    from occflow_ros.cli import eval_main

    out = tmp_path / "eval"
    args = ["synthetic", "--seed", "1001", "--windows", "4", "--iou-points", "20000",
            "--threads", "1", "--no-progress", "--out", str(out)]
    assert eval_main(args) == 0, capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    windows = json.loads((out / "windows.json").read_text())
    assert summary["iou_queries"] == 20000
    assert all(w["meta"]["occ_uniform"] == 20000 for w in windows)
    # one row per kind of motion, holding the means of its windows' last frames
    groups = summary["by_motion"]
    assert sum(row["windows"] for row in groups.values()) == 4
    for name, row in groups.items():
        mine = [w for w in windows
                if f"{w['meta']['shape']['family']}/{w['meta']['shape']['motion']}" == name]
        assert len(mine) == row["windows"]
        for key in ("iou", "corr_l2", "nn_corr_l2"):
            assert row[key] == pytest.approx(np.mean([w["frames"][-1][key] for w in mine]))
    text = (out / "summary.md").read_text()
    assert "IoU from 20000 uniform queries" in text
    assert all(f"| {name} |" in text for name in groups) or len(groups) == 1
    # the seeds that made training and validation data are refused as held-out
    assert eval_main(["synthetic", "--seed", "2", "--windows", "1", "--no-progress"]) == 2
    assert "held-out" in capsys.readouterr().err
    # tracker parameters for the run, and the mesh carried by the velocity field alone
    other = tmp_path / "flow"
    assert eval_main(["synthetic", "--seed", "1001", "--windows", "1", "--iou-points", "1000",
                      "--flow", "-p", "tracker.solver.step_size:=0.05", "--no-progress",
                      "--out", str(other)]) == 0, capsys.readouterr().err
    summary = json.loads((other / "summary.json").read_text())
    assert summary["tracker_parameters"] == {"tracker.deformation.enabled": False,
                                             "tracker.solver.step_size": 0.05}
    assert "velocity field alone" in (other / "summary.md").read_text()
    first = json.loads((out / "windows.json").read_text())[0]["frames"]
    moved = json.loads((other / "windows.json").read_text())[0]["frames"]
    assert first[0]["corr_l2"] == pytest.approx(moved[0]["corr_l2"])  # the same keyframe mesh
    assert first[-1]["corr_l2"] != pytest.approx(moved[-1]["corr_l2"])  # carried another way
    assert eval_main(["synthetic", "--windows", "1", "-p", "output.depth:=3", "--no-progress"]) == 2
    assert "tracker.* parameters" in capsys.readouterr().err
