"""The ODE flow: analytic solutions, forward/backward consistency, many targets, chunks, gradients."""

from __future__ import annotations

import pytest
import torch

from occflow_ros.model import ModelConfig, ModelError, OccupancyFlow, SolverConfig

CFG = ModelConfig(c_dim=16, encoder_hidden=16, decoder_hidden=16, velocity_hidden=16,
                  encoder_blocks=1, decoder_blocks=1, velocity_blocks=2, fourier_octaves=0)
OFFSET = 10.0


def analytic_model() -> OccupancyFlow:
    """A velocity field with a known closed-form flow: v = (t, 0, x).

    FiLM and residual branches are zero, so h = fc_in(p, t) passes straight to fc_out; a large bias
    keeps the ReLU in its linear part. Then x(t) = x0 + (t^2 - t0^2) / 2 and
    z(t) = z0 + x0 (t - t0) + (t^3 - t0^3) / 6 - t0^2 (t - t0) / 2.
    """
    model = OccupancyFlow(CFG).eval()
    v = model.velocity
    with torch.no_grad():
        for p in v.parameters():
            p.zero_()
        v.fc_in.weight[0, 3] = 1.0  # h0 = t + OFFSET
        v.fc_in.weight[1, 0] = 1.0  # h1 = x + OFFSET
        v.fc_in.bias[:2] = OFFSET
        v.fc_out.weight[0, 0] = 1.0  # vx = h0 - OFFSET = t
        v.fc_out.weight[2, 1] = 1.0  # vz = h1 - OFFSET = x
        v.fc_out.bias[0] = -OFFSET
        v.fc_out.bias[2] = -OFFSET
    return model


