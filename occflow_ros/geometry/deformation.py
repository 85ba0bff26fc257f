"""Non-rigid registration of a keyframe mesh to later partial clouds: an embedded deformation graph
solved by Levenberg-Marquardt.

The keyframe mesh's vertices are bound to a sparse graph of nodes (a voxel subsample of the
vertices; Sumner, Schmid and Pauly, "Embedded deformation for shape manipulation", SIGGRAPH 2007).
Node k carries a rotation R_k and a translation t_k; a vertex v moves to

    x(v) = sum_k w_vk (R_k (v - g_k) + g_k + t_k)

over its nearest nodes g_k (Gaussian weights). With the mesh's faces, nodes are linked where the
surface links them (two nodes whose vertex regions share a mesh edge) and a vertex is bound only to
its own node and nodes linked to it, so an arm hanging beside the trunk is not glued to it.

Each frame the node motions are fit to the frame's observed points, starting from the last frame's
fit (or from a prediction of it), by minimising

    E = 1/P sum_pairs [(n_v . (x_v - p))^2 + sliding |x_v - p|^2]
        + rigidity / |edges| sum_(a,b) |R_a (g_b - g_a) + g_a + t_a - g_b - t_b|^2

where each observed point p is paired with its nearest warped vertex v (pairs farther apart than
``max_distance``, or whose vertex faces away from the camera, are left out), n_v is that vertex's
turned normal (point-to-plane, so a point seen between vertices does not drag its nearest vertex
along the surface) and the second term keeps neighbouring nodes moving as one rigid piece ("as
rigid as possible"). Parts the camera does not see follow the seen parts through that term.

The solver: Gauss-Newton steps with Levenberg-Marquardt damping on 6 unknowns per node (a rotation
increment, R_k <- exp(theta_k) R_k, and a translation increment), with the analytic Jacobians;
pairs are summed per vertex first (exact for fixed normals), and the normal equations are
assembled block by block and solved by Cholesky. Before the per-node steps a rigid stage solves the
same data term for one motion of the whole graph: its step is bounded by ``max_rotation`` (rad) and
``max_translation`` per frame, and it is kept only when it explains the frame better than the state
it started from, so no single frame can turn the mesh away.

No maintained Python library offers this (open3d's registration is rigid, its non-rigid code is
SLAC's control grid for aligning scan fragments; pycpd's coherent point drift ignores the mesh), so
it is written here, in numpy and scipy, on the CPU whatever device the networks run on: a graph of
a few hundred nodes is too small to gain from a GPU.
"""

from __future__ import annotations

import time

import numpy as np
from scipy.spatial import cKDTree

from .errors import GeometryError
from .queries import vertex_normals
from .registration import best_rigid_motion

__all__ = ["DeformationGraph", "so3_exp"]

#: graphs with at most this many nodes are solved by a dense Cholesky factorisation, larger ones by
#: preconditioned conjugate gradients
DENSE_NODES = 80


def so3_exp(r: np.ndarray) -> np.ndarray:
    """Rotation matrices (N, 3, 3) from axis-angle vectors (N, 3) (Rodrigues; exact at 0)."""
    r = np.asarray(r, dtype=np.float64).reshape(-1, 3)
    theta2 = (r * r).sum(-1)[:, None, None]
    small = theta2 < 1e-12
    theta = np.sqrt(np.where(small, 1.0, theta2))
    a = np.where(small, 1.0 - theta2 / 6.0, np.sin(theta) / theta)
    b = np.where(small, 0.5 - theta2 / 24.0, (1.0 - np.cos(theta)) / np.where(small, 1.0, theta2))
    k = _skew(r)
    return np.eye(3) + a * k + b * (k @ k)


def _skew(r: np.ndarray) -> np.ndarray:
    """[r]_x (N, 3, 3): [r]_x y = r x y."""
    k = np.zeros(r.shape[:-1] + (3, 3))
    k[..., 0, 1], k[..., 0, 2] = -r[..., 2], r[..., 1]
    k[..., 1, 0], k[..., 1, 2] = r[..., 2], -r[..., 0]
    k[..., 2, 0], k[..., 2, 1] = -r[..., 1], r[..., 0]
    return k


