"""The one helper that starts the node as a process, and the one place that keeps DDS local."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO

from occflow_ros.apps.node_process import NodeProcess, NodeProcessError, format_parameter
from occflow_ros.ros.dds import CHECKOUT_PROFILE, DDS_VARIABLES as DDS, local_dds_environment


def test_dds_settings_fill_what_the_caller_left_unset_and_keep_the_rest():
    env = local_dds_environment({"ROS_DOMAIN_ID": "7", "PATH": "/bin"}, profile=Path("/p.xml"))
    assert env["ROS_DOMAIN_ID"] == "7" and env["PATH"] == "/bin"
    assert env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    assert env["FASTDDS_DEFAULT_PROFILES_FILE"] == "/p.xml"
    assert env["RMW_IMPLEMENTATION"] == "rmw_fastrtps_cpp"
    fresh = local_dds_environment({})
    assert 1 <= int(fresh["ROS_DOMAIN_ID"]) <= 100
    assert fresh["FASTDDS_DEFAULT_PROFILES_FILE"] == str(CHECKOUT_PROFILE) and CHECKOUT_PROFILE.is_file()


def test_tools_env_sh_sets_the_same_settings_from_the_same_place():
    clean = {k: v for k, v in os.environ.items() if k not in DDS}
    out = subprocess.run(["bash", "-c", ". tools/env.sh && env"], capture_output=True, text=True,
                         cwd=REPO, env=clean, check=True).stdout
    got = dict(line.split("=", 1) for line in out.splitlines() if line.split("=", 1)[0] in DDS)
    assert got["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    assert got["FASTDDS_DEFAULT_PROFILES_FILE"] == str(CHECKOUT_PROFILE)
    assert got["RMW_IMPLEMENTATION"] == "rmw_fastrtps_cpp" and 1 <= int(got["ROS_DOMAIN_ID"]) <= 100


def test_parameters_are_written_as_rclpy_reads_them():
    assert [format_parameter(v) for v in (True, 3, np.int64(4), 2.0, np.float32(0.5), 1e-5, "x")] == [
        "true", "3", "4", "2.0", "0.5", "1e-05", "x"]
    assert format_parameter([1, 2.5]) == "[1.0, 2.5]"


def test_a_node_that_cannot_start_is_reported_with_the_reason_from_its_log(tmp_path):
    missing = tmp_path / "no_such_model.pt"
    node = NodeProcess(tmp_path / "node.log", params_file=REPO / "config" / "reconstruct.yaml",
                       parameters={"model_path": str(missing), "device": "cpu"})
    try:
        with pytest.raises(NodeProcessError, match="exited with status") as caught:
            node.wait_ready(120)
        assert str(missing) in str(caught.value)  # the node's own message, from its log's tail
        assert not node.alive() and node.stop() != 0
    finally:
        node.kill()
