"""The reconstruct node's queue and bookkeeping, free of ROS: a one-slot newest-wins mailbox and windowed stats."""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any, Callable, Deque, Dict, Generic, Optional, Tuple, TypeVar

import numpy as np

__all__ = ["LatestMailbox", "NodeStats"]

T = TypeVar("T")


class LatestMailbox(Generic[T]):
    """A one-slot queue between the subscription callback and the worker: the newest item wins.

    ``put`` never blocks on the consumer (it holds the lock for a few assignments): it stores the item,
    counting the one it replaces as dropped, and wakes the worker. ``take`` waits for an item and
    empties the slot. ``close`` wakes a waiting ``take`` for good (shutdown). At every moment
    ``received == taken + dropped + queued`` with ``queued`` 0 or 1 (:meth:`counts` reads them together).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._item: Optional[T] = None
        self._full = False
        self._closed = False
        self.received = 0  # items put
        self.dropped = 0  # items replaced before anyone took them (or discarded by close)
        self.taken = 0  # items handed to the consumer

    def put(self, item: T) -> bool:
        """Store ``item`` (replacing, and counting as dropped, an untaken one); False once closed."""
        with self._cond:
            if self._closed:
                return False
            if self._full:
                self.dropped += 1
            self._item = item
            self._full = True
            self.received += 1
            self._cond.notify()
            return True

    def take(self, timeout: Optional[float] = None) -> Optional[T]:
        """The newest item, waiting up to ``timeout`` seconds (None: until one comes or the mailbox
        closes); None on timeout or when closed (an untaken item is discarded on close)."""
        with self._cond:
            if not self._full and not self._closed:
                self._cond.wait(timeout)
            if self._closed or not self._full:
                return None
            item, self._item, self._full = self._item, None, False
            self.taken += 1
            return item

    def close(self) -> None:
        """Refuse further items and wake the consumer."""
        with self._cond:
            self._closed = True
            if self._full:
                self.dropped += 1
            self._item, self._full = None, False
            self._cond.notify_all()

    def counts(self) -> Dict[str, int]:
        """``received``, ``taken``, ``dropped`` and ``queued`` (0 or 1), read together under the lock."""
        with self._cond:
            return {"received": self.received, "taken": self.taken, "dropped": self.dropped,
                    "queued": int(self._full)}

    @property
    def closed(self) -> bool:
        return self._closed


def _percentiles(values: list) -> Tuple[Optional[float], Optional[float]]:
    if not values:
        return None, None
    p50, p95 = np.percentile(np.asarray(values, np.float64), [50, 95])
    return float(p50), float(p95)


class NodeStats:
    """Counters and sliding-window measurements of the node, safe to update from several threads.

    Times are ``clock()`` seconds (monotonic by default); latencies and processing times are in ms.
    Rates and percentiles cover the last ``window`` seconds (or less, right after the first frame);
    events older than that are dropped as new ones come, so memory stays flat however long the node
    runs (``max_events`` caps a window's worth too).

    Each message the worker takes ends in exactly one outcome: ``processed`` (outputs published),
    ``rejected``, ``tracker_error``, ``publish_error`` or ``without_output`` (nothing to publish: no
    mesh yet, or abandoned at shutdown). ``held`` and ``reset`` are notes beside an outcome.
    """

    def __init__(self, window: float, clock: Callable[[], float] = time.monotonic,
                 max_events: int = 100_000) -> None:
        if not window > 0:
            raise ValueError(f"stats window must be > 0 s, got {window!r}")
        self.window = float(window)
        self._clock = clock
        self._lock = threading.Lock()
        self._received: Deque[float] = deque(maxlen=max_events)
        self._processed: Deque[Tuple[float, float, float]] = deque(maxlen=max_events)
        self._first: Optional[float] = None
        self._last_received: Optional[float] = None
        self._last_problem: Optional[float] = None
        self._failing = 0  # tracker errors since the last frame processed
        self.counts: Dict[str, int] = {"frames_received": 0, "frames_processed": 0, "keyframes": 0,
                                       "resets": 0, "held_frames": 0, "rejected_messages": 0,
                                       "tracker_errors": 0, "publish_errors": 0,
                                       "frames_without_output": 0}
        self.last: Dict[str, Any] = {"last_rejection": None, "last_reset": None, "last_held": None,
                                     "last_tracker_error": None, "last_publish_error": None,
                                     "vertices": None}

    # -- events (each takes the lock for a few operations) ----------------------------------------
    def _prune(self, t: float) -> None:
        """Forget events that left the window (called under the lock)."""
        start = t - self.window
        received, processed = self._received, self._processed
        while received and received[0] < start:
            received.popleft()
        while processed and processed[0][0] < start:
            processed.popleft()

    def received(self) -> None:
        t = self._clock()
        with self._lock:
            self._prune(t)
            self._received.append(t)
            self.counts["frames_received"] += 1
            self._last_received = t
            if self._first is None:
                self._first = t

    def processed(self, latency_ms: float, processing_ms: float, *, keyframe: bool,
                  vertices: int) -> None:
        t = self._clock()
        with self._lock:
            self._prune(t)
            self._processed.append((t, float(latency_ms), float(processing_ms)))
            self.counts["frames_processed"] += 1
            self.counts["keyframes"] += int(bool(keyframe))
            self._failing = 0
            self.last["vertices"] = int(vertices)

    def without_output(self) -> None:
        """A taken message that ended with nothing to publish (no mesh yet, or shutting down)."""
        with self._lock:
            self.counts["frames_without_output"] += 1

    def held(self, reason: str) -> None:
        with self._lock:
            self.counts["held_frames"] += 1
            self.last["last_held"] = reason

    def rejected(self, reason: str) -> None:
        with self._lock:
            self.counts["rejected_messages"] += 1
            self.last["last_rejection"] = reason
            self._last_problem = self._clock()

    def reset(self, reason: str) -> None:
        with self._lock:
            self.counts["resets"] += 1
            self.last["last_reset"] = reason

    def tracker_error(self, reason: str) -> None:
        with self._lock:
            self.counts["tracker_errors"] += 1
            self.last["last_tracker_error"] = reason
            self._last_problem = self._clock()
            self._failing += 1

    def publish_error(self, reason: str) -> None:
        with self._lock:
            self.counts["publish_errors"] += 1
            self.last["last_publish_error"] = reason
            self._last_problem = self._clock()

    # -- reading ----------------------------------------------------------------------------------
    def snapshot(self) -> Dict[str, Any]:
        """Rates (Hz), latency and processing p50/p95 (ms) over the window, counters, last reasons,
        ``events_in_window`` (received + processed events kept),
        ``seconds_since_input`` (None before the first message), ``recent_problem`` (a rejection, tracker or
        publish error within the window) and ``consecutive_tracker_errors`` (tracker errors since the last
        frame processed)."""
        t = self._clock()
        start = t - self.window
        with self._lock:
            received = sum(1 for x in self._received if x >= start)
            recent = [p for p in self._processed if p[0] >= start]
            kept = len(self._received) + len(self._processed)
            counts = dict(self.counts)
            last = dict(self.last)
            first, last_input, problem = self._first, self._last_received, self._last_problem
            failing = self._failing
        span = 0.0 if first is None else min(self.window, t - first)
        latency = _percentiles([p[1] for p in recent])
        processing = _percentiles([p[2] for p in recent])
        return {
            "input_rate_hz": received / span if span > 1e-3 else 0.0,
            "processed_rate_hz": len(recent) / span if span > 1e-3 else 0.0,
            "latency_p50_ms": latency[0], "latency_p95_ms": latency[1],
            "processing_p50_ms": processing[0], "processing_p95_ms": processing[1],
            **counts, **last,
            "seconds_since_input": None if last_input is None else t - last_input,
            "recent_problem": problem is not None and problem >= start,
            "consecutive_tracker_errors": failing,
            "events_in_window": kept,
        }
