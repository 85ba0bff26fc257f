"""The reconstruct node under bad input and faults: a fuzzed stream, out of GPU memory, stopping mid-keyframe.

- A property-based stream (hypothesis) to the node process over Fast DDS: good sphere clouds mixed with
  malformed clouds (the decoder fuzzer's corruptions), undecodable bytes (random, or a serialized cloud
  with a lying length), clouds without frame_id, clouds of NaN, zeros, one point or absurd coordinates,
  extreme stamps, frame_id changes and stamps jumping back or far ahead. Every message is answered exactly
  once in /diagnostics (rejected naming the problem, held, reset, or processed), the next good cloud is
  processed, outputs never lie (finite vertices, unique ids, the input's header), warnings are
  rate-limited and the node never dies. The expectation of each message comes from decoding it here
  with the same public functions (deserialize_message, read_xyz).
- GPU out of memory (simulated on this CPU-only machine: the occupancy decoder raises torch's
  ``torch.cuda.OutOfMemoryError`` for large batches): the node keeps going on smaller batches, shows
  the reduced ``chunk_size`` in /diagnostics and says so in its log once.
- SIGTERM / SIGINT while the node meshes a keyframe (the default meshing with the ball model: ~1 s per
  keyframe here): the node abandons it, joins its worker, flushes its outputs and exits 0 within 2 s.
- The mailbox and the windowed stats behind those diagnostics.
"""

from __future__ import annotations

import math
import re
import signal
import struct
import threading
import time
import uuid
from contextlib import contextmanager
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import pytest
import rclpy
import torch
from hypothesis import HealthCheck, given, settings
from diagnostic_msgs.msg import DiagnosticArray
from hypothesis import strategies as st
from node_peer import FRAME_ID, save_ball_checkpoint, sphere_message, sweep_time
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.serialization import deserialize_message, serialize_message
from occflow_ros_msgs.msg import TrackedMesh
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import Header
from test_ros_node import FAST, RELIABLE, Session, start_node
from test_ros_pointcloud2_fuzz import CORRUPTIONS, EXAMPLES

from occflow_ros.ros import PointCloud2Error, read_tracked_mesh_msg, read_xyz, xyz_cloud
from occflow_ros.ros.conversions import ns_to_stamp, stamp_to_ns
from occflow_ros.ros.node import THROTTLE_S, ReconstructNode
from occflow_ros.ros.node_runtime import LatestMailbox, NodeStats

OUTCOMES = ("frames_processed", "rejected_messages", "tracker_errors", "publish_errors",
            "frames_without_output")
# the default meshing (config/reconstruct.yaml): ~1 s per keyframe of the ball model on this CPU
SLOW_KEYFRAMES = ["-p", "tracker.meshing.resolution0:=32", "-p", "tracker.meshing.upsampling_steps:=2",
                  "-p", "tracker.meshing.target_vertices:=3000"]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return save_ball_checkpoint(tmp_path_factory.mktemp("model") / "ball.pt")


def counts(d: Dict[str, str]) -> Dict[str, int]:
    return {k: int(v) for k, v in d.items() if k in OUTCOMES + (
        "frames_received", "frames_taken", "queued_frames", "dropped_frames", "resets", "held_frames")}


def assert_balanced(d: Dict[str, str], in_flight: int = 0) -> None:
    """The message counts of one diagnostics status add up (node.status's documented invariants)."""
    c = counts(d)
    assert c["frames_received"] == c["frames_taken"] + c["dropped_frames"] + c["queued_frames"], c
    assert c["queued_frames"] in (0, 1), c
    answered = sum(c[k] for k in OUTCOMES)
    assert 0 <= c["frames_taken"] - answered <= in_flight, c


