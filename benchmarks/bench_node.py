"""Question 5: the node end to end — a 30 Hz 640x480 depth stream over real DDS, processed rate and latency.

Run on its own:  . tools/env.sh && python benchmarks/bench_node.py [--model PATH] [--seconds 10]

What it does: renders a synthetic person seen by a RealSense-like 640x480 camera (floor, back wall,
noise, holes, invalid pixels as zeros) once, up front; for each settings preset starts the real node
as its own process (``python -m occflow_ros.ros.node --ros-args --params-file config/reconstruct.yaml
-p ...``, the way a user runs it), publishes the frames as organized PointCloud2 at their capture
times (30 Hz), stamped with the capture time on the system clock, subscribes to every output of the
node, and measures per answered frame stamp -> arrival of its TrackedMesh in this process. Presets:
the defaults of config/reconstruct.yaml, and the settings a small CPU needs (:func:`cpu_preset`).
DDS is Fast DDS on shared memory (tools/env.sh's profile; set here too when it is missing), a random
domain, localhost discovery. (The colleague's ``occflow_ros.ros.demo``, not yet committed when this
was written, streams the same way and scores the result; this lean equivalent only times.)
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from harness import REPO, BenchError, Table, percentile

__all__ = ["Q5_COLUMNS", "NodeRun", "Scene", "cpu_preset", "node_end_to_end", "latency_stats",
           "format_parameter"]

NAMESPACE = "/bench"
INPUT_TOPIC = "/bench/points"
PARAMS_FILE = REPO / "config" / "reconstruct.yaml"
FRAME_ID = "camera_depth_optical_frame"

Q5_COLUMNS = [("stream", "stream"), ("settings", "node settings"), ("sent", "frames sent"),
              ("processed", "frames answered"), ("input_hz", "input rate (Hz)"),
              ("rate_hz", "processed rate (Hz)"), ("p50", "latency p50 (ms)"),
              ("p95", "latency p95 (ms)"), ("track_p50", "latency p50, tracked frames (ms)"),
              ("key_p50", "latency p50, keyframes (ms)"), ("keyframes", "keyframes"),
              ("node_proc", "node processing p50 / p95 (ms)")]


def format_parameter(value: Any) -> str:
    """A value as ``-p name:=VALUE`` text rclpy reads back with the same type (doubles keep a '.')."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = repr(value)
        return text if any(c in text for c in ".en") else text + ".0"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_parameter(float(v)) for v in value) + "]"
    return str(value)


class Scene:
    """The live stream's scene: a synthetic person (``make_shape("human", seed, motion)``) 2.4 m from a
    D435-like ``width`` x ``height`` camera with the default sensor flaws (floor, back wall, noise,
    holes) and invalid pixels as zeros (the RealSense convention), ``seconds`` of frames at ``fps``
    with 3 ms capture jitter. :meth:`render` renders them up front (slower than real time here)."""

    def __init__(self, seconds: float, *, fps: float = 30.0, width: int = 640, height: int = 480,
                 seed: int = 7, motion: str = "jumping_jacks") -> None:
        from occflow_ros.data import DepthCamera, SensorConfig, make_shape, realsense_d435, view_of

        self.seconds, self.fps, self.seed = float(seconds), float(fps), seed
        self.shape = make_shape("human", seed, motion=motion, duration=seconds + 1.0)
        self.camera = DepthCamera(realsense_d435(width, height), view_of(self.shape, 2.4, 0.35),
                                  SensorConfig(invalid="zero"))
        self.description = (f"{width}x{height} at {fps:g} Hz, {seconds:g} s, synthetic person "
                            f"(seed {seed}, {motion}) with floor and back wall")
        self.times = np.zeros(0)
        self.depth_mm = np.zeros((0, height, width), np.uint16)
        self.dirs = self.camera.intrinsics.directions().astype(np.float32)  # (H, W, 3), z = 1

    def object_box(self, margin: float = 0.3) -> tuple[list[float], list[float]]:
        """The person's box over the stream in the optical frame (metres), grown by ``margin``: the
        region of interest a user would set."""
        lo, hi = np.full(3, np.inf), np.full(3, -np.inf)
        for t in np.linspace(0.0, self.seconds, 16):
            v = self.camera.to_optical(self.shape.mesh(float(t))[0])
            lo, hi = np.minimum(lo, v.min(0)), np.maximum(hi, v.max(0))
        return ([round(float(x), 3) for x in lo - margin], [round(float(x), 3) for x in hi + margin])

    def render(self, progress: Callable[[str], None] = print) -> None:
        """Render every frame once, kept as uint16 depth in mm (0 = no depth)."""
        from occflow_ros.data import stream

        times, depth = [], []
        started = time.monotonic()
        for frame in stream(self.shape, self.camera, fps=self.fps, duration=self.seconds,
                            jitter_std=0.003, rng=np.random.default_rng(self.seed)):
            z = np.nan_to_num(frame.cloud[:, :, 2], nan=0.0)
            depth.append(np.rint(z * 1000.0).astype(np.uint16))
            times.append(frame.t)
            if len(times) % 100 == 0:
                progress(f"Q5: rendered {len(times)} frames")
        self.times, self.depth_mm = np.asarray(times), np.stack(depth)
        progress(f"Q5: rendered {len(times)} frames in {time.monotonic() - started:.1f} s")

    def cloud(self, k: int) -> np.ndarray:
        """Frame k as an organized (H, W, 3) float32 cloud, optical frame, metres; zeros where the
        sensor has no depth."""
        return self.dirs * (self.depth_mm[k].astype(np.float32) * np.float32(1e-3))[:, :, None]


