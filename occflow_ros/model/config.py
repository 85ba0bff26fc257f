"""Configuration of the networks and of the ODE solver, validated once at the edge."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping

__all__ = ["ModelError", "ModelConfig", "SolverConfig", "SOLVERS", "SHAPE_ENCODERS"]


class ModelError(ValueError):
    """A model, solver or checkpoint setting (or input) the model room cannot work with."""


def _check_int(name: str, value: Any, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ModelError(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")


def _check_float(name: str, value: Any, lo: float, hi: float, *, lo_open: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ModelError(f"{name} must be a finite number, got {value!r}")
    if (value <= lo if lo_open else value < lo) or value > hi:
        bracket = "(" if lo_open else "["
        raise ModelError(f"{name} must be in {bracket}{lo}, {hi}], got {value!r}")


def _from_mapping(cls, data: Mapping[str, Any], what: str):
    if not isinstance(data, Mapping):
        raise ModelError(f"{what} must be a mapping, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ModelError(f"{what}: unknown key(s) {unknown}; allowed: {sorted(known)}")
    return cls(**dict(data))


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of the Occupancy Flow networks and the conventions of their input.

    Space: points are in the model's normalised space, where the object fits the cube [-0.5, 0.5]^3
    (metres = loc + scale * p; see ``occflow_ros.geometry.Normalization``). Time: t = 0 at the
    keyframe and t = 1 one ``window_seconds`` later.
    """

    c_dim: int = 128  # size of the shape code c_s and of the motion code c_t
    encoder_hidden: int = 128  # width of both point-set encoders
    encoder_blocks: int = 3  # residual blocks in each encoder (each followed by pooling)
    decoder_hidden: int = 128  # width of the occupancy decoder
    decoder_blocks: int = 4  # FiLM-conditioned residual blocks of the occupancy decoder
    velocity_hidden: int = 128  # width of the velocity field
    velocity_blocks: int = 2  # FiLM-conditioned residual blocks of the velocity field
    fourier_octaves: int = 4  # positional encoding of coordinates in every network (0: raw xyz)
    # Occupancy decoder's local cue: each query also sees its k nearest keyframe input points
    # (offsets and distances, pooled by a small PointNet of width local_hidden). 0: the paper's
    # decoder, conditioned on the global shape code only (on this project's partial single-view
    # clouds its training loss plateaued far from the data; see docs/training.md).
    local_neighbors: int = 8
    local_hidden: int = 64
    # The rigid prior (occflow_ros.model.rigid): the flows carry points with the window's rigid
    # poses (ICP of each frame to the keyframe) and the velocity field learns the rest in the
    # keyframe-aligned body frame. False: the paper's field, which on this project's partial
    # single-view clouds learnt little more than the body's mean translation (docs/training.md).
    velocity_rigid: bool = False
    # The keyframe's shape network. "global": the paper's, one shape code from a point-set encoder
    # (FiLM-conditioned decoder, plus the local cue above). "planes": a convolutional occupancy
    # network (occflow_ros.model.planes): the points written into three feature planes of
    # plane_resolution^2 cells with plane_channels features, a 2D U-Net, features sampled at each
    # query; it keeps thin parts a global code loses (docs/training.md).
    shape_encoder: str = "global"
    plane_resolution: int = 32
    plane_channels: int = 32
    # points of the keyframe the shape network reads (0: input_points, as the motion encoder)
    shape_points: int = 0
    input_points: int = 512  # points per frame the model was trained on (encoders accept any count)
    window_seconds: float = 1.0  # seconds of stream that map to normalised time [0, 1]

    def __post_init__(self) -> None:
        for name in ("c_dim", "encoder_hidden", "decoder_hidden", "velocity_hidden"):
            _check_int(name, getattr(self, name), 1, 4096)
        for name in ("encoder_blocks", "decoder_blocks", "velocity_blocks"):
            _check_int(name, getattr(self, name), 1, 64)
        _check_int("fourier_octaves", self.fourier_octaves, 0, 16)
        _check_int("local_neighbors", self.local_neighbors, 0, 256)
        _check_int("local_hidden", self.local_hidden, 1, 4096)
        if not isinstance(self.velocity_rigid, bool):
            raise ModelError(f"velocity_rigid must be true or false, got {self.velocity_rigid!r}")
        _check_int("input_points", self.input_points, 1, 1_000_000)
        if self.shape_encoder not in SHAPE_ENCODERS:
            raise ModelError(f"shape_encoder must be one of {list(SHAPE_ENCODERS)}, "
                             f"got {self.shape_encoder!r}")
        _check_int("plane_resolution", self.plane_resolution, 4, 512)
        _check_int("plane_channels", self.plane_channels, 1, 1024)
        _check_int("shape_points", self.shape_points, 0, 1_000_000)
        _check_float("window_seconds", self.window_seconds, 0.0, 3600.0, lo_open=True)

    @property
    def keyframe_points(self) -> int:
        """Points of the keyframe the shape network reads."""
        return self.shape_points or self.input_points

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        return _from_mapping(cls, data, "model config")


SOLVERS = ("euler", "midpoint", "rk4", "dopri5")
SHAPE_ENCODERS = ("global", "planes")


@dataclass(frozen=True)
class SolverConfig:
    """How dp/dt = v(p, t) is integrated (torchdiffeq).

    ``step_size`` is in normalised time and used by the fixed-step solvers (euler, midpoint, rk4);
    ``rtol``/``atol`` by the adaptive dopri5. ``adjoint`` uses the adjoint method for gradients
    (constant memory in the number of steps; training only).
    """

    method: str = "rk4"
    step_size: float = 0.1
    rtol: float = 1e-3
    atol: float = 1e-5
    adjoint: bool = False

    def __post_init__(self) -> None:
        if self.method not in SOLVERS:
            raise ModelError(f"solver method must be one of {list(SOLVERS)}, got {self.method!r}")
        _check_float("step_size", self.step_size, 0.0, 10.0, lo_open=True)
        _check_float("rtol", self.rtol, 0.0, 1.0, lo_open=True)
        _check_float("atol", self.atol, 0.0, 1.0, lo_open=True)
        if not isinstance(self.adjoint, bool):
            raise ModelError(f"adjoint must be true or false, got {self.adjoint!r}")

    @property
    def fixed_step(self) -> bool:
        return self.method != "dopri5"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SolverConfig:
        return _from_mapping(cls, data, "solver config")
