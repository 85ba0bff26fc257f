"""The repository built as a ROS user builds it: cloned into a colcon workspace's src/, both
packages (occflow_ros, and occflow_ros_msgs in msg/) built by colcon with ament_cmake from the ROS
wheels, the install space sourced, and the node launched from there by package name."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid

import pytest
import yaml
from conftest import REPO
from node_peer import FRAME_ID, sphere_message, sweep_time
from occflow_ros_msgs.msg import TrackedMesh
from rclpy.qos import QoSHistoryPolicy, QoSProfile, QoSReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import PointCloud2
from test_ros_launch import FAST_PARAMS, ros2

RELIABLE = QoSProfile(history=QoSHistoryPolicy.KEEP_LAST, depth=10,
                      reliability=QoSReliabilityPolicy.RELIABLE)


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

    params = tmp_path / "fast.yaml"
    params.write_text(yaml.safe_dump({"/**": {"ros__parameters": FAST_PARAMS}}))
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
    log_path = tmp_path / "launch.log"
    with open(log_path, "wb") as log:
        # the shipped model from the install space (no model argument)
        proc = subprocess.Popen(
            ["bash", "-c", sourced + f"exec ros2 launch occflow_ros reconstruct.launch.py "
             f"params_file:={params} input_topic:={topic} device:=cpu namespace:={ns}"],
            cwd=ws, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def text() -> str:
        return log_path.read_text(errors="replace")

    try:
        deadline = time.monotonic() + 120
        while "ready:" not in text() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "ready:" in text(), text()
        assert f"model {install}/occflow_ros/" in text(), text()
        tester = make_node(f"colcon_tester_{uuid.uuid4().hex[:8]}")
        tracked: list = []
        tester.create_subscription(TrackedMesh, f"{ns}/occflow_reconstruct/tracked_mesh",
                                   tracked.append, RELIABLE)
        publisher = tester.create_publisher(PointCloud2, topic, qos_profile_sensor_data)
        start = tester.get_clock().now().nanoseconds

        def send() -> None:
            now = tester.get_clock().now().nanoseconds
            publisher.publish(sphere_message(now, sweep_time((now - start) / 1e9), FRAME_ID))

        tester.create_timer(1 / 30, send)
        assert spin_until([tester], lambda: len(tracked) >= 3, timeout=60), text()
        os.killpg(proc.pid, signal.SIGINT)
        rc = proc.wait(timeout=15)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert rc == 0 and "[reconstruct-1]: process has finished cleanly" in text(), text()


def test_the_clone_holds_what_colcon_needs(tmp_path):
    """The files the build above uses are tracked (a fresh clone has them)."""
    clone_into(tmp_path)
    root = tmp_path / "occflow_ros"
    for name in ("package.xml", "setup.py", "setup.cfg", "resource/occflow_ros", "msg/package.xml",
                 "msg/CMakeLists.txt", "msg/TrackedMesh.msg", "launch/reconstruct.launch.py",
                 "config/reconstruct.yaml", "occflow_ros/weights/occflow_default.pt"):
        assert (root / name).is_file(), name
    assert not (root / ".venv").exists() and not (root / "build").exists()
