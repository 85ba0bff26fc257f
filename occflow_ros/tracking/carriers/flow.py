"""The velocity field as the carrier: the causal motion code takes each frame, and the ODE
dp/dt = v(p, t) carries the vertices (Occupancy Flow's own way; with the model's rigid prior the
frames' ICP poses carry the body and the field the rest)."""

from __future__ import annotations

import time
from typing import Optional, Sequence

import numpy as np
import torch

from ...geometry import next_pose
from ...model import FramePoses
from . import Carrier, CarrierContext, Frame, SegmentStart

__all__ = ["FlowCarrier"]


class FlowCarrier(Carrier):
    """The segment's motion code and vertices on the device; with the rigid prior, each frame's
    normalised time and pose relative to the keyframe (keyframe first)."""

    clean_frames = True  # the rigid prior registers every frame to the keyframe's points

    def __init__(self, ctx: CarrierContext, start: SegmentStart) -> None:
        super().__init__(ctx, start)
        self.encoder = start.encoder
        self.code = start.code
        self.vertices = torch.from_numpy(np.asarray(start.vertices, np.float32)).to(ctx.device)[None]
        self.key_points: Optional[np.ndarray] = None
        self.pose_times: list = []
        self.poses: list = []
        if ctx.model.rigid:
            self._add_pose(start.x, 0.0)

    # -- the rigid prior's poses -------------------------------------------------------------------
    def _add_pose(self, x: torch.Tensor, t: float) -> None:
        """Register a frame's input points x (1, N, 3) to the keyframe's (``next_pose``, as in
        training); the first frame given is the keyframe."""
        if self.key_points is None:
            self.key_points = x[0].float().cpu().numpy()
            pose = np.eye(4)
        else:
            pose = next_pose(self.key_points, x[0].float().cpu().numpy(), self.poses)
        self.pose_times.append(float(t))
        self.poses.append(pose.astype(np.float32))

    def _frame_poses(self, last: Optional[int] = None) -> Optional[FramePoses]:
        """The poses so far (or the ``last`` few) as the flows take them; None without the prior."""
        if not self.ctx.model.rigid:
            return None
        sl = slice(-last if last else None, None)
        times = torch.tensor([self.pose_times[sl]], dtype=torch.float32, device=self.ctx.device)
        poses = torch.from_numpy(np.stack(self.poses[sl])).to(self.ctx.device)[None]
        return FramePoses(times, poses)

    # -- the motion code and the flow --------------------------------------------------------------
    def encode(self, xs: torch.Tensor, times: Sequence[float]) -> None:
        """The motion code after frames xs (1, T, N, 3) at normalised ``times``."""
        ctx = self.ctx
        t = torch.tensor([list(times)], dtype=torch.float32, device=ctx.device)
        with ctx.autocast():
            codes, self.encoder = ctx.model.encode_motion(xs, t, state=self.encoder)
        self.code = codes[:, -1].float()

    def flow(self, points: torch.Tensor, t0: float, t1: float, *, poses: Optional[FramePoses],
             solver=None) -> torch.Tensor:
        """points (1, P, 3) carried from t0 to t1 by the field with the current code."""
        ctx = self.ctx
        stats: dict = {}
        out = ctx.model.flow(points, t0, t1, self.code, solver or ctx.config.solver,
                             chunk_size=ctx.chunk, autocast_dtype=ctx.autocast_dtype,
                             stats=stats, poses=poses)
        ctx.chunk = stats.get("chunk_size", ctx.chunk)
        return out

    def carry(self, frame: Frame) -> np.ndarray:
        t0 = time.perf_counter()
        self.encode(frame.x[:, None], [frame.t])
        if self.ctx.model.rigid:
            self._add_pose(frame.x, frame.t)
        t1 = time.perf_counter()
        # with the rigid prior, this step is the screw motion between the last two frames' poses
        # plus the field's own motion in the body frame
        self.vertices = self.flow(self.vertices, self.t, frame.t, poses=self._frame_poses(2))
        frame.info.update(encode_ms=1e3 * (t1 - t0), flow_ms=1e3 * (time.perf_counter() - t1))
        self.t = frame.t
        return self.vertices[0].float().cpu().numpy()

    def catch_up(self, frames: Sequence[Frame]) -> np.ndarray:
        """One encoder pass over all the frames, one solve to the last of them."""
        xs = torch.cat([f.x for f in frames])[None]
        self.encode(xs, [f.t for f in frames])
        if self.ctx.model.rigid:
            for f in frames:
                self._add_pose(f.x, f.t)
        self.vertices = self.flow(self.vertices, self.t, frames[-1].t, poses=self._frame_poses())
        self.t = frames[-1].t
        return self.vertices[0].float().cpu().numpy()

    def back(self, x: torch.Tensor, t: float) -> np.ndarray:
        back = self.flow(x, t, 0.0, poses=self._frame_poses(),
                         solver=self.ctx.config.correspondence_solver)
        return back[0].float().cpu().numpy()

    def predict(self, x: torch.Tensor, t: float, pose: np.ndarray) -> np.ndarray:
        """The field as another carrier's motion prior: the motion code takes this frame's input x
        first, then the vertices are carried from the last frame's time to t with ``pose`` (4, 4),
        the other carrier's rigid motion of the body, held over the frame (with the rigid prior the
        prediction is the field's learnt motion in the body frame). Returns (V, 3) normalised; the
        vertices it started from are the caller's (``set_vertices``)."""
        self.encode(x[:, None], [t])
        poses = None
        if self.ctx.model.rigid:
            times = torch.tensor([[self.t, max(t, self.t)]], device=self.ctx.device)
            both = torch.from_numpy(np.stack([pose, pose]).astype(np.float32)).to(self.ctx.device)
            poses = FramePoses(times, both[None])
        moved = self.flow(self.vertices, self.t, t, poses=poses)
        return moved[0].float().cpu().numpy()

    def set_vertices(self, vertices: np.ndarray, t: float) -> None:
        """Where the vertices are (V, 3) normalised at time t (when another carrier moved them)."""
        self.vertices = torch.from_numpy(np.asarray(vertices, np.float32)).to(self.ctx.device)[None]
        self.t = t
