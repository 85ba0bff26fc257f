"""Parameter ranges for drawing random motions (amplitude, speed, global motion), validated once."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import ShapeError
from .shape import GlobalMotion

__all__ = ["MotionRanges", "draw_global_motion", "as_generator"]


def _check_range(name: str, value, lo: float, hi: float) -> tuple[float, float]:
    try:
        a, b = (float(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise ShapeError(f"MotionRanges.{name} must be a (low, high) pair, got {value!r}") from exc
    if not (lo <= a <= b <= hi):
        raise ShapeError(f"MotionRanges.{name} must satisfy {lo} <= low <= high <= {hi}, got {(a, b)}")
    return a, b


@dataclass(frozen=True)
class MotionRanges:
    """Where random motions are drawn from.

    Attributes:
        amplitude: (low, high) fraction of each family's reference amplitude, drawn uniformly; the
            default (0.5, 1.0) is the training range; evaluation can ask for unseen amplitudes, e.g.
            (1.0, 1.2). Allowed 0 <= low <= high <= 1.5 (beyond that limbs start to collide).
        speed: (low, high) multiplier of each family's nominal frequency. Allowed 0 < low <= high <= 4.
        yaw0: (low, high) initial yaw of the global motion, radians, within [-pi, pi].
        max_yaw_rate: the global yaw rate is drawn in [-max, max] rad/s; allowed [0, 2].
        max_drift: the horizontal drift speed is drawn in [0, max] m/s; allowed [0, 1].
    """

    amplitude: tuple[float, float] = (0.5, 1.0)
    speed: tuple[float, float] = (0.75, 1.25)
    yaw0: tuple[float, float] = (-np.pi / 4, np.pi / 4)
    max_yaw_rate: float = 0.3
    max_drift: float = 0.05

    def __post_init__(self) -> None:
        object.__setattr__(self, "amplitude", _check_range("amplitude", self.amplitude, 0.0, 1.5))
        speed = _check_range("speed", self.speed, 0.0, 4.0)
        if speed[0] <= 0:
            raise ShapeError(f"MotionRanges.speed low must be > 0, got {speed[0]}")
        object.__setattr__(self, "speed", speed)
        object.__setattr__(self, "yaw0", _check_range("yaw0", self.yaw0, -np.pi, np.pi))
        if not 0.0 <= self.max_yaw_rate <= 2.0:
            raise ShapeError(f"MotionRanges.max_yaw_rate must be in [0, 2] rad/s, got {self.max_yaw_rate}")
        if not 0.0 <= self.max_drift <= 1.0:
            raise ShapeError(f"MotionRanges.max_drift must be in [0, 1] m/s, got {self.max_drift}")

    def draw_amplitude(self, rng: np.random.Generator) -> float:
        return float(rng.uniform(*self.amplitude))

    def draw_speed(self, rng: np.random.Generator) -> float:
        return float(rng.uniform(*self.speed))


def draw_global_motion(rng: np.random.Generator, ranges: MotionRanges) -> GlobalMotion:
    """A random slow yaw and horizontal drift within ``ranges``."""
    yaw0 = float(rng.uniform(*ranges.yaw0))
    rate = float(rng.uniform(-ranges.max_yaw_rate, ranges.max_yaw_rate))
    speed = float(rng.uniform(0.0, ranges.max_drift))
    heading = float(rng.uniform(0.0, 2.0 * np.pi))
    return GlobalMotion(yaw0=yaw0, yaw_rate=rate,
                        drift=(speed * np.cos(heading), speed * np.sin(heading), 0.0))


def as_generator(seed: int | np.random.Generator) -> tuple[np.random.Generator, int | None]:
    """(generator, int seed or None) from an int seed or a Generator (whose seed cannot be recorded)."""
    if isinstance(seed, np.random.Generator):
        return seed, None
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and seed >= 0:
        return np.random.default_rng(int(seed)), int(seed)
    raise ShapeError(f"seed must be a non-negative int or a numpy Generator, got {seed!r}")
