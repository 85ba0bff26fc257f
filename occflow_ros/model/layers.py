"""Building blocks: residual MLP blocks, FiLM-conditioned blocks, masked max pooling."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["FourierFeatures", "ResBlock", "FiLMResBlock", "masked_max", "masked_mean",
           "finite_or_zero"]

NEG_INF = float("-inf")


class FourierFeatures(nn.Module):
    """p -> [p, sin(2^k pi p), cos(2^k pi p)] for k < octaves: (..., 3) -> (..., 3 + 6 * octaves).

    Plain coordinates make a ReLU network learn thin parts (arms, fingers) very slowly (its spectral
    bias): on one body's occupancy, a 4-layer MLP reached BCE 0.27 / IoU 0.46 in 400 Adam steps on
    raw coordinates and BCE 0.003 / IoU 1.0 with 4 octaves. Frequencies are fixed, not learned.
    """

    def __init__(self, octaves: int) -> None:
        super().__init__()
        self.octaves = octaves
        self.register_buffer("frequencies", (2.0 ** torch.arange(octaves)) * torch.pi,
                             persistent=False)

    @property
    def out_dim(self) -> int:
        return 3 + 6 * self.octaves

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        if self.octaves == 0:
            return p
        angles = (p[..., None] * self.frequencies.to(p.dtype)).flatten(-2)  # (..., 3 * octaves)
        return torch.cat([p, torch.sin(angles), torch.cos(angles)], dim=-1)


class ResBlock(nn.Module):
    """x -> x' + fc1(relu(fc0(relu(x)))) with a linear shortcut x' when widths differ.

    x: (..., in_dim) -> (..., out_dim)
    """

    def __init__(self, in_dim: int, hidden: int, out_dim: int) -> None:
        super().__init__()
        self.fc0 = nn.Linear(in_dim, hidden)
        self.fc1 = nn.Linear(hidden, out_dim)
        self.shortcut = nn.Linear(in_dim, out_dim, bias=False) if in_dim != out_dim else None
        nn.init.zeros_(self.fc1.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dx = self.fc1(torch.relu(self.fc0(torch.relu(x))))
        base = x if self.shortcut is None else self.shortcut(x)
        return base + dx


class FiLMResBlock(nn.Module):
    """A residual block whose input is modulated by a per-sample code: h * (1 + gamma) + beta.

    h: (B, M, H); gamma, beta: (B, 1, H), computed from the code once per call by the owner and
    broadcast over the M points, so conditioning costs nothing per point beyond one multiply-add.
    """

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.fc0 = nn.Linear(hidden, hidden)
        self.fc1 = nn.Linear(hidden, hidden)
        nn.init.zeros_(self.fc1.weight)

    def forward(self, h: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        x = torch.addcmul(beta, h, 1.0 + gamma)
        return h + self.fc1(torch.relu(self.fc0(torch.relu(x))))


def masked_max(x: torch.Tensor, mask: torch.Tensor | None, dim: int) -> torch.Tensor:
    """Max over ``dim`` of x, ignoring entries where mask is False.

    x: (..., N, H) with dim selecting N; mask: x.shape[:-1] bool or None. All-masked slices give -inf
    (the identity of max), so results can be combined further; use ``finite_or_zero`` before they
    enter a layer.
    """
    if mask is not None:
        x = x.masked_fill(~mask.unsqueeze(-1), NEG_INF)
    return x.amax(dim=dim)


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None, dim: int) -> torch.Tensor:
    """Mean over ``dim`` of x where mask is True; all-masked slices give 0. Shapes as masked_max."""
    if mask is None:
        return x.mean(dim=dim)
    weights = mask.unsqueeze(-1).to(x.dtype)
    return (x * weights).sum(dim=dim) / weights.sum(dim=dim).clamp(min=1.0)


def finite_or_zero(x: torch.Tensor) -> torch.Tensor:
    """Replace the -inf of empty pools by 0."""
    return torch.where(torch.isneginf(x), torch.zeros((), dtype=x.dtype, device=x.device), x)
