"""The demo (``make demo``): a simulated RealSense stream of a person through the live node over DDS, scored.

What :func:`run_demo` does, in order:

1. builds the scene (:class:`~occflow_ros.data.demo_scene.DemoScene`: a seeded person, a
   640x480 D435-like camera with floor, back wall, noise and zero-valued invalid pixels);
2. starts the real node as its own process, exactly as a user (and the tests) do:
   ``python -m occflow_ros.ros.node --ros-args --params-file config/reconstruct.yaml -p ... -r
   points:=/demo/points``, with this CPU's settings as ``-p`` overrides (:func:`demo_parameters`);
3. pre-renders every frame while the node loads its model and warms up (rendering a frame takes
   longer than a 30 Hz period), waits for the node's "ready" line and for DDS discovery;
4. publishes the stream at its capture times (30 Hz with jitter) as organized PointCloud2 stamped
   with the capture time, and records everything the node publishes with the time it arrived;
5. lets the node finish, stops it with SIGINT and checks that it exits with status 0;
6. scores the run against the ground truth (:mod:`occflow_ros.apps.demo_report`), renders a
   few frames (:mod:`occflow_ros.evaluation.pictures`), writes ``report.md``, ``report.json``, the
   pictures, the node's log and a bag of its outputs into a new ``out/demo-YYYYmmdd-HHMMSS/``.

DDS stays on this machine: ``make demo`` sources tools/env.sh (shared-memory Fast DDS profile, a
random domain, localhost discovery); run directly, the demo sets the same defaults for itself and
the node it starts.
"""

from __future__ import annotations

import datetime
import shutil
import tempfile
import os
import time
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import numpy as np

from .node_process import NodeProcess, NodeProcessError, format_parameter
from .demo_report import (
    ReceivedMesh,
    id_persistence,
    latency_summary,
    score_tracking,
    summarize_errors,
    write_report,
)
from ..data.demo_scene import DemoScene, SceneConfig
from ..evaluation.pictures import Panel, PictureError, render_panels
from ..model import shipped_model_path
from ..ros.dds import local_dds_environment
from ..tracking import TrackedMesh
from ..ros.node_config import NodeConfigError
from ..ros.params_file import shipped_config

__all__ = ["CPU_PARAMETERS", "DemoConfig", "DemoError", "DemoResult", "MODEL_HINT",
           "demo_parameters", "format_parameter", "run_demo"]

NAMESPACE = "/demo"
INPUT_TOPIC = "/demo/points"
DEPTH_TOPIC = "/demo/depth"
CAMERA_INFO_TOPIC = "/demo/camera_info"
INPUTS = ("points", "depth")
MODEL_HINT = (
    "the shipped model is occflow_ros/weights/occflow_default.pt; until it is there, train one with "
    "the commands of docs/training.md (occflow-make-dataset ... && "
    "occflow-train --config config/train_synthetic.yaml) and run the demo with --model "
    "runs/train/best.pt (make demo DEMO_ARGS='--model runs/train/best.pt')")


class DemoError(RuntimeError):
    """The demo could not run or the node misbehaved; the message says what happened and what to do."""


@dataclass(frozen=True)
class DemoConfig:
    """The demo's settings.

    model: the checkpoint the node loads (default: the shipped model).
    scene: what the camera sees (person, motion, stream length, camera).
    out_root: reports go to a new ``out_root/demo-YYYYmmdd-HHMMSS/``.
    params_file: the node's parameters file (None: the package's config/reconstruct.yaml, from
      the checkout or the installed share directory).
    parameters: more ``-p`` overrides for the node, on top of :func:`demo_parameters`.
    roi_margin: metres added around the person's box for the node's region of interest.
    startup_timeout: seconds the node may take to load and warm up.
    bag: record the node's outputs into ``bag/`` (mcap) in the report directory.
    pictures: frames rendered into ``frames.png`` (0: none).
    input: what the node is sent: ``points`` (organized PointCloud2) or ``depth`` (16UC1 Image
      with its CameraInfo, the node's ``input.type: depth``).
    """

    model: Path = field(default_factory=shipped_model_path)
    scene: SceneConfig = field(default_factory=SceneConfig)
    out_root: Path = Path("out")
    params_file: Optional[Path] = None
    parameters: Mapping[str, Any] = field(default_factory=dict)
    roi_margin: float = 0.3
    startup_timeout: float = 240.0
    bag: bool = True
    pictures: int = 3
    input: str = "points"

    def __post_init__(self) -> None:
        if self.input not in INPUTS:
            raise DemoError(f"input must be one of {', '.join(INPUTS)}, got {self.input!r}")
        if not 0.0 <= self.roi_margin <= 2.0:
            raise DemoError(f"roi_margin must be in [0, 2] m, got {self.roi_margin}")
        if not 5.0 <= self.startup_timeout <= 3600.0:
            raise DemoError(f"startup_timeout must be in [5, 3600] s, got {self.startup_timeout}")
        if not 0 <= self.pictures <= 12:
            raise DemoError(f"pictures must be in [0, 12], got {self.pictures}")


