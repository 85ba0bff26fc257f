"""The benchmark harness's shared parts: settings, device plumbing, the machine's description, timing, tables.

Everything here is plain data and small helpers; the questions live in ``bench_tracking.py``
(questions 1-3 and 6), ``bench_io.py`` (4) and ``bench_node.py`` (5), and ``run_all.py`` runs them all
and writes ``docs/benchmarks.md``.
"""

from __future__ import annotations

import datetime
import hashlib
import math
import os
import platform
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch

from occflow_ros.model import Checkpoint, autocast_dtype, load_checkpoint, select_device

__all__ = ["REPO", "DEFAULT_DFAUST", "SOLVER_NAMES", "BenchError", "BenchConfig", "Table", "Target",
           "bench_device", "device_description", "describe_machine", "load_model", "timings",
           "median", "percentile", "Progress", "fmt"]

REPO = Path(__file__).resolve().parents[1]
#: The real D-FAUST sequence in ../shared/data (or $OCCFLOW_SHARED_DATA, as for the tests).
DEFAULT_DFAUST = (Path(os.environ.get("OCCFLOW_SHARED_DATA", REPO.parent / "shared" / "data"))
                  / "dfaust" / "50002_light_hopping_loose")
SOLVER_NAMES = ("euler", "midpoint", "rk4", "dopri5")


class BenchError(ValueError):
    """A benchmark setting or input the harness cannot use; the message names the key or the problem."""


def _check(key: str, ok: bool, allowed: str, value: Any) -> None:
    if not ok:
        raise BenchError(f"bench.{key} must be {allowed}, got {value!r}")


