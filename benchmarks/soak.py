"""Soak test of the reconstruct node: a 30 Hz synthetic depth stream for minutes; memory, latency, ids, counts.

What :func:`run_soak` does:

1. starts the real node as its own process, as users do (``python -m occflow_ros.ros.node --ros-args
   --params-file config/reconstruct.yaml -p ...``), and waits for its "ready" line;
2. streams a scene as organized PointCloud2 at ``rate`` Hz over Fast DDS shared memory, stamped with
   the time of sending: by default a ray-cast sphere sweeping in front of a 160x120 depth camera
   (test/node_peer.py's scene: NaN and zero pixels, 1 mm noise, a jump back every 2 s), or with
   ``--scene person`` 2 s of the demo's simulated RealSense view of a person (320x240, floor, wall,
   noise, zeros for invalid pixels; the node gets the demo's CPU settings and region of interest).
   The frames of one loop are built once and re-sent with fresh stamps, so the streamer costs little
   CPU;
3. samples the node process's resident memory (VmRSS in /proc/<pid>/status) every
   ``sample_period`` seconds, and receives every ~/tracked_mesh: its latency (arrival - input stamp),
   and checks that vertex ids are unique within each mesh, constant within a keyframe segment, and
   that a new keyframe's ids are either carried over from the mesh before it or larger than every id
   seen so far (ids only grow: an id never comes back for another piece of surface), and that every
   vertex is finite;
4. stops streaming, lets the node drain, reads its last /diagnostics (the message counts must add up:
   received = taken + dropped + queued, taken = processed + rejected + errors + without output),
   stops it with SIGINT and times the shutdown.

:meth:`SoakResult.summary` gives resident memory at the end of the warm-up and at the end, its
growth and slope (MB/min) after the warm-up, latency p50/p95 and its slope (ms/min), the processed
rate and the error counts. The test suite runs a 60 s version with the analytic ball model
(test/test_ros_node_soak.py); the long run, with the shipped model by default:

    . tools/env.sh && python benchmarks/soak.py --minutes 10 --threads 1 [--model PATH] [--scene person] \
        [--out FILE.json]

``--model ball`` uses the analytic ball network of the tests instead (a checkpoint written to a
temporary directory). DDS stays on this machine: the defaults of tools/env.sh are set for this process
and the node when they are missing.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "test") not in sys.path:
    sys.path.insert(0, str(REPO / "test"))  # node_peer: the sphere scene and the ball checkpoint

__all__ = ["IdChecker", "SoakConfig", "SoakError", "SoakResult", "rss_mb", "run_soak", "slope_per_minute"]

NAMESPACE = "/soak"
INPUT_TOPIC = "/soak/points"
NODE_STATUS = f"occflow_ros: {NAMESPACE}/occflow_reconstruct"
OUTCOMES = ("frames_processed", "rejected_messages", "tracker_errors", "publish_errors",
            "frames_without_output")

#: ``-p`` overrides of the test suite's fast node (coarse keyframes, one torch thread, CPU).
FAST_PARAMETERS: Dict[str, Any] = {
    "device": "cpu", "threads": 1, "tracker.max_frames": 4, "tracker.residual_threshold": 0.0,
    "tracker.meshing.resolution0": 16, "tracker.meshing.upsampling_steps": 1,
    "tracker.meshing.target_vertices": 0, "diagnostics.period": 0.5, "log_period": 10.0,
}


class SoakError(RuntimeError):
    """The soak run could not start or the node died; the message says what happened."""


@dataclass(frozen=True)
class SoakConfig:
    """One soak run. Times in seconds.

    model: the checkpoint the node loads. parameters: ``-p`` overrides for the node (on top of
    config/reconstruct.yaml). seconds: how long to stream. rate: clouds per second. warmup: memory
    and latency trends are measured after this many seconds of streaming. sample_period: seconds
    between resident-memory samples. log_path: the node's output (stdout and stderr).
    """

    model: Path
    log_path: Path
    parameters: Mapping[str, Any] = field(default_factory=lambda: dict(FAST_PARAMETERS))
    seconds: float = 600.0
    rate: float = 30.0
    warmup: float = 15.0
    sample_period: float = 1.0
    startup_timeout: float = 120.0
    drain_seconds: float = 3.0

    def __post_init__(self) -> None:
        if not 1.0 <= self.seconds <= 86400.0:
            raise SoakError(f"seconds must be in [1, 86400], got {self.seconds}")
        if not 0.5 <= self.rate <= 120.0:
            raise SoakError(f"rate must be in [0.5, 120] Hz, got {self.rate}")
        if not 0.0 <= self.warmup < self.seconds:
            raise SoakError(f"warmup must be in [0, seconds), got {self.warmup}")
        if not 0.05 <= self.sample_period <= 60.0:
            raise SoakError(f"sample_period must be in [0.05, 60] s, got {self.sample_period}")


def rss_mb(pid: int, field_name: str = "VmRSS") -> float:
    """Resident memory of process ``pid`` in MB (``field_name`` of /proc/<pid>/status, kB / 1024).

    VmRSS is everything resident; RssAnon its private part (heap, torch and numpy buffers: what a
    leak grows). The rest is mapped files and shared memory (RssShmem: Fast DDS's segments, which
    count as they are first touched and are bounded by the DDS profile's segment size).
    """
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) / 1024.0
    raise SoakError(f"no {field_name} in /proc/{pid}/status")


def growth_mb(samples: np.ndarray) -> Optional[float]:
    """How much a memory series grew: the median of its last quarter minus that of its first.

    A leak moves the whole series up and shows here; the allocator's passing peaks (a keyframe's
    buffers, freed but not yet returned to the system) move single samples and do not. None with
    fewer than 4 samples.
    """
    y = np.asarray(samples, float)
    if len(y) < 4:
        return None
    q = len(y) // 4
    return float(np.median(y[-q:]) - np.median(y[:q]))


def slope_per_minute(t: np.ndarray, y: np.ndarray) -> Optional[float]:
    """Least-squares slope of y against t (seconds), per minute; None with fewer than 3 points."""
    t, y = np.asarray(t, float), np.asarray(y, float)
    if len(t) < 3 or np.ptp(t) <= 0:
        return None
    return float(np.polyfit(t, y, 1)[0] * 60.0)


class IdChecker:
    """Checks the vertex ids of a stream of TrackedMesh messages (in arrival order).

    - within a mesh: no id twice;
    - within a keyframe segment (same keyframe stamp and keyframe id): the same ids;
    - at a new keyframe: an id seen before must be in the last mesh received (carried over by the
      tracker's id inheritance), and every other id must be larger than every id seen so far.
    Messages lost on the way do not break these rules (ids a missed keyframe made fresh are still
    larger than all ids seen before it). ``violations`` lists what broke, with the stamp.
    """

    def __init__(self, max_violations: int = 50) -> None:
        self.violations: List[str] = []
        self.max_violations = max_violations
        self.max_seen = -1
        self.seen_count = 0
        self.keyframes = 0
        self._segment: Optional[tuple] = None
        self._segment_ids: Optional[np.ndarray] = None
        self._last_ids: np.ndarray = np.zeros(0, np.uint32)
        # every id seen, as sorted disjoint runs [start, end]: the tracker hands out fresh ids in
        # runs, so an hour at 30 Hz is a few thousand runs (a plain sorted array of the millions of
        # ids made each keyframe's check cost more and more: the 60-minute soak slowed itself down)
        self._starts = np.zeros(0, np.int64)
        self._ends = np.zeros(0, np.int64)

    def _fail(self, why: str) -> None:
        if len(self.violations) < self.max_violations:
            self.violations.append(why)

    def _seen(self, values: np.ndarray) -> np.ndarray:
        """(N,) bool: which of these ids were seen before."""
        if not len(self._starts):
            return np.zeros(len(values), bool)
        run = np.searchsorted(self._starts, values, side="right") - 1
        return (run >= 0) & (values <= self._ends[np.clip(run, 0, None)])

    def _remember(self, fresh: np.ndarray) -> None:
        """Add sorted unique ids that were not seen before."""
        breaks = np.flatnonzero(np.diff(fresh) != 1) + 1
        starts = fresh[np.r_[0, breaks]]
        ends = fresh[np.r_[breaks - 1, len(fresh) - 1]]
        if len(self._ends) and starts[0] == self._ends[-1] + 1:  # continues the last run
            self._ends[-1] = ends[0]
            starts, ends = starts[1:], ends[1:]
        self._starts = np.concatenate([self._starts, starts])
        self._ends = np.concatenate([self._ends, ends])
        if len(self._starts) > 1 and np.any(np.diff(self._starts) < 0):  # only after a violation
            order = np.argsort(self._starts)
            self._starts, self._ends = self._starts[order], self._ends[order]

    def add(self, segment: tuple, ids: np.ndarray, where: str) -> None:
        """``segment``: (keyframe stamp ns, keyframe id); ``ids``: (V,) uint32 vertex ids."""
        ids = np.asarray(ids)
        unique = np.unique(ids.astype(np.int64))
        if len(unique) != len(ids):
            self._fail(f"{where}: {len(ids) - len(unique)} ids used twice in one mesh")
        if segment == self._segment:
            if not np.array_equal(ids, self._segment_ids):
                self._fail(f"{where}: ids changed within a keyframe segment")
        else:
            self.keyframes += 1
            seen = self._seen(unique)
            old = unique[seen]
            foreign = old[~np.isin(old, self._last_ids.astype(np.int64))]
            if len(foreign):
                self._fail(f"{where}: new keyframe reuses {len(foreign)} ids of earlier meshes that "
                           f"the mesh before it did not have (e.g. {int(foreign[0])})")
            fresh = unique[~seen]
            if len(fresh) and int(fresh.min()) <= self.max_seen:
                self._fail(f"{where}: new id {int(fresh.min())} is not above every id seen so far "
                           f"({self.max_seen})")
            self._segment, self._segment_ids = segment, ids.copy()
            if len(fresh):
                self._remember(fresh)
                self.max_seen = max(self.max_seen, int(fresh.max()))
        self._last_ids = ids.copy()
        self.seen_count += 1


@dataclass
class SoakResult:
    """What a soak run measured. Times ``t`` are seconds since streaming started."""

    config: SoakConfig
    sent: int = 0
    received: int = 0
    rss: List[tuple] = field(default_factory=list)  # (t, VmRSS MB)
    anon: List[tuple] = field(default_factory=list)  # (t, RssAnon MB)
    latency: List[tuple] = field(default_factory=list)  # (t, ms) per received TrackedMesh
    non_finite_meshes: int = 0
    id_violations: List[str] = field(default_factory=list)
    keyframes_seen: int = 0
    diagnostics: Dict[str, str] = field(default_factory=dict)  # the node's last status
    exit_code: Optional[int] = None
    shutdown_seconds: Optional[float] = None
    crashed: Optional[str] = None
    stream_seconds: float = 0.0
    node_pid: int = 0

    def counts_balanced(self) -> bool:
        """received == taken + dropped + queued and taken == the sum of the outcomes (node idle)."""
        d = {k: int(v) for k, v in self.diagnostics.items() if k in OUTCOMES + (
            "frames_received", "frames_taken", "dropped_frames", "queued_frames")}
        if len(d) < len(OUTCOMES) + 4:
            return False
        return (d["frames_received"] == d["frames_taken"] + d["dropped_frames"] + d["queued_frames"]
                and d["frames_taken"] == sum(d[k] for k in OUTCOMES))

    def summary(self) -> Dict[str, Any]:
        """The numbers of the run as plain data (MB, ms, Hz, per minute)."""
        warm = self.config.warmup
        rss = np.array(self.rss, float).reshape(-1, 2)
        lat = np.array(self.latency, float).reshape(-1, 2)
        after = rss[rss[:, 0] >= warm]
        anon = np.array(self.anon, float).reshape(-1, 2)
        anon_after = anon[anon[:, 0] >= warm]
        lat_after = lat[lat[:, 0] >= warm]
        d = self.diagnostics

        def num(key: str) -> Optional[int]:
            return int(d[key]) if key in d else None

        out: Dict[str, Any] = {
            "seconds": round(self.stream_seconds, 1), "rate_hz": self.config.rate,
            "warmup_s": warm, "node_pid": self.node_pid,
            "sent": self.sent, "outputs_received": self.received,
            "rss_first_mb": round(float(rss[0, 1]), 1) if len(rss) else None,
            "rss_start_mb": round(float(after[0, 1]), 1) if len(after) else None,
            "rss_end_mb": round(float(after[-1, 1]), 1) if len(after) else None,
            "rss_max_mb": round(float(after[:, 1].max()), 1) if len(after) else None,
            "rss_peak_growth_mb": (round(float(after[:, 1].max() - after[0, 1]), 1)
                                   if len(after) else None),
            "rss_growth_mb": _round(growth_mb(after[:, 1]), 1),
            "rss_slope_mb_per_min": _round(slope_per_minute(after[:, 0], after[:, 1]), 3),
            "anon_start_mb": round(float(anon_after[0, 1]), 1) if len(anon_after) else None,
            "anon_end_mb": round(float(anon_after[-1, 1]), 1) if len(anon_after) else None,
            "anon_growth_mb": _round(growth_mb(anon_after[:, 1]), 1),
            "latency_p50_ms": _round(np.percentile(lat_after[:, 1], 50) if len(lat_after) else None, 1),
            "latency_p95_ms": _round(np.percentile(lat_after[:, 1], 95) if len(lat_after) else None, 1),
            "latency_slope_ms_per_min": _round(slope_per_minute(lat_after[:, 0], lat_after[:, 1]), 2),
            "processed_rate_hz": _round(num("frames_processed") / self.stream_seconds
                                        if num("frames_processed") is not None and self.stream_seconds
                                        else None, 2),
            "frames_received": num("frames_received"), "frames_processed": num("frames_processed"),
            "dropped_frames": num("dropped_frames"), "keyframes": num("keyframes"),
            "rejected_messages": num("rejected_messages"), "tracker_errors": num("tracker_errors"),
            "publish_errors": num("publish_errors"), "resets": num("resets"),
            "counts_balanced": self.counts_balanced(),
            "keyframes_seen": self.keyframes_seen, "id_violations": len(self.id_violations),
            "non_finite_meshes": self.non_finite_meshes, "crashed": self.crashed,
            "exit_code": self.exit_code, "shutdown_s": _round(self.shutdown_seconds, 2),
        }
        return out


def _round(x: Optional[float], digits: int) -> Optional[float]:
    return None if x is None else round(float(x), digits)


def sphere_messages(rate: float) -> list:
    """One sweep of node_peer's sphere (2 s) as organized PointCloud2 messages, stamps to be set."""
    from node_peer import sphere_message, sweep_time

    rng = np.random.default_rng(0)
    n = max(1, int(round(2.0 * rate)))
    return [sphere_message(0, sweep_time(k / rate), rng=rng) for k in range(n)]


def person_messages(rate: float, model: Path, width: int = 320, height: int = 240) -> tuple:
    """2 s of the demo's person seen by its simulated RealSense (``width`` x ``height``) as organized
    PointCloud2 messages, and the node parameters the demo gives a 2-core CPU for that view (its
    ``CPU_PARAMETERS`` and the person's region of interest; ``model_path`` left out)."""
    from std_msgs.msg import Header

    from occflow_ros.data.demo_scene import DemoScene, SceneConfig
    from occflow_ros.ros import xyz_cloud
    from occflow_ros.apps.demo import DemoConfig, demo_parameters

    scene = DemoScene(SceneConfig(seconds=2.0, fps=rate, width=width, height=height, jitter_std=0.0))
    scene.render()
    messages = [xyz_cloud(Header(frame_id=scene.frame_id), scene.cloud(k)) for k in range(len(scene))]
    parameters = demo_parameters(scene, DemoConfig(model=model, scene=scene.config))
    parameters.pop("model_path", None)
    return messages, parameters


def run_soak(config: SoakConfig, *, messages: Optional[list] = None, say=print) -> SoakResult:
    """Run the soak described by ``config`` (see the module docstring), streaming ``messages`` in a loop
    (default: :func:`sphere_messages`). Raises SoakError when the node does not start; a node that
    dies during the run is reported in ``crashed``."""
    from occflow_ros.apps.node_process import NodeProcess, NodeProcessError
    from occflow_ros.ros.dds import keep_dds_local

    keep_dds_local()  # this process (the streamer) and the node it starts
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from occflow_ros_msgs.msg import TrackedMesh
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSHistoryPolicy, QoSProfile, QoSReliabilityPolicy, qos_profile_sensor_data
    from rclpy.signals import SignalHandlerOptions
    from sensor_msgs.msg import PointCloud2

    from occflow_ros.ros import read_tracked_mesh_msg
    from occflow_ros.ros.conversions import ns_to_stamp, stamp_to_ns

    result = SoakResult(config)
    if messages is None:
        messages = sphere_messages(config.rate)
    checker = IdChecker()
    node = NodeProcess(config.log_path, params_file=REPO / "config" / "reconstruct.yaml",
                       parameters={"model_path": str(Path(config.model).resolve()),
                                   **config.parameters},
                       ros_args=["-r", f"__ns:={NAMESPACE}", "-r", f"points:={INPUT_TOPIC}"],
                       env=env, cwd=REPO)
    proc = node.proc
    result.node_pid = proc.pid

    context = Context()
    rclpy.init(context=context, signal_handler_options=SignalHandlerOptions.NO)
    ros = None
    try:
        try:
            node.wait_ready(config.startup_timeout)
        except NodeProcessError as e:
            raise SoakError(f"the node did not start: {e}") from None
        say(f"node ready (pid {proc.pid}); streaming {config.seconds:g} s at {config.rate:g} Hz")
        ros = rclpy.create_node(f"soak_streamer_{os.getpid()}", context=context)
        publisher = ros.create_publisher(PointCloud2, INPUT_TOPIC, qos_profile_sensor_data)
        reliable = QoSProfile(history=QoSHistoryPolicy.KEEP_LAST, depth=10,
                              reliability=QoSReliabilityPolicy.RELIABLE)
        status: Dict[str, Dict[str, str]] = {}
        updates = [0]

        def on_diagnostics(msg) -> None:
            for s in msg.status:
                if s.name == NODE_STATUS:
                    status["last"] = {kv.key: kv.value for kv in s.values}
                    updates[0] += 1

        def on_mesh(msg) -> None:
            arrival = ros.get_clock().now().nanoseconds
            stamp = stamp_to_ns(msg.header.stamp)
            result.received += 1
            result.latency.append(((arrival - t0_ns) / 1e9, (arrival - stamp) / 1e6))
            arrays = read_tracked_mesh_msg(msg)
            if not (np.isfinite(arrays.vertices).all() and np.isfinite(arrays.canonical_vertices).all()):
                result.non_finite_meshes += 1
            checker.add((stamp_to_ns(msg.keyframe_stamp), msg.keyframe_id), arrays.vertex_ids,
                        f"mesh of stamp {stamp / 1e9:.6f} s")

        ros.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 10)
        ros.create_subscription(TrackedMesh, f"{NAMESPACE}/occflow_reconstruct/tracked_mesh", on_mesh,
                                reliable)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(ros)
        # discovery: wait until the node's subscription is matched
        deadline = time.monotonic() + 10
        while publisher.get_subscription_count() == 0 and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        t0_ns = ros.get_clock().now().nanoseconds
        start = time.monotonic()
        period = 1.0 / config.rate
        next_send, next_sample, next_say = start, start, start + 60.0
        k = 0
        while True:
            now = time.monotonic()
            t = now - start
            if t >= config.seconds:
                break
            if proc.poll() is not None:
                result.crashed = f"the node exited with status {proc.returncode} after {t:.1f} s"
                break
            if now >= next_sample:
                result.rss.append((t, rss_mb(proc.pid)))
                result.anon.append((t, rss_mb(proc.pid, "RssAnon")))
                next_sample += config.sample_period
            if now >= next_send:
                msg = messages[k % len(messages)]
                msg.header.stamp = ns_to_stamp(ros.get_clock().now().nanoseconds)
                publisher.publish(msg)
                result.sent += 1
                k += 1
                next_send += period
                if next_send < now - 1.0:  # fell far behind (a stalled machine): do not burst
                    next_send = now + period
            if now >= next_say:
                last = result.latency[-1][1] if result.latency else float("nan")
                say(f"  {t / 60:.0f} min: sent {result.sent}, outputs {result.received}, RSS "
                    f"{result.rss[-1][1]:.0f} MB, latency {last:.0f} ms")
                next_say += 60.0
            executor.spin_once(timeout_sec=max(0.0, min(next_send, next_sample) - time.monotonic()))
        result.stream_seconds = time.monotonic() - start
        # drain: the node answers what it holds; then a status published after that
        deadline = time.monotonic() + config.drain_seconds
        while time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        seen = updates[0]
        deadline = time.monotonic() + 5.0
        while updates[0] <= seen and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        result.diagnostics = status.get("last", {})
        if proc.poll() is None:
            stopped = time.monotonic()
            proc.send_signal(signal.SIGINT)
            try:
                result.exit_code = proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                result.exit_code = proc.wait()
                result.crashed = "the node did not exit within 15 s of SIGINT (killed)"
            result.shutdown_seconds = time.monotonic() - stopped
        else:
            result.exit_code = proc.returncode
        executor.shutdown()
    finally:
        if ros is not None:
            ros.destroy_node()
        context.try_shutdown()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    result.id_violations = checker.violations
    result.keyframes_seen = checker.keyframes
    return result


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=30.0, help="seconds before trends are measured")
    parser.add_argument("--model", default="",
                        help="checkpoint (default: the shipped model); 'ball': the tests' analytic ball")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the node")
    parser.add_argument("--scene", choices=("sphere", "person"), default="sphere",
                        help="what the camera sees (person: the demo's, with its CPU settings and ROI)")
    parser.add_argument("--fast", action="store_true",
                        help="the test suite's coarse keyframes instead of config/reconstruct.yaml's meshing")
    parser.add_argument("-p", dest="params", action="append", default=[], metavar="NAME:=VALUE",
                        help="more node parameters (values as YAML: 1, 1.0, true, text)")
    parser.add_argument("--out", type=Path, help="write the summary (JSON) here")
    parser.add_argument("--log", type=Path, help="the node's log (default: a temporary file)")
    args = parser.parse_args(argv)

    import yaml

    from occflow_ros.model import shipped_model_path

    tmp = Path(tempfile.mkdtemp(prefix="occflow-soak-"))
    if args.model == "ball":
        from node_peer import save_ball_checkpoint

        model = save_ball_checkpoint(tmp / "ball.pt")
    else:
        model = Path(args.model) if args.model else shipped_model_path()
        if not model.is_file():
            print(f"error: model {model} not found (--model PATH, or --model ball)", file=sys.stderr)
            return 2
    parameters: Dict[str, Any] = dict(FAST_PARAMETERS) if args.fast else {"device": "cpu"}
    messages = None
    if args.scene == "person":
        messages, scene_parameters = person_messages(args.rate, model)
        parameters.update(scene_parameters)
    parameters.update({"threads": args.threads, "diagnostics.period": 0.5, "log_period": 30.0})
    for item in args.params:
        name, _, value = item.partition(":=")
        parameters[name] = yaml.safe_load(value)
    config = SoakConfig(model=model, log_path=args.log or tmp / "node.log", parameters=parameters,
                        seconds=60.0 * args.minutes, rate=args.rate, warmup=args.warmup)
    print(f"soak: model {model}, node log {config.log_path}")
    result = run_soak(config, messages=messages)
    summary = result.summary()
    summary["model"] = str(model)
    summary["parameters"] = {k: v for k, v in parameters.items()}
    summary["command"] = " ".join(["python", "benchmarks/soak.py", *(argv or sys.argv[1:])])
    for key, value in summary.items():
        print(f"{key}: {value}")
    for v in result.id_violations[:10]:
        print("id violation:", v)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(summary, indent=2) + "\n")
        print(f"summary: {args.out}")
    ok = (result.crashed is None and result.exit_code == 0 and not result.id_violations
          and not result.non_finite_meshes and result.counts_balanced())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