def exact(p0: torch.Tensor, t0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    t0 = t0[:, None]
    t = t[:, None]
    x0, y0, z0 = p0.unbind(-1)
    x = x0 + (t ** 2 - t0 ** 2) / 2
    z = z0 + x0 * (t - t0) + (t ** 3 - t0 ** 3) / 6 - t0 ** 2 * (t - t0) / 2
    return torch.stack([x, y0, z], dim=-1)


CODE = torch.zeros(2, CFG.c_dim)


@pytest.mark.parametrize("solver", [SolverConfig("dopri5", rtol=1e-7, atol=1e-9),
                                    SolverConfig("rk4", step_size=0.05),
                                    SolverConfig("midpoint", step_size=0.01),
                                    SolverConfig("euler", step_size=0.001)])
def test_flow_matches_the_analytic_solution_forward_and_backward(solver):
    model = analytic_model()
    p0 = torch.rand(2, 50, 3) - 0.5
    t0 = torch.tensor([0.0, 0.3])
    t1 = torch.tensor([1.0, 0.8])
    tol = {"dopri5": 1e-5, "rk4": 1e-5, "midpoint": 1e-4, "euler": 2e-3}[solver.method]
    with torch.inference_mode():
        fwd = model.flow(p0, t0, t1, CODE, solver)
        assert torch.allclose(fwd, exact(p0, t0, t1), atol=tol)
        back = model.flow(p0, t1, t0, CODE, solver)
        assert torch.allclose(back, exact(p0, t1, t0), atol=tol)


def moving_model(seed: int) -> OccupancyFlow:
    """An untrained model whose velocity field moves points (random weights, std 0.3); the torch
    seed is set first, so what the test draws next is reproducible too."""
    torch.manual_seed(seed)
    model = OccupancyFlow(CFG).eval()
    with torch.no_grad():
        for p in model.velocity.parameters():
            p.normal_(0.0, 0.3)
    return model


def test_forward_then_backward_returns_each_point_to_its_start():
    model = moving_model(seed=3)
    code = torch.randn(2, CFG.c_dim)
    p0 = torch.rand(2, 200, 3) - 0.5
    # Tolerances are set so that float32 round-off, not the solver, dominates what is left.
    for solver, tol in [(SolverConfig("dopri5", rtol=1e-7, atol=1e-9), 1e-4),
                        (SolverConfig("rk4", step_size=0.02), 1e-4)]:
        with torch.inference_mode():
            there = model.flow(p0, 0.0, 1.0, code, solver)
            back = model.flow(there, 1.0, 0.0, code, solver)
        assert (there - p0).abs().max() > 0.05, "the field must actually move the points"
        assert (back - p0).abs().max() < tol, solver.method


def test_many_targets_in_one_solve_equal_separate_solves():
    model = analytic_model()
    p0 = torch.rand(2, 30, 3) - 0.5
    times = torch.tensor([0.1, 0.25, 0.5, 1.0])
    solver = SolverConfig("rk4", step_size=0.05)
    stats: dict = {}
    with torch.inference_mode():
        many = model.flow_to_times(p0, 0.0, times, CODE, solver, stats=stats)
        assert many.shape == (2, 4, 30, 3)
        for k, t in enumerate(times):
            one = model.flow(p0, 0.0, float(t), CODE, solver)
            assert torch.allclose(many[:, k], one, atol=1e-5)
            assert torch.allclose(many[:, k], exact(p0, torch.zeros(2), t.expand(2)), atol=1e-5)
    # one solve: 20 steps of 4 stages on the shared grid, not 4 separate integrations
    assert stats["evaluations"] <= 4 * 21


def test_per_sample_start_and_target_times_in_one_batch():
    """Training integrates each sequence's samples back from its own time to the keyframe."""
    model = analytic_model()
    p0 = torch.rand(2, 30, 3) - 0.5
    t_from = torch.tensor([0.9, 0.2])
    targets = torch.tensor([[0.0, 0.45], [0.0, 0.1]])
    solver = SolverConfig("dopri5", rtol=1e-7, atol=1e-9)
    with torch.inference_mode():
        out = model.flow_to_times(p0, t_from, targets, CODE, solver)
    for k in range(2):
        assert torch.allclose(out[:, k], exact(p0, t_from, targets[:, k]), atol=1e-5)


def test_chunked_integration_equals_one_solve_for_fixed_step_solvers():
    model = moving_model(seed=0)
    code = torch.randn(1, CFG.c_dim)
    p0 = torch.rand(1, 1000, 3) - 0.5
    with torch.inference_mode():
        whole = model.flow(p0, 0.0, 0.5, code, SolverConfig("rk4", 0.1), chunk_size=None)
        chunked = model.flow(p0, 0.0, 0.5, code, SolverConfig("rk4", 0.1), chunk_size=128)
    assert torch.allclose(whole, chunked, atol=1e-6)


def test_zero_length_flow_and_empty_point_sets():
    model = analytic_model()
    p0 = torch.rand(2, 5, 3)
    with torch.inference_mode():
        assert torch.equal(model.flow(p0, 0.4, 0.4, CODE), p0)
        assert model.flow(torch.zeros(2, 0, 3), 0.0, 1.0, CODE).shape == (2, 0, 3)


def test_targets_on_both_sides_of_the_start_are_refused():
    model = analytic_model()
    with pytest.raises(ModelError, match="one side"):
        model.flow_to_times(torch.zeros(2, 3, 3), 0.5, torch.tensor([0.2, 0.8]), CODE)
    with pytest.raises(ModelError, match="finite"):
        model.flow(torch.zeros(2, 3, 3), 0.0, float("nan"), CODE)


def test_gradients_reach_the_velocity_field_and_the_motion_code_and_adjoint_agrees():
    torch.manual_seed(1)
    model = OccupancyFlow(CFG)
    with torch.no_grad():
        for p in model.velocity.parameters():
            p.normal_(0.0, 0.1)
    p0 = torch.rand(2, 40, 3) - 0.5
    grads = {}
    for adjoint in (False, True):
        model.zero_grad()
        code = torch.randn(2, CFG.c_dim, generator=torch.Generator().manual_seed(2),
                           requires_grad=True)
        solver = SolverConfig("rk4", step_size=0.02, adjoint=adjoint)
        out = model.flow(p0, torch.tensor([0.7, 0.4]), 0.0, code, solver)
        out.square().sum().backward()
        grads[adjoint] = (code.grad.clone(), model.velocity.fc_out.weight.grad.clone())
    assert grads[False][0].abs().sum() > 0 and grads[False][1].abs().sum() > 0
    # The adjoint solves the continuous adjoint ODE, backprop differentiates the discrete solver:
    # they agree up to the discretisation error.
    assert torch.allclose(grads[False][0], grads[True][0], rtol=1e-3, atol=1e-4)
    assert torch.allclose(grads[False][1], grads[True][1], rtol=1e-3, atol=1e-4)


def test_running_out_of_gpu_memory_retries_on_smaller_chunks():
    """CUDA cannot run here, so the velocity field raises CUDA's out-of-memory error itself for
    batches above 300 points, as a small GPU would; the flow must finish on smaller chunks with the
    same result, and report the chunk size that worked."""
    model = moving_model(seed=0)
    code = torch.randn(1, CFG.c_dim)
    p0 = torch.rand(1, 1000, 3) - 0.5
    solver = SolverConfig("rk4", 0.1)
    with torch.inference_mode():
        expected = model.flow(p0, 0.0, 0.5, code, solver, chunk_size=None)
    forward = model.velocity.forward

    def small_gpu(points, *args, **kwargs):
        if points.shape[1] > 300:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return forward(points, *args, **kwargs)

    model.velocity.forward = small_gpu
    stats: dict = {}
    with torch.inference_mode():
        out = model.flow(p0, 0.0, 0.5, code, solver, chunk_size=1000, stats=stats)
    assert torch.allclose(out, expected, atol=1e-6)
    assert stats["oom_retries"] == 2 and stats["chunk_size"] == 256  # 1000 -> 500 -> MIN_CHUNK
    model.velocity.forward = lambda *a, **k: (_ for _ in ()).throw(
        torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)"))
    with pytest.raises(torch.cuda.OutOfMemoryError):
        with torch.inference_mode():
            model.flow(p0, 0.0, 0.5, code, solver, chunk_size=1000)
