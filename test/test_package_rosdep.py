"""Every dependency in both package.xml files resolves with rosdep on each supported distribution:
a rosdep key with an entry for the distribution's Ubuntu release, a ROS package released in that
distribution, or one of this repository's own packages. Checked against rosdistro's own files in
../shared/rosdistro (rosdep/*.yaml, <distro>/distribution.yaml), as `rosdep install` would."""

from __future__ import annotations

from functools import lru_cache

import pytest
import yaml

from conftest import REPO, SHARED, shared_path

DISTROS = ("humble", "jazzy", "kilted")
MANIFESTS = (REPO / "package.xml", REPO / "msg" / "package.xml")


def _load(path):
    return yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


@lru_cache(maxsize=None)
def _rosdep_keys() -> dict:
    root = shared_path(SHARED / "rosdistro" / "rosdep", "rosdistro's rosdep files")
    keys: dict = {}
    for name in ("base.yaml", "python.yaml"):
        keys.update(_load(root / name))
    return keys


@lru_cache(maxsize=None)
def _distribution(distro: str) -> tuple[frozenset, tuple]:
    """(released package names, Ubuntu codenames) of a ROS distribution."""
    path = shared_path(SHARED / "rosdistro" / distro / "distribution.yaml",
                       f"rosdistro's {distro} distribution file")
    data = _load(path)
    names = set()
    for repo_name, repo in (data.get("repositories") or {}).items():
        release = (repo or {}).get("release")
        if release:
            names.update(release.get("packages") or [repo_name])
    return frozenset(names), tuple(data["release_platforms"]["ubuntu"])


def _resolves_on_ubuntu(entry, codename: str) -> bool:
    """rosdep's lookup of one key's entry for ubuntu/<codename>: the OS (or '*'), then the
    release (or '*'); a null there means 'not available'."""
    if not isinstance(entry, dict):
        return False
    rule = entry.get("ubuntu", entry.get("*"))
    if isinstance(rule, dict) and not rule.keys() & {"pip", "apt", "source"}:
        rule = rule.get(codename, rule.get("*"))
    if isinstance(rule, dict) and "pip" in rule:
        return bool((rule["pip"] or {}).get("packages"))
    if isinstance(rule, dict) and "apt" in rule:
        return bool((rule["apt"] or {}).get("packages"))
    return bool(rule)


def _dependencies() -> dict:
    from catkin_pkg.package import parse_package

    own, deps = set(), {}
    for manifest in MANIFESTS:
        pkg = parse_package(str(manifest))
        own.add(pkg.name)
        for kind in ("build_depends", "buildtool_depends", "build_export_depends",
                     "buildtool_export_depends", "exec_depends", "test_depends", "doc_depends"):
            for dep in getattr(pkg, kind):
                deps.setdefault(dep.name, set()).add(f"{manifest.relative_to(REPO)} {kind}")
    return {name: where for name, where in deps.items() if name not in own}


@pytest.mark.parametrize("distro", DISTROS)
def test_every_dependency_resolves_with_rosdep(distro):
    keys = _rosdep_keys()
    released, codenames = _distribution(distro)
    missing = []
    for name, where in sorted(_dependencies().items()):
        if name in released:
            continue
        if name in keys and all(_resolves_on_ubuntu(keys[name], c) for c in codenames):
            continue
        missing.append(f"{name} ({', '.join(sorted(where))})")
    assert not missing, (f"not resolvable by rosdep on {distro} (Ubuntu {', '.join(codenames)}): "
                         + "; ".join(missing))


def test_the_check_knows_a_key_that_does_not_resolve():
    """The lookup itself: an unknown key, a release marked null, a pip rule, a plain apt list."""
    keys = _rosdep_keys()
    assert "python3-pymcubes-pip" not in keys  # what the manifest named before: not a key
    assert _resolves_on_ubuntu({"ubuntu": {"*": ["python3-torch"], "focal": None}}, "jammy")
    assert not _resolves_on_ubuntu({"ubuntu": {"*": ["python3-torch"], "focal": None}}, "focal")
    assert _resolves_on_ubuntu({"ubuntu": {"pip": {"packages": ["open3d"]}}}, "noble")
    assert not _resolves_on_ubuntu({"debian": ["python3-x"]}, "noble")
    assert _resolves_on_ubuntu(keys["python3-numpy"], "noble")
    released, _ = _distribution("humble")
    assert "rclpy" in released and "sensor_msgs" in released