@dataclass
class DemoResult:
    """What a demo run produced: its directory, the summary (report.json's content) and its text."""

    out_dir: Path
    summary: Dict[str, Any]
    text: str
    ok: bool


# The node's settings for this 2-core CPU (the demo passes them with -p; config/reconstruct.yaml keeps
# the defaults a desktop or GPU user wants). Why each one: see WHY_PARAMETERS.
CPU_PARAMETERS: Dict[str, Any] = {
    "device": "cpu",
    "tracker.preprocess.roi_enabled": True,
    "tracker.preprocess.cluster": "nearest",
    "output.depth": 10,
    "log_period": 5.0,
}
WHY_PARAMETERS = (
    "Why: the CPU (device cpu: the preset is then the CPU preset, config/preset_cpu.yaml: one "
    "torch thread, keyframes meshed in line on a 48^3 MISE grid decimated to 2000 vertices, ~200 "
    "ms on one core, and the midpoint solver); a region of interest around where the person "
    "stands (a user sets it once for a fixed camera; it cuts the 300k points of a 640x480 frame "
    "to ~60k before filtering), with the nearest cluster kept after the floor plane is removed; "
    "output history 10 so the demo records every output. Everything else is "
    "config/reconstruct.yaml's default (a keyframe every 2 s: the automatic window with the "
    "deformation graph).")


def demo_parameters(scene: DemoScene, config: DemoConfig) -> Dict[str, Any]:
    """The node's ``-p`` overrides of this demo: the model, :data:`CPU_PARAMETERS`, the region of
    interest (the person's box over the stream, in the optical frame, grown by ``roi_margin``) and
    ``config.parameters`` last (they win)."""
    lo, hi = scene.object_box(config.roi_margin)
    params: Dict[str, Any] = {"model_path": str(Path(config.model).resolve())}
    params.update(CPU_PARAMETERS)
    params["input.type"] = config.input
    params["tracker.preprocess.roi_min"] = [round(float(x), 3) for x in lo]
    params["tracker.preprocess.roi_max"] = [round(float(x), 3) for x in hi]
    params.update(config.parameters)
    return params


@dataclass
class _Recording:
    """Everything received from the node: (receive time ns, serialized message) per topic."""

    messages: Dict[str, List[Tuple[int, bytes]]] = field(default_factory=dict)

    def add(self, topic: str, data: bytes) -> None:
        self.messages.setdefault(topic, []).append((time.time_ns(), data))

    def count(self, topic: str) -> int:
        return len(self.messages.get(topic, ()))


