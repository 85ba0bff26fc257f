"""The 4D shape interface (``Shape4D``) and its implementation as a canonical solid under a deformation.

Frames and units: world coordinates are metres, z up, the object standing on (or above) ``z = 0`` near
the origin; time ``t`` is in seconds. A *material* (canonical) coordinate names a point of the object
by its position in the rest pose: the same material point is the same physical point at every time,
which is what gives exact correspondences.

``DeformedShape`` realises a ``Shape4D`` from a canonical implicit solid ``S(X) < 0`` and a smooth,
orientation-preserving deformation ``phi_t`` (plus optional rigid global motion ``G_t``)::

    x = G_t(phi_t(X)),    occupancy(x, t) = S(phi_t^-1(G_t^-1(x))) < 0,

with ``phi_t^-1`` solved by vectorised float64 Newton iterations from shape-specific starting guesses.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .errors import ShapeError
from .implicit import mesh_implicit, project_to_surface, sample_mesh

__all__ = ["Shape4D", "DeformedShape", "GlobalMotion", "as_points", "as_time"]


def as_points(x: Any, name: str = "x") -> np.ndarray:
    """``x`` as a (N, 3) float64 array; raises ShapeError naming ``name`` otherwise."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise ShapeError(f"{name} must have shape (N, 3), got {arr.shape}")
    return arr


def as_time(t: Any, name: str = "t") -> float:
    """``t`` as a finite float (seconds); raises ShapeError otherwise."""
    try:
        value = float(t)
    except (TypeError, ValueError) as exc:
        raise ShapeError(f"{name} must be a finite number of seconds, got {t!r}") from exc
    if not np.isfinite(value):
        raise ShapeError(f"{name} must be a finite number of seconds, got {value}")
    return value


class Shape4D(ABC):
    """A solid that moves and deforms over time, with exact ground truth at any time ``t`` (seconds).

    All coordinates are world metres (z up, object on ``z = 0`` near the origin) unless called
    *material*: material coordinates are the object's canonical (rest-pose) coordinates, metres.
    """

    @property
    @abstractmethod
    def height(self) -> float:
        """Characteristic size, metres (a figure's standing height): the scale for tolerances."""

    @property
    @abstractmethod
    def duration(self) -> float:
        """Natural time range ``[0, duration]`` in seconds (shapes are defined at any finite t)."""

    @abstractmethod
    def occupancy(self, x: np.ndarray, t: float) -> np.ndarray:
        """Exact inside test: ``x`` (N, 3) world metres -> (N,) bool, True inside the solid at ``t``."""

    @abstractmethod
    def surface_residual(self, x: np.ndarray, t: float) -> np.ndarray:
        """Signed implicit value at the material preimage of ``x`` (N, 3): (N,) float64 metres.

        Negative inside, ~0 on the surface, positive outside; ``+inf`` where ``x`` has no preimage near
        the body (far outside). Its magnitude is at most the canonical distance to the surface.
        """

    @abstractmethod
    def sample_surface(self, n: int, t: float, rng: np.random.Generator
                       ) -> tuple[np.ndarray, np.ndarray]:
        """``n`` points on the surface at ``t``, roughly uniform by area.

        Returns:
            (points (n, 3) float64 world metres, material (n, 3) float64 canonical metres).
        """

    @abstractmethod
    def trajectory(self, material: np.ndarray, times: np.ndarray) -> np.ndarray:
        """World positions of material points: ``material`` (N, 3), ``times`` (T,) -> (T, N, 3) float64."""

    @abstractmethod
    def mesh(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Triangle mesh of the surface at ``t``: (vertices (V, 3) float64 world metres, faces (F, 3) int64).

        The same faces at every ``t`` and vertex ``i`` is the same material point at every ``t``;
        vertices lie on the exact surface, triangles are oriented outward.
        """

    @abstractmethod
    def describe(self) -> dict:
        """JSON-serialisable provenance: ``family``, ``motion``, ``seed`` and ``parameters``."""

    def velocity(self, material: np.ndarray, t: float, dt: float = 1e-4) -> np.ndarray:
        """Velocity of material points at ``t``, (N, 3) float64 m/s (central difference, error O(dt^2))."""
        t = as_time(t)
        traj = self.trajectory(material, np.array([t - dt, t + dt]))
        return (traj[1] - traj[0]) / (2.0 * dt)

    def bounds(self, t: float, margin: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned box (lo (3,), hi (3,)) around the surface at ``t``, grown by ``margin`` metres."""
        vertices, _ = self.mesh(t)
        return vertices.min(axis=0) - margin, vertices.max(axis=0) + margin


@dataclass(frozen=True)
class GlobalMotion:
    """Rigid motion on top of the deformation: a yaw about the world z axis, then a translation drift.

    ``G_t(y) = R_z(yaw0 + yaw_rate * t) y + drift * t``.

    Attributes:
        yaw0: initial yaw, radians.
        yaw_rate: rad/s.
        drift: (3,) translation velocity, m/s (keep the z component 0 to stay on the floor).
    """

    yaw0: float = 0.0
    yaw_rate: float = 0.0
    drift: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def __post_init__(self) -> None:
        for key in ("yaw0", "yaw_rate"):
            if not np.isfinite(getattr(self, key)):
                raise ShapeError(f"GlobalMotion.{key} must be finite")
        drift = tuple(float(v) for v in self.drift)
        if len(drift) != 3 or not np.all(np.isfinite(drift)):
            raise ShapeError("GlobalMotion.drift must be three finite numbers (m/s)")
        object.__setattr__(self, "drift", drift)

    def at(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """(R (3, 3), translation (3,)) at time ``t``."""
        a = self.yaw0 + self.yaw_rate * t
        c, s = np.cos(a), np.sin(a)
        return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]), np.asarray(self.drift) * t

    def is_identity(self) -> bool:
        return self.yaw0 == 0.0 and self.yaw_rate == 0.0 and not any(self.drift)


