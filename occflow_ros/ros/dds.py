"""Keep DDS on this machine: the one place that says how (tools/env.sh, the tests, the demo, the soak).

Fast DDS on shared memory only (config/fastdds_shm.xml: large clouds arrive whole, nothing leaves
the machine), discovery limited to localhost as a second guard, a random domain (1..100) so that
parallel runs do not see each other, and Fast DDS as the RMW. Values the caller already set are
kept. Standard library only, so that tools/env.sh can run this file as a script without importing
the package (and rclpy):

    eval "$(python occflow_ros/ros/dds.py --shell)"     # what tools/env.sh does

prints ``export NAME=value`` lines for a POSIX shell (every value set afresh, as a new shell wants).
"""

from __future__ import annotations

import os
import random
import shlex
import sys
from pathlib import Path
from typing import Dict, Mapping, Optional

__all__ = ["CHECKOUT_PROFILE", "DDS_VARIABLES", "local_dds_environment", "keep_dds_local"]

#: The environment variables this module sets.
DDS_VARIABLES = ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE", "FASTDDS_DEFAULT_PROFILES_FILE",
                 "RMW_IMPLEMENTATION")

#: The Fast DDS profile in a source checkout (the installed one: ``shipped_config("fastdds_shm.xml")``).
CHECKOUT_PROFILE = Path(__file__).resolve().parents[2] / "config" / "fastdds_shm.xml"


def local_dds_environment(env: Optional[Mapping[str, str]] = None,
                          profile: Optional[Path] = None) -> Dict[str, str]:
    """A copy of ``env`` (default: this process's environment) with DDS kept on the machine, where
    the caller has not set it: ROS_DOMAIN_ID (random 1..100), ROS_AUTOMATIC_DISCOVERY_RANGE
    (LOCALHOST), FASTDDS_DEFAULT_PROFILES_FILE (``profile``, default the checkout's when it exists;
    none: Fast DDS's defaults, which the node warns about) and RMW_IMPLEMENTATION (Fast DDS)."""
    out = dict(os.environ if env is None else env)
    out.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 100)))
    out.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    profile = profile if profile is not None else (CHECKOUT_PROFILE if CHECKOUT_PROFILE.is_file()
                                                   else None)
    if profile is not None:
        out.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(profile))
    out.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    return out


def keep_dds_local(profile: Optional[Path] = None) -> Dict[str, str]:
    """:func:`local_dds_environment` applied to this process's environment (before rclpy creates a
    context, which is when these are read); returns the DDS settings now in force."""
    env = local_dds_environment(profile=profile)
    settings = {k: env[k] for k in DDS_VARIABLES if k in env}
    os.environ.update(settings)
    return settings


def main(argv: Optional[list] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args != ["--shell"]:
        print("usage: python occflow_ros/ros/dds.py --shell", file=sys.stderr)
        return 2
    fresh = {k: v for k, v in os.environ.items() if k not in DDS_VARIABLES}
    env = local_dds_environment(fresh)
    for name in DDS_VARIABLES:
        if name in env:
            print(f"export {name}={shlex.quote(env[name])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
