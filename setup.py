"""Packaging of occflow_ros: the same file serves colcon (ament_python) and pip."""

from glob import glob

from setuptools import find_packages, setup

package_name = "occflow_ros"

setup(
    name=package_name,
    version="0.1.0",
    description="4D reconstruction from a depth-camera stream with Occupancy Flow, for ROS 2",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=[package_name, package_name + ".*"]),
    package_data={package_name: ["weights/*.pt", "weights/*.json"]},
    data_files=[
        # the ament resource-index marker: lets get_package_share_directory() find us
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        ("share/" + package_name + "/launch", sorted(glob("launch/*.launch.py"))),
        ("share/" + package_name + "/config", sorted(glob("config/*.yaml") + glob("config/*.xml")
                                                     + glob("config/*.rviz"))),
    ],
    # Non-ROS Python dependencies; ROS ones (rclpy, messages) come from the distro or the ros-* wheels.
    # torch is a range so GPU and Jetson users keep their own build. open3d is left to requirements.txt
    # because the CPU wheel (open3d-cpu) and the full one provide the same module under two names.
    install_requires=[
        "numpy>=1.21",
        "scipy>=1.8",
        "pyyaml>=5.4",
        "tqdm>=4.60",
        "torch>=2.1",
        "torchdiffeq>=0.2.3",
        "PyMCubes>=0.1.4",
        "threadpoolctl>=3.1",
        "rosbags>=0.11",
    ],
    zip_safe=False,
    entry_points={
        "console_scripts": [
            "reconstruct = occflow_ros.ros.node:main",
            "occflow-train = occflow_ros.cli:train_main",
            "occflow-make-dataset = occflow_ros.cli:make_dataset_main",
            "occflow-eval = occflow_ros.cli:eval_main",
            "occflow-replay = occflow_ros.cli:replay_main",
            "replay = occflow_ros.cli:replay_main",
            "occflow-make-bag = occflow_ros.cli:make_bag_main",
            "occflow-demo = occflow_ros.cli:demo_main",
        ],
    },
)
