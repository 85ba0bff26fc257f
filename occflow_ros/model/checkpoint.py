"""Checkpoint files: weights, model config, normalisation convention, training provenance, format version.

A checkpoint is data, never code: it is read with ``torch.load(weights_only=True)``, which refuses
anything but tensors and plain containers, so a malicious file cannot run code on load.
"""

from __future__ import annotations

import io
import os
import pickle
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

from .config import ModelConfig, ModelError
from .occflow import OccupancyFlow

__all__ = ["CheckpointError", "Checkpoint", "save_checkpoint", "load_checkpoint",
           "export_checkpoint", "shipped_model_path", "SHIPPED_MODEL_FILE",
           "FORMAT_NAME", "FORMAT_VERSION", "DEFAULT_NORMALIZATION_CONVENTION"]

SHIPPED_MODEL_FILE = "occflow_default.pt"
FORMAT_NAME = "occflow_ros.checkpoint"
FORMAT_VERSION = 1

# How the inputs the model was trained on were normalised; the tracker reproduces this at run time.
DEFAULT_NORMALIZATION_CONVENTION: dict[str, Any] = {
    "space": "metres = loc + scale * p, in the input's (sensor) frame; at each keyframe loc is the "
             "bounding-box centre of the keyframe's preprocessed input points and "
             "scale = longest bounding-box side / (1 - margin) (occflow_ros.geometry.fit_normalization)",
    "margin": 0.15,
    "box_size": 1.1,
    "time": "t = (stamp - keyframe_stamp) / window_seconds",
}


def shipped_model_path() -> Path:
    """The model shipped with the package: ``occflow_ros/weights/occflow_default.pt`` (installed by
    setup.py's package_data). The one place that names it."""
    return Path(__file__).resolve().parents[1] / "weights" / SHIPPED_MODEL_FILE


class CheckpointError(ModelError):
    """A checkpoint file that is missing, unreadable, of another format or not matching its model."""


@dataclass
class Checkpoint:
    """What a checkpoint file holds, with the model already built and loaded."""

    model: OccupancyFlow
    config: ModelConfig
    normalization: dict[str, Any]
    training: dict[str, Any]
    path: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def save_checkpoint(path: str | os.PathLike, model: OccupancyFlow, *,
                    normalization: Mapping[str, Any] | None = None,
                    training: Mapping[str, Any] | None = None,
                    extra: Mapping[str, Any] | None = None, overwrite: bool = False) -> Path:
    """Write model + provenance to ``path`` atomically (a temporary file renamed into place).

    normalization: the input convention (defaults to DEFAULT_NORMALIZATION_CONVENTION).
    training: a description of the training data and run (command, seed, dataset, metrics).
    extra: further plain data (optimizer state for resuming, ...). Values must be tensors or plain
    Python containers of str/int/float/bool/None.
    Refuses to replace an existing file unless ``overwrite`` (nothing a user has is lost silently).
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise CheckpointError(f"{path}: exists; refusing to overwrite it")
    payload = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "model_config": model.config.to_dict(),
        "normalization": dict(normalization or DEFAULT_NORMALIZATION_CONVENTION),
        "training": dict(training or {}),
        "extra": dict(extra or {}),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def export_checkpoint(src: str | os.PathLike, dst: str | os.PathLike, *,
                      overwrite: bool = False) -> Path:
    """Write ``src``'s model, normalisation and provenance to ``dst`` without its training state
    (optimizer, step): the file a model ships as (it loads with ``weights_only=True``)."""
    ckpt = load_checkpoint(src)
    return save_checkpoint(dst, ckpt.model, normalization=ckpt.normalization,
                           training=dict(ckpt.training, exported_from=str(src)),
                           overwrite=overwrite)


def _read(path: Path, map_location: Any) -> Any:
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if not path.is_file():
        raise CheckpointError(f"{path}: not a regular file")
    data = path.read_bytes()
    if not data:
        raise CheckpointError(f"{path}: empty file (0 bytes); the checkpoint was not written fully")
    if not zipfile.is_zipfile(io.BytesIO(data)):
        # torch.save writes a zip archive; anything else is truncated or not a torch file at all.
        what = "truncated or corrupt" if data[:2] == b"PK" else "not a torch checkpoint"
        raise CheckpointError(f"{path}: {what} ({len(data)} bytes, no valid zip archive)")
    try:
        return torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(f"{path}: refused to load: it holds objects other than tensors and "
                              f"plain data ({e})") from None
    except (RuntimeError, EOFError, ValueError, KeyError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({type(e).__name__}: {e})"
                              ) from None


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu", *,
                    expect_input_points: int | None = None) -> Checkpoint:
    """Read a checkpoint and build its model (in eval mode) on ``map_location``.

    expect_input_points: if given, refuse a model trained for a different number of input points.
    Raises CheckpointError naming the file and the problem: missing, empty, truncated/corrupt, not
    an occflow_ros checkpoint, a format version this code cannot read, an invalid config, weights
    that do not match the config, or another input size.
    """
    path = Path(path)
    payload = _read(path, map_location)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_NAME:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(f"{path}: not an occflow_ros checkpoint (format {found!r}, expected "
                              f"{FORMAT_NAME!r})")
    version = payload.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {version!r}; this occflow_ros "
                              f"reads version {FORMAT_VERSION}")
    for key in ("model_config", "state_dict", "normalization", "training"):
        if key not in payload:
            raise CheckpointError(f"{path}: checkpoint lacks '{key}'")
    raw_config = payload["model_config"]
    if isinstance(raw_config, dict) and "fourier_octaves" not in raw_config:
        # written before the networks had Fourier features: they saw raw coordinates
        raw_config = dict(raw_config, fourier_octaves=0)
    try:
        config = ModelConfig.from_dict(raw_config)
    except (ModelError, TypeError) as e:
        raise CheckpointError(f"{path}: invalid model config: {e}") from None
    if expect_input_points is not None and config.input_points != expect_input_points:
        raise CheckpointError(f"{path}: model was trained for {config.input_points} input points "
                              f"per frame, but {expect_input_points} were asked for")
    model = OccupancyFlow(config)
    state = payload["state_dict"]
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state)
                   if tuple(expected[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong:
        details = []
        if missing:
            details.append(f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}")
        if unexpected:
            details.append(f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}")
        if wrong:
            k = wrong[0]
            details.append(f"{len(wrong)} with wrong shape, e.g. {k}: file "
                           f"{tuple(state[k].shape)} vs config {tuple(expected[k].shape)}")
        raise CheckpointError(f"{path}: weights do not match the model config: "
                              + "; ".join(details))
    model.load_state_dict(state)
    model.to(map_location if not callable(map_location) else "cpu")
    model.eval()
    return Checkpoint(model=model, config=config, normalization=dict(payload["normalization"]),
                      training=dict(payload["training"]), path=path,
                      extra=dict(payload.get("extra", {})))
