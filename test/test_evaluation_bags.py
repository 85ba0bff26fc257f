"""Bags with ground truth and their evaluation: the bag layout, the metrics of a scored sequence, the report
directory (JSON, Markdown, plots, GIF) through occflow-eval bag, and the converted real D-FAUST sequence.

Machinery tests track with the analytic ball model (test/analytic_models.py); the D-FAUST report uses the
trained model: the shipped one, or OCCFLOW_TEST_MODEL while it is not installed yet.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO
from node_peer import save_ball_checkpoint
from PIL import Image
from scipy.spatial import cKDTree

from occflow_ros.cli import PAPER_DFAUST, eval_main, make_bag_main, replay_main
from occflow_ros.data.ground_truth import GroundTruthFrame
from occflow_ros.evaluation.sequence import EvaluationError, TrackedFrame, score_sequence
from occflow_ros.model import shipped_model_path
from occflow_ros.ros import bag_topics, open_input_bag, read_xyz
from occflow_ros.apps.ground_truth_bag import DEPTH_TOPIC, FRAME_ID, read_ground_truth

FAST = """/**:
  ros__parameters:
    threads: 1
    tracker:
      residual_threshold: 0.0
      meshing: {resolution0: 16, upsampling_steps: 1, target_vertices: 0}
"""
SYNTHETIC = ["--family", "human", "--motion", "arm_waves", "--duration", "0.4", "--fps", "10", "--width", "160",
             "--height", "120", "--surface-points", "5000", "--occupancy-points", "2000", "--no-progress"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("evalbags")
    (root / "fast.yaml").write_text(FAST)
    bag = root / "synthetic"
    assert make_bag_main(["synthetic", str(bag), "--seed", "4", *SYNTHETIC]) == 0
    return {"root": root, "bag": bag, "params": root / "fast.yaml", "model": save_ball_checkpoint(root / "ball.pt")}


def test_a_synthetic_bag_holds_depth_and_ground_truth_in_the_documented_layout(files):
    topics = bag_topics(files["bag"])
    assert topics == {DEPTH_TOPIC: ("sensor_msgs/msg/PointCloud2", 5),
                      "/ground_truth/info": ("std_msgs/msg/String", 1),
                      "/ground_truth/occupancy": ("sensor_msgs/msg/PointCloud2", 5),
                      "/ground_truth/surface": ("sensor_msgs/msg/PointCloud2", 5)}
    with open_input_bag(files["bag"], DEPTH_TOPIC) as bag:
        depth = [(t, m) for t, m in bag]
    truth = read_ground_truth(files["bag"])
    assert truth.info["layout"] == "occflow_ros.ground_truth/1" and truth.info["source"] == "synthetic"
    assert truth.frame_id == FRAME_ID and 1.0 < truth.size_m() < 2.2  # a person's height
    assert sorted(truth.frames) == [t for t, _ in depth]  # bag time = header stamp, one truth per frame
    ids = [f.surface_ids for f in truth.frames.values()]
    assert all(np.array_equal(i, ids[0]) for i in ids) and len(np.unique(ids[0])) == 5000
    first, last = truth.frames[min(truth.frames)], truth.frames[max(truth.frames)]
    assert np.linalg.norm(last.surface - first.surface, axis=1).max() > 0.05  # the arms wave: points move
    for t, msg in depth:
        assert (msg.height, msg.width, msg.header.frame_id) == (120, 160, FRAME_ID)
        gt = truth.frames[t]
        # occupancy in the same frame as the surface: every inside query lies within the surface's box
        inside_q = gt.occ_points[gt.occ_inside]
        assert 0 < len(inside_q) < len(gt.occ_points) / 2
        assert np.all((inside_q > gt.surface.min(0) - 0.01) & (inside_q < gt.surface.max(0) + 0.01))
        # the camera sees the truth surface: depth points inside the object's box lie on it (the
        # floor around the feet is the only other thing there)
        points = read_xyz(msg)
        lo, hi = gt.surface.min(0), gt.surface.max(0)
        inside = points[np.all((points > lo) & (points < hi), axis=1)]
        assert len(inside) > 100
        assert np.median(cKDTree(gt.surface).query(inside)[0]) < 0.02


def test_scores_of_a_sequence_with_known_errors_in_normalised_units_and_centimetres():
    rng = np.random.default_rng(0)
    surface = rng.normal(size=(4000, 3))
    surface /= np.linalg.norm(surface, axis=1, keepdims=True)
    surface = surface * 0.5 + [0.0, 0.0, 2.0]  # a 1 m ball 2 m in front of the camera
    from occflow_ros.geometry import extract_mesh
    from occflow_ros.geometry.analytic import sphere_field

    mesh = extract_mesh(sphere_field(radius=0.5), resolution0=16, upsampling_steps=2)
    vertices = (mesh.vertices + [0.0, 0.0, 2.0]).astype(np.float32)
    faces = mesh.faces.astype(np.uint32)
    ids = np.arange(len(vertices), dtype=np.uint32)
    step = np.array([0.02, 0.0, 0.0])  # the truth moves 2 cm per frame; the tracked mesh stays: drift
    truth, tracked = {}, []
    for k in range(4):
        stamp = 1_000_000_000 + k * 100_000_000
        points, point_ids = surface + k * step, np.arange(4000, dtype=np.uint32)
        if k % 2:  # the same ids in another order: rows are paired by id, not by position
            points, point_ids = points[::-1], point_ids[::-1]
        truth[stamp] = GroundTruthFrame(stamp, np.zeros((0, 3)), points.astype(np.float32), point_ids.copy())
        tracked.append(TrackedFrame(stamp, 0, 1_000_000_000, vertices, faces, ids, vertices))
    result = score_sequence(tracked, truth, unit_m=0.5, chamfer_points=4000)
    rows = result["frames"]
    assert [r["since_keyframe_s"] for r in rows] == [0.0, 0.1, 0.2, 0.3]
    matching = rows[0]["corr_l2_cm"]  # each vertex to its nearest truth point at the keyframe
    assert 0 < matching < 2.5 and rows[0]["chamfer_l1_cm"] < 2.5  # truth spacing ~2.8 cm
    for k, row in enumerate(rows):
        # the matched truth points moved k * 2 cm and the vertices stayed: triangle inequality bounds
        assert k * 2.0 - matching - 1e-6 <= row["corr_l2_cm"] <= k * 2.0 + matching + 1e-6
        assert row["corr_l2"] == pytest.approx(row["corr_l2_cm"] / 100 / 0.5)
        assert row["id_corr_l2"] == pytest.approx(row["corr_l2"])
    s = result["summary"]
    assert s["frames_scored"] == 4 and s["keyframe_segments"] == 1
    assert s["metrics"]["corr_l2"]["last"] == rows[-1]["corr_l2"]
    assert [d["frames"] for d in s["drift"]] == [1, 1, 1, 1]  # one frame per bin of time since keyframe
    assert [d["corr_l2_cm"] for d in s["drift"]] == [r["corr_l2_cm"] for r in rows]
    moved = dict(truth)
    moved[max(moved)] = GroundTruthFrame(max(moved), np.zeros((0, 3)), surface.astype(np.float32),
                                         np.arange(1, 4001, dtype=np.uint32))
    with pytest.raises(EvaluationError, match="other surface ids than the first truth frame"):
        score_sequence(tracked, moved, unit_m=0.5, chamfer_points=100)
    with pytest.raises(EvaluationError, match="unit_m must be a positive length"):
        score_sequence(tracked, truth, unit_m=0.0)


def eval_args(files, out: Path, *extra: str) -> list:
    return ["bag", str(files["bag"]), "--checkpoint", str(files["model"]), "--params-file", str(files["params"]),
            "--out", str(out), "--chamfer-points", "3000", "--render-frames", "3", "--no-progress", *extra]


def test_eval_of_a_synthetic_bag_writes_json_markdown_plots_and_a_gif(files, capsys):
    out = files["root"] / "report"
    assert eval_main(eval_args(files, out)) == 0, capsys.readouterr().err
    capsys.readouterr()
    report = json.loads((out / "report.json").read_text())
    s = report["summary"]
    assert s["frames_in"] == s["frames_tracked"] == s["frames_scored"] == 5
    unit = s["unit_m"]
    for row in report["frames"]:
        for key in ("chamfer_l1", "corr_l2", "id_corr_l2"):
            assert row[f"{key}_cm"] == pytest.approx(100 * unit * row[key])
        assert 0.0 <= row["iou"] <= 1.0 and row["processing_ms"] > 0
    assert {"chamfer_l1", "corr_l2", "iou", "chamfer_l1_cm"} <= set(s["metrics"])
    markdown = (out / "report.md").read_text()
    assert "| Chamfer-L1 |" in markdown and "| IoU |" in markdown and "seconds since keyframe" in markdown
    header = next(line for line in markdown.splitlines() if line.startswith("| metric"))
    assert "paper" not in header  # the paper's numbers are for D-FAUST bags only
    for name in ("error_vs_time.png", "error_vs_time_since_keyframe.png", "processing_time.png",
                 "tracked_mesh.gif", "frame_first.png", "frame_last.png"):
        assert (out / name).is_file(), name
        if name.endswith(".png") or name.endswith(".gif"):
            assert f"]({name})" in markdown or name.startswith("frame_")
            with Image.open(out / name) as image:
                assert image.size[0] > 100
    with Image.open(out / "tracked_mesh.gif") as gif:
        assert gif.n_frames == 3 and gif.size == (640, 240)
        colours = np.asarray(gif.convert("RGB"))
    assert (colours < 240).any(axis=2).mean() > 0.01  # a mesh is drawn, not just the background
    assert len(list((out / "replay").glob("*.mcap"))) == 1  # the replayed bag, for ros2 bag play

    before = sorted(p.name for p in out.iterdir())
    assert eval_main(eval_args(files, out)) == 2  # never overwritten
    err = capsys.readouterr().err.strip()
    assert err.startswith("occflow-eval: error: output directory") and "exists already" in err
    assert sorted(p.name for p in out.iterdir()) == before


def test_eval_of_a_replayed_bag_scores_what_the_replay_wrote(files, capsys):
    replayed = files["root"] / "replayed"
    assert replay_main([str(files["bag"]), str(replayed), "--model", str(files["model"]), "--params-file",
                        str(files["params"]), "--no-progress"]) == 0
    first, second = files["root"] / "report_a", files["root"] / "report_b"
    assert eval_main(eval_args(files, first)) == 0
    assert eval_main(eval_args(files, second, "--replayed", str(replayed))) == 0
    capsys.readouterr()
    a, b = (json.loads((p / "report.json").read_text()) for p in (first, second))
    assert b["replayed_bag"] == str(replayed) and not (second / "replay").exists()
    strip = ("processing_ms",)
    assert [{k: v for k, v in r.items() if k not in strip} for r in a["frames"]] == \
        [{k: v for k, v in r.items() if k not in strip} for r in b["frames"]]  # the replay is deterministic

    other = files["root"] / "other"
    assert make_bag_main(["synthetic", str(other), "--seed", "5", *SYNTHETIC]) == 0
    target = files["root"] / "report_mismatch"
    assert eval_main(["bag", str(other), "--replayed", str(replayed), "--out", str(target), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "holds no frame of" in err and len(err.splitlines()) == 1
    assert not target.exists() and not list(files["root"].glob(".report_mismatch.partial-*"))


def test_eval_surfaces_a_bad_input_bag_as_one_line_and_writes_nothing(files, capsys):
    empty_dir = files["root"] / "not_a_bag"
    empty_dir.mkdir()
    for bag in (files["root"] / "missing", empty_dir):
        target = files["root"] / f"report_{bag.name}"
        assert eval_main(["bag", str(bag), "--checkpoint", str(files["model"]), "--out", str(target),
                          "--no-progress"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("occflow-eval: error: input bag") and str(bag) in err and len(err.splitlines()) == 1
        assert not target.exists()


def sphere_truth_frames(count: int, rng: np.random.Generator):
    """The node tests' sphere (test/node_peer.py) sliding along x at SPEED m/s, as depth frames with exact
    truth: 4000 material points on it (fixed ids) and occupancy of queries around it."""
    from analytic_models import fibonacci_directions
    from node_peer import DEPTH, RADIUS, SPEED, sphere_xyz

    directions = fibonacci_directions(4000)
    for i in range(count):
        t = i / 30 - 0.15
        centre = np.array([SPEED * t, 0.0, DEPTH])
        queries = centre + rng.uniform(-1.2 * RADIUS, 1.2 * RADIUS, size=(3000, 3))
        yield GroundTruthFrame(1_700_000_000_000_000_000 + i * 33_333_333, sphere_xyz(t, rng=rng),
                               (centre + RADIUS * directions).astype(np.float32), np.arange(4000, dtype=np.uint32),
                               queries.astype(np.float32), np.linalg.norm(queries - centre, axis=1) < RADIUS)


def test_a_model_that_knows_the_motion_keeps_its_correspondence_error_flat_while_the_object_moves(files, capsys):
    """End to end (bag -> replay -> scores): the ball model is the sphere and its exact velocity, up to the
    few centimetres of its keyframe fit; over 10 frames the sphere slides 15 cm, so correspondences that
    did not follow it would end ~15 cm off."""
    from node_peer import RADIUS, SPEED

    from occflow_ros.apps.ground_truth_bag import write_ground_truth_bag

    bag = files["root"] / "sphere_gt"
    write_ground_truth_bag(bag, {"source": "sphere", "size_m": 2 * RADIUS, "fps": 30.0},
                           sphere_truth_frames(10, np.random.default_rng(0)))
    # one keyframe; a meshing cube the whole ball fits in; the model's own (exact) velocity field
    # carries the mesh (registration cannot tell how a sphere turns)
    params = files["root"] / "whole_ball.yaml"
    params.write_text(FAST.replace("target_vertices: 0", "target_vertices: 0, box_size: 1.6")
                      .replace("residual_threshold: 0.0", "residual_threshold: 0.0\n      max_frames: 100"
                               "\n      deformation: {enabled: false}"))
    out = files["root"] / "sphere_report"
    assert eval_main(["bag", str(bag), "--checkpoint", str(files["model"]), "--params-file", str(params),
                      "--out", str(out), "--chamfer-points", "5000", "--render-frames", "0", "--no-progress"]) == 0
    capsys.readouterr()
    report = json.loads((out / "report.json").read_text())
    rows = report["frames"]
    assert report["summary"]["keyframe_segments"] == 1 and len(rows) == 10
    assert rows[-1]["t_s"] * SPEED == pytest.approx(0.15, abs=1e-6)
    for row in rows:
        assert row["chamfer_l1_cm"] < 4.0 and row["corr_l2_cm"] < 4.0 and row["iou"] > 0.6
        assert row["corr_l2"] == pytest.approx(row["corr_l2_cm"] / (100 * 2 * RADIUS))
    assert rows[-1]["corr_l2_cm"] - rows[0]["corr_l2_cm"] < 1.0  # followed the 15 cm slide
    assert not (out / "tracked_mesh.gif").exists()  # --render-frames 0


@pytest.fixture(scope="module")
def trained_model() -> Path:
    """The trained model: the shipped one, else OCCFLOW_TEST_MODEL (development runs before it ships)."""
    shipped = shipped_model_path()
    if shipped.is_file():
        return shipped
    given = os.environ.get("OCCFLOW_TEST_MODEL")
    if given and Path(given).is_file():
        return Path(given)
    pytest.fail(f"no trained model: {shipped} is not installed and OCCFLOW_TEST_MODEL is not set")


def test_the_converted_dfaust_sequence_gets_a_report_with_the_papers_numbers_beside_ours(
        dfaust_sequence, trained_model, tmp_path, capsys):
    bag = tmp_path / "dfaust"
    assert make_bag_main(["dfaust", str(dfaust_sequence), str(bag), "--surface-points", "30000",
                          "--no-progress"]) == 0
    truth = read_ground_truth(bag)
    assert truth.info["source"] == "dfaust" and truth.info["fps"] == 60.0 and len(truth.frames) == 17
    stamps = sorted(truth.frames)
    assert np.diff(stamps).min() == 16_666_666 and np.diff(stamps).max() == 16_666_667  # 60 fps
    first = np.load(sorted(dfaust_sequence.glob("*.npz"))[0])
    assert truth.size_m() == pytest.approx(float(first["scale"]))  # the paper's unit of length

    out = tmp_path / "report"
    rc = eval_main(["bag", str(bag), "--checkpoint", str(trained_model), "--params-file",
                    str(REPO / "config" / "reconstruct.yaml"), "-p", "threads:=1", "--keyframes", "first",
                    "--out", str(out), "--chamfer-points", "30000", "--render-frames", "4", "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    markdown = (out / "report.md").read_text()
    header = next(line for line in markdown.splitlines() if line.startswith("| metric"))
    assert header.rstrip().endswith("paper |")
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in markdown.splitlines() if line.startswith("| ") and not line.startswith("| metric")}
    report = json.loads((out / "report.json").read_text())
    metrics = report["summary"]["metrics"]
    chamfer, corr = rows["Chamfer-L1"], rows["correspondence L2 (per keyframe, the paper's)"]
    assert chamfer[0] == f"{metrics['chamfer_l1']['mean']:.4f}" and chamfer[-1] == f"{PAPER_DFAUST['chamfer_l1']:.4f}"
    assert corr[0] == f"{metrics['corr_l2']['mean']:.4f}" and corr[-1] == f"{PAPER_DFAUST['corr_l2']:.4f}"
    assert "300 points sampled from the FULL surface" in markdown and "one simulated depth view" in markdown
    assert "(the paper's protocol)" in markdown  # one keyframe carried over the 17 frames, as the paper
    assert report["summary"]["frames_scored"] == 17 and report["summary"]["keyframe_segments"] == 1
    assert np.isfinite(metrics["chamfer_l1"]["mean"])
    assert metrics["chamfer_l1_cm"]["mean"] == pytest.approx(100 * truth.size_m() * metrics["chamfer_l1"]["mean"])