def _int_in(value: Any, lo: int, hi: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi


@dataclass(frozen=True)
class BenchConfig:
    """What the harness runs and how big. Validated once here; errors name the key and the range.

    device: torch device for the networks ("auto": the first CUDA GPU if any, else the CPU; see
      ``occflow_ros.model.select_device``). precision: the tracker's network precision ("auto":
      fp16 on CUDA, fp32 on the CPU). threads: torch CPU threads (0: torch's default).
    synthetic_seed / synthetic_motion: the synthetic person (``make_shape("human", seed, motion)``).
    frames / fps: the synthetic window (30 frames at 30 Hz = a 1 s window).
    dfaust: the D-FAUST sequence folder (its frames at 60 Hz), or None to skip it.
    chamfer_points: samples on a predicted mesh for Chamfer-L1.
    cpd_vertices / cpd_iterations: Coherent Point Drift registers a random subset of this many keyframe
      vertices, with at most this many EM iterations per frame (its cost grows with vertices cubed).
    sizes: keyframe mesh sizes (vertex targets) of question 3. solvers: the ODE solvers of question 3.
    io_repeats: timed calls per I/O measurement (question 4); loop_points: points the per-point Python
      decoder decodes per call (its time is extrapolated to the whole cloud).
    node_seconds: length of the live stream sent to the node (question 5; 0 skips it).
    node_startup_timeout: seconds the node may take to load its model and warm up.
    """

    device: str = "auto"
    precision: str = "auto"
    threads: int = 0
    synthetic_seed: int = 1001
    synthetic_motion: str = "jumping_jacks"
    frames: int = 30
    fps: float = 30.0
    dfaust: Path | None = DEFAULT_DFAUST
    chamfer_points: int = 10_000
    cpd_vertices: int = 1000
    cpd_iterations: int = 20
    sizes: tuple[int, ...] = (1000, 3000, 10_000)
    solvers: tuple[str, ...] = SOLVER_NAMES
    io_repeats: int = 20
    loop_points: int = 20_000
    node_seconds: float = 10.0
    node_startup_timeout: float = 300.0

    def __post_init__(self) -> None:
        _check("device", isinstance(self.device, str), "a device name (auto, cpu, cuda, cuda:N)",
               self.device)
        _check("precision", self.precision in ("auto", "fp32", "fp16", "bf16"),
               "one of auto, fp32, fp16, bf16", self.precision)
        _check("threads", _int_in(self.threads, 0, 256), "an integer in [0, 256]", self.threads)
        _check("synthetic_seed", _int_in(self.synthetic_seed, 0, 2**31 - 1),
               "an integer in [0, 2^31)", self.synthetic_seed)
        _check("frames", _int_in(self.frames, 2, 600), "an integer in [2, 600]", self.frames)
        _check("fps", isinstance(self.fps, (int, float)) and 1.0 <= self.fps <= 240.0,
               "in [1, 240] Hz", self.fps)
        _check("chamfer_points", _int_in(self.chamfer_points, 100, 1_000_000),
               "an integer in [100, 1000000]", self.chamfer_points)
        _check("cpd_vertices", _int_in(self.cpd_vertices, 0, 20_000),
               "an integer in [0, 20000] (0 skips CPD)", self.cpd_vertices)
        _check("cpd_iterations", _int_in(self.cpd_iterations, 1, 1000), "an integer in [1, 1000]",
               self.cpd_iterations)
        _check("sizes", len(self.sizes) > 0 and all(_int_in(s, 4, 1_000_000) for s in self.sizes),
               "a non-empty list of vertex counts in [4, 1000000]", self.sizes)
        _check("solvers", len(self.solvers) > 0 and all(s in SOLVER_NAMES for s in self.solvers),
               f"a non-empty list drawn from {list(SOLVER_NAMES)}", self.solvers)
        _check("io_repeats", _int_in(self.io_repeats, 1, 10_000), "an integer in [1, 10000]",
               self.io_repeats)
        _check("loop_points", _int_in(self.loop_points, 100, 10_000_000),
               "an integer in [100, 10000000]", self.loop_points)
        _check("node_seconds", isinstance(self.node_seconds, (int, float))
               and (self.node_seconds == 0 or 2.0 <= self.node_seconds <= 600.0),
               "0 (skip) or in [2, 600] s", self.node_seconds)
        _check("node_startup_timeout", isinstance(self.node_startup_timeout, (int, float))
               and 5.0 <= self.node_startup_timeout <= 3600.0, "in [5, 3600] s",
               self.node_startup_timeout)


# -- device ----------------------------------------------------------------------------------------
def bench_device(spec: str = "auto", *, cuda_available: Callable[[], bool] = torch.cuda.is_available,
                 cuda_count: Callable[[], int] = torch.cuda.device_count) -> torch.device:
    """The device every network of the run uses, chosen once with ``select_device`` (the node's rule).

    cuda_available / cuda_count: how CUDA is probed (injectable, so the choice is testable on a
    machine without a GPU). Raises ``occflow_ros.model.ModelError`` for a CUDA request without CUDA.
    """
    return select_device(spec, cuda_available=cuda_available, cuda_count=cuda_count)


def device_description(device: torch.device, precision: str = "auto", *,
                       gpu_name: Callable[[torch.device], str] | None = None,
                       gpu_memory: Callable[[torch.device], int] | None = None) -> dict[str, str]:
    """What the networks run on: the device, its name (GPU model and memory on CUDA) and the network
    precision the tracker uses there. gpu_name / gpu_memory (bytes): injectable CUDA probes."""
    dtype = autocast_dtype(device, precision)
    out = {"device": str(device),
           "network precision": "fp32" if dtype is None else str(dtype).replace("torch.", "")}
    if device.type == "cuda":
        name = (gpu_name or torch.cuda.get_device_name)(device)
        if gpu_memory is None:
            memory = torch.cuda.get_device_properties(device).total_memory
        else:
            memory = gpu_memory(device)
        out["GPU"] = f"{name}, {memory / 2**30:.0f} GiB, CUDA {torch.version.cuda}"
    else:
        out["GPU"] = "none used"
    return out


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA kernels run asynchronously); no-op on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# -- the machine -----------------------------------------------------------------------------------
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    except (OSError, ValueError):
        pass
    return None


def _git_revision() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return (rev or "unknown") + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _version(module: str) -> str:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:  # noqa: BLE001 - a missing package is reported, not fatal
        return "not installed"


def describe_machine(device: torch.device, precision: str = "auto") -> dict[str, str]:
    """The machine and software the numbers were measured on, as label -> text."""
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count() or 0
    ram = _ram_gib()
    load = os.getloadavg() if hasattr(os, "getloadavg") else (math.nan,) * 3
    out = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "CPU": _cpu_model(),
        "cores": f"{os.cpu_count()} logical, {affinity} usable by this process",
        "RAM": f"{ram:.1f} GiB" if ram else "unknown",
        "load average at start": f"{load[0]:.2f} (1 min), {load[1]:.2f} (5 min)",
        "OS / Python": f"{platform.platform()} / Python {platform.python_version()}",
        "torch": (f"{torch.__version__}, {torch.get_num_threads()} CPU thread(s) "
                  f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')})"),
        "numpy / open3d / pycpd": " / ".join(_version(m) for m in ("numpy", "open3d-cpu", "pycpd")),
        "git": _git_revision(),
    }
    if out["numpy / open3d / pycpd"].split(" / ")[1] == "not installed":
        out["numpy / open3d / pycpd"] = " / ".join(_version(m) for m in ("numpy", "open3d", "pycpd"))
    out.update(device_description(device, precision))
    return out