# -- the fuzzed stream --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def node_processes(tmp_path_factory, model_file):
    """The module's node processes, all started at once (they load torch in parallel): one for the
    fuzzed stream, and one per signal with the default (slow) keyframes."""
    tmp = tmp_path_factory.mktemp("nodes")
    nodes = {}
    try:
        nodes["fuzz"] = start_node(tmp, model_file, "fuzz", "-p", "diagnostics.period:=0.05",
                                   "-p", "diagnostics.window:=30.0")
        for sig in ("SIGTERM", "SIGINT"):
            nodes[sig] = start_node(tmp, model_file, sig, *SLOW_KEYFRAMES, "-p", "diagnostics.period:=0.05")
        yield nodes
    finally:
        for node in nodes.values():
            node.kill()


@pytest.fixture(scope="module")
def fuzz_node(node_processes):
    node = node_processes["fuzz"]
    assert node.wait_for("ready:", 90), f"node did not start:\n{node.log()}"
    return node


def _garbage(draw) -> bytes:
    """Bytes on the PointCloud2 topic that are not a PointCloud2: random, or a real cloud cut short or
    with one of its uint32 words (sequence lengths among them) replaced by a lie. Never empty: Fast DDS
    does not deliver a zero-length sample to another process at all."""
    raw = serialize_message(sphere_message(0, 0.0))
    how = draw(st.sampled_from(["random", "cut", "lie"]))
    if how == "random":
        return draw(st.binary(min_size=1, max_size=300))
    if how == "cut":
        return raw[:draw(st.integers(1, len(raw) - 1))]
    at = 4 * draw(st.integers(1, 40))  # a word of the header, the fields or the sizes
    return raw[:at] + struct.pack("<I", draw(st.sampled_from([2**31 - 1, 2**32 - 1, 10**6]))) + raw[at + 4:]


def _weird_points(kind: str) -> np.ndarray:
    pts = np.zeros((4, 6, 3), np.float32)
    if kind == "nan":
        pts[:] = np.nan
    elif kind == "inf":
        pts[:] = np.inf
    elif kind == "one_point":
        pts[:] = np.nan
        pts[2, 3] = (0.1, 0.0, 2.0)
    elif kind == "absurd":
        pts[:] = np.random.default_rng(0).normal(size=pts.shape) * np.float32(3e37)
    return pts  # "zeros": every pixel (0, 0, 0), a depth camera's "no depth"


EVENTS = ["good", "good", "good", "malformed", "garbage", "no_frame_id", "weird", "frame_change",
          "stamp_back", "stamp_ahead", "stamp_extreme"]


