"""The Occupancy Flow module: shape and motion encoders, occupancy decoder, velocity field, flow."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .config import ModelConfig, ModelError, SolverConfig
from .decoders import Conditioning, OccupancyDecoder, VelocityField
from .encoders import EncoderState, SpatialEncoder, SpatioTemporalEncoder
from .flow import integrate
from .planes import PlaneDecoder, PlaneEncoder
from .rigid import FramePoses

__all__ = ["OccupancyFlow"]


class OccupancyFlow(nn.Module):
    """Shape at the keyframe from an occupancy network, motion from a velocity field.

    Conventions: every point is in the keyframe's normalised space (the object inside [-0.5, 0.5]^3);
    t = 0 is the keyframe and t = 1 is ``config.window_seconds`` later.
    """

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        self.config = config or ModelConfig()
        c = self.config
        k = c.fourier_octaves
        self.spatial_encoder: nn.Module
        self.decoder: nn.Module
        if c.shape_encoder == "planes":
            # its per-point MLP runs on thousands of points: twice the planes' width, not
            # encoder_hidden (the motion encoder's, which reads a few hundred)
            self.spatial_encoder = PlaneEncoder(2 * c.plane_channels, c.plane_channels,
                                                c.plane_resolution, k)
            self.decoder = PlaneDecoder(c.plane_channels, c.decoder_hidden, c.decoder_blocks, k)
        else:
            self.spatial_encoder = SpatialEncoder(c.encoder_hidden, c.c_dim, c.encoder_blocks, k)
            self.decoder = OccupancyDecoder(c.c_dim, c.decoder_hidden, c.decoder_blocks, k,
                                            c.local_neighbors, c.local_hidden)
        self.temporal_encoder = SpatioTemporalEncoder(c.encoder_hidden, c.c_dim, c.encoder_blocks, k)
        self.velocity = VelocityField(c.c_dim, c.velocity_hidden, c.velocity_blocks, k,
                                      c.velocity_rigid)

    # -- codes -------------------------------------------------------------------------------------
    def encode_shape(self, points: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Shape code c_s of the keyframe's points (B, N, 3) [mask (B, N)]: (B, C) for the global
        shape network, feature planes (B, 3, C, R, R) for "planes" (``config.shape_encoder``)."""
        return self.spatial_encoder(points, mask)

    def encode_motion(self, points: torch.Tensor, times: torch.Tensor,
                      point_mask: torch.Tensor | None = None,
                      frame_mask: torch.Tensor | None = None,
                      state: EncoderState | None = None) -> tuple[torch.Tensor, EncoderState]:
        """Causal motion codes (B, T, C) of a window (B, T, N, 3) at times (B, T); see the encoder."""
        return self.temporal_encoder(points, times, point_mask, frame_mask, state)

    # -- shape -------------------------------------------------------------------------------------
    def occupancy_logits(self, points: torch.Tensor, c_s: torch.Tensor | None = None,
                         cond: Conditioning | None = None, context: torch.Tensor | None = None,
                         context_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, M) at query points (B, M, 3) at the keyframe; > 0 is inside.

        context: the keyframe's input points (B, N, 3) (those c_s was computed from), needed when
        ``config.local_neighbors`` > 0.
        """
        return self.decoder(points, c_s, cond, context, context_mask)

    # -- motion ------------------------------------------------------------------------------------
    @property
    def rigid(self) -> bool:
        """True when the flows need the window's rigid poses (``FramePoses``, the rigid prior)."""
        return self.velocity.rigid

    def velocity_at(self, points: torch.Tensor, t: torch.Tensor | float,
                    c_t: torch.Tensor) -> torch.Tensor:
        """v(p, t | c_t): (B, N, 3) per unit normalised time (with the rigid prior: the body-frame
        field, on top of the rigid motion)."""
        return self.velocity(points, t, c_t)

    def flow(self, points: torch.Tensor, t_from: float | torch.Tensor,
             t_to: float | torch.Tensor, c_t: torch.Tensor, solver: SolverConfig | None = None,
             *, chunk_size: int | None = 10_000, autocast_dtype: torch.dtype | None = None,
             stats: dict | None = None, poses: FramePoses | None = None) -> torch.Tensor:
        """Carry points (B, N, 3) from t_from to t_to (scalar or (B,)); returns (B, N, 3).

        Backward in time when t_to < t_from (training maps later samples to the keyframe this way).
        poses: the window's rigid poses, required when ``rigid``.
        """
        batch = points.shape[0]
        t_to = torch.as_tensor(t_to, dtype=torch.float32, device=points.device)
        if t_to.dim() == 0:
            t_to = t_to.expand(batch)
        if t_to.shape != (batch,):
            raise ModelError(f"t_to must be a scalar or ({batch},), got {tuple(t_to.shape)}")
        out = integrate(self.velocity, points, t_from, t_to[:, None], self.velocity.condition(c_t),
                        solver, chunk_size=chunk_size, autocast_dtype=autocast_dtype, stats=stats,
                        poses=poses)
        return out[:, 0]

    def flow_to_times(self, points: torch.Tensor, t_from: float | torch.Tensor,
                      times: torch.Tensor | Sequence[float], c_t: torch.Tensor,
                      solver: SolverConfig | None = None, *, chunk_size: int | None = 10_000,
                      autocast_dtype: torch.dtype | None = None,
                      stats: dict | None = None,
                      poses: FramePoses | None = None) -> torch.Tensor:
        """Carry points (B, N, 3) from t_from to many times (K,) or (B, K) in one solve: (B, K, N, 3)."""
        return integrate(self.velocity, points, t_from, times, self.velocity.condition(c_t), solver,
                         chunk_size=chunk_size, autocast_dtype=autocast_dtype, stats=stats,
                         poses=poses)

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())