# -- the model -------------------------------------------------------------------------------------
def load_model(path: str | os.PathLike, device: torch.device) -> tuple[Checkpoint, dict[str, str]]:
    """The checkpoint on ``device`` and a description (path, sha256, training step and validation)."""
    path = Path(path)
    checkpoint = load_checkpoint(path, map_location=device)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    training = checkpoint.training
    parts = [f"`{path}`", f"sha256 {digest}",
             f"{checkpoint.model.parameter_count() / 1e6:.2f} M parameters",
             f"{checkpoint.config.input_points} input points"]
    if "step" in training:
        parts.append(f"training step {training['step']}")
    validation = training.get("validation")
    if isinstance(validation, Mapping) and validation:
        shown = ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                          for k, v in sorted(validation.items())[:4])
        parts.append(f"validation: {shown}")
    return checkpoint, {"model": "; ".join(parts)}


# -- timing ----------------------------------------------------------------------------------------
def timings(fn: Callable[[], object], repeats: int, *, warmup: int = 1,
            device: torch.device | None = None) -> list[float]:
    """Seconds per call of ``fn`` over ``repeats`` calls after ``warmup`` calls (CUDA synchronised)."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if device is not None:
            synchronize(device)
        out.append(time.perf_counter() - start)
    return out


def median(values: Iterable[float]) -> float:
    values = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.median(values) if values else math.nan


def percentile(values: Iterable[float], q: float) -> float:
    values = sorted(v for v in values if v is not None and math.isfinite(v))
    if not values:
        return math.nan
    pos = (len(values) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return values[lo] + (values[hi] - values[lo]) * (pos - lo)


class Progress:
    """Prints ``[elapsed] message`` lines (the full run takes minutes; this says where it is)."""

    def __init__(self, say: Callable[[str], None] = print) -> None:
        self._start = time.monotonic()
        self._say = say

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._start

    def __call__(self, message: str) -> None:
        self._say(f"[{self.elapsed:6.1f} s] {message}")


# -- tables ----------------------------------------------------------------------------------------
def fmt(value: Any, digits: int = 3) -> str:
    """A table cell: numbers with ``digits`` significant digits (integers as they are), None -> "-"."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if math.isinf(value):
            return "inf"
        if value == 0:
            return "0"
        magnitude = math.floor(math.log10(abs(value)))
        decimals = max(0, digits - 1 - magnitude)
        return f"{value:.{decimals}f}"
    return str(value)


@dataclass
class Target:
    """A target the issue sets: what it asks, what was measured, and whether it is met (None: not
    measured in this run)."""

    claim: str
    measured: str
    met: bool | None

    @property
    def verdict(self) -> str:
        return "not measured" if self.met is None else ("**met**" if self.met else "**NOT met**")


@dataclass
class Table:
    """One table of docs/benchmarks.md: columns as (row key, header), rows as dicts with those keys."""

    title: str
    columns: Sequence[tuple[str, str]]
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)

    @property
    def keys(self) -> list[str]:
        return [key for key, _ in self.columns]

    def add(self, row: Mapping[str, Any]) -> None:
        """Append a row; it must have exactly the table's columns (BenchError otherwise)."""
        missing = [k for k in self.keys if k not in row]
        extra = [k for k in row if k not in self.keys]
        if missing or extra:
            raise BenchError(f"table {self.title!r}: row {dict(row)} has missing {missing} / "
                             f"unknown {extra} columns")
        self.rows.append(dict(row))

    def markdown(self) -> str:
        lines = ["| " + " | ".join(header for _, header in self.columns) + " |",
                 "|" + "|".join("---" for _ in self.columns) + "|"]
        for row in self.rows:
            lines.append("| " + " | ".join(fmt(row[k]) for k in self.keys) + " |")
        if not self.rows:
            lines.append("| " + " | ".join(["(not run)"] + [""] * (len(self.columns) - 1)) + " |")
        out = "\n".join(lines)
        if self.targets:
            out += "\n\n" + "\n".join(f"- Target: {t.claim}. Measured: {t.measured}. -> {t.verdict}"
                                      for t in self.targets)
        if self.notes:
            out += "\n\n" + "\n".join(f"- {n}" for n in self.notes)
        return out
