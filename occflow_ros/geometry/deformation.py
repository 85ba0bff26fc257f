"""Non-rigid registration of a keyframe mesh to later partial clouds: an embedded deformation graph.

The keyframe mesh's vertices are bound to a sparse graph of nodes (a voxel subsample of the
vertices, Sumner, Schmid and Pauly, "Embedded deformation for shape manipulation", SIGGRAPH 2007).
Each node k carries a rotation R_k and a translation t_k; a vertex v moves to

    x(v) = sum_k w_vk (R_k (v - g_k) + g_k + t_k)

over its nearest nodes g_k (Gaussian weights). Each frame, the node motions are fit to the frame's
observed points: every observed point pulls its nearest warped vertex along that vertex's normal
(point-to-plane, plus a little point-to-point; pairs farther apart than ``max_distance`` are left
out), while neighbouring nodes are kept moving as one rigid piece ("as rigid as possible"): node
a's motion applied to node b's position should land where b's own motion puts it. The frame starts
from the last frame's fit, so the motion is followed frame to frame, and the graph carries the
parts the camera does not see with the parts it sees. Given ``anchor`` points (the keyframe's
observed points), the body's rigid motion is taken out first, by registering them to each frame
with ICP exactly as the rigid prior does (``next_pose``); the graph then fits what bends.

No maintained Python library offers this (open3d's registration is rigid, and its non-rigid code
is SLAC's control grid for aligning scan fragments; pycpd's coherent point drift ignores the mesh
and costs O(points x vertices) per iteration), so it is written here, in torch: the fit is a few
rounds of L-BFGS (torch.optim.LBFGS) on the device the tracker runs on.
"""

from __future__ import annotations

import numpy as np
import torch

from .errors import GeometryError
from .registration import next_pose

__all__ = ["DeformationGraph"]


def _rotations(r: torch.Tensor) -> torch.Tensor:
    """Rotation matrices (N, 3, 3) from axis-angle vectors (N, 3) (Rodrigues; exact at 0)."""
    theta2 = (r * r).sum(-1, keepdim=True)[..., None]  # (N, 1, 1)
    small = theta2 < 1e-8
    theta = torch.sqrt(torch.where(small, torch.ones_like(theta2), theta2))
    # sin(x)/x and (1 - cos x)/x^2, with their Taylor series near 0 (no division by ~0)
    a = torch.where(small, 1 - theta2 / 6, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24, (1 - torch.cos(theta)) / torch.where(small, 1, theta2))
    zero = torch.zeros_like(r[:, 0])
    k = torch.stack([zero, -r[:, 2], r[:, 1], r[:, 2], zero, -r[:, 0], -r[:, 1], r[:, 0], zero],
                    dim=-1).view(-1, 3, 3)
    eye = torch.eye(3, dtype=r.dtype, device=r.device).expand_as(k)
    return eye + a * k + b * (k @ k)


