"""The rigid part of the motion: each frame's pose, screw-interpolated between frames.

With the rigid prior (``ModelConfig.velocity_rigid``) a point's path is x(t) = P(t) y(t): P(t) the
window's rigid pose at time t (ICP of each frame to the keyframe, a constant screw motion between
consecutive frames), y(t) the point in the keyframe-aligned body frame, moved by the learnt field.
The world velocity is still a continuous field v(x, t) = dP/dt P^-1 x + R(t) u(P^-1 x, t); only the
rigid part is integrated in closed form, so the solver steps only over the smooth learnt part.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .config import ModelError

__all__ = ["FramePoses", "se3_log", "se3_exp", "pose_at", "apply_pose"]


@dataclass(frozen=True)
class FramePoses:
    """A window's rigid motion, for a velocity field with the rigid prior.

    times (B, T): the frames' normalised times, non-decreasing, the keyframe first. poses
    (B, T, 4, 4): each frame's pose relative to the keyframe (``occflow_ros.geometry.frame_poses``:
    it carries the keyframe's points onto the frame's). frame_mask (B, T): True for real frames,
    padding after them; None: all real.
    """

    times: torch.Tensor
    poses: torch.Tensor
    frame_mask: torch.Tensor | None = None

    def __post_init__(self) -> None:
        t = self.times
        if t.dim() != 2:
            raise ModelError(f"frame times must be (B, T), got {tuple(t.shape)}")
        if self.poses.shape != (*t.shape, 4, 4):
            raise ModelError(f"frame poses must be {(*t.shape, 4, 4)}, got {tuple(self.poses.shape)}")
        if self.frame_mask is not None and self.frame_mask.shape != t.shape:
            raise ModelError(f"frame_mask must be {tuple(t.shape)}, got "
                             f"{tuple(self.frame_mask.shape)}")

    def at(self, t: torch.Tensor) -> torch.Tensor:
        """The pose (B, 4, 4) float64 at times t (B,); see ``pose_at``."""
        return pose_at(t, self.times, self.poses, self.frame_mask)

    def repeat(self, k: int) -> FramePoses:
        """Each window k times in a row (to look up k times per window in one call)."""
        return FramePoses(self.times.repeat_interleave(k, dim=0),
                          self.poses.repeat_interleave(k, dim=0),
                          None if self.frame_mask is None
                          else self.frame_mask.repeat_interleave(k, dim=0))


def _skew_parts(r: torch.Tensor) -> torch.Tensor:
    return r - r.transpose(-1, -2)


def se3_log(transform: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Twist (omega (B, 3, 3) skew-symmetric, w (B, 3)) of rigid transforms (B, 4, 4): the constant
    velocity field v(p) = omega p + w carries every point p to transform(p) in unit time.

    Closed form of the SE(3) logarithm (rotation angle theta from the trace; series near theta = 0),
    computed in float64. Rotations near 180 degrees (never seen between nearby frames) lose accuracy.
    """
    d = transform.double()
    r, t = d[:, :3, :3], d[:, :3, 3]
    cos = ((r.diagonal(dim1=-2, dim2=-1).sum(-1) - 1.0) / 2.0).clamp(-1.0 + 1e-7, 1.0)
    theta = torch.acos(cos)
    small = theta < 1e-4
    sin = torch.sin(theta)
    # omega = theta / (2 sin theta) (R - R^T); -> (R - R^T) / 2 as theta -> 0
    a = torch.where(small, 0.5 + theta ** 2 / 12.0, theta / (2.0 * sin.clamp(min=1e-12)))
    omega = a[:, None, None] * _skew_parts(r)
    # V^-1 = I - omega / 2 + c omega^2, c = (1 - theta sin / (2 (1 - cos))) / theta^2 -> 1/12
    one_minus_cos = (1.0 - cos).clamp(min=1e-12)
    c = torch.where(small, 1.0 / 12.0 + theta ** 2 / 720.0,
                    (1.0 - theta * sin / (2.0 * one_minus_cos)) / theta.clamp(min=1e-12) ** 2)
    eye = torch.eye(3, dtype=d.dtype, device=d.device).expand_as(omega)
    v_inv = eye - 0.5 * omega + c[:, None, None] * (omega @ omega)
    w = (v_inv @ t[..., None])[..., 0]
    return omega, w


