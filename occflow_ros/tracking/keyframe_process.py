"""Keyframes meshed in a process of their own (``tracker.keyframe_worker: process``).

A background keyframe in a thread shares the interpreter with the frames it should not hold up:
on a CPU its Python steps (MISE's bookkeeping, mesh cleaning) and the tracked frames' numpy take
turns at the GIL. A process of its own builds the mesh on another core for real. It holds its own
copy of the networks (loaded once, when the tracker starts) and runs the tracker's own keyframe
build (``Tracker._build``), so its meshes are the ones an in-line keyframe would give.

What crosses: the frame's preprocessed points and the model's input points (tens of kB), and back
the mesh, the motion encoder's state and code. Cancelling sets a shared event that the build polls
between network batches, as the thread's does.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, Dict

import numpy as np
import torch

__all__ = ["KeyframeProcess"]

_CHILD: Dict[str, Any] = {}  # in the child process: the tracker that builds, the cancel event


def _start_child(model_config: dict, state: dict, tracker_config: Any, margin: float,
                 cancel: Any, threads: int) -> None:
    from ..model import ModelConfig, OccupancyFlow, limit_cpu_threads
    from .tracker import Tracker

    limit_cpu_threads(threads)
    model = OccupancyFlow(ModelConfig.from_dict(model_config))
    model.load_state_dict(state)
    config = dataclasses.replace(tracker_config, async_keyframes=False)
    _CHILD["tracker"] = Tracker(model, config, device="cpu", precision="fp32", margin=margin)
    _CHILD["cancel"] = cancel


def _ready() -> bool:
    return "tracker" in _CHILD


def _build(observed: np.ndarray, stamp: float, reason: str, norm: Any, x: np.ndarray):
    tracker = _CHILD["tracker"]
    with torch.inference_mode():
        return tracker._build(observed, stamp, reason, norm, torch.from_numpy(x)[None],
                              _CHILD["cancel"].is_set)


class KeyframeProcess:
    """One child process that meshes keyframes for a tracker on the CPU.

    ``submit(observed, stamp, reason, norm, x)`` returns a Future of the tracker's keyframe build
    (``concurrent.futures``; it raises ``TrackingCancelled`` when cancelled). ``cancel`` is the
    event the build polls: set it to stop the job in flight, clear it before the next.
    """

    def __init__(self, model: torch.nn.Module, tracker_config: Any, margin: float,
                 threads: int = 1) -> None:
        ctx = multiprocessing.get_context("spawn")  # no inherited threads, locks or DDS state
        self.cancel = ctx.Event()
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        self._pool = ProcessPoolExecutor(
            1, mp_context=ctx, initializer=_start_child,
            initargs=(model.config.to_dict(), state, tracker_config, margin, self.cancel, threads))
        self.started: Future = self._pool.submit(_ready)  # the child loads while frames go on

    def submit(self, observed: np.ndarray, stamp: float, reason: str, norm: Any,
               x: torch.Tensor) -> Future:
        self.cancel.clear()
        return self._pool.submit(_build, np.ascontiguousarray(observed, np.float32), float(stamp),
                                 reason, norm, x[0].float().cpu().numpy())

    def close(self) -> None:
        """Stop at once: a keyframe in flight is abandoned anyway, so the child is terminated rather
        than left to finish its batch and tear torch down (that took ~1 s of a node's 2 s shutdown
        budget). ``concurrent.futures`` has no public way to terminate its workers before Python
        3.14 (``terminate_workers``), so this reads the executor's process table."""
        self.cancel.set()
        table = getattr(self._pool, "_processes", None)
        processes = list(table.values()) if table else []
        self._pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.terminate()
        for process in processes:
            process.join(timeout=5)
        if not processes:
            self._pool.shutdown(wait=True)
