"""The demo's live path with the trained model: the node process, over real DDS, tracks a simulated person.

``run_demo`` starts ``python -m occflow_ros.ros.node`` with the trained model, streams 4 s at 15 Hz of a
simulated RealSense-like depth camera (320x240 here, to keep the test fast; floor, wall, noise and
zero-valued invalid pixels as in the demo) watching a person do jumping jacks, records what the node
publishes and scores it against the exact ground truth. Keyframes come every 0.5 s (window 0.5 s,
residual trigger off), so the 4 s stream has several keyframe changes.

The model: ``OCCFLOW_TEST_MODEL`` if set, else the shipped model (occflow_ros/weights/). No model,
no pass: the test fails and says where the model belongs.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from occflow_ros.cli import demo_main
from occflow_ros.data.demo_scene import SceneConfig
from occflow_ros.model import shipped_model_path
import occflow_ros.apps.demo as demo_module
from occflow_ros.apps.demo import DemoConfig, run_demo
from occflow_ros.ros.outputs import output_topic

MODEL_ENV = "OCCFLOW_TEST_MODEL"
WINDOW_S = 0.5
# The bounds (cm; means over the frames after each keyframe, vertices matched to the dense truth at
# their keyframe). What they rest on, measured on this scene (seeds 7, 11, 12, 13; Shape4D.trajectory):
# jumping jacks move the surface by 3.7-5.9 cm on average in 0.1 s and 8.7-13 cm in 0.3-0.5 s, so
# vertices that stay where the keyframe put them score ~7.5 cm or more over a 0.5 s window on top of
# the keyframe mesh's own error. A tracker under 7 cm therefore follows the motion. It must also beat
# the vertices left where the keyframe put them (static, same matches) by 5%, so a mesh left still
# fails; and it must stay within 15% of the vertices moved by the one rigid motion that best fits the
# truth at each frame (an oracle: no rigid tracker does better). Measured with the deformation graph
# in this 4 s scene streamed at 15 Hz (the node processes 11-13 Hz of it on this CPU, and how well it
# tracks depends on that rate): 0.75, 0.73, 0.88 of static and 0.95, 0.87, 1.04 of the best rigid
# motion (2026-12-03, the banded-Cholesky graph); at 30 Hz in (12-20 Hz processed) 0.72-0.94 and
# 0.86-0.98. These bounds do not reliably
# fail the velocity field with its ICP rigid prior (0.89-0.96 of static in earlier runs), and
# beating the best rigid motion is not met yet: the tracking issue's targets (docs/tracking.md).
# The keyframe mesh
# within 2 cm of the body where it matched it (measured 1.04-1.26 cm), its Chamfer-L1 against the
# whole body (the unseen back is the model's completion) under 3 cm (measured 2.28-2.70 cm). A new
# keyframe keeps >= 30% of the tracked ids every time and 40% on average (measured min 0.48-0.55,
# mean 0.53-0.66).
CORR_L2_BOUND_CM = 7.0
KEYFRAME_CHAMFER_BOUND_CM = 3.0
KEYFRAME_CORR_BOUND_CM = 2.0
STATIC_RATIO = 0.95  # tracked over static, at most
RIGID_RATIO = 1.15  # tracked over the best rigid motion, at most
NOT_WORSE = 1.03
IDS_KEPT_MIN, IDS_KEPT_MEAN = 0.3, 0.4


def trained_model() -> Path:
    path = Path(os.environ.get(MODEL_ENV) or shipped_model_path())
    if not path.is_file():
        pytest.fail(f"no trained model at {path}: the shipped model belongs in the package "
                    f"(occflow_ros/weights/); set {MODEL_ENV} to a checkpoint (e.g. runs/train/best.pt) "
                    "to test another one")
    return path


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    model = trained_model()
    lines: list = []
    config = DemoConfig(
        model=model, out_root=tmp_path_factory.mktemp("demo"),
        scene=SceneConfig(seed=11, motion="jumping_jacks", seconds=4.0, fps=15.0, width=320,
                          height=240),
        parameters={"tracker.window_seconds": WINDOW_S, "tracker.residual_threshold": 0.0,
                    "diagnostics.period": 0.5},
        pictures=0, bag=False, startup_timeout=120.0)
    # every stream goes through the memory-mapped frame store here (a long stream's path: ~11 GB
    # at 600 s would not fit in memory), so the run shows the store works end to end
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(demo_module, "IN_MEMORY_BYTES", 0)
        result = run_demo(config, say=lines.append)
    result.lines = lines
    return result


def test_a_long_stream_is_rendered_to_disk_not_memory_and_the_files_are_removed(demo):
    said = [line for line in demo.lines if "memory-mapped" in line]
    assert len(said) == 1 and str(demo.out_dir) in said[0], demo.lines
    assert not list(demo.out_dir.glob(".frames-*")), "the frame store outlived the run"


def context(result) -> str:
    log = (result.out_dir / "node.log").read_text(errors="replace")
    return f"{result.text}\n{chr(10).join(result.lines)}\nnode log:\n{log[-3000:]}"


def test_the_node_process_publishes_every_output_over_dds_and_exits_0_on_sigint(demo):
    s = demo.summary
    received = s["messages_received"]
    for name in ("mesh", "correspondences", "tracked_mesh", "input_correspondences"):
        assert received.get(output_topic(name, "/demo"), 0) > 0, f"no {name}: {received}\n{context(demo)}"
    assert received.get("/diagnostics", 0) > 0
    assert s["node"]["exit_code"] == 0
    live = s["live"]
    assert live["frames_processed"] >= 6, context(demo)  # 4 s at 15 Hz in, ~12 Hz out on this CPU
    assert live["latency_ms"]["all"]["p50"] > 0
    assert (demo.out_dir / "report.md").is_file() and (demo.out_dir / "report.json").is_file()


def test_vertex_ids_persist_across_at_least_two_keyframes(demo):
    ids = demo.summary["ids"]
    assert ids["keyframe_changes"] >= 2, context(demo)
    assert ids["segments_consistent"], "ids changed within a keyframe segment"
    # a new keyframe inherits the ids of the tracked surface it replaces (most of it, every time)
    kept = f"fraction of ids kept per keyframe {ids['kept_each']}\n{context(demo)}"
    assert ids["kept"]["min"] >= IDS_KEPT_MIN and ids["kept"]["mean"] >= IDS_KEPT_MEAN, kept


def test_tracking_error_against_ground_truth_is_bounded(demo):
    """What the shipped model does: a keyframe mesh close to the body, and tracking that never makes
    the tracked vertices worse than leaving them where the keyframe put them."""
    err = demo.summary["errors"]
    corr = err["corr_l2_cm"]
    assert err["segments_scored"] >= 2, context(demo)
    assert corr["later_frames"] is not None, context(demo)
    chamfer = err["chamfer_l1_cm"]
    assert chamfer["keyframe"] <= KEYFRAME_CHAMFER_BOUND_CM, context(demo)
    assert corr["keyframe"] <= KEYFRAME_CORR_BOUND_CM, context(demo)
    assert corr["later_frames"] <= NOT_WORSE * corr["static_later_frames"], context(demo)
    assert chamfer["later_frames"] <= NOT_WORSE * chamfer["static_later_frames"], context(demo)


def test_tracking_follows_the_motion_beyond_vertices_left_still(demo):
    corr = demo.summary["errors"]["corr_l2_cm"]
    assert corr["later_frames"] <= CORR_L2_BOUND_CM, context(demo)
    # vertices left still score the static error: beat it, and stay near the best rigid motion
    assert corr["later_frames"] <= STATIC_RATIO * corr["static_later_frames"], context(demo)
    assert corr["rigid_later_frames"] <= corr["static_later_frames"] + 1e-9  # still is rigid too
    assert corr["later_frames"] <= RIGID_RATIO * corr["rigid_later_frames"], context(demo)


def test_the_demo_without_a_model_exits_2_and_says_how_to_get_one(tmp_path, capsys):
    missing = tmp_path / "missing.pt"
    assert demo_main(["--model", str(missing), "--out-root", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"no model at {missing}" in err
    assert "occflow-train --config config/train_synthetic.yaml" in err and "--model" in err
    assert not (tmp_path / "out").exists(), "nothing is written without a model"
