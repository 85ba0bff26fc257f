"""The Occupancy Flow training objective: reconstruction through the backward flow, plus correspondences."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..model import FramePoses, OccupancyFlow, SolverConfig

__all__ = ["Objective", "iou"]


class Objective(nn.Module):
    """Losses of one batch (see ``occflow_ros.data.WindowDataset`` for the batch's keys).

    - reconstruction at the keyframe: BCE of f(p | c_s) against occupancy at t = 0;
    - reconstruction at time t: query points sampled at t are carried BACKWARDS to the keyframe by
      the flow (code of the causal window ending at t) and scored there by the same decoder, so no
      correspondences are needed;
    - correspondence (where ground truth has it): keyframe surface points carried FORWARD to every
      ground-truth time up to t in one solve, mean Euclidean distance to where those material
      points really are (three times the supervision of the target time alone, for one solve).
    The returned "corr" is the correspondence error at t (the window's end for validation).
    shape_only: the first term alone (the shape networks' training); returns loss, occ0, iou0.
    The shape network reads the batch's ``shape_inputs`` where it has them (more points than the
    motion encoder's ``inputs``), else the keyframe's ``inputs``.
    Wrapping the whole computation in one module's forward is what lets DistributedDataParallel see
    every parameter use.
    """

    def __init__(self, model: OccupancyFlow, solver: SolverConfig, corr_weight: float = 1.0,
                 shape_only: bool = False) -> None:
        super().__init__()
        self.model = model
        self.solver = solver
        self.corr_weight = corr_weight
        self.shape_only = shape_only

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        model = self.model
        inputs, times, frame_mask = batch["inputs"], batch["times"], batch["frame_mask"]
        b = inputs.shape[0]
        c_s = model.encode_shape(batch["shape_inputs"] if "shape_inputs" in batch else inputs[:, 0])
        if self.shape_only:  # the keyframe's occupancy alone: no motion, no flow
            logits0 = model.occupancy_logits(batch["occ0_points"], c_s, context=inputs[:, 0])
            loss0 = F.binary_cross_entropy_with_logits(logits0, batch["occ0"])
            return {"loss": loss0, "occ0": loss0.detach(),
                    "iou0": iou(logits0.detach(), batch["occ0"])}
        codes, _ = model.encode_motion(inputs, times, frame_mask=frame_mask)
        c_t = codes[torch.arange(b, device=inputs.device), batch["k"]]
        t = batch["t"]
        poses = None
        if model.rigid:
            if "poses" not in batch:
                raise ValueError("the model has the rigid prior: its batches need the frames' "
                                 "poses (WindowDataset(..., poses=True))")
            poses = FramePoses(times, batch["poses"], frame_mask)

        back = model.flow(batch["occt_points"], t, 0.0, c_t, self.solver, chunk_size=None,
                          poses=poses)
        m = batch["occ0_points"].shape[1]
        logits = model.occupancy_logits(torch.cat([batch["occ0_points"], back], dim=1), c_s,
                                        context=inputs[:, 0])
        logits0, logits_t = logits[:, :m], logits[:, m:]
        loss0 = F.binary_cross_entropy_with_logits(logits0, batch["occ0"])
        loss_t = F.binary_cross_entropy_with_logits(logits_t, batch["occt"])

        mask = batch["corr_mask"] & batch["has_corr"][:, None]  # (B, K)
        if bool(mask.any()) and self.corr_weight > 0:
            # keyframe surface points carried to every ground-truth time up to t in one solve
            moved = model.flow_to_times(batch["corr0"], 0.0, batch["corr_times"], c_t,
                                        self.solver, chunk_size=None,
                                        poses=poses)  # (B, K, C, 3)
            dist = (moved - batch["corr_targets"]).norm(dim=-1).mean(dim=2)  # (B, K)
            weights = mask.to(dist.dtype)
            loss_corr = (dist * weights).sum() / weights.sum().clamp(min=1)
            end = (weights.sum(dim=1).long() - 1).clamp(min=0)  # each sample's last valid time
            has = mask.any(dim=1).to(dist.dtype)
            corr_end = (dist.gather(1, end[:, None])[:, 0] * has).sum() / has.sum().clamp(min=1)
        else:
            loss_corr = torch.zeros((), device=inputs.device)
            corr_end = loss_corr
        total = loss0 + loss_t + self.corr_weight * loss_corr
        return {"loss": total, "occ0": loss0.detach(), "occt": loss_t.detach(),
                "corr": corr_end.detach(),
                "iou0": iou(logits0.detach(), batch["occ0"]),
                "iout": iou(logits_t.detach(), batch["occt"])}


def iou(logits: torch.Tensor, labels: torch.Tensor, threshold: float = 0.0) -> torch.Tensor:
    """Mean over the batch of IoU between predicted (logit > threshold) and true occupancy (B, M)."""
    pred = logits > threshold
    true = labels > 0.5
    inter = (pred & true).sum(dim=1).float()
    union = (pred | true).sum(dim=1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union)).mean()
