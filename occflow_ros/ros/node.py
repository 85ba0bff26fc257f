"""The ROS 2 node ``reconstruct``: depth clouds in, tracked meshes out (MarkerArray, clouds, TrackedMesh, diagnostics).

Run it as ``ros2 launch occflow_ros reconstruct.launch.py``, ``ros2 run occflow_ros reconstruct`` or
``python -m occflow_ros.ros.node --ros-args --params-file config/reconstruct.yaml -r points:=/camera/depth/points``.

The node is an adapter: the :class:`~occflow_ros.tracking.Tracker` does the work; the node owns the
parameters, QoS, the queue, timing and diagnostics.

Queue and threads. The ``points`` subscription callback runs on a SingleThreadedExecutor in the main
thread and only stores the serialized message (``raw=True``: not even deserialized) in a one-slot
mailbox, counting the untaken message it replaces as dropped: it returns in microseconds, whatever the
tracker is doing. One worker thread takes the newest message, deserializes and decodes it
(``read_xyz``), feeds the tracker, converts the result and publishes it. A dedicated thread rather than a
MultiThreadedExecutor: the tracker is one stateful, strictly sequential pipeline (a frame depends on the
previous one), so there is nothing to run in parallel, and a callback that ran the tracker inside an
executor would hold an executor thread for tens to hundreds of ms, needs callback groups to keep it
serial and would still need a newest-wins queue in front of it. The worker also makes shutdown simple:
close the mailbox, join the thread. torch and numpy release the GIL while they compute, so the
executor (subscription, diagnostics timer, parameter services) stays responsive.

Shutdown (SIGINT/SIGTERM, within 2 s): the worker is told to stop; a keyframe in progress is abandoned
at its next network batch or meshing step (``Tracker.feed(should_stop=...)``), the worker is joined,
and the outputs already published are flushed (reliable publishers wait until subscribers acknowledged
them, briefly) before the node is destroyed.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import threading
import time
import traceback
from typing import Any, Dict, List, Optional

import numpy as np
import rclpy
import torch
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    ParameterType,
    SetParametersResult,
)
from rclpy.context import Context
from rclpy.duration import Duration
from rclpy.exceptions import ParameterException
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSDurabilityPolicy, QoSHistoryPolicy, QoSProfile, QoSReliabilityPolicy
from rclpy.qos_overriding_options import QoSOverridingOptions
from rclpy.serialization import deserialize_message
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header
from std_srvs.srv import Trigger

from ..model import (CheckpointError, ModelError, limit_cpu_threads, load_checkpoint,
                     select_device)
from ..tracking import Tracker, TrackerConfig, TrackingCancelled, TrackingError
from .conversions import stamp_to_ns, to_diagnostics
from .depth_image import CameraInfoStore, depth_points
from .errors import DepthImageError, MessageError
from .node_config import (
    PARAMETERS,
    PARAMETERS_BY_NAME,
    NodeConfig,
    NodeConfigError,
    OutputOptions,
    ParamSpec,
    apply_preset,
    check_parameter,
    node_config_from_parameters,
    preset_values,
    unknown_parameters_message,
)
from .node_runtime import LatestMailbox, NodeStats
from .outputs import NODE_NAME, OUTPUTS, OutputBuilder, StreamGuard
from .pointcloud2 import auto_stride, image_stride, read_xyz

__all__ = ["NODE_NAME", "EXIT_OK", "EXIT_MODEL", "EXIT_PARAMETERS", "ReconstructNode", "main"]

EXIT_OK, EXIT_MODEL, EXIT_PARAMETERS = 0, 1, 2
THROTTLE_S = 5.0  # rate limit of repeated warnings about bad input
JOIN_TIMEOUT_S = 1.0  # how long shutdown waits for the worker (SIGTERM to exit stays under 2 s)
FLUSH_TIMEOUT_S = 0.3  # how long shutdown waits for subscribers to acknowledge the last outputs
NO_INPUT_WARN_S = 2.0  # diagnostics warn when no cloud came for this long
TRACKER_ERRORS_FOR_ERROR = 3  # diagnostics say ERROR after this many tracker errors in a row
_LARGE_CLOUD_NOTE = (
    "best-effort delivery of large clouds (a 640x480 cloud is 4.9 MB) needs Fast DDS shared memory or "
    "LARGE_DATA: over the default UDP transport no message arrives at all (every fragment must "
    "arrive). Set FASTDDS_DEFAULT_PROFILES_FILE to config/fastdds_shm.xml (or "
    "FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA) in the camera driver's and this node's environment, or "
    "use input.qos reliable; see README, 'DDS and large clouds'")


class _Interrupted(Exception):
    """SIGINT/SIGTERM arrived while the node was starting up."""


def _descriptor(spec: ParamSpec) -> ParameterDescriptor:
    types = {"bool": ParameterType.PARAMETER_BOOL, "integer": ParameterType.PARAMETER_INTEGER,
             "double": ParameterType.PARAMETER_DOUBLE, "string": ParameterType.PARAMETER_STRING,
             "double array": ParameterType.PARAMETER_DOUBLE_ARRAY}
    d = ParameterDescriptor(name=spec.name, type=types[spec.kind], description=spec.description,
                            additional_constraints=spec.allowed(), read_only=not spec.dynamic)
    if spec.kind == "double" and spec.lo is not None and spec.hi is not None:
        d.floating_point_range = [FloatingPointRange(from_value=float(spec.lo),
                                                     to_value=float(spec.hi), step=0.0)]
    elif spec.kind == "integer" and spec.lo is not None and spec.hi is not None:
        d.integer_range = [IntegerRange(from_value=int(spec.lo), to_value=int(spec.hi), step=1)]
    return d


def _plain(value: Any) -> Any:
    """A parameter value as plain Python (double arrays come as array.array or numpy arrays)."""
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    try:
        return [v.item() if isinstance(v, np.generic) else v for v in value]
    except TypeError:
        return value


def _topic_name(subscription: Any, fallback: str) -> str:
    """A subscription's resolved (remapped) topic name."""
    try:
        return subscription.topic_name
    except AttributeError:  # an rclpy without Subscription.topic_name
        return fallback


