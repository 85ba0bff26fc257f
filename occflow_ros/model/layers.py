"""Building blocks: residual MLP blocks, FiLM-conditioned blocks, masked max pooling."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["FourierFeatures", "ResBlock", "FiLMResBlock", "LocalPointFeatures", "masked_max",
           "masked_mean", "finite_or_zero"]

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


class LocalPointFeatures(nn.Module):
    """What the observed points near a query say about it: (B, M, 3) queries, (B, N, 3) points -> (B, M, out).

    For each query, its k nearest points (fewer when the set has fewer) enter as their offset from
    the query and their distance, scaled by ``scale`` (normalised units: 0.1 -> 1), go through a
    two-layer MLP each and are max-pooled, then projected to ``out_dim``. A global shape code has to
    describe the whole object; this tells the decoder directly where the observed surface is around
    the query (which side, how far), the cue a partial single view gives most reliably.
    Permutation invariant in the points; masked points (mask False) are never neighbours; a query
    with no valid neighbour gets a zero feature. Cost per query: one row of an (M, N) distance matrix
    and k rows of a small MLP, so callers chunk queries as they do for the decoder.
    """

    def __init__(self, k: int, hidden: int, out_dim: int, scale: float = 10.0) -> None:
        super().__init__()
        self.k = k
        self.scale = scale
        self.fc0 = nn.Linear(4, hidden)
        self.fc1 = nn.Linear(hidden, hidden)
        self.fc_out = nn.Linear(hidden, out_dim)

    def forward(self, queries: torch.Tensor, points: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        b, m, _ = queries.shape
        n = points.shape[1]
        k = min(self.k, n)
        if k == 0:
            return queries.new_zeros(b, m, self.fc_out.out_features)
        dist = torch.cdist(queries.float(), points.float())  # (B, M, N)
        if mask is not None:
            dist = dist.masked_fill(~mask[:, None, :], float("inf"))
        near, idx = dist.topk(k, dim=-1, largest=False)  # (B, M, k)
        valid = torch.isfinite(near)
        flat = points.reshape(b * n, 3)
        base = (torch.arange(b, device=points.device) * n)[:, None, None]
        neighbours = flat[(idx + base).reshape(-1)].reshape(b, m, k, 3)
        z = torch.cat([neighbours - queries[:, :, None], near[..., None]], dim=-1) * self.scale
        z = torch.where(valid[..., None], z, torch.zeros((), dtype=z.dtype, device=z.device))
        h = self.fc1(torch.relu(self.fc0(z.to(self.fc0.weight.dtype))))
        pooled = finite_or_zero(masked_max(h, valid if mask is not None else None, dim=2))
        return self.fc_out(torch.relu(pooled))
