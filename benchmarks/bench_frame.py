"""What one tracked frame costs, stage by stage, from the serialized message in to the outputs built:
the node's own code on the demo's person at 640x480, in this process, one CPU core.

Run:  . tools/env.sh && python benchmarks/bench_frame.py [--seconds 6] [--fps 15]
(question 7 of ``make bench``, which writes its table into docs/benchmarks.md).

The demo's scene (occflow_ros.data.demo_scene, a jumping person seen by a simulated RealSense)
is rendered, and each frame goes through what the node's worker does: deserialize the PointCloud2
and read its points (input.stride automatic: every 2nd row and column), ``Tracker.feed`` with the
node's parameters as ``make demo`` sets them (config/reconstruct.yaml + the demo's CPU settings,
keyframes in line), and the outputs built and serialized (the node's OutputBuilder, every output
on). Printed: median and p95 of each stage over the tracked frames (keyframes apart), and their
sum. The tracker's own stages come from its ``info`` (preprocess, the graph's fit and its rigid
stage, the residual/coverage checks, the input correspondences); "other" is the rest of
``Tracker.feed`` (the model input, ids, bookkeeping). Frames come as fast as they are processed, so
this is the cost of a frame, not the node's rate (``make demo`` measures that with a real stream).
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import torch
from harness import Table, Target


Q7_TITLE = "7. A tracked frame, stage by stage"
Q7_COLUMNS = (("stage", "stage"), ("p50", "p50 ms"), ("p95", "p95 ms"),
              ("share", "share of the frame (p50)"))
WHOLE = "whole frame"


KEYFRAME = "keyframe (whole frame, meshed in line)"


def frame_stages(*, seconds: float = 6.0, fps: float = 15.0, seed: int = 7,
                 progress=print, device: str = "cpu", overrides: dict | None = None) -> Table:
    """Question 7's table: each stage's p50 and p95 over the tracked frames (module docstring).

    device / overrides: where the networks run and node parameters on top of the demo's (the GPU
    check, benchmarks/gpu_check.py, passes ``cuda`` and the GPU preset); the targets are the CPU's
    and are only judged with the default CPU run."""
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import PointCloud2
    from std_msgs.msg import Header

    from occflow_ros.data.demo_scene import DemoScene, SceneConfig
    from occflow_ros.model import load_checkpoint
    from occflow_ros.ros.conversions import seconds_to_stamp
    from occflow_ros.apps.demo import DemoConfig, demo_parameters
    from occflow_ros.ros.node_config import apply_preset, node_config_from_parameters
    from occflow_ros.ros.outputs import OutputBuilder
    from occflow_ros.ros.params_file import load_params_file, shipped_config
    from occflow_ros.ros.pointcloud2 import auto_stride, read_xyz, xyz_cloud
    from occflow_ros.tracking import Tracker

    progress(f"question 7: rendering the demo's person ({seconds:g} s at {fps:g} Hz)")
    scene = DemoScene(SceneConfig(seed=seed, seconds=seconds, fps=fps))
    scene.render()
    params = dict(load_params_file(shipped_config("reconstruct.yaml")))
    params.update(demo_parameters(scene, DemoConfig()))
    params["device"] = device
    params.update(overrides or {})
    params, preset, _ = apply_preset(params)
    config = node_config_from_parameters(params)
    checkpoint = load_checkpoint(config.model_path, map_location="cpu")
    tracker = Tracker(checkpoint, dataclasses.replace(config.tracker, async_keyframes=False),
                      device=device, precision=config.precision)
    builder = OutputBuilder(fit_color_box=config.fit_color_box)
    rows, keyframes = [], []
    progress("question 7: the frames through decode, Tracker.feed and the outputs")
    for k in range(len(scene)):
        stamp = 1_700_000_000.0 + float(scene.times[k])
        header = Header(frame_id="camera_depth_optical_frame", stamp=seconds_to_stamp(stamp))
        data = serialize_message(xyz_cloud(header, scene.cloud(k), is_dense=False))
        t0 = time.perf_counter()
        msg = deserialize_message(data, PointCloud2)
        points = read_xyz(msg, stride=config.input_stride or auto_stride(msg))
        t1 = time.perf_counter()
        mesh = tracker.feed(points, stamp)
        t2 = time.perf_counter()
        outputs = builder.build(mesh, header, config.output)
        for _, message in outputs:
            if not isinstance(message, bytes):
                serialize_message(message)
        builder.sent(mesh, outputs)
        t3 = time.perf_counter()
        if mesh.info.get("keyframe"):
            if k:  # the first keyframe also warms the networks up
                keyframes.append(1e3 * (t3 - t0))
            continue
        info = mesh.info
        inside = {"preprocess": info.get("preprocess_ms", 0.0),
                  "graph fit": info.get("deformation_ms", 0.0),
                  "checks (residual, coverage)": info.get("checks_ms", 0.0),
                  "input correspondences": info.get("correspondence_ms", 0.0)}
        stages = {"decode (deserialize + read_xyz)": 1e3 * (t1 - t0), **inside,
                  "  of which the fit's rigid stage": info.get("deformation_rigid_ms", 0.0),
                  "outputs (build + serialize)": 1e3 * (t3 - t2),
                  "other (model input, ids, bookkeeping)":
                      max(1e3 * (t2 - t1) - sum(inside.values()), 0.0),
                  WHOLE: 1e3 * (t3 - t0)}
        rows.append(stages)
    table = Table(Q7_TITLE, Q7_COLUMNS)
    whole = float(np.median([r[WHOLE] for r in rows]))
    for name in rows[0]:
        values = np.array([r[name] for r in rows])
        table.add({"stage": name, "p50": float(np.median(values)),
                   "p95": float(np.percentile(values, 95)),
                   "share": f"{100 * np.median(values) / whole:.0f} %"})
    if keyframes:
        n = len(keyframes)
        table.add({"stage": KEYFRAME, "p50": float(np.median(keyframes)),
                   "p95": float(np.percentile(keyframes, 95)),
                   "share": f"{n} keyframe{'s' if n != 1 else ''}"})
    p50 = {r["stage"]: r["p50"] for r in table.rows}
    p95 = {r["stage"]: r["p95"] for r in table.rows}
    if device == "cpu" and not overrides:  # the targets are the one-core CPU's
        table.targets += [
            Target("a tracked frame within 25 ms p50 on one core (performance issue)",
                   f"{p50[WHOLE]:.1f} ms", p50[WHOLE] <= 25.0),
            Target("... and within 40 ms p95", f"{p95[WHOLE]:.1f} ms", p95[WHOLE] <= 40.0),
            Target("preprocessing at most 6 ms per 640x480 frame", f"{p50['preprocess']:.1f} ms",
                   p50["preprocess"] <= 6.0),
            Target("preprocessing at most 15 % of a tracked frame", table.rows[1]["share"],
                   p50["preprocess"] <= 0.15 * p50[WHOLE]),
        ]
        if KEYFRAME in p50:
            table.targets.append(Target(
                "a keyframe at the CPU preset within 250 ms on one core (keyframe-shape issue)",
                f"{p50[KEYFRAME]:.0f} ms", p50[KEYFRAME] <= 250.0))
    table.notes.append(
        f"{len(rows)} tracked frames of {len(scene)} ({seconds:g} s of the demo's person at "
        f"{fps:g} Hz, 640x480, input.stride automatic, the {preset} preset, the demo's region of "
        f"interest), in one process on {device} with {torch.get_num_threads()} torch thread(s): the "
        "node's own code without DDS. "
        "Frames come as fast as they are processed, so this is what a frame costs, not the node's "
        "rate (question 5 and `make demo` stream in real time). Alone: "
        "`python benchmarks/bench_frame.py`.")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="scene length (default 6)")
    parser.add_argument("--fps", type=float, default=15.0, help="frames per second (default 15)")
    parser.add_argument("--seed", type=int, default=7, help="the demo's person and noise")
    args = parser.parse_args()
    from occflow_ros.model import limit_cpu_threads

    limit_cpu_threads(1)
    table = frame_stages(seconds=args.seconds, fps=args.fps, seed=args.seed,
                         progress=lambda m: None)
    print(table.markdown())


if __name__ == "__main__":
    main()
