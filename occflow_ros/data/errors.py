"""Error classes of the data room: one base class and one per concern, all ``ValueError`` subclasses."""

from __future__ import annotations

__all__ = ["DataError", "ShapeError", "CameraError"]


class DataError(ValueError):
    """Base class of every error the data room raises on purpose."""


class ShapeError(DataError):
    """An invalid shape or motion parameter, an unknown family or motion name, malformed points."""


class CameraError(DataError):
    """An invalid camera intrinsic, pose or sensor-model setting, or a malformed render request."""
