"""The reconstruct node as a child process, as a user starts it: the one helper the demo, the soak
and the tests use to start it, wait until it is ready, and stop it.

``python -m occflow_ros.ros.node --ros-args [--params-file FILE] -p name:=value ... <ros args>``,
its stdout and stderr in a log file, DDS kept on this machine (``occflow_ros.ros.dds``) unless the
caller passes its own environment.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from ..ros.dds import local_dds_environment

__all__ = ["READY", "NodeProcess", "NodeProcessError", "format_parameter"]

#: What the node's log says once it subscribes and publishes (occflow_ros.ros.node).
READY = "ready:"


class NodeProcessError(RuntimeError):
    """The node process did not start, did not get ready, or did not stop; the message holds the
    tail of its log."""


def format_parameter(value: Any) -> str:
    """A parameter value as ``-p name:=VALUE`` text that rclpy reads back with the same type
    (bool -> true/false, a double keeps its decimal point, a list of doubles -> [a, b, c])."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        text = repr(float(value))
        return text if any(c in text for c in ".en") else text + ".0"
    if isinstance(value, (list, tuple, np.ndarray)):
        return "[" + ", ".join(format_parameter(float(v)) for v in value) + "]"
    return str(value)


class NodeProcess:
    """Start the node now; ``log_path`` receives its output.

    params_file: ``--params-file`` (None: the node's built-in defaults); parameters: ``-p``
    overrides, typed as rclpy reads them (:func:`format_parameter`); ros_args: further arguments
    after ``--ros-args`` (remaps ``-r a:=b``, more ``-p``); env: the child's environment (default:
    this process's with DDS kept local); cwd: its working directory. command: another command line
    that starts the node (``ros2 launch occflow_ros reconstruct.launch.py ...``) instead of the one
    built from the arguments above; group: start it in a process group of its own, and signal the
    whole group (what a terminal's Ctrl-C does to ``ros2 launch`` and the node it started).
    """

    def __init__(self, log_path: Path, *, params_file: Optional[Path] = None,
                 parameters: Optional[Mapping[str, Any]] = None, ros_args: Sequence[str] = (),
                 env: Optional[Mapping[str, str]] = None, cwd: Optional[Path] = None,
                 command: Optional[Sequence[str]] = None, group: bool = False) -> None:
        self.log_path = Path(log_path)
        self.group = bool(group)
        if command is not None:
            if params_file is not None or parameters or ros_args:
                raise ValueError("NodeProcess: give a command or node arguments, not both")
            self.command = [str(c) for c in command]
        else:
            self.command = [sys.executable, "-m", "occflow_ros.ros.node", "--ros-args"]
            if params_file is not None:
                self.command += ["--params-file", str(params_file)]
            for name, value in (parameters or {}).items():
                self.command += ["-p", f"{name}:={format_parameter(value)}"]
            self.command += list(ros_args)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT,
                                         env=dict(local_dds_environment() if env is None else env),
                                         cwd=None if cwd is None else str(cwd),
                                         start_new_session=self.group)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def tail(self, lines: int = 25) -> str:
        return "\n".join("    " + line for line in self.log().splitlines()[-lines:])

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_for(self, text: str, timeout: float) -> bool:
        """Whether ``text`` appears in the log within ``timeout`` seconds (False at once when the
        process has exited without it)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log():
                return True
            if not self.alive():
                return text in self.log()
            time.sleep(0.05)
        return text in self.log()

    def wait_ready(self, timeout: float) -> None:
        """Block until the node says it is ready; NodeProcessError (with its log's tail) when it
        exits first or takes longer than ``timeout`` seconds."""
        if self.wait_for(READY, timeout):
            return
        if not self.alive():
            raise NodeProcessError(f"the node exited with status {self.proc.returncode} before it "
                                   f"was ready; its log ({self.log_path}):\n{self.tail()}")
        raise NodeProcessError(f"the node was not ready after {timeout:.0f} s; its log "
                               f"({self.log_path}):\n{self.tail()}")

    def stop(self, timeout: float = 15.0, sig: int = signal.SIGINT) -> int:
        """Send ``sig`` (Ctrl-C by default) and wait; returns the exit status. A node that does not
        exit within ``timeout`` seconds is killed and NodeProcessError raised."""
        self._signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise NodeProcessError(f"the node did not exit within {timeout:.0f} s of "
                                   f"{signal.Signals(sig).name} (killed); its log:\n{self.tail()}"
                                   ) from None

    def kill(self) -> None:
        if self.alive():
            self._signal(signal.SIGKILL)
            self.proc.wait()

    def _signal(self, sig: int) -> None:
        if not self.alive():
            return
        if self.group:
            os.killpg(self.proc.pid, sig)
        else:
            self.proc.send_signal(sig)
