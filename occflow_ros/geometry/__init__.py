"""Meshing (MISE + marching cubes), mesh cleanup, point-cloud filtering, normalisation, registration
(rigid, and non-rigid with a deformation graph).

Everything here works on numpy arrays and plain callables: no ROS, and no import of the model room
(a model's occupancy enters meshing as ``field(points (M, 3) float32) -> (M,) logits``). open3d is
imported only inside the functions that use it.
"""

from .deformation import DeformationGraph
from .errors import GeometryError, MeshError, MeshingError, NormalizationError, PreprocessError
from .mesh import clean_mesh, is_watertight, mesh_area, mesh_volume, simplify_mesh
from .mise import MeshResult, extract_mesh, extract_mesh_dense, logit, marching_cubes
from .normalization import Normalization
from .queries import MeshScene, closest_surface_points, vertex_normals
from .registration import best_rigid_motion, frame_poses, next_pose, register_to_keyframe
from .preprocess import (PreprocessConfig, PreprocessResult, StageCounts, even_stride,
                         fit_normalization, preprocess, remove_outliers, valid_mask,
                         voxel_downsample)

__all__ = [
    # normalisation
    "Normalization",
    # meshing
    "MeshResult", "extract_mesh", "extract_mesh_dense", "marching_cubes", "logit",
    # mesh utilities
    "clean_mesh", "simplify_mesh", "mesh_area", "mesh_volume", "is_watertight",
    # point-cloud preprocessing
    "PreprocessConfig", "PreprocessResult", "StageCounts", "preprocess", "fit_normalization",
    "even_stride",
    "valid_mask", "voxel_downsample", "remove_outliers",
    # queries against a mesh
    "MeshScene", "closest_surface_points", "vertex_normals",
    # rigid registration, non-rigid tracking of a mesh
    "frame_poses", "next_pose", "register_to_keyframe", "best_rigid_motion", "DeformationGraph",
    # errors
    "GeometryError", "NormalizationError", "MeshingError", "MeshError", "PreprocessError",
]