class DeformationGraph:
    """An embedded deformation graph on a keyframe mesh's vertices, fit frame by frame.

    vertices: (V, 3) the keyframe mesh's vertices (the tracker's normalised units).
    spacing: node spacing (voxel edge of the subsample), also the weights' Gaussian width.
    rigidity: weight of the as-rigid-as-possible term against the data term.
    max_distance: observed points farther than this from every warped vertex are left out.
    rounds / iterations: correspondence updates per frame, and L-BFGS iterations per round.
    neighbours: nodes per vertex (weights) and per node (rigidity edges).

    Raises GeometryError on an empty or non-finite mesh or an unusable setting.
    """

    def __init__(self, vertices: np.ndarray, *, spacing: float = 0.07, rigidity: float = 1.0,
                 max_distance: float = 0.04, rounds: int = 3, iterations: int = 10,
                 neighbours: int = 4, anchor: np.ndarray | None = None,
                 normals: np.ndarray | None = None, sliding: float = 0.1,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> None:
        # (callers may be in torch.inference_mode, whose tensors cannot take part in a fit)
        with torch.inference_mode(False):
            self._build(vertices, spacing, rigidity, max_distance, rounds, iterations, neighbours,
                        device, dtype)
            self.normals = torch.as_tensor(self._normals(vertices, normals), dtype=dtype,
                                           device=self.device)
        if not sliding >= 0:
            raise GeometryError(f"DeformationGraph: sliding must be >= 0, got {sliding}")
        self.sliding = float(sliding)
        self.anchor = None
        if anchor is not None:
            self.anchor = np.asarray(anchor, dtype=np.float64).reshape(-1, 3)
            if not len(self.anchor) or not np.isfinite(self.anchor).all():
                raise GeometryError("DeformationGraph: anchor points must be finite (N>0, 3)")
        self.rigid = self.anchor is not None
        self.pose = np.eye(4)  # the rigid motion of the last fit frame (with an anchor)
        self.frames = 0  # frames fit so far

    @staticmethod
    def _normals(vertices: np.ndarray, normals: np.ndarray | None) -> np.ndarray:
        """The given vertex normals (V, 3), or ones estimated from the vertices (open3d, 16
        neighbours; their sign does not matter here)."""
        v = np.asarray(vertices, dtype=np.float64)
        if normals is not None:
            n = np.asarray(normals, dtype=np.float64)
            if n.shape != v.shape or not np.isfinite(n).all():
                raise GeometryError(f"DeformationGraph: normals must be finite and shaped like the "
                                    f"vertices {v.shape}, got {n.shape}")
            return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
        import open3d as o3d

        cloud = o3d.geometry.PointCloud()
        cloud.points = o3d.utility.Vector3dVector(v)
        cloud.estimate_normals(o3d.geometry.KDTreeSearchParamKNN(16))
        return np.asarray(cloud.normals)

    def _build(self, vertices, spacing, rigidity, max_distance, rounds, iterations, neighbours,
               device, dtype) -> None:
        import open3d as o3d
        from scipy.spatial import cKDTree

        v = np.asarray(vertices, dtype=np.float64)
        if v.ndim != 2 or v.shape[1] != 3 or len(v) == 0 or not np.isfinite(v).all():
            raise GeometryError(f"DeformationGraph: vertices must be finite (V>0, 3), got {v.shape}")
        if not (spacing > 0 and rigidity >= 0 and max_distance > 0 and rounds >= 1
                and iterations >= 1 and neighbours >= 1):
            raise GeometryError("DeformationGraph: spacing, max_distance > 0, rigidity >= 0, rounds, "
                                "iterations, neighbours >= 1")
        cloud = o3d.geometry.PointCloud()
        cloud.points = o3d.utility.Vector3dVector(v)
        centres = np.asarray(cloud.voxel_down_sample(float(spacing)).points)
        tree = cKDTree(v)
        nodes = np.unique(tree.query(centres)[1])  # each node sits on a vertex
        g = v[nodes]
        node_tree = cKDTree(g)
        k = min(neighbours, len(g))
        d, idx = node_tree.query(v, k=k)
        d, idx = d.reshape(len(v), k), idx.reshape(len(v), k)
        # Gaussian weights as a softmax: a vertex far from every node still gets weights summing to 1
        w = torch.softmax(torch.from_numpy(-d ** 2 / (2 * spacing ** 2)), dim=1)
        e = min(neighbours + 1, len(g))
        _, nb = node_tree.query(g, k=e)
        nb = nb.reshape(len(g), e)
        edges = np.stack([np.repeat(np.arange(len(g)), e - 1), nb[:, 1:].ravel()], axis=1)
        self.device = torch.device(device)
        self.dtype = dtype
        as_t = lambda a: torch.as_tensor(a, dtype=dtype, device=self.device)  # noqa: E731
        self.vertices = as_t(v)
        self.nodes = as_t(g)
        self.node_vertex = torch.as_tensor(nodes, device=self.device)
        self.weights = as_t(w.numpy())
        self.neighbours = torch.as_tensor(idx, device=self.device)
        self.edges = torch.as_tensor(edges, device=self.device).reshape(-1, 2)
        self.rigidity = float(rigidity)
        self.max_distance = float(max_distance)
        self.rounds = int(rounds)
        self.iterations = int(iterations)
        self.r = torch.zeros(len(g), 3, dtype=dtype, device=self.device, requires_grad=True)
        self.t = torch.zeros(len(g), 3, dtype=dtype, device=self.device, requires_grad=True)
        self._on_cpu = self.device.type == "cpu"
        self.last_pairs = 0

    @property
    def num_nodes(self) -> int:
        return int(self.nodes.shape[0])

    def warp(self, rotations: torch.Tensor | None = None,
             subset: torch.Tensor | None = None) -> torch.Tensor:
        """The keyframe vertices (or those indexed by ``subset``) moved by the current node
        motions: (V, 3), before the rigid motion (``fit`` returns them after it)."""
        rot = _rotations(self.r) if rotations is None else rotations
        nb, w, v = self.neighbours, self.weights, self.vertices
        if subset is not None:
            nb, w, v = nb[subset], w[subset], v[subset]
        g = self.nodes[nb]  # (V, k, 3)
        local = torch.einsum("vkab,vkb->vka", rot[nb], v[:, None] - g)
        return (w[..., None] * (local + g + self.t[nb])).sum(1)

    def _nearest(self, warped: torch.Tensor, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self._on_cpu:
            from scipy.spatial import cKDTree

            d, j = cKDTree(warped.numpy()).query(points.numpy())
            return torch.from_numpy(d), torch.from_numpy(j)
        d, j = torch.cdist(points, warped).min(dim=1)
        return d, j

    def fit(self, points: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Fit the node motions to one frame's observed points (M, 3), from the last frame's fit;
        returns the warped vertices (V, 3) (detached). With fewer than 3 points near the mesh it
        keeps the last fit (``last_pairs`` says how many points took part)."""
        with torch.inference_mode(False), torch.enable_grad():
            obs = torch.as_tensor(points, dtype=self.dtype, device=self.device).reshape(-1, 3).clone()
            if self.rigid and len(obs):
                # the body's rigid motion first: the keyframe's points registered to this frame's
                # (ICP, chained from the last frame's pose as the rigid prior does), so that the
                # graph fits only what bends; alone it lets a surface slide along itself
                known = [np.eye(4)] if self.frames == 0 else [np.eye(4), self.pose]
                self.pose = next_pose(self.anchor, obs.cpu().numpy().astype(np.float64), known)
            self.frames += 1
            body = self._to_body(obs)
            return self._to_world(self._fit(body))

    def _to_world(self, x: torch.Tensor) -> torch.Tensor:
        if not self.rigid:
            return x
        pose = torch.tensor(self.pose, dtype=x.dtype, device=x.device)
        return x @ pose[:3, :3].T + pose[:3, 3]

    def _to_body(self, x: torch.Tensor) -> torch.Tensor:
        if not self.rigid:
            return x
        pose = torch.tensor(self.pose, dtype=x.dtype, device=x.device)
        return (x - pose[:3, 3]) @ pose[:3, :3]

    def _fit(self, obs: torch.Tensor) -> torch.Tensor:
        a, b = self.edges[:, 0], self.edges[:, 1]
        offsets = self.nodes[b] - self.nodes[a]
        optimizer = torch.optim.LBFGS([self.r, self.t], lr=1.0, max_iter=self.iterations,
                                      line_search_fn="strong_wolfe")
        self.last_pairs = 0
        for _ in range(self.rounds):
            with torch.no_grad():
                dist, nearest = self._nearest(self.warp(), obs)
            keep = dist < self.max_distance
            if int(keep.sum()) < 3:
                break
            self.last_pairs = int(keep.sum())
            target, index = obs[keep.to(obs.device)], nearest[keep].to(self.device)
            # only the vertices that some observed point pulls take part in the data term
            subset, index = torch.unique(index, return_inverse=True)

            nb, w = self.neighbours[subset], self.weights[subset]
            normals = self.normals[subset]

            def closure() -> torch.Tensor:
                optimizer.zero_grad()
                rot = _rotations(self.r)
                gap = self.warp(rot, subset)[index] - target
                # point-to-plane: along the vertex's (turned) normal, so that a point seen between
                # vertices does not drag its nearest vertex along the surface; a little
                # point-to-point (``sliding``) keeps the tangential motion determined
                turned = (w[..., None] * torch.einsum("vkab,vb->vka", rot[nb], normals)).sum(1)
                loss = ((gap * turned[index]).sum(-1) ** 2).mean()
                if self.sliding > 0:
                    loss = loss + self.sliding * (gap ** 2).sum(-1).mean()
                if len(a) and self.rigidity > 0:
                    moved = torch.einsum("eab,eb->ea", rot[a], offsets) + self.t[a] - self.t[b]
                    loss = loss + self.rigidity * ((moved - offsets) ** 2).sum(-1).mean()
                loss.backward()
                return loss

            optimizer.step(closure)
        with torch.no_grad():
            return self.warp()

    def keyframe_positions(self, points: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Where observed points (M, 3) were at the keyframe: each one's nearest warped vertex's
        keyframe position plus its offset from that vertex, turned back by the vertex's nearest
        node's rotation. (M, 3), detached."""
        obs = torch.as_tensor(points, dtype=self.dtype, device=self.device).reshape(-1, 3)
        with torch.inference_mode(False), torch.no_grad():
            obs = self._to_body(obs)
            rot = _rotations(self.r)
            warped = self.warp(rot)
            _, j = self._nearest(warped, obs)
            j = j.to(self.device)
            node_rot = rot[self.neighbours[j, 0]]  # (M, 3, 3)
            offset = torch.einsum("mba,mb->ma", node_rot, obs - warped[j])
            return self.vertices[j] + offset
