"""What one tracked frame costs, stage by stage, from the serialized message in to the outputs built:
the node's own code on the demo's person at 640x480, in this process, one CPU core.

Run:  . tools/env.sh && OMP_NUM_THREADS=1 python benchmarks/bench_frame.py [--seconds 6] [--fps 15]

The demo's scene (occflow_ros.evaluation.demo_scene, a jumping person seen by a simulated RealSense)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="scene length (default 6)")
    parser.add_argument("--fps", type=float, default=15.0, help="frames per second (default 15)")
    parser.add_argument("--seed", type=int, default=7, help="the demo's person and noise")
    args = parser.parse_args()
    torch.set_num_threads(1)

    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import PointCloud2
    from std_msgs.msg import Header

    from occflow_ros.evaluation.demo_scene import DemoScene, SceneConfig
    from occflow_ros.model import load_checkpoint
    from occflow_ros.ros.conversions import seconds_to_stamp
    from occflow_ros.ros.demo import DemoConfig, demo_parameters
    from occflow_ros.ros.node_config import apply_preset, node_config_from_parameters
    from occflow_ros.ros.outputs import OutputBuilder
    from occflow_ros.ros.params_file import load_params_file, shipped_config
    from occflow_ros.ros.pointcloud2 import auto_stride, read_xyz, xyz_cloud
    from occflow_ros.tracking import Tracker

    scene = DemoScene(SceneConfig(seed=args.seed, seconds=args.seconds, fps=args.fps))
    scene.render()
    params = dict(load_params_file(shipped_config("reconstruct.yaml")))
    params.update(demo_parameters(scene, DemoConfig()))
    params, preset, _ = apply_preset(params)
    config = node_config_from_parameters(params)
    checkpoint = load_checkpoint(config.model_path, map_location="cpu")
    tracker = Tracker(checkpoint, dataclasses.replace(config.tracker, async_keyframes=False),
                      device="cpu")
    builder = OutputBuilder(fit_color_box=config.fit_color_box)
    rows = []
    for k in range(len(scene)):
        header = Header(frame_id="camera_depth_optical_frame",
                        stamp=seconds_to_stamp(1_700_000_000.0 + float(scene.times[k])))
        data = serialize_message(xyz_cloud(header, scene.cloud(k), is_dense=False))
        t0 = time.perf_counter()
        msg = deserialize_message(data, PointCloud2)
        points = read_xyz(msg, stride=config.input_stride or auto_stride(msg))
        t1 = time.perf_counter()
        mesh = tracker.feed(points, 1_700_000_000.0 + float(scene.times[k]))
        t2 = time.perf_counter()
        outputs = builder.build(mesh, header, config.output)
        for output, message in outputs:
            if not isinstance(message, bytes):
                serialize_message(message)
        builder.sent(mesh, outputs)
        t3 = time.perf_counter()
        if mesh.info.get("keyframe"):
            continue
        info = mesh.info
        stages = {"decode (deserialize + read_xyz)": t1 - t0,
                  "preprocess": info.get("preprocess_ms", 0.0) / 1e3,
                  "graph fit": info.get("deformation_ms", 0.0) / 1e3,
                  "  of which the rigid stage": info.get("deformation_rigid_ms", 0.0) / 1e3,
                  "checks (residual, coverage)": info.get("checks_ms", 0.0) / 1e3,
                  "input correspondences": info.get("correspondence_ms", 0.0) / 1e3,
                  "outputs (build + serialize)": t3 - t2}
        known = sum(v for name, v in stages.items() if not name.startswith(" ")
                    and name not in ("decode (deserialize + read_xyz)",
                                     "outputs (build + serialize)"))
        stages["other (model input, ids, bookkeeping)"] = max(t2 - t1 - known, 0.0)
        stages["whole frame"] = t3 - t0
        rows.append(stages)
    print(f"bench_frame: {len(rows)} tracked frames of {len(scene)} ({args.seconds:g} s at "
          f"{args.fps:g} Hz, 640x480, input.stride {config.input_stride or 'auto'}, preset "
          f"{preset}), one thread")
    print(f"{'stage':40s} {'p50 ms':>8s} {'p95 ms':>8s}")
    for name in rows[0]:
        values = 1e3 * np.array([r[name] for r in rows])
        print(f"{name:40s} {np.median(values):8.1f} {np.percentile(values, 95):8.1f}")
    print("targets (performance issue): whole frame p50 <= 25 ms, p95 <= 40 ms; preprocess <= 6 ms")


if __name__ == "__main__":
    main()
