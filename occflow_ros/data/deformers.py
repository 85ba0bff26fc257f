"""Non-articulated 4D shapes: a bending bar, a twisting superquadric box and a breathing, bulging blob.

Each deformation has a closed-form inverse (used as the Newton starting guess, so the exact inverse is
found in one or two iterations) and an analytic Jacobian; all stand on ``z = 0`` in the rest pose.
"""

from __future__ import annotations

import numpy as np

from .errors import ShapeError
from .implicit import Ellipsoids, RoundCones, Superquadrics
from .ranges import MotionRanges, as_generator, draw_global_motion
from .shape import DeformedShape, GlobalMotion

__all__ = ["BendingBar", "TwistingBox", "BreathingBlob"]

_TWO_PI = 2.0 * np.pi


def _rz(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _check_positive(name: str, value: float) -> float:
    value = float(value)
    if not (np.isfinite(value) and value > 0):
        raise ShapeError(f"{name} must be > 0, got {value}")
    return value


class BendingBar(DeformedShape):
    """A tapered round bar standing on the floor that bends back and forth in a slowly turning plane.

    Rest pose: a round cone from ``(0, 0, r_bottom)`` to ``(0, 0, length - r_top)``. At time t the bar
    bends with curvature ``kappa(t) = curvature * sin(2 pi f t + phase)`` (1/m) in the vertical plane at
    azimuth ``azimuth0 + azimuth_rate * t``; the bend keeps the base fixed and is an isometry along the
    axis (``z`` is arc length). Requires ``curvature * max(r) < 1`` so the map stays invertible.
    """

    family = "bending_bar"

    def __init__(self, *, length: float, r_bottom: float, r_top: float, curvature: float,
                 frequency: float, phase: float = 0.0, azimuth0: float = 0.0,
                 azimuth_rate: float = 0.0, duration: float = 2.0,
                 global_motion: GlobalMotion | None = None, mesh_voxel: float | None = None,
                 seed: int | None = None) -> None:
        self.length = _check_positive("length", length)
        self.r_bottom = _check_positive("r_bottom", r_bottom)
        self.r_top = _check_positive("r_top", r_top)
        if self.r_bottom + self.r_top >= self.length:
            raise ShapeError("BendingBar needs r_bottom + r_top < length")
        self.curvature = float(curvature)
        if not abs(self.curvature) * max(self.r_bottom, self.r_top) < 0.5:
            raise ShapeError("BendingBar needs |curvature| * max radius < 0.5 (invertible bend)")
        if abs(self.curvature) * self.length > 2.5:
            raise ShapeError("BendingBar needs |curvature| * length <= 2.5 rad")
        self.frequency = _check_positive("frequency", frequency)
        self.phase, self.azimuth0, self.azimuth_rate = float(phase), float(azimuth0), float(azimuth_rate)
        super().__init__(duration=duration, global_motion=global_motion,
                         mesh_voxel=mesh_voxel or self.length / 100.0, seed=seed)
        self._cone = RoundCones(a=[[0.0, 0.0, self.r_bottom]], b=[[0.0, 0.0, self.length - self.r_top]],
                                r1=[self.r_bottom], r2=[self.r_top], eps=1e-3)

    @classmethod
    def random(cls, seed: int | np.random.Generator, *, ranges: MotionRanges | None = None,
               global_motion: bool = False, duration: float = 2.0) -> "BendingBar":
        """A random bar: length 0.6-1.4 m, radius 5-10 cm, bend up to ~1.2 rad at amplitude 1."""
        rng, seed_value = as_generator(seed)
        ranges = ranges or MotionRanges()
        length = rng.uniform(0.6, 1.4)
        r_bottom = rng.uniform(0.05, 0.10)
        r_top = r_bottom * rng.uniform(0.6, 1.0)
        amp = ranges.draw_amplitude(rng)
        curvature = amp * 1.2 / length * rng.choice([-1.0, 1.0])
        return cls(length=length, r_bottom=r_bottom, r_top=r_top, curvature=curvature,
                   frequency=0.8 * ranges.draw_speed(rng), phase=rng.uniform(0, _TWO_PI),
                   azimuth0=rng.uniform(0, _TWO_PI), azimuth_rate=rng.uniform(-0.6, 0.6),
                   duration=duration,
                   global_motion=draw_global_motion(rng, ranges) if global_motion else None,
                   seed=seed_value)

    @property
    def height(self) -> float:
        return self.length

    def motion_name(self) -> str:
        return "bend"

    def parameters(self) -> dict:
        return {k: getattr(self, k) for k in ("length", "r_bottom", "r_top", "curvature", "frequency",
                                              "phase", "azimuth0", "azimuth_rate")}

    def canonical_field(self, material: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        d, g = self._cone.evaluate(material[:, None, :])
        return d[:, 0], g[:, 0]

    def canonical_box(self) -> tuple[np.ndarray, np.ndarray]:
        m = 0.03 + 3 * self.mesh_voxel
        r = max(self.r_bottom, self.r_top)
        return np.array([-r - m, -r - m, -m]), np.array([r + m, r + m, self.length + m])

    def _state(self, t: float) -> tuple[float, np.ndarray]:
        kappa = self.curvature * np.sin(_TWO_PI * self.frequency * t + self.phase)
        return kappa, _rz(self.azimuth0 + self.azimuth_rate * t)

    def deform(self, material: np.ndarray, t: float, jacobian: bool = False
               ) -> tuple[np.ndarray, np.ndarray | None]:
        kappa, rot = self._state(t)
        p = material @ rot                      # into the bend frame (bend in its x-z plane)
        x, z = p[:, 0], p[:, 2]
        th = kappa * z
        small = np.abs(th) < 1e-4
        th_safe = np.where(small, 1.0, th)
        c1 = np.where(small, th / 2.0 - th**3 / 24.0, (1.0 - np.cos(th)) / th_safe)
        s1 = np.sinc(th / np.pi)
        cos, sin = np.cos(th), np.sin(th)
        q = np.stack([x * cos + z * c1, p[:, 1], z * s1 - x * sin], axis=1)
        y = q @ rot.T
        if not jacobian:
            return y, None
        k = 1.0 - kappa * x
        jb = np.zeros((len(p), 3, 3))
        jb[:, 0, 0], jb[:, 0, 2] = cos, k * sin
        jb[:, 1, 1] = 1.0
        jb[:, 2, 0], jb[:, 2, 2] = -sin, k * cos
        return y, np.einsum("ij,mjk,lk->mil", rot, jb, rot)

    def inverse_candidates(self, y: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray]:
        kappa, rot = self._state(t)
        q = y @ rot
        if abs(kappa) < 1e-8:
            return y[None].copy(), np.ones((1, len(y)), dtype=bool)
        radius = 1.0 / kappa
        sgn = np.sign(kappa)
        u = radius - q[:, 0]
        th = np.arctan2(sgn * q[:, 2], sgn * u)
        p = np.stack([radius - sgn * np.hypot(u, q[:, 2]), q[:, 1], th / kappa], axis=1)
        return (p @ rot.T)[None], np.ones((1, len(y)), dtype=bool)


class TwistingBox(DeformedShape):
    """A box-like superquadric standing on the floor, twisting about its vertical axis (volume-preserving).

    Rest pose: ``||(x, y, z - c) / (a, b, c)||_p <= 1``. At time t a point at height z turns about the z
    axis by ``twist * sin(2 pi f t + phase) * z / (2 c)`` radians (base fixed, top turns most).
    """

    family = "twisting_box"

    def __init__(self, *, semi: tuple[float, float, float], exponent: float, twist: float,
                 frequency: float, phase: float = 0.0, duration: float = 2.0,
                 global_motion: GlobalMotion | None = None, mesh_voxel: float | None = None,
                 seed: int | None = None) -> None:
        self.semi = tuple(_check_positive("semi", s) for s in semi)
        if len(self.semi) != 3:
            raise ShapeError("TwistingBox.semi must be three half extents")
        self.exponent = float(exponent)
        if not 2.0 <= self.exponent <= 12.0:
            raise ShapeError(f"TwistingBox.exponent must be in [2, 12], got {exponent}")
        self.twist = float(twist)
        if not abs(self.twist) <= np.pi:
            raise ShapeError(f"TwistingBox.twist must be within [-pi, pi] rad, got {twist}")
        self.frequency = _check_positive("frequency", frequency)
        self.phase = float(phase)
        super().__init__(duration=duration, global_motion=global_motion,
                         mesh_voxel=mesh_voxel or 2 * self.semi[2] / 100.0, seed=seed)
        self._sq = Superquadrics(centre=[[0.0, 0.0, self.semi[2]]], semi=[self.semi],
                                 exponent=[self.exponent])

    @classmethod
    def random(cls, seed: int | np.random.Generator, *, ranges: MotionRanges | None = None,
               global_motion: bool = False, duration: float = 2.0) -> "TwistingBox":
        """A random box: half widths 0.12-0.3 m, half height 0.3-0.7 m, twist up to 90 deg."""
        rng, seed_value = as_generator(seed)
        ranges = ranges or MotionRanges()
        semi = (rng.uniform(0.12, 0.3), rng.uniform(0.12, 0.3), rng.uniform(0.3, 0.7))
        amp = ranges.draw_amplitude(rng)
        return cls(semi=semi, exponent=rng.uniform(3.0, 8.0),
                   twist=amp * (np.pi / 2) * rng.choice([-1.0, 1.0]),
                   frequency=0.7 * ranges.draw_speed(rng), phase=rng.uniform(0, _TWO_PI),
                   duration=duration,
                   global_motion=draw_global_motion(rng, ranges) if global_motion else None,
                   seed=seed_value)

    @property
    def height(self) -> float:
        return 2.0 * self.semi[2]

    def motion_name(self) -> str:
        return "twist"

    def parameters(self) -> dict:
        return {"semi": list(self.semi), "exponent": self.exponent, "twist": self.twist,
                "frequency": self.frequency, "phase": self.phase}

    def rest_volume(self) -> float:
        """Exact volume of the rest solid (m^3); the twist preserves it at every t."""
        from scipy.special import gamma

        p = self.exponent
        a, b, c = self.semi
        return float(8 * a * b * c * gamma(1 + 1 / p) ** 3 / gamma(1 + 3 / p))

    def canonical_field(self, material: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        d, g = self._sq.evaluate(material[:, None, :])
        return d[:, 0], g[:, 0]

    def canonical_box(self) -> tuple[np.ndarray, np.ndarray]:
        m = 0.03 + 3 * self.mesh_voxel
        a, b, c = self.semi
        return np.array([-a - m, -b - m, -m]), np.array([a + m, b + m, 2 * c + m])

    def _rate(self, t: float) -> float:
        return self.twist * np.sin(_TWO_PI * self.frequency * t + self.phase) / (2.0 * self.semi[2])

    def deform(self, material: np.ndarray, t: float, jacobian: bool = False
               ) -> tuple[np.ndarray, np.ndarray | None]:
        rate = self._rate(t)
        ang = rate * material[:, 2]
        c, s = np.cos(ang), np.sin(ang)
        x, y = material[:, 0], material[:, 1]
        xr, yr = c * x - s * y, s * x + c * y
        out = np.stack([xr, yr, material[:, 2]], axis=1)
        if not jacobian:
            return out, None
        jac = np.zeros((len(material), 3, 3))
        jac[:, 0, 0], jac[:, 0, 1], jac[:, 0, 2] = c, -s, -rate * yr
        jac[:, 1, 0], jac[:, 1, 1], jac[:, 1, 2] = s, c, rate * xr
        jac[:, 2, 2] = 1.0
        return out, jac

    def inverse_candidates(self, y: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray]:
        ang = -self._rate(t) * y[:, 2]
        c, s = np.cos(ang), np.sin(ang)
        p = np.stack([c * y[:, 0] - s * y[:, 1], s * y[:, 0] + c * y[:, 1], y[:, 2]], axis=1)
        return p[None], np.ones((1, len(y)), dtype=bool)


class BreathingBlob(DeformedShape):
    """An ellipsoid that breathes (uniform radial pulse) while bumps travel over its surface.

    Rest pose: ellipsoid with semi-axes ``semi`` centred at ``centre``. Every point moves radially from
    the centre, ``x = c + (1 + beta(u, t)) (X - c)`` with ``u = (X - c) / |X - c|`` and
    ``beta = breath * sin(2 pi f t + phase) + sum_k A_k exp(kappa_k (u . m_k(t) - 1))``, where the bump
    direction ``m_k`` turns about ``axis_k`` at ``spin_k`` rad/s. Directions are preserved, so the
    inverse is closed-form; ``det J = (1 + beta)^3``.
    """

    family = "breathing_blob"

    def __init__(self, *, semi: tuple[float, float, float], breath: float, frequency: float,
                 phase: float = 0.0, bump_amplitudes=(), bump_sharpness=(), bump_directions=(),
                 bump_axes=(), bump_spins=(), duration: float = 2.0,
                 global_motion: GlobalMotion | None = None, mesh_voxel: float | None = None,
                 seed: int | None = None) -> None:
        self.semi = tuple(_check_positive("semi", s) for s in semi)
        self.breath = float(breath)
        if not 0.0 <= self.breath <= 0.3:
            raise ShapeError(f"BreathingBlob.breath must be in [0, 0.3], got {breath}")
        self.frequency = _check_positive("frequency", frequency)
        self.phase = float(phase)
        self.bump_amplitudes = np.asarray(bump_amplitudes, dtype=np.float64).reshape(-1)
        k = len(self.bump_amplitudes)
        self.bump_sharpness = np.asarray(bump_sharpness, dtype=np.float64).reshape(k)
        dirs = np.asarray(bump_directions, dtype=np.float64).reshape(k, 3)
        axes = np.asarray(bump_axes, dtype=np.float64).reshape(k, 3)
        self.bump_spins = np.asarray(bump_spins, dtype=np.float64).reshape(k)
        if np.any(self.bump_amplitudes < 0) or np.any(self.bump_amplitudes > 0.6):
            raise ShapeError("BreathingBlob.bump_amplitudes must be in [0, 0.6]")
        if np.any(self.bump_sharpness <= 0):
            raise ShapeError("BreathingBlob.bump_sharpness must be > 0")
        if np.any(np.linalg.norm(dirs, axis=1) < 1e-9) or np.any(np.linalg.norm(axes, axis=1) < 1e-9):
            raise ShapeError("BreathingBlob bump directions and axes must be non-zero vectors")
        self.bump_directions, self.bump_axes = dirs, axes      # as given (provenance); unit copies below
        self._dirs = dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
        self._axes = axes / np.linalg.norm(axes, axis=1, keepdims=True)
        bottom = 1.0 - self.breath
        self.centre = np.array([0.0, 0.0, self.semi[2] * (1.0 + self.breath + self.bump_amplitudes.sum())])
        if bottom <= 0.5:
            raise ShapeError("BreathingBlob: breath too strong (the map must keep 1 + beta > 0.5)")
        super().__init__(duration=duration, global_motion=global_motion,
                         mesh_voxel=mesh_voxel or 2 * max(self.semi) / 100.0, seed=seed)
        self._ell = Ellipsoids(centre=[self.centre], axes=[np.eye(3)], semi=[self.semi], eps=1e-3)

    @classmethod
    def random(cls, seed: int | np.random.Generator, *, ranges: MotionRanges | None = None,
               global_motion: bool = False, duration: float = 2.0) -> "BreathingBlob":
        """A random blob: semi-axes 0.15-0.35 m, breathing up to 12 %, two travelling bumps up to 35 %."""
        rng, seed_value = as_generator(seed)
        ranges = ranges or MotionRanges()
        semi = tuple(rng.uniform(0.15, 0.35, size=3))
        amp = ranges.draw_amplitude(rng)
        nb = 2
        return cls(semi=semi, breath=amp * rng.uniform(0.04, 0.12),
                   frequency=0.6 * ranges.draw_speed(rng), phase=rng.uniform(0, _TWO_PI),
                   bump_amplitudes=amp * rng.uniform(0.1, 0.35, size=nb),
                   bump_sharpness=rng.uniform(3.0, 10.0, size=nb),
                   bump_directions=rng.normal(size=(nb, 3)), bump_axes=rng.normal(size=(nb, 3)),
                   bump_spins=ranges.draw_speed(rng) * rng.uniform(-2.0, 2.0, size=nb),
                   duration=duration,
                   global_motion=draw_global_motion(rng, ranges) if global_motion else None,
                   seed=seed_value)

    @property
    def height(self) -> float:
        return 2.0 * self.semi[2]

    def motion_name(self) -> str:
        return "breathe_bulge"

    def parameters(self) -> dict:
        return {"semi": list(self.semi), "breath": self.breath, "frequency": self.frequency,
                "phase": self.phase, "bump_amplitudes": self.bump_amplitudes.tolist(),
                "bump_sharpness": self.bump_sharpness.tolist(),
                "bump_directions": self.bump_directions.tolist(), "bump_axes": self.bump_axes.tolist(),
                "bump_spins": self.bump_spins.tolist()}

    def canonical_field(self, material: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        d, g = self._ell.evaluate(material[:, None, :])
        return d[:, 0], g[:, 0]

    def canonical_box(self) -> tuple[np.ndarray, np.ndarray]:
        m = 0.03 + 3 * self.mesh_voxel
        s = np.asarray(self.semi)
        return self.centre - s - m, self.centre + s + m

    def _bumps(self, t: float) -> np.ndarray:
        """Current bump directions (K, 3): ``m_k`` turned about ``axis_k`` by ``spin_k * t`` (Rodrigues)."""
        ang = self.bump_spins * t
        k = self._axes
        m = self._dirs
        c, s = np.cos(ang)[:, None], np.sin(ang)[:, None]
        return m * c + np.cross(k, m) * s + k * np.sum(k * m, axis=1, keepdims=True) * (1 - c)

    def _beta(self, u: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray]:
        """beta (M,) and the tangential gradient term g (M, 3) with J = (1 + beta) I + u g^T."""
        dirs = self._bumps(t)
        dots = u @ dirs.T                                            # (M, K)
        e = self.bump_amplitudes * np.exp(self.bump_sharpness * (dots - 1.0))
        beta = self.breath * np.sin(_TWO_PI * self.frequency * t + self.phase) + e.sum(axis=1)
        coef = e * self.bump_sharpness                               # (M, K)
        g = coef @ dirs - np.sum(coef * dots, axis=1, keepdims=True) * u
        return beta, g

    def _directions(self, d: np.ndarray) -> np.ndarray:
        rho = np.linalg.norm(d, axis=1, keepdims=True)
        return np.where(rho > 1e-15, d / np.maximum(rho, 1e-300), np.array([0.0, 0.0, 1.0]))

    def deform(self, material: np.ndarray, t: float, jacobian: bool = False
               ) -> tuple[np.ndarray, np.ndarray | None]:
        d = material - self.centre
        u = self._directions(d)
        beta, g = self._beta(u, t)
        y = self.centre + (1.0 + beta)[:, None] * d
        if not jacobian:
            return y, None
        jac = (1.0 + beta)[:, None, None] * np.eye(3) + u[:, :, None] * g[:, None, :]
        return y, jac

    def inverse_candidates(self, y: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray]:
        d = y - self.centre
        beta, _ = self._beta(self._directions(d), t)
        return (self.centre + d / (1.0 + beta)[:, None])[None], np.ones((1, len(y)), dtype=bool)