def _solve3(jac: np.ndarray, rhs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Solve the batched 3x3 systems ``jac (M,3,3) @ d = rhs (M,3)`` by the adjugate; returns (d, det)."""
    a = jac
    c0 = np.cross(a[:, 1], a[:, 2])
    c1 = np.cross(a[:, 2], a[:, 0])
    c2 = np.cross(a[:, 0], a[:, 1])
    det = np.einsum("ij,ij->i", a[:, 0], c0)
    safe = np.where(np.abs(det) > 1e-300, det, 1.0)
    # inverse = [c0 c1 c2] / det  (columns are the cofactor rows' cross products)
    d = (c0 * rhs[:, :1] + c1 * rhs[:, 1:2] + c2 * rhs[:, 2:3]) / safe[:, None]
    return d, det


class DeformedShape(Shape4D):
    """A canonical implicit solid carried by a deformation ``phi_t`` and an optional ``GlobalMotion``.

    Subclasses provide the canonical field, its box, the deformation with its Jacobian and starting
    guesses for the inverse; this class provides exact occupancy, residuals, sampling, meshes and
    trajectories on top. Canonical meshes are built once (narrow-band marching cubes, vertices projected
    onto ``S = 0``) and cached.

    Args:
        duration: natural time range, seconds (> 0).
        global_motion: rigid motion on top, or None.
        mesh_voxel: grid spacing of the canonical mesh, metres (> 0).
        seed: the seed the shape was drawn from (provenance only), or None.
    """

    family: str = "deformed"
    newton_tol: float = 1e-10
    newton_max_iterations: int = 40

    def __init__(self, *, duration: float, global_motion: GlobalMotion | None, mesh_voxel: float,
                 seed: int | None = None) -> None:
        if not (np.isfinite(duration) and duration > 0):
            raise ShapeError(f"duration must be > 0 seconds, got {duration}")
        if not (np.isfinite(mesh_voxel) and mesh_voxel > 0):
            raise ShapeError(f"mesh_voxel must be > 0 metres, got {mesh_voxel}")
        self._duration = float(duration)
        self.global_motion = global_motion if global_motion is not None else GlobalMotion()
        self.mesh_voxel = float(mesh_voxel)
        self.seed = seed
        self._canonical_mesh: tuple[np.ndarray, np.ndarray] | None = None
        self._mesh_state: Any = None

    # ---- subclass hooks -------------------------------------------------------------------------
    @abstractmethod
    def canonical_field(self, material: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Canonical implicit ``S`` and its gradient: (M, 3) -> ((M,), (M, 3)); 1-Lipschitz."""

    @abstractmethod
    def canonical_box(self) -> tuple[np.ndarray, np.ndarray]:
        """(lo (3,), hi (3,)): a box that strictly contains the canonical solid, metres."""

    @abstractmethod
    def deform(self, material: np.ndarray, t: float, jacobian: bool = False
               ) -> tuple[np.ndarray, np.ndarray | None]:
        """``phi_t`` without the global motion: (M, 3) -> (y (M, 3), J (M, 3, 3) or None)."""

    @abstractmethod
    def motion_name(self) -> str:
        """Name of the motion family (for provenance)."""

    @abstractmethod
    def parameters(self) -> dict:
        """JSON-serialisable shape and motion parameters (for provenance)."""

    def inverse_candidates(self, y: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Starting guesses for ``phi_t^-1(y)``: (K, M, 3) and which to try (K, M) bool.

        Candidate 0 is tried wherever it is marked; candidate k > 0 where marked, or where no earlier
        candidate converged. The default is the identity map.
        """
        return y[None].copy(), np.ones((1, len(y)), dtype=bool)

    def material_state(self, material: np.ndarray) -> Any:
        """Precomputed per-material data that makes repeated ``deform_state`` calls fast."""
        return material

    def deform_state(self, state: Any, t: float) -> np.ndarray:
        """``phi_t`` of the material points behind ``state`` (see :meth:`material_state`), (M, 3)."""
        return self.deform(state, t)[0]

    # ---- Shape4D --------------------------------------------------------------------------------
    @property
    def duration(self) -> float:
        return self._duration

    def describe(self) -> dict:
        gm = asdict(self.global_motion)
        gm["drift"] = list(gm["drift"])
        return {
            "family": self.family,
            "motion": self.motion_name(),
            "seed": self.seed,
            "duration": self.duration,
            "mesh_voxel": self.mesh_voxel,
            "parameters": {**self.parameters(), "global_motion": gm},
        }

    def canonical_sdf(self, material: np.ndarray) -> np.ndarray:
        """Canonical implicit value (M,) at material points (M, 3), metres (negative inside)."""
        return self.canonical_value(as_points(material, "material"))

    def canonical_value(self, material: np.ndarray) -> np.ndarray:
        """``canonical_field`` without the gradient; override when that is cheaper."""
        return self.canonical_field(material)[0]

    def forward(self, material: np.ndarray, t: float) -> np.ndarray:
        """World positions (M, 3) of material points (M, 3) at ``t``."""
        t = as_time(t)
        y = self.deform(as_points(material, "material"), t)[0]
        return self._apply_global(y, t)

    def jacobian(self, material: np.ndarray, t: float) -> np.ndarray:
        """World Jacobian ``d x / d X`` (M, 3, 3) of the full map (deformation and global motion)."""
        t = as_time(t)
        _, jac = self.deform(as_points(material, "material"), t, jacobian=True)
        rot, _ = self.global_motion.at(t)
        return np.einsum("ij,mjk->mik", rot, jac)

    def inverse(self, x: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Material preimages of world points (N, 3) at ``t``: (material (N, 3), found (N,) bool).

        Where several preimages exist (self-contact) the one deepest inside is returned; where none
        was found near the body the row is NaN and ``found`` is False.
        """
        material, found, _ = self._preimages(as_points(x), as_time(t))
        return material, found

    def occupancy(self, x: np.ndarray, t: float) -> np.ndarray:
        _, _, s = self._preimages(as_points(x), as_time(t))
        return s < 0.0

    def surface_residual(self, x: np.ndarray, t: float) -> np.ndarray:
        return self._preimages(as_points(x), as_time(t))[2]

    def world_velocity(self, x: np.ndarray, t: float, dt: float = 1e-4) -> np.ndarray:
        """Velocity field at world points (N, 3), m/s: the velocity of the material point there (NaN
        where ``x`` has no preimage)."""
        material, found = self.inverse(x, t)
        out = np.full_like(material, np.nan)
        if found.any():
            out[found] = self.velocity(material[found], t, dt)
        return out

    def trajectory(self, material: np.ndarray, times: np.ndarray) -> np.ndarray:
        state = self.material_state(as_points(material, "material"))
        times = np.atleast_1d(np.asarray(times, dtype=np.float64))
        if times.ndim != 1 or not np.all(np.isfinite(times)):
            raise ShapeError(f"times must be a finite (T,) array of seconds, got shape {times.shape}")
        return np.stack([self._apply_global(self.deform_state(state, float(t)), float(t)) for t in times])

    def canonical_mesh(self) -> tuple[np.ndarray, np.ndarray]:
        """The canonical surface mesh (vertices (V, 3) on ``S = 0``, faces (F, 3) int64), built once."""
        if self._canonical_mesh is None:
            lo, hi = self.canonical_box()
            verts, faces = mesh_implicit(self.canonical_sdf, lo, hi, self.mesh_voxel)
            verts, _ = project_to_surface(self.canonical_field, verts)
            verts.flags.writeable = False
            faces.flags.writeable = False
            self._canonical_mesh = (verts, faces)
        return self._canonical_mesh

    def mesh(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        t = as_time(t)
        verts, faces = self.canonical_mesh()
        if self._mesh_state is None:
            self._mesh_state = self.material_state(verts)
        return self._apply_global(self.deform_state(self._mesh_state, t), t), faces

    def sample_canonical_surface(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` material points on the canonical surface, uniform by canonical area, (n, 3)."""
        if n < 0:
            raise ShapeError(f"n must be >= 0, got {n}")
        verts, faces = self.canonical_mesh()
        pts, _, _ = sample_mesh(verts, faces, n, rng)
        return project_to_surface(self.canonical_field, pts)[0]

    def surface_normals(self, material: np.ndarray, t: float) -> np.ndarray:
        """Outward world unit normals (M, 3) at the images of material surface points at ``t``."""
        material = as_points(material, "material")
        _, grad = self.canonical_field(material)
        jac = self.jacobian(material, t)
        n = np.linalg.solve(np.transpose(jac, (0, 2, 1)), grad[:, :, None])[:, :, 0]
        return n / np.linalg.norm(n, axis=1, keepdims=True)

    def sample_surface(self, n: int, t: float, rng: np.random.Generator
                       ) -> tuple[np.ndarray, np.ndarray]:
        """Uniform by world area: points drawn by area on ``mesh(t)``, their material coordinates
        interpolated on the canonical mesh, projected onto ``S = 0`` and mapped forward (exact)."""
        t = as_time(t)
        if n < 0:
            raise ShapeError(f"n must be >= 0, got {n}")
        verts_t, faces = self.mesh(t)
        verts_c, _ = self.canonical_mesh()
        _, face, bary = sample_mesh(verts_t, faces, n, rng)
        material = np.einsum("nk,nkj->nj", bary, verts_c[faces[face]])
        material = project_to_surface(self.canonical_field, material)[0]
        return self.forward(material, t), material

    # ---- internals ------------------------------------------------------------------------------
    def _apply_global(self, y: np.ndarray, t: float) -> np.ndarray:
        if self.global_motion.is_identity():
            return y
        rot, trans = self.global_motion.at(t)
        return y @ rot.T + trans

    def _remove_global(self, x: np.ndarray, t: float) -> np.ndarray:
        if self.global_motion.is_identity():
            return x
        rot, trans = self.global_motion.at(t)
        return (x - trans) @ rot

    def _newton(self, y: np.ndarray, start: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Solve ``deform(X, t) = y`` from ``start``; returns (X (M, 3), converged (M,) bool)."""
        lo, hi = self.canonical_box()
        centre = 0.5 * (lo + hi)
        reach = 2.0 * float(np.linalg.norm(hi - lo))
        max_step = 0.25 * float(np.linalg.norm(hi - lo))
        tol = self.newton_tol * max(1.0, float(np.linalg.norm(hi - lo)))
        X = np.array(start, dtype=np.float64, copy=True)
        ok = np.zeros(len(y), dtype=bool)
        active = np.arange(len(y))
        for _ in range(self.newton_max_iterations + 1):
            if active.size == 0:
                break
            ya, jac = self.deform(X[active], t, jacobian=True)
            r = ya - y[active]
            err = np.linalg.norm(r, axis=1)
            done = err <= tol
            ok[active[done]] = True
            lost = ~np.isfinite(err) | (np.linalg.norm(X[active] - centre, axis=1) > reach)
            keep = ~done & ~lost
            active, r, jac = active[keep], r[keep], jac[keep]
            if active.size == 0:
                break
            delta, det = _solve3(jac, r)
            singular = ~(np.abs(det) > 1e-12)
            step = np.linalg.norm(delta, axis=1)
            scale = np.minimum(1.0, max_step / np.maximum(step, 1e-300))
            delta = np.where(singular[:, None], 0.0, delta * scale[:, None])
            X[active] -= delta
            active = active[~singular]
        return X, ok

    def _preimages(self, x: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(material (N, 3) NaN where none, found (N,), S at the preimage (N,) with +inf where none)."""
        y = self._remove_global(x, t)
        starts, eligible = self.inverse_candidates(y, t)
        n = len(y)
        best = np.full((n, 3), np.nan)
        best_s = np.full(n, np.inf)
        found = np.zeros(n, dtype=bool)
        for k in range(len(starts)):
            todo = eligible[k] | ((k > 0) & eligible[0] & ~found)
            todo &= ~(best_s < 0.0)
            idx = np.nonzero(todo)[0]
            if idx.size == 0:
                continue
            X, ok = self._newton(y[idx], starts[k, idx], t)
            idx, X = idx[ok], X[ok]
            if idx.size == 0:
                continue
            s = self.canonical_sdf(X)
            better = s < best_s[idx]
            best[idx[better]] = X[better]
            best_s[idx[better]] = s[better]
            found[idx] = True
        return best, found, best_s
