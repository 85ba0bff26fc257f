"""The networks: point-set encoders, occupancy decoder, velocity field, ODE flow, checkpoints."""

from .checkpoint import (
    Checkpoint,
    CheckpointError,
    export_checkpoint,
    load_checkpoint,
    save_checkpoint,
    shipped_model_path,
)
from .config import SOLVERS, ModelConfig, ModelError, SolverConfig
from .decoders import OccupancyDecoder, VelocityField
from .device import autocast_dtype, limit_cpu_threads, select_device
from .encoders import EncoderState, SpatialEncoder, SpatioTemporalEncoder
from .flow import integrate
from .occflow import OccupancyFlow
from .rigid import FramePoses

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "EncoderState",
    "FramePoses",
    "ModelConfig",
    "ModelError",
    "OccupancyDecoder",
    "OccupancyFlow",
    "SOLVERS",
    "SolverConfig",
    "SpatialEncoder",
    "SpatioTemporalEncoder",
    "VelocityField",
    "autocast_dtype",
    "export_checkpoint",
    "integrate",
    "load_checkpoint",
    "save_checkpoint",
    "select_device",
    "limit_cpu_threads",
    "shipped_model_path",
]
