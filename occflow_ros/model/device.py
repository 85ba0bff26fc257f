"""Device selection (CPU, CUDA, Jetson) and the reduced precision that is safe on each."""

from __future__ import annotations

from typing import Callable

import torch

from .config import ModelError

__all__ = ["select_device", "autocast_dtype", "limit_cpu_threads", "PRECISIONS"]

PRECISIONS = ("auto", "fp32", "fp16", "bf16")


def limit_cpu_threads(n: int) -> Callable[[], None]:
    """At most ``n`` CPU threads for torch and for the BLAS/OpenMP pools numpy and scipy use
    (threadpoolctl), in this process from now on; returns a function that restores what was there.
    The point work between the networks (the deformation graph's banded Cholesky, small matrix
    products) is many small BLAS calls: on the 2-core VM a tracked frame took 43.5 ms with
    OpenBLAS's default 2 threads against 31.7 ms with one (benchmarks/bench_frame.py)."""
    from threadpoolctl import threadpool_limits

    if n < 1:
        raise ModelError(f"threads must be >= 1, got {n}")
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(n)
    limits = threadpool_limits(limits=n)

    def restore() -> None:
        limits.restore_original_limits()
        torch.set_num_threads(torch_threads)

    return restore


def select_device(spec: str = "auto", *, fallback_to_cpu: bool = False,
                  cuda_available: Callable[[], bool] = torch.cuda.is_available,
                  cuda_count: Callable[[], int] = torch.cuda.device_count) -> torch.device:
    """The torch device for a user setting.

    spec: "auto" (CUDA if available, else CPU), "cpu", "cuda" or "cuda:N".
    fallback_to_cpu: when CUDA is asked for but absent, use the CPU instead of raising.
    Raises ModelError naming the setting and what is available.
    """
    if not isinstance(spec, str):
        raise ModelError(f"device must be a string, got {spec!r}")
    spec = spec.strip().lower()
    if spec == "auto":
        return torch.device("cuda:0" if cuda_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or spec.startswith("cuda:"):
        index = 0
        if spec != "cuda":
            try:
                index = int(spec.split(":", 1)[1])
            except ValueError:
                raise ModelError(f"device {spec!r}: expected cuda:N with N an integer") from None
        if not cuda_available():
            if fallback_to_cpu:
                return torch.device("cpu")
            raise ModelError(f"device {spec!r} requested but CUDA is not available "
                             f"(torch {torch.__version__}, built with CUDA "
                             f"{torch.version.cuda or 'none'}); use device 'cpu' or 'auto', "
                             "or allow the CPU fallback")
        count = cuda_count()
        if index >= count:
            if fallback_to_cpu:
                return torch.device("cpu")
            raise ModelError(f"device {spec!r} requested but only {count} CUDA device(s) exist")
        return torch.device("cuda", index)
    raise ModelError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {spec!r}")


def autocast_dtype(device: torch.device, precision: str = "auto",
                   bf16_supported: Callable[[], bool] | None = None) -> torch.dtype | None:
    """The dtype the networks may run in on ``device``; None means float32 (no autocast).

    The ODE state, the codes and the mesh vertices stay float32 in every case; only the MLP
    evaluations use reduced precision. On the CPU reduced precision is slower and less accurate, so
    "auto" keeps float32 there; on CUDA "auto" picks fp16 (tensor cores on every NVIDIA GPU with CUDA,
    Jetson included).
    """
    if precision not in PRECISIONS:
        raise ModelError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
    if precision == "fp32" or device.type != "cuda":
        return None if precision in ("auto", "fp32") else _cpu_reduced(precision)
    if precision == "bf16":
        supported = bf16_supported or torch.cuda.is_bf16_supported
        if not supported():
            raise ModelError("precision 'bf16' requested but this GPU has no bfloat16 support; "
                             "use 'fp16' or 'auto'")
        return torch.bfloat16
    return torch.float16


def _cpu_reduced(precision: str) -> torch.dtype:
    if precision == "fp16":
        raise ModelError("precision 'fp16' is only supported on CUDA devices; use 'fp32' or 'auto' "
                         "on the CPU (or 'bf16')")
    return torch.bfloat16
