"""The occupancy decoder f(p | c_s) and the velocity field v(p, t | c_t), both FiLM-conditioned.

Why FiLM and not conditional batch norm: CBN normalises with batch statistics (or running averages
at inference), which couples the samples of a training batch and behaves differently on the single
stream the tracker feeds. FiLM is per sample, so a query gives the same answer whatever else is in
its batch or chunk (MISE and the ODE can split points into chunks freely), and the code's per-block
scales and shifts are computed once per call rather than per point.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import ModelError
from .layers import FiLMResBlock, FourierFeatures, LocalPointFeatures

__all__ = ["Conditioning", "OccupancyDecoder", "VelocityField"]

Conditioning = torch.Tensor  # (B, n_blocks, 2, 1, H): per-block (gamma, beta), broadcast over points


class _FiLMMLP(nn.Module):
    """Residual MLP on per-point inputs whose blocks are modulated by a per-sample code."""

    def __init__(self, extra_in: int, c_dim: int, hidden: int, n_blocks: int, out_dim: int,
                 octaves: int = 0) -> None:
        super().__init__()
        self.hidden = hidden
        self.n_blocks = n_blocks
        self.c_dim = c_dim
        self.fourier = FourierFeatures(octaves)
        # input: the point's (Fourier) features, then `extra_in` more scalars (the time)
        self.fc_in = nn.Linear(self.fourier.out_dim + extra_in, hidden)
        self.film = nn.Linear(c_dim, n_blocks * 2 * hidden)
        self.blocks = nn.ModuleList([FiLMResBlock(hidden) for _ in range(n_blocks)])
        self.fc_out = nn.Linear(hidden, out_dim)
        # Start every modulation at the identity (gamma = beta = 0).
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)

    def condition(self, code: torch.Tensor) -> Conditioning:
        """The per-block FiLM parameters of codes (B, c_dim): once per call, not per point."""
        if code.dim() != 2 or code.shape[-1] != self.c_dim:
            raise ModelError(f"code must be (B, {self.c_dim}), got {tuple(code.shape)}")
        return self.film(code).view(code.shape[0], self.n_blocks, 2, 1, self.hidden)

    def trunk(self, h: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        if cond.shape[0] != h.shape[0]:
            raise ModelError(f"batch of points ({h.shape[0]}) and of codes ({cond.shape[0]}) differ")
        for i, block in enumerate(self.blocks):
            h = block(h, cond[:, i, 0], cond[:, i, 1])
        return self.fc_out(torch.relu(h))


class OccupancyDecoder(_FiLMMLP):
    """Occupancy logits at query points given the shape code: p (B, M, 3), c_s (B, C) -> (B, M).

    Points are in the keyframe's normalised space; logit > 0 means inside (probability > 0.5).
    """

    def __init__(self, c_dim: int, hidden: int, n_blocks: int, octaves: int = 0,
                 local_neighbors: int = 0, local_hidden: int = 64) -> None:
        super().__init__(0, c_dim, hidden, n_blocks, 1, octaves)
        self.local = (LocalPointFeatures(local_neighbors, local_hidden, hidden)
                      if local_neighbors > 0 else None)

    def forward(self, points: torch.Tensor, code: torch.Tensor | None = None,
                cond: Conditioning | None = None, context: torch.Tensor | None = None,
                context_mask: torch.Tensor | None = None) -> torch.Tensor:
        """context (B, N, 3) [context_mask (B, N)]: the keyframe's input points, in the same
        normalised space; required when the decoder has the local cue (``self.local``)."""
        if points.dim() != 3 or points.shape[-1] != 3:
            raise ModelError(f"query points must be (B, M, 3), got {tuple(points.shape)}")
        if cond is None:
            if code is None:
                raise ModelError("OccupancyDecoder needs a code or a precomputed conditioning")
            cond = self.condition(code)
        h = self.fc_in(self.fourier(points))
        if self.local is not None:
            if context is None:
                raise ModelError("this occupancy decoder reads the keyframe's input points near each "
                                 f"query (local_neighbors={self.local.k}): pass context=(B, N, 3)")
            if context.dim() != 3 or context.shape[-1] != 3 or context.shape[0] != points.shape[0]:
                raise ModelError(f"context must be ({points.shape[0]}, N, 3), "
                                 f"got {tuple(context.shape)}")
            h = h + self.local(points, context, context_mask).to(h.dtype)
        return self.trunk(h, cond).squeeze(-1)


class VelocityField(_FiLMMLP):
    """The motion field v(p, t | c_t): p (B, N, 3), t scalar or (B,) or (B, N) -> (B, N, 3).

    Positions and velocities are in the keyframe's normalised space, per unit of normalised time.
    The last layer starts at zero, so an untrained field is the identity flow.
    ``rigid`` marks the rigid prior (``occflow_ros.model.rigid``): the flows then carry points with
    the window's rigid poses (``FramePoses``, from ICP of each frame to the keyframe) and this
    field moves them in the keyframe-aligned body frame, so it only has to learn what is not rigid
    (limbs, deformation); ``forward`` returns that body-frame field.
    """

    def __init__(self, c_dim: int, hidden: int, n_blocks: int, octaves: int = 0,
                 rigid: bool = False) -> None:
        super().__init__(1, c_dim, hidden, n_blocks, 3, octaves)
        nn.init.zeros_(self.fc_out.weight)
        nn.init.zeros_(self.fc_out.bias)
        self.rigid = rigid

    def forward(self, points: torch.Tensor, t: torch.Tensor | float, code: torch.Tensor | None = None,
                cond: Conditioning | None = None) -> torch.Tensor:
        if points.dim() != 3 or points.shape[-1] != 3:
            raise ModelError(f"points must be (B, N, 3), got {tuple(points.shape)}")
        if cond is None:
            if code is None:
                raise ModelError("VelocityField needs a code or a precomputed conditioning")
            cond = self.condition(code)
        t = torch.as_tensor(t, dtype=points.dtype, device=points.device)
        if t.dim() == 1:
            t = t[:, None]
        # fc_in on (features(p), t) without building the concatenated tensor.
        weight, bias = self.fc_in.weight, self.fc_in.bias
        feats = self.fourier(points)
        d = feats.shape[-1]
        h = torch.addmm(bias, feats.reshape(-1, d), weight[:, :d].t()).view(*points.shape[:2], -1)
        h = h + t[..., None] * weight[:, d]
        return self.trunk(h, cond)