def _dummy_frame(config: TrackerConfig, t: float, n: int = 4000) -> np.ndarray:
    """(n, 3) float32 metres: the camera-facing half of a 0.2 m sphere moving 0.3 m/s along x, in front
    of the camera (or at the ROI's centre), for the warm-up."""
    pre = config.preprocess
    if pre.roi_min is not None:
        lo, hi = np.asarray(pre.roi_min), np.asarray(pre.roi_max)
        centre, radius = (lo + hi) / 2, float(min(0.2, 0.3 * np.min(hi - lo)))
    else:
        centre, radius = np.array([0.0, 0.0, 1.2]), 0.2
    rng = np.random.default_rng(0)
    d = rng.normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    d[d @ centre > 0] *= -1  # the side facing the sensor origin
    return (centre + [0.3 * t, 0.0, 0.0] + radius * d).astype(np.float32)


class ReconstructNode(Node):
    """The ``occflow_reconstruct`` node. Parameters: see config/reconstruct.yaml (every one, with its
    default and meaning) and :data:`occflow_ros.ros.node_config.PARAMETERS`.

    Subscribes: ``points`` (sensor_msgs/PointCloud2, relative: remap it). Publishes, all with the input
    cloud's header (frame_id and stamp): ``~/mesh`` (visualization_msgs/MarkerArray), ``~/correspondences``
    and ``~/input_correspondences`` (sensor_msgs/PointCloud2), ``~/tracked_mesh``
    (occflow_ros_msgs/TrackedMesh); and ``/diagnostics`` (diagnostic_msgs/DiagnosticArray) every
    ``diagnostics.period`` seconds.

    Construction validates the parameters (NodeConfigError), picks the device, loads the model
    (CheckpointError, ModelError), warms it up and only then subscribes and starts the worker. Call
    :meth:`close` before ``destroy_node`` (``destroy_node`` calls it too).
    """

    def __init__(self, *, context: Optional[Context] = None,
                 stop: Optional[threading.Event] = None) -> None:
        super().__init__(NODE_NAME, context=context)
        self._stop_requested = stop or threading.Event()
        self._stopping = threading.Event()
        self._publish_lock = threading.Lock()
        self._worker: Optional[threading.Thread] = None
        self.last_output_stamp: Optional[int] = None  # ns: header stamp of the last frame published
        self.flushed: Optional[bool] = None  # after close(): subscribers acknowledged every output
        self.config = self._read_parameters()
        self._output: OutputOptions = self.config.output
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._check_interrupted()
        self.device, self.tracker = self._load_model(self.config)
        self._check_interrupted()
        self.warmup_ms = self._warm_up()
        self._check_interrupted()

        cfg = self.config
        self._stats = NodeStats(cfg.stats_window)
        self._chunk_reported = self.tracker.chunk_size  # a smaller one (out of GPU memory) is logged once
        self._mailbox: LatestMailbox[bytes] = LatestMailbox()
        self._guard = StreamGuard(cfg.max_jump_seconds)  # resets on frame change / stamp jumps
        self._outputs = OutputBuilder(fit_color_box=cfg.fit_color_box)  # shared with the bag replay

        out_qos = QoSProfile(history=QoSHistoryPolicy.KEEP_LAST, depth=cfg.output_depth,
                             reliability=QoSReliabilityPolicy.RELIABLE,
                             durability=QoSDurabilityPolicy.VOLATILE)
        self._output_publishers = {output.name: self.create_publisher(output.msg_class, f"~/{output.name}",
                                                                      out_qos) for output in OUTPUTS}
        self._pub_diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 10)

        best_effort = cfg.input_qos == "sensor_data"
        in_qos = QoSProfile(
            history=QoSHistoryPolicy.KEEP_LAST, depth=cfg.input_depth,
            reliability=QoSReliabilityPolicy.BEST_EFFORT if best_effort
            else QoSReliabilityPolicy.RELIABLE,
            durability=QoSDurabilityPolicy.VOLATILE)
        self._camera_infos = CameraInfoStore()
        # qos_overrides.<topic>.subscription.{reliability,depth,history,durability} parameters
        # apply on top of input.qos (rclpy declares them; a ROS user's usual way to match a driver)
        overridable = QoSOverridingOptions.with_default_policies()
        if cfg.input_type == "depth":
            self._subscription = self.create_subscription(Image, "depth", self._on_cloud, in_qos,
                                                          raw=True,
                                                          qos_overriding_options=overridable)
            # camera infos are small: keep a few, reliable or not, to pair with the images
            self._info_subscription = self.create_subscription(
                CameraInfo, "camera_info", self._on_camera_info,
                QoSProfile(history=QoSHistoryPolicy.KEEP_LAST, depth=10,
                           reliability=in_qos.reliability,
                           durability=QoSDurabilityPolicy.VOLATILE))
            info_topic = _topic_name(self._info_subscription, "camera_info")
            input_type = f"sensor_msgs/Image, depth, with sensor_msgs/CameraInfo on {info_topic}"
        else:
            self._subscription = self.create_subscription(PointCloud2, "points", self._on_cloud,
                                                          in_qos, raw=True,
                                                          qos_overriding_options=overridable)
            input_type = "sensor_msgs/PointCloud2"
        self.input_topic = _topic_name(self._subscription, cfg.input_type)
        qos_words = (f"sensor_data (best effort, keep last {cfg.input_depth})" if best_effort
                     else f"reliable (keep last {cfg.input_depth})")
        self.get_logger().info(f"input: {self.input_topic} ({input_type}), QoS {qos_words}")
        if best_effort:
            configured = [k for k in ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTDDS_BUILTIN_TRANSPORTS")
                          if os.environ.get(k)]
            if configured:  # probably set up as the note says: say it once, not as a warning
                self.get_logger().info(f"input QoS is best effort ({', '.join(configured)} set): "
                                       + _LARGE_CLOUD_NOTE)
            else:
                self.get_logger().warning("input QoS is best effort: " + _LARGE_CLOUD_NOTE)

        self._reset_requested = threading.Event()
        self._reset_service = self.create_service(Trigger, "~/reset", self._on_reset)
        self._diagnostics_timer = self.create_timer(cfg.diagnostics_period, self._publish_diagnostics)
        self._log_timer = (self.create_timer(cfg.log_period, self._log_summary)
                           if cfg.log_period > 0 else None)
        self._worker = threading.Thread(target=self._work, name="occflow_worker", daemon=True)
        self._worker.start()
        ns = self.get_namespace().rstrip("/")
        self.get_logger().info(
            f"ready: {self.input_topic} -> {ns}/{NODE_NAME}/{{mesh, correspondences, tracked_mesh, "
            f"input_correspondences}} and /diagnostics; device {self.device}, model {cfg.model_path}")

    @property
    def output_options(self) -> OutputOptions:
        """What is published now (the dynamic ``output.*`` parameters)."""
        return self._output

    # -- start-up ----------------------------------------------------------------------------------
    def _check_interrupted(self) -> None:
        if self._stop_requested.is_set():
            raise _Interrupted()

    def _preset(self, overrides: Dict[str, Any]) -> Dict[str, Any]:
        """The preset's values (``preset``; auto: gpu when ``device`` gives a CUDA device, else
        cpu), each to be the default of its parameter: what the params file and -p give wins."""
        given = {name: check_parameter(PARAMETERS_BY_NAME[name], _plain(p.value))
                 for name, p in overrides.items() if name in PARAMETERS_BY_NAME}
        _, name, added = apply_preset(given)
        explicit = sorted(set(preset_values(name)) - set(added))
        how = (f"auto: {'a CUDA device' if name == 'gpu' else 'no CUDA device'}"
               if given.get("preset", "auto") == "auto" else "asked for")
        self.get_logger().info(
            f"preset {name} ({how}): " + (", ".join(f"{k} {v}" for k, v in added.items())
                                          or "nothing to set")
            + (f"; given explicitly: {', '.join(explicit)}" if explicit else ""))
        return added

    def _read_parameters(self) -> NodeConfig:
        """Declare every parameter with its descriptor (defaults: the built-in ones under the
        preset's), then validate them all at once."""
        overrides = getattr(self, "_parameter_overrides", {})  # what --params-file / -p gave
        preset = self._preset(overrides)
        values: Dict[str, Any] = {}
        for spec in PARAMETERS:
            try:
                param = self.declare_parameter(spec.name, preset.get(spec.name, spec.default),
                                               _descriptor(spec))
            except ParameterException as e:
                given = overrides.get(spec.name)
                got = repr(_plain(given.value)) if given is not None else "?"
                raise NodeConfigError(f"parameter '{spec.name}' must be {spec.allowed()}, got {got} "
                                      f"({type(e).__name__})") from None
            values[spec.name] = _plain(param.value)
        unknown = sorted(n for n in overrides
                         if not self.has_parameter(n) and not n.startswith("qos_overrides."))
        if unknown:
            raise NodeConfigError(unknown_parameters_message(unknown))
        return node_config_from_parameters(values)

    def _on_set_parameters(self, params: List[Any]) -> SetParametersResult:
        """Run-time changes: only the dynamic ``output.*`` options (the rest are read-only)."""
        changes = {}
        for p in params:
            spec = PARAMETERS_BY_NAME.get(p.name)
            if spec is None:
                continue  # use_sim_time and other parameters rclpy owns
            try:
                changes[p.name.split(".", 1)[1]] = check_parameter(spec, _plain(p.value))
            except NodeConfigError as e:
                return SetParametersResult(successful=False, reason=str(e))
        fields = {k: v for k, v in changes.items() if k in OutputOptions.__dataclass_fields__}
        if fields:
            self._output = dataclasses.replace(self._output, **fields)
            self.get_logger().info(f"output options now {self._output}")
        return SetParametersResult(successful=True)

    def _load_model(self, cfg: NodeConfig):
        if cfg.threads > 0:
            limit_cpu_threads(cfg.threads)  # torch's threads and numpy/scipy's BLAS pools
        try:
            device = select_device(cfg.device, fallback_to_cpu=cfg.allow_cpu_fallback)
        except ModelError as e:
            raise ModelError(f"parameter 'device': {e} (allow_cpu_fallback: true runs on the CPU "
                             "instead)") from None
        if cfg.device.startswith("cuda") and device.type == "cpu":
            self.get_logger().warning(f"device '{cfg.device}' is not available: running on the CPU "
                                      "(allow_cpu_fallback is true)")
        path = cfg.model_path
        if cfg.model_path_is_default and not path.is_file():
            raise CheckpointError(f"parameter 'model_path' is empty, so the shipped model {path} is "
                                  "used, but that file is not installed: set model_path to a "
                                  "checkpoint file (occflow_ros.model.save_checkpoint)")
        started = time.perf_counter()
        try:
            checkpoint = load_checkpoint(path, map_location=device,
                                         expect_input_points=cfg.model_input_points or None)
        except CheckpointError as e:
            raise CheckpointError(f"parameter 'model_path': cannot load the model: {e}") from None
        try:
            tracker = Tracker(checkpoint, cfg.tracker, device=device, precision=cfg.precision)
        except ModelError as e:
            raise ModelError(f"parameter 'precision': {e}") from None
        mc = checkpoint.config
        self.get_logger().info(
            f"model {path} loaded on {device} in {1e3 * (time.perf_counter() - started):.0f} ms "
            f"(input_points {mc.input_points}, window {mc.window_seconds:g} s; tracker window "
            f"{tracker.window_seconds:g} s; torch threads {torch.get_num_threads()})")
        return device, tracker

    def _warm_up(self) -> float:
        """A keyframe and a tracking step on a dummy sphere (first-call costs: allocations, kernels,
        open3d), then a reset. Returns the milliseconds it took. Raises ModelError when the model cannot
        run a frame (such a node should not start)."""
        tracker = self.tracker
        try:
            t0 = time.perf_counter()
            first = tracker.feed(_dummy_frame(tracker.config, 0.0), 0.0)
            t1 = time.perf_counter()
            second = tracker.feed(_dummy_frame(tracker.config, 1 / 30), 1 / 30)
            t2 = time.perf_counter()
        except Exception as e:
            raise ModelError(f"warm-up on {self.device} failed: {type(e).__name__}: {e}") from e
        tracker.reset()
        if second is not None:
            what = f"mesh of {second.num_vertices} vertices"
        else:
            what = "no mesh from the dummy input (" + str(
                (first.info.get("held") if first is not None else None) or "nothing occupied") + ")"
        total = 1e3 * (t2 - t0)
        self.get_logger().info(f"warm-up on {self.device}: keyframe {1e3 * (t1 - t0):.0f} ms, tracking "
                               f"step {1e3 * (t2 - t1):.0f} ms ({what}); tracker reset")
        return total

    # -- input (executor thread): microseconds --------------------------------------------------
    def _on_cloud(self, data: bytes) -> None:
        self._stats.received()
        self._mailbox.put(data)

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response
                  ) -> Trigger.Response:
        """``~/reset``: the worker resets the tracker before the next frame, which is then a
        keyframe with a new run (TrackedMesh.run); answered at once, the frame in progress goes on."""
        self._reset_requested.set()
        response.success = True
        response.message = ("the tracker resets before the next frame: that frame is a keyframe "
                            "of a new run (TrackedMesh.run), keyframe_id starts again at 0")
        return response

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self._camera_infos.put(stamp_to_ns(msg.header.stamp), msg)

    def _depth_points(self, image: Image, stamp_ns: int) -> np.ndarray:
        """A depth image's points with the camera info of its stamp (or the newest one)."""
        info, exact = self._camera_infos.match(stamp_ns)
        if info is None:
            raise DepthImageError(f"no sensor_msgs/CameraInfo received yet on "
                                  f"{_topic_name(self._info_subscription, 'camera_info')} (the "
                                  "intrinsics to back-project the depth image with)")
        if not exact:
            self.get_logger().info("no camera info with the depth image's stamp: the newest one "
                                   "is used (the intrinsics of a running camera do not change)",
                                   once=True)
        stride = self.config.input_stride or image_stride(image.width)
        return depth_points(image, info, stride=stride)

    # -- worker thread ----------------------------------------------------------------------------
    def _work(self) -> None:
        while not self._stopping.is_set():
            data = self._mailbox.take(timeout=0.25)
            if data is None:
                continue
            try:
                self._process(data)
            except Exception as e:  # last guard: the worker never dies on one frame
                reason = f"{type(e).__name__}: {e}"
                self._stats.tracker_error(reason)
                self.get_logger().error(f"unexpected error while processing a frame: {reason}\n"
                                        f"{traceback.format_exc()}", throttle_duration_sec=THROTTLE_S)

    def _process(self, data: bytes) -> None:
        started = time.perf_counter()
        depth = self.config.input_type == "depth"
        msg_class = Image if depth else PointCloud2
        try:
            msg = deserialize_message(data, msg_class)
        except Exception as e:
            reason = f"not a decodable sensor_msgs/{msg_class.__name__} ({type(e).__name__}: {e})"
            self._stats.rejected(reason)
            self.get_logger().warning(f"rejected a message on {self.input_topic}: {reason}",
                                      throttle_duration_sec=THROTTLE_S)
            return
        del data
        header = Header(stamp=msg.header.stamp, frame_id=msg.header.frame_id)
        frame_id, stamp_ns = header.frame_id, stamp_to_ns(header.stamp)
        stamp = stamp_ns / 1e9
        try:
            if not frame_id:
                raise MessageError("header.frame_id is empty (the outputs need a frame)")
            if depth:
                points = self._depth_points(msg, stamp_ns)
            else:
                points = read_xyz(msg, stride=self.config.input_stride or auto_stride(msg))
        except MessageError as e:
            what = "depth image" if depth else "PointCloud2"
            reason = f"unusable {what} (stamp {stamp:.6f} s, frame '{frame_id}'): {e}"
            self._stats.rejected(reason)
            self.get_logger().warning(f"rejected a message on {self.input_topic}: {reason}",
                                      throttle_duration_sec=THROTTLE_S)
            return
        del msg
        if self._reset_requested.is_set():
            self._reset_requested.clear()
            self.get_logger().info("reset requested (~/reset): tracker reset")
            self._reset_tracker("reset requested (~/reset service)")
        self._check_stream(frame_id, stamp)
        try:
            mesh = self.tracker.feed(points, stamp, should_stop=self._stopping.is_set)
        except TrackingCancelled as e:
            self._stats.without_output()
            self.get_logger().info(f"shutting down: {e}")
            return
        except Exception as e:
            reason = f"{type(e).__name__}: {e}"
            self._stats.tracker_error(reason)
            self.get_logger().error(
                f"tracker failed on the frame of stamp {stamp:.6f} s, frame '{frame_id}', "
                f"{len(points)} valid points: {reason}; tracker reset, continuing\n"
                f"{traceback.format_exc()}", throttle_duration_sec=THROTTLE_S)
            self._reset_tracker(f"tracker error: {reason}")
            return
        finally:
            self._check_chunk_size()
        if mesh is None:
            why = f"no mesh yet, nothing to publish: {self.tracker.last_hold or 'no mesh'}"
            self._stats.held(why)
            self._stats.without_output()
            self.get_logger().warning(f"frame of stamp {stamp:.6f} s, frame '{frame_id}': {why}",
                                      throttle_duration_sec=THROTTLE_S)
            return
        held = mesh.info.get("held")
        if held:
            self._stats.held(held)
            self.get_logger().warning(f"holding the last mesh: {held}",
                                      throttle_duration_sec=THROTTLE_S)
        if not self._publish(mesh, header):
            return
        self.last_output_stamp = stamp_ns
        latency_ms = (self.get_clock().now().nanoseconds - stamp_ns) / 1e6
        keyframe = bool(mesh.topology_changed and mesh.info.get("keyframe"))
        self._stats.processed(latency_ms, 1e3 * (time.perf_counter() - started), keyframe=keyframe,
                              vertices=mesh.num_vertices)

    def _check_chunk_size(self) -> None:
        """Log once each time the tracker shrank its network batches (the GPU ran out of memory)."""
        chunk = self.tracker.chunk_size
        if chunk < self._chunk_reported:
            self._chunk_reported = chunk
            self.get_logger().warning(
                f"out of GPU memory on {self.device}: the networks now run on batches of {chunk} points "
                f"(tracker.chunk_size {self.config.tracker.chunk_size}); set tracker.chunk_size to "
                f"{chunk} to start there")

    def _check_stream(self, frame_id: str, stamp: float) -> None:
        """Reset the tracker on a frame change, a stamp going backwards or jumping far ahead."""
        reason = self._guard.check(frame_id, stamp)
        if reason is None:
            return
        note = (" (a mesh cannot carry over between frames without TF)" if reason.startswith("frame_id")
                else "")
        self.get_logger().warning(f"{reason}: tracker reset{note}", throttle_duration_sec=THROTTLE_S)
        self._reset_tracker(reason)

    def _reset_tracker(self, reason: str) -> None:
        self.tracker.reset()
        self._stats.reset(reason)
        self._outputs.reset()

    def _has_subscribers(self, output: str) -> bool:
        return self._output_publishers[output].get_subscription_count() > 0

    def _publish(self, mesh, header: Header) -> bool:
        """Convert and publish every enabled output of one frame, all or none (False: shutting down or
        a conversion failed). Outputs nobody subscribes to are not built."""
        opts = self._output
        with self._publish_lock:
            if self._stopping.is_set():
                self._stats.without_output()
                return False
            try:
                out = self._outputs.build(mesh, header, opts, wanted=self._has_subscribers)
            except Exception as e:
                reason = f"{type(e).__name__}: {e}"
                self._stats.publish_error(reason)
                self.get_logger().error(f"could not convert the result of the frame of stamp "
                                        f"{mesh.stamp:.6f} s: {reason}", throttle_duration_sec=THROTTLE_S)
                return False
            for output, message in out:
                self._output_publishers[output.name].publish(message)
            self._outputs.sent(mesh, out)
        return True

    # -- timers (executor thread) ----------------------------------------------------------------
    def status(self) -> Dict[str, Any]:
        """The node's state as diagnostics key/values (level and message first).

        The message counts obey ``frames_received == frames_taken + dropped_frames + queued_frames``
        (``queued_frames`` 0 or 1: the one-slot mailbox) and ``frames_taken == frames_processed +
        rejected_messages + tracker_errors + publish_errors + frames_without_output`` (+ 1 while the
        worker holds a frame). ``chunk_size``: points per network batch now (less than
        ``tracker.chunk_size`` after the GPU ran out of memory).
        """
        s = self._stats.snapshot()  # outcomes first, then the mailbox: taken >= the outcomes read
        box = self._mailbox.counts()
        since = s["seconds_since_input"]
        failing = s["consecutive_tracker_errors"]
        if failing >= TRACKER_ERRORS_FOR_ERROR:
            level, message = "error", (f"the tracker failed on the last {failing} frames (none "
                                       f"processed since): {s['last_tracker_error']}")
        elif since is None:
            level, message = "warn", f"waiting for clouds on {self.input_topic}"
        elif since > NO_INPUT_WARN_S:
            level, message = "warn", f"no cloud on {self.input_topic} for {since:.1f} s"
        elif s["recent_problem"]:
            last = (s["last_tracker_error"] or s["last_publish_error"] or s["last_rejection"])
            level, message = "warn", f"bad input or errors in the last {self._stats.window:g} s: {last}"
        else:
            p50 = s["latency_p50_ms"]
            level, message = "ok", (f"tracking at {s['processed_rate_hz']:.1f} Hz, latency p50 "
                                    + ("n/a" if p50 is None else f"{p50:.0f} ms"))
        return {
            "level": level, "message": message,
            "input_topic": self.input_topic, "frame_id": self._guard.frame_id or "",
            "input_rate_hz": s["input_rate_hz"], "processed_rate_hz": s["processed_rate_hz"],
            "latency_p50_ms": s["latency_p50_ms"], "latency_p95_ms": s["latency_p95_ms"],
            "processing_p50_ms": s["processing_p50_ms"],
            "processing_p95_ms": s["processing_p95_ms"],
            "window_s": self._stats.window,
            "frames_received": box["received"], "frames_taken": box["taken"],
            "queued_frames": box["queued"], "frames_processed": s["frames_processed"],
            "dropped_frames": box["dropped"], "frames_without_output": s["frames_without_output"],
            "keyframes": s["keyframes"],
            "resets": s["resets"], "last_reset": s["last_reset"],
            "held_frames": s["held_frames"], "last_held": s["last_held"],
            "rejected_messages": s["rejected_messages"], "last_rejection": s["last_rejection"],
            "tracker_errors": s["tracker_errors"], "last_tracker_error": s["last_tracker_error"],
            "publish_errors": s["publish_errors"], "vertices": s["vertices"],
            "chunk_size": self.tracker.chunk_size,
            "device": str(self.device), "model_path": str(self.config.model_path),
            "warmup_ms": self.warmup_ms,
        }

    def _publish_diagnostics(self) -> None:
        now = self.get_clock().now().to_msg()
        self._pub_diagnostics.publish(to_diagnostics(
            self.status(), now, name=f"occflow_ros: {self.get_fully_qualified_name()}"))

    def _log_summary(self) -> None:
        s = self.status()

        def ms(x: Optional[float]) -> str:
            return "n/a" if x is None else f"{x:.0f} ms"

        self.get_logger().info(
            f"{s['processed_rate_hz']:.1f} Hz processed of {s['input_rate_hz']:.1f} Hz in; latency "
            f"stamp->publish p50 {ms(s['latency_p50_ms'])} p95 {ms(s['latency_p95_ms'])}; processing "
            f"p50 {ms(s['processing_p50_ms'])}; dropped {s['dropped_frames']}, keyframes "
            f"{s['keyframes']}, resets {s['resets']}, held {s['held_frames']}, rejected "
            f"{s['rejected_messages']}, errors {s['tracker_errors'] + s['publish_errors']}")

    # -- shutdown --------------------------------------------------------------------------------
    def close(self, timeout: float = JOIN_TIMEOUT_S, flush_timeout: float = FLUSH_TIMEOUT_S) -> bool:
        """Stop the worker (a keyframe in progress is abandoned at its next batch), then flush: wait up
        to ``flush_timeout`` seconds for subscribers to acknowledge what was published (``flushed``
        says whether they all did). No frame is published after this returns, none half-published.
        True when the worker has ended; False when it is still inside the tracker after ``timeout``
        seconds (it then publishes nothing more and ends with the process)."""
        self._stopping.set()
        mailbox = getattr(self, "_mailbox", None)
        if mailbox is not None:
            mailbox.close()
        worker = self._worker
        joined = True
        if worker is not None and worker.is_alive() and worker is not threading.current_thread():
            worker.join(timeout)
            joined = not worker.is_alive()
        tracker = getattr(self, "tracker", None)
        if tracker is not None and joined:
            tracker.close()  # a background keyframe stops at its next network batch
        if self.flushed is None:
            publishers = list(getattr(self, "_output_publishers", {}).values())
            deadline = time.monotonic() + flush_timeout
            flushed = True
            for publisher in publishers:
                left = max(0.0, deadline - time.monotonic())
                flushed = publisher.wait_for_all_acked(Duration(seconds=left)) and flushed
            self.flushed = flushed
        return joined

    def destroy_node(self) -> None:
        self.close()
        with self._publish_lock:  # a publish in flight finishes first
            super().destroy_node()