def test_a_fuzzed_stream_of_bad_and_good_messages_is_answered_message_by_message_and_never_kills_the_node(
        fuzz_node, make_node, spin_until):
    s = Session(make_node, spin_until, fuzz_node)
    s.streaming = False
    log_start = len(fuzz_node.log())
    started = time.monotonic()
    base = s.fresh_diagnostics()
    state = {"sent": sum(counts(base)[k] for k in OUTCOMES), "frames": [FRAME_ID, "other_optical_frame"]}
    tally = {"rejected": 0, "output": 0, "held": 0, "reset": 0}
    headers = set()  # (stamp ns, frame_id) of every decodable cloud sent

    def answered(d: Dict[str, str]) -> int:
        return sum(counts(d)[k] for k in OUTCOMES)

    def wait_answer(before: Dict[str, str]) -> Dict[str, str]:
        """The first diagnostics in which the node has answered every message sent so far."""
        ok = s.spin(lambda: bool(s.diagnostics) and answered(s.last_diagnostics()) >= state["sent"], 20)
        arrived = int(s.last_diagnostics()["frames_received"]) > int(before["frames_received"])
        assert ok, (f"message {state['sent']} unanswered ({'received' if arrived else 'never received'}"
                    f"): {s.last_diagnostics()}\n{fuzz_node.log()[-3000:]}")
        d = s.last_diagnostics()
        assert answered(d) == state["sent"], "a message was answered twice or another one came"
        assert_balanced(d)
        assert counts(d)["dropped_frames"] == counts(before)["dropped_frames"], "paced, yet dropped"
        return d

    def send(payload: Any, stamp: int) -> Tuple[Dict[str, str], Dict[str, str]]:
        before = s.last_diagnostics()
        s.publisher.publish(payload)
        state["sent"] += 1
        return before, wait_answer(before)

    def delta(before, after, key: str) -> int:
        return int(after[key]) - int(before[key])

    def good(expect_reset: Optional[str] = None) -> None:
        now = s.ros.get_clock().now().nanoseconds
        stamp = now + s.stamp_offset_ns
        msg = sphere_message(stamp, sweep_time(s.elapsed(now)), s.frame_id, rng=s.rng)
        headers.add((stamp, s.frame_id))
        before, after = send(msg, stamp)
        assert delta(before, after, "frames_processed") == 1, (before, after)
        if expect_reset is not None:
            assert delta(before, after, "resets") >= 1 and expect_reset in after["last_reset"], after
            tally["reset"] += 1
        assert s.spin(lambda: any(stamp_to_ns(m.header.stamp) == stamp for m in s.tracked), 10), \
            "a processed cloud's output never arrived"
        tally["output"] += 1

    def expect_rejected(payload: Any, words: str) -> None:
        before, after = send(payload, 0)
        assert delta(before, after, "rejected_messages") == 1, (before, after)
        assert words in after["last_rejection"], (words, after["last_rejection"])
        tally["rejected"] += 1

    def other(msg: PointCloud2) -> None:
        """A decodable cloud with a frame but odd content: held, processed or a tracker error (with
        a reset); never rejected, never lost."""
        headers.add((stamp_to_ns(msg.header.stamp), msg.header.frame_id))
        before, after = send(msg, stamp_to_ns(msg.header.stamp))
        assert delta(before, after, "rejected_messages") == 0
        if delta(before, after, "tracker_errors"):
            assert delta(before, after, "resets") >= 1
        else:
            assert delta(before, after, "frames_processed") + delta(before, after,
                                                                    "frames_without_output") == 1
        if delta(before, after, "held_frames"):
            tally["held"] += 1
            assert after["last_held"], after

    def expected_rejection(msg: PointCloud2) -> Optional[str]:
        """What the node must say about ``msg``, from decoding it here (None: it must accept it)."""
        if not msg.header.frame_id:
            return "header.frame_id is empty"
        try:
            read_xyz(msg)
        except PointCloud2Error as e:
            return str(e)
        return None

    def judge(msg: PointCloud2, payload: Any) -> None:
        """Send ``payload`` (msg itself, or the bytes it was decoded from) and check the node's
        verdict against the one decoding ``msg`` here gives."""
        words = expected_rejection(msg)
        if words is None:
            other(msg)
        else:
            expect_rejected(payload, words)

    @settings(max_examples=max(EXAMPLES // 50, 6), deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def stream(data) -> None:
        draw = data.draw
        state["sent"] = answered(s.fresh_diagnostics())  # an example that failed leaves no debt
        for event in draw(st.lists(st.sampled_from(EVENTS), min_size=2, max_size=7)) + ["good"]:
            now = s.ros.get_clock().now().nanoseconds
            stamp = now + s.stamp_offset_ns
            if event == "good":
                good()
            elif event == "malformed":
                msg = sphere_message(stamp, 0.0, s.frame_id)
                for corrupt in draw(st.lists(st.sampled_from(CORRUPTIONS), min_size=1, max_size=3)):
                    corrupt(msg, draw)
                judge(msg, msg)
            elif event == "garbage":
                raw = _garbage(draw)
                try:
                    msg = deserialize_message(raw, PointCloud2)
                except Exception:
                    expect_rejected(raw, "not a decodable sensor_msgs/PointCloud2")
                else:  # still a message: judged like any other
                    judge(msg, raw)
            elif event == "no_frame_id":
                expect_rejected(sphere_message(stamp, 0.0, ""), "header.frame_id is empty")
            elif event == "weird":
                kind = draw(st.sampled_from(["nan", "inf", "zeros", "one_point", "absurd"]))
                other(xyz_cloud(Header(frame_id=s.frame_id, stamp=ns_to_stamp(stamp)), _weird_points(kind)))
            elif event == "frame_change":
                state["frames"].reverse()
                s.frame_id = state["frames"][0]
                good(expect_reset="frame_id changed from")
            elif event == "stamp_back":
                s.stamp_offset_ns -= 5 * 10**9
                good(expect_reset="stamp went backwards")
            elif event == "stamp_ahead":  # more than input.max_jump_seconds (2 s)
                s.stamp_offset_ns += 5 * 10**9
                good(expect_reset="stamp jumped ahead")
            else:  # one cloud stamped at the clock's ends, then back to the stream's time
                extreme = draw(st.sampled_from([0, (2**31 - 1) * 10**9 + 999_999_999]))
                other(sphere_message(extreme, 0.0, s.frame_id))
                good(expect_reset="stamp")
        assert fuzz_node.proc.poll() is None

    stream()

    assert tally["rejected"] and tally["output"] and tally["reset"], tally
    assert fuzz_node.proc.poll() is None, fuzz_node.log()
    for msg in s.tracked:  # the outputs never lie
        assert (stamp_to_ns(msg.header.stamp), msg.header.frame_id) in headers, msg.header
        arrays = read_tracked_mesh_msg(msg)
        assert np.isfinite(arrays.vertices).all() and np.isfinite(arrays.canonical_vertices).all()
        assert len(np.unique(arrays.vertex_ids)) == len(arrays.vertex_ids), "an id used twice in a mesh"
    # the rejections are named in the log, but rate-limited: one line per call site per THROTTLE_S
    log = fuzz_node.log()[log_start:]
    lines = [line for line in log.splitlines() if "rejected a message on" in line]
    windows = math.ceil((time.monotonic() - started) / THROTTLE_S) + 1
    assert 1 <= len(lines) <= 2 * windows, f"{len(lines)} rejection warnings for {tally['rejected']}"
    assert len(lines) < tally["rejected"] or tally["rejected"] <= 2 * windows


# -- a node in this process ---------------------------------------------------------------------------

@contextmanager
def node_in_process(*ros_args: str):
    """A ReconstructNode in this process with these ROS arguments and a tester node on the same
    context, both destroyed after (the context shut down, torch's threads as they were)."""
    threads = torch.get_num_threads()
    context = Context()
    rclpy.init(args=["--ros-args", *ros_args], context=context)
    made: List[Any] = []
    try:
        made.append(ReconstructNode(context=context))
        made.append(rclpy.create_node(f"tester_{uuid.uuid4().hex[:8]}", context=context))
        yield made[0], made[1]
    finally:
        for node in reversed(made):
            node.destroy_node()
        context.try_shutdown()
        torch.set_num_threads(threads)


# -- out of GPU memory --------------------------------------------------------------------------------

def test_out_of_gpu_memory_shrinks_the_batches_shows_chunk_size_in_diagnostics_and_is_logged_once(
        model_file, capfd):
    with node_in_process("-p", f"model_path:={model_file}", *FAST,  # later -p win
                         "-p", "tracker.chunk_size:=4000", "-p", "tracker.max_frames:=2",
                         "-p", "log_period:=0.0") as (node, tester):
        assert node.status()["chunk_size"] == 4000
        decoder = node.tracker.model.decoder
        forward = decoder.forward

        def small_gpu(points, *a, **k):  # a GPU that fits 1000 query points at a time
            if points.shape[1] > 1000:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
            return forward(points, *a, **k)

        decoder.forward = small_gpu
        publisher = tester.create_publisher(PointCloud2, "points", RELIABLE)
        outputs: List[Any] = []
        diagnostics: List[Dict[str, str]] = []
        tester.create_subscription(TrackedMesh, "/occflow_reconstruct/tracked_mesh", outputs.append,
                                   RELIABLE)
        tester.create_subscription(DiagnosticArray, "/diagnostics", lambda m: diagnostics.extend(
            {kv.key: kv.value for kv in status.values} for status in m.status
            if status.name == "occflow_ros: /occflow_reconstruct"), 10)
        executor = SingleThreadedExecutor(context=node.context)
        executor.add_node(node)
        executor.add_node(tester)
        start = tester.get_clock().now().nanoseconds
        for k in range(6):  # keyframes every other frame (max_frames 2)
            stamp = start + k * 33_000_000
            publisher.publish(sphere_message(stamp, k / 30))
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not any(
                    stamp_to_ns(m.header.stamp) == stamp for m in outputs):
                executor.spin_once(timeout_sec=0.05)
            assert any(stamp_to_ns(m.header.stamp) == stamp for m in outputs), f"frame {k}: no output"
        n = len(diagnostics)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and len(diagnostics) <= n:
            executor.spin_once(timeout_sec=0.05)
        executor.shutdown()
        d = diagnostics[-1]
        assert 256 <= int(d["chunk_size"]) <= 1000, d
        assert int(d["tracker_errors"]) == 0 and int(d["frames_processed"]) == 6, d
    err = capfd.readouterr().err
    warnings = [line for line in err.splitlines() if "out of GPU memory on cpu" in line]
    assert len(warnings) == 1, err[-3000:]
    assert re.search(r"the networks now run on batches of \d+ points \(tracker.chunk_size 4000\)",
                     warnings[0])


# -- a tracker that keeps failing -------------------------------------------------------------------

def test_a_tracker_failing_frame_after_frame_turns_the_diagnostics_to_error_until_a_frame_works(
        model_file):
    """Three tracker errors in a row (a network that raises on every call: a broken GPU, say) make
    the node's status ERROR with the reason over /diagnostics; the first frame processed after the
    network works again ends it, and the node kept running throughout."""
    from diagnostic_msgs.msg import DiagnosticStatus

    from occflow_ros.ros.node import TRACKER_ERRORS_FOR_ERROR

    with node_in_process("-p", f"model_path:={model_file}", *FAST, "-p", "log_period:=0.0",
                         "-p", "diagnostics.period:=0.1") as (node, tester):
        decoder = node.tracker.model.decoder
        forward = decoder.forward
        broken = {"on": True}

        def failing(*a, **k):
            if broken["on"]:
                raise RuntimeError("CUDA error: an illegal memory access was encountered (simulated)")
            return forward(*a, **k)

        decoder.forward = failing
        publisher = tester.create_publisher(PointCloud2, "points", RELIABLE)
        statuses: List[Tuple[int, str, Dict[str, str]]] = []
        outputs: List[Any] = []
        tester.create_subscription(TrackedMesh, "/occflow_reconstruct/tracked_mesh", outputs.append,
                                   RELIABLE)
        tester.create_subscription(DiagnosticArray, "/diagnostics", lambda m: statuses.extend(
            (int.from_bytes(status.level, "little") if isinstance(status.level, bytes)
             else int(status.level), status.message, {kv.key: kv.value for kv in status.values})
            for status in m.status if status.name == "occflow_ros: /occflow_reconstruct"), 10)
        executor = SingleThreadedExecutor(context=node.context)
        executor.add_node(node)
        executor.add_node(tester)
        start = tester.get_clock().now().nanoseconds

        def send_and_wait(k: int, until) -> None:
            publisher.publish(sphere_message(start + k * 33_000_000, k / 30))
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not until():
                executor.spin_once(timeout_sec=0.05)
            assert until(), statuses[-3:]

        def errors() -> int:
            return int(statuses[-1][2]["tracker_errors"]) if statuses else 0

        for k in range(TRACKER_ERRORS_FOR_ERROR):
            send_and_wait(k, lambda k=k: errors() >= k + 1)
        send_and_wait(TRACKER_ERRORS_FOR_ERROR,
                      lambda: statuses and statuses[-1][0] == int.from_bytes(DiagnosticStatus.ERROR,
                                                                               "little"))
        level, message, values = statuses[-1]
        assert f"the tracker failed on the last {TRACKER_ERRORS_FOR_ERROR}" in message
        assert "illegal memory access" in message and not outputs
        broken["on"] = False
        k = TRACKER_ERRORS_FOR_ERROR + 1
        send_and_wait(k, lambda: bool(outputs) and statuses[-1][0] != level)
        assert statuses[-1][0] in (int.from_bytes(DiagnosticStatus.OK, "little"),
                                   int.from_bytes(DiagnosticStatus.WARN, "little"))
        executor.shutdown()


# -- stopping in the middle of a keyframe -------------------------------------------------------------

@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_a_signal_during_a_keyframe_stops_the_node_within_2_s_with_its_outputs_flushed(
        node_processes, make_node, spin_until, sig):
    node = node_processes[sig]
    assert node.wait_for("ready:", 120), node.log()
    s = Session(make_node, spin_until, node)
    assert s.spin(lambda: len(s.tracked) >= 2, timeout=40), node.log()  # busy, outputs flowing
    s.streaming = False
    assert s.spin(lambda: bool(s.diagnostics) and sum(
        counts(s.last_diagnostics())[k] for k in OUTCOMES) == int(s.last_diagnostics()["frames_taken"])
        and int(s.last_diagnostics()["queued_frames"]) == 0, 20), "the node did not go idle"
    taken = int(s.last_diagnostics()["frames_taken"])
    s.send(frame_id="another_frame")  # a new frame: reset, so this cloud is a ~1 s keyframe
    assert s.spin(lambda: int(s.last_diagnostics()["frames_taken"]) > taken, 10)
    time.sleep(0.15)  # well inside the keyframe's meshing
    started = time.monotonic()
    node.proc.send_signal(getattr(signal, sig))
    s.spin_until([s.ros], lambda: node.proc.poll() is not None, timeout=10)
    took = time.monotonic() - started
    log = node.log()
    print(f"{sig} during a keyframe: exit after {took:.2f} s")
    assert node.proc.poll() == 0, log
    assert took < 2.0, f"{sig} during a keyframe: {took:.2f} s to exit\n{log[-2000:]}"
    assert "abandoned during meshing" in log or "abandoned before" in log, "not stopped mid-keyframe"
    line = next(line for line in log.splitlines() if "shut down cleanly in" in line)
    assert "worker joined" in line and "outputs acknowledged by every subscriber" in line, line
    last = re.search(r"last output stamp ([\d.]+) s", line).group(1)
    s.spin_until([s.ros], lambda: False, timeout=0.2)
    received = max(stamp_to_ns(m.header.stamp) for m in s.tracked)
    assert f"{received / 1e9:.9f}" == last, "the last output the node published never arrived"


# -- the bookkeeping behind the diagnostics -----------------------------------------------------------

def test_the_mailbox_counts_always_add_up_under_a_racing_producer_and_consumer():
    box: LatestMailbox[int] = LatestMailbox()
    done = threading.Event()
    seen: List[Dict[str, int]] = []

    def produce():
        for i in range(20000):
            box.put(i)
        done.set()

    def consume():
        while not done.is_set() or box.counts()["queued"]:
            box.take(timeout=0.001)

    threads = [threading.Thread(target=produce), threading.Thread(target=consume)]
    for t in threads:
        t.start()
    while not done.is_set():
        seen.append(box.counts())
    for t in threads:
        t.join(5)
    seen.append(box.counts())
    for c in seen:
        assert c["received"] == c["taken"] + c["dropped"] + c["queued"] and c["queued"] in (0, 1), c
    assert seen[-1]["received"] == 20000 and seen[-1]["queued"] == 0
    box.put(1)
    box.close()
    c = box.counts()
    assert c["queued"] == 0 and c["received"] == c["taken"] + c["dropped"], "close lost an item's count"


def test_stats_keep_only_the_window_s_events_however_long_the_node_runs():
    clock = [0.0]
    stats = NodeStats(2.0, clock=lambda: clock[0])
    for k in range(100_000):  # an hour at ~28 Hz
        clock[0] = k * 0.036
        stats.received()
        stats.processed(10.0, 5.0, keyframe=False, vertices=100)
    snap = stats.snapshot()
    assert snap["events_in_window"] <= 2 * (2.0 / 0.036 + 2), "events outside the window are kept"
    assert snap["frames_received"] == 100_000 and snap["frames_processed"] == 100_000
    assert abs(snap["input_rate_hz"] - 1 / 0.036) < 1.0
    stats.without_output()
    assert stats.snapshot()["frames_without_output"] == 1
