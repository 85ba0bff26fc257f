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
        + coverage/C sum_uncovered [(n_v . (x_v - q_v))^2 + sliding |x_v - q_v|^2]
        + rigidity / |edges| sum_(a,b) |R_a (g_b - g_a) + g_a + t_a - g_b - t_b|^2

where each observed point p is paired with its nearest warped vertex v (pairs farther apart than
``max_distance``, or whose vertex faces away from the camera, are left out), n_v is that vertex's
turned normal (point-to-plane, so a point seen between vertices does not drag its nearest vertex
along the surface); the second term is the other way round: each camera-facing vertex that no
observed point chose is drawn to its nearest observed point q_v within ``max_distance`` (C of
them), so a limb the points moved away from is pulled along at once; the third keeps neighbouring
nodes moving as one rigid piece ("as rigid as possible"). Parts the camera does not see follow the
seen parts through that term. The two data terms share each vertex's Jacobian, so they are summed
per vertex before the normal equations are assembled.

The solver: Gauss-Newton steps with Levenberg-Marquardt damping on 6 unknowns per node (a rotation
increment, R_k <- exp(theta_k) R_k, and a translation increment), with the analytic Jacobians;
pairs are summed per vertex first (exact for fixed normals), and the normal equations are
assembled block by block and solved exactly by a banded Cholesky factorisation, the nodes put in
reverse Cuthill-McKee order once per graph so the band is narrow. Before the per-node steps a rigid
stage solves the same data term for one motion of the whole graph: its step is bounded by ``max_rotation`` (rad) and
``max_translation`` per frame, and it is kept only when it explains the frame better than the state
it started from, so no single frame can turn the mesh away. It runs only on a frame that the
start explains worse than the last fit explained its own (by more than its margin): otherwise it
could not gain.

The data terms may hold a voxel subsample of the vertices (``fit_vertices``: their cost goes with
the vertices they hold); the fit's node motions move every vertex. Momentum continues each node's
last motion before the fit, except the part of the whole graph's turn that the data could not see:
a turn about an axis along which the seen surface slides on itself (a ball about its centre, a
round blob whose bumps travel) is a guess of the fit, and continued frame after frame it grows
into a spin (the degeneracy test of Zhang, Kaess and Singh, ICRA 2016, applied to the momentum).

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

#: The observability of a turn of the whole graph (``DeformationGraph._observability``) below which
#: momentum does not continue it, and above which it continues it whole (linear between).
OBSERVABLE_TURN = (0.2, 0.4)

def so3_exp(r: np.ndarray) -> np.ndarray:
    """Rotation matrices (N, 3, 3) from axis-angle vectors (N, 3) (Rodrigues; exact at 0)."""
    from scipy.spatial.transform import Rotation

    r = np.asarray(r, dtype=np.float64).reshape(-1, 3)
    return Rotation.from_rotvec(r).as_matrix().reshape(-1, 3, 3)


def _skew(r: np.ndarray) -> np.ndarray:
    """[r]_x (N, 3, 3): [r]_x y = r x y."""
    k = np.zeros(r.shape[:-1] + (3, 3))
    k[..., 0, 1], k[..., 0, 2] = -r[..., 2], r[..., 1]
    k[..., 1, 0], k[..., 1, 2] = r[..., 2], -r[..., 0]
    k[..., 2, 0], k[..., 2, 1] = -r[..., 1], r[..., 0]
    return k


def _voxel_representatives(v: np.ndarray, tree: cKDTree, spacing: float,
                           max_count: int) -> tuple[np.ndarray, float]:
    """Sorted indices of one vertex per occupied voxel of edge ``spacing`` (the vertex nearest
    the voxel's mean; deterministic) and the spacing used: a surface's voxel count goes as
    1 / spacing^2, so a spacing that gives more than ``max_count`` grows by the square root of the
    excess (and a little more) until it fits. tree: a cKDTree of ``v``."""
    while True:
        keys = np.floor(v / spacing).astype(np.int64)
        _, cell, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
        if len(counts) <= max_count:
            break
        spacing *= 1.05 * float(np.sqrt(len(counts) / max_count))
    cell = cell.ravel()
    means = np.zeros((len(counts), 3))
    np.add.at(means, cell, v)
    means /= counts[:, None]
    return np.unique(tree.query(means)[1]), float(spacing)


