"""The reconstruct node's queue policy and bookkeeping: newest-wins mailbox, drop counting, windowed stats."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from occflow_ros.ros.node_runtime import LatestMailbox, NodeStats


def test_the_mailbox_keeps_only_the_newest_item_and_counts_the_replaced_ones_as_dropped():
    box: LatestMailbox[int] = LatestMailbox()
    for i in range(5):
        assert box.put(i)
    assert box.take(timeout=0) == 4
    assert (box.received, box.dropped) == (5, 4)
    assert box.take(timeout=0.01) is None, "taken items are gone"
    box.put(5)
    assert box.take(timeout=0) == 5 and box.dropped == 4, "a taken item is not a dropped one"


def test_take_waits_for_a_put_from_another_thread_and_close_wakes_it_for_good():
    box: LatestMailbox[str] = LatestMailbox()
    got = []
    taker = threading.Thread(target=lambda: got.append(box.take(timeout=5)))
    taker.start()
    time.sleep(0.05)
    box.put("cloud")
    taker.join(2)
    assert got == ["cloud"]

    started = time.monotonic()
    waiter = threading.Thread(target=lambda: got.append(box.take(timeout=5)))
    waiter.start()
    time.sleep(0.05)
    box.close()
    waiter.join(2)
    assert got == ["cloud", None] and time.monotonic() - started < 1.0
    assert not box.put("late") and box.take(timeout=0) is None, "closed: nothing goes in or out"


def test_put_returns_in_microseconds_while_the_consumer_is_busy():
    box: LatestMailbox[bytes] = LatestMailbox()
    payload = bytes(5_000_000)  # a 640x480 cloud: stored by reference, never copied
    stop = threading.Event()

    def busy_consumer():
        while not stop.is_set():
            if box.take(timeout=0.01) is not None:
                time.sleep(0.02)  # "processing"

    consumer = threading.Thread(target=busy_consumer)
    consumer.start()
    try:
        times = []
        for _ in range(2000):
            t0 = time.perf_counter()
            box.put(payload)
            times.append(time.perf_counter() - t0)
    finally:
        stop.set()
        consumer.join()
    assert np.median(times) < 50e-6, f"median put {np.median(times) * 1e6:.1f} us"
    assert box.dropped > 1000


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_stats_give_rates_and_latency_percentiles_over_the_window_only():
    clock = FakeClock()
    stats = NodeStats(window=2.0, clock=clock)
    assert stats.snapshot()["seconds_since_input"] is None
    for i in range(100):  # 10 s at 10 Hz in, every second frame processed with latency i ms
        stats.received()
        if i % 2 == 0:
            stats.processed(latency_ms=float(i), processing_ms=5.0, keyframe=i % 10 == 0, vertices=7)
        clock.t += 0.1
    s = stats.snapshot()
    assert s["input_rate_hz"] == pytest.approx(10.0, abs=0.6)
    assert s["processed_rate_hz"] == pytest.approx(5.0, abs=0.6)
    recent = [float(i) for i in range(100) if i % 2 == 0 and 100.0 + 0.1 * i >= clock.t - 2.0]
    assert s["latency_p50_ms"] == pytest.approx(np.percentile(recent, 50))
    assert s["latency_p95_ms"] == pytest.approx(np.percentile(recent, 95))
    assert s["processing_p50_ms"] == 5.0
    assert (s["frames_received"], s["frames_processed"], s["keyframes"], s["vertices"]) == (100, 50, 10, 7)

    clock.t += 5.0  # the stream stopped: rates fall to zero, counters stay
    s = stats.snapshot()
    assert s["input_rate_hz"] == 0 and s["processed_rate_hz"] == 0 and s["latency_p50_ms"] is None
    assert s["seconds_since_input"] == pytest.approx(5.1) and s["frames_received"] == 100


def test_stats_count_problems_with_their_last_reason_and_flag_recent_ones():
    clock = FakeClock()
    stats = NodeStats(window=1.0, clock=clock)
    stats.rejected("malformed PointCloud2: no field 'z'")
    stats.reset("frame_id changed")
    stats.held("empty frame")
    stats.tracker_error("RuntimeError: boom")
    s = stats.snapshot()
    assert (s["rejected_messages"], s["resets"], s["held_frames"], s["tracker_errors"]) == (1, 1, 1, 1)
    assert s["last_rejection"] == "malformed PointCloud2: no field 'z'"
    assert s["last_reset"] == "frame_id changed" and s["last_tracker_error"] == "RuntimeError: boom"
    assert s["recent_problem"]
    clock.t += 2.0
    assert not stats.snapshot()["recent_problem"], "older than the window"
    with pytest.raises(ValueError, match="window"):
        NodeStats(window=0.0)