def _stream(scene: DemoScene, node: NodeProcess, say: Callable[[str], None], depth: bool = False
            ) -> Tuple[int, np.ndarray, _Recording, Dict[str, str]]:
    """Publish the pre-rendered frames at their capture times and record the node's outputs
    (``depth``: as 16UC1 images with their camera info, else as organized clouds).

    Returns (stream start ns on the system clock, publish times ns (N,), the recording, the node's
    last diagnostics key/values).
    """
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSHistoryPolicy, QoSProfile, QoSReliabilityPolicy, qos_profile_sensor_data
    from rclpy.serialization import deserialize_message
    from rclpy.signals import SignalHandlerOptions
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2
    from std_msgs.msg import Header

    from occflow_ros_msgs.msg import TrackedMesh as TrackedMeshMsg

    from ..ros.conversions import ns_to_stamp, stamp_to_ns
    from ..ros.outputs import OUTPUTS, output_topic
    from ..ros.pointcloud2 import xyz_cloud

    context = Context()
    rclpy.init(args=[], context=context, signal_handler_options=SignalHandlerOptions.NO)
    ros = rclpy.create_node(f"occflow_demo_{os.getpid()}", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(ros)
    record = _Recording()
    try:
        reliable = QoSProfile(history=QoSHistoryPolicy.KEEP_LAST, depth=100,
                              reliability=QoSReliabilityPolicy.RELIABLE)
        topics = {out.name: (output_topic(out.name, NAMESPACE), out.msg_class) for out in OUTPUTS}
        topics["diagnostics"] = ("/diagnostics", DiagnosticArray)
        for name, (topic, msg_class) in topics.items():
            qos = 50 if name == "diagnostics" else reliable
            ros.create_subscription(msg_class, topic, lambda data, topic=topic: record.add(topic, data),
                                    qos, raw=True)
        input_topic = DEPTH_TOPIC if depth else INPUT_TOPIC
        publisher = ros.create_publisher(Image if depth else PointCloud2, input_topic,
                                         qos_profile_sensor_data)
        info_publisher = ros.create_publisher(CameraInfo, CAMERA_INFO_TOPIC,
                                              qos_profile_sensor_data)
        tracked_topic = topics["tracked_mesh"][0]

        def spin_for(seconds: float, until: Callable[[], bool] = lambda: False) -> bool:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                if until():
                    return True
                executor.spin_once(timeout_sec=min(0.05, max(0.0, deadline - time.monotonic())))
            return until()

        if not spin_for(15.0, lambda: ros.count_subscribers(input_topic) > 0
                        and ros.count_publishers(tracked_topic) > 0):
            raise DemoError(f"DDS discovery failed: the node does not subscribe to {input_topic} "
                            f"or publish {tracked_topic} after 15 s (ROS_DOMAIN_ID "
                            f"{os.environ.get('ROS_DOMAIN_ID')}); node log:\n{node.tail()}")
        spin_for(0.3)  # let the matched endpoints settle

        n = len(scene)
        start_ns = time.time_ns() + 300_000_000
        stamps = start_ns + np.rint(scene.times * 1e9).astype(np.int64)

        intr = scene.camera.intrinsics

        def message(k: int) -> Any:
            header = Header(frame_id=scene.frame_id, stamp=ns_to_stamp(int(stamps[k])))
            if not depth:
                return xyz_cloud(header, scene.cloud(k), is_dense=False)
            depth_mm = np.ascontiguousarray(scene.depth_mm[k], dtype="<u2")
            image = Image(header=header, height=intr.height, width=intr.width, encoding="16UC1",
                          is_bigendian=0, step=2 * intr.width)
            image.data = depth_mm.tobytes()
            info = CameraInfo(header=header, height=intr.height, width=intr.width,
                              distortion_model="plumb_bob", d=[0.0] * 5,
                              k=[intr.fx, 0.0, intr.cx, 0.0, intr.fy, intr.cy, 0.0, 0.0, 1.0])
            return image, info

        published = np.zeros(n, np.int64)
        next_msg = message(0)
        report_every = max(1, int(round(5 * scene.config.fps)))
        for k in range(n):
            while True:
                remaining = (int(stamps[k]) - time.time_ns()) / 1e9
                if remaining <= 0:
                    break
                executor.spin_once(timeout_sec=min(remaining, 0.05))
            if depth:
                info_publisher.publish(next_msg[1])
                publisher.publish(next_msg[0])
            else:
                publisher.publish(next_msg)
            published[k] = time.time_ns()
            if k + 1 < n:
                next_msg = message(k + 1)
            if not node.alive():
                raise DemoError(f"the node died while streaming (exit status {node.proc.returncode}) "
                                f"at frame {k}; its log:\n{node.tail()}")
            if (k + 1) % report_every == 0:
                say(f"streamed {(k + 1) / scene.config.fps:4.1f} s: {record.count(tracked_topic)} "
                    "tracked meshes received")
        # the node's last frames: wait until the last sent frame is answered or the outputs go quiet
        last_stamp = int(stamps[-1])

        def last_answered() -> bool:
            msgs = record.messages.get(tracked_topic, [])
            if not msgs:
                return False
            msg = deserialize_message(msgs[-1][1], TrackedMeshMsg)
            return stamp_to_ns(msg.header.stamp) >= last_stamp

        quiet_since = [time.monotonic(), record.count(tracked_topic)]

        def done() -> bool:
            if record.count(tracked_topic) != quiet_since[1]:
                quiet_since[:] = [time.monotonic(), record.count(tracked_topic)]
            return last_answered() or time.monotonic() - quiet_since[0] > 2.0

        spin_for(15.0, done)
        # one more diagnostics message, so its counters include every frame
        n_diag = record.count("/diagnostics")
        spin_for(3.0, lambda: record.count("/diagnostics") > n_diag)
        diagnostics: Dict[str, str] = {}
        for _, data in reversed(record.messages.get("/diagnostics", [])):
            msg = deserialize_message(data, DiagnosticArray)
            ours = [s for s in msg.status if s.name.endswith(f"{NAMESPACE}/occflow_reconstruct")]
            if ours:
                diagnostics = {"message": ours[0].message,
                               **{kv.key: kv.value for kv in ours[0].values}}
                break
        return start_ns, published, record, diagnostics
    finally:
        executor.shutdown()
        ros.destroy_node()
        context.try_shutdown()


def _received_meshes(record: _Recording, start_ns: int, stamps_ns: np.ndarray
                     ) -> List[ReceivedMesh]:
    """The TrackedMesh messages as TrackedMesh objects, times in seconds from the stream start."""
    from occflow_ros_msgs.msg import TrackedMesh as TrackedMeshMsg
    from rclpy.serialization import deserialize_message

    from ..ros.conversions import stamp_to_ns
    from ..ros.outputs import output_topic
    from ..ros.tracked_mesh_msg import read_tracked_mesh_msg

    frame_of = {int(s): k for k, s in enumerate(stamps_ns)}
    out = []
    previous = None
    for received_ns, data in record.messages.get(output_topic("tracked_mesh", NAMESPACE), []):
        msg = deserialize_message(data, TrackedMeshMsg)
        stamp = stamp_to_ns(msg.header.stamp)
        if stamp not in frame_of:
            raise DemoError(f"the node published a TrackedMesh stamped {stamp} ns, which is no "
                            "frame's stamp: outputs must carry their input's header")
        # the node carries the keyframe time as float seconds (~240 ns steps at today's epoch): snap it
        # to the frame stamp it came from
        key = stamp_to_ns(msg.keyframe_stamp)
        i = int(np.clip(np.searchsorted(stamps_ns, key), 1, len(stamps_ns) - 1))
        nearest = min(int(stamps_ns[i - 1]), int(stamps_ns[i]), key=lambda s: abs(s - key))
        if abs(nearest - key) < 1000:
            key = nearest
        a = read_tracked_mesh_msg(msg)
        # a new topology arrives with a new (keyframe_id, keyframe_stamp): the keyframe's own frame,
        # or the later frame that adopted a keyframe meshed in the background
        segment = (int(msg.keyframe_id), key)
        changed = segment != previous
        previous = segment
        mesh = TrackedMesh(stamp=(stamp - start_ns) / 1e9, keyframe_stamp=(key - start_ns) / 1e9,
                           keyframe_id=int(msg.keyframe_id), vertices=a.vertices.copy(),
                           faces=a.triangles.copy(), vertex_ids=a.vertex_ids.copy(),
                           canonical_vertices=a.canonical_vertices.copy(),
                           topology_changed=changed)
        out.append(ReceivedMesh(mesh=mesh, frame=frame_of[stamp],
                                received_s=(received_ns - start_ns) / 1e9))
    return out


def _write_bag(path: Path, record: _Recording) -> int:
    """The recorded outputs into a new mcap bag at their receive times; returns the message count."""
    from diagnostic_msgs.msg import DiagnosticArray

    from ..ros.bag_io import OutputBag
    from ..ros.outputs import OUTPUTS, output_topic

    classes = {output_topic(o.name, NAMESPACE): o.msg_class for o in OUTPUTS}
    classes["/diagnostics"] = DiagnosticArray
    with OutputBag(path) as bag:
        for topic, msgs in record.messages.items():
            if msgs:
                bag.add_topic(topic, classes[topic])
        for topic, msgs in sorted(record.messages.items()):
            for received_ns, data in msgs:
                bag.write(topic, received_ns, data)
        return bag.message_count


def _pictures(scene: DemoScene, received: List[ReceivedMesh], path: Path, count: int) -> Tuple[Path, str]:
    """``count`` frames spread over the run (tracking frames well after a keyframe preferred), one row
    each: the person's observed points, the mesh from the sensor, the mesh from the side. Returns the
    picture's path and its caption."""
    from ..ros.conversions import ColorBox

    first_key = next((r for r in received if r.is_keyframe), received[0])
    box = ColorBox.around(first_key.mesh.canonical_vertices)  # what the node fits: RViz's colours
    late = [r for r in received if r.mesh.stamp - r.mesh.keyframe_stamp > 0.3] or received
    picks = [late[int(i)] for i in np.linspace(0, len(late) - 1, count).round()]
    panels = []
    for r in picks:
        m = r.mesh
        colors = box.colors(m.canonical_vertices)[:, :3]
        cloud = scene.cloud(r.frame)[scene.object_mask(r.frame)]
        when = f"t {m.stamp:.2f} s, {m.stamp - m.keyframe_stamp:.2f} s after keyframe {m.keyframe_id}"
        for draw, yaw, what in (("points", 0.0, "input points"), ("mesh", 0.0, "mesh, sensor view"),
                                ("mesh", 70.0, "mesh, side view")):
            panels.append(Panel(m.vertices, m.faces, colors, cloud, yaw, draw, f"{when}\n{what}"))
    renderer = render_panels(panels, path, columns=3)
    caption = ("Each row: one frame. Left: the person's points in that input frame (what the node got, "
               "background removed for the picture). Middle: the tracked mesh from the sensor, coloured by "
               "each vertex's canonical (first-seen) position, the colours RViz shows (`ColorBox` fitted "
               "to the first keyframe): a surface point keeps its colour as it moves and across "
               "keyframes. Right: the same mesh turned 70 degrees (the side the camera does not see is the "
               f"model's completion). Drawn by {renderer}.")
    return path, caption


def _new_out_dir(root: Path) -> Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    for i in range(100):
        path = root / (f"demo-{stamp}" if i == 0 else f"demo-{stamp}-{i + 1}")
        try:
            path.mkdir(parents=True, exist_ok=False)
            return path
        except FileExistsError:
            continue
    raise DemoError(f"cannot create a new report directory under {root}")


def _summary_text(summary: Mapping[str, Any]) -> str:
    live, err, ids = summary["live"], summary["errors"], summary["ids"]
    lat = live["latency_ms"]

    def f(x: Any, d: int = 1) -> str:
        return "n/a" if x is None else f"{x:.{d}f}"

    kept = ids["kept"]["mean"]
    lines = [
        f"occflow_ros demo: {summary['scene']['seconds']:g} s of {summary['scene']['camera']['width']}x"
        f"{summary['scene']['camera']['height']} depth at {f(live['input_rate_hz'])} Hz -> node "
        f"processed {f(live['processed_rate_hz'])} Hz ({live['frames_processed']}/{live['frames_sent']} "
        f"frames, {live['frames_dropped']} dropped), {live['keyframes']} keyframes",
        f"  latency stamp->receipt: all p50 {f(lat['all']['p50'], 0)} / p95 {f(lat['all']['p95'], 0)} ms; "
        f"tracking frames p50 {f(lat['tracking_frames']['p50'], 0)} / p95 "
        f"{f(lat['tracking_frames']['p95'], 0)} ms; keyframes p50 {f(lat['keyframes']['p50'], 0)} ms",
        f"  correspondence L2: {f(err['corr_l2_cm']['later_frames'], 2)} cm tracked vs "
        f"{f(err['corr_l2_cm']['static_later_frames'], 2)} cm static (keyframe "
        f"{f(err['corr_l2_cm']['keyframe'], 2)} cm); Chamfer-L1 keyframe {f(err['chamfer_l1_cm']['keyframe'], 2)}"
        f" cm, later frames {f(err['chamfer_l1_cm']['later_frames'], 2)} cm tracked vs "
        f"{f(err['chamfer_l1_cm'].get('static_later_frames'), 2)} cm static",
        "  by time since keyframe (s: cm tracked/static): " + ", ".join(
            f"{b['from_s']:.1f}: {f(b['corr_l2_cm'], 1)}/{f(b['static_corr_l2_cm'], 1)}"
            for b in err["over_time"][::2]),
        f"  vertex ids kept across keyframes: {f(None if kept is None else 100 * kept)} % (mean of "
        f"{ids['keyframe_changes']} changes); node exit status {summary['node']['exit_code']}",
    ]
    return "\n".join(lines)


#: A stream larger than this is rendered into memory-mapped files in the report directory (removed
#: at the end of the run) instead of memory: 600 s at 640x480 is ~11 GB.
IN_MEMORY_BYTES = 1 << 30


def run_demo(config: DemoConfig, *, say: Callable[[str], None] = print) -> DemoResult:
    """Run the demo (see the module docstring); returns its result. Raises DemoError with a message
    that names the problem (model missing, node failed to start or died, no output, unclean exit)."""
    stores: List[Path] = []
    try:
        return _run_demo(config, say, stores)
    finally:
        for store in stores:  # the frames of a long stream, kept on disk during the run
            shutil.rmtree(store, ignore_errors=True)


def _run_demo(config: DemoConfig, say: Callable[[str], None], stores: List[Path]) -> DemoResult:
    model = Path(config.model)
    if not model.is_file():
        raise DemoError(f"no model at {model}: {MODEL_HINT}")
    if config.params_file is None:
        try:
            config = dataclasses.replace(config, params_file=shipped_config("reconstruct.yaml"))
        except NodeConfigError as e:
            raise DemoError(str(e)) from None
    if not Path(config.params_file).is_file():
        raise DemoError(f"the node's parameters file {config.params_file} does not exist")
    try:
        profile = shipped_config("fastdds_shm.xml")
    except NodeConfigError:
        profile = None  # not installed with the package: Fast DDS's defaults (the node warns)
    env = local_dds_environment(profile=profile)
    env.setdefault("OMP_NUM_THREADS", "1")
    os.environ.update({k: v for k, v in env.items() if k not in os.environ})
    out_dir = _new_out_dir(Path(config.out_root))
    started = datetime.datetime.now().isoformat(timespec="seconds")
    t_begin = time.monotonic()
    say(f"demo: report directory {out_dir}")

    scene = DemoScene(config.scene)
    parameters = demo_parameters(scene, config)
    node = NodeProcess(out_dir / "node.log", params_file=Path(config.params_file),
                       parameters=parameters, env=env, ros_args=[
                           "-r", f"__ns:={NAMESPACE}", "-r", f"points:={INPUT_TOPIC}",
                           "-r", f"depth:={DEPTH_TOPIC}", "-r", f"camera_info:={CAMERA_INFO_TOPIC}"])
    say(f"demo: node started (pid {node.proc.pid}, log {out_dir / 'node.log'}); rendering "
        f"{config.scene.seconds:g} s of {config.scene.width}x{config.scene.height} frames meanwhile")
    try:
        last = [0.0]

        def progress(done: int, total: int) -> None:
            if time.monotonic() - last[0] > 10.0 or done == total:
                last[0] = time.monotonic()
                say(f"demo: rendered {done}/{total} frames")

        store = None
        if scene.rendered_bytes > IN_MEMORY_BYTES:
            store = Path(tempfile.mkdtemp(prefix=".frames-", dir=out_dir))
            stores.append(store)
            say(f"demo: {scene.rendered_bytes / 2**30:.1f} GB of frames go to {store} (memory-"
                "mapped; removed at the end), not into memory")
        scene.render(progress, store=store)
        say(f"demo: rendered in {scene.render_seconds:.1f} s; waiting for the node")
        try:
            node.wait_ready(config.startup_timeout)
        except NodeProcessError as e:
            raise DemoError(str(e)) from None
        target = (f"{DEPTH_TOPIC} and {CAMERA_INFO_TOPIC}" if config.input == "depth"
                  else INPUT_TOPIC)
        say(f"demo: node ready after {time.monotonic() - t_begin:.1f} s; streaming "
            f"{config.scene.seconds:g} s at {config.scene.fps:g} Hz to {target}")
        start_ns, published, record, diagnostics = _stream(
            scene, node, lambda s: say("demo: " + s), depth=config.input == "depth")
        try:
            exit_code = node.stop()
        except NodeProcessError as e:
            raise DemoError(str(e)) from None
    except BaseException:
        node.kill()
        raise
    say(f"demo: node stopped with SIGINT, exit status {exit_code}")
    if exit_code != 0:
        raise DemoError(f"the node exited with status {exit_code} after SIGINT (expected 0); its log "
                        f"({node.log_path}):\n{node.tail()}")

    stamps_ns = start_ns + np.rint(scene.times * 1e9).astype(np.int64)
    received = _received_meshes(record, start_ns, stamps_ns)
    if not received:
        raise DemoError(f"the node published no TrackedMesh for {len(scene)} frames; its log "
                        f"({node.log_path}):\n{node.tail()}")
    say(f"demo: scoring {len(received)} tracked meshes against the ground truth")
    t_scored = time.monotonic()
    live = latency_summary(scene.times, (published - start_ns) / 1e9, received)
    rows = score_tracking(received, lambda k: scene.truth(float(scene.times[k])))
    errors = summarize_errors(rows)
    ids = id_persistence([r.mesh for r in received])
    say(f"demo: scored in {time.monotonic() - t_scored:.1f} s")

    files = {"report.md": "this report", "report.json": "every number, per-frame rows included",
             "node.log": "the node's output"}
    summary: Dict[str, Any] = {
        "started": started, "model": str(model.resolve()), "scene": scene.describe(),
        "node": {"command": node.command, "overrides": {k: format_parameter(v)
                                                        for k, v in parameters.items()},
                 "command_note": f"`python -m occflow_ros.ros.node --ros-args --params-file "
                                 f"{config.params_file} -r points:={INPUT_TOPIC} ...` with the "
                                 "overrides below, its own process, shared-memory Fast DDS.",
                 "why": WHY_PARAMETERS, "exit_code": exit_code,
                 "dropped_frames": _int(diagnostics.get("dropped_frames")),
                 "diagnostics": diagnostics},
        "live": live, "errors": errors, "ids": ids,
        "messages_received": {t: len(m) for t, m in record.messages.items()},
        "frames": rows,
    }
    images = []
    if config.pictures:
        try:
            t_pictures = time.monotonic()
            path, caption = _pictures(scene, received, out_dir / "frames.png", config.pictures)
            images.append(str(path))
            summary["image_caption"] = caption
            files["frames.png"] = "rendered frames"
            say(f"demo: {path.name} rendered in {time.monotonic() - t_pictures:.1f} s")
        except PictureError as e:
            say(f"demo: no pictures: {e}")
            summary["pictures_error"] = str(e)
    summary["images"] = images
    if config.bag:
        t_bag = time.monotonic()
        count = _write_bag(out_dir / "bag", record)
        say(f"demo: bag of {count} messages written in {time.monotonic() - t_bag:.1f} s")
        files["bag/"] = (f"the node's outputs as received ({count} messages, mcap; play with `ros2 bag "
                         "play` + RViz, config/occflow.rviz); the input clouds are not recorded "
                         "(4.9 MB each)")
    summary["files"] = files
    summary["demo_seconds"] = round(time.monotonic() - t_begin, 1)
    write_report(out_dir, summary)
    text = _summary_text(summary)
    ok = live["frames_processed"] > 0 and ids["segments_consistent"]
    return DemoResult(out_dir=out_dir, summary=summary, text=text, ok=ok)


def _int(value: Optional[str]) -> Optional[int]:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