def cpu_preset(scene: Scene) -> dict[str, Any]:
    """Node settings for a small CPU (the ones the colleague's demo passes too): one torch thread,
    the person's region of interest with the nearest cluster (preprocessing a whole 640x480 scene is
    the slow part otherwise), keyframe meshing on a 64^3 MISE grid (16 * 2^2) decimated to 2000
    vertices, so a keyframe stays well under the 0.5 s gap that forces the next keyframe."""
    lo, hi = scene.object_box()
    return {"threads": 1, "tracker.preprocess.roi_enabled": True,
            "tracker.preprocess.roi_min": lo, "tracker.preprocess.roi_max": hi,
            "tracker.preprocess.cluster": "nearest", "tracker.meshing.resolution0": 16,
            "tracker.meshing.target_vertices": 2000}


def _dds_environment() -> dict[str, str]:
    """This process's environment with DDS kept on the machine (what tools/env.sh sets), without
    overriding what the caller set."""
    env = dict(os.environ)
    env.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 100)))
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    env.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(REPO / "config" / "fastdds_shm.xml"))
    env.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    return env


@dataclass
class NodeRun:
    """What one live run measured: per sent frame its stamp (ns); per received TrackedMesh its input
    stamp (ns), arrival (ns) and whether it was a keyframe; the node's last diagnostics."""

    stamps_ns: np.ndarray
    received: list[tuple[int, int, bool]] = field(default_factory=list)
    diagnostics: dict[str, str] = field(default_factory=dict)


def latency_stats(run: NodeRun) -> dict[str, Any]:
    """Rates (per second of stream time) and latency percentiles (stamp -> arrival, ms) of a run."""
    stamps = run.stamps_ns
    span = (int(stamps[-1]) - int(stamps[0])) / 1e9 if len(stamps) > 1 else float("nan")
    first: dict[int, tuple[int, bool]] = {}
    for stamp, arrived, key in run.received:
        if stamp not in first or arrived < first[stamp][0]:
            first[stamp] = (arrived, key)
    sent = set(int(s) for s in stamps)
    answered = {s: v for s, v in first.items() if s in sent}
    lat = [(a - s) / 1e6 for s, (a, _) in answered.items()]
    key = [(a - s) / 1e6 for s, (a, k) in answered.items() if k]
    track = [(a - s) / 1e6 for s, (a, k) in answered.items() if not k]
    return {"sent": len(stamps), "processed": len(answered),
            "input_hz": (len(stamps) - 1) / span if span > 0 else None,
            "rate_hz": len(answered) / span if span > 0 else None,
            "p50": percentile(lat, 50), "p95": percentile(lat, 95),
            "track_p50": percentile(track, 50), "key_p50": percentile(key, 50),
            "keyframes": len(key)}