class DeformationGraph:
    """An embedded deformation graph on a keyframe mesh's vertices, fit frame by frame.

    vertices: (V, 3) the keyframe mesh's vertices (the tracker's normalised units).
    faces: (F, 3) its triangles: outward normals, and nodes linked along the surface; without
      faces, normals are estimated (unsigned) and nodes linked to their nearest nodes.
    spacing: node spacing (voxel edge of the subsample), also the weights' Gaussian width.
    rigidity: weight of the as-rigid-as-possible term against the data term.
    sliding: weight of the point-to-point distance beside the point-to-plane one.
    max_distance: observed points farther than this from every warped vertex are left out.
    iterations: Levenberg-Marquardt steps per frame (pairs are renewed before each).
    neighbours: nodes per vertex (weights); edges_per_node: links per node without faces.
    rigid_iterations: steps of the rigid stage per frame (0: none).
    max_rotation / max_translation: bounds of the rigid stage's motion per frame (radians, units).
    prior: weight of a predicted position per vertex (``fit(..., predicted=)``) against the data.
    momentum: how much of each node's last motion it continues before the fit (0..1; ``fit(dt=)``).

    Raises GeometryError on an empty or non-finite mesh or an unusable setting.
    """

    def __init__(self, vertices: np.ndarray, faces: np.ndarray | None = None, *,
                 spacing: float = 0.07, rigidity: float = 1.0, sliding: float = 0.1,
                 max_distance: float = 0.04, iterations: int = 4, neighbours: int = 4,
                 edges_per_node: int = 6, rigid_iterations: int = 3,
                 max_rotation: float = 0.3, max_translation: float = 0.1,
                 prior: float = 0.0, momentum: float = 0.0,
                 normals: np.ndarray | None = None) -> None:
        v = np.asarray(vertices, dtype=np.float64)
        if v.ndim != 2 or v.shape[1] != 3 or len(v) == 0 or not np.isfinite(v).all():
            raise GeometryError(f"DeformationGraph: vertices must be finite (V>0, 3), got {v.shape}")
        checks = {"spacing": spacing > 0, "max_distance": max_distance > 0,
                  "rigidity": rigidity >= 0, "sliding": sliding >= 0, "prior": prior >= 0,
                  "iterations": iterations >= 1, "momentum": 0 <= momentum <= 1,
                  "neighbours": neighbours >= 1,
                  "edges_per_node": edges_per_node >= 1, "rigid_iterations": rigid_iterations >= 0,
                  "max_rotation": max_rotation > 0, "max_translation": max_translation > 0}
        for name, ok in checks.items():
            if not ok:
                raise GeometryError(f"DeformationGraph: {name} out of range")
        f = None
        if faces is not None:
            f = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
            if len(f) and (f.min() < 0 or f.max() >= len(v)):
                raise GeometryError("DeformationGraph: faces index vertices that do not exist")
        self.vertices = v
        self.spacing = float(spacing)
        self.rigidity, self.sliding = float(rigidity), float(sliding)
        self.max_distance, self.iterations = float(max_distance), int(iterations)
        self.rigid_iterations = int(rigid_iterations)
        self.max_rotation, self.max_translation = float(max_rotation), float(max_translation)
        self.prior = float(prior)
        self.cg_tolerance, self.cg_iterations = 1e-3, 60
        self.normals0, self.oriented = self._normals(v, f, normals)
        self._build(v, f, int(neighbours), int(edges_per_node))
        n = self.num_nodes
        self.R = np.tile(np.eye(3), (n, 1, 1))
        self.t = np.zeros((n, 3))
        self.frames = 0
        self.last_pairs = 0
        self.last_rigid_accepted = True
        self.last_timings: dict = {}  # seconds of the last fit's stages
        self.momentum = float(momentum)
        # the rigid stage: pairs within twice max_distance (it must reach a whole frame's motion),
        # point-to-plane almost alone (nearest-vertex point-to-point pairs hold a sliding surface
        # back: 0.1 of it made the stage recover a 0.04 rad turn as 0.02 in 3 steps, 0.01 as
        # 0.039), and kept only where it explains the frame 5% better than its start: a mesh that
        # is a little off the data everywhere (the keyframe's own error) then does not move as a
        # whole to sit on it (held-out jumping jacks at the window's end: 0.042 correspondence L2
        # with no margin, 0.031 with it); 15% held back a slowly turning body (an ellipsoid
        # turning 0.04 rad a frame ended at 0.60 of the still mesh's error instead of 0.16)
        self.rigid_distance = 2 * self.max_distance
        self.rigid_margin = 0.05
        self.rigid_sliding = 0.01
        self._previous = None  # ((R, t) before the last fit, its dt)
        self._before = None  # what revert() restores
        self._warped = v.copy()

    # -- construction ------------------------------------------------------------------------------
    @staticmethod
    def _normals(v: np.ndarray, f: np.ndarray | None, normals: np.ndarray | None):
        if normals is not None:
            n = np.asarray(normals, dtype=np.float64)
            if n.shape != v.shape or not np.isfinite(n).all():
                raise GeometryError(f"DeformationGraph: normals must be finite and shaped like the "
                                    f"vertices {v.shape}, got {n.shape}")
            return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12), True
        if f is not None and len(f):
            return vertex_normals(v, f), True
        import open3d as o3d

        cloud = o3d.geometry.PointCloud()
        cloud.points = o3d.utility.Vector3dVector(v)
        cloud.estimate_normals(o3d.geometry.KDTreeSearchParamKNN(16))
        return np.asarray(cloud.normals), False

    def _build(self, v: np.ndarray, f: np.ndarray | None, neighbours: int,
               edges_per_node: int) -> None:
        # nodes: one vertex per occupied voxel of edge `spacing` (the vertex nearest the voxel's
        # mean), deterministic
        keys = np.floor(v / self.spacing).astype(np.int64)
        _, cell, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
        cell = cell.ravel()
        means = np.zeros((len(counts), 3))
        np.add.at(means, cell, v)
        means /= counts[:, None]
        vertex_tree = cKDTree(v)
        nodes = np.unique(vertex_tree.query(means)[1])
        g = v[nodes]
        n = len(g)
        node_tree = cKDTree(g)
        own = node_tree.query(v)[1]  # each vertex's nearest node
        adjacent = np.zeros((n, n), dtype=bool)
        if f is not None and len(f):
            # nodes whose vertex regions share a mesh edge are linked (geodesic neighbours)
            for a, b in ((0, 1), (1, 2), (2, 0)):
                na, nb = own[f[:, a]], own[f[:, b]]
                adjacent[na, nb] = True
                adjacent[nb, na] = True
            np.fill_diagonal(adjacent, False)
            lonely = ~adjacent.any(1)
        else:
            lonely = np.ones(n, dtype=bool)
        if n > 1 and lonely.any():
            # nodes the surface does not link (or no faces): their nearest nodes
            k = min(edges_per_node + 1, n)
            _, near = node_tree.query(g[lonely], k=k)
            rows = np.repeat(np.flatnonzero(lonely), k - 1)
            cols = near[:, 1:].ravel()
            adjacent[rows, cols] = True
            adjacent[cols, rows] = True
        a_idx, b_idx = np.nonzero(adjacent)
        self.edges = np.stack([a_idx, b_idx], axis=1)  # both directions
        # a vertex's nodes: its own and the nearest linked ones among its 2k nearest
        k = min(neighbours, n)
        cand_k = min(2 * neighbours + 2, n)
        d, cand = node_tree.query(v, k=cand_k)
        d, cand = d.reshape(len(v), cand_k), cand.reshape(len(v), cand_k)
        allowed = (cand == own[:, None]) | adjacent[own[:, None], cand]
        d = np.where(allowed, d, np.inf)
        order = np.argsort(d, axis=1, kind="stable")[:, :k]
        idx = np.take_along_axis(cand, order, axis=1)
        dk = np.take_along_axis(d, order, axis=1)
        logits = -dk ** 2 / (2 * self.spacing ** 2)
        logits = np.where(np.isfinite(dk), logits - np.nanmax(np.where(np.isfinite(dk), logits,
                                                                      -np.inf), 1, keepdims=True),
                          -np.inf)
        w = np.exp(logits)
        w /= w.sum(1, keepdims=True)
        idx = np.where(w > 0, idx, own[:, None])
        self.nodes = g
        self.node_vertex = nodes
        self.neighbours = idx  # (V, k)
        self.weights = w  # (V, k)
        self.offsets = v[:, None, :] - g[idx]  # (V, k, 3)
        # sparse maps from the nodes' rotations (3N rows: node k's R_k^T) and translations to the
        # vertices: warp = rotate @ R^T-stack + translate @ (g + t); normals likewise with turn
        from scipy.sparse import csr_matrix

        rows = np.repeat(np.arange(len(v)), idx.shape[1] * 3)
        cols = (3 * idx[:, :, None] + np.arange(3)).ravel()
        self._rotate = csr_matrix(((w[:, :, None] * self.offsets).ravel(), (rows, cols)),
                                  shape=(len(v), 3 * n))
        self._turn = csr_matrix(((w[:, :, None] * self.normals0[:, None, :]).ravel(),
                                 (rows, cols)), shape=(len(v), 3 * n))
        self._translate = csr_matrix((w.ravel(), (np.repeat(np.arange(len(v)), idx.shape[1]),
                                                  idx.ravel())), shape=(len(v), n))
        # the normal equations' block pattern (fixed for the graph): node pairs that share a vertex
        # or an edge, and every node's own block
        a, b = self.edges[:, 0], self.edges[:, 1]
        vertex_keys = idx[:, :, None] * n + idx[:, None, :]  # (V, k, k)
        edge_keys = np.stack([np.stack([a * n + a, a * n + b], 1),
                              np.stack([b * n + a, b * n + b], 1)], 1)  # (E, 2, 2)
        own_keys = np.arange(n) * (n + 1)
        keys = np.unique(np.concatenate([vertex_keys.ravel(), edge_keys.ravel(), own_keys]))
        self._block_rows, self._block_cols = keys // n, keys % n
        self._block_indptr = np.concatenate([[0], np.cumsum(np.bincount(self._block_rows,
                                                                        minlength=n))])
        self._vertex_blocks = np.searchsorted(keys, vertex_keys)
        self._edge_blocks = np.searchsorted(keys, edge_keys)
        self._diagonal_blocks = np.searchsorted(keys, own_keys)
        # flat positions (block * 36 + row * 6 + col) of each vertex's (6k, 6k) block matrix in
        # (node, unknown) order, and of each edge's (2, 2, 6, 6) blocks
        kk = idx.shape[1]
        entry = np.arange(6)[:, None] * 6 + np.arange(6)  # (6, 6)
        blocks = self._vertex_blocks  # (V, k, k)
        flat = blocks[:, :, None, :, None] * 36 + entry[None, None, :, None, :]  # (V, k, 6, k, 6)
        self._vertex_flat = flat.reshape(len(v), 6 * kk, 6 * kk).astype(np.int64)
        self._edge_flat = (self._edge_blocks[..., None, None] * 36 + entry).astype(np.int64)
        # where each block entry sits in the dense (6N, 6N) matrix (small graphs are solved dense)
        r6 = 6 * self._block_rows[:, None, None] + np.arange(6)[:, None]
        c6 = 6 * self._block_cols[:, None, None] + np.arange(6)[None, :]
        self._dense_flat = (r6 * 6 * n + c6).reshape(-1)

    @property
    def num_nodes(self) -> int:
        return int(len(self.nodes))

    # -- the warp ----------------------------------------------------------------------------------
    def warp(self, R: np.ndarray | None = None, t: np.ndarray | None = None) -> np.ndarray:
        """The keyframe vertices moved by node motions (the current ones by default): (V, 3)."""
        R = self.R if R is None else R
        t = self.t if t is None else t
        # x_v = sum_k w_vk (R_k d_vk + g_k + t_k), as two sparse products over the nodes
        x = self._rotate @ R.transpose(0, 2, 1).reshape(-1, 3) + self._translate @ (self.nodes + t)
        return x

    def turned_normals(self, R: np.ndarray | None = None) -> np.ndarray:
        """The keyframe normals turned by the node rotations: (V, 3) unit."""
        R = self.R if R is None else R
        n = self._turn @ R.transpose(0, 2, 1).reshape(-1, 3)
        return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)

    @property
    def warped(self) -> np.ndarray:
        """The vertices as the last fit left them (V, 3)."""
        return self._warped

    # -- the fit -----------------------------------------------------------------------------------
    def _pairs(self, x: np.ndarray, normals: np.ndarray, points: np.ndarray,
               camera: np.ndarray | None, max_distance: float):
        """Per paired vertex: index (P,), pair count (P,), mean observed point (P, 3); over the
        nearest warped vertex of each observed point within max_distance that faces the camera."""
        if camera is not None and self.oriented:
            facing = ((camera - x) * normals).sum(1) > 0
            candidates = np.flatnonzero(facing)
            if len(candidates) < 3:
                candidates = np.arange(len(x))
        else:
            candidates = np.arange(len(x))
        dist, j = cKDTree(x[candidates]).query(points, distance_upper_bound=max_distance)
        keep = np.isfinite(dist)
        j = candidates[j[keep]]
        vid, inverse, counts = np.unique(j, return_inverse=True, return_counts=True)
        inverse = inverse.ravel()
        mean = np.stack([np.bincount(inverse, points[keep][:, c], minlength=len(vid))
                         for c in range(3)], 1) / counts[:, None]
        return vid, counts.astype(np.float64), mean, int(keep.sum())

    def _data_weights(self, normals: np.ndarray, counts: np.ndarray, total: int,
                      sliding: float | None = None) -> np.ndarray:
        """W_v (P, 3, 3) = count/total * (n n^T + sliding I)."""
        sliding = self.sliding if sliding is None else sliding
        W = normals[:, :, None] * normals[:, None, :] + sliding * np.eye(3)
        return W * (counts / max(total, 1))[:, None, None]

    def _data_energy(self, x, vid, mean, W) -> float:
        r = x[vid] - mean
        return float(np.einsum("pa,pab,pb->", r, W, r))

    def _reg_energy(self, R, t) -> float:
        if not len(self.edges) or self.rigidity == 0:
            return 0.0
        return self.rigidity * float((self._reg_residuals(R, t) ** 2).sum()) / len(self.edges)

    def _reg_residuals(self, R, t) -> np.ndarray:
        a, b = self.edges[:, 0], self.edges[:, 1]
        g = self.nodes
        return np.einsum("eab,eb->ea", R[a], g[b] - g[a]) + g[a] + t[a] - g[b] - t[b]

    def _prior_energy(self, x, predicted) -> float:
        if predicted is None or self.prior == 0:
            return 0.0
        return self.prior * float(((x - predicted) ** 2).sum()) / len(x)

    def fit(self, points: np.ndarray, *, camera: np.ndarray | None = None,
            predicted: np.ndarray | None = None, max_rotation: float | None = None,
            max_translation: float | None = None, dt: float | None = None) -> np.ndarray:
        """Fit the node motions to one frame's observed points (M, 3), from the last frame's fit;
        returns the warped vertices (V, 3) float64. camera: the camera's position (3,) in the same
        space (pairs only with vertices facing it). predicted: (V, 3) where a motion prior puts the
        vertices now (used with ``prior`` > 0, and as the rigid stage's start when it explains the
        frame better). max_rotation / max_translation: this frame's bounds of the rigid stage
        (default: the graph's). dt: the time since the last frame (any unit, the same every
        call): with ``momentum`` > 0 each node first continues its last frame's motion, scaled by
        the ratio of the intervals, and the fit starts there. With fewer than 3 points near the
        mesh it keeps the last fit (``last_pairs`` says how many points took part)."""
        p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        p = p[np.isfinite(p).all(1)]
        cam = None if camera is None else np.asarray(camera, dtype=np.float64).reshape(3)
        pred = None
        if predicted is not None:
            pred = np.asarray(predicted, dtype=np.float64)
            if pred.shape != self.vertices.shape or not np.isfinite(pred).all():
                raise GeometryError(f"DeformationGraph.fit: predicted must be finite "
                                    f"{self.vertices.shape}, got {pred.shape}")
        self.frames += 1
        self.last_pairs = 0
        if len(p) < 3:
            return self._warped
        t0 = time.perf_counter()
        before = (self.R.copy(), self.t.copy())
        self._before = (before, self._previous, self._warped)
        self._extrapolate(dt)
        if self.rigid_iterations:
            bounds = (self.max_rotation if max_rotation is None else float(max_rotation),
                      self.max_translation if max_translation is None else float(max_translation))
            self._rigid_stage(p, cam, pred, *bounds)
        t1 = time.perf_counter()
        self._nonrigid_stage(p, cam, pred)
        self.last_timings = {"rigid": t1 - t0, "nonrigid": time.perf_counter() - t1}
        if self.last_pairs >= 3:
            self._previous = (before, dt)
        self._warped = self.warp()
        return self._warped

    def revert(self) -> np.ndarray:
        """Undo the last ``fit`` (the state before it, as if that frame had not come); returns the
        warped vertices (V, 3) of that state."""
        if self._before is not None:
            (self.R, self.t), self._previous, self._warped = self._before
            self._before = None
        return self._warped

    def _extrapolate(self, dt: float | None) -> None:
        """Constant velocity per node: R <- (R R_prev^T)^f R, t <- t + f (t - t_prev), with f the
        momentum times the ratio of this interval to the last one (at most 2)."""
        if self.momentum <= 0 or dt is None or self._previous is None:
            return
        (R_prev, t_prev), dt_prev = self._previous
        if dt_prev is None or not dt_prev > 0 or not dt >= 0:
            return
        from scipy.spatial.transform import Rotation

        f = self.momentum * min(dt / dt_prev, 2.0)
        turn = Rotation.from_matrix(self.R @ R_prev.transpose(0, 2, 1)).as_rotvec()
        self.R = so3_exp(f * turn) @ self.R
        self.t = self.t + f * (self.t - t_prev)

    def explained(self, points: np.ndarray, x: np.ndarray | None = None,
                  camera: np.ndarray | None = None) -> float:
        """How well vertices x (the current fit by default) explain observed points (M, 3): the mean
        distance from each point to its nearest camera-facing vertex, clipped at 2 max_distance
        (lower is better)."""
        x = self.warp() if x is None else x
        clip = 2 * self.max_distance
        if camera is not None and self.oriented:
            facing = ((camera - x) * self.turned_normals()).sum(1) > 0
            if facing.sum() >= 3:
                x = x[facing]
        d, _ = cKDTree(x).query(points, distance_upper_bound=clip)
        return float(np.minimum(d, clip).mean())

    def _rigid_stage(self, p: np.ndarray, cam, pred, max_rotation: float,
                     max_translation: float) -> None:
        """One rigid motion of the whole graph, bounded and kept only where it explains the frame
        better than the state it started from (see the module docstring)."""
        R0, t0 = self.R.copy(), self.t.copy()
        x0 = self.warp()
        start = self.explained(p, x0, cam)
        best = (start, R0, t0)
        starts = [(R0, t0)]
        if pred is not None:
            # the motion prior's prediction, as a rigid motion of the whole graph (Kabsch)
            Rp, tp = best_rigid_motion(x0, pred)
            starts.append(self._moved(R0, t0, Rp, tp))
        for R, t in starts:
            R_total, t_total = np.eye(3), np.zeros(3)
            for _ in range(self.rigid_iterations):
                x = self.warp(R, t)
                normals = self.turned_normals(R)
                vid, counts, mean, pairs = self._pairs(x, normals, p, cam, self.rigid_distance)
                if pairs < 3:
                    break
                W = self._data_weights(normals[vid], counts, pairs, self.rigid_sliding)
                xv = x[vid]
                r = xv - mean
                J = np.concatenate([-_skew(xv), np.broadcast_to(np.eye(3), xv.shape + (3,))], 2)
                H = np.einsum("pai,pab,pbj->ij", J, W, J) + 1e-9 * np.eye(6)
                g = np.einsum("pai,pab,pb->i", J, W, r)
                try:
                    delta = -np.linalg.solve(H, g)
                except np.linalg.LinAlgError:
                    break
                dR = so3_exp(delta[:3])[0]
                R_total, t_total = dR @ R_total, dR @ t_total + delta[3:]
                R, t = self._moved(R, t, dR, delta[3:])
            angle = np.arccos(np.clip((np.trace(R_total) - 1) / 2, -1.0, 1.0))
            centre = x0.mean(0)
            shift = np.linalg.norm(R_total @ centre + t_total - centre)
            if angle > max_rotation or shift > max_translation:
                continue  # beyond what the body can do in one frame: not taken
            score = self.explained(p, self.warp(R, t), cam)
            if score < best[0] and score < (1.0 - self.rigid_margin) * start:
                best = (score, R, t)
        self.last_rigid_accepted = best[1] is not R0
        self.R, self.t = best[1], best[2]

    def _moved(self, R, t, dR, dt):
        """Node motions after a rigid motion (dR, dt) of the whole warped graph."""
        return dR @ R, (self.nodes + t) @ dR.T + dt - self.nodes

    def _nonrigid_stage(self, p: np.ndarray, cam, pred) -> None:
        n, k = self.num_nodes, self.neighbours.shape[1]
        nb, w = self.neighbours, self.weights
        mu = 1e-3
        for _ in range(self.iterations):
            x = self.warp()
            normals = self.turned_normals()
            vid, counts, mean, pairs = self._pairs(x, normals, p, cam, self.max_distance)
            self.last_pairs = pairs
            if pairs < 3:
                return
            W = self._data_weights(normals[vid], counts, pairs)
            terms = [(vid, W, x[vid] - mean)]
            if pred is not None and self.prior > 0:
                eye = np.broadcast_to(np.eye(3) * (self.prior / len(x)), (len(x), 3, 3))
                terms.append((np.arange(len(x)), eye, x - pred))
            index, values, g_index, g_values = [], [], [], []
            for v_ids, Wv, r in terms:
                a = np.einsum("vkab,vkb->vka", self.R[nb[v_ids]], self.offsets[v_ids])  # (P, k, 3)
                # J_v = [w_vk (-[a_vk]_x | I)]_k: (P, 3, k * 6)
                J = np.empty((len(v_ids), 3, k, 6))
                J[..., :3] = -_skew(a).transpose(0, 2, 1, 3)
                J[..., 3:] = np.eye(3)[None, :, None, :]
                J *= w[v_ids][:, None, :, None]
                J = J.reshape(len(v_ids), 3, 6 * k)
                WJ = Wv @ J
                index.append(self._vertex_flat[v_ids])
                values.append(J.transpose(0, 2, 1) @ WJ)  # (P, 6k, 6k) in (k, 6) x (k, 6) order
                g_index.append(nb[v_ids])
                g_values.append((WJ.transpose(0, 2, 1) @ r[:, :, None]).reshape(len(v_ids), k, 6))
            if len(self.edges) and self.rigidity > 0:
                self._regularizer_terms(index, values, g_index, g_values)
            H = self._assemble(index, values)  # (B, 6, 6) blocks of the normal matrix
            g = np.bincount(np.concatenate([(i[..., None] * 6 + np.arange(6)).ravel()
                                            for i in g_index]),
                            np.concatenate([v.ravel() for v in g_values]),
                            minlength=6 * n).reshape(n, 6)
            energy = self._total(x, vid, mean, W, pred, self.R, self.t)
            for _attempt in range(4):
                delta = self._solve(H, g, mu)
                if delta is None:
                    mu *= 10
                    continue
                R_new = so3_exp(delta[:, :3]) @ self.R
                t_new = self.t + delta[:, 3:]
                new = self._total(self.warp(R_new, t_new), vid, mean, W, pred, R_new, t_new)
                if new <= energy:
                    self.R, self.t = R_new, t_new
                    mu = max(mu / 10, 1e-6)
                    break
                mu *= 10
            else:
                return

    def _total(self, x, vid, mean, W, pred, R, t) -> float:
        return (self._data_energy(x, vid, mean, W) + self._reg_energy(R, t)
                + self._prior_energy(x, pred))

    def _regularizer_terms(self, index, values, g_index, g_values) -> None:
        a, b = self.edges[:, 0], self.edges[:, 1]
        r = self._reg_residuals(self.R, self.t)  # (E, 3)
        turned = np.einsum("eab,eb->ea", self.R[a], self.nodes[b] - self.nodes[a])
        lam = self.rigidity / len(self.edges)
        # the residual's Jacobian: node a (-[turned]_x | I), node b (0 | -I)
        e = len(a)
        J = np.zeros((e, 3, 2, 6))
        J[:, :, 0, :3] = -_skew(turned)
        J[:, :, 0, 3:] = np.eye(3)
        J[:, :, 1, 3:] = -np.eye(3)
        blocks = np.einsum("eaki,ealj->eklij", J, J) * lam  # (E, 2, 2, 6, 6)
        index.append(self._edge_flat)
        values.append(blocks)
        g_index.append(self.edges)
        g_values.append(np.einsum("eakj,ea->ekj", J, r) * lam)

    def _assemble(self, index, values) -> np.ndarray:
        """Sum per-term blocks into the normal matrix's blocks (B, 6, 6); each index row holds the
        flat positions (block * 36 + entry) of its values, in the same order."""
        nblocks = len(self._block_rows)
        return np.bincount(np.concatenate([i.ravel() for i in index]),
                           np.concatenate([v.ravel() for v in values]),
                           minlength=nblocks * 36).reshape(nblocks, 6, 6)

    def _solve(self, H: np.ndarray, g: np.ndarray, mu: float) -> np.ndarray | None:
        """(H + mu diag(H)) delta = -g, H block-sparse (B, 6, 6): by Cholesky where the graph is
        small (at most ``DENSE_NODES`` nodes: a dense factorisation of a few hundred unknowns
        costs about a millisecond), else by conjugate gradients with the inverse diagonal blocks
        as preconditioner (an inexact Gauss-Newton step is enough: the energy check decides);
        delta (N, 6), None if it failed."""
        from scipy.linalg import LinAlgError, cho_factor, cho_solve
        from scipy.sparse import bsr_matrix

        n = self.num_nodes
        A = H.copy()
        diag = self._diagonal_blocks
        idx = np.arange(6)
        A[diag[:, None], idx, idx] += mu * H[diag[:, None], idx, idx] + 1e-9
        if n <= DENSE_NODES:
            dense = np.zeros((6 * n, 6 * n))
            dense.reshape(-1)[self._dense_flat] = A.reshape(-1)
            try:
                delta = cho_solve(cho_factor(dense, check_finite=False), -g.ravel(),
                                  check_finite=False)
            except LinAlgError:
                return None
            return delta.reshape(n, 6) if np.isfinite(delta).all() else None
        try:
            inverse = np.linalg.inv(A[diag])  # (N, 6, 6)
        except np.linalg.LinAlgError:
            return None
        M = bsr_matrix((A, self._block_cols, self._block_indptr), shape=(6 * n, 6 * n))
        P = bsr_matrix((inverse, np.arange(n), np.arange(n + 1)), shape=(6 * n, 6 * n))
        b = -g.ravel()
        x = np.zeros_like(b)
        r = b.copy()
        z = P @ r
        d = z.copy()
        rz = r @ z
        stop = (self.cg_tolerance ** 2) * (b @ b)
        for _ in range(self.cg_iterations):
            q = M @ d
            dq = d @ q
            if not dq > 0:
                break
            alpha = rz / dq
            x += alpha * d
            r -= alpha * q
            if r @ r <= stop:
                break
            z = P @ r
            rz, rz_old = r @ z, rz
            d = z + (rz / rz_old) * d
        if not np.isfinite(x).all():
            return None
        return x.reshape(n, 6)

    def keyframe_positions(self, points: np.ndarray) -> np.ndarray:
        """Where observed points (M, 3) were at the keyframe: each one's nearest warped vertex's
        keyframe position plus its offset from that vertex, turned back by the rotation of the
        vertex's nodes (their weighted blend, as the warp blends them). (M, 3) float64."""
        p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        x = self._warped
        _, j = cKDTree(x).query(p)
        R = (self.weights[j][:, :, None, None] * self.R[self.neighbours[j]]).sum(1)
        return self.vertices[j] + np.einsum("mba,mb->ma", R, p - x[j])
