"""Parameter files and -p values typed as rcl types them, checked against rcl itself."""

from __future__ import annotations

import pytest

from occflow_ros.cli import _param_overrides
from occflow_ros.ros.node_config import node_config_from_parameters
from occflow_ros.ros.params_file import load_params_file, ros_yaml_load

SCALARS = {"exp_no_dot": "1e-5", "exp_no_sign": "1.0e5", "upper_exp": "2E3", "signed": "-1e-5",
           "plain_float": "0.25", "integer": "7", "flag": "true", "word": "points",
           "quoted_number": "'1e-5'", "trailing_dot": "5."}


def test_scalars_get_the_types_rcl_gives_them(tmp_path, ros_context):
    """The same file read by rcl (a node with --params-file) and by load_params_file."""
    import rclpy
    from rclpy.node import Node

    path = tmp_path / "p.yaml"
    path.write_text("/**:\n  ros__parameters:\n"
                    + "".join(f"    {k}: {v}\n" for k, v in SCALARS.items()))
    ours = load_params_file(path)
    node = Node("occflow_reconstruct", context=ros_context,
                cli_args=["--ros-args", "--params-file", str(path)],
                automatically_declare_parameters_from_overrides=True)
    try:
        for name in SCALARS:
            theirs = node.get_parameter(name).value
            assert type(ours[name]) is type(theirs) and ours[name] == theirs, \
                (name, ours[name], theirs)
    finally:
        node.destroy_node()
    assert rclpy.ok(context=ros_context)


def test_a_file_that_works_for_the_node_works_for_the_replay(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("/**:\n  ros__parameters:\n    tracker:\n      solver:\n"
                    "        atol: 1e-5\n        rtol: 1.0e-3\n")
    config = node_config_from_parameters(load_params_file(path))
    assert config.tracker.solver.atol == pytest.approx(1e-5)
    assert config.tracker.solver.rtol == pytest.approx(1e-3)
    assert _param_overrides(["tracker.solver.atol:=1e-5", "input.type:=depth"]) == {
        "tracker.solver.atol": 1e-5, "input.type": "depth"}
    assert ros_yaml_load("[1e-5, 2]") == [1e-5, 2]
