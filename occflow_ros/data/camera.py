"""A simulated depth camera: organized point clouds of a ``Shape4D`` with RealSense-like flaws, and streams.

Frames: the camera *optical* frame follows ROS (x right, y down, z forward), metres; the camera pose
is a camera-to-world 4x4 (world: z up). Pixel ``(u, v)`` (column, row; integer pixel centres) sees
along ``((u - cx) / fx, (v - cy) / fy, 1)``, and the organized cloud holds ``z * that`` per pixel, so a
point's optical ``z`` is its depth.

Rendering casts the shape's mesh at time t (``Shape4D.mesh``) with open3d's ``RaycastingScene`` (only
the rays inside the mesh's projected bounding box), intersects the rays with the background planes in
closed form (floor ``z = 0``, a back wall; planes are precomputed per camera), keeps the nearest hit
and then applies the sensor model: range limits, depth noise with ``sigma = k z^2``, depth
quantisation, missing pixels at depth edges, random pixel dropout and hole blobs. Optionally each
object hit is moved onto the *exact* surface by Newton iterations on (material point, ray depth).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Iterator

import numpy as np

from .errors import CameraError
from .shape import DeformedShape, Shape4D, _solve3, as_time

__all__ = [
    "CameraIntrinsics", "realsense_d435", "look_at", "view_of", "SensorConfig", "DepthCamera",
    "Render", "Frame", "stream", "LABEL_NONE", "LABEL_OBJECT", "LABEL_FLOOR", "LABEL_WALL",
]

LABEL_NONE, LABEL_OBJECT, LABEL_FLOOR, LABEL_WALL = 0, 1, 2, 3


@dataclass(frozen=True)
class CameraIntrinsics:
    """Pinhole intrinsics: image size (pixels) and focal lengths / principal point (pixels)."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float

    def __post_init__(self) -> None:
        for key in ("width", "height"):
            value = getattr(self, key)
            if not (isinstance(value, (int, np.integer)) and 1 <= value <= 8192):
                raise CameraError(f"CameraIntrinsics.{key} must be an int in [1, 8192], got {value!r}")
        for key in ("fx", "fy"):
            if not (np.isfinite(getattr(self, key)) and getattr(self, key) > 0):
                raise CameraError(f"CameraIntrinsics.{key} must be > 0 pixels, got {getattr(self, key)}")
        for key in ("cx", "cy"):
            if not np.isfinite(getattr(self, key)):
                raise CameraError(f"CameraIntrinsics.{key} must be finite, got {getattr(self, key)}")

    def directions(self) -> np.ndarray:
        """Per-pixel ray directions with unit optical z: (H, W, 3) float64."""
        u = (np.arange(self.width) - self.cx) / self.fx
        v = (np.arange(self.height) - self.cy) / self.fy
        out = np.ones((self.height, self.width, 3))
        out[:, :, 0] = u[None, :]
        out[:, :, 1] = v[:, None]
        return out

    def project(self, points: np.ndarray) -> np.ndarray:
        """Optical-frame points (N, 3) -> pixel coordinates (N, 2) float64 (u, v); z must be > 0."""
        z = points[:, 2]
        return np.stack([self.fx * points[:, 0] / z + self.cx, self.fy * points[:, 1] / z + self.cy], axis=1)

    def matrix(self) -> np.ndarray:
        """The 3x3 camera matrix K."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])


def realsense_d435(width: int = 640, height: int = 480) -> CameraIntrinsics:
    """Intrinsics like an Intel RealSense D435 depth stream (about 80 x 62 degrees at 640 x 480).

    The focal length scales with the width (385 px at 640 px wide); the principal point is the centre.
    """
    if not (isinstance(width, (int, np.integer)) and isinstance(height, (int, np.integer))):
        raise CameraError(f"realsense_d435 needs integer width and height, got {width!r}, {height!r}")
    f = 385.0 * width / 640.0
    return CameraIntrinsics(width=int(width), height=int(height), fx=f, fy=f,
                            cx=(width - 1) / 2.0, cy=(height - 1) / 2.0)


def look_at(eye, target, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """Camera-to-world pose (4, 4) of an optical frame at ``eye`` looking at ``target`` (world metres).

    The optical z axis points at the target, x to the image right and y down, with ``up`` (world)
    appearing up in the image. Raises CameraError when eye == target or the view is parallel to up.
    """
    eye = np.asarray(eye, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    up = np.asarray(up, dtype=np.float64)
    if eye.shape != (3,) or target.shape != (3,) or up.shape != (3,):
        raise CameraError("look_at needs three 3-vectors (eye, target, up)")
    z = target - eye
    if np.linalg.norm(z) < 1e-9:
        raise CameraError("look_at: eye and target coincide")
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    if np.linalg.norm(x) < 1e-9:
        raise CameraError("look_at: the viewing direction is parallel to up")
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = x, y, z, eye
    return pose


def view_of(shape: Shape4D, distance: float = 2.5, azimuth: float = 0.0, eye_height: float | None = None,
            t: float = 0.0) -> np.ndarray:
    """A camera pose looking at a shape's middle from ``distance`` metres (horizontal), at ``azimuth``
    radians about z from the world +x axis (a human faces +x), eyes at ``eye_height`` metres
    (default: 0.6 of the shape's height)."""
    lo, hi = shape.bounds(t)
    centre = 0.5 * (lo + hi)
    h = 0.6 * shape.height if eye_height is None else float(eye_height)
    eye = np.array([centre[0] + distance * np.cos(azimuth), centre[1] + distance * np.sin(azimuth), h])
    return look_at(eye, np.array([centre[0], centre[1], 0.5 * (lo[2] + hi[2])]))


def _check(name: str, value: float, lo: float, hi: float) -> None:
    if not (np.isfinite(value) and lo <= value <= hi):
        raise CameraError(f"SensorConfig.{name} must be in [{lo}, {hi}], got {value}")


@dataclass(frozen=True)
class SensorConfig:
    """The sensor model. Every flaw has a sane default and an off switch (0, False or None).

    Attributes:
        noise_k: depth noise ``sigma = noise_k * z^2`` (1/m), [0, 0.05]; 0 turns noise off. The default
            (1.5 mm at 1 m, 6 mm at 2 m) is RealSense-like.
        depth_quantum: depths rounded to multiples of this (metres), [0, 0.01]; 0 = off.
        min_range, max_range: depths outside are invalid (metres), 0 <= min < max <= 100.
        dropout: probability that any valid pixel is missing, [0, 1].
        holes: mean number of missing elliptic blobs per frame (Poisson), [0, 100].
        hole_radius: (low, high) blob radius in pixels at 640 px wide (scaled with the width).
        edge_dropout: probability that a pixel next to a depth jump (> ``edge_jump`` metres) is
            missing, [0, 1], like the invalid band stereo cameras leave at occluding edges.
        edge_jump: metres, > 0.
        invalid: how missing pixels are written: "nan" or "zero" (RealSense publishes zeros).
        floor: add the floor plane z = 0.
        wall_distance: add a vertical back wall this far (metres) behind the world origin as seen
            from the camera (horizontally), or None for no wall.
        refine: move object hits onto the exact surface (Newton on the material point and the ray
            depth; needs a ``DeformedShape``); the rare grazing pixel without an exact hit near the
            mesh hit is left out. Otherwise hits lie on the mesh (within ~2 mm of the surface).
    """

    noise_k: float = 0.0015
    depth_quantum: float = 0.001
    min_range: float = 0.2
    max_range: float = 6.0
    dropout: float = 0.005
    holes: float = 1.5
    hole_radius: tuple[float, float] = (3.0, 12.0)
    edge_dropout: float = 0.5
    edge_jump: float = 0.05
    invalid: str = "nan"
    floor: bool = True
    wall_distance: float | None = 2.0
    refine: bool = False

    def __post_init__(self) -> None:
        _check("noise_k", self.noise_k, 0.0, 0.05)
        _check("depth_quantum", self.depth_quantum, 0.0, 0.01)
        _check("min_range", self.min_range, 0.0, 100.0)
        _check("max_range", self.max_range, 0.0, 100.0)
        if not self.min_range < self.max_range:
            raise CameraError(f"SensorConfig needs min_range < max_range, got {self.min_range}, {self.max_range}")
        _check("dropout", self.dropout, 0.0, 1.0)
        _check("holes", self.holes, 0.0, 100.0)
        lo, hi = (float(v) for v in self.hole_radius)
        if not 0.0 < lo <= hi <= 200.0:
            raise CameraError(f"SensorConfig.hole_radius must be 0 < low <= high <= 200 px, got {self.hole_radius}")
        object.__setattr__(self, "hole_radius", (lo, hi))
        _check("edge_dropout", self.edge_dropout, 0.0, 1.0)
        _check("edge_jump", self.edge_jump, 1e-6, 10.0)
        if self.invalid not in ("nan", "zero"):
            raise CameraError(f"SensorConfig.invalid must be 'nan' or 'zero', got {self.invalid!r}")
        if self.wall_distance is not None:
            _check("wall_distance", self.wall_distance, 0.0, 100.0)

    @classmethod
    def ideal(cls, **overrides) -> "SensorConfig":
        """No noise, no quantisation, no missing pixels, no background (overrides applied on top)."""
        base = cls(noise_k=0.0, depth_quantum=0.0, dropout=0.0, holes=0.0, edge_dropout=0.0,
                   floor=False, wall_distance=None)
        return replace(base, **overrides)


@dataclass
class Render:
    """One rendered frame with its ground truth.

    Attributes:
        cloud: (H, W, 3) float32 organized cloud, optical frame, metres; invalid pixels NaN or 0.
        labels: (H, W) uint8: LABEL_NONE (missing or nothing hit), LABEL_OBJECT, LABEL_FLOOR, LABEL_WALL.
        depth: (H, W) float64 noiseless depth before dropout (inf where nothing is hit), metres.
        material: (H, W, 3) float64 material coordinates of object pixels (NaN elsewhere), metres;
            exact when refined, barycentric on the canonical mesh otherwise (None for shapes
            without a canonical mesh).
    """

    cloud: np.ndarray
    labels: np.ndarray
    depth: np.ndarray
    material: np.ndarray | None = None


class DepthCamera:
    """A static depth camera: intrinsics, a camera-to-world pose and a ``SensorConfig``.

    Args:
        intrinsics: pinhole model (e.g. ``realsense_d435()``).
        camera_to_world: (4, 4) pose of the optical frame (e.g. ``look_at(...)``).
        config: sensor model (default ``SensorConfig()``).
    """

    def __init__(self, intrinsics: CameraIntrinsics, camera_to_world: np.ndarray,
                 config: SensorConfig | None = None) -> None:
        pose = np.asarray(camera_to_world, dtype=np.float64)
        if pose.shape != (4, 4) or not np.all(np.isfinite(pose)):
            raise CameraError(f"camera_to_world must be a finite (4, 4) matrix, got shape {pose.shape}")
        rot = pose[:3, :3]
        if not (np.allclose(rot.T @ rot, np.eye(3), atol=1e-6) and np.linalg.det(rot) > 0
                and np.allclose(pose[3], [0, 0, 0, 1])):
            raise CameraError("camera_to_world must be a rigid transform (rotation + translation)")
        self.intrinsics = intrinsics
        self.camera_to_world = pose
        self.config = config or SensorConfig()
        self._dirs = intrinsics.directions()                       # (H, W, 3), optical z = 1
        self._dirs32 = self._dirs.astype(np.float32)
        self._background = self._plane_depths()

    @property
    def position(self) -> np.ndarray:
        """Camera centre in the world (3,), metres."""
        return self.camera_to_world[:3, 3].copy()

    def to_world(self, points: np.ndarray) -> np.ndarray:
        """Optical-frame points (..., 3) -> world (..., 3)."""
        return points @ self.camera_to_world[:3, :3].T + self.camera_to_world[:3, 3]

    def to_optical(self, points: np.ndarray) -> np.ndarray:
        """World points (..., 3) -> optical frame (..., 3)."""
        return (points - self.camera_to_world[:3, 3]) @ self.camera_to_world[:3, :3]

    def planes(self) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """Background planes in the world: (label, point (3,), unit normal (3,))."""
        out = []
        if self.config.floor:
            out.append((LABEL_FLOOR, np.zeros(3), np.array([0.0, 0.0, 1.0])))
        if self.config.wall_distance is not None:
            c = self.position
            n = np.array([c[0], c[1], 0.0])
            if np.linalg.norm(n) < 1e-6:
                n = -self.camera_to_world[:3, 2].copy()
                n[2] = 0.0
            if np.linalg.norm(n) < 1e-6:
                raise CameraError("wall_distance: the camera looks straight down; no wall direction")
            n /= np.linalg.norm(n)
            out.append((LABEL_WALL, -self.config.wall_distance * n, n))
        return out

    def _plane_depths(self) -> tuple[np.ndarray, np.ndarray]:
        """Nearest background depth (H, W) (inf where none) and its label (H, W) uint8."""
        h, w = self.intrinsics.height, self.intrinsics.width
        depth = np.full((h, w), np.inf)
        labels = np.zeros((h, w), np.uint8)
        rot, origin = self.camera_to_world[:3, :3], self.camera_to_world[:3, 3]
        for label, point, normal in self.planes():
            n_c = rot.T @ normal
            offset = float(normal @ (point - origin))              # n . (p - o)
            denom = self._dirs @ n_c
            with np.errstate(divide="ignore", invalid="ignore"):
                s = offset / denom
            s = np.where((denom != 0) & (s > 0), s, np.inf)
            closer = s < depth
            depth = np.where(closer, s, depth)
            labels[closer] = label
        return depth, labels

    # ---- rendering ------------------------------------------------------------------------------
    def render(self, shape: Shape4D, t: float, rng: np.random.Generator | None = None) -> np.ndarray:
        """Organized cloud (H, W, 3) float32 in the optical frame (metres) of ``shape`` at time ``t``.

        ``rng`` drives noise and missing pixels (a fixed default seed when None).
        """
        return self._render(shape, t, rng, with_material=False).cloud

    def render_full(self, shape: Shape4D, t: float, rng: np.random.Generator | None = None) -> Render:
        """Like :meth:`render`, with labels, the noiseless depth and material coordinates."""
        return self._render(shape, t, rng, with_material=True)

    def _render(self, shape: Shape4D, t: float, rng: np.random.Generator | None, with_material: bool
                ) -> Render:
        t = as_time(t)
        if not isinstance(shape, Shape4D):
            raise CameraError(f"render needs a Shape4D, got {type(shape).__name__}")
        if self.config.refine and not isinstance(shape, DeformedShape):
            raise CameraError("SensorConfig.refine needs a DeformedShape (exact forward map and field)")
        rng = rng if rng is not None else np.random.default_rng(0)
        cfg = self.config
        h, w = self.intrinsics.height, self.intrinsics.width
        obj_depth, tri, bary, window = self._cast(shape, t)
        depth = self._background[0].copy()
        labels = self._background[1].copy()
        material = None
        if obj_depth is not None:
            (r0, r1, c0, c1) = window
            sub = depth[r0:r1, c0:c1]
            closer = obj_depth < sub
            sub[closer] = obj_depth[closer]
            labels[r0:r1, c0:c1][closer] = LABEL_OBJECT
            if isinstance(shape, DeformedShape) and (with_material or cfg.refine):
                rows, cols = np.nonzero(closer)
                rows, cols = rows + r0, cols + c0
                verts_c, faces = shape.canonical_mesh()
                mat = np.einsum("nk,nkj->nj", bary[closer], verts_c[faces[tri[closer]]])
                if cfg.refine:
                    z, mat, ok = self._refine(shape, t, rows, cols, depth[rows, cols], mat)
                    bg_depth = self._background[0][rows, cols]
                    behind = ok & (z >= bg_depth)                    # refined behind a plane
                    depth[rows, cols] = np.where(ok & ~behind, z, np.where(ok, bg_depth, np.inf))
                    labels[rows, cols] = np.where(ok & ~behind, LABEL_OBJECT,
                                                  np.where(ok, self._background[1][rows, cols], LABEL_NONE))
                    keep = ok & ~behind                              # no exact hit near: no return
                    rows, cols, mat = rows[keep], cols[keep], mat[keep]
                if with_material:
                    material = np.full((h, w, 3), np.nan)
                    material[rows, cols] = mat
        depth[(depth < cfg.min_range) | (depth > cfg.max_range)] = np.inf
        noisy = self._sensor(depth, rng)
        bad = ~np.isfinite(noisy)
        labels[bad] = LABEL_NONE
        noisy[bad] = np.nan if cfg.invalid == "nan" else 0.0
        cloud = self._dirs32 * noisy.astype(np.float32)[:, :, None]
        if material is not None:
            material[labels != LABEL_OBJECT] = np.nan
        return Render(cloud=cloud, labels=labels, depth=depth, material=material)

    def _cast(self, shape: Shape4D, t: float):
        """Ray-cast the mesh at t inside its projected bounding box.

        Returns (depth (h, w) inf where missed, triangle ids (h, w), barycentrics (h, w, 3),
        window (r0, r1, c0, c1)) or (None, None, None, None) when the mesh is out of view.
        """
        import open3d as o3d

        verts, faces = shape.mesh(t)
        vc = self.to_optical(verts)
        intr = self.intrinsics
        if np.all(vc[:, 2] <= 1e-6):
            return None, None, None, None
        if np.any(vc[:, 2] <= 1e-6):
            r0, r1, c0, c1 = 0, intr.height, 0, intr.width
        else:
            uv = intr.project(vc)
            c0 = int(np.clip(np.floor(uv[:, 0].min()) - 1, 0, intr.width))
            c1 = int(np.clip(np.ceil(uv[:, 0].max()) + 2, 0, intr.width))
            r0 = int(np.clip(np.floor(uv[:, 1].min()) - 1, 0, intr.height))
            r1 = int(np.clip(np.ceil(uv[:, 1].max()) + 2, 0, intr.height))
            if c1 <= c0 or r1 <= r0:
                return None, None, None, None
        scene = o3d.t.geometry.RaycastingScene()
        scene.add_triangles(o3d.core.Tensor(vc.astype(np.float32)),
                            o3d.core.Tensor(np.ascontiguousarray(faces, dtype=np.uint32)))
        dirs = self._dirs[r0:r1, c0:c1]
        rays = np.zeros(dirs.shape[:2] + (6,), np.float32)
        rays[:, :, 3:] = dirs
        ans = scene.cast_rays(o3d.core.Tensor(rays))
        depth = ans["t_hit"].numpy().astype(np.float64)        # unit optical z: t_hit is the depth
        tri = ans["primitive_ids"].numpy().astype(np.int64)
        uvb = ans["primitive_uvs"].numpy().astype(np.float64)
        bary = np.stack([1.0 - uvb[..., 0] - uvb[..., 1], uvb[..., 0], uvb[..., 1]], axis=-1)
        depth[~np.isfinite(depth)] = np.inf
        return depth, tri, bary, (r0, r1, c0, c1)

    def _refine(self, shape: DeformedShape, t: float, rows: np.ndarray, cols: np.ndarray,
                depth: np.ndarray, material: np.ndarray, iterations: int = 12
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Newton on (X, s): ``x(X, t) = o + s d`` and ``S(X) = 0`` from the mesh hit.

        Returns (depths, material points, converged): ``converged`` is False where Newton did not
        converge or moved the hit by more than 1 cm (grazing rays that hit the mesh but not the exact
        surface near it); those pixels are left out rather than written inexactly.
        """
        # work before the shape's rigid global motion: move the rays instead (cheaper than the points)
        rot_g, trans_g = shape.global_motion.at(t)
        origin = (self.camera_to_world[:3, 3] - trans_g) @ rot_g
        d_world = self._dirs[rows, cols] @ (rot_g.T @ self.camera_to_world[:3, :3]).T
        X = material.copy()
        s = depth.copy()
        tol = 1e-10 * max(1.0, shape.height)
        ok = np.zeros(len(s), dtype=bool)
        active = np.arange(len(s))
        for _ in range(iterations):
            if active.size == 0:
                break
            xa = X[active]
            x, jac = shape.deform(xa, t, jacobian=True)
            val, grad = shape.canonical_field(xa)
            r1 = x - origin - s[active, None] * d_world[active]
            done = (np.linalg.norm(r1, axis=1) < tol) & (np.abs(val) < tol)
            ok[active[done]] = True
            keep = ~done
            active, r1, jac, val, grad = active[keep], r1[keep], jac[keep], val[keep], grad[keep]
            if active.size == 0:
                break
            a, det = _solve3(jac, -r1)
            b, _ = _solve3(jac, d_world[active])
            denom = np.einsum("ij,ij->i", grad, b)
            good = (np.abs(det) > 1e-12) & (np.abs(denom) > 1e-9)
            ds = np.where(good, (-val - np.einsum("ij,ij->i", grad, a)) / np.where(good, denom, 1.0), 0.0)
            X[active] += np.where(good[:, None], a + b * ds[:, None], 0.0)
            s[active] += ds
            active = active[good]
        ok &= np.abs(s - depth) < 0.01
        return s, X, ok

    def _sensor(self, depth: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Apply noise, quantisation and missing pixels to a depth map (inf = invalid); returns a copy."""
        cfg = self.config
        out = depth.copy()
        if cfg.edge_dropout > 0:
            d = np.where(np.isfinite(out), out, 1e6)
            dv = np.abs(np.diff(d, axis=0)) > cfg.edge_jump
            dh = np.abs(np.diff(d, axis=1)) > cfg.edge_jump
            jump = np.zeros(out.shape, dtype=bool)
            jump[1:] |= dv
            jump[:-1] |= dv
            jump[:, 1:] |= dh
            jump[:, :-1] |= dh
            cand = np.flatnonzero(jump & np.isfinite(out))
            out.flat[cand[rng.random(cand.size) < cfg.edge_dropout]] = np.inf
        # whole-image draws (float32 streams are cheaper); inf (invalid) stays inf
        if cfg.noise_k > 0:
            noise = rng.standard_normal(out.shape, dtype=np.float32)
            with np.errstate(invalid="ignore"):
                out += noise * (cfg.noise_k * out * out)
        if cfg.depth_quantum > 0:
            out = np.round(out / cfg.depth_quantum) * cfg.depth_quantum
        if cfg.dropout > 0:
            out[rng.random(out.shape, dtype=np.float32) < cfg.dropout] = np.inf
        out[out <= 0] = np.inf
        if cfg.holes > 0:
            h, w = out.shape
            scale = w / 640.0
            for _ in range(rng.poisson(cfg.holes)):
                cu, cv = rng.uniform(0, w), rng.uniform(0, h)
                ru = rng.uniform(*cfg.hole_radius) * scale
                rv = ru * rng.uniform(0.5, 1.5)
                u0, u1 = int(max(cu - ru, 0)), int(min(cu + ru + 1, w))
                v0, v1 = int(max(cv - rv, 0)), int(min(cv + rv + 1, h))
                if u1 <= u0 or v1 <= v0:
                    continue
                uu, vv = np.meshgrid(np.arange(u0, u1), np.arange(v0, v1))
                blob = ((uu - cu) / ru) ** 2 + ((vv - cv) / rv) ** 2 <= 1.0
                out[v0:v1, u0:u1][blob] = np.inf
        return out


@dataclass
class Frame:
    """One frame of a simulated stream.

    Attributes:
        index: nominal frame number (``stamp ~ start_stamp + index / fps``); dropped frames leave gaps.
        stamp: capture time, seconds on the stream's clock (``start_stamp`` at t = t0).
        t: the shape's time at capture (seconds): the ground truth for this frame.
        cloud: (H, W, 3) float32 organized cloud, optical frame, metres.
        labels: (H, W) uint8 pixel labels (see ``Render``).
        camera_to_world: (4, 4) camera pose.
    """

    index: int
    stamp: float
    t: float
    cloud: np.ndarray
    labels: np.ndarray
    camera_to_world: np.ndarray = field(repr=False, default_factory=lambda: np.eye(4))


def stream(shape: Shape4D, camera: DepthCamera, *, fps: float = 30.0, duration: float | None = None,
           jitter_std: float = 0.0, drop_prob: float = 0.0, rng: np.random.Generator | None = None,
           start_stamp: float = 0.0, t0: float = 0.0) -> Iterator[Frame]:
    """Frames of ``shape`` seen by ``camera`` at ``fps`` over ``duration`` seconds (default the shape's).

    Frame k is captured at ``t = t0 + k / fps + jitter`` with jitter ~ N(0, ``jitter_std``) seconds,
    clipped to +-0.4 / fps so frames stay in order; its stamp is ``start_stamp + (t - t0)``. Each frame
    is dropped with probability ``drop_prob``. Frames are rendered lazily.

    Raises:
        CameraError: fps <= 0, duration <= 0, jitter_std < 0 or drop_prob outside [0, 1).
    """
    if not (np.isfinite(fps) and fps > 0):
        raise CameraError(f"stream fps must be > 0, got {fps}")
    duration = shape.duration if duration is None else float(duration)
    if not (np.isfinite(duration) and duration > 0):
        raise CameraError(f"stream duration must be > 0 seconds, got {duration}")
    if not (np.isfinite(jitter_std) and jitter_std >= 0):
        raise CameraError(f"stream jitter_std must be >= 0 seconds, got {jitter_std}")
    if not 0.0 <= drop_prob < 1.0:
        raise CameraError(f"stream drop_prob must be in [0, 1), got {drop_prob}")
    rng = rng if rng is not None else np.random.default_rng(0)
    n = int(np.floor(duration * fps + 1e-9)) + 1
    limit = 0.4 / fps
    for k in range(n):
        jitter = float(np.clip(rng.normal() * jitter_std, -limit, limit)) if jitter_std > 0 else 0.0
        dropped = drop_prob > 0 and rng.random() < drop_prob
        if dropped:
            continue
        t = t0 + k / fps + jitter
        r = camera._render(shape, t, rng, with_material=False)
        yield Frame(index=k, stamp=start_stamp + (t - t0), t=t, cloud=r.cloud, labels=r.labels,
                    camera_to_world=camera.camera_to_world.copy())