def _stream_to_node(frames: Scene, node: subprocess.Popen, log_path: Path,
                    progress: Callable[[str], None]) -> NodeRun:
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSHistoryPolicy, QoSProfile, QoSReliabilityPolicy, qos_profile_sensor_data
    from rclpy.serialization import deserialize_message
    from rclpy.signals import SignalHandlerOptions
    from sensor_msgs.msg import PointCloud2
    from std_msgs.msg import Header

    from occflow_ros.ros import OUTPUTS, ns_to_stamp, output_topic, stamp_to_ns, xyz_cloud
    from occflow_ros_msgs.msg import TrackedMesh as TrackedMeshMsg

    context = Context()
    rclpy.init(args=[], context=context, signal_handler_options=SignalHandlerOptions.NO)
    ros = rclpy.create_node(f"occflow_bench_{os.getpid()}", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(ros)
    arrivals: list[tuple[int, bytes]] = []
    diagnostics: list[bytes] = []
    try:
        reliable = QoSProfile(history=QoSHistoryPolicy.KEEP_LAST, depth=100,
                              reliability=QoSReliabilityPolicy.RELIABLE)
        tracked_topic = output_topic("tracked_mesh", NAMESPACE)
        for out in OUTPUTS:  # every output has a listener, so the node builds and sends all four
            topic = output_topic(out.name, NAMESPACE)
            if topic == tracked_topic:
                callback = lambda data: arrivals.append((time.time_ns(), data))  # noqa: E731
            else:
                callback = lambda data: None  # noqa: E731
            ros.create_subscription(out.msg_class, topic, callback, reliable, raw=True)
        ros.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, 50, raw=True)
        publisher = ros.create_publisher(PointCloud2, INPUT_TOPIC, qos_profile_sensor_data)

        def spin_for(seconds: float, until: Callable[[], bool] = lambda: False) -> bool:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline and not until():
                executor.spin_once(timeout_sec=min(0.05, max(0.0, deadline - time.monotonic())))
            return until()

        if not spin_for(20.0, lambda: ros.count_subscribers(INPUT_TOPIC) > 0
                        and ros.count_publishers(tracked_topic) > 0):
            raise BenchError(f"DDS discovery failed: no subscriber on {INPUT_TOPIC} after 20 s; "
                             f"node log {log_path}")
        spin_for(0.5)
        start_ns = time.time_ns() + 300_000_000
        stamps = start_ns + np.rint(frames.times * 1e9).astype(np.int64)

        def message(k: int):
            header = Header(frame_id=FRAME_ID, stamp=ns_to_stamp(int(stamps[k])))
            return xyz_cloud(header, frames.cloud(k), is_dense=False)

        next_msg = message(0)
        for k in range(len(stamps)):
            while True:
                remaining = (int(stamps[k]) - time.time_ns()) / 1e9
                if remaining <= 0:
                    break
                executor.spin_once(timeout_sec=min(remaining, 0.02))
            publisher.publish(next_msg)
            if k + 1 < len(stamps):
                next_msg = message(k + 1)
            if node.poll() is not None:
                raise BenchError(f"the node died while streaming (exit {node.returncode}); log "
                                 f"{log_path}:\n{log_path.read_text(errors='replace')[-2000:]}")
            if (k + 1) % 150 == 0:
                progress(f"Q5: streamed {k + 1}/{len(stamps)} frames, {len(arrivals)} meshes back")
        quiet = [time.monotonic(), len(arrivals)]

        def settled() -> bool:
            if len(arrivals) != quiet[1]:
                quiet[:] = [time.monotonic(), len(arrivals)]
            return time.monotonic() - quiet[0] > 2.0

        spin_for(20.0, settled)
        n_diag = len(diagnostics)
        spin_for(3.0, lambda: len(diagnostics) > n_diag)
    finally:
        executor.shutdown()
        ros.destroy_node()
        context.try_shutdown()

    run = NodeRun(stamps_ns=stamps)
    for arrived, data in arrivals:
        msg = deserialize_message(data, TrackedMeshMsg)
        stamp = stamp_to_ns(msg.header.stamp)
        # the keyframe stamp travels as float seconds: equal to the input stamp within a microsecond
        run.received.append((stamp, arrived, abs(stamp_to_ns(msg.keyframe_stamp) - stamp) < 1000))
    for data in reversed(diagnostics):
        msg = deserialize_message(data, DiagnosticArray)
        ours = [s for s in msg.status if s.name.endswith(f"{NAMESPACE}/occflow_reconstruct")]
        if ours:
            run.diagnostics = {kv.key: kv.value for kv in ours[0].values}
            break
    return run


def _start_node(overrides: Mapping[str, Any], log_path: Path, env: Mapping[str, str]
                ) -> tuple[subprocess.Popen, list[str]]:
    command = [sys.executable, "-m", "occflow_ros.ros.node", "--ros-args", "--params-file",
               str(PARAMS_FILE), "-r", f"__ns:={NAMESPACE}", "-r", f"points:={INPUT_TOPIC}"]
    for name, value in overrides.items():
        command += ["-p", f"{name}:={format_parameter(value)}"]
    with open(log_path, "wb") as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=dict(env)), command


