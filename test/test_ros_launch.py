"""`ros2 launch occflow_ros reconstruct.launch.py` for real: found by package name, the node started
from lib/occflow_ros with the launch arguments, clouds in, tracked meshes out, a clean Ctrl-C; and the
rviz:=true path as far as it goes without RViz (its command line, and a config that shows the
node's outputs and the default input)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import uuid

import pytest
import yaml
from conftest import REPO, SHARED
from node_peer import FRAME_ID, save_ball_checkpoint, sphere_message, sweep_time
from occflow_ros_msgs.msg import TrackedMesh
from rclpy.qos import QoSHistoryPolicy, QoSProfile, QoSReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import PointCloud2

from occflow_ros.apps.node_process import NodeProcess

RELIABLE = QoSProfile(history=QoSHistoryPolicy.KEEP_LAST, depth=10,
                      reliability=QoSReliabilityPolicy.RELIABLE)
# small keyframes and the test model's own field: a few segments a second on any CPU
FAST_PARAMS = {"threads": 1, "tracker": {
    "max_frames": 4, "residual_threshold": 0.0, "deformation": {"enabled": False},
    "meshing": {"resolution0": 16, "upsampling_steps": 1, "target_vertices": 0}},
    "input": {"depth": 10}}


def ros2() -> str:
    """The ros2 command; where the launch system is not installed (no ../shared/ros2 beside the
    clone, so tools/setup.sh did not install it), a skip naming that, or a failure on CI."""
    found = shutil.which("ros2")
    if found and importlib.util.find_spec("launch_ros") is not None:
        return found
    message = (f"ros2 launch is not installed: tools/setup.sh installs it from {SHARED / 'ros2'} "
               "(not beside this clone), a ROS install has it")
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


class Launched(NodeProcess):
    """A `ros2 launch` (or any) command in its own process group, its output in a log file (the
    project's NodeProcess): wait until the node is ready, stream the sphere to it and collect its
    TrackedMesh messages, then Ctrl-C it the way a terminal does (SIGINT to the whole group)."""

    def __init__(self, argv, log_path, *, cwd, env=None) -> None:
        super().__init__(log_path, command=argv, cwd=cwd, env=dict(env or os.environ), group=True)

    def wait_ready(self, timeout: float = 120.0) -> None:
        super().wait_ready(timeout)

    def stream(self, make_node, spin_until, ns: str, topic: str, enough, timeout: float = 40.0):
        """Publish the sphere on ``topic`` at 30 Hz until ``enough(tracked)``; the TrackedMesh
        messages of the node in ``ns``."""
        tester = make_node(f"launch_tester_{uuid.uuid4().hex[:8]}")
        tracked: list = []
        tester.create_subscription(TrackedMesh, f"{ns}/occflow_reconstruct/tracked_mesh",
                                   tracked.append, RELIABLE)
        publisher = tester.create_publisher(PointCloud2, topic, qos_profile_sensor_data)
        start = tester.get_clock().now().nanoseconds

        def send() -> None:
            now = tester.get_clock().now().nanoseconds
            publisher.publish(sphere_message(now, sweep_time((now - start) / 1e9), FRAME_ID))

        tester.create_timer(1 / 30, send)
        assert spin_until([tester], lambda: enough(tracked), timeout=timeout), self.log()
        return tracked

    def interrupt(self, timeout: float = 15.0) -> int:
        return self.stop(timeout)


def fast_params(path):
    """A parameters file with FAST_PARAMS for every node."""
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": FAST_PARAMS}}))
    return path


def test_ros2_launch_by_package_name_tracks_a_stream_and_stops_cleanly_on_ctrl_c(
        tmp_path, make_node, spin_until):
    command = ros2()
    model = save_ball_checkpoint(tmp_path / "ball.pt")
    params = fast_params(tmp_path / "fast.yaml")
    ns = f"/launch_test_{uuid.uuid4().hex[:8]}"
    topic = f"{ns}/camera/points"
    run = Launched([command, "launch", "occflow_ros", "reconstruct.launch.py",
                    f"params_file:={params}", f"input_topic:={topic}", f"model:={model}",
                    "device:=cpu", f"namespace:={ns}"], tmp_path / "launch.log", cwd=tmp_path)
    try:
        run.wait_ready()
        tracked = run.stream(make_node, spin_until, ns, topic,
                             lambda t: len({m.keyframe_id for m in t}) >= 2 and len(t) >= 6)
        assert all(m.header.frame_id == FRAME_ID for m in tracked)
        assert not tracked[0].topology_changed or tracked[0].keyframe_id == 0
        assert any(not m.topology_changed for m in tracked), "no tracked frame between keyframes"
        rc = run.interrupt()
    finally:
        run.kill()
    text = run.log()
    assert rc == 0, text
    assert "shut down cleanly" in text, text
    assert "[reconstruct-1]: process started" in text  # lib/occflow_ros/reconstruct, found by launch_ros
    assert "[reconstruct-1]: process has finished cleanly" in text, text


def _launch_actions(**arguments):
    """The actions reconstruct.launch.py makes for these arguments (launch's own machinery, nothing
    started): its declared defaults, then the given values, then its opaque function."""
    from launch import LaunchContext
    from launch.actions import DeclareLaunchArgument, OpaqueFunction

    spec = importlib.util.spec_from_file_location("reconstruct_launch",
                                                  REPO / "launch" / "reconstruct.launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    context = LaunchContext()
    for entity in description.entities:
        if isinstance(entity, DeclareLaunchArgument):
            context.launch_configurations[entity.name] = arguments.get(
                entity.name, "".join(s.perform(context) for s in entity.default_value))
    (opaque,) = [e for e in description.entities if isinstance(e, OpaqueFunction)]
    return opaque.execute(context), context


def test_rviz_true_starts_rviz_with_the_shipped_config_that_shows_the_nodes_outputs():
    ros2()
    actions, context = _launch_actions(rviz="true", namespace="/cam1")
    assert [a.node_executable for a in actions] == ["reconstruct", "rviz2"]
    node, rviz = actions
    rviz._perform_substitutions(context)
    # its command line: rviz2's executable (not installed here: described, not resolved), then -d
    (executable,) = rviz.cmd[0]
    assert "rviz2" in executable.describe()
    arguments = ["".join(x.perform(context) for x in part) for part in rviz.cmd[1:3]]
    assert arguments[0] == "-d" and arguments[1].endswith("share/occflow_ros/config/occflow.rviz")
    assert os.path.isfile(arguments[1])
    node._perform_substitutions(context)
    assert node.expanded_node_namespace == "/cam1"
    remaps = dict(node.expanded_remapping_rules)
    assert remaps["points"] == "/camera/camera/depth/color/points"  # realsense-ros 4.x
    assert remaps["depth"] == "/camera/camera/depth/image_rect_raw"
    assert remaps["camera_info"] == "/camera/camera/depth/camera_info"
    config = yaml.safe_load(open(arguments[1]))["Visualization Manager"]
    topics = {d["Topic"]["Value"] for d in config["Displays"] if "Topic" in d}
    assert {"/occflow_reconstruct/mesh", "/occflow_reconstruct/correspondences",
            remaps["points"]} <= topics
    assert config["Global Options"]["Fixed Frame"] == "camera_depth_optical_frame"
    without, _ = _launch_actions()
    assert [a.node_executable for a in without] == ["reconstruct"]
