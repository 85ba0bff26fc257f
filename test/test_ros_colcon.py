"""The repository built as a ROS user builds it: cloned into a colcon workspace's src/, both
packages (occflow_ros, and occflow_ros_msgs in msg/) built by colcon with ament_cmake from the ROS
wheels, the install space sourced, and the node launched from there by package name."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid

import pytest
from conftest import REPO
from test_ros_launch import Launched, fast_params, ros2


def clone_into(src) -> None:
    """What `git clone` would give: the tracked and not-ignored files, no build outputs."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO,
                           check=True, capture_output=True).stdout.decode().split("\0")
    target = src / "occflow_ros"
    target.mkdir(parents=True)
    for name in filter(None, files):
        if (REPO / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, target / name)


@pytest.mark.slow
def test_colcon_builds_both_packages_and_the_node_runs_from_the_install_space(
        tmp_path, make_node, spin_until):
    ros2()
    colcon = shutil.which("colcon")
    assert colcon, "colcon is in requirements-dev.txt: tools/setup.sh installs it"
    ws = tmp_path / "ws"
    clone_into(ws / "src")
    venv = sys.prefix
    env = dict(os.environ, AMENT_PREFIX_PATH=venv, CMAKE_PREFIX_PATH=venv)
    build = subprocess.run(
        [colcon, "build", "--base-paths", "src", "src/occflow_ros/msg", "--cmake-args",
         "-DBUILD_TESTING=OFF", f"-DPython3_EXECUTABLE={sys.executable}"],
        cwd=ws, env=env, capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
    assert "2 packages finished" in build.stdout, build.stdout[-2000:]
    install = ws / "install"
    assert (install / "occflow_ros" / "lib" / "occflow_ros" / "reconstruct").is_file()
    assert (install / "occflow_ros" / "share" / "occflow_ros" / "launch"
            / "reconstruct.launch.py").is_file()

    params = fast_params(tmp_path / "fast.yaml")
    ns = f"/colcon_test_{uuid.uuid4().hex[:8]}"
    topic = f"{ns}/camera/points"
    sourced = f". {install / 'setup.bash'} && "
    where = subprocess.run(
        ["bash", "-c", sourced + "python -c 'import occflow_ros, occflow_ros_msgs.msg as m; "
         "from occflow_ros.ros.params_file import shipped_config as c; "
         "print(occflow_ros.__file__); print(m.__file__); "
         "print(c(\"reconstruct.yaml\")); print(c(\"fastdds_shm.xml\"))'"],
        cwd=ws, env=env, capture_output=True, text=True, timeout=60)
    assert where.returncode == 0, where.stderr
    # the package, its messages and the config files the demo needs: all from the install space
    lines = where.stdout.split()
    assert len(lines) == 4 and all(line.startswith(str(install)) for line in lines), where.stdout
    # the shipped model from the install space (no model argument)
    run = Launched(["bash", "-c", sourced + "exec ros2 launch occflow_ros reconstruct.launch.py "
                    f"params_file:={params} input_topic:={topic} device:=cpu namespace:={ns}"],
                   tmp_path / "launch.log", cwd=ws, env=env)
    try:
        run.wait_ready()
        assert f"model {install}/occflow_ros/" in run.log(), run.log()
        run.stream(make_node, spin_until, ns, topic, lambda t: len(t) >= 3, timeout=60)
        rc = run.interrupt()
    finally:
        run.kill()
    assert rc == 0 and "[reconstruct-1]: process has finished cleanly" in run.log(), run.log()


def test_the_clone_holds_what_colcon_needs(tmp_path):
    """The files the build above uses are tracked (a fresh clone has them)."""
    clone_into(tmp_path)
    root = tmp_path / "occflow_ros"
    for name in ("package.xml", "setup.py", "setup.cfg", "resource/occflow_ros", "msg/package.xml",
                 "msg/CMakeLists.txt", "msg/TrackedMesh.msg", "launch/reconstruct.launch.py",
                 "config/reconstruct.yaml", "occflow_ros/weights/occflow_default.pt"):
        assert (root / name).is_file(), name
    assert not (root / ".venv").exists() and not (root / "build").exists()