def se3_exp(omega: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Rigid transforms (B, 4, 4) float64 of twists (omega (B, 3, 3) skew-symmetric, w (B, 3)):
    where the constant field v(p) = omega p + w carries each point in unit time."""
    omega, w = omega.double(), w.double()
    vec = torch.stack([omega[:, 2, 1], omega[:, 0, 2], omega[:, 1, 0]], dim=-1)
    theta = vec.norm(dim=-1)
    small = theta < 1e-4
    th = theta.clamp(min=1e-12)
    a = torch.where(small, 1.0 - theta ** 2 / 6.0, torch.sin(th) / th)
    b = torch.where(small, 0.5 - theta ** 2 / 24.0, (1.0 - torch.cos(th)) / th ** 2)
    c = torch.where(small, 1.0 / 6.0 - theta ** 2 / 120.0, (th - torch.sin(th)) / th ** 3)
    eye = torch.eye(3, dtype=omega.dtype, device=omega.device).expand_as(omega)
    sq = omega @ omega
    r = eye + a[:, None, None] * omega + b[:, None, None] * sq
    v = eye + b[:, None, None] * omega + c[:, None, None] * sq
    out = torch.zeros(omega.shape[0], 4, 4, dtype=omega.dtype, device=omega.device)
    out[:, :3, :3] = r
    out[:, :3, 3] = (v @ w[..., None])[..., 0]
    out[:, 3, 3] = 1.0
    return out


def _bracket(t: torch.Tensor, times: torch.Tensor, frame_mask: torch.Tensor | None
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (B,) of the valid frames before and after each time t (B,) (the valid frames come
    first and are in time order): the last two at or past the last frame, the keyframe twice when
    it is the only frame."""
    valid = (torch.ones_like(times, dtype=torch.bool) if frame_mask is None
             else frame_mask.to(torch.bool))
    n_valid = valid.sum(dim=1).clamp(min=1)
    at_or_before = ((times <= t[:, None] + 1e-6) & valid).sum(dim=1)
    j = torch.minimum((at_or_before - 1).clamp(min=0), (n_valid - 2).clamp(min=0))
    return j, torch.minimum(j + 1, n_valid - 1)


def pose_at(t: torch.Tensor, times: torch.Tensor, poses: torch.Tensor,
            frame_mask: torch.Tensor | None = None) -> torch.Tensor:
    """The window's rigid pose (B, 4, 4) float64 at normalised times t (B,).

    times (B, T) the frames' times, poses (B, T, 4, 4) their poses relative to the keyframe,
    frame_mask (B, T) or None. Between two frames, the constant screw motion from one pose to the
    next; before the first frame and after the last, the nearest frame's pose (no extrapolation).
    """
    b = t.shape[0]
    rows = torch.arange(b, device=t.device)
    j, j1 = _bracket(t, times, frame_mask)
    p0, p1 = poses[rows, j].double(), poses[rows, j1].double()
    gap = (times[rows, j1] - times[rows, j]).double()
    alpha = torch.where(j1 != j, (t.double() - times[rows, j].double()) / gap.clamp(min=1e-9),
                        torch.zeros_like(gap)).clamp(0.0, 1.0)
    at_frame = (alpha == 0.0) | (alpha == 1.0)
    if bool(at_frame.all()):  # the tracker asks at frame times only: no screw motion to compute
        return torch.where((alpha == 1.0)[:, None, None], p1, p0)
    omega, w = se3_log(p1 @ torch.linalg.inv(p0))
    return se3_exp(omega * alpha[:, None, None], w * alpha[:, None]) @ p0


def apply_pose(pose: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """pose (B, 4, 4) applied to points (B, N, 3), in the points' dtype."""
    pose = pose.to(points.dtype)
    return points @ pose[:, :3, :3].transpose(-1, -2) + pose[:, None, :3, 3]
