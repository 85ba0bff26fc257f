"""The streaming engine: frame window, keyframe policy, vertex propagation, persistent ids."""

from .types import TrackedMesh

__all__ = ["TrackedMesh"]
