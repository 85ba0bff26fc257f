"""Error classes of the geometry room: one per concern, all ``ValueError`` subclasses."""

from __future__ import annotations

__all__ = ["GeometryError", "NormalizationError", "MeshingError", "MeshError", "PreprocessError"]


class GeometryError(ValueError):
    """Base class of every error the geometry room raises on purpose."""


class NormalizationError(GeometryError):
    """An invalid normalisation (non-finite location, non-positive scale, malformed dict)."""


class MeshingError(GeometryError):
    """Misuse of iso-surface extraction: bad grid parameters or a field that returns bad values."""


class MeshError(GeometryError):
    """Malformed mesh arrays or impossible mesh-processing targets."""


class PreprocessError(GeometryError):
    """Misuse of point-cloud preprocessing: wrong array shape or dtype, or an invalid config."""
