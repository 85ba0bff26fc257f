"""Keyframes from more than one view (issue 16, item 2): IoU of keyframe meshes of people turning in
front of a fixed camera, from the keyframe's own view, from earlier views carried exactly, and
through the tracker with ``tracker.keyframe_history``.

Run:  . tools/env.sh && python benchmarks/bench_keyframe_history.py [--seeds 2 6]
      [--histories 0,0.15,0.3,0.5] [--checkpoint FILE]

People of the synthetic world (arm waves, jumping jacks, punching; held-out amplitudes 1.0-1.2)
turn about the vertical at 1-1.5 rad/s, seen at 320x240 from a random azimuth. Two questions:

1. What could earlier views give at best? The keyframe at t = 1 s meshed (the CPU preset's 48^3
   grid) from its own view alone, and together with the views at 0.75 and 0.5 s (or 0.5 and 0 s)
   whose points are carried to 1 s exactly (each pixel's material point moved by the world).
2. What does the tracker give? Frames at 30 Hz from 0 s, keyframe window 1 s: the keyframe that
   falls due at ~1 s with the segment's last ``history`` seconds carried by the deformation graph.

IoU: 100,000 points uniform in the body's box at that time (+10 cm), labelled exactly. The clouds
are the object's pixels, so the preprocessing's cluster stage is off.
"""

from __future__ import annotations

import argparse

import numpy as np

CAMERA_WIDTH, CAMERA_HEIGHT, FPS = 320, 240, 30
MOTIONS = (("arm_waves", 1.5), ("jumping_jacks", 1.0), ("punching", 1.5))


def turning_person(seed: int, motion: str, yaw_rate: float):
    from occflow_ros.data import MotionRanges
    from occflow_ros.data.world import make_shape, turning

    return turning(make_shape("human", seed, motion=motion,
                              ranges=MotionRanges(amplitude=(1.0, 1.2)), duration=2.0), yaw_rate)


def iou_at(shape, camera, t: float, mesh, seed: int) -> float:
    from occflow_ros.evaluation.metrics import mesh_iou

    lo, hi = shape.bounds(t, margin=0.1)
    q = np.random.default_rng(seed).uniform(lo, hi, size=(100_000, 3))
    occupied = shape.occupancy(q, t)
    pose = camera.camera_to_world
    return mesh_iou(mesh.vertices, mesh.faces, (q - pose[:3, 3]) @ pose[:3, :3], occupied)


def object_points(shape, camera, t: float, rng, carry_to: float | None = None) -> np.ndarray:
    """The object's pixels at t (optical frame, metres), or their material points moved to
    ``carry_to`` (exact carrying)."""
    from occflow_ros.data import LABEL_OBJECT

    render = camera.render_full(shape, t, rng)
    ok = render.labels == LABEL_OBJECT
    if carry_to is None:
        return render.cloud[ok]
    ok &= np.isfinite(render.material).all(-1)
    world = shape.forward(render.material[ok], carry_to)
    pose = camera.camera_to_world
    return ((world - pose[:3, 3]) @ pose[:3, :3]).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs=2, default=(2, 6), help="seed range (default 2 6)")
    parser.add_argument("--histories", default="0,0.15,0.3,0.5",
                        help="tracker.keyframe_history values, seconds (default 0,0.15,0.3,0.5)")
    parser.add_argument("--checkpoint", help="model file (default: the shipped model)")
    args = parser.parse_args()
    from occflow_ros.data.synthetic import SyntheticConfig, random_camera
    from occflow_ros.model import limit_cpu_threads, load_checkpoint, shipped_model_path
    from occflow_ros.geometry import PreprocessConfig
    from occflow_ros.tracking import MeshingConfig, Tracker, TrackerConfig

    limit_cpu_threads(1)
    checkpoint = load_checkpoint(args.checkpoint or shipped_model_path())
    meshing = MeshingConfig(resolution0=12, upsampling_steps=2, target_vertices=2000)
    histories = [float(h) for h in args.histories.split(",")]
    exact = {"its own view (t = 1 s)": (), "+ views at 0.75, 0.5 s carried exactly": (0.75, 0.5),
             "+ views at 0.5, 0 s carried exactly": (0.5, 0.0)}
    # the clouds hold the object's pixels only: no cluster stage (at 320x240 it can part an arm
    # held towards the camera from the body and keep the arm)
    pre = PreprocessConfig(cluster=False)
    one = Tracker(checkpoint, TrackerConfig(meshing=meshing, preprocess=pre), device="cpu")
    trackers = {h: Tracker(checkpoint, TrackerConfig(window_seconds=1.0, keyframe_history=h,
                                                     meshing=meshing, preprocess=pre),
                           device="cpu")
                for h in histories}
    scores: dict[str, list[float]] = {}
    cfg = SyntheticConfig(width=CAMERA_WIDTH, height=CAMERA_HEIGHT)
    for seed in range(*args.seeds):
        for motion, yaw_rate in MOTIONS:
            shape = turning_person(200 + seed, motion, yaw_rate)
            rng = np.random.default_rng(seed)
            camera = random_camera(shape, rng, cfg, 0.0, azimuth=rng.uniform(-1.2, 1.2))
            for name, earlier in exact.items():
                points = [object_points(shape, camera, 1.0, np.random.default_rng([seed, 0]))]
                points += [object_points(shape, camera, t, np.random.default_rng([seed, k + 1]),
                                         carry_to=1.0) for k, t in enumerate(earlier)]
                one.reset()
                mesh = one.feed(np.concatenate(points), 1.0)
                scores.setdefault(name, []).append(iou_at(shape, camera, 1.0, mesh, seed))
            times = np.arange(0.0, 1.25, 1.0 / FPS)
            frames = [object_points(shape, camera, float(t), np.random.default_rng([seed, i]))
                      for i, t in enumerate(times)]
            for history, tracker in trackers.items():
                tracker.reset()
                for t, points in zip(times, frames):
                    mesh = tracker.feed(points, float(t))
                    if mesh is not None and mesh.info.get("keyframe") and t > 0.9:
                        name = f"tracker, keyframe_history {history:g} s"
                        scores.setdefault(name, []).append(iou_at(shape, camera, float(t), mesh,
                                                                  seed))
                        break
            print(f"seed {seed} {motion}: " + ", ".join(f"{v[-1]:.3f}" for v in scores.values()),
                  flush=True)
    print("\n| keyframe from | IoU | windows |\n|---|---|---|")
    for name, values in scores.items():
        print(f"| {name} | {np.mean(values):.3f} | {len(values)} |")


if __name__ == "__main__":
    main()
