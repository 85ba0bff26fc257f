#!/usr/bin/env bash
# Set up a development machine for occflow_ros, from nothing, idempotently.
#
# Steps (each skipped when already done; a second run installs nothing):
#   1. Debian/Ubuntu packages: libusb (open3d), Vulkan + Mesa (offscreen rendering), cmake, g++, make
#   2. the virtual environment .venv (or $OCCFLOW_VENV)
#   3. torch==2.13.0, only when the environment has no torch at all (bring your own CUDA/Jetson build)
#   4. pip requirements (ROS wheels, Python deps, test tools), re-run only when a requirements file changed
#   5. the interface package msg/ (rosidl), rebuilt only when msg/ changed
#   6. occflow_ros itself, editable, re-run only when its packaging files changed, with its share/
#      files and executable linked where ament and launch_ros look
#   7. ROS 2's launch system from ../shared/ros2, when it is there (ros2 launch)
#
# Every step prints one line saying what it did or that it was up to date.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${OCCFLOW_VENV:-$root/.venv}
python=${PYTHON:-python3}
stamps=$venv/.occflow-setup
torch_spec=${OCCFLOW_TORCH_SPEC:-torch==2.13.0}

say() { printf '[setup] %s\n' "$*"; }

# hash_of FILE... -> one sha256 over the files' names and contents (missing files hash as empty)
hash_of() {
  local f
  for f in "$@"; do
    printf '%s\n' "$f"
    if [ -f "$root/$f" ]; then cat "$root/$f"; fi
  done | sha256sum | cut -d' ' -f1
}
stamp_ok() { [ -f "$stamps/$1" ] && [ "$(cat "$stamps/$1")" = "$2" ]; }
stamp_set() { mkdir -p "$stamps"; printf '%s' "$2" >"$stamps/$1"; }

# 1. system packages ---------------------------------------------------------------------------
apt_pkgs=(libusb-1.0-0 libvulkan1 mesa-vulkan-drivers cmake g++ make)
if ! "$python" -c 'import ensurepip, venv' >/dev/null 2>&1; then
  apt_pkgs+=(python3-venv)
fi
missing=()
if command -v dpkg-query >/dev/null 2>&1; then
  for p in "${apt_pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
