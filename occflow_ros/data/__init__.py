"""The synthetic 4D world (exact occupancy and correspondences, simulated depth camera) and datasets.

Front door:

- ``Shape4D``: what every 4D shape offers (exact ``occupancy``, ``surface_residual``,
  ``sample_surface``, ``trajectory``, ``mesh``, ``describe``); ``DeformedShape`` implements it from a
  canonical implicit solid and an invertible deformation.
- Families: ``Human`` (skinned figure, ``HUMAN_MOTIONS``), ``BendingBar``, ``TwistingBox``,
  ``BreathingBlob``; ``SHAPE_FAMILIES`` / ``make_shape`` / ``random_shape`` / ``shape_from_description``.
- The simulated depth camera: ``DepthCamera`` (``render`` -> organized cloud in the optical frame),
  ``realsense_d435``, ``look_at``, ``view_of``, ``SensorConfig``, and ``stream`` of ``Frame``s.

No ROS here; numpy, scipy, open3d (ray casting) and PyMCubes only.
"""

from .camera import (LABEL_FLOOR, LABEL_NONE, LABEL_OBJECT, LABEL_WALL, CameraIntrinsics, DepthCamera,
                     Frame, Render, SensorConfig, look_at, realsense_d435, stream, view_of)
from .deformers import BendingBar, BreathingBlob, TwistingBox
from .errors import CameraError, DataError, ShapeError
from .human import BONES, HUMAN_MOTIONS, BodyParams, Human, HumanMotion
from .ranges import MotionRanges
from .shape import DeformedShape, GlobalMotion, Shape4D
from .world import FAMILY_MOTIONS, SHAPE_FAMILIES, make_shape, random_shape, shape_from_description

__all__ = [
    # shapes
    "Shape4D", "DeformedShape", "GlobalMotion", "MotionRanges",
    "Human", "BodyParams", "HumanMotion", "HUMAN_MOTIONS", "BONES",
    "BendingBar", "TwistingBox", "BreathingBlob",
    "SHAPE_FAMILIES", "FAMILY_MOTIONS", "make_shape", "random_shape", "shape_from_description",
    # camera
    "CameraIntrinsics", "realsense_d435", "look_at", "view_of", "SensorConfig", "DepthCamera",
    "Render", "Frame", "stream", "LABEL_NONE", "LABEL_OBJECT", "LABEL_FLOOR", "LABEL_WALL",
    # errors
    "DataError", "ShapeError", "CameraError",
]
