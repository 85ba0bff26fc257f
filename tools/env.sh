# Source this file to run occflow_ros from the project's virtual environment with DDS kept on this
# machine:  . tools/env.sh
#
# - the venv's bin/ first on PATH; AMENT_PREFIX_PATH so ament_index finds our share/ directory
# - DDS kept on this machine, as occflow_ros/ros/dds.py says (the one place that does, also for the
#   tests, the demo and the soak): a random ROS_DOMAIN_ID (1..100) for this shell, Fast DDS on
#   shared memory only (config/fastdds_shm.xml), discovery limited to localhost
# shellcheck shell=bash
_occflow_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
_occflow_venv=${OCCFLOW_VENV:-$_occflow_root/.venv}
export VIRTUAL_ENV=$_occflow_venv
export PATH=$_occflow_venv/bin:$PATH
export AMENT_PREFIX_PATH=$_occflow_venv${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}
eval "$(python3 "$_occflow_root/occflow_ros/ros/dds.py" --shell)"
unset _occflow_root _occflow_venv
