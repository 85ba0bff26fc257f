"""Point-set encoders: the spatial encoder (shape code) and the causal spatio-temporal encoder (motion code)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .config import ModelError
from .layers import FourierFeatures, ResBlock, finite_or_zero, masked_max

__all__ = ["PointSetEncoder", "SpatialEncoder", "SpatioTemporalEncoder", "EncoderState"]


@dataclass
class EncoderState:
    """Running pools of a causal encoder after some frames: one (B, H) max per block, -inf if empty.

    Holding this, the code after one more frame costs one pass over that frame's points only.
    """

    pools: list[torch.Tensor]
    frames: int = 0

    def detach(self) -> EncoderState:
        return EncoderState([p.detach() for p in self.pools], self.frames)


class PointSetEncoder(nn.Module):
    """PointNet with residual blocks over a sequence of point sets, pooled per frame and causally over time.

    Each block maps every point's features, max-pools them within the frame, takes the running max
    of those pools over frames 0..k (causal), and concatenates that context to each point of frame k
    before the next block. The code of frame k is a linear map of the final running pool, so it
    depends on frames 0..k only, and frames may hold different numbers of points (masks).
    Frames need not correspond: points are an unordered set per frame.
    """

    def __init__(self, in_dim: int, hidden: int, c_dim: int, n_blocks: int,
                 octaves: int = 0) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.fourier = FourierFeatures(octaves)  # on x, y, z; further features (t) pass through
        self.fc_in = nn.Linear(self.fourier.out_dim + in_dim - 3, 2 * hidden)
        self.blocks = nn.ModuleList([ResBlock(2 * hidden, hidden, hidden) for _ in range(n_blocks)])
        self.fc_c = nn.Linear(hidden, c_dim)

    def initial_state(self, batch: int, device: torch.device | str | None = None,
                      dtype: torch.dtype = torch.float32) -> EncoderState:
        hidden = self.fc_c.in_features
        pools = [torch.full((batch, hidden), float("-inf"), device=device, dtype=dtype)
                 for _ in self.blocks]
        return EncoderState(pools, 0)

    def forward(self, x: torch.Tensor, point_mask: torch.Tensor | None = None,
                frame_mask: torch.Tensor | None = None,
                state: EncoderState | None = None) -> tuple[torch.Tensor, EncoderState]:
        """Codes of every prefix of the frame sequence.

        x: (B, T, N, in_dim) features of N points in each of T frames (padding allowed).
        point_mask: (B, T, N) bool, True for real points; None means all real.
        frame_mask: (B, T) bool, True for real frames; a masked frame adds nothing to the pools.
        state: pools of frames seen before these T (streaming); None starts from nothing.
        Returns (codes (B, T, c_dim) where codes[:, k] depends on frames <= k only, state after
        the last frame). A prefix with no real point at all gets the code of an empty set.
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
        new_pools = []
        past = net  # placeholder; assigned in the loop
        for block, prev in zip(self.blocks, state.pools):
            h = block(net)  # (B, T, N, H)
            pooled = masked_max(h, point_mask, dim=2)  # (B, T, H)
            past = torch.maximum(torch.cummax(pooled, dim=1).values, prev[:, None].to(pooled.dtype))
            new_pools.append(past[:, -1])
            context = finite_or_zero(past)[:, :, None].expand_as(h)
            net = torch.cat([h, context], dim=-1)
        codes = self.fc_c(torch.relu(finite_or_zero(past)))
        return codes, EncoderState(new_pools, state.frames + frames)


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
