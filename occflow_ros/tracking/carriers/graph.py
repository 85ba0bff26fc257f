"""The deformation graph as the carrier: the keyframe mesh's embedded graph is fit to each frame
(a bounded rigid stage, then Levenberg-Marquardt; ``occflow_ros.geometry.DeformationGraph``),
optionally with the velocity field's prediction as its motion prior (``flow_prior``)."""

from __future__ import annotations

import time
from typing import Optional

import numpy as np
import torch

from ...geometry import DeformationGraph, best_rigid_motion, even_stride
from . import Carrier, CarrierContext, Frame, SegmentStart
from .flow import FlowCarrier

__all__ = ["GraphCarrier"]


class GraphCarrier(Carrier):
    """The segment's deformation graph, and the velocity field as its prior where configured."""

    clean_frames = False  # the fit leaves stray points out by its distance gate
    forwards_points = True

    def __init__(self, ctx: CarrierContext, start: SegmentStart) -> None:
        super().__init__(ctx, start)
        d = ctx.config.deformation
        self.graph = DeformationGraph(
            start.vertices, start.faces, spacing=d.node_spacing, rigidity=d.rigidity,
            sliding=d.sliding, max_distance=d.max_distance, coverage=d.coverage,
            iterations=d.iterations,
            pair_every=d.pair_every, min_decrease=d.min_decrease,
            rigid_iterations=2 if d.rigid else 0, momentum=d.momentum,
            prior=d.prior_weight if d.flow_prior else 0.0, max_nodes=d.max_nodes,
            fit_vertices=d.fit_vertices)
        self.prior = FlowCarrier(ctx, start) if d.flow_prior else None

    def carry(self, frame: Frame) -> np.ndarray:
        ctx, d = self.ctx, self.ctx.config.deformation
        predicted = None
        if self.prior is not None:
            t0 = time.perf_counter()
            R, t = best_rigid_motion(self.graph.vertices, self.graph.warped)
            pose = np.eye(4, dtype=np.float32)
            pose[:3, :3], pose[:3, 3] = R, t
            predicted = self.prior.predict(frame.x, frame.t, pose)
            frame.info["flow_ms"] = 1e3 * (time.perf_counter() - t0)
        t_fit = time.perf_counter()
        dt = max(frame.t - self.t, 0.0) * ctx.time_scale  # seconds since the last frame
        points = even_stride(frame.observed, d.points)
        warped = self.graph.fit(
            self.norm.to_normalized(np.asarray(points, np.float32)),
            camera=self.norm.to_normalized(np.zeros((1, 3)))[0], predicted=predicted,
            max_rotation=d.max_angular_speed * dt, max_translation=d.max_speed * dt / self.norm.scale,
            dt=dt)
        frame.info.update(deformation_ms=1e3 * (time.perf_counter() - t_fit),
                          deformation_rigid_ms=1e3 * self.graph.last_timings.get("rigid", 0.0),
                          deformation_pairs=self.graph.last_pairs,
                          deformation_steps=self.graph.last_steps)
        self.t = frame.t
        vertices = np.asarray(warped, np.float32)
        if self.prior is not None:
            self.prior.set_vertices(vertices, frame.t)
        return vertices

    def back(self, x: torch.Tensor, t: float) -> np.ndarray:
        return self.graph.keyframe_positions(x[0].float().cpu().numpy()).astype(np.float32)

    def forward(self, y: np.ndarray) -> np.ndarray:
        return np.asarray(self.graph.warp_points(y), np.float32)

    def undo(self) -> Optional[np.ndarray]:
        """The graph as it was before the last fit (its time stays the last frame's, so the next
        frame's rigid stage is bounded by the time since that frame)."""
        vertices = np.asarray(self.graph.revert(), np.float32)
        if self.prior is not None:
            self.prior.set_vertices(vertices, self.t)
        return vertices
