"""Motion carriers: what moves a keyframe segment's mesh from one frame to the next.

The tracker's keyframe, residual and id logic is the same whichever carrier runs; a carrier only
answers four questions about its segment (everything in the keyframe's normalised space, time t
normalised: 0 at the keyframe, 1 one model window later):

- ``carry(frame)``: where the mesh's vertices are at this frame's time, (V, 3) float32;
- ``catch_up(frames)``: the same after several frames at once (a keyframe meshed in the
  background adopts the frames seen meanwhile);
- ``back(points, t)``: where observed points (N, 3) of time t were at the keyframe's time (the
  input correspondences);
- ``undo()``: the vertices before the last ``carry`` (None: this carrier cannot go back).

A new carrier is one new module here with a class that implements :class:`Carrier`, and an entry
in :data:`CARRIERS`; :func:`carrier_name` says which one a tracker configuration selects.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, Optional, Sequence

import numpy as np
import torch

from ...geometry import Normalization
from ...model import EncoderState, OccupancyFlow

if TYPE_CHECKING:
    from ..config import TrackerConfig

__all__ = ["CARRIERS", "Carrier", "CarrierContext", "Frame", "SegmentStart", "carrier_name",
           "make_carrier"]


@dataclass
class CarrierContext:
    """What every carrier of one tracker shares: the networks and their device and precision, the
    tracker's settings, the model's time scale (seconds per unit of normalised time), and the
    network batch size (``chunk``), which a carrier may shrink after running out of GPU memory."""

    model: OccupancyFlow
    config: "TrackerConfig"
    device: torch.device
    autocast_dtype: Optional[torch.dtype]
    time_scale: float
    chunk: int

    def autocast(self):
        if self.autocast_dtype is None:
            return torch.autocast(device_type=self.device.type, enabled=False)
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)


@dataclass
class SegmentStart:
    """A keyframe as a carrier starts from it: its normalisation, the model's input points x
    (1, N, 3) normalised, the motion encoder's state and code after the keyframe, and the mesh
    (vertices (V, 3) float32 normalised, faces (F, 3))."""

    norm: Normalization
    x: torch.Tensor
    encoder: EncoderState
    code: torch.Tensor
    vertices: np.ndarray
    faces: np.ndarray


@dataclass
class Frame:
    """One tracked frame as a carrier sees it: the preprocessed points (M, 3) in metres, the model's
    input points x (1, N, 3) normalised, the normalised time t, and ``info`` for its timings."""

    observed: np.ndarray
    x: torch.Tensor
    t: float
    info: Dict[str, Any] = field(default_factory=dict)


class Carrier(ABC):
    """Carries one keyframe segment's mesh (see the module docstring); made at the keyframe."""

    def __init__(self, ctx: CarrierContext, start: SegmentStart) -> None:
        self.ctx = ctx
        self.norm = start.norm
        self.t = 0.0  # the normalised time of the last frame carried to

    @abstractmethod
    def carry(self, frame: Frame) -> np.ndarray:
        """The vertices (V, 3) float32 normalised at ``frame.t``."""

    def catch_up(self, frames: Sequence[Frame]) -> np.ndarray:
        """The vertices after ``frames`` (in order, at least one); by default one carry each."""
        vertices = None
        for frame in frames:
            vertices = self.carry(frame)
        assert vertices is not None, "catch_up needs at least one frame"
        return vertices

    @abstractmethod
    def back(self, x: torch.Tensor, t: float) -> np.ndarray:
        """Where points x (1, N, 3) normalised, observed at time t (the last carried), were at the
        keyframe: (N, 3) float32 normalised."""

    def undo(self) -> Optional[np.ndarray]:
        """The vertices before the last carry, restoring that state; None: not possible."""
        return None

    def forward(self, y: np.ndarray) -> np.ndarray:
        """Where points y (N, 3) normalised, given at the keyframe (``back``'s output), are now
        (at the last carried time): (N, 3) float32 normalised. Only where ``forwards_points``."""
        raise NotImplementedError(f"{type(self).__name__} does not carry points forward")

    #: Whether ``forward`` can say where keyframe-time points are now (the tracker keeps the last
    #: frames' points for the next keyframe only then: ``tracker.keyframe_history``).
    forwards_points = False

    #: Whether every frame's points need the outlier stage before ``carry`` (registration to the
    #: keyframe's points does; a fit with a distance gate leaves stray points out by itself, so
    #: only keyframe frames get the stage).
    clean_frames = True


def carrier_name(config: "TrackerConfig") -> str:
    """The carrier a tracker configuration selects: the deformation graph (``deformation.enabled``,
    the default; with ``deformation.flow_prior`` the velocity field is its motion prior), else the
    velocity field."""
    return "graph" if config.deformation.enabled else "flow"


def make_carrier(ctx: CarrierContext, start: SegmentStart) -> Carrier:
    """The configured carrier for a new segment."""
    return CARRIERS[carrier_name(ctx.config)](ctx, start)


from .flow import FlowCarrier  # noqa: E402  (the carriers import the interface above)
from .graph import GraphCarrier  # noqa: E402

#: Carrier name -> class.
CARRIERS = {"flow": FlowCarrier, "graph": GraphCarrier}
