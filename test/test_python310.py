"""The tracker and the node's parameter code on Python 3.10 (ROS 2 Humble on Ubuntu 22.04, JetPack 6).

The suite runs on 3.11; a 3.10 interpreter of this machine (pyenv's, or python3.10 on PATH) gets a
virtual environment of its own with requirements.txt and torch 2.13.0 (PyPI's build for 3.10 is the
CUDA one; it runs on the CPU), made once and kept under ~/.cache/occflow_ros/ keyed by the
requirements, and runs the checkout there (no ROS needed: the parameter code and the tracker import
none). It reads config/reconstruct.yaml as rcl types it, applies the preset, builds the node's
configuration and refuses a bad value by name; then tracks the demo's person with a keyframe in the
background and waits for it with a timeout (Future.exception(timeout) raises
concurrent.futures.TimeoutError on 3.10, a class of its own before 3.11).

Where no 3.10 interpreter exists, or its environment cannot be installed, the test skips saying
so (on CI, CI=true, it fails instead); with less than ~7 GB of free disk for the environment
(~5.4 GB) it skips saying how much there is, on CI too. The first run takes ~2 minutes here.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import REPO

TORCH = "torch==2.13.0"
NEEDS_BYTES = 7 * 2**30  # the environment is ~5.4 GB (torch's CUDA libraries), with room to unpack
SCRIPT = r'''
import dataclasses, json, sys
import numpy as np
assert sys.version_info[:2] == (3, 10), sys.version
from occflow_ros.ros.params_file import load_params_file, shipped_config
from occflow_ros.ros.node_config import NodeConfigError, apply_preset, node_config_from_parameters
out = {"python": sys.version.split()[0]}
params = dict(load_params_file(shipped_config("reconstruct.yaml")))
out["atol_type"] = type(params["tracker.solver.atol"]).__name__
params["device"] = "cpu"
params, preset, _ = apply_preset(params)
config = node_config_from_parameters(params)
out["preset"] = preset
out["resolution0"] = config.tracker.meshing.resolution0
try:
    node_config_from_parameters({**params, "tracker.max_frames": 1})
except NodeConfigError as e:
    out["refused"] = str(e)
import torch
from occflow_ros.data.demo_scene import DemoScene, SceneConfig
from occflow_ros.model import limit_cpu_threads, load_checkpoint
from occflow_ros.tracking import Tracker
limit_cpu_threads(1)
scene = DemoScene(SceneConfig(seconds=2.0, fps=10.0, width=160, height=120))
scene.render()
tracker = Tracker(load_checkpoint(config.model_path, map_location="cpu"),
                  dataclasses.replace(config.tracker, async_keyframes=True,
                                      keyframe_worker="thread", window_seconds=0.6),
                  device="cpu")
out["keyframes"], out["tracked"], out["waits"] = 0, 0, []
for k in range(len(scene)):
    mesh = tracker.feed(scene.cloud(k).reshape(-1, 3), float(scene.times[k]))
    if mesh is None:
        continue
    assert np.isfinite(mesh.vertices).all() and len(mesh.faces)
    out["keyframes" if mesh.info.get("keyframe") else "tracked"] += 1
    if tracker.background_keyframe is not None and len(out["waits"]) < 2:
        out["waits"].append(tracker.wait_for_keyframe(timeout=0.0))  # in flight: False, no raise
        out["waits"].append(tracker.wait_for_keyframe(timeout=120.0))
tracker.close()
print(json.dumps(out))
'''


def python310() -> str | None:
    """A working 3.10 interpreter: pyenv's 3.10.x, else python3.10 on PATH (a pyenv shim on PATH
    may name a version that is not selected, so each candidate is run once)."""
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates = sorted(glob.glob(str(pyenv / "versions" / "3.10*" / "bin" / "python")))
    candidates += [c for c in [shutil.which("python3.10")] if c]
    for candidate in candidates:
        check = subprocess.run([candidate, "-c", "import sys; print(sys.version_info[:2])"],
                               capture_output=True, text=True)
        if check.returncode == 0 and check.stdout.strip() == "(3, 10)":
            return candidate
    return None


def unavailable(message: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def environment(interpreter: str) -> Path:
    """The cached 3.10 environment with the requirements (made here if missing)."""
    requirements = (REPO / "requirements.txt").read_text()
    key = hashlib.sha256((requirements + TORCH + interpreter).encode()).hexdigest()[:12]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    venv = cache / "occflow_ros" / f"py310-{key}"
    python = venv / "bin" / "python"
    if (venv / "ready").is_file():
        return python
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(venv.parent).free
    if free < NEEDS_BYTES:  # a full disk cannot hold it, on CI or not: say so
        pytest.skip(f"the Python 3.10 environment needs ~{NEEDS_BYTES / 2**30:.0f} GB under "
                    f"{venv.parent}, {free / 2**30:.1f} GB free")
    steps = [[interpreter, "-m", "venv", str(venv)],
             [str(python), "-m", "pip", "install", "-q", TORCH, "-r",
              str(REPO / "requirements.txt")]]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, timeout=1200)
        if done.returncode != 0:
            shutil.rmtree(venv, ignore_errors=True)
            unavailable(f"could not make the Python 3.10 environment ({' '.join(step[:4])} ...): "
                        f"{done.stderr[-1500:]}")
    (venv / "ready").write_text(TORCH + "\n" + requirements)
    return python


def test_the_parameter_code_and_the_tracker_run_on_python_3_10():
    interpreter = python310()
    if interpreter is None:
        unavailable("no Python 3.10 interpreter here (python3.10 on PATH or pyenv's 3.10.x)")
    python = environment(interpreter)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    run = subprocess.run([str(python), "-c", SCRIPT], capture_output=True, text=True, cwd=REPO,
                         env=env, timeout=900)
    assert run.returncode == 0, run.stderr[-4000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["python"].startswith("3.10.")
    assert out["atol_type"] == "float"  # 1e-5 is a double, as rcl reads it, not a string
    assert out["preset"] == "cpu" and out["resolution0"] == 12
    assert "tracker.max_frames" in out["refused"]
    assert out["keyframes"] >= 2 and out["tracked"] >= 5, out
    # the background keyframe was in flight (False, no exception) and then finished (True)
    assert out["waits"] == [False, True], out
