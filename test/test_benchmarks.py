"""The benchmark harness (benchmarks/): its pieces on a tiny configuration, its device plumbing, its report.

The full run (``make bench``) is not part of the suite; these tests run each question's code on a
3-frame window of a sphere with an analytic network (test/analytic_models.py), small I/O sizes and a
synthetic node run record, and check the tables' rows, columns and the properties the numbers must
have.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import bench_tracking as bt  # noqa: E402
from analytic_models import sphere_model  # noqa: E402
from bench_frame import KEYFRAME, Q7_COLUMNS, WHOLE, frame_stages  # noqa: E402
from bench_io import Q4_COLUMNS, io_costs  # noqa: E402
import gpu_check  # noqa: E402
import gpu_train  # noqa: E402
from bench_node import Q5_COLUMNS, node_presets, node_row, node_targets  # noqa: E402
from harness import (  # noqa: E402
    BenchConfig,
    BenchError,
    Table,
    Target,
    bench_device,
    describe_machine,
    device_description,
)
from run_all import config_from_args, parse_args, render_doc  # noqa: E402
from sequences import Sequence, object_size  # noqa: E402
from sphere_records import sphere_record  # noqa: E402

from occflow_ros.model import ModelError  # noqa: E402
from occflow_ros.tracking import MeshingConfig  # noqa: E402

RADIUS, SPEED = 0.3, 0.4
TINY_MESHING = MeshingConfig(resolution0=16, upsampling_steps=1, target_vertices=300)


def yes() -> bool:
    return True


def no() -> bool:
    return False


@pytest.fixture(scope="module")
def sphere_sequence() -> Sequence:
    """3 frames of a sphere (radius 0.3 m) sliding at 0.4 m/s, its camera-facing half observed."""
    record = sphere_record(np.random.default_rng(0), frames=3, radius=RADIUS,
                           velocity=(SPEED, 0.0, 0.0), corr_points=512)
    return Sequence("sphere", record, object_size(record), "a tiny test window")


@pytest.fixture(scope="module")
def exact_model():
    """The ball-and-drift network that is exactly this sphere and its motion in the tracker's
    normalised space (the observed hemisphere's box: scale 2r / (1 - margin), centre r/2 in front)."""
    return sphere_model(radius=RADIUS, scale=2 * RADIUS / 0.85, center_z=RADIUS / 2,
                        velocity=(SPEED, 0.0, 0.0))


@pytest.fixture(scope="module")
def question1(exact_model, sphere_sequence):
    return bt.why_occupancy_flow(exact_model, [sphere_sequence], torch.device("cpu"),
                                 meshing=TINY_MESHING, chamfer_points=2000, progress=lambda s: None)


def _columns_match(table: Table, columns) -> None:
    keys = [k for k, _ in columns]
    assert table.rows, f"{table.title}: no rows"
    for row in table.rows:
        assert set(row) == set(keys)


def test_object_size_is_the_longest_side_of_the_keyframe_truth_box(sphere_sequence):
    corr = sphere_sequence.record.corr[0]
    assert sphere_sequence.size_m == pytest.approx(float((corr.max(0) - corr.min(0)).max()))
    assert 1.8 * RADIUS < sphere_sequence.size_m <= 2 * RADIUS


def test_question1_rows_compare_tracking_with_per_frame_reconstruction(question1):
    table, results = question1
    _columns_match(table, bt.Q1_COLUMNS)
    ours, rebuild = table.rows
    assert ours["method"].startswith("keyframe + tracking") and rebuild["method"].startswith("per-frame")
    # the per-frame path really meshed every frame; ours meshed once and tracked the rest
    assert results[0].per_frame.keyframe == [True, True, True]
    assert results[0].ours.keyframe == [True, False, False]
    # with the exact network, carried vertices stay on their material points; nearest-neighbour
    # chaining through new meshes does not follow the sliding surface
    assert ours["corr_cm"] < 0.5 * rebuild["corr_cm"]
    assert ours["corr"] == pytest.approx(ours["corr_cm"] / 100 / results[0].seq.size_m)
    for row in table.rows:
        assert row["chamfer_cm"] < 5.0 and row["ms_frame"] > 0 and row["vertices"] > 50
    assert ours["speedup"] == pytest.approx(rebuild["ms_frame"] / ours["ms_frame"])
    assert len(table.targets) == 1 and table.targets[0].met == (ours["speedup"] >= 10)


def test_question2_scores_all_methods_on_the_same_vertices(question1):
    _, results = question1
    table = bt.correspondence_baselines(results, cpd_vertices=60, cpd_iterations=3,
                                        progress=lambda s: None)
    _columns_match(table, bt.Q2_COLUMNS)
    methods = [r["method"] for r in table.rows]
    assert methods[0].startswith("keyframe + tracking") and methods[1].startswith("nearest")
    assert methods[2].startswith("Coherent Point Drift") and "time only" in methods[3]
    assert [r["vertices"] for r in table.rows[:3]] == [60, 60, 60]
    assert table.rows[3]["vertices"] == results[0].ours_tracks[0].shape[0]
    assert table.rows[3]["corr"] is None and table.rows[3]["ms_frame"] > 0
    ours, nn = table.rows[0], table.rows[1]
    assert ours["corr_cm"] < nn["corr_cm"]  # exact flow vs jumping to observed points
    assert all(math.isfinite(r["corr_cm"]) for r in table.rows[:3])
    assert [t.met for t in table.targets[:1]] == [True]
    assert len(table.targets) == 3


def test_cpd_tracks_follow_a_translated_point_set():
    """Registering a point set to a shifted copy of itself moves it (most of the way) onto the copy."""
    rng = np.random.default_rng(1)
    d = rng.normal(size=(150, 3))
    start = 0.3 * d / np.linalg.norm(d, axis=1, keepdims=True)
    shift = np.array([0.05, 0.0, 0.0])
    tracks, seconds = bt.cpd_tracks(start, [start + shift], iterations=50)
    moved = (tracks[0] - start).mean(axis=0)
    assert moved[0] > 0.04 and abs(moved[1]) < 0.01 and len(seconds) == 1


def test_question3_rows_per_solver_and_size_with_reference_deviation(exact_model, sphere_sequence):
    table = bt.solvers_and_sizes(exact_model, [sphere_sequence], torch.device("cpu"), sizes=(150, 300),
                                 solvers=("euler", "rk4"), meshing=TINY_MESHING,
                                 progress=lambda s: None)
    _columns_match(table, bt.Q3_COLUMNS)
    assert [(r["target"], r["solver"].split()[0]) for r in table.rows] == [
        (150, "euler"), (150, "rk4"), (300, "euler"), (300, "rk4")]
    small = [r["vertices"] for r in table.rows if r["target"] == 150]
    large = [r["vertices"] for r in table.rows if r["target"] == 300]
    assert max(small) < min(large)
    # a constant velocity field is integrated exactly by every solver
    assert all(r["dev_cm"] < 0.01 for r in table.rows)
    assert all(r["flow_ms"] > 0 and r["step_ms"] >= r["flow_ms"] for r in table.rows)


def _solver_row(method: str, target: int, flow_ms: float, dev_cm: float, corr_cm: float = 10.0):
    return {"sequence": "s", "solver": f"{method} (step 0.1)", "target": target, "vertices": target,
            "flow_ms": flow_ms, "step_ms": flow_ms + 5, "corr": corr_cm / 170, "corr_cm": corr_cm,
            "dev_cm": dev_cm}


def test_solver_verdict_picks_the_cheapest_solver_accurate_enough_for_the_model():
    rows = [_solver_row("euler", 3000, 10.0, 2.0), _solver_row("midpoint", 3000, 20.0, 0.1),
            _solver_row("rk4", 3000, 40.0, 0.01), _solver_row("rk4", 1000, 15.0, 0.01, 12.0)]
    verdict = bt.solver_verdict(rows, 3000, "rk4")
    assert "does not support the default solver: midpoint is 2.0x cheaper than rk4" in verdict
    assert "1000 vertices (1000 kept): corr. L2 12 cm, flow 15 ms" in verdict
    rows[1]["dev_cm"] = 0.9  # midpoint's integration error now 9% of the model's error
    assert "supports the default solver: rk4 is the cheapest" in bt.solver_verdict(rows, 3000, "rk4")


def test_question6_reports_the_device_questions_1_to_3_ran_on(question1):
    _, results = question1
    cpu = bt.gpu_table(device_description(torch.device("cpu")), results)
    _columns_match(cpu, bt.Q6_COLUMNS)
    assert cpu.rows[0]["device"] == "cpu" and "No CUDA device" in cpu.notes[0]
    assert cpu.rows[0]["keyframe_ms"] == pytest.approx(1e3 * bt.median(results[0].per_frame.seconds))
    gpu_info = device_description(torch.device("cuda:0"), gpu_name=lambda d: "Test GPU 9000",
                                  gpu_memory=lambda d: 16 * 2**30)
    gpu = bt.gpu_table(gpu_info, results)
    assert gpu.rows[0]["gpu"].startswith("Test GPU 9000, 16 GiB") and gpu.rows[0]["precision"] == "float16"
    assert "Measured on the GPU" in gpu.notes[0]


def test_harness_device_plumbing_picks_cuda_when_it_is_available():
    """The run's device comes from one choice (select_device's rule), made testable without a GPU."""
    assert bench_device("auto", cuda_available=yes, cuda_count=lambda: 1) == torch.device("cuda:0")
    assert bench_device("auto", cuda_available=no) == torch.device("cpu")
    assert bench_device("cuda:1", cuda_available=yes, cuda_count=lambda: 2) == torch.device("cuda:1")
    with pytest.raises(ModelError, match="CUDA is not available"):
        bench_device("cuda", cuda_available=no)
    # the command line's --device reaches that choice
    cfg = config_from_args(parse_args(["--device", "auto"]))
    assert bench_device(cfg.device, cuda_available=yes, cuda_count=lambda: 1).type == "cuda"
    # and the machine description names the GPU and the fp16 networks on CUDA
    info = device_description(torch.device("cuda:0"), gpu_name=lambda d: "Test GPU",
                              gpu_memory=lambda d: 2**30)
    assert info["device"] == "cuda:0" and info["network precision"] == "float16"
    assert info["GPU"].startswith("Test GPU, 1 GiB, CUDA")


def test_question4_rows_with_their_columns():
    table = io_costs(repeats=2, loop_points=500, width=64, height=48, sizes=(200,),
                     progress=lambda s: None)
    _columns_match(table, Q4_COLUMNS)
    assert len(table.rows) == 2 + 4
    ours, loop = table.rows[0], table.rows[1]
    assert "read_xyz" in ours["what"] and "loop" in loop["what"] and loop["vs"] == 1.0
    assert ours["vs"] == pytest.approx(loop["ms"] / ours["ms"], rel=1e-6)
    assert all(r["ms"] > 0 for r in table.rows)


def test_question5_rows_come_from_the_demo_summary_and_presets_undo_its_cpu_settings():
    from occflow_ros.apps.demo import CPU_PARAMETERS
    from occflow_ros.ros.node_config import PARAMETERS_BY_NAME

    pct = {"p50": 120.0, "p95": 300.0, "max": 310.0, "n": 5}
    summary = {"live": {"frames_sent": 301, "frames_processed": 40, "input_rate_hz": 30.0,
                        "processed_rate_hz": 4.0, "keyframes": 6,
                        "latency_ms": {"all": pct, "tracking_frames": dict(pct, p50=100.0),
                                       "keyframes": dict(pct, p50=400.0)}},
               "errors": {"corr_l2_cm": {"keyframe": 2.0, "later_frames": 3.5,
                                         "static_later_frames": 6.0}}}
    row = node_row("a preset", summary)
    assert set(row) == {k for k, _ in Q5_COLUMNS}
    assert (row["processed"], row["rate_hz"], row["p95"]) == (40, 4.0, 300.0)
    assert (row["track_p50"], row["key_p50"], row["corr_cm"], row["static_cm"]) == (100.0, 400.0,
                                                                                   3.5, 6.0)
    assert row["track_p95"] == 300.0
    rate, latency = node_targets(row)
    assert not rate.met and "4.0 Hz" in rate.measured and not latency.met and "300 ms" in latency.measured
    rate, latency = node_targets(dict(row, rate_hz=21.2, track_p95=91.0))
    assert rate.met and latency.met
    (cpu_label, cpu), (def_label, defaults) = node_presets("cuda", 1)
    assert cpu == {"device": "cuda"}  # the demo's own CPU settings, on the run's device
    for name in CPU_PARAMETERS:
        if name in ("device", "threads"):
            continue
        if name in ("output.depth", "log_period"):  # recording only: the demo keeps them
            assert name not in defaults
        else:
            assert defaults[name] == PARAMETERS_BY_NAME[name].default, name
    assert defaults["device"] == "cuda" and defaults["threads"] == 1 and defaults["preset"] == "gpu"


def test_question7_times_each_stage_of_real_tracked_frames_and_judges_the_targets():
    """A short real run (the demo's person, the shipped model, one thread): every stage timed on
    the tracked frames, the stages inside the frame adding up to at most the whole, the four
    targets judged on the numbers in the table."""
    from occflow_ros.model import limit_cpu_threads

    restore = limit_cpu_threads(1)
    try:
        # past the automatic 2 s keyframe window, so that a second keyframe is timed
        table = frame_stages(seconds=2.5, fps=6.0, progress=lambda m: None)
    finally:
        restore()
    _columns_match(table, Q7_COLUMNS)
    p50 = {r["stage"]: r["p50"] for r in table.rows}
    assert {"decode (deserialize + read_xyz)", "preprocess", "graph fit",
            "checks (residual, coverage)", "outputs (build + serialize)", WHOLE} <= set(p50)
    assert all(r["p50"] > 0 and r["p95"] >= r["p50"] for r in table.rows
               if r["stage"] != "other (model input, ids, bookkeeping)")
    parts = sum(v for k, v in p50.items() if k not in (WHOLE, KEYFRAME) and not k.startswith(" "))
    assert p50["graph fit"] > p50["  of which the fit's rigid stage"] > 0
    assert parts <= 1.2 * p50[WHOLE]  # medians of parts need not add up exactly
    (whole, _, pre, share, keyframe) = table.targets
    assert whole.met == (p50[WHOLE] <= 25.0) and f"{p50[WHOLE]:.1f} ms" == whole.measured
    assert pre.met == (p50["preprocess"] <= 6.0)
    assert share.met == (p50["preprocess"] <= 0.15 * p50[WHOLE])
    # the keyframe after the 2 s window (the first one warms up and is not counted): meshed in
    # line, so it costs more than a tracked frame
    assert p50[KEYFRAME] > p50[WHOLE] and keyframe.met == (p50[KEYFRAME] <= 250.0)


def test_the_gpu_check_runs_as_a_dry_run_on_the_cpu_and_writes_its_report(tmp_path, capsys):
    """benchmarks/gpu_check.py --quick: the GPU preset's frames on the CPU through both carriers,
    the report written as markdown and JSON with the goals judged on its own numbers; on a machine
    without CUDA the real run refuses with a message that says so."""
    assert gpu_check.main(["--quick", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["machine"]["device"] == "cpu"
    (graph_title, graph), (field_title, field) = report["tables"].items()
    assert "deformation graph" in graph_title and "velocity field" in field_title
    graph_p50 = {r["stage"]: r["p50"] for r in graph["rows"]}
    field_p50 = {r["stage"]: r["p50"] for r in field["rows"]}
    # the overrides took effect: the graph fits only in the first run, the GPU preset in both
    assert graph_p50["graph fit"] > 0 and field_p50["graph fit"] == 0
    assert all("the gpu preset" in t["notes"][-1] for t in (graph, field))
    rate, keyframe = report["goals"]
    assert f"deformation graph {1e3 / graph_p50[WHOLE]:.0f} Hz" in rate["measured"]
    assert rate["met"] == (1e3 / min(graph_p50[WHOLE], field_p50[WHOLE]) >= 100.0)
    assert keyframe["met"] == (graph_p50[KEYFRAME] < 100.0)
    text = (tmp_path / "gpu_check.md").read_text()
    assert text in capsys.readouterr().out and "## Goals" in text
    if not torch.cuda.is_available():
        assert gpu_check.main([]) == 2
        assert "no CUDA device here" in capsys.readouterr().err


def test_the_gpu_training_runs_as_a_dry_run_on_the_cpu_and_writes_a_shippable_checkpoint(
        tmp_path, capsys):
    """benchmarks/gpu_train.py --quick: data, training and the curve, on the CPU; the checkpoints
    it writes are the shape network's, without optimizer state, and load with weights_only."""
    from occflow_ros.model import load_checkpoint

    out = tmp_path / "out"
    assert gpu_train.main(["--quick", "--out", str(out), "--work", str(tmp_path / "work")]) == 0
    best = load_checkpoint(out / "best.pt")
    assert best.config.shape_encoder == "planes" and best.extra == {}
    assert torch.load(out / "best.pt", weights_only=True)["format"] == "occflow_ros.checkpoint"
    curve = (out / "curve.md").read_text()
    assert "| 3 |" in curve and "| 6 |" in curve and curve in capsys.readouterr().out
    if not torch.cuda.is_available():
        assert gpu_train.main(["--out", str(tmp_path / "none")]) == 2
        assert "no CUDA device here" in capsys.readouterr().err


def test_settings_are_validated_with_the_key_named():
    with pytest.raises(BenchError, match="bench.frames"):
        BenchConfig(frames=1)
    with pytest.raises(BenchError, match="bench.solvers"):
        BenchConfig(solvers=("rk5",))
    with pytest.raises(BenchError, match="bench.node_seconds"):
        BenchConfig(node_seconds=1.0)
    table = Table("t", [("a", "A"), ("b", "B")])
    with pytest.raises(BenchError, match="missing"):
        table.add({"a": 1})


def test_report_holds_command_machine_targets_and_every_table(question1):
    table, _ = question1
    other = Table("9. Other", [("x", "X")], notes=["a note"])
    other.add({"x": 0.5})
    other.targets.append(Target("x is large", "0.5", False))
    machine = describe_machine(torch.device("cpu"))
    for key in ("date", "CPU", "cores", "RAM", "torch", "GPU"):
        assert machine[key]
    text = render_doc(command="python benchmarks/run_all.py --threads 1", machine=machine,
                      inputs=["sphere: tiny"], tables=[table, other], settings=BenchConfig(),
                      wall_seconds=61.0)
    assert "python benchmarks/run_all.py --threads 1" in text
    assert f"| CPU | {machine['CPU']} |" in text
    assert "## 1. Why Occupancy Flow" in text and "## 9. Other" in text
    assert "| x is large | 0.5 | **NOT met** |" in text
    assert "| 0.5 |" in text and "- a note" in text
    assert "Total wall time 1.0 min" in text
