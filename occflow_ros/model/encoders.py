"""Point-set encoders: the spatial encoder (shape code) and the causal spatio-temporal encoder (motion code)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .config import ModelError
from .layers import FourierFeatures, ResBlock, finite_or_zero, masked_max, masked_mean

__all__ = ["PointSetEncoder", "SpatialEncoder", "SpatioTemporalEncoder", "EncoderState"]


@dataclass
class EncoderState:
    """What a causal encoder keeps between frames: the running max of the per-frame features over the
    frames so far (B, H) (-inf before any frame) and the first frame's feature (B, H) (None before).

    Holding this, the code after one more frame costs one pass over that frame's points only.
    """

    running: torch.Tensor
    first: torch.Tensor | None = None
    frames: int = 0

    def detach(self) -> EncoderState:
        return EncoderState(self.running.detach(),
                            None if self.first is None else self.first.detach(), self.frames)


class PointSetEncoder(nn.Module):
    """PointNet with residual blocks over a sequence of point sets: pooled per frame, then over time.

    Per frame: every point's features go through residual blocks, each followed by a max pool over
    the frame's points whose result is concatenated to every point (frame context); the frame's
    feature f_k is the max and the mean of the last block's features over its points. Over time,
    causally: the code of frame k is a small MLP of [max_{j<=k} f_j, f_0, f_k, f_k - f_0] — the
    extremes reached so far, the keyframe, the latest frame and how it differs from the keyframe
    (the motion signal: frames do not correspond point by point, so motion is only visible as
    change of the frames' features). It depends on frames 0..k only; frames may hold different
    numbers of points (masks) and need not correspond.
    """

    def __init__(self, in_dim: int, hidden: int, c_dim: int, n_blocks: int,
                 octaves: int = 0) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.hidden = hidden
        self.fourier = FourierFeatures(octaves)  # on x, y, z; further features (t) pass through
        self.fc_in = nn.Linear(self.fourier.out_dim + in_dim - 3, 2 * hidden)
        self.blocks = nn.ModuleList([ResBlock(2 * hidden, hidden, hidden) for _ in range(n_blocks)])
        self.fc_h = nn.Linear(8 * hidden, hidden)
        self.fc_c = nn.Linear(hidden, c_dim)

    def initial_state(self, batch: int, device: torch.device | str | None = None,
                      dtype: torch.dtype = torch.float32) -> EncoderState:
        return EncoderState(torch.full((batch, 2 * self.hidden), float("-inf"), device=device,
                                       dtype=dtype))

    def forward(self, x: torch.Tensor, point_mask: torch.Tensor | None = None,
                frame_mask: torch.Tensor | None = None,
                state: EncoderState | None = None) -> tuple[torch.Tensor, EncoderState]:
        """Codes of every prefix of the frame sequence.

        x: (B, T, N, in_dim) features of N points in each of T frames (padding allowed).
        point_mask: (B, T, N) bool, True for real points; None means all real.
        frame_mask: (B, T) bool, True for real frames; a masked frame adds nothing to the running
        max (its own code is meaningless and must not be used).
        state: what the frames before these T left (streaming); None: these start the sequence, and
        the first of them is the keyframe.
        Returns (codes (B, T, c_dim) where codes[:, k] depends on frames <= k only, state after
        the last frame).
        """
        if x.dim() != 4 or x.shape[-1] != self.in_dim:
            raise ModelError(f"encoder input must be (B, T, N, {self.in_dim}), got {tuple(x.shape)}")
        batch, frames, _, _ = x.shape
        if state is None:
            state = self.initial_state(batch, x.device, x.dtype)
        if frame_mask is not None:
            if point_mask is None:
                point_mask = frame_mask[:, :, None].expand(x.shape[:3])
            else:
                point_mask = point_mask & frame_mask[:, :, None]
        net = self.fc_in(torch.cat([self.fourier(x[..., :3]), x[..., 3:]], dim=-1))
        h = net  # assigned in the loop
        for i, block in enumerate(self.blocks):
            h = block(net)  # (B, T, N, H)
            if i + 1 < len(self.blocks):
                pooled = masked_max(h, point_mask, dim=2)  # (B, T, H), -inf for empty frames
                net = torch.cat([h, finite_or_zero(pooled)[:, :, None].expand_as(h)], dim=-1)
        # The frame's feature: max and mean of the last block over the frame's points. The mean is
        # what makes motion visible: a max over a random subsample of a partial view jumps by the
        # point spacing (several cm at 300 points) from frame to frame, a mean hardly moves.
        pooled = torch.cat([masked_max(h, point_mask, dim=2), masked_mean(h, point_mask, dim=2)],
                           dim=-1)  # (B, T, 2H); empty frames: -inf (max) and 0 (mean)
        if frame_mask is not None:
            pooled = pooled.masked_fill(~frame_mask[:, :, None], float("-inf"))
        running = torch.maximum(torch.cummax(pooled, dim=1).values,
                                state.running[:, None].to(pooled.dtype))  # (B, T, 2H)
        f = finite_or_zero(pooled)
        first = f[:, 0] if state.first is None else state.first.to(f.dtype)
        f0 = first[:, None].expand_as(f)
        z = torch.cat([finite_or_zero(running), f0, f, f - f0], dim=-1)
        codes = self.fc_c(torch.relu(self.fc_h(z)))
        return codes, EncoderState(running[:, -1], first, state.frames + frames)


class SpatialEncoder(nn.Module):
    """Shape code c_s of the keyframe's points: (B, N, 3) [+ mask (B, N)] -> (B, c_dim)."""

    def __init__(self, hidden: int, c_dim: int, n_blocks: int, octaves: int = 0) -> None:
        super().__init__()
        self.net = PointSetEncoder(3, hidden, c_dim, n_blocks, octaves)

    def forward(self, points: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if points.dim() != 3 or points.shape[-1] != 3:
            raise ModelError(f"keyframe points must be (B, N, 3), got {tuple(points.shape)}")
        codes, _ = self.net(points[:, None], None if mask is None else mask[:, None])
        return codes[:, 0]


class SpatioTemporalEncoder(nn.Module):
    """Motion code c_t of a window of unordered frames with irregular times, causal.

    Each point enters as (x, y, z, t) with t its frame's normalised time.
    """

    def __init__(self, hidden: int, c_dim: int, n_blocks: int, octaves: int = 0) -> None:
        super().__init__()
        self.net = PointSetEncoder(4, hidden, c_dim, n_blocks, octaves)

    @staticmethod
    def _features(points: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
        if points.dim() != 4 or points.shape[-1] != 3:
            raise ModelError(f"window points must be (B, T, N, 3), got {tuple(points.shape)}")
        if times.shape != points.shape[:2]:
            raise ModelError(f"frame times must be (B, T) = {tuple(points.shape[:2])}, "
                             f"got {tuple(times.shape)}")
        t = times.to(points.dtype)[:, :, None, None].expand(*points.shape[:3], 1)
        return torch.cat([points, t], dim=-1)

    def forward(self, points: torch.Tensor, times: torch.Tensor,
                point_mask: torch.Tensor | None = None, frame_mask: torch.Tensor | None = None,
                state: EncoderState | None = None) -> tuple[torch.Tensor, EncoderState]:
        """points (B, T, N, 3) normalised; times (B, T) normalised; masks as in PointSetEncoder.

        Returns (codes (B, T, c_dim), the code after frames 0..k at index k; streaming state).
        """
        return self.net(self._features(points, times), point_mask, frame_mask, state)

    def initial_state(self, batch: int, device: torch.device | str | None = None) -> EncoderState:
        return self.net.initial_state(batch, device)
