# Source this file to run occflow_ros from the project's virtual environment with DDS kept on this
# machine:  . tools/env.sh
#
# - the venv's bin/ first on PATH; AMENT_PREFIX_PATH so ament_index finds our share/ directory
# - a random ROS_DOMAIN_ID (1..100) for this shell, so parallel runs do not see each other
# - Fast DDS on shared memory only (config/fastdds_shm.xml): large clouds arrive, nothing leaves
#   the machine; discovery is limited to localhost as a second guard
# shellcheck shell=bash
_occflow_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
_occflow_venv=${OCCFLOW_VENV:-$_occflow_root/.venv}
export VIRTUAL_ENV=$_occflow_venv
export PATH=$_occflow_venv/bin:$PATH
export AMENT_PREFIX_PATH=$_occflow_venv${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}
export ROS_DOMAIN_ID=$((RANDOM % 100 + 1))
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export FASTDDS_DEFAULT_PROFILES_FILE=$_occflow_root/config/fastdds_shm.xml
export RMW_IMPLEMENTATION=rmw_fastrtps_cpp
unset _occflow_root _occflow_venv