fi
if [ ${#missing[@]} -eq 0 ]; then
  say "system packages: up to date"
elif command -v apt-get >/dev/null 2>&1; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo=sudo; fi
  say "system packages: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  say "system packages: no apt-get here; install yourself: ${missing[*]}" >&2
fi

# 2. virtual environment -----------------------------------------------------------------------
if [ -x "$venv/bin/python" ]; then
  say "virtual environment $venv: up to date"
else
  say "virtual environment $venv: creating"
  "$python" -m venv "$venv"
fi
vpy="$venv/bin/python"
# pip, quiet; its full output is shown only when it fails
pip() {
  local log; log=$(mktemp)
  if ! "$vpy" -m pip --disable-pip-version-check -q "$@" >"$log" 2>&1; then
    cat "$log" >&2; rm -f "$log"; say "pip $* FAILED" >&2; return 1
  fi
  rm -f "$log"
}

# A fresh venv brings the Python's bundled pip (23.x on Debian 12's 3.11). That pip installs a project
# without pyproject.toml in editable mode through the legacy `setup.py develop`, which setuptools >= 80
# rejects on the colcon [develop] section of setup.cfg. pip >= 25.1 uses PEP 660 editable wheels instead.
if ! "$vpy" -c 'import sys, pip; sys.exit(tuple(map(int, pip.__version__.split(".")[:2])) < (25, 1))' 2>/dev/null; then
  say "pip: upgrading the venv's pip (>= 25.1, for PEP 660 editable installs)"
  pip install --upgrade "pip>=25.1"
fi

# 3. torch ------------------------------------------------------------------------------------
if "$vpy" -c 'import torch' >/dev/null 2>&1; then
  say "torch: present ($("$vpy" -c 'import torch; print(torch.__version__)')), kept"
else
  say "torch: installing $torch_spec"
  pip install "$torch_spec"
fi

# 4. pip requirements -------------------------------------------------------------------------
req_hash=$(hash_of requirements.txt requirements-ros-wheels.txt requirements-dev.txt)
if stamp_ok requirements "$req_hash"; then
  say "pip requirements: up to date"
else
  say "pip requirements: installing"
  pip install "setuptools>=64" wheel -r "$root/requirements-ros-wheels.txt" \
    -r "$root/requirements.txt" -r "$root/requirements-dev.txt"
  stamp_set requirements "$req_hash"
fi

# 5. interfaces (msg/) ------------------------------------------------------------------------
msg_hash=$(cd "$root" && hash_of $(find msg -type f | LC_ALL=C sort))
if stamp_ok interfaces "$msg_hash" && "$vpy" -c 'import occflow_ros_msgs.msg' >/dev/null 2>&1; then
  say "interfaces (msg/): up to date"
else
  say "interfaces (msg/): building occflow_ros_msgs with rosidl"
  build=$root/build/msg
  rm -rf "$build"
  log=$root/build/msg-build.log
  mkdir -p "$root/build"
  if ! (export AMENT_PREFIX_PATH=$venv CMAKE_PREFIX_PATH=$venv PATH=$venv/bin:$PATH
        cmake -S "$root/msg" -B "$build" -DCMAKE_INSTALL_PREFIX="$venv" \
          -DPython3_EXECUTABLE="$vpy" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF &&
        cmake --build "$build" -j"$(nproc)" && cmake --install "$build") >"$log" 2>&1; then
    tail -40 "$log" >&2
    say "interfaces (msg/): build FAILED, full log in $log" >&2
    exit 1
  fi
  stamp_set interfaces "$msg_hash"
fi

# 6. occflow_ros (editable) -------------------------------------------------------------------
pkg_hash=$(hash_of setup.py setup.cfg)
if stamp_ok package "$pkg_hash" && "$vpy" -c 'import occflow_ros' >/dev/null 2>&1; then
  say "occflow_ros (editable): up to date"
else
  say "occflow_ros (editable): installing"
  pip install --no-deps --no-build-isolation -e "$root"
  stamp_set package "$pkg_hash"
fi

# An editable install does not install setup.py's data_files. Link them into the venv's share/ the way
# `colcon build --symlink-install` does, so ament_index finds launch/ and config/ and edits show at once.
# launch/ is a real directory of linked files: `ros2 launch occflow_ros <file>` finds launch files
# with os.walk, which does not enter a linked directory. The node's executable goes where
# `ros2 run`/launch_ros look for it (lib/occflow_ros/, what setup.cfg gives a colcon install).
share=$venv/share/occflow_ros
index=$venv/share/ament_index/resource_index/packages
mkdir -p "$share" "$index" "$venv/lib/occflow_ros"
linked=0
for item in config package.xml; do
  if [ "$(readlink "$share/$item" 2>/dev/null)" != "$root/$item" ]; then
    ln -sfn "$root/$item" "$share/$item"; linked=1
  fi
done
if [ -L "$share/launch" ]; then rm "$share/launch"; linked=1; fi
mkdir -p "$share/launch"
for f in "$root"/launch/*.launch.py; do
  if [ "$(readlink "$share/launch/$(basename "$f")" 2>/dev/null)" != "$f" ]; then
    ln -sfn "$f" "$share/launch/$(basename "$f")"; linked=1
  fi
done
for f in "$share"/launch/*; do  # links to launch files that are gone
  if [ -L "$f" ] && [ ! -e "$f" ]; then rm "$f"; linked=1; fi
done
if [ "$(readlink "$venv/lib/occflow_ros/reconstruct" 2>/dev/null)" != "$venv/bin/reconstruct" ]; then
  ln -sfn "$venv/bin/reconstruct" "$venv/lib/occflow_ros/reconstruct"; linked=1
fi
[ -f "$index/occflow_ros" ] || { touch "$index/occflow_ros"; linked=1; }
if [ $linked -eq 1 ]; then say "share/occflow_ros: linked into $venv"; else say "share/occflow_ros: up to date"; fi

# 7. ROS 2's launch system (launch, launch_ros, ros2launch, ros2cli): the ROS wheels lack it; a
# ROS install has it. Installed from ../shared/ros2 (upstream sources) when that is beside the
# repository, so that `ros2 launch occflow_ros reconstruct.launch.py` runs here and in CI.
shared_ros2=${OCCFLOW_SHARED:-$root/../shared}/ros2
if [ -x "$shared_ros2/install.sh" ]; then
  ros2_hash=$(cat "$shared_ros2/SOURCES.txt" "$shared_ros2/install.sh" 2>/dev/null | sha256sum | cut -d' ' -f1)
  if stamp_ok ros2launch "$ros2_hash" && "$vpy" -c 'import launch_ros, ros2launch' >/dev/null 2>&1 \
      && [ -x "$venv/bin/ros2" ]; then
    say "ros2 launch: up to date"
  else
    say "ros2 launch: installing launch, launch_ros, ros2cli from $shared_ros2"
    log=$root/build/ros2-install.log
    mkdir -p "$root/build"
    if ! "$shared_ros2/install.sh" "$venv" >"$log" 2>&1; then
      tail -40 "$log" >&2
      say "ros2 launch: install FAILED, full log in $log" >&2
      exit 1
    fi
    stamp_set ros2launch "$ros2_hash"
  fi
else
  say "ros2 launch: $shared_ros2 not found, not installed (a ROS install brings it)"
fi
