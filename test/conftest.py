"""Shared fixtures: DDS kept on this machine, real rclpy contexts and nodes, paths to real data."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("OCCFLOW_SHARED", REPO.parent / "shared"))
SHARED_DATA = Path(os.environ.get("OCCFLOW_SHARED_DATA", SHARED / "data"))
DFAUST_SEQUENCE = SHARED_DATA / "dfaust" / "50002_light_hopping_loose"

# DDS must never leave this machine, also when pytest is started by hand rather than by `make test`:
# occflow_ros/ros/dds.py's settings (shared memory only, localhost discovery, a domain of our own).
# They are read when rclpy creates a context, so setting them here (before any test imports rclpy) is
# enough; the file is loaded by its path so that nothing of the package (or rclpy) is imported first.
_spec = importlib.util.spec_from_file_location("occflow_dds", REPO / "occflow_ros" / "ros" / "dds.py")
_dds = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_dds)
_dds.keep_dds_local()
# One torch/OpenMP thread per process: the suite starts several torch processes (nodes, publishers) on
# small machines, and two multi-threaded OpenMP teams on the same cores slow each other down ~9x.
# Read by torch when it is first imported, and inherited by the processes the tests start.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def ros_context():
    """A fresh, initialised rclpy context, shut down after the test."""
    import rclpy
    from rclpy.context import Context

    context = Context()
    rclpy.init(context=context)
    try:
        yield context
    finally:
        context.try_shutdown()


@pytest.fixture
def make_node(ros_context):
    """Factory for nodes in the test's context; every node it made is destroyed after the test."""
    import rclpy

    nodes = []

    def _make(name: str, **kwargs):
        node = rclpy.create_node(name, context=ros_context, **kwargs)
        nodes.append(node)
        return node

    yield _make
    for node in nodes:
        node.destroy_node()


@pytest.fixture
def spin_until(ros_context):
    """spin_until(nodes, predicate, timeout) spins the nodes until predicate() is true.

    Returns the predicate's last value, so a test asserts on it and fails with a clear message when
    the condition never became true.
    """
    from rclpy.executors import SingleThreadedExecutor

    executor = SingleThreadedExecutor(context=ros_context)

    def _spin(nodes, predicate, timeout: float = 10.0):
        import time

        for node in nodes:
            executor.add_node(node)
        deadline = time.monotonic() + timeout
        try:
            while not predicate() and time.monotonic() < deadline:
                executor.spin_once(timeout_sec=0.05)
            return predicate()
        finally:
            for node in nodes:
                executor.remove_node(node)

    yield _spin
    executor.shutdown()


@pytest.fixture(scope="session")
def dfaust_sequence() -> Path:
    """The real D-FAUST sequence in ../shared/data (never copied into the project)."""
    return shared_path(DFAUST_SEQUENCE, "the shared D-FAUST sequence (set OCCFLOW_SHARED_DATA)")


def shared_path(path: Path, what: str) -> Path:
    """A path under ../shared (real data, rosdistro files), or a skip that names what is missing:
    a clone without ../shared beside it still passes the rest of the suite. On CI (CI=true) a
    missing path fails the test instead, so CI cannot go green by skipping."""
    if path.exists():
        return path
    message = f"{what} missing: {path} (../shared is not beside this clone)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)