class DeformationGraph:
    """An embedded deformation graph on a keyframe mesh's vertices, fit frame by frame.

    vertices: (V, 3) the keyframe mesh's vertices (the tracker's normalised units).
    faces: (F, 3) its triangles: outward normals, and nodes linked along the surface; without
      faces, normals are estimated (unsigned) and nodes linked to their nearest nodes.
    spacing: node spacing (voxel edge of the subsample), also the weights' Gaussian width.
    max_nodes: at most this many nodes: where ``spacing`` gives more (a large or round object
      fills more of the normalised cube than a person does), the spacing grows until it fits, so
      a frame's cost is bounded whatever the shape (``spacing`` then holds the one used).
    rigidity: weight of the as-rigid-as-possible term against the data term.
    sliding: weight of the point-to-point distance beside the point-to-plane one.
    max_distance: observed points farther than this from every warped vertex are left out.
    iterations: Levenberg-Marquardt steps per frame, at most.
    pair_every: the observed points' nearest vertices are renewed before every this many steps
      (1: before each); the steps between take the turned normals of the moved graph.
    min_decrease: a frame's steps end after one that lowers the energy by less than this fraction
      of it (0: always ``iterations`` steps).
    neighbours: nodes per vertex (weights); edges_per_node: links per node without faces.
    rigid_iterations: steps of the rigid stage per frame (0: none).
    max_rotation / max_translation: bounds of the rigid stage's motion per frame (radians, units).
    prior: weight of a predicted position per vertex (``fit(..., predicted=)``) against the data.
    coverage: weight of the camera-facing vertices that no observed point chose, each drawn to its
      nearest observed point within ``max_distance`` (0: off).
    momentum: how much of each node's last motion it continues before the fit (0..1; ``fit(dt=)``),
      less the part of the whole graph's turn that the data did not pin (``_observability``).
    fit_vertices: the data terms pair the points with at most this many vertices, a voxel
      subsample (``fit_ids``; 0: all); ``warp`` and the fit's result move every vertex.

    Raises GeometryError on an empty or non-finite mesh or an unusable setting.
    """

    def __init__(self, vertices: np.ndarray, faces: np.ndarray | None = None, *,
                 spacing: float = 0.07, rigidity: float = 1.0, sliding: float = 0.1,
                 max_distance: float = 0.04, iterations: int = 4, pair_every: int = 1,
                 min_decrease: float = 0.01, neighbours: int = 3,
                 edges_per_node: int = 6, rigid_iterations: int = 2,
                 max_rotation: float = 0.3, max_translation: float = 0.1,
                 prior: float = 0.0, momentum: float = 0.0,
                 normals: np.ndarray | None = None, max_nodes: int = 200,
                 coverage: float = 0.3, fit_vertices: int = 0) -> None:
        v = np.asarray(vertices, dtype=np.float64)
        if v.ndim != 2 or v.shape[1] != 3 or len(v) == 0 or not np.isfinite(v).all():
            raise GeometryError(f"DeformationGraph: vertices must be finite (V>0, 3), got {v.shape}")
        checks = {"spacing": spacing > 0, "max_distance": max_distance > 0,
                  "rigidity": rigidity >= 0, "sliding": sliding >= 0, "prior": prior >= 0,
                  "coverage": coverage >= 0,
                  "iterations": iterations >= 1, "momentum": 0 <= momentum <= 1,
                  "pair_every": pair_every >= 1, "min_decrease": 0 <= min_decrease < 1,
                  "neighbours": neighbours >= 1, "max_nodes": max_nodes >= 1,
                  "edges_per_node": edges_per_node >= 1, "fit_vertices": fit_vertices >= 0,
                  "rigid_iterations": rigid_iterations >= 0,
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
        self.max_nodes = int(max_nodes)
        self.rigidity, self.sliding = float(rigidity), float(sliding)
        self.max_distance, self.iterations = float(max_distance), int(iterations)
        self.pair_every, self.min_decrease = int(pair_every), float(min_decrease)
        self.rigid_iterations = int(rigid_iterations)
        self.max_rotation, self.max_translation = float(max_rotation), float(max_translation)
        self.prior = float(prior)
        self.coverage = float(coverage)
        self.fit_vertices = int(fit_vertices)
        # the coverage pairs' point-to-point share: half of ``sliding``. A vertex no point chose
        # is often on a surface sliding along itself (a body turning about the viewing axis),
        # which point-to-point pairs hold back: the turning ellipsoid of the tests was followed at
        # 0.25 of the still mesh's error with the full share, 0.22 with half (0.16 without the
        # term); held-out windows 0.0534 / 0.0568 / 0.0638 with the full / half / no share
        self.coverage_sliding = 0.5 * self.sliding
        self.normals0, self.oriented = self._normals(v, f, normals)
        self._build(v, f, int(neighbours), int(edges_per_node))
        n = self.num_nodes
        self.R = np.tile(np.eye(3), (n, 1, 1))
        self.t = np.zeros((n, 3))
        self.frames = 0
        self.last_pairs = 0
        self.last_steps = 0  # Levenberg-Marquardt steps the last fit took
        self.last_rigid_accepted = True
        self.last_rigid_ran = True  # False where the last fit skipped it (_start_explains)
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
        self.rigid_gate = self.rigid_margin  # see _start_explains (0: the stage always runs)
        self.rigid_sliding = 0.01
        self._previous = None  # ((R, t) before the last fit, its dt)
        # the turns of the whole graph the last fit's data could not see (3, 3; see
        # _observability): momentum does not continue them
        self._unseen_turn = np.zeros((3, 3))
        self._pair_geometry = None  # (paired vertices, their normals, pair counts) of the last fit
        self._before = None  # what revert() restores
        self._fit_score = None  # the last fit's score of its last pairs (the rigid stage's gate)
        self._warped = v.copy()
        self._queries: list = []  # the last two queries (see _query)
        self._last_tree = None  # (tree, candidates, result) of the last _query that built one
        self._keyframe_tree = None  # over the keyframe vertices, for warp_points (made on use)

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
        # nodes: one vertex per occupied voxel of edge `spacing`, the spacing grown until there
        # are at most max_nodes
        vertex_tree = cKDTree(v)
        nodes, self.spacing = _voxel_representatives(v, vertex_tree, self.spacing, self.max_nodes)
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
        vertex_blocks = np.searchsorted(keys, vertex_keys)
        eb = np.searchsorted(keys, edge_keys)  # (E, 2, 2)
        # the vertices the fit pairs with: all of them, or a voxel subsample of at most
        # ``fit_vertices`` (each data term's cost goes with the vertices it holds; the warp of
        # the whole mesh is needed once per frame only), and their rows of the maps above (the
        # maps themselves where they are all)
        if self.fit_vertices and len(v) > self.fit_vertices:
            # from below (the voxels then grow to just fit)
            start = 0.5 * self.spacing * float(np.sqrt(n / self.fit_vertices))
            ids, _ = _voxel_representatives(v, vertex_tree, start, self.fit_vertices)
            self._fit_rotate, self._fit_turn = self._rotate[ids], self._turn[ids]
            self._fit_translate = self._translate[ids]
        else:
            ids = np.arange(len(v))
            self._fit_rotate, self._fit_turn = self._rotate, self._turn
            self._fit_translate = self._translate
        self.fit_ids = ids
        self._fit_neighbours, self._fit_weights = idx[ids], w[ids]
        self._fit_offsets = self.offsets[ids]
        # flat positions (block * 36 + row * 6 + col) of each fit vertex's (6k, 6k) block matrix
        kk = idx.shape[1]
        entry = np.arange(6)[:, None] * 6 + np.arange(6)  # (6, 6)
        fit_flat = (vertex_blocks[ids][:, :, None, :, None] * 36
                    + entry[None, None, :, None, :])  # (S, k, 6, k, 6)
        fit_flat = fit_flat.reshape(len(ids), -1)  # (S, 6k * 6k) in (k, 6) x (k, 6) order
        # the as-rigid-as-possible term: each edge's vector g_b - g_a; its blocks' constant part
        # (the translations' identities) summed once per graph, and the flat positions of the
        # parts that turn with R_a: (a, a) rotation-rotation, rotation-translation and
        # translation-rotation, (a, b) rotation-translation, (b, a) translation-rotation (45 of
        # each edge's 144 entries)
        self._edge_vectors = g[self.edges[:, 1]] - g[self.edges[:, 0]]
        nblocks = len(keys)
        tt = (3 + np.arange(3))[:, None] * 6 + 3 + np.arange(3)  # (3, 3) translation-translation
        ones = np.ones((len(self.edges), 3))
        diag_tt = tt[np.arange(3), np.arange(3)]  # identity entries
        const_index = np.concatenate([(eb[:, i, j, None] * 36 + diag_tt).ravel()
                                      for i in range(2) for j in range(2)])
        const_value = np.concatenate([(sign * ones).ravel() for sign in (1.0, -1.0, -1.0, 1.0)])
        edge_constant = np.bincount(const_index, const_value,
                                    minlength=nblocks * 36).reshape(nblocks, 6, 6)
        rr = np.arange(3)[:, None] * 6 + np.arange(3)  # (3, 3) rotation-rotation
        rt = np.arange(3)[:, None] * 6 + 3 + np.arange(3)  # rotation-translation
        tr = (3 + np.arange(3))[:, None] * 6 + np.arange(3)  # translation-rotation
        edge_varying = np.concatenate(
            [eb[:, 0, 0, None] * 36 + rr.ravel(), eb[:, 0, 0, None] * 36 + rt.ravel(),
             eb[:, 0, 0, None] * 36 + tr.ravel(), eb[:, 0, 1, None] * 36 + rt.ravel(),
             eb[:, 1, 0, None] * 36 + tr.ravel()], axis=1).astype(np.int64)  # (E, 45)
        self._band_layout(n)
        # each term's entries summed straight into the band: of a vertex's symmetric (6k, 6k)
        # matrix its upper triangle (171 of 324 entries for k = 3), of an edge's 45 varying
        # entries the (a, a) rotation-rotation upper triangle, the (a, a) rotation-translation
        # and the (a, b) rotation-translation ones (24: the rest are their transposes), each at
        # the band position of the entry or of its transpose, whichever is on or above the
        # diagonal (a vertex's slots that repeat a node have weight 0, so no entry is counted
        # twice)
        kk6 = 6 * kk
        self._vertex_upper = np.flatnonzero(np.triu(np.ones((kk6, kk6), bool)).ravel())
        self._vertex_band = self._symmetric_band[fit_flat[:, self._vertex_upper]]  # (S, 171)
        self._edge_upper = np.concatenate([np.flatnonzero(np.triu(np.ones((3, 3), bool))),
                                           9 + np.arange(9), 27 + np.arange(9)])
        self._edge_band = self._symmetric_band[edge_varying[:, self._edge_upper]]  # (E, 24)
        band_size = (self._band_upper + 1) * 6 * n
        self._band_constant = np.zeros(band_size)
        self._band_constant[self._band_target] = edge_constant.reshape(-1)[self._band_source]
        self._band_constant = self._band_constant.reshape(self._band_upper + 1, 6 * n)

    def _band_layout(self, n: int) -> None:
        """The normal matrix's band form for the Cholesky solve: nodes reordered by reverse
        Cuthill-McKee (a body's graph then has a narrow band: 27 of 120 nodes measured on a
        held-out person, docs/tracking.md), unknown (node, i) at 6 * rank(node) + i; for each block
        entry on or above the diagonal its flat source index in the (B, 6, 6) blocks and its flat
        position in LAPACK's upper band storage ``ab[u + r - c, c]`` (r <= c)."""
        from scipy.sparse import csr_matrix
        from scipy.sparse.csgraph import reverse_cuthill_mckee

        pattern = csr_matrix((np.ones(len(self._block_rows)), (self._block_rows, self._block_cols)),
                             shape=(n, n))
        order = reverse_cuthill_mckee(pattern, symmetric_mode=True)
        rank = np.empty(n, dtype=np.int64)
        rank[order] = np.arange(n)
        rows = (6 * rank[self._block_rows])[:, None, None] + np.arange(6)[:, None]  # (B, 6, 1)
        cols = (6 * rank[self._block_cols])[:, None, None] + np.arange(6)[None, :]  # (B, 1, 6)
        rows, cols = np.broadcast_arrays(rows, cols)
        upper = (rows <= cols).reshape(-1)
        r, c = rows.reshape(-1)[upper], cols.reshape(-1)[upper]
        self._band_upper = int((c - r).max())
        self._band_source = np.flatnonzero(upper)
        self._band_target = (self._band_upper + r - c) * (6 * n) + c
        # every block entry's band position, or its transpose's where it is below the diagonal
        lo, hi = np.minimum(rows, cols).reshape(-1), np.maximum(rows, cols).reshape(-1)
        self._symmetric_band = (self._band_upper + lo - hi) * (6 * n) + hi
        self._band_unknowns = (6 * rank[:, None] + np.arange(6)).reshape(-1)  # node-major -> band

    @property
    def num_nodes(self) -> int:
        return int(len(self.nodes))

    # -- the warp ----------------------------------------------------------------------------------
    def warp(self, R: np.ndarray | None = None, t: np.ndarray | None = None) -> np.ndarray:
        """The keyframe vertices moved by node motions (the current ones by default): (V, 3)."""
        R = self.R if R is None else R
        t = self.t if t is None else t
        return self._moved_rows(self._rotate, self._translate, R, t)

    def _moved_rows(self, rotate, translate, R: np.ndarray, t: np.ndarray) -> np.ndarray:
        """The vertices of the rows of the maps ``rotate`` / ``translate`` moved by (R, t):
        x_v = sum_k w_vk (R_k d_vk + g_k + t_k), as two sparse products over the nodes."""
        return rotate @ R.transpose(0, 2, 1).reshape(-1, 3) + translate @ (self.nodes + t)

    @staticmethod
    def _turned_rows(turn, R: np.ndarray) -> np.ndarray:
        """The normals of the rows of the map ``turn`` turned by R, unit."""
        n = turn @ R.transpose(0, 2, 1).reshape(-1, 3)
        return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)

    def _fit_warp(self, R: np.ndarray, t: np.ndarray) -> np.ndarray:
        """``warp`` of the fit's vertices only (S, 3)."""
        return self._moved_rows(self._fit_rotate, self._fit_translate, R, t)

    def _fit_normals(self, R: np.ndarray) -> np.ndarray:
        """``turned_normals`` of the fit's vertices only (S, 3)."""
        return self._turned_rows(self._fit_turn, R)

    def turned_normals(self, R: np.ndarray | None = None) -> np.ndarray:
        """The keyframe normals turned by the node rotations: (V, 3) unit."""
        return self._turned_rows(self._turn, self.R if R is None else R)

    @property
    def warped(self) -> np.ndarray:
        """The vertices as the last fit left them (V, 3)."""
        return self._warped

    # -- the fit -----------------------------------------------------------------------------------
    def _query(self, R: np.ndarray, t: np.ndarray, points: np.ndarray, camera: np.ndarray | None,
               x: np.ndarray | None = None):
        """The warped vertices x and turned normals of node motions (R, t), and for each observed
        point its nearest camera-facing vertex within ``2 max_distance``: distance (M,) (inf where
        none) and vertex index (M,). The last two queries are kept, so the rigid stage's start and
        score and the non-rigid stage's first pairs share a tree where the state is the same."""
        for cached in self._queries:
            if (cached[0] is R and cached[1] is t and cached[2] is points
                    and cached[3] is camera):
                self._last_tree = cached[5]
                return cached[4]
        x = self._fit_warp(R, t) if x is None else x
        normals = self._fit_normals(R)
        candidates = np.flatnonzero(self._facing(x, normals, camera))
        if len(candidates) < 3:
            candidates = np.arange(len(x))
        tree = cKDTree(x[candidates])
        result = self._nearest(tree, candidates, x, normals, points)
        self._last_tree = (tree, candidates, result)
        self._queries = [(R, t, points, camera, result, self._last_tree)] + self._queries[:1]
        return result

    def _nearest(self, tree, candidates, x, normals, points):
        """(x, normals, distance (M,), vertex index (M,), -1 where none) of points in ``tree``
        (built on ``x[candidates]``) within the query's reach."""
        reach = max(2 * self.max_distance, self.rigid_distance)
        dist, j = tree.query(points, distance_upper_bound=reach)
        found = np.isfinite(dist)
        j = np.where(found, candidates[np.minimum(j, len(candidates) - 1)], -1)
        return x, normals, dist, j

    def _query_moved(self, base, R, t, dR, dt, points, camera):
        """``_query`` for node motions (R, t) that move the whole graph rigidly, x -> dR x + dt,
        from the state of ``base`` (``_last_tree`` of that state): the points are moved back
        instead and looked up in the same tree (distances do not change under a rigid motion;
        the camera-facing vertices are the base state's), so no warp and no new tree."""
        tree, candidates, (x0, n0, _, _) = base
        x = x0 @ dR.T + dt
        normals = n0 @ dR.T
        result = self._nearest(tree, candidates, x, normals, (points - dt) @ dR)
        self._queries = [(R, t, points, camera, result, None)] + self._queries[:1]
        return result

    @staticmethod
    def _pairs(dist: np.ndarray, j: np.ndarray, points: np.ndarray, max_distance: float):
        """Per paired vertex: index (P,), pair count (P,), mean observed point (P, 3), and the
        number of points paired: each observed point with its nearest camera-facing vertex (from
        ``_query``) within max_distance."""
        keep = dist <= max_distance
        paired, kept = j[keep], points[keep]
        counts = np.bincount(paired)
        vid = np.flatnonzero(counts)
        mean = np.stack([np.bincount(paired, kept[:, c], minlength=len(counts))[vid]
                         for c in range(3)], 1) / counts[vid, None]
        counts = counts[vid]
        return vid, counts.astype(np.float64), mean, int(keep.sum())

    def _data_weights(self, normals: np.ndarray, counts: np.ndarray, total: int,
                      sliding: float | None = None) -> np.ndarray:
        """W_v (P, 3, 3) = count/total * (n n^T + sliding I)."""
        sliding = self.sliding if sliding is None else sliding
        W = normals[:, :, None] * normals[:, None, :] + sliding * np.eye(3)
        return W * (counts / max(total, 1))[:, None, None]

    @staticmethod
    def _data_energy(x, data) -> float:
        """sum over the data terms [(vertex ids, W, target)] of (x - target)^T W (x - target)."""
        total = 0.0
        for ids, W, target in data:
            r = x[ids] - target
            total += float(((W @ r[:, :, None])[..., 0] * r).sum())
        return total

    def _reg_energy(self, R, t) -> float:
        if not len(self.edges) or self.rigidity == 0:
            return 0.0
        return self.rigidity * float((self._reg_residuals(R, t) ** 2).sum()) / len(self.edges)

    def _reg_residuals(self, R, t, turned: np.ndarray | None = None) -> np.ndarray:
        """R_a (g_b - g_a) + g_a + t_a - g_b - t_b per edge (E, 3); turned: R_a (g_b - g_a)."""
        a, b = self.edges[:, 0], self.edges[:, 1]
        if turned is None:
            turned = (R[a] @ self._edge_vectors[..., None])[..., 0]
        return turned - self._edge_vectors + t[a] - t[b]

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
            pred = pred[self.fit_ids]  # the fit's vertices
        self.frames += 1
        self.last_pairs = self.last_steps = 0
        if len(p) < 3:
            return self._warped
        t0 = time.perf_counter()
        before = (self.R.copy(), self.t.copy())
        self._before = (before, self._previous, self._warped, self._unseen_turn, self._fit_score)
        self._extrapolate(dt)
        self.last_rigid_accepted = False
        self.last_rigid_ran = (bool(self.rigid_iterations)
                               and not self._start_explains(p, cam, pred))
        if self.last_rigid_ran:
            bounds = (self.max_rotation if max_rotation is None else float(max_rotation),
                      self.max_translation if max_translation is None else float(max_translation))
            self._rigid_stage(p, cam, pred, *bounds)
        t1 = time.perf_counter()
        self._nonrigid_stage(p, cam, pred)
        self.last_timings = {"rigid": t1 - t0, "nonrigid": time.perf_counter() - t1}
        if self.last_pairs >= 3:
            self._previous = (before, dt)
            self._unseen_turn = self._observability(*self._pair_geometry)
        self._warped = self.warp()
        return self._warped

    def revert(self) -> np.ndarray:
        """Undo the last ``fit`` (the state before it, as if that frame had not come); returns the
        warped vertices (V, 3) of that state."""
        if self._before is not None:
            ((self.R, self.t), self._previous, self._warped, self._unseen_turn,
             self._fit_score) = self._before
            self._before = None
        return self._warped

    def _extrapolate(self, dt: float | None) -> None:
        """Constant velocity per node: R <- (R R_prev^T)^f R, t <- t + f (t - t_prev), with f the
        momentum times the ratio of this interval to the last one (at most 2); the last frame's
        turn of the whole graph (Kabsch over the nodes) is continued only about the axes the
        data observe (``_observability``)."""
        if self.momentum <= 0 or dt is None or self._previous is None:
            return
        (R_prev, t_prev), dt_prev = self._previous
        if dt_prev is None or not dt_prev > 0 or not dt >= 0:
            return
        from scipy.spatial.transform import Rotation

        f = self.momentum * min(dt / dt_prev, 2.0)
        # the last motion less the part of its whole-graph turn that the data could not see
        # (``_unseen_turn``): that part is not continued
        before, now = self.nodes + t_prev, self.nodes + self.t
        turn, _ = best_rigid_motion(before, now)
        unseen = self._unseen_turn @ Rotation.from_matrix(turn).as_rotvec()
        drop = so3_exp(unseen)[0]
        centre = before.mean(0)
        shift = now - before - ((before - centre) @ drop.T - (before - centre))
        local = Rotation.from_matrix(drop.T @ self.R @ R_prev.transpose(0, 2, 1)).as_rotvec()
        self.R = so3_exp(f * local) @ self.R
        self.t = self.t + f * shift

    def explained(self, points: np.ndarray, camera: np.ndarray | None = None) -> float:
        """How well the current fit explains observed points (M, 3): the mean distance from each
        point to its nearest camera-facing vertex, clipped at 2 max_distance (lower is better)."""
        p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        cam = None if camera is None else np.asarray(camera, dtype=np.float64).reshape(3)
        return self._score(self._query(self.R, self.t, p, cam)[2])

    def _score(self, dist: np.ndarray) -> float:
        return float(np.minimum(dist, 2 * self.max_distance).mean())

    def _start_explains(self, p: np.ndarray, cam, pred) -> bool:
        """Whether the frame's start (the last fit, continued by momentum) explains its points
        within ``rigid_gate`` of how well the last fit explained its own frame: then the rigid
        stage is skipped, since it could not clear its own margin (``rigid_margin``, which the gate
        equals): its best is about the last fit's score. Its start query is the non-rigid stage's
        first, so a skip saves the stage's steps and queries (on held-out people about half the
        frames skip it: the fit 6 % cheaper, docs/tracking.md "Cost"). Never with a motion prior
        (its prediction is a start of the rigid stage) or without a last fit to compare with."""
        if self.rigid_gate <= 0 or pred is not None or self._fit_score is None:
            return False
        start = self._score(self._query(self.R, self.t, p, cam)[2])
        return start <= (1.0 + self.rigid_gate) * self._fit_score

    def _rigid_stage(self, p: np.ndarray, cam, pred, max_rotation: float,
                     max_translation: float) -> None:
        """One rigid motion of the whole graph, bounded and kept only where it explains the frame
        better than the state it started from (see the module docstring). Each step's pose is
        scored by the query that pairs the next step, so a step that explains the frame worse than
        the pose it left ends that start there (no further step, no extra query)."""
        R0, t0 = self.R, self.t
        x0, _, dist0, _ = self._query(R0, t0, p, cam)
        base = self._last_tree  # the start state's tree (None: not built for it)
        start = self._score(dist0)
        best = (start, R0, t0)
        starts = [(R0, t0, np.eye(3), np.zeros(3))]
        if pred is not None:
            # the motion prior's prediction, as a rigid motion of the whole graph (Kabsch)
            Rp, tp = best_rigid_motion(x0, pred)
            starts.append(self._moved(R0, t0, Rp, tp) + (Rp, tp))
        centre = x0.mean(0)
        for R, t, M_R, M_t in starts:  # M: the motion from the start state R0, t0
            R_total, t_total = np.eye(3), np.zeros(3)
            last = np.inf if R is not R0 else start
            for step in range(self.rigid_iterations + 1):
                if R is R0 or base is None:
                    x, normals, dist, j = self._query(R, t, p, cam)
                else:
                    x, normals, dist, j = self._query_moved(base, R, t, M_R, M_t, p, cam)
                if step or R is not R0:
                    score = self._score(dist)
                    angle = np.arccos(np.clip((np.trace(R_total) - 1) / 2, -1.0, 1.0))
                    shift = np.linalg.norm(R_total @ centre + t_total - centre)
                    if angle > max_rotation or shift > max_translation:
                        break  # beyond what the body can do in one frame: not taken
                    if score < best[0] and score < (1.0 - self.rigid_margin) * start:
                        best = (score, R, t)
                    if score >= last:
                        break
                    last = score
                if step == self.rigid_iterations:
                    break
                vid, counts, mean, pairs = self._pairs(dist, j, p, self.rigid_distance)
                if pairs < 3:
                    break
                W = self._data_weights(normals[vid], counts, pairs, self.rigid_sliding)
                xv = x[vid]
                # J_v = [-[x_v]_x | I] (3, 6); H = sum J^T W J, g = sum J^T W r
                J = np.empty((len(xv), 3, 6))
                J[:, :, :3] = -_skew(xv)
                J[:, :, 3:] = np.eye(3)
                WJ = W @ J
                H = J.reshape(-1, 6).T @ WJ.reshape(-1, 6) + 1e-9 * np.eye(6)
                g = WJ.reshape(-1, 6).T @ (xv - mean).reshape(-1)
                try:
                    delta = -np.linalg.solve(H, g)
                except np.linalg.LinAlgError:
                    break
                dR = so3_exp(delta[:3])[0]
                R_total, t_total = dR @ R_total, dR @ t_total + delta[3:]
                M_R, M_t = dR @ M_R, dR @ M_t + delta[3:]
                R, t = self._moved(R, t, dR, delta[3:])
        self.last_rigid_accepted = best[1] is not R0
        self.R, self.t = best[1], best[2]

    @staticmethod
    def _observability(x: np.ndarray, normals: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """How far the point-to-plane pairs (vertex x (P, 3), normal (P, 3), points paired (P,))
        pin each turn of the whole graph: (3, 3), sum over the turn's principal axes e of
        (1 - seen(lambda)) e e^T, so applied to a rotation vector it gives the part the data do
        not see. lambda: the eigenvalues of the rotational block of the pairs' normal matrix, with
        the translation solved out (its Schur complement), per unit angle at the pairs' RMS radius
        (0 where a turn slides the surface along itself, as a sphere turning about its centre),
        over the smallest eigenvalue of the translational block; seen() rises from 0 at
        ``OBSERVABLE_TURN[0]`` to 1 at ``[1]``. Measured on held-out windows' first frames
        (docs/tracking.md, "Turns the data cannot see"), smallest lambda: near-round breathing
        blobs 0.05-0.10 (middle 0.13-0.17), a person 0.34-1.5 (about the vertical), twisting boxes
        0.5-3.4."""
        w = counts / counts.sum()
        centre = w @ x
        arm = x - centre
        radius2 = max(float(w @ (arm * arm).sum(1)), 1e-12)
        a = np.cross(arm, normals) / np.sqrt(radius2)  # d(n . dx) / d(angle), per unit radius
        Htt = (normals.T * w) @ normals
        Hrr = (a.T * w) @ a
        Hrt = (a.T * w) @ normals
        S = Hrr - Hrt @ np.linalg.pinv(Htt, rcond=1e-6, hermitian=True) @ Hrt.T
        lam, axes = np.linalg.eigh(0.5 * (S + S.T))
        # against the least-pinned translation: what pins a body's sideways shift (its outline,
        # its curvature) pins its turn too unless it is round there
        lam = lam / max(float(np.linalg.eigvalsh(Htt)[0]), 1e-12)
        lo, hi = OBSERVABLE_TURN
        unseen = 1.0 - np.clip((lam - lo) / (hi - lo), 0.0, 1.0)
        return (axes * unseen) @ axes.T

    def _moved(self, R, t, dR, dt):
        """Node motions after a rigid motion (dR, dt) of the whole warped graph."""
        return dR @ R, (self.nodes + t) @ dR.T + dt - self.nodes

    def _nonrigid_stage(self, p: np.ndarray, cam, pred) -> None:
        n, k = self.num_nodes, self.neighbours.shape[1]
        nb, w = self._fit_neighbours, self._fit_weights
        mu = 1e-3
        x = None
        point_tree = cKDTree(p) if self.coverage > 0 else None
        covered = None
        for step in range(self.iterations):
            if step % self.pair_every == 0:
                x, normals, dist, j = self._query(self.R, self.t, p, cam, x)
                vid, counts, mean, pairs = self._pairs(dist, j, p, self.max_distance)
                self.last_pairs = pairs
                if pairs < 3:
                    return
                self._fit_score = self._score(dist)
                self._pair_geometry = (x[vid], normals[vid], counts)
                if point_tree is not None:
                    covered = self._coverage_pairs(point_tree, x, normals, p, cam, vid)
            else:  # the same pairs; the normals turned with the last step
                normals = self._fit_normals(self.R)
            data = [(vid, self._data_weights(normals[vid], counts, pairs), mean)]
            if covered is not None and len(covered[0]):
                cid, target = covered
                data.append((cid, self._data_weights(normals[cid], np.full(len(cid), self.coverage),
                                                     len(cid), self.coverage_sliding), target))
            # the data terms share each vertex's Jacobian: summed per vertex first
            v_ids, Wv, Wr = self._per_vertex(data, x)
            terms = [(v_ids, Wv, Wr)]
            if pred is not None and self.prior > 0:
                eye = np.broadcast_to(np.eye(3) * (self.prior / len(x)), (len(x), 3, 3))
                terms.append((np.arange(len(x)), eye, (self.prior / len(x)) * (x - pred)))
            index, values, g_index, g_values = [], [], [], []
            for v_ids, Wv, Wr in terms:
                # a_vk = R_k d_vk: (P, k, 3)
                a = (self.R[nb[v_ids]] @ self._fit_offsets[v_ids][..., None])[..., 0]
                # J_v = [w_vk (-[a_vk]_x | I)]_k: (P, 3, k * 6)
                J = np.empty((len(v_ids), 3, k, 6))
                J[..., :3] = -_skew(a).transpose(0, 2, 1, 3)
                J[..., 3:] = np.eye(3)[None, :, None, :]
                J *= w[v_ids][:, None, :, None]
                J = J.reshape(len(v_ids), 3, 6 * k)
                WJ = Wv @ J
                index.append(self._vertex_band[v_ids])
                # (P, 6k, 6k) in (k, 6) x (k, 6) order: its upper triangle
                values.append((J.transpose(0, 2, 1) @ WJ).reshape(len(v_ids), -1)
                              [:, self._vertex_upper])
                g_index.append(nb[v_ids])
                g_values.append((J.transpose(0, 2, 1) @ Wr[:, :, None]).reshape(len(v_ids), k, 6))
            reg = None
            if len(self.edges) and self.rigidity > 0:
                reg = self._regularizer_terms(index, values, g_index, g_values)
            H = self._assemble(index, values)  # the normal matrix's upper band
            if reg is not None:
                H += self._band_constant * (self.rigidity / len(self.edges))
            g = np.bincount(np.concatenate([(i[..., None] * 6 + np.arange(6)).ravel()
                                            for i in g_index]),
                            np.concatenate([v.ravel() for v in g_values]),
                            minlength=6 * n).reshape(n, 6)
            energy = (self._data_energy(x, data) + self._prior_energy(x, pred)
                      + (0.0 if reg is None else reg))
            for _attempt in range(4):
                delta = self._solve(H, g, mu)
                if delta is None:
                    mu *= 10
                    continue
                R_new = so3_exp(delta[:, :3]) @ self.R
                t_new = self.t + delta[:, 3:]
                x_new = self._fit_warp(R_new, t_new)
                new = self._total(x_new, data, pred, R_new, t_new)
                if new <= energy:
                    self.R, self.t, x = R_new, t_new, x_new
                    mu = max(mu / 10, 1e-6)
                    self.last_steps += 1
                    if energy - new < self.min_decrease * energy:
                        return  # converged for this frame
                    break
                mu *= 10
            else:
                return

    def _total(self, x, data, pred, R, t) -> float:
        return (self._data_energy(x, data) + self._reg_energy(R, t)
                + self._prior_energy(x, pred))

    def _facing(self, x, normals, camera) -> np.ndarray:
        """(V,) bool: the vertices whose turned normal faces the camera (all of them without a
        camera or with unsigned normals)."""
        if camera is not None and self.oriented:
            return ((camera - x) * normals).sum(1) > 0
        return np.ones(len(x), bool)

    def _coverage_pairs(self, tree, x, normals, points, camera, paired):
        """The mesh-to-points pairs: each camera-facing vertex that no observed point chose
        (``paired``: those that were) and its nearest observed point within ``max_distance``:
        vertex index (C,), point (C, 3)."""
        mask = self._facing(x, normals, camera)
        mask[paired] = False
        facing = np.flatnonzero(mask)
        dist, i = tree.query(x[facing], distance_upper_bound=self.max_distance)
        found = np.isfinite(dist)
        return facing[found], points[i[found]]

    @staticmethod
    def _per_vertex(data, x):
        """The data terms [(vertex ids (P,) unique, W (P, 3, 3), target (P, 3))] summed per
        vertex: ids (U,), sum of W (U, 3, 3), sum of W (x - target) (U, 3)."""
        if len(data) == 1:
            ids, W, target = data[0]
            return ids, W, (W @ (x[ids] - target)[:, :, None])[..., 0]
        Ws = np.zeros((len(x), 3, 3))
        Wr = np.zeros((len(x), 3))
        used = np.zeros(len(x), bool)
        for ids, W, target in data:
            Ws[ids] += W
            Wr[ids] += (W @ (x[ids] - target)[:, :, None])[..., 0]
            used[ids] = True
        ids = np.flatnonzero(used)
        return ids, Ws[ids], Wr[ids]

    def _regularizer_terms(self, index, values, g_index, g_values) -> float:
        """Append the as-rigid-as-possible term's blocks and gradient; returns its energy. The
        residual of edge (a, b) has the Jacobian [S | I] for node a, with S = -[u]_x and
        u = R_a (g_b - g_a), and [0 | -I] for node b, so its blocks are written out directly:
        (a, a) = [[|u|^2 I - u u^T, [u]_x], [-[u]_x, I]], (a, b) = [[0, -[u]_x], [0, -I]],
        (b, a) its transpose, (b, b) = [[0, 0], [0, I]]."""
        u = (self.R[self.edges[:, 0]] @ self._edge_vectors[..., None])[..., 0]  # (E, 3)
        r = self._reg_residuals(self.R, self.t, u)
        lam = self.rigidity / len(self.edges)
        ux = _skew(u).reshape(-1, 9)
        blocks = np.empty((len(u), 45))  # the parts of _edge_varying, in its order
        blocks[:, :9] = ((u * u).sum(1)[:, None, None] * np.eye(3)
                         - u[:, :, None] * u[:, None, :]).reshape(-1, 9)
        blocks[:, 9:18] = ux
        blocks[:, 18:27] = -ux
        blocks[:, 27:36] = -ux
        blocks[:, 36:45] = ux
        blocks *= lam
        grad = np.empty((len(u), 2, 6))
        grad[:, 0, :3] = np.cross(u, r)
        grad[:, 0, 3:] = r
        grad[:, 1, :3] = 0.0
        grad[:, 1, 3:] = -r
        index.append(self._edge_band)
        values.append(blocks[:, self._edge_upper])
        g_index.append(self.edges)
        g_values.append(grad * lam)
        return lam * float((r * r).sum())

    def _assemble(self, index, values) -> np.ndarray:
        """Sum per-term entries into the normal matrix's upper band (u + 1, 6N) (LAPACK's storage,
        ``ab[u + r - c, c]``); each index row holds the flat band positions of its values, in the
        same order."""
        shape = (self._band_upper + 1, 6 * self.num_nodes)
        return np.bincount(np.concatenate([i.ravel() for i in index]),
                           np.concatenate([v.ravel() for v in values]),
                           minlength=shape[0] * shape[1]).reshape(shape)

    def _solve(self, H: np.ndarray, g: np.ndarray, mu: float) -> np.ndarray | None:
        """(H + mu diag(H)) delta = -g, H the upper band (``_assemble``), solved exactly by a banded
        Cholesky factorisation in the reverse Cuthill-McKee order (``_band_layout``: ~0.6 ms for
        120 nodes on one core in single precision, against about 3 ms for conjugate gradients to
        1e-3 and 7 ms for a dense factorisation; looser conjugate gradients cost accuracy on the
        held-out windows; scipy's SuperLU took 2.5 ms);
        delta (N, 6), None if it failed (the matrix is not positive definite)."""
        from scipy.linalg import LinAlgError, cho_solve_banded, cholesky_banded

        n = self.num_nodes
        # single precision: LAPACK's spbtrf takes 0.57 ms where dpbtrf takes 0.79 (120 nodes, one
        # core), and the step, checked against the energy, is the same to ~1e-5
        band = H.astype(np.float32)
        band[-1] += (mu * H[-1] + 1e-9).astype(np.float32)  # the diagonal
        rhs = np.empty(6 * n, dtype=np.float32)
        rhs[self._band_unknowns] = -g.reshape(-1)
        try:
            factor = cholesky_banded(band, lower=False, check_finite=False)
            x = cho_solve_banded((factor, False), rhs, check_finite=False)
        except (LinAlgError, ValueError):
            return None
        if not np.isfinite(x).all():
            return None
        return x[self._band_unknowns].reshape(n, 6).astype(np.float64)

    def warp_points(self, points: np.ndarray) -> np.ndarray:
        """Points (M, 3) given at the keyframe moved as the graph moves its surface now: each by
        the nodes and weights of its nearest keyframe vertex, x = sum_k w_k (R_k (y - g_k) + g_k +
        t_k) (the inverse of ``keyframe_positions`` up to the blend). (M, 3) float64."""
        y = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        if self._keyframe_tree is None:
            self._keyframe_tree = cKDTree(self.vertices)
        _, j = self._keyframe_tree.query(y)
        nb, w = self.neighbours[j], self.weights[j]  # (M, k)
        local = y[:, None, :] - self.nodes[nb]  # (M, k, 3)
        moved = (self.R[nb] @ local[..., None])[..., 0] + self.nodes[nb] + self.t[nb]
        return (w[..., None] * moved).sum(1)

    def keyframe_positions(self, points: np.ndarray) -> np.ndarray:
        """Where observed points (M, 3) were at the keyframe: each one's nearest warped vertex's
        keyframe position plus its offset from that vertex, turned back by the rotation of the
        vertex's nodes (their weighted blend, as the warp blends them). (M, 3) float64."""
        p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        x = self._warped
        _, j = cKDTree(x).query(p)
        R = (self.weights[j][:, :, None, None] * self.R[self.neighbours[j]]).sum(1)
        return self.vertices[j] + np.einsum("mba,mb->ma", R, p - x[j])
