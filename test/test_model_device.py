"""Device selection and precision: the CUDA paths exist and are exercised without a GPU."""

from __future__ import annotations

import pytest
import torch

from occflow_ros.model import ModelError, autocast_dtype, select_device


def yes() -> bool:
    return True


def no() -> bool:
    return False


def test_auto_picks_cuda_when_present_and_cpu_otherwise():
    assert select_device("auto", cuda_available=yes, cuda_count=lambda: 1) == torch.device("cuda:0")
    assert select_device("auto", cuda_available=no) == torch.device("cpu")
    # on this machine, for real
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert select_device("auto").type == expected


def test_explicit_devices():
    assert select_device("cpu") == torch.device("cpu")
    assert select_device("CUDA:1", cuda_available=yes, cuda_count=lambda: 2) == torch.device("cuda:1")


def test_cuda_requested_but_absent_is_a_clear_error_or_a_fallback():
    with pytest.raises(ModelError, match="'cuda' requested but CUDA is not available"):
        select_device("cuda", cuda_available=no)
    assert select_device("cuda", cuda_available=no, fallback_to_cpu=True) == torch.device("cpu")
    with pytest.raises(ModelError, match="only 1 CUDA device"):
        select_device("cuda:3", cuda_available=yes, cuda_count=lambda: 1)


def test_nonsense_device_names_are_refused():
    for bad in ("gpu", "cuda:x", "tpu:0"):
        with pytest.raises(ModelError, match="device"):
            select_device(bad)


def test_precision_reduced_only_on_cuda_unless_asked():
    cpu, gpu = torch.device("cpu"), torch.device("cuda:0")
    assert autocast_dtype(cpu, "auto") is None
    assert autocast_dtype(gpu, "auto") is torch.float16
    assert autocast_dtype(gpu, "fp32") is None
    assert autocast_dtype(gpu, "bf16", bf16_supported=yes) is torch.bfloat16
    with pytest.raises(ModelError, match="no bfloat16 support"):
        autocast_dtype(gpu, "bf16", bf16_supported=no)
    with pytest.raises(ModelError, match="only supported on CUDA"):
        autocast_dtype(cpu, "fp16")
    with pytest.raises(ModelError, match="precision must be one of"):
        autocast_dtype(cpu, "fp8")


def test_reduced_precision_keeps_the_ode_state_float32():
    """With autocast (bf16 runs on the CPU too), the network is low precision but the state is not."""
    from occflow_ros.model import ModelConfig, OccupancyFlow, SolverConfig

    cfg = ModelConfig(c_dim=16, encoder_hidden=16, decoder_hidden=16, velocity_hidden=16,
                      encoder_blocks=1, decoder_blocks=1, velocity_blocks=1)
    torch.manual_seed(0)
    model = OccupancyFlow(cfg).eval()
    with torch.no_grad():
        for p in model.velocity.parameters():
            p.normal_(0.0, 0.1)
    pts = torch.rand(1, 100, 3) - 0.5
    code = torch.randn(1, 16)
    with torch.inference_mode():
        full = model.flow(pts, 0.0, 0.5, code, SolverConfig("rk4", 0.1))
        low = model.flow(pts, 0.0, 0.5, code, SolverConfig("rk4", 0.1),
                         autocast_dtype=torch.bfloat16)
    assert low.dtype == torch.float32
    assert (low - full).abs().max() < 2e-2  # bf16 keeps ~3 significant digits
    assert not torch.equal(low, full)  # and autocast was really used


def test_limit_cpu_threads_limits_torch_and_the_blas_pools_numpy_uses_and_restores_them():
    """From 2 threads each (set here: the suite runs with OMP_NUM_THREADS=1) to 1, and back."""
    import numpy  # noqa: F401  (its BLAS is loaded)
    from threadpoolctl import threadpool_info, threadpool_limits

    from occflow_ros.model import limit_cpu_threads

    def blas_threads():
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    torch_threads = torch.get_num_threads()
    with threadpool_limits(limits=2, user_api="blas"):
        torch.set_num_threads(2)
        try:
            assert blas_threads() and set(blas_threads()) == {2}
            restore = limit_cpu_threads(1)
            assert torch.get_num_threads() == 1 and set(blas_threads()) == {1}
            restore()
            assert torch.get_num_threads() == 2 and set(blas_threads()) == {2}
        finally:
            torch.set_num_threads(torch_threads)
    with pytest.raises(ModelError, match="threads must be >= 1"):
        limit_cpu_threads(0)