def _wait_ready(node: subprocess.Popen, log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while "ready:" not in log_path.read_text(errors="replace"):
        if node.poll() is not None:
            raise BenchError(f"the node exited with status {node.returncode} before it was "
                             f"ready:\n{log_path.read_text(errors='replace')[-2000:]}")
        if time.monotonic() > deadline:
            raise BenchError(f"the node was not ready after {timeout:.0f} s")
        time.sleep(0.2)


def _stop(node: subprocess.Popen) -> None:
    if node.poll() is None:
        node.send_signal(signal.SIGINT)
        try:
            node.wait(timeout=15)
        except subprocess.TimeoutExpired:
            node.kill()
            node.wait()


def node_end_to_end(model: str | os.PathLike, *, seconds: float = 10.0, fps: float = 30.0,
                    presets: Sequence[tuple[str, Mapping[str, Any] | None]] = (("defaults", {}),
                                                                               ("CPU preset", None)),
                    startup_timeout: float = 300.0,
                    progress: Callable[[str], None] = print) -> Table:
    """The question-5 table: per preset one live run of the node with ``config/reconstruct.yaml``
    plus that preset's ``-p`` overrides (None: :func:`cpu_preset`), all on the same ``seconds``-long
    640x480 stream at ``fps``."""
    model = Path(model)
    if not model.is_file():
        raise BenchError(f"no model at {model} for the node (pass --model PATH)")
    table = Table("5. Node end to end", Q5_COLUMNS)
    env = _dds_environment()
    os.environ.update({k: v for k, v in env.items() if k not in os.environ})
    scene = Scene(seconds, fps=fps)
    commands = []
    with tempfile.TemporaryDirectory(prefix="occflow_bench_node_") as tmp:
        for i, (label, preset) in enumerate(presets):
            overrides: dict[str, Any] = {"model_path": str(model.resolve())}
            overrides.update(cpu_preset(scene) if preset is None else preset)
            log_path = Path(tmp) / f"node{i}.log"
            node, command = _start_node(overrides, log_path, env)
            try:
                progress(f"Q5 {label}: node started (pid {node.pid})")
                if not len(scene.times):
                    scene.render(progress)  # while the first node loads its model
                _wait_ready(node, log_path, startup_timeout)
                progress(f"Q5 {label}: node ready; streaming {len(scene.times)} frames at {fps:g} Hz")
                run = _stream_to_node(scene, node, log_path, progress)
            finally:
                _stop(node)
            log = log_path.read_text(errors="replace").splitlines()
            warm = [line.split("]: ")[-1] for line in log if "warm-up on" in line]
            stats = latency_stats(run)
            d = run.diagnostics
            shown = ", ".join(f"{k}={format_parameter(v)}" for k, v in overrides.items()
                              if k != "model_path")
            table.add({"stream": scene.description, "settings": f"{label}: config/reconstruct.yaml"
                       + (f" + {shown}" if shown else ""), **stats,
                       "node_proc": f"{_num(d.get('processing_p50_ms'))} / "
                                    f"{_num(d.get('processing_p95_ms'))}"})
            if stats["processed"] and stats["keyframes"] == stats["processed"]:
                table.notes.append(
                    f"{label}: every answered frame was a keyframe. A keyframe here takes longer than "
                    "`tracker.max_gap_seconds` (0.5 s), so the next frame the node takes is more than "
                    "0.5 s later and is a keyframe again (the gap rule; past 1 s, the window rule): "
                    "with these settings the node never gets to track on this machine.")
            table.notes.append(
                f"{label}: node diagnostics at the end: " + ", ".join(
                    f"{k} {d[k]}" for k in ("frames_received", "frames_processed", "dropped_frames",
                                            "keyframes", "resets", "held_frames") if k in d)
                + (f"; {warm[-1]}" if warm else ""))
            commands.append(" ".join(["python"] + command[1:]).replace(str(model.resolve()), str(model)))
    table.notes[:0] = [
        "The node runs as its own process, the way a user starts it (`" + commands[0] + "`, with the "
        "row's overrides as `-p`); the stream comes from the benchmark's process over Fast DDS "
        "shared memory (config/fastdds_shm.xml) with best-effort sensor-data QoS, and every output "
        "topic has a subscriber there (so the node builds and sends all four).",
        "Latency: capture stamp (system clock, the time the frame is published) -> arrival of the "
        "frame's TrackedMesh in the streaming process. A frame is answered when a TrackedMesh "
        "carrying its stamp arrives; the node keeps only the newest cloud (one-slot mailbox), so "
        "frames that arrive while it works are dropped, not queued. Processed rate = frames "
        "answered / stream duration. 'node processing' is from the node's own /diagnostics "
        "(decode + tracker + outputs over its last diagnostics window).",
    ]
    return table


def _num(value: Any) -> str:
    try:
        return f"{float(value):.0f}"
    except (TypeError, ValueError):
        return "-"


def main() -> None:
    import argparse

    from occflow_ros.model import shipped_model_path

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(shipped_model_path()))
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=0, help="the node's torch threads (0: yaml)")
    args = parser.parse_args()
    params = {"threads": args.threads} if args.threads else {}
    print(node_end_to_end(args.model, seconds=args.seconds,
                          presets=(("defaults", params), ("CPU preset", None))).markdown())


if __name__ == "__main__":
    main()
