"""Metrics, replay of recorded input through the tracker, and reports."""

from .evaluate import evaluate_records, evaluate_window, evaluation_tracker_config, summarize
from .metrics import (
    chamfer_l1,
    correspondence_l2,
    mesh_iou,
    nearest_indices,
    nearest_neighbour_tracks,
    sample_surface,
)
from .pictures import render_meshes, save_gif
from .report import new_directory, report_markdown, write_json, write_plots
from .sequence import LENGTH_METRICS, EvaluationError, FrameStatus, TrackedFrame, score_sequence
from .stream import StreamScorer

__all__ = [
    "EvaluationError",
    "FrameStatus",
    "LENGTH_METRICS",
    "StreamScorer",
    "TrackedFrame",
    "chamfer_l1",
    "correspondence_l2",
    "evaluate_records",
    "evaluate_window",
    "evaluation_tracker_config",
    "mesh_iou",
    "nearest_indices",
    "nearest_neighbour_tracks",
    "new_directory",
    "render_meshes",
    "report_markdown",
    "sample_surface",
    "save_gif",
    "score_sequence",
    "summarize",
    "write_json",
    "write_plots",
]
