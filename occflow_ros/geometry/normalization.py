"""The metric <-> normalised coordinate map: ``metres = loc + scale * p_norm`` (D-FAUST convention)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from .errors import NormalizationError

__all__ = ["Normalization"]


@dataclass(frozen=True, eq=False)
class Normalization:
    """Where the model's normalised cube sits in the metric world.

    ``metres = loc + scale * p_norm``, the convention of the D-FAUST files (``loc`` (3,) and
    ``scale`` () per frame). The model works in normalised space, where the object fits the unit
    cube [-0.5, 0.5]^3; meshes and tracks come back to metres (in whatever frame ``loc`` was
    measured in, usually the sensor frame) through :meth:`to_metres`.

    Attributes:
        loc: (3,) float64, metres: the point that normalised (0, 0, 0) maps to.
        scale: float, metres per normalised unit, finite and > 0.

    Raises:
        NormalizationError: ``loc`` is not three finite numbers, or ``scale`` is not finite and > 0.
    """

    loc: np.ndarray
    scale: float

    def __post_init__(self) -> None:
        try:
            loc = np.array(self.loc, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError) as err:
            raise NormalizationError(f"loc must be 3 numbers, got {self.loc!r}") from err
        if loc.shape != (3,):
            raise NormalizationError(f"loc must have shape (3,), got {loc.shape}")
        if not np.all(np.isfinite(loc)):
            raise NormalizationError(f"loc must be finite, got {loc.tolist()}")
        try:
            scale = float(self.scale)
        except (TypeError, ValueError) as err:
            raise NormalizationError(f"scale must be a number, got {self.scale!r}") from err
        if not math.isfinite(scale) or scale <= 0.0:
            raise NormalizationError(f"scale must be finite and > 0 (metres per unit), got {scale}")
        loc.flags.writeable = False
        object.__setattr__(self, "loc", loc)
        object.__setattr__(self, "scale", scale)

    @classmethod
    def identity(cls) -> "Normalization":
        """loc 0, scale 1: normalised coordinates are metres."""
        return cls(np.zeros(3), 1.0)

    # ---- the map -------------------------------------------------------------------------------
    def to_metres(self, points_norm: Any) -> np.ndarray:
        """(..., 3) normalised -> (..., 3) metres. float32 in gives float32 out, otherwise float64."""
        p, dtype = _as_points(points_norm)
        return (self.loc + self.scale * p).astype(dtype, copy=False)

    def to_normalized(self, points_metres: Any) -> np.ndarray:
        """(..., 3) metres -> (..., 3) normalised. float32 in gives float32 out, otherwise float64."""
        p, dtype = _as_points(points_metres)
        return ((p - self.loc) / self.scale).astype(dtype, copy=False)

    # ---- plain data (checkpoints, messages) ----------------------------------------------------
    def as_dict(self) -> dict:
        """``{"loc": [x, y, z], "scale": s}`` with plain Python floats (JSON/YAML/msg friendly)."""
        return {"loc": [float(v) for v in self.loc], "scale": float(self.scale)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Normalization":
        """Inverse of :meth:`as_dict`; raises NormalizationError on missing keys or bad values."""
        if not isinstance(data, Mapping):
            raise NormalizationError(f"expected a mapping with 'loc' and 'scale', got {type(data).__name__}")
        missing = [k for k in ("loc", "scale") if k not in data]
        if missing:
            raise NormalizationError(f"normalisation dict lacks key(s) {missing}")
        return cls(data["loc"], data["scale"])

    # ---- value semantics -----------------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Normalization):
            return NotImplemented
        return bool(np.array_equal(self.loc, other.loc)) and self.scale == other.scale

    def __hash__(self) -> int:
        return hash((tuple(self.loc.tolist()), self.scale))

    def __repr__(self) -> str:
        return f"Normalization(loc={self.loc.tolist()}, scale={self.scale})"


def _as_points(points: Any) -> tuple[np.ndarray, np.dtype]:
    arr = np.asarray(points)
    if arr.ndim == 0 or arr.shape[-1] != 3:
        raise NormalizationError(f"points must have shape (..., 3), got {arr.shape}")
    dtype = np.dtype(np.float32) if arr.dtype == np.float32 else np.dtype(np.float64)
    return arr.astype(np.float64, copy=False), dtype
