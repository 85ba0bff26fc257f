"""The keyframe shape from feature planes: a local, convolutional occupancy network.

A global shape code has to describe a whole person in one vector; thin parts (forearms, hands)
are what it loses first. Here every keyframe point writes a feature into three axis-aligned planes
(xy, xz, yz) of ``resolution``^2 cells, a small 2D U-Net (shared by the three planes) spreads the
evidence over its neighbourhood, and a query reads the three planes at its projections (bilinear)
and decodes occupancy from those local features and its own coordinates. This is the idea of
Convolutional Occupancy Networks (Peng et al., ECCV 2020), written here for this project's sizes.

Properties the tracker relies on: the encoder is order-invariant (points are pooled per cell by a
mean) and takes any number of points (masked points write nothing); the decoder's answer for a
query does not depend on the other queries in its chunk.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelError
from .layers import FourierFeatures, ResBlock

__all__ = ["PlaneEncoder", "PlaneDecoder", "plane_coordinates"]

PLANES = ((0, 1), (0, 2), (1, 2))  # xy, xz, yz: the two coordinates each plane keeps
# the planes' edge in normalised units: the meshed cube's (MeshingConfig.box_size's default), so
# the encoder writes and the decoder reads the same cells
EXTENT = 1.1


def plane_coordinates(points: torch.Tensor, extent: float) -> torch.Tensor:
    """Each plane's 2D coordinates of points (..., 3) in [-1, 1] (grid_sample's convention), for
    planes covering [-extent / 2, extent / 2]^2: (..., 3 planes, 2)."""
    uv = torch.stack([points[..., list(axes)] for axes in PLANES], dim=-2)
    return (uv * (2.0 / extent)).clamp(-1.0, 1.0)


def _scatter_mean(features: torch.Tensor, uv: torch.Tensor, weight: torch.Tensor,
                  resolution: int) -> torch.Tensor:
    """Mean of point features per plane cell: features (B, N, C), uv (B, N, 3, 2) in [-1, 1],
    weight (B, N) (0 for masked points) -> (B, 3, C, R, R); empty cells are 0."""
    b, n, c = features.shape
    r = resolution
    cell = ((uv + 1.0) * (0.5 * r)).long().clamp(0, r - 1)  # (B, N, 3, 2)
    index = cell[..., 1] * r + cell[..., 0]  # row = second coordinate, as grid_sample reads it
    index = index + torch.arange(3, device=index.device) * (r * r)  # (B, N, 3): one plane each
    index = index.reshape(b, n * 3)
    w = weight.to(features.dtype)[:, :, None].expand(b, n, 3).reshape(b, n * 3)
    f = (features * weight.to(features.dtype)[..., None])[:, :, None].expand(b, n, 3, c)
    sums = features.new_zeros(b, 3 * r * r, c)
    sums.scatter_add_(1, index[..., None].expand(b, n * 3, c), f.reshape(b, n * 3, c))
    counts = features.new_zeros(b, 3 * r * r).scatter_add_(1, index, w)
    mean = sums / counts.clamp(min=1.0)[..., None]
    return mean.view(b, 3, r, r, c).permute(0, 1, 4, 2, 3).contiguous()


class _DoubleConv(nn.Sequential):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(inplace=True),
                         nn.Conv2d(c_out, c_out, 3, padding=1), nn.ReLU(inplace=True))


class UNet2d(nn.Module):
    """A small U-Net: ``depth`` levels, channels doubling from ``channels``; (B, C, R, R) -> same.

    R must be divisible by 2^(depth - 1)."""

    def __init__(self, channels: int, depth: int) -> None:
        super().__init__()
        widths = [channels * 2 ** i for i in range(depth)]
        self.down = nn.ModuleList([_DoubleConv(channels if i == 0 else widths[i - 1], w)
                                   for i, w in enumerate(widths)])
        self.up = nn.ModuleList([nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2)
                                 for i in range(depth - 1)])
        self.merge = nn.ModuleList([_DoubleConv(2 * widths[i], widths[i])
                                    for i in range(depth - 1)])
        self.out = nn.Conv2d(widths[0], channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            if i:
                x = F.max_pool2d(x, 2)
            x = block(x)
            skips.append(x)
        for i in reversed(range(len(self.up))):
            x = self.merge[i](torch.cat([self.up[i](x), skips[i]], dim=1))
        return self.out(x)


class PlaneEncoder(nn.Module):
    """Keyframe points (B, N, 3) [mask (B, N)] -> feature planes (B, 3, C, R, R).

    Per point: its Fourier features through a residual MLP; once in between, each point also
    receives the mean feature of the cells it falls in (a local PointNet, so a point knows its
    neighbours before the planes are written); then a mean per cell and the shared 2D U-Net.
    """

    def __init__(self, hidden: int, channels: int, resolution: int, octaves: int = 0,
                 depth: int = 3, extent: float = EXTENT) -> None:
        super().__init__()
        if resolution % 2 ** (depth - 1):
            raise ModelError(f"plane_resolution must be divisible by {2 ** (depth - 1)}, "
                             f"got {resolution}")
        self.resolution = resolution
        self.channels = channels
        self.extent = extent
        self.fourier = FourierFeatures(octaves)
        self.fc_in = nn.Linear(self.fourier.out_dim, hidden)
        self.block0 = ResBlock(hidden, hidden, hidden)
        self.block1 = ResBlock(2 * hidden, hidden, hidden)
        self.fc_out = nn.Linear(hidden, channels)
        self.unet = UNet2d(channels, depth)

    def forward(self, points: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if points.dim() != 3 or points.shape[-1] != 3:
            raise ModelError(f"keyframe points must be (B, N, 3), got {tuple(points.shape)}")
        b, n, _ = points.shape
        finite = torch.isfinite(points).all(dim=-1)
        weight = finite if mask is None else finite & mask
        points = torch.where(finite[..., None], points, torch.zeros((), dtype=points.dtype,
                                                                     device=points.device))
        uv = plane_coordinates(points, self.extent)  # (B, N, 3, 2)
        h = self.block0(self.fc_in(self.fourier(points)))
        pooled = _scatter_mean(h, uv, weight, self.resolution)  # (B, 3, H, R, R)
        local = F.grid_sample(pooled.flatten(0, 1), uv.transpose(1, 2).reshape(b * 3, n, 1, 2),
                              mode="nearest", align_corners=False)  # (B*3, H, N, 1)
        local = local.view(b, 3, -1, n).sum(dim=1).transpose(1, 2)  # (B, N, H)
        h = self.fc_out(torch.relu(self.block1(torch.cat([h, local], dim=-1))))
        planes = _scatter_mean(h, uv, weight, self.resolution)  # (B, 3, C, R, R)
        r = self.resolution
        planes = self.unet(planes.view(b * 3, self.channels, r, r))
        return planes.view(b, 3, self.channels, r, r)


class PlaneDecoder(nn.Module):
    """Occupancy logits (B, M) at queries (B, M, 3) from feature planes (B, 3, C, R, R).

    The planes' features at the query's three projections are summed and enter every residual
    block (added), next to the query's Fourier features. ``condition`` and ``context`` exist so
    that callers treat this decoder as the global one: the planes (laid out once per keyframe by
    ``condition``) are its conditioning, and it needs no input points at query time.
    """

    def __init__(self, channels: int, hidden: int, n_blocks: int, octaves: int = 0,
                 extent: float = EXTENT) -> None:
        super().__init__()
        self.channels = channels
        self.extent = extent
        self.fourier = FourierFeatures(octaves)
        self.fc_in = nn.Linear(self.fourier.out_dim, hidden)
        self.fc_c = nn.ModuleList([nn.Linear(channels, hidden) for _ in range(n_blocks)])
        self.blocks = nn.ModuleList([ResBlock(hidden, hidden, hidden) for _ in range(n_blocks)])
        self.fc_out = nn.Linear(hidden, 1)

    def condition(self, planes: torch.Tensor) -> torch.Tensor:
        """The planes, channels last (B, 3 * R * R, C): the layout ``sample`` gathers rows from."""
        if planes.dim() != 5 or planes.shape[1] != 3 or planes.shape[2] != self.channels:
            raise ModelError(f"feature planes must be (B, 3, {self.channels}, R, R), "
                             f"got {tuple(planes.shape)}")
        b, _, c, r, _ = planes.shape
        return planes.permute(0, 1, 3, 4, 2).reshape(b, 3 * r * r, c).contiguous()

    def sample(self, table: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """Summed bilinear plane features (B, M, C) at points (B, M, 3) from ``condition``'s table.

        The same values as grid_sample (align_corners=False, border padding) of each plane, summed
        over the planes; gathered as rows of C features (channels last), which on a CPU is several
        times faster than grid_sample's channel-first reads.
        """
        b, m, _ = points.shape
        c = table.shape[-1]
        r = round((table.shape[1] // 3) ** 0.5)
        uv = plane_coordinates(points.float(), self.extent)  # (B, M, 3, 2)
        pix = ((uv + 1.0) * r - 1.0) * 0.5
        pix = pix.clamp(0.0, r - 1.0)
        lo = pix.floor()
        w = pix - lo  # (B, M, 3, 2)
        lo = lo.long()
        hi = (lo + 1).clamp(max=r - 1)
        base = torch.arange(3, device=points.device) * (r * r)  # (3,)
        x0, y0, x1, y1 = lo[..., 0], lo[..., 1], hi[..., 0], hi[..., 1]
        corners = torch.stack([y0 * r + x0, y0 * r + x1, y1 * r + x0, y1 * r + x1], dim=-1)
        corners = corners + base[:, None]  # (B, M, 3, 4)
        wx, wy = w[..., 0], w[..., 1]
        weights = torch.stack([(1 - wx) * (1 - wy), wx * (1 - wy), (1 - wx) * wy, wx * wy],
                              dim=-1)  # (B, M, 3, 4)
        corners = corners.reshape(b, m * 12) + (torch.arange(b, device=points.device)
                                                 * table.shape[1])[:, None]
        rows = table.reshape(-1, c).index_select(0, corners.reshape(-1)).view(b, m, 12, c)
        return torch.einsum("bmk,bmkc->bmc", weights.reshape(b, m, 12).to(rows.dtype), rows)

    def forward(self, points: torch.Tensor, code: torch.Tensor | None = None,
                cond: torch.Tensor | None = None, context: torch.Tensor | None = None,
                context_mask: torch.Tensor | None = None) -> torch.Tensor:
        if points.dim() != 3 or points.shape[-1] != 3:
            raise ModelError(f"query points must be (B, M, 3), got {tuple(points.shape)}")
        if cond is None:
            if code is None:
                raise ModelError("PlaneDecoder needs the keyframe's feature planes")
            cond = self.condition(code)
        if cond.dim() != 3 or cond.shape[0] != points.shape[0]:
            raise ModelError(f"plane table must be ({points.shape[0]}, 3 * R * R, "
                             f"{self.channels}), got {tuple(cond.shape)}")
        c = self.sample(cond, points)
        h = self.fc_in(self.fourier(points).to(self.fc_in.weight.dtype))
        for fc, block in zip(self.fc_c, self.blocks):
            h = block(h + fc(c.to(h.dtype)))
        return self.fc_out(torch.relu(h)).squeeze(-1)
