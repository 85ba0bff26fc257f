"""Replay a recorded bag through the tracker offline: the node's outputs written to a new bag, deterministically.

``occflow-replay in_bag out_bag --params-file config/reconstruct.yaml`` (also ``ros2 run occflow_ros
replay``) reads the depth clouds of a rosbag2 bag (mcap or sqlite3), runs the
:class:`~occflow_ros.tracking.Tracker` on them on bag time (header stamps; no DDS, no wall clock) and
writes a new bag that ``ros2 bag play`` + RViz shows like the live node:

- the input topic, its messages copied byte for byte;
- ``/occflow_reconstruct/mesh`` (MarkerArray), ``/occflow_reconstruct/correspondences``,
  ``/occflow_reconstruct/tracked_mesh`` (occflow_ros_msgs/TrackedMesh, its definition on the
  connection), ``/occflow_reconstruct/input_correspondences``: built by the node's own
  :class:`~occflow_ros.ros.outputs.OutputBuilder`, with the node's stream resets
  (:class:`~occflow_ros.ros.outputs.StreamGuard`) and the node's parameters;
- ``/diagnostics``: one DiagnosticArray per input cloud (what happened to it and the time it took).

Every message is written at its input cloud's bag time, so the outputs play back in step with the
input. Determinism: the tracker's only randomness (input subsampling) is seeded by ``tracker.seed``,
torch runs a fixed number of threads, and every output is serialized with zeroed CDR padding
(:func:`~occflow_ros.ros.cdr.serialize_cdr`), so two replays of one bag with one model and one
configuration write byte-identical messages on every topic except the measured times in
``/diagnostics``. The node itself is not bit-reproducible (it drops frames when busy and warms its
tracker up first); the replay processes every frame.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Union

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import Header

from ..ros.bag_io import OutputBag, open_input_bag
from ..ros.cdr import serialize_cdr
from ..ros.conversions import stamp_to_ns, to_diagnostics
from ..ros.errors import BagError, PointCloud2Error
from ..ros.node_config import NodeConfig, apply_preset, node_config_from_parameters
from ..ros.outputs import NODE_NAME, OUTPUTS, OutputBuilder, StreamGuard, output_topic
from ..ros.params_file import load_params_file
from ..ros.pointcloud2 import auto_stride, read_xyz

__all__ = [
    "DIAGNOSTICS_TOPIC",
    "GROUND_TRUTH_PREFIX",
    "ReplayResult",
    "check_replay_paths",
    "load_replay_config",
    "make_tracker",
    "replay_bag",
]

DIAGNOSTICS_TOPIC = "/diagnostics"
#: Topics under this prefix hold ground truth (see occflow_ros.apps.ground_truth_bag): never the input.
GROUND_TRUTH_PREFIX = "/ground_truth/"
#: Keys of the per-frame diagnostics that are measured times (the only values that differ between runs).
TIMING_KEYS = ("processing_ms", "tracker_ms")


def load_replay_config(params_file: Optional[Union[str, os.PathLike]] = None, *,
                       model: Optional[Union[str, os.PathLike]] = None,
                       overrides: Optional[Mapping[str, Any]] = None) -> NodeConfig:
    """The node's configuration for a replay: the params file's values for ``occflow_reconstruct``
    (none: every parameter's default, which config/reconstruct.yaml also lists), then ``overrides``
    (flat names, like ``-p name:=value``), then ``model`` as ``model_path``, then the ``preset``'s
    values for what is still unset (as the node fills them in); validated by the node's
    own :func:`~occflow_ros.ros.node_config.node_config_from_parameters`. Raises NodeConfigError."""
    values: Dict[str, Any] = dict(load_params_file(params_file)) if params_file is not None else {}
    values.update(overrides or {})
    if model is not None:
        values["model_path"] = str(model)
    values, _, _ = apply_preset(values)
    return node_config_from_parameters(values)


def check_replay_paths(input_path: Union[str, os.PathLike], output_path: Union[str, os.PathLike],
                       topic: Optional[str] = None) -> str:
    """Fail fast, before a model is loaded: the input bag opens and has the topic (returned: the
    input topic a replay would read) and the output path is free. Raises BagError naming the bag."""
    if os.path.lexists(output_path):
        raise BagError(f"output bag {output_path}: exists already; refusing to overwrite it "
                       "(choose another path or remove it)")
    with open_input_bag(input_path, topic, ignore=(GROUND_TRUTH_PREFIX,)) as bag:
        return bag.topic


def make_tracker(config: NodeConfig, *, threads: Optional[int] = None):
    """A fresh Tracker for ``config``: torch limited to ``threads`` CPU threads (default: the
    config's ``threads``, or 1 when that is 0, so runs repeat exactly), the device picked as the
    node picks it, the model loaded from ``config.model_path``, torch's generator seeded with
    ``tracker.seed``, keyframes meshed in line (``tracker.async_keyframes`` off: a replay is
    reproducible frame by frame, and a background keyframe's timing is not). Raises
    CheckpointError / ModelError naming the problem."""
    import torch

    from ..model import (CheckpointError, limit_cpu_threads, load_checkpoint,
                         select_device)
    from ..tracking import Tracker

    n = threads if threads is not None else (config.threads or 1)
    limit_cpu_threads(n)  # torch's and numpy/scipy's BLAS pools; ModelError below 1
    device = select_device(config.device, fallback_to_cpu=config.allow_cpu_fallback)
    path = config.model_path
    if config.model_path_is_default and not path.is_file():
        raise CheckpointError(f"no model given (--model) and the shipped model {path} is not installed")
    checkpoint = load_checkpoint(path, map_location=device,
                                 expect_input_points=config.model_input_points or None)
    torch.manual_seed(config.tracker.seed)
    tracker_config = dataclasses.replace(config.tracker, async_keyframes=False)
    return Tracker(checkpoint, tracker_config, device=device, precision=config.precision)


@dataclass
class ReplayResult:
    """What a replay did. Counts are of input clouds; times are wall-clock seconds of this run."""

    input_path: Path
    output_path: Path
    input_topic: str
    messages_in_bag: int
    frames: int = 0
    meshes: int = 0
    keyframes: int = 0
    held: int = 0
    rejected: int = 0
    resets: int = 0
    tracker_errors: int = 0
    conversion_errors: int = 0
    interrupted: bool = False
    seconds: float = 0.0
    topics: Dict[str, int] = field(default_factory=dict)
    problems: List[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for a terminal."""
        words = (f"{self.frames} of {self.messages_in_bag} clouds from {self.input_topic} -> {self.output_path}: "
                 f"{self.meshes} meshes, {self.keyframes} keyframes, {self.resets} resets, {self.held} held, "
                 f"{self.rejected} rejected, {self.tracker_errors} tracker errors in {self.seconds:.1f} s")
        return words + (" (interrupted: the bag holds the frames replayed so far)" if self.interrupted else "")


def _diagnostics(header: Header, status: Dict[str, Any]) -> bytes:
    return serialize_cdr(to_diagnostics(status, header, name=f"occflow_ros: /{NODE_NAME} (replay)"))


def replay_bag(input_path: Union[str, os.PathLike], output_path: Union[str, os.PathLike], tracker: Any,
               config: NodeConfig, *, topic: Optional[str] = None, storage: str = "mcap",
               namespace: str = "", progress: bool = False,
               should_stop: Optional[Callable[[], bool]] = None,
               log: Optional[Callable[[str], None]] = None) -> ReplayResult:
    """Feed every cloud of ``input_path`` to ``tracker`` and write the node's outputs to a new bag.

    ``tracker``: a fresh :class:`~occflow_ros.tracking.Tracker` (see :func:`make_tracker`).
    ``config``: the node's configuration (its ``output.*`` options, ``output.fit_color_box`` and
    ``input.max_jump_seconds`` and ``input.stride`` apply). ``topic``: the PointCloud2 input
    topic (None: the only one outside ``/ground_truth/``). ``storage``: 'mcap' or 'sqlite3'. ``namespace``: the node's
    namespace in the output topic names ('' -> ``/occflow_reconstruct/...``). ``progress``: a tqdm
    bar over the messages on stderr. ``should_stop()``: polled before each cloud; True ends the
    replay early, and the bag written so far is closed normally (complete, shorter). ``log``: gets
    one line per notable event (first rejection, resets, tracker errors).

    Each cloud goes through the node's steps: decode (``read_xyz``), a frame without frame_id or a
    malformed cloud is rejected; a frame_id change or a stamp going backwards / jumping more than
    ``input.max_jump_seconds`` resets the tracker; ``tracker.feed(points, header stamp in s)``; an
    exception inside the tracker resets it and the replay goes on (counted, logged).
    The output path must not exist; it only ever holds a complete bag (see
    :class:`~occflow_ros.ros.bag_io.OutputBag`): an exception leaves nothing behind.
    Raises BagError for a missing, unreadable, empty, corrupt or truncated input bag, a missing or
    mistyped topic, or an output path that exists.
    """
    from tqdm import tqdm

    say = log or (lambda line: None)
    stop = should_stop or (lambda: False)
    started = time.perf_counter()
    output = OutputBag(output_path, storage=storage)  # refuses an existing path before any work
    guard = StreamGuard(config.max_jump_seconds)
    builder = OutputBuilder(fit_color_box=config.fit_color_box)
    options = config.output
    topics = {o.name: output_topic(o.name, namespace) for o in OUTPUTS}
    with open_input_bag(input_path, topic, ignore=(GROUND_TRUTH_PREFIX,)) as bag:
        result = ReplayResult(Path(input_path), Path(output_path), bag.topic, bag.message_count)
        counts = {bag.topic: 0, DIAGNOSTICS_TOPIC: 0, **{t: 0 for t in topics.values()}}
        with output as out, tqdm(total=bag.message_count, unit="cloud", desc="replay",
                                 disable=not progress, dynamic_ncols=True) as bar:
            out.add_topic(bag.topic, PointCloud2)
            for o in OUTPUTS:
                if getattr(options, o.option):
                    out.add_topic(topics[o.name], o.msg_class)
            out.add_topic(DIAGNOSTICS_TOPIC, DiagnosticArray)

            def write(name: str, bag_ns: int, data: bytes) -> None:
                out.write(name, bag_ns, data)
                counts[name] += 1

            def note(line: str) -> None:
                result.problems.append(line)
                if len(result.problems) <= 20:  # the first ones; all are in result.problems
                    if progress:
                        bar.write(line, file=sys.stderr)
                    else:
                        say(line)

            for index, (bag_ns, raw) in enumerate(bag.raw_messages()):
                if stop():
                    result.interrupted = True
                    break
                write(bag.topic, bag_ns, raw)
                t0 = time.perf_counter()
                try:
                    msg = deserialize_message(raw, PointCloud2)
                except Exception as exc:
                    raise BagError(f"input bag {bag.path}: message #{index} on {bag.topic!r} (bag time {bag_ns} ns) "
                                   f"is not a valid PointCloud2 ({type(exc).__name__}: {exc})") from exc
                header = Header(stamp=msg.header.stamp, frame_id=msg.header.frame_id)
                status = _process(msg, header, tracker, guard, builder, options, result, note,
                                  lambda output, data: write(topics[output], bag_ns, data),
                                  stride=config.input_stride)
                status["processing_ms"] = 1e3 * (time.perf_counter() - t0)
                write(DIAGNOSTICS_TOPIC, bag_ns, _diagnostics(header, status))
                result.frames += 1
                bar.update(1)
    result.seconds = time.perf_counter() - started
    result.topics = counts
    return result


def _process(msg: PointCloud2, header: Header, tracker: Any, guard: StreamGuard, builder: OutputBuilder,
             options: Any, result: ReplayResult, note: Callable[[str], None],
             emit: Callable[[str, bytes], None], stride: int = 0) -> Dict[str, Any]:
    """One cloud through the node's steps; returns its diagnostics status (level and message first)."""
    stamp_ns = stamp_to_ns(header.stamp)
    stamp = stamp_ns / 1e9
    where = f"cloud of stamp {stamp:.6f} s"
    status: Dict[str, Any] = {"level": "ok", "message": "", "frame_id": header.frame_id}
    try:
        if not header.frame_id:
            raise PointCloud2Error("header.frame_id is empty (the outputs need a frame)")
        points = read_xyz(msg, stride=stride or auto_stride(msg))
    except PointCloud2Error as exc:
        result.rejected += 1
        note(f"rejected the {where}: {exc}")
        status.update(level="warn", message=f"rejected: {exc}")
        return status
    status["points"] = len(points)
    reason = guard.check(header.frame_id, stamp)
    if reason is not None:
        tracker.reset()
        builder.reset()
        result.resets += 1
        note(f"{reason}: tracker reset")
        status["reset"] = reason
    try:
        mesh = tracker.feed(points, stamp)
    except Exception as exc:
        result.tracker_errors += 1
        result.resets += 1
        tracker.reset()
        builder.reset()
        note(f"tracker failed on the {where} ({type(exc).__name__}: {exc}); tracker reset, continuing")
        status.update(level="error", message=f"tracker error: {type(exc).__name__}: {exc}")
        return status
    if mesh is None:
        result.held += 1
        status.update(level="warn", message="no mesh yet: nothing to publish")
        return status
    info = mesh.info
    keyframe = bool(mesh.topology_changed and info.get("keyframe"))
    status.update(keyframe=keyframe, keyframe_id=mesh.keyframe_id, vertices=mesh.num_vertices)
    if keyframe:
        result.keyframes += 1
        status["keyframe_reason"] = info.get("keyframe_reason", "")
    if "residual_m" in info:
        status["residual_m"] = info["residual_m"]
    if info.get("held"):
        result.held += 1
        status.update(level="warn", message=f"holding the last mesh: {info['held']}")
    else:
        status["message"] = "keyframe" if keyframe else "tracked"
    try:
        built = builder.build(mesh, header, options)
        payloads = [(o.name, m if isinstance(m, bytes) else serialize_cdr(m)) for o, m in built]
    except Exception as exc:
        result.conversion_errors += 1
        note(f"could not convert the result of the {where}: {type(exc).__name__}: {exc}")
        status.update(level="error", message=f"conversion error: {type(exc).__name__}: {exc}")
        return status
    for name, data in payloads:
        emit(name, data)
    builder.sent(mesh, built)
    result.meshes += 1
    status["tracker_ms"] = info.get("total_ms")
    return status
