"""The house plan holds: every import between the package's rooms points down the list, and only
``ros/`` and ``apps/`` (and the CLI) talk to ROS."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "occflow_ros"
#: Each room and the rooms it may import (ARCHITECTURE's table; the CLI may import everything).
ALLOWED = {
    "model": set(),
    "geometry": {"model"},
    "tracking": {"model", "geometry"},
    "data": {"geometry"},
    "training": {"model", "data"},
    "evaluation": {"tracking", "data", "geometry", "model"},
    "ros": {"model", "geometry", "tracking", "data", "evaluation"},
    "apps": {"model", "geometry", "tracking", "data", "evaluation", "training", "ros"},
}
ROS_MODULES = {"rclpy", "rosbags", "sensor_msgs", "std_msgs", "std_srvs", "geometry_msgs",
               "visualization_msgs", "diagnostic_msgs", "builtin_interfaces", "rcl_interfaces",
               "occflow_ros_msgs", "launch", "launch_ros", "ament_index_python"}
TALKS_ROS = {"ros", "apps", "cli"}


def imports(path: Path) -> list[tuple[str, int]]:
    """(the absolute name imported, line) of every import in one module, relative ones resolved."""
    package = list(path.relative_to(REPO).with_suffix("").parts[:-1])
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.append((name, node.lineno))
    return out


def room_of(path: Path) -> str:
    parts = path.relative_to(PACKAGE).parts
    return parts[0] if len(parts) > 1 else Path(parts[0]).stem


def test_every_import_between_rooms_points_down_the_list_and_only_the_top_talks_to_ros():
    wrong = []
    rooms_seen = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        room = room_of(path)
        rooms_seen.add(room)
        for name, line in imports(path):
            parts = name.split(".")
            where = f"{path.relative_to(REPO)}:{line} imports {name}"
            if parts[0] == "occflow_ros" and len(parts) > 1:
                target = parts[1]
                if room in ALLOWED and target != room and target not in ALLOWED[room]:
                    wrong.append(f"{where} ({room} may import {sorted(ALLOWED[room])})")
            elif parts[0] in ROS_MODULES and room not in TALKS_ROS:
                wrong.append(f"{where} (only {sorted(TALKS_ROS)} talk to ROS)")
    assert not wrong, "\n".join(wrong)
    assert set(ALLOWED) <= rooms_seen  # every room of the plan exists (a renamed room fails here)


def test_the_checker_sees_an_upward_import_and_ros_below_the_top(tmp_path, monkeypatch):
    """The test above would pass on a package it cannot read: show it catches both kinds of wrong."""
    fake = tmp_path / "occflow_ros"
    for room, text in {"geometry/bad.py": "from ..tracking import Tracker\n",
                       "model/talks.py": "import rclpy\n",
                       "apps/ok.py": "from ..ros import node\nimport rclpy\n"}.items():
        (fake / room).parent.mkdir(parents=True, exist_ok=True)
        (fake / room).write_text(text)
    for room in ALLOWED:
        (fake / room).mkdir(exist_ok=True)
    monkeypatch.setattr(__import__(__name__), "REPO", tmp_path)
    monkeypatch.setattr(__import__(__name__), "PACKAGE", fake)
    try:
        test_every_import_between_rooms_points_down_the_list_and_only_the_top_talks_to_ros()
    except AssertionError as e:
        text = str(e)
    else:
        raise AssertionError("an upward import and rclpy in model/ went unnoticed")
    assert "geometry/bad.py:1 imports occflow_ros.geometry" not in text
    assert "occflow_ros/geometry/bad.py:1 imports occflow_ros.tracking" in text
    assert "occflow_ros/model/talks.py:1 imports rclpy" in text
    assert "apps/ok.py" not in text
