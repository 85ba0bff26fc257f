"""Integrating dp/dt = v(p, t | c_t) with torchdiffeq: forward or backward, many target times, chunked.

Every solve runs on a normalised clock s in [0, 1]: batch element b moves from t_from[b] at s = 0 to
its farthest target at s = 1, so dp/ds = span_b * v(p, t_from_b + s * span_b). This lets one solve
serve a batch whose elements start and stop at different times (training integrates each sequence's
samples back from its own time) and return many targets at once (the targets' s values are points of
the solver's time grid, so fixed-step solvers land on them exactly instead of interpolating).
"""

from __future__ import annotations

import contextlib
from typing import Sequence

import torch
from torch import nn
from torchdiffeq import odeint, odeint_adjoint

from .config import ModelError, SolverConfig
from .decoders import Conditioning, VelocityField
from .rigid import FramePoses, apply_pose

__all__ = ["integrate", "as_batch_times", "MIN_CHUNK"]

MIN_CHUNK = 256  # below this, running out of GPU memory is not a chunking problem


class _NormalisedClockODE(nn.Module):
    """dp/ds for the batch: span_b * v(p, t_from_b + s * span_b | c_t)."""

    def __init__(self, velocity: VelocityField, cond: Conditioning, t_from: torch.Tensor,
                 span: torch.Tensor, autocast_dtype: torch.dtype | None) -> None:
        super().__init__()
        self.velocity = velocity
        self.cond = cond
        self.t_from = t_from
        self.span = span
        self.autocast_dtype = autocast_dtype
        self.evaluations = 0

    def forward(self, s: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        self.evaluations += 1
        t = self.t_from + s * self.span
        if self.autocast_dtype is not None:
            ctx = torch.autocast(device_type=p.device.type, dtype=self.autocast_dtype)
        else:
            ctx = contextlib.nullcontext()
        with ctx:
            v = self.velocity(p, t, cond=self.cond)
        # The ODE state stays in float32 whatever the network ran in.
        return v.to(p.dtype) * self.span[:, None, None]


def as_batch_times(t: float | torch.Tensor | Sequence[float], batch: int, device: torch.device,
                   name: str) -> torch.Tensor:
    """A scalar or (B,) time as a (B,) float32 tensor on ``device``."""
    t = torch.as_tensor(t, dtype=torch.float32, device=device)
    if t.dim() == 0:
        return t.expand(batch)
    if t.shape != (batch,):
        raise ModelError(f"{name} must be a scalar or ({batch},), got {tuple(t.shape)}")
    return t


def _grid(s_targets: torch.Tensor, step: float | None) -> torch.Tensor:
    """Sorted unique s values in [0, 1]: 0, the targets and (fixed-step solvers) a uniform grid."""
    parts = [torch.zeros(1, dtype=s_targets.dtype, device=s_targets.device), s_targets.flatten()]
    if step is not None and step < 1.0:
        n = int(torch.ceil(torch.tensor(1.0 / step)).item())
        parts.append(torch.linspace(0.0, 1.0, n + 1, dtype=s_targets.dtype, device=s_targets.device))
    grid = torch.unique(torch.cat(parts))  # sorted
    # Merge values closer than float32 can separate safely (avoids zero-length steps).
    keep = torch.ones_like(grid, dtype=torch.bool)
    keep[1:] = (grid[1:] - grid[:-1]) > 1e-7
    return grid[keep]


def _restricted_grid(grid: torch.Tensor):
    """A torchdiffeq grid constructor stepping on ``grid`` between whatever ends it is asked for.

    The adjoint's backward pass asks for sub-intervals, on a negated clock (torchdiffeq flips time to
    integrate backwards), so the grid is offered both ways and cut to the requested interval.
    """
    both = torch.cat([grid, -grid])

    def construct(_func, _y0, t: torch.Tensor) -> torch.Tensor:
        start, end = t[0], t[-1]
        lo, hi = torch.minimum(start, end), torch.maximum(start, end)
        inner = both.to(t)[(both.to(t) > lo + 1e-9) & (both.to(t) < hi - 1e-9)]
        inner = torch.unique(inner)
        if end < start:
            inner = inner.flip(0)
        return torch.cat([start.reshape(1), inner, end.reshape(1)])

    return construct


def integrate(velocity: VelocityField, points: torch.Tensor, t_from: float | torch.Tensor,
              t_to: torch.Tensor | Sequence[float] | float, cond: Conditioning,
              solver: SolverConfig | None = None, *, chunk_size: int | None = 10_000,
              autocast_dtype: torch.dtype | None = None,
              stats: dict | None = None, poses: FramePoses | None = None) -> torch.Tensor:
    """Carry points along the velocity field from t_from to each target time.

    points: (B, N, 3) float32, normalised space. t_from: scalar or (B,). t_to: (B, K) or (K,) target
    times (normalised), all on one side of t_from for each batch element (forward or backward in
    time; equal to t_from is allowed). cond: ``velocity.condition(c_t)``, (B, ...).
    chunk_size: points per solve (large point sets are much faster in chunks on CPU); None = all.
    autocast_dtype: run the network in this dtype (CUDA fp16/bf16); the ODE state stays float32.
    poses: the window's rigid poses, required by a field with the rigid prior: the points are then
      carried as x(t) = P(t) y(t) (see ``occflow_ros.model.rigid``): the solver integrates the
      network's body-frame field for y, and the poses at t_from and at the targets are applied in
      closed form.
    stats: if given, receives "evaluations" (velocity-field calls summed over chunks), "chunk_size"
      (the chunk size that worked) and "oom_retries".
    On CUDA, running out of memory halves the chunk and retries (down to MIN_CHUNK points), so a
    large mesh degrades to smaller batches instead of failing; pass the returned chunk size to later
    calls to avoid repeating the failures.
    Returns (B, K, N, 3) float32. Raises ModelError on inconsistent shapes or mixed directions.
    """
    solver = solver or SolverConfig()
    if points.dim() != 3 or points.shape[-1] != 3:
        raise ModelError(f"points must be (B, N, 3), got {tuple(points.shape)}")
    batch, n_points, _ = points.shape
    device = points.device
    t0 = as_batch_times(t_from, batch, device, "t_from")
    targets = torch.as_tensor(t_to, dtype=torch.float32, device=device)
    if targets.dim() == 0:
        targets = targets.reshape(1)
    if targets.dim() == 1:
        targets = targets[None].expand(batch, -1)
    if targets.dim() != 2 or targets.shape[0] != batch:
        raise ModelError(f"t_to must be (K,) or ({batch}, K), got {tuple(targets.shape)}")
    if not torch.isfinite(targets).all() or not torch.isfinite(t0).all():
        raise ModelError("flow times must be finite")
    k = targets.shape[1]
    delta = targets - t0[:, None]  # (B, K)
    if ((delta > 0).any(dim=1) & (delta < 0).any(dim=1)).any():
        raise ModelError("each batch element's target times must all lie on one side of t_from; "
                         "split forward and backward flows into two calls")
    far = delta.gather(1, delta.abs().argmax(dim=1, keepdim=True))[:, 0]  # (B,) signed span
    span = far
    safe_span = torch.where(span == 0, torch.ones_like(span), span)
    s_targets = torch.where(span[:, None] == 0, torch.zeros_like(delta), delta / safe_span[:, None])
    s_targets = s_targets.clamp(0.0, 1.0)
    out_shape = (batch, k, n_points, 3)
    if n_points == 0 or bool((span == 0).all()):
        return points[:, None].expand(out_shape).clone()

    step = None
    if solver.fixed_step:
        step = solver.step_size / float(span.abs().max())
    grid = _grid(s_targets, step)
    # Index of each (b, k) target in the grid.
    index = torch.searchsorted(grid, s_targets.contiguous()).clamp(max=grid.numel() - 1)
    below = (index - 1).clamp(min=0)
    closer_below = (grid[below] - s_targets).abs() < (grid[index] - s_targets).abs()
    index = torch.where(closer_below, below, index)

    rigid = velocity.rigid
    if rigid:
        if poses is None:
            raise ModelError("this velocity field has the rigid prior (velocity_rigid): pass the "
                             "window's FramePoses")
        if poses.times.shape[0] != batch:
            raise ModelError(f"poses hold {poses.times.shape[0]} windows for a batch of {batch}")
        # into the keyframe-aligned body frame with the pose at t_from
        points = apply_pose(torch.linalg.inv(poses.at(t0)), points.float())
    func = _NormalisedClockODE(velocity, cond, t0, span, autocast_dtype)
    options: dict = {}
    kwargs: dict = {"method": solver.method}
    if solver.fixed_step:
        # The grid already holds the targets and the uniform steps: step exactly on it.
        options["grid_constructor"] = _restricted_grid(grid)
    else:
        kwargs.update(rtol=solver.rtol, atol=solver.atol)
    if options:
        kwargs["options"] = options

    chunk = n_points if not chunk_size else max(1, int(chunk_size))
    b_idx = torch.arange(batch, device=device)[:, None].expand(batch, k)
    pieces = []
    start = 0
    retries = 0
    while start < n_points:
        y0 = points[:, start:start + chunk].float()
        try:
            if solver.adjoint and torch.is_grad_enabled():
                params = tuple(velocity.parameters()) + (cond,)
                traj = odeint_adjoint(func, y0, grid, adjoint_params=params, **kwargs)
            else:
                traj = odeint(func, y0, grid, **kwargs)  # (S, B, n, 3)
        except torch.cuda.OutOfMemoryError:
            # Out of GPU memory: free what the failed solve held and retry on smaller chunks.
            if chunk <= MIN_CHUNK:
                raise
            del y0
            torch.cuda.empty_cache()
            chunk = max(MIN_CHUNK, chunk // 2)
            retries += 1
            continue
        pieces.append(traj[index, b_idx])  # each (b, k) target: traj[index[b, k], b] -> (B, K, n, 3)
        start += chunk
    out = pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=2)
    if rigid:  # back from the body frame with the pose at each target time
        at_targets = poses.repeat(k).at(targets.reshape(-1))
        out = apply_pose(at_targets, out.reshape(batch * k, n_points, 3)).reshape(out_shape)
    if stats is not None:
        stats["evaluations"] = func.evaluations
        stats["chunk_size"] = chunk
        stats["oom_retries"] = retries
    return out
