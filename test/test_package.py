"""The repository is an installable ROS 2 package: manifest, ament index, wheel contents, Python 3.10."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from conftest import REPO


def test_manifest_is_format_3_ament_python_with_the_ros_dependencies():
    from catkin_pkg.package import parse_package

    pkg = parse_package(str(REPO / "package.xml"))
    assert pkg.package_format == 3
    assert pkg.name == "occflow_ros"
    assert pkg.get_build_type() == "ament_python"
    deps = {d.name for d in pkg.exec_depends + pkg.build_depends + pkg.build_export_depends}
    for key in ("rclpy", "sensor_msgs", "visualization_msgs", "geometry_msgs", "std_msgs",
                "diagnostic_msgs", "occflow_ros_msgs", "python3-numpy", "python3-torch",
                "python3-open3d-pip"):
        assert key in deps, f"package.xml lacks a dependency on {key}"


def test_interface_manifest_declares_rosidl_generation():
    from catkin_pkg.package import parse_package

    pkg = parse_package(str(REPO / "msg" / "package.xml"))
    assert pkg.package_format == 3
    assert pkg.get_build_type() == "ament_cmake"
    assert "rosidl_default_generators" in {d.name for d in pkg.buildtool_depends}
    assert "rosidl_interface_packages" in {g.name for g in pkg.member_of_groups}


def test_ament_index_finds_the_installed_share_directory():
    from ament_index_python.packages import get_package_share_directory

    share = Path(get_package_share_directory("occflow_ros"))
    assert (share / "package.xml").is_file()
    assert (share / "config" / "fastdds_shm.xml").is_file()


def test_wheel_installs_data_files_and_the_resource_marker(tmp_path):
    """What colcon and `pip install .` install: the ament marker, package.xml and config in share/."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(REPO)],
        check=True, capture_output=True, cwd=tmp_path)
    (wheel,) = tmp_path.glob("occflow_ros-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    data = [n.split(".data/data/", 1)[1] for n in names if ".data/data/" in n]
    assert "share/ament_index/resource_index/packages/occflow_ros" in data
    assert "share/occflow_ros/package.xml" in data
    assert "share/occflow_ros/config/fastdds_shm.xml" in data
    assert any(n.startswith("occflow_ros/ros/") for n in names)


def test_sources_need_nothing_newer_than_python_3_10():
    """ROS 2 Humble (Ubuntu 22.04, JetPack 6) runs Python 3.10: no newer syntax or stdlib APIs."""
    result = subprocess.run(
        [str(Path(sys.executable).with_name("vermin")), "--no-tips", "--violations", "--target=3.10-",
         "--eval-annotations", "--backport", "typing_extensions",
         "occflow_ros", "test", "benchmarks", "tools", "setup.py"],
        capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_linter_finds_nothing():
    """ruff (pyflakes and pycodestyle, ruff.toml) over the whole repository: zero findings."""
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format",
                             "concise", str(REPO)], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
