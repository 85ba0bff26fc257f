"""The reconstruct node started as users start it (its own process, real Fast DDS): outputs, bad
input, bad setup, shutdown.

The node runs ``python -m occflow_ros.ros.node --ros-args --params-file config/reconstruct.yaml ...`` with
the ball-and-drift network of test/analytic_models.py saved as a checkpoint (a trained model does not
exist yet), and this process streams a ray-cast sphere as organized PointCloud2 (NaN and zero pixels
included) at ~30 Hz and listens to what the node publishes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np
import pytest
from conftest import REPO
from diagnostic_msgs.msg import DiagnosticArray
from node_peer import FRAME_ID, save_ball_checkpoint, save_faulty_checkpoint, sphere_message, sweep_time
from occflow_ros_msgs.msg import TrackedMesh
from rclpy.qos import QoSHistoryPolicy, QoSProfile, QoSReliabilityPolicy, qos_profile_sensor_data
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import PointCloud2
from visualization_msgs.msg import Marker, MarkerArray

from occflow_ros.apps.node_process import NodeProcess
from occflow_ros.ros import read_tracked_mesh_msg
from occflow_ros.ros.conversions import stamp_to_ns

RELIABLE = QoSProfile(history=QoSHistoryPolicy.KEEP_LAST, depth=10,
                      reliability=QoSReliabilityPolicy.RELIABLE)
SWEEP = 2.0  # seconds of one left-to-right sweep of the sphere (then it jumps back)
# coarse keyframes (~50 ms here) and a keyframe every 4 frames: several segments per second; the
# test models' own velocity fields carry the mesh (they know the sphere's motion exactly, and the
# faulty one fails inside it); the default deformation graph runs in the node in test_ros_demo.py
FAST = [
    "-p", "tracker.deformation.enabled:=false", "-p", "threads:=1", "-p", "device:=cpu", "-p", "tracker.max_frames:=4",
    "-p", "tracker.residual_threshold:=0.0", "-p", "tracker.meshing.resolution0:=16",
    "-p", "tracker.meshing.upsampling_steps:=1", "-p", "tracker.meshing.target_vertices:=0",
    "-p", "input.depth:=10", "-p", "input.max_jump_seconds:=2.0", "-p", "diagnostics.period:=0.2",
    "-p", "log_period:=1.0",
]


def start_node(tmp: Path, model: Path, name: str, *extra: str, ns: Optional[str] = None
               ) -> NodeProcess:
    ns = ns or f"/occflow_test_{uuid.uuid4().hex[:8]}"
    node = NodeProcess(tmp / f"{name}.log", params_file=REPO / "config" / "reconstruct.yaml",
                       ros_args=["-p", f"model_path:={model}", "-r", f"__ns:={ns}",
                                 "-r", f"points:={ns}/camera/points", *FAST, *extra],
                       env=os.environ, cwd=REPO)
    node.ns = ns
    node.input_topic = f"{ns}/camera/points"
    node.model = model
    return node


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    return save_ball_checkpoint(tmp_path_factory.mktemp("model") / "ball.pt")


@pytest.fixture(scope="module")
def running_node(tmp_path_factory, model_file):
    """One node process shared by the streaming tests (the last test stops it with SIGTERM)."""
    node = start_node(tmp_path_factory.mktemp("node"), model_file, "node")
    try:
        assert node.wait_for("ready:", 90), f"node did not start:\n{node.log()}"
        yield node
    finally:
        node.kill()


def diagnostics_of(msg: DiagnosticArray, ns: str) -> Optional[Dict[str, str]]:
    """The key/values of our node's status in a DiagnosticArray (other nodes' statuses ignored)."""
    for status in msg.status:
        if status.name == f"occflow_ros: {ns}/occflow_reconstruct":
            return {"message": status.message, **{kv.key: kv.value for kv in status.values}}
    return None


class Session:
    """A listener node in this process: streams the sphere to the node under test and records its outputs."""

    def __init__(self, make_node, spin_until, node: NodeProcess) -> None:
        self.spin_until, self.target = spin_until, node
        self.ros = make_node(f"tester_{uuid.uuid4().hex[:8]}")
        out = f"{node.ns}/occflow_reconstruct"
        self.markers: List[bytes] = []
        self.correspondences: List[PointCloud2] = []
        self.tracked: List[TrackedMesh] = []
        self.input_correspondences: List[PointCloud2] = []
        self.diagnostics: List[Dict[str, str]] = []
        self.ros.create_subscription(MarkerArray, f"{out}/mesh", self.markers.append, RELIABLE, raw=True)
        self.ros.create_subscription(PointCloud2, f"{out}/correspondences", self.correspondences.append,
                                     RELIABLE)
        self.ros.create_subscription(TrackedMesh, f"{out}/tracked_mesh", self.tracked.append, RELIABLE)
        self.ros.create_subscription(PointCloud2, f"{out}/input_correspondences",
                                     self.input_correspondences.append, RELIABLE)
        self.ros.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        self.publisher = self.ros.create_publisher(PointCloud2, node.input_topic, qos_profile_sensor_data)
        self.rng = np.random.default_rng(0)
        self.start_ns = self.ros.get_clock().now().nanoseconds
        self.sent: Dict[int, str] = {}  # stamp ns -> frame_id of every cloud sent
        self.streaming = True
        self.frame_id = FRAME_ID
        self.stamp_offset_ns = 0
        self.ros.create_timer(1 / 30, self._tick)

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        values = diagnostics_of(msg, self.target.ns)
        if values is not None:
            self.diagnostics.append(values)

    def elapsed(self, stamp_ns: int) -> float:
        return (stamp_ns - self.start_ns) / 1e9

    def send(self, *, frame_id: Optional[str] = None) -> int:
        """Publish the sphere now (stamp: this node's clock + stamp_offset_ns); returns the stamp in ns."""
        now = self.ros.get_clock().now().nanoseconds
        stamp = now + self.stamp_offset_ns
        frame = frame_id or self.frame_id
        self.publisher.publish(sphere_message(stamp, sweep_time(self.elapsed(now), SWEEP), frame,
                                              rng=self.rng))
        self.sent[stamp] = frame
        return stamp

    def _tick(self) -> None:
        if self.streaming:
            self.send()

    def spin(self, predicate: Callable[[], bool], timeout: float = 30.0) -> bool:
        return self.spin_until([self.ros], lambda: predicate() or self.target.proc.poll() is not None,
                               timeout=timeout) and self.target.proc.poll() is None

    def last_diagnostics(self) -> Dict[str, str]:
        return self.diagnostics[-1] if self.diagnostics else {}

    def count(self, key: str) -> int:
        return int(self.last_diagnostics().get(key, "0"))

    def fresh_diagnostics(self, timeout: float = 10.0) -> Dict[str, str]:
        """The first status published after now (counters read before may be stale)."""
        n = len(self.diagnostics)
        assert self.spin(lambda: len(self.diagnostics) > n, timeout), self.target.log()
        return self.diagnostics[-1]

    def assert_sent_header(self, header) -> None:
        stamp = stamp_to_ns(header.stamp)
        assert stamp in self.sent, f"output stamp {stamp} is not the stamp of any cloud sent"
        assert header.frame_id == self.sent[stamp]


def test_node_publishes_every_output_with_the_input_header_and_vertex_ids_that_persist(
        running_node, make_node, spin_until):
    s = Session(make_node, spin_until, running_node)

    def segments() -> List[List[TrackedMesh]]:
        groups: List[List[TrackedMesh]] = []
        for msg in s.tracked:
            if groups and groups[-1][0].keyframe_id == msg.keyframe_id:
                groups[-1].append(msg)
            else:
                groups.append([msg])
        return groups

    def enough() -> bool:
        multi = [g for g in segments() if len(g) >= 2]
        return (len(multi) >= 3 and bool(s.markers) and bool(s.correspondences)
                and bool(s.input_correspondences)
                and int(s.last_diagnostics().get("frames_processed", "0")) > 0)

    assert s.spin(enough, timeout=40), (
        f"outputs: {len(s.markers)} markers, {len(s.correspondences)} correspondences, {len(s.tracked)} "
        f"tracked meshes, {len(s.input_correspondences)} input correspondences, diagnostics "
        f"{s.last_diagnostics()}\nnode log:\n{running_node.log()}")

    # the mesh marker: one TRIANGLE_LIST with per-corner colours, in the input cloud's frame and stamp
    marker_array = deserialize_message(s.markers[-1], MarkerArray)
    (mesh_marker,) = [m for m in marker_array.markers if m.action == Marker.ADD]
    s.assert_sent_header(mesh_marker.header)
    assert mesh_marker.type == Marker.TRIANGLE_LIST
    assert len(mesh_marker.points) > 0 and len(mesh_marker.points) % 3 == 0
    assert len(mesh_marker.colors) == len(mesh_marker.points)

    for cloud in s.correspondences + s.input_correspondences:
        s.assert_sent_header(cloud.header)
    assert {"x", "y", "z", "vertex_id", "x0", "y0", "z0"} <= {f.name for f in s.correspondences[-1].fields}
    assert s.correspondences[-1].width > 0
    assert {"x", "y", "z", "xk", "yk", "zk"} <= {f.name for f in s.input_correspondences[-1].fields}
    assert s.input_correspondences[-1].width > 0

    for msg in s.tracked:
        s.assert_sent_header(msg.header)
    groups = segments()
    for group in groups:  # within a keyframe segment: same topology and ids, vertices move
        first = read_tracked_mesh_msg(group[0])
        for msg in group[1:]:
            arrays = read_tracked_mesh_msg(msg)
            assert np.array_equal(arrays.vertex_ids, first.vertex_ids)
            assert np.array_equal(arrays.triangles, first.triangles)
            if stamp_to_ns(msg.header.stamp) != stamp_to_ns(group[0].header.stamp):
                assert not np.array_equal(arrays.vertices, first.vertices), "vertices did not move"
    # across keyframes of one sweep (the sphere is where the tracked mesh is): most ids carry over
    carried = 0
    for before, after in zip(groups, groups[1:]):
        t0, t1 = (s.elapsed(stamp_to_ns(g[0].keyframe_stamp)) for g in (before, after))
        if int(t0 // SWEEP) != int(t1 // SWEEP):
            continue  # the sphere jumped back between these keyframes: new surface, new ids
        old = read_tracked_mesh_msg(before[-1]).vertex_ids
        new = read_tracked_mesh_msg(after[0]).vertex_ids
        assert np.isin(new, old).mean() >= 0.5, "a new keyframe did not inherit the tracked ids"
        carried += 1
    assert carried >= 1, "no two consecutive keyframes of one sweep were received"
    assert len({m.keyframe_id for m in s.tracked}) >= 3, "at least two keyframes after the first"

    d = s.fresh_diagnostics()
    assert d["device"] == "cpu" and d["model_path"] == str(running_node.model)
    assert int(d["frames_processed"]) > 0 and int(d["keyframes"]) >= 3
    assert float(d["processed_rate_hz"]) > 0 and float(d["input_rate_hz"]) > 0
    assert 0 < float(d["latency_p50_ms"]) <= float(d["latency_p95_ms"])
    assert d["input_topic"] == running_node.input_topic
    log = running_node.log()
    assert f"input: {running_node.input_topic} (sensor_msgs/PointCloud2), QoS sensor_data" in log
    assert "best effort" in log and "README, 'DDS and large clouds'" in log
    assert "warm-up on cpu: keyframe" in log and "tracker reset" in log


def test_the_cpu_preset_fills_in_what_the_parameters_leave_unset_and_the_log_says_so(
        running_node, make_node, spin_until):
    """No CUDA here: preset auto is the CPU preset. The test's -p values win over it
    (tracker.meshing.resolution0 16, not the preset's 12); what they leave unset comes from it
    (tracker.solver.method midpoint; config/reconstruct.yaml leaves it to the preset)."""
    from rclpy.parameter_client import AsyncParameterClient

    log = running_node.log()
    assert "preset cpu (auto: no CUDA device): " in log, log
    (line,) = [x for x in log.splitlines() if "preset cpu (auto" in x]
    assert "tracker.solver.method midpoint" in line and "tracker.meshing.resolution0" in line
    assert line.index("tracker.meshing.resolution0") > line.index("given explicitly:")
    probe = make_node(f"param_probe_{uuid.uuid4().hex[:8]}")
    client = AsyncParameterClient(probe, f"{running_node.ns}/occflow_reconstruct")
    assert spin_until([probe], lambda: client.services_are_ready(), timeout=10)
    future = client.get_parameters(["tracker.solver.method", "tracker.meshing.resolution0",
                                    "preset"])
    assert spin_until([probe], future.done, timeout=10)
    values = [v.string_value or v.integer_value for v in future.result().values]
    assert values == ["midpoint", 16, "auto"], values


def test_malformed_and_undecodable_messages_are_rejected_counted_and_the_next_good_frame_is_processed(
        running_node, make_node, spin_until):
    s = Session(make_node, spin_until, running_node)
    s.streaming = False
    base = int(s.fresh_diagnostics().get("rejected_messages", "0"))

    bad = sphere_message(s.ros.get_clock().now().nanoseconds, 0.0)
    bad.fields = [f for f in bad.fields if f.name != "z"]  # a cloud without z
    garbage = b"\x00\x01\x00\x00" + bytes(range(256)) * 4  # not a PointCloud2 at all
    for message, words in ((bad, "has no field 'z'"), (garbage, "not a decodable")):
        # send until the node has taken it (a newer message would replace it in the node's mailbox)
        sent_at = [0.0]

        def taken(message=message, words=words) -> bool:
            if time.monotonic() - sent_at[0] > 0.3:
                s.publisher.publish(message)
                sent_at[0] = time.monotonic()
            return words in s.last_diagnostics().get("last_rejection", "")

        assert s.spin(taken, timeout=20), f"{words!r} never rejected:\n{running_node.log()}"
    assert s.count("rejected_messages") >= base + 2

    s.streaming = True  # the node keeps going
    after = s.ros.get_clock().now().nanoseconds
    assert s.spin(lambda: any(stamp_to_ns(m.header.stamp) > after for m in s.tracked), timeout=20), \
        running_node.log()
    log = running_node.log()
    assert "rejected a message on" in log and "has no field 'z'" in log
    assert running_node.proc.poll() is None


def test_frame_change_and_stamps_back_or_far_ahead_reset_the_tracker_and_processing_goes_on(
        running_node, make_node, spin_until):
    s = Session(make_node, spin_until, running_node)
    base = int(s.fresh_diagnostics().get("resets", "0"))

    def reset_and_output(words: str, resets: int) -> None:
        """Wait for a reset saying ``words`` and for an output of a cloud sent after the change."""
        before = set(s.sent)

        def done() -> bool:
            d = s.last_diagnostics()
            new = [m for m in s.tracked if stamp_to_ns(m.header.stamp) not in before]
            return (words in d.get("last_reset", "") and int(d.get("resets", "0")) >= resets
                    and bool(new) and all(m.header.frame_id == s.frame_id for m in new))

        assert s.spin(done, timeout=20), f"{words!r}: {s.last_diagnostics()}\n{running_node.log()}"

    s.frame_id = "other_camera_frame"
    reset_and_output("frame_id changed from 'camera_depth_optical_frame' to 'other_camera_frame'",
                     base + 1)
    s.stamp_offset_ns = -5 * 10**9
    reset_and_output("stamp went backwards", base + 2)
    s.stamp_offset_ns = 0  # +5 s: more than input.max_jump_seconds (2 s)
    reset_and_output("stamp jumped ahead", base + 3)
    assert "tracker reset" in running_node.log()


def test_the_reset_service_restarts_the_tracker_with_a_new_run_and_the_messages_say_so(
        running_node, make_node, spin_until):
    """~/reset (std_srvs/Trigger): the next frame is a keyframe of a new run (TrackedMesh.run
    grows, keyframe_id starts again at 0, topology_changed on it); diagnostics count the reset."""
    from std_srvs.srv import Trigger

    s = Session(make_node, spin_until, running_node)
    assert s.spin(lambda: len(s.tracked) >= 3, timeout=30), running_node.log()
    run, resets = s.tracked[-1].run, int(s.fresh_diagnostics().get("resets", "0"))
    client = s.ros.create_client(Trigger, f"{running_node.ns}/occflow_reconstruct/reset")
    assert s.spin(client.service_is_ready, timeout=10), "no ~/reset service"
    future = client.call_async(Trigger.Request())
    assert s.spin(future.done, timeout=10)
    assert future.result().success and "keyframe" in future.result().message
    asked = len(s.tracked)
    assert s.spin(lambda: any(m.run > run for m in s.tracked[asked:]), timeout=20), \
        running_node.log()
    first = next(m for m in s.tracked[asked:] if m.run > run)
    assert first.keyframe_id == 0 and first.topology_changed
    before = [m for m in s.tracked[:asked] if m.run == run]
    assert not all(m.topology_changed for m in before)  # tracked frames between keyframes
    for a, b in zip(before, before[1:]):
        same = np.array_equal(read_tracked_mesh_msg(a).triangles, read_tracked_mesh_msg(b).triangles)
        assert b.topology_changed == (not same or b.keyframe_id != a.keyframe_id)
    assert s.spin(lambda: int(s.last_diagnostics().get("resets", "0")) >= resets + 1
                  and "~/reset" in s.last_diagnostics().get("last_reset", ""), timeout=10), \
        s.diagnostics[-3:]
    assert "reset requested (~/reset): tracker reset" in running_node.log()


def test_a_burst_keeps_only_the_newest_cloud_and_counts_the_replaced_ones_as_dropped(
        running_node, make_node, spin_until):
    s = Session(make_node, spin_until, running_node)
    s.streaming = False
    base = int(s.fresh_diagnostics().get("dropped_frames", "0"))
    burst = [s.send() for _ in range(8)]  # back to back: far faster than the node processes them
    assert s.spin(lambda: any(stamp_to_ns(m.header.stamp) == burst[-1] for m in s.tracked), 20), \
        running_node.log()
    assert s.spin(lambda: s.count("dropped_frames") > base, timeout=10)
    processed = {stamp_to_ns(m.header.stamp) for m in s.tracked} & set(burst)
    assert len(processed) < len(burst), "every cloud of the burst was processed: nothing was dropped"


def test_sigterm_stops_the_node_within_2_s_with_exit_code_0(running_node, make_node, spin_until):
    s = Session(make_node, spin_until, running_node)
    n = len(s.tracked)
    assert s.spin(lambda: len(s.tracked) > n + 3, timeout=20), running_node.log()  # busy: streaming
    started = time.monotonic()
    running_node.proc.send_signal(signal.SIGTERM)
    s.spin_until([s.ros], lambda: running_node.proc.poll() is not None, timeout=10)
    took = time.monotonic() - started
    assert running_node.proc.poll() == 0, running_node.log()
    assert took < 2.0, f"took {took:.2f} s to stop"
    assert "shut down cleanly" in running_node.log()


# -- start-up failures: one clear error line and a non-zero exit ------------------------------------

# The process-level cases: exit status and the single error line. Every other bad parameter is refused
# by the same code paths, tested in-process in test_ros_node_config.py.
BAD_STARTS = {
    # case: (extra ros args, exit status, words the error line must contain)
    "missing_model": (["-p", "model_path:={tmp}/missing.pt"], 1,
                      ["parameter 'model_path'", "missing.pt: no such checkpoint file"]),
    "truncated_model": (["-p", "model_path:={tmp}/cut.pt"], 1,
                        ["parameter 'model_path'", "cut.pt: truncated or corrupt"]),
    "model_of_another_version": (["-p", "model_path:={tmp}/future.pt"], 1,
                                 ["parameter 'model_path'", "future.pt: checkpoint format version 2; "
                                  "this occflow_ros reads version 1"]),
    # the ball model was trained for 256 input points; model_input_points says what the setup expects
    "model_for_another_input_size": (["-p", "model_input_points:=512"], 1,
                                     ["parameter 'model_path'", "model was trained for 256 input points "
                                      "per frame, but 512 were asked for"]),
    "cuda_absent": (["-p", "device:=cuda"], 1,
                    ["parameter 'device'", "'cuda' requested but CUDA is not available",
                     "allow_cpu_fallback: true runs on the CPU instead"]),
    "out_of_range": (["-p", "tracker.max_frames:=1"], 2,
                     ["parameter 'tracker.max_frames' must be an integer in [2, 100000]"]),
}


@pytest.fixture(scope="module")
def side_nodes(tmp_path_factory, model_file):
    """Every failing start, a node to SIGINT and one with a model that fails inside the tracker, all
    started at once (they import torch in parallel)."""
    import torch

    from occflow_ros.model.checkpoint import FORMAT_VERSION

    tmp = tmp_path_factory.mktemp("side")
    (tmp / "cut.pt").write_bytes(model_file.read_bytes()[:3000])
    payload = torch.load(model_file, weights_only=True)
    payload["format_version"] = FORMAT_VERSION + 1
    torch.save(payload, tmp / "future.pt")
    procs = {}
    try:
        for case, (extra, _, _) in BAD_STARTS.items():
            args = [a.replace("{tmp}", str(tmp)) for a in extra]
            procs[case] = start_node(tmp, model_file, case, *args)
        # CUDA asked for on this CPU-only machine, with the fallback allowed (then stopped by SIGINT)
        # ... with its input reliable through a qos_overrides parameter (input.qos says best effort)
        ns = f"/occflow_test_{uuid.uuid4().hex[:8]}"
        procs["sigint"] = start_node(
            tmp, model_file, "sigint", "-p", "device:=cuda", "-p", "allow_cpu_fallback:=true",
            "-p", f"qos_overrides.{ns}/camera/points.subscription.reliability:=reliable", ns=ns)
        # a segment long enough to pass t = 0.5 (the faulty field's blow-up), solved with dopri5
        procs["faulty"] = start_node(tmp, save_faulty_checkpoint(tmp / "faulty.pt"), "faulty",
                                     "-p", "tracker.max_frames:=30", "-p", "tracker.solver.method:=dopri5")
        procs["async"] = start_node(tmp, model_file, "async", "-p", "tracker.async_keyframes:=true",
                                    "-p", "tracker.max_frames:=8")
        yield procs
    finally:
        for p in procs.values():
            p.kill()


@pytest.mark.parametrize("case", sorted(BAD_STARTS))
def test_a_bad_setup_exits_non_zero_with_one_clear_error(side_nodes, case):
    node = side_nodes[case]
    _, code, words = BAD_STARTS[case]
    try:
        rc = node.proc.wait(timeout=90)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{case}: the node did not exit:\n{node.log()}")
    log = node.log()
    assert rc == code, log
    errors = [line for line in log.splitlines() if line.startswith("[ERROR]")]
    assert len(errors) == 1, log
    for w in words:
        assert w in errors[0], f"{w!r} not in {errors[0]!r}"
    assert "ready:" not in log


def test_cuda_requested_but_absent_runs_on_the_cpu_when_the_fallback_is_allowed(side_nodes):
    node = side_nodes["sigint"]
    assert node.wait_for("ready:", 90), node.log()
    log = node.log()
    assert "device 'cuda' is not available: running on the CPU (allow_cpu_fallback is true)" in log
    assert "warm-up on cpu" in log and "; device cpu, model" in log
    assert not [line for line in log.splitlines() if line.startswith("[ERROR]")], log


def test_qos_overrides_parameters_apply_to_the_input_subscription(side_nodes, make_node,
                                                                  spin_until):
    """qos_overrides.<topic>.subscription.reliability (rclpy's QoS overriding) turns the input's
    default best-effort QoS reliable: seen from another node through DDS discovery."""
    from rclpy.qos import QoSReliabilityPolicy as Reliability

    node = side_nodes["sigint"]
    assert node.wait_for("ready:", 90), node.log()
    probe = make_node(f"probe_{uuid.uuid4().hex[:8]}")
    infos: list = []

    def found() -> bool:
        infos[:] = probe.get_subscriptions_info_by_topic(node.input_topic)
        return bool(infos)

    assert spin_until([probe], found, timeout=15), node.log()
    assert [i.qos_profile.reliability for i in infos] == [Reliability.RELIABLE], infos


def test_sigint_stops_an_idle_node_within_2_s_with_exit_code_0(side_nodes):
    node = side_nodes["sigint"]
    assert node.wait_for("ready:", 90), node.log()
    started = time.monotonic()
    node.proc.send_signal(signal.SIGINT)
    rc = node.proc.wait(timeout=10)
    took = time.monotonic() - started
    assert rc == 0 and took < 2.0, f"exit {rc} after {took:.2f} s:\n{node.log()}"
    assert "shut down cleanly" in node.log()


def test_an_exception_inside_the_tracker_is_logged_with_context_and_the_node_goes_on(
        side_nodes, make_node, spin_until):
    node = side_nodes["faulty"]
    assert node.wait_for("ready:", 90), node.log()
    s = Session(make_node, spin_until, node)
    assert s.spin(lambda: s.count("tracker_errors") >= 1, timeout=30), \
        f"{s.last_diagnostics()}\n{node.log()}"
    d = s.last_diagnostics()
    assert "AssertionError" in d["last_tracker_error"] and int(d["resets"]) >= 1
    after = s.ros.get_clock().now().nanoseconds
    assert s.spin(lambda: any(stamp_to_ns(m.header.stamp) > after for m in s.tracked), 20), node.log()
    log = node.log()
    assert "tracker failed on the frame of stamp" in log and "valid points" in log
    assert f"frame '{FRAME_ID}'" in log and "tracker reset, continuing" in log
    assert node.proc.poll() is None


def test_with_background_keyframes_new_meshes_arrive_later_carry_the_ids_and_sigterm_is_clean(
        side_nodes, make_node, spin_until):
    """tracker.async_keyframes: a new keyframe's mesh is published with a later frame than its own
    (keyframe_stamp before the header stamp), still inherits the tracked ids, and a node with a
    keyframe in flight stops cleanly."""
    node = side_nodes["async"]
    assert node.wait_for("ready:", 90), node.log()
    s = Session(make_node, spin_until, node)

    def firsts() -> List[TrackedMesh]:
        seen, out = set(), []
        for msg in s.tracked:
            key = (msg.keyframe_id, stamp_to_ns(msg.keyframe_stamp))
            if key not in seen:
                seen.add(key)
                out.append(msg)
        return out

    def adoptions() -> List[tuple]:
        """(old mesh, adopting mesh) for each new mesh published with a later frame than its own,
        where the old mesh's keyframe and the adopting frame fall in one sweep (the sphere did not
        jump back in between, which would rightly give fresh ids)."""
        firsts_seen = {id(m) for m in firsts()[1:]}
        out = []
        for before, after in zip(s.tracked, s.tracked[1:]):
            if id(after) not in firsts_seen:
                continue
            if stamp_to_ns(after.header.stamp) <= stamp_to_ns(after.keyframe_stamp) + 1000:
                continue  # meshed in line (the first keyframe, a gap)
            t0 = s.elapsed(stamp_to_ns(before.keyframe_stamp))
            t1 = s.elapsed(stamp_to_ns(after.header.stamp))
            if int(t0 // SWEEP) == int(t1 // SWEEP):
                out.append((before, after))
        return out

    assert s.spin(lambda: len(adoptions()) >= 3, timeout=40), f"{len(s.tracked)} meshes\n{node.log()}"
    for msg in s.tracked:
        s.assert_sent_header(msg.header)
    for before, after in adoptions():
        old, new = (read_tracked_mesh_msg(m).vertex_ids for m in (before, after))
        assert np.isin(new, old).mean() >= 0.5, "an adopted keyframe did not inherit the ids"
    started = time.monotonic()
    node.proc.send_signal(signal.SIGTERM)
    s.spin_until([s.ros], lambda: node.proc.poll() is not None, timeout=10)
    took = time.monotonic() - started
    assert node.proc.poll() == 0 and took < 2.0, f"exit {node.proc.poll()} after {took:.2f} s\n{node.log()}"
    assert "shut down cleanly" in node.log()


class DepthSession(Session):
    """The same sphere, sent as a 32FC1 depth image with its camera info (input.type depth)."""

    def __init__(self, make_node, spin_until, node: NodeProcess, *, send_info: bool) -> None:
        from sensor_msgs.msg import CameraInfo, Image

        super().__init__(make_node, spin_until, node)
        self.Image, self.CameraInfo = Image, CameraInfo
        self.publisher = self.ros.create_publisher(Image, f"{node.ns}/camera/depth",
                                                   qos_profile_sensor_data)
        self.info_publisher = self.ros.create_publisher(CameraInfo, f"{node.ns}/camera/camera_info",
                                                        qos_profile_sensor_data)
        self.send_info = send_info

    def send(self, *, frame_id: Optional[str] = None) -> int:
        from node_peer import FOCAL, HEIGHT, WIDTH, sphere_xyz

        from occflow_ros.ros.conversions import ns_to_stamp

        stamp = self.ros.get_clock().now().nanoseconds
        frame = frame_id or self.frame_id
        z = sphere_xyz(sweep_time(self.elapsed(stamp), SWEEP), rng=self.rng)[..., 2]
        image = self.Image(height=HEIGHT, width=WIDTH, encoding="32FC1", step=4 * WIDTH,
                           data=np.ascontiguousarray(z, "<f4").tobytes())
        image.header.stamp, image.header.frame_id = ns_to_stamp(stamp), frame
        if self.send_info:  # the pinhole of sphere_xyz: rays through pixel centres
            info = self.CameraInfo(height=HEIGHT, width=WIDTH, distortion_model="plumb_bob",
                                   d=[0.0] * 5, k=[FOCAL, 0.0, WIDTH / 2 - 0.5, 0.0, FOCAL,
                                                   HEIGHT / 2 - 0.5, 0.0, 0.0, 1.0])
            info.header = image.header
            self.info_publisher.publish(info)
        self.publisher.publish(image)
        self.sent[stamp] = frame
        return stamp


def test_depth_images_with_camera_info_are_tracked_and_without_it_are_refused_by_name(
        tmp_path, model_file, make_node, spin_until):
    from node_peer import DEPTH, RADIUS, SPEED

    node = start_node(tmp_path, model_file, "depth", "-p", "input.type:=depth",
                      "-r", "depth:=camera/depth", "-r", "camera_info:=camera/camera_info")
    try:
        assert node.wait_for("ready:", 90), node.log()
        log = node.log()
        assert (f"input: {node.ns}/camera/depth (sensor_msgs/Image, depth, with "
                f"sensor_msgs/CameraInfo on {node.ns}/camera/camera_info)") in log, log
        # images without camera info: every one refused, the reason named, the node goes on
        blind = DepthSession(make_node, spin_until, node, send_info=False)
        assert blind.spin(lambda: blind.count("rejected_messages") >= 3, 20), node.log()
        assert not blind.tracked
        assert "no sensor_msgs/CameraInfo received yet" in node.log()
        blind.streaming = False
        s = DepthSession(make_node, spin_until, node, send_info=True)
        assert s.spin(lambda: len(s.tracked) >= 8, 40), node.log()
        for msg in s.tracked[-5:]:
            s.assert_sent_header(msg.header)
            t = sweep_time(s.elapsed(stamp_to_ns(msg.header.stamp)), SWEEP)
            v = read_tracked_mesh_msg(msg).vertices
            radius = np.linalg.norm(v - np.array([SPEED * t, 0.0, DEPTH]), axis=1)
            assert abs(np.median(radius) - RADIUS) < 0.03, (np.median(radius), t)
    finally:
        node.kill()
