"""A ROS 2 parameters YAML file (``--params-file``) read without rclpy: the node's flat parameter values."""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, Mapping, Union

from .node_config import NODE_NAME, NodeConfigError

__all__ = ["load_params_file", "flatten_parameters", "parse_parameter_value", "ros_yaml_load",
           "shipped_config"]


# rcl reads an unquoted scalar that strtod takes whole as a double: `1e-5`, `2E3` and `1.0e5` too,
# which YAML 1.1 (PyYAML) leaves as strings (its floats need a dot, and a sign in the exponent)
_RCL_FLOAT = re.compile(r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+\Z")


@lru_cache(maxsize=1)
def _rcl_loader():
    import yaml

    class Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
        """PyYAML's safe loader with rcl's typing of exponent floats."""

    Loader.add_implicit_resolver("tag:yaml.org,2002:float", _RCL_FLOAT, list("-+0123456789."))
    return Loader


def ros_yaml_load(text: str) -> Any:
    """YAML parsed as rcl types a ROS 2 parameters file: PyYAML's safe loading, except that numbers
    written with an exponent but no dot or no exponent sign (``1e-5``, ``1.0e5``) are doubles, as
    rcl reads them, not strings. Raises yaml.YAMLError."""
    import yaml

    return yaml.load(text, Loader=_rcl_loader())


def parse_parameter_value(text: str) -> Any:
    """A ``-p name:=value`` value as ros2 types it (YAML with rcl's floats); text that is not
    YAML stays a string."""
    import yaml

    try:
        return ros_yaml_load(text)
    except yaml.YAMLError:
        return text


def shipped_config(name: str) -> Path:
    """A file of the package's config/ (reconstruct.yaml, fastdds_shm.xml, occflow.rviz): from the
    source checkout this module lies in, else from the installed share directory
    (``get_package_share_directory('occflow_ros')/config``, where colcon and pip put it). Raises
    NodeConfigError naming both places when neither has it."""
    checkout = Path(__file__).resolve().parents[2] / "config" / name
    if checkout.is_file():
        return checkout
    tried = [str(checkout)]
    try:
        from ament_index_python.packages import (
            PackageNotFoundError,
            get_package_share_directory,
        )

        try:
            installed = Path(get_package_share_directory("occflow_ros")) / "config" / name
        except PackageNotFoundError:
            installed = None
        if installed is not None:
            if installed.is_file():
                return installed
            tried.append(str(installed))
    except ImportError:
        pass
    raise NodeConfigError(f"config file {name} not found (looked in {', '.join(tried)}; is "
                          "occflow_ros installed, or its install space sourced?)")


def flatten_parameters(tree: Mapping[str, Any], prefix: str = "") -> Dict[str, Any]:
    """Nested ``ros__parameters`` mappings as flat dotted names (``{"tracker": {"seed": 1}}`` ->
    ``{"tracker.seed": 1}``), as rclpy reads them."""
    out: Dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten_parameters(value, name + "."))
        else:
            out[name] = value
    return out


def _pattern(key: str) -> "re.Pattern[str]":
    """rclpy's node-name wildcards: ``**`` any number of tokens, ``*`` one token."""
    key = "/" + key.strip().lstrip("/")
    parts = []
    for piece in re.split(r"(\*\*|\*)", key):
        if piece == "**":
            parts.append(".*")
        elif piece == "*":
            parts.append("[^/]*")
        else:
            parts.append(re.escape(piece))
    return re.compile("".join(parts) + r"\Z")


def load_params_file(path: Union[str, os.PathLike], *, node_name: str = NODE_NAME,
                     namespace: str = "") -> Dict[str, Any]:
    """The parameters a node named ``node_name`` in ``namespace`` gets from a ROS 2 params file.

    The file maps node names (``/**``, ``occflow_reconstruct``, ``/ns/occflow_reconstruct``, with
    rclpy's ``*`` / ``**`` wildcards) to ``ros__parameters`` (nested mappings, read as dotted names);
    every section that matches the node applies, later ones overriding earlier ones, as rclpy does.
    Parsed with :func:`ros_yaml_load` (a file is data; numbers typed as rcl types them). Returns
    name -> value, unvalidated: hand it to
    :func:`occflow_ros.ros.node_config.node_config_from_parameters`. Raises NodeConfigError naming
    the file and the problem (unreadable, not YAML, wrong layout, no section for the node).
    """
    import yaml

    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise NodeConfigError(f"params file {file}: cannot be read ({exc.strerror or exc})") from None
    try:
        data = ros_yaml_load(text)
    except yaml.YAMLError as exc:
        raise NodeConfigError(f"params file {file}: not valid YAML ({exc})") from None
    if not isinstance(data, Mapping):
        raise NodeConfigError(f"params file {file}: must map node names to 'ros__parameters' "
                              f"(e.g. '/**: {{ros__parameters: {{...}}}}'), got {type(data).__name__}")
    full_name = "/" + "/".join(p for p in (namespace.strip("/"), node_name) if p)
    values: Dict[str, Any] = {}
    matched = False
    for key, section in data.items():
        if not isinstance(key, str) or not _pattern(key).match(full_name):
            continue
        if not isinstance(section, Mapping) or not isinstance(section.get("ros__parameters"), Mapping):
            raise NodeConfigError(f"params file {file}: section {key!r} must hold a 'ros__parameters' mapping")
        matched = True
        values.update(flatten_parameters(section["ros__parameters"]))
    if not matched:
        raise NodeConfigError(f"params file {file}: no section applies to the node {full_name} "
                              f"(sections: {', '.join(map(str, data)) or 'none'}; '/**' applies to every node)")
    return values