def _install_signal_handlers(stop: threading.Event) -> None:
    def handler(signum, _frame) -> None:
        stop.set()

    try:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, handler)
    except ValueError:  # not the main thread: the caller handles signals
        pass


def main(args: Optional[List[str]] = None) -> int:
    """Console entry point ``reconstruct``: run the node until SIGINT/SIGTERM.

    ``args``: the command line (default ``sys.argv``), ROS arguments after ``--ros-args``. Returns the
    exit status: 0 after a clean stop, 1 when the model or device cannot be used, 2 for invalid
    parameters (each with one error line naming the problem).
    """
    stop = threading.Event()
    _install_signal_handlers(stop)
    context = Context()
    rclpy.init(args=args, context=context, signal_handler_options=SignalHandlerOptions.NO)
    logger = rclpy.logging.get_logger(NODE_NAME)
    node: Optional[ReconstructNode] = None
    try:
        try:
            node = ReconstructNode(context=context, stop=stop)
        except NodeConfigError as e:
            logger.error(f"invalid parameters: {e}")
            return EXIT_PARAMETERS
        except (CheckpointError, ModelError, TrackingError) as e:
            logger.error(f"cannot start: {e}")
            return EXIT_MODEL
        except _Interrupted:
            logger.info("stopped during start-up")
            return EXIT_OK
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        try:
            while not stop.is_set() and context.ok():
                executor.spin_once(timeout_sec=0.1)
        finally:
            started = time.monotonic()
            joined = node.close()
            last = ("none" if node.last_output_stamp is None
                    else f"{node.last_output_stamp / 1e9:.9f} s")
            flushed = ("acknowledged by every subscriber" if node.flushed
                       else f"not all acknowledged within {FLUSH_TIMEOUT_S:g} s")
            executor.shutdown(timeout_sec=0.5)
            node.destroy_node()
            node = None
            took = time.monotonic() - started
            if joined:
                logger.info(f"shut down cleanly in {took:.2f} s (worker joined; outputs {flushed}; "
                            f"last output stamp {last})")
            else:
                logger.warning(f"shut down in {took:.2f} s; the worker was still inside the tracker "
                               "(nothing more is published)")
        return EXIT_OK
    finally:
        if node is not None:
            node.destroy_node()
        context.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
