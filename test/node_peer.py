"""Helpers for the reconstruct-node tests: a ray-cast sphere as an organized depth cloud, the ball model's checkpoint.

Also a script that streams the sphere to a running node, subscribes to all its outputs (so it builds
them all) and prints what its /diagnostics say at the end (the rate and latency numbers quoted for the
node come from it):

    . tools/env.sh
    python test/node_peer.py --checkpoint /tmp/ball.pt      # write the ball checkpoint, exit
    python -m occflow_ros.ros.node --ros-args --params-file config/reconstruct.yaml \
        -p model_path:=/tmp/ball.pt -p threads:=1 -r points:=/sphere/points &
    python test/node_peer.py --topic /sphere/points --seconds 20 --rate 30
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

# The scene: a sphere of RADIUS metres whose centre starts DEPTH metres in front of the camera (optical
# frame: x right, y down, z forward) and slides along x at SPEED m/s. Camera: WIDTH x HEIGHT pixels,
# focal length FOCAL pixels, principal point at the image centre.
RADIUS = 0.3
DEPTH = 2.0
SPEED = 0.5
WIDTH, HEIGHT, FOCAL = 160, 120, 140.0
FRAME_ID = "camera_depth_optical_frame"
MARGIN = 0.15  # the checkpoint's normalisation margin (DEFAULT_NORMALIZATION_CONVENTION)


def sphere_xyz(t: float, *, width: int = WIDTH, height: int = HEIGHT, focal: float = FOCAL,
               radius: float = RADIUS, depth: float = DEPTH, speed: float = SPEED,
               rng: Optional[np.random.Generator] = None) -> np.ndarray:
    """(H, W, 3) float32 metres, camera optical frame: what a depth camera sees of the sphere at time t (s).

    Pixels whose ray misses the sphere have no depth: NaN on the left half of the image, (0, 0, 0) on the
    right half (the two conventions drivers use); with ``rng``, 3% of the sphere's pixels drop out too
    (zeros) and the depth gets 1 mm of noise.
    """
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    rays = np.stack([(u + 0.5 - width / 2) / focal, (v + 0.5 - height / 2) / focal, np.ones_like(u)], -1)
    rays /= np.linalg.norm(rays, axis=-1, keepdims=True)
    centre = np.array([speed * t, 0.0, depth])
    b = rays @ centre  # ray s * d hits |p - c| = r where s^2 - 2 b s + |c|^2 - r^2 = 0
    disc = b * b - (centre @ centre - radius * radius)
    hit = disc > 0
    s = np.where(hit, b - np.sqrt(np.maximum(disc, 0.0)), 0.0)
    if rng is not None:
        s = s + rng.normal(scale=0.001, size=s.shape)
    xyz = rays * s[..., None]
    miss = ~hit
    if rng is not None:
        miss_zero = hit & (rng.random(hit.shape) < 0.03)
        xyz[miss_zero] = 0.0
    xyz[miss & (u < width / 2)] = np.nan
    xyz[miss & (u >= width / 2)] = 0.0
    return xyz.astype(np.float32)


def visible_cap_normalization(radius: float = RADIUS, depth: float = DEPTH,
                              margin: float = MARGIN) -> Tuple[float, float]:
    """(scale m, centre z offset m) the tracker fits to the visible cap of the sphere seen from distance
    ``depth``: the cap's bounding box is 2a x 2a x (depth - r^2/depth - (depth - r)) with a = r sqrt(1 -
    r^2/depth^2) (the silhouette circle's radius); scale = longest side / (1 - margin)."""
    a = radius * np.sqrt(1.0 - radius ** 2 / depth ** 2)
    z_near, z_far = depth - radius, depth - radius ** 2 / depth
    scale = 2 * a / (1.0 - margin)
    return float(scale), float(depth - (z_near + z_far) / 2)


def save_ball_checkpoint(path: Path, *, radius: float = RADIUS, depth: float = DEPTH,
                         speed: float = SPEED) -> Path:
    """A checkpoint of test/analytic_models.py's ball-and-drift network, set up for the sphere stream:
    the ball is the sphere in the keyframe's normalised space, the velocity the sphere's (window 1 s)."""
    from analytic_models import sphere_model

    from occflow_ros.model import save_checkpoint

    scale, dz = visible_cap_normalization(radius, depth)
    model = sphere_model(radius=radius, scale=scale, center_z=dz, velocity=(speed, 0.0, 0.0))
    return save_checkpoint(path, model, training={"dataset": "analytic ball (tests)"}, overwrite=True)


def save_faulty_checkpoint(path: Path, blow_up_after: float = 0.5) -> Path:
    """The ball checkpoint with a velocity field that is zero until ``blow_up_after`` (normalised time,
    i.e. windows after the keyframe) and infinite after it: an adaptive solver (dopri5) then fails
    inside the tracker (AssertionError: underflow in dt), the way a diverging trained model would."""
    import torch
    from analytic_models import sphere_model

    from occflow_ros.model import save_checkpoint

    scale, dz = visible_cap_normalization()
    model = sphere_model(radius=RADIUS, scale=scale, center_z=dz, velocity=(SPEED, 0.0, 0.0))
    v = model.velocity
    with torch.no_grad():  # hidden unit 0 = t - blow_up_after, amplified to inf when positive
        v.fc_in.weight[0, 3] = 1.0
        v.fc_in.bias[0] = -blow_up_after
        v.blocks[0].fc0.weight[0, 0] = 1e30
        v.blocks[0].fc1.weight[0, 0] = 1e30
        v.fc_out.weight[0, 0] = 1.0
    return save_checkpoint(path, model, training={"dataset": "faulty analytic ball (tests)"},
                           overwrite=True)


def sweep_time(t: float, period: float = 2.0) -> float:
    """Time folded into [-period/2, period/2): the sphere sweeps x from -SPEED*period/2 to +SPEED*period/2
    (staying in view) and then jumps back, which the tracker sees as a big residual (a keyframe)."""
    return (t % period) - period / 2


def sphere_message(stamp_ns: int, t: float, frame_id: str = FRAME_ID,
                   rng: Optional[np.random.Generator] = None):
    """An organized sensor_msgs/PointCloud2 of sphere_xyz(t), header (frame_id, stamp_ns)."""
    from std_msgs.msg import Header

    from occflow_ros.ros import xyz_cloud
    from occflow_ros.ros.conversions import ns_to_stamp

    return xyz_cloud(Header(frame_id=frame_id, stamp=ns_to_stamp(stamp_ns)), sphere_xyz(t, rng=rng))


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="write the ball checkpoint here and exit")
    parser.add_argument("--topic", default="/sphere/points")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=30.0)
    parser.add_argument("--node", default="/occflow_reconstruct",
                        help="subscribe (raw, not decoded) to this node's outputs, so it builds them all")
    args = parser.parse_args(argv)
    if args.checkpoint is not None:
        print(save_ball_checkpoint(args.checkpoint))
        return 0

    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import PointCloud2

    rclpy.init()
    node = rclpy.create_node("sphere_streamer")
    pub = node.create_publisher(PointCloud2, args.topic, qos_profile_sensor_data)
    last: dict = {}

    def on_diagnostics(msg) -> None:
        for status in msg.status:
            if status.name.startswith("occflow_ros"):
                last.update({kv.key: kv.value for kv in status.values})

    node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 10)
    from occflow_ros_msgs.msg import TrackedMesh
    from visualization_msgs.msg import MarkerArray

    received = {"mesh": 0, "correspondences": 0, "tracked_mesh": 0, "input_correspondences": 0}
    for name, msg_type in (("mesh", MarkerArray), ("correspondences", PointCloud2),
                           ("tracked_mesh", TrackedMesh), ("input_correspondences", PointCloud2)):
        node.create_subscription(msg_type, f"{args.node}/{name}",
                                 lambda _msg, name=name: received.__setitem__(name, received[name] + 1),
                                 1, raw=True)
    rng = np.random.default_rng(0)
    start = node.get_clock().now().nanoseconds

    def tick() -> None:
        now = node.get_clock().now().nanoseconds
        pub.publish(sphere_message(now, sweep_time((now - start) / 1e9), rng=rng))

    node.create_timer(1.0 / args.rate, tick)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)
    for key in ("input_rate_hz", "processed_rate_hz", "latency_p50_ms", "latency_p95_ms",
                "processing_p50_ms", "processing_p95_ms", "frames_received", "frames_processed",
                "dropped_frames", "keyframes", "resets", "held_frames", "rejected_messages"):
        print(f"{key}: {last.get(key, 'n/a')}")
    print("messages received:", received)
    node.destroy_node()
    rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
