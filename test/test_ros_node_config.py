"""The reconstruct node's configuration: the parameter table, its YAML, its mapping onto the tracker's
configs, refusals with clear messages (in-process nodes), run-time changes, the launch file and RViz config."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path
from typing import Any, Dict

import pytest
import rclpy
import torch
import yaml
from conftest import REPO
from node_peer import save_ball_checkpoint
from rclpy.context import Context
from rclpy.parameter import Parameter

from occflow_ros.geometry import PreprocessConfig
from occflow_ros.model import CheckpointError, ModelError
from occflow_ros.model.checkpoint import FORMAT_VERSION
from occflow_ros.ros.node import NODE_NAME, ReconstructNode
from occflow_ros.ros.node_config import (
    DEFAULT_MODEL_FILE,
    PARAMETERS,
    PARAMETERS_BY_NAME,
    NodeConfigError,
    default_model_path,
    node_config_from_parameters,
    resolve_model_path,
    tracker_config_from_parameters,
)
from occflow_ros.tracking import TrackerConfig

YAML_FILE = REPO / "config" / "reconstruct.yaml"
LAUNCH_FILE = REPO / "launch" / "reconstruct.launch.py"
RVIZ_FILE = REPO / "config" / "occflow.rviz"
FAST_MESHING = ["tracker.meshing.resolution0:=16", "tracker.meshing.upsampling_steps:=1",
                "tracker.meshing.target_vertices:=0"]


def flatten(tree: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


# -- the table and its YAML -------------------------------------------------------------------------

def test_yaml_lists_every_parameter_with_its_default_and_the_presets_the_rest():
    """config/reconstruct.yaml sets every parameter to its default except those the presets set
    (left unset there, so the preset fills them in; shown as comments with their defaults), and
    both presets set the same parameters."""
    from occflow_ros.ros.node_config import preset_values

    text = YAML_FILE.read_text()
    values = flatten(yaml.safe_load(text)["/**"]["ros__parameters"])
    cpu, gpu = preset_values("cpu"), preset_values("gpu")
    assert set(cpu) == set(gpu) and cpu != gpu
    assert set(values) == set(PARAMETERS_BY_NAME) - set(cpu)
    for spec in PARAMETERS:
        if spec.name in values:
            assert values[spec.name] == spec.default and type(values[spec.name]) is type(spec.default), \
                spec.name
        else:
            leaf = spec.name.rsplit(".", 1)[-1]
            assert f"# {leaf}: " in text, f"{spec.name}: not shown commented out in {YAML_FILE.name}"
            assert type(cpu[spec.name]) is type(spec.default), spec.name


def test_a_preset_fills_in_only_what_is_not_given():
    from occflow_ros.ros.node_config import NodeConfigError, apply_preset

    values, name, added = apply_preset({"tracker.meshing.resolution0": 20}, cuda=False)
    assert name == "cpu" and "tracker.meshing.resolution0" not in added
    assert values["tracker.meshing.resolution0"] == 20 and values["threads"] == 1
    assert values["tracker.solver.method"] == "midpoint"
    assert apply_preset({}, cuda=True)[1] == "gpu" and apply_preset({}, cuda=True)[0]["threads"] == 0
    assert apply_preset({"preset": "gpu"}, cuda=False)[1] == "gpu"
    assert apply_preset({"preset": "none"}, cuda=False)[2] == {}
    config = node_config_from_parameters(apply_preset({}, cuda=False)[0])
    assert (config.tracker.meshing.resolution0, config.tracker.meshing.target_vertices,
            config.threads, config.preset) == (12, 2000, 1, "auto")
    with pytest.raises(NodeConfigError, match="parameter 'preset' must be one of"):
        apply_preset({"preset": "fast"}, cuda=False)


def test_every_parameter_has_a_description_and_numbers_have_a_range():
    for spec in PARAMETERS:
        assert len(spec.description) > 10, spec.name
        if spec.kind in ("integer", "double"):
            assert spec.lo is not None and spec.hi is not None and spec.lo <= spec.default <= spec.hi
        if spec.choices is not None:
            assert spec.default in spec.choices


def test_default_parameters_give_the_tracker_defaults():
    """The node's defaults are the library's (the table follows TrackerConfig/PreprocessConfig)."""
    config = node_config_from_parameters({})
    library = dataclasses.replace(TrackerConfig(),
                                  preprocess=dataclasses.replace(PreprocessConfig(), n_points=None))
    assert config.tracker == library
    assert config.model_path == default_model_path() and config.model_path_is_default


SPECIAL = {"tracker.window_seconds", "tracker.preprocess.roi_enabled", "tracker.preprocess.roi_min",
           "tracker.preprocess.roi_max", "tracker.preprocess.cluster"}


def _other_value(spec):
    if spec.kind == "bool":
        return not spec.default
    if spec.choices is not None:
        return next(c for c in spec.choices if c != spec.default)
    if spec.kind == "integer":
        return spec.default + 1 if spec.default < spec.hi else spec.default - 1
    return (spec.default + spec.hi) / 2 if spec.default < spec.hi else (spec.default + spec.lo) / 2


@pytest.mark.parametrize("name", [p.name for p in PARAMETERS
                                  if p.name.startswith("tracker.") and p.name not in SPECIAL])
def test_each_tracker_parameter_sets_the_field_of_the_same_name(name):
    spec = PARAMETERS_BY_NAME[name]
    value = _other_value(spec)
    config = tracker_config_from_parameters({name: value})
    target = config
    for part in name.split(".")[1:]:
        target = getattr(target, part)
    assert target == value
    assert config != tracker_config_from_parameters({})


def test_window_roi_and_cluster_parameters_map_onto_their_tracker_meaning():
    assert tracker_config_from_parameters({"tracker.window_seconds": 0.0}).window_seconds is None
    assert tracker_config_from_parameters({"tracker.window_seconds": 0.4}).window_seconds == 0.4
    off = tracker_config_from_parameters({"tracker.preprocess.roi_min": [0.0, 0.0, 0.0]})
    assert off.preprocess.roi_min is None and off.preprocess.clusters, "ROI off: auto clusters"
    on = tracker_config_from_parameters({"tracker.preprocess.roi_enabled": True,
                                         "tracker.preprocess.roi_min": [-0.5, -0.5, 0.5],
                                         "tracker.preprocess.roi_max": [0.5, 0.5, 2.5]})
    assert on.preprocess.roi_min == (-0.5, -0.5, 0.5) and on.preprocess.roi_max == (0.5, 0.5, 2.5)
    assert not on.preprocess.clusters, "ROI on: auto keeps everything in it"
    for mode, expected in (("auto", None), ("nearest", True), ("none", False)):
        cfg = tracker_config_from_parameters({"tracker.preprocess.cluster": mode})
        assert cfg.preprocess.cluster is expected


@pytest.mark.parametrize("values, words", [
    ({"tracker.max_frames": 1}, "parameter 'tracker.max_frames' must be an integer in [2, 100000], got 1"),
    ({"tracker.max_frames": 4.0}, "write an integer"),
    ({"output.mesh_alpha": 1.5}, "parameter 'output.mesh_alpha' must be a double in [0, 1]"),
    ({"input.qos": "best_effort"}, "one of 'sensor_data', 'reliable'"),
    ({"tracker.solver.method": "rk45"}, "parameter 'tracker.solver.method' must be one of"),
    ({"device": "gpu"}, "parameter 'device' must be 'auto', 'cpu', 'cuda' or 'cuda:N'"),
    ({"allow_cpu_fallback": "yes"}, "parameter 'allow_cpu_fallback' must be true or false"),
    ({"tracker.preprocess.roi_min": [0.0, 0.0]}, "three finite numbers"),
    ({"tracker.preprocess.roi_enabled": True, "tracker.preprocess.roi_min": [1.0, 0.0, 0.0],
      "tracker.preprocess.roi_max": [0.0, 1.0, 1.0]}, "must be <= 'tracker.preprocess.roi_max'"),
    ({"tracker.max_frame": 5}, "unknown parameter(s) 'tracker.max_frame' (did you mean "
                               "'tracker.max_frames'?)"),
])
def test_invalid_values_are_refused_naming_the_parameter_and_the_allowed_values(values, words):
    with pytest.raises(NodeConfigError) as info:
        node_config_from_parameters(values)
    assert words in str(info.value)


def test_the_shipped_model_is_resolved_in_one_place_inside_the_package():
    path = default_model_path()
    assert path == REPO / "occflow_ros" / "weights" / DEFAULT_MODEL_FILE
    assert resolve_model_path("") == path and resolve_model_path("  ") == path
    assert resolve_model_path("~/m.pt") == Path.home() / "m.pt"


# -- in-process nodes: the same refusals, descriptors, run-time changes -------------------------------

@pytest.fixture(scope="module")
def ball(tmp_path_factory) -> Path:
    return save_ball_checkpoint(tmp_path_factory.mktemp("ball") / "ball.pt")


@pytest.fixture
def start():
    """start(*"name:=value") -> ReconstructNode in a context of its own (torch threads untouched)."""
    contexts, nodes = [], []

    def _start(*overrides: str) -> ReconstructNode:
        args = ["--ros-args"] + [a for o in overrides for a in ("-p", o)]
        context = Context()
        rclpy.init(args=args, context=context)
        contexts.append(context)
        node = ReconstructNode(context=context)
        nodes.append(node)
        return node

    threads = torch.get_num_threads()
    try:
        yield _start
    finally:
        for node in nodes:
            node.destroy_node()
        for context in contexts:
            context.try_shutdown()
        torch.set_num_threads(threads)


def _wrong_version(tmp: Path, ball: Path) -> Path:
    payload = torch.load(ball, weights_only=True)
    payload["format_version"] = FORMAT_VERSION + 1
    torch.save(payload, tmp / "future.pt")
    return tmp / "future.pt"


@pytest.mark.parametrize("case, error, words", [
    ("wrong_type", NodeConfigError, "parameter 'output.mesh_alpha' must be a double in [0, 1], got 1"),
    ("out_of_range", NodeConfigError, "parameter 'tracker.meshing.threshold' must be a double"),
    ("unknown", NodeConfigError, "did you mean 'tracker.max_frames'"),
    ("bad_choice", NodeConfigError, "parameter 'precision' must be one of"),
    ("missing", CheckpointError, "parameter 'model_path': cannot load the model"),
    ("truncated", CheckpointError, "cut.pt: truncated or corrupt"),
    ("wrong_version", CheckpointError, "checkpoint format version"),
    ("absent_cuda", ModelError, "allow_cpu_fallback: true runs on the CPU"),
    ("fp16_on_cpu", ModelError, "parameter 'precision'"),
])
def test_node_refuses_to_start_with_one_clear_error(start, ball, tmp_path, case, error, words):
    cut = tmp_path / "cut.pt"
    cut.write_bytes(ball.read_bytes()[:2000])
    model = f"model_path:={ball}"
    overrides = {
        "wrong_type": [model, "output.mesh_alpha:=1"],
        "out_of_range": [model, "tracker.meshing.threshold:=1.5"],
        "unknown": [model, "tracker.max_frame:=4"],
        "bad_choice": [model, "precision:=half"],
        "missing": [f"model_path:={tmp_path}/nothing.pt"],
        "truncated": [f"model_path:={cut}"],
        "wrong_version": [f"model_path:={_wrong_version(tmp_path, ball)}"],
        "absent_cuda": [model, "device:=cuda:7"],
        "fp16_on_cpu": [model, "device:=cpu", "precision:=fp16"],
    }[case]
    with pytest.raises(error) as info:
        start(*overrides)
    assert words in str(info.value)


def test_an_empty_model_path_means_the_shipped_model(start):
    path = default_model_path()
    if path.is_file():
        assert start(*FAST_MESHING).config.model_path == path
    else:
        with pytest.raises(CheckpointError, match="the shipped model .*" + DEFAULT_MODEL_FILE):
            start()


def test_descriptors_ranges_read_only_and_run_time_output_changes(start, ball):
    node = start(f"model_path:={ball}", "device:=cuda:7", "allow_cpu_fallback:=true", *FAST_MESHING)
    assert node.get_name() == NODE_NAME and str(node.device) == "cpu", "CUDA absent: CPU fallback"
    assert node.config.tracker.meshing.resolution0 == 16
    frames = node.describe_parameter("tracker.max_frames")
    assert frames.read_only and (frames.integer_range[0].from_value,
                                 frames.integer_range[0].to_value) == (2, 100_000)
    alpha = node.describe_parameter("output.mesh_alpha")
    assert not alpha.read_only and (alpha.floating_point_range[0].from_value,
                                    alpha.floating_point_range[0].to_value) == (0.0, 1.0)
    assert "README" in node.describe_parameter("input.qos").description

    ok = node.set_parameters([Parameter("output.mesh_alpha", value=0.4),
                              Parameter("output.publish_tracked_mesh", value=False)])
    assert all(r.successful for r in ok)
    assert node.output_options.mesh_alpha == 0.4 and not node.output_options.publish_tracked_mesh
    refused = node.set_parameters([Parameter("tracker.max_frames", value=10),
                                   Parameter("output.mesh_alpha", value=2.0)])
    assert not any(r.successful for r in refused)
    assert node.output_options.mesh_alpha == 0.4 and node.config.tracker.max_frames == 60


# -- the launch file (launch / launch_ros cannot be installed here: parsed, not run) ----------------

def _calls(tree: ast.AST, name: str):
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)
            and getattr(n.func, "id", getattr(n.func, "attr", None)) == name]


def _keywords(call: ast.Call) -> Dict[str, Any]:
    return {k.arg: k.value for k in call.keywords}


def test_launch_file_declares_its_arguments_and_starts_the_installed_node_with_the_installed_config():
    source = LAUNCH_FILE.read_text()
    tree = ast.parse(source)
    assert "generate_launch_description" in {f.name for f in tree.body if isinstance(f, ast.FunctionDef)}
    declared = {c.args[0].value for c in _calls(tree, "DeclareLaunchArgument")}
    assert declared == {"params_file", "input_topic", "input_type", "depth_topic", "camera_info_topic",
                        "model", "device", "preset", "use_sim_time", "namespace", "rviz"}
    for call in _calls(tree, "DeclareLaunchArgument"):
        assert "description" in _keywords(call)
    constants = {t.id: ast.literal_eval(a.value) for a in tree.body if isinstance(a, ast.Assign)
                 for t in a.targets if isinstance(t, ast.Name) and isinstance(a.value, ast.Constant)}

    def value(node: ast.AST) -> Any:
        return constants[node.id] if isinstance(node, ast.Name) else ast.literal_eval(node)

    nodes = {value(_keywords(c)["executable"]): _keywords(c) for c in _calls(tree, "Node")}
    assert set(nodes) == {"reconstruct", "rviz2"}
    assert value(nodes["reconstruct"]["package"]) == "occflow_ros"
    assert value(nodes["reconstruct"]["name"]) == NODE_NAME
    setup = (REPO / "setup.py").read_text()
    assert '"reconstruct = occflow_ros.ros.node:main"' in setup, "the executable the launch file runs"
    # the files it names are in config/ (installed to share/occflow_ros/config by setup.py's data_files)
    for name in ("reconstruct.yaml", "occflow.rviz"):
        assert f'"{name}"' in source and (REPO / "config" / name).is_file()
    assert 'glob("config/*.yaml")' in setup and 'glob("config/*.rviz")' in setup
    assert 'glob("launch/*.launch.py")' in setup
    assert '("points", input_topic)' in source, "input_topic is remapped onto the node's points"


def test_rviz_config_shows_the_mesh_the_correspondences_by_vertex_id_and_the_input_cloud():
    config = yaml.safe_load(RVIZ_FILE.read_text())["Visualization Manager"]
    assert config["Global Options"]["Fixed Frame"] == "camera_depth_optical_frame"
    displays = {d["Topic"]["Value"]: d for d in config["Displays"] if "Topic" in d}
    mesh = displays[f"/{NODE_NAME}/mesh"]
    assert mesh["Class"] == "rviz_default_plugins/MarkerArray"
    corr = displays[f"/{NODE_NAME}/correspondences"]
    assert corr["Class"] == "rviz_default_plugins/PointCloud2"
    assert corr["Color Transformer"] == "Intensity" and corr["Channel Name"] == "vertex_id"
    launch = LAUNCH_FILE.read_text()
    (default_input,) = [c for c in _calls(ast.parse(launch), "DeclareLaunchArgument")
                        if c.args[0].value == "input_topic"]
    topic = ast.literal_eval(_keywords(default_input)["default_value"])
    assert displays[topic]["Class"] == "rviz_default_plugins/PointCloud2"
    assert displays[topic]["Topic"]["Reliability Policy"] == "Best Effort"
