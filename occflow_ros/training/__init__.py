"""Losses and the trainer."""

from .objective import Objective, iou
from .trainer import TrainConfig, TrainError, train, validate

__all__ = ["Objective", "TrainConfig", "TrainError", "iou", "train", "validate"]
