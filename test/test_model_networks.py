"""Encoders, decoder and velocity field: shapes, masks, causality, streaming, conditioning cost."""

from __future__ import annotations

import pytest
import torch

from occflow_ros.model import ModelConfig, ModelError, OccupancyFlow

SMALL = ModelConfig(c_dim=32, encoder_hidden=32, decoder_hidden=32, velocity_hidden=32,
                    encoder_blocks=2, decoder_blocks=2, velocity_blocks=2, input_points=64)


@pytest.fixture
def model() -> OccupancyFlow:
    torch.manual_seed(0)
    m = OccupancyFlow(SMALL)
    # Untrained residual branches start at zero; give every weight some value so that each part of
    # the network influences the output and the tests below can see a wrong mask or a leak.
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0.0, 0.2)
    return m.eval()


def window(batch=2, frames=5, points=40, seed=1):
    g = torch.Generator().manual_seed(seed)
    pts = torch.rand(batch, frames, points, 3, generator=g) - 0.5
    times = torch.sort(torch.rand(batch, frames, generator=g), dim=1).values
    times[:, 0] = 0.0
    return pts, times


def test_shapes_of_codes_occupancy_and_velocity(model):
    pts, times = window()
    c_s = model.encode_shape(pts[:, 0])
    c_t, state = model.encode_motion(pts, times)
    assert c_s.shape == (2, 32)
    assert c_t.shape == (2, 5, 32)
    assert state.frames == 5 and state.running.shape == (2, 2 * SMALL.encoder_hidden)
    q = torch.rand(2, 100, 3) - 0.5
    assert model.occupancy_logits(q, c_s, context=pts[:, 0]).shape == (2, 100)
    assert model.velocity_at(q, 0.3, c_t[:, -1]).shape == (2, 100, 3)
    assert model.velocity_at(q, torch.tensor([0.1, 0.7]), c_t[:, -1]).shape == (2, 100, 3)


def test_bad_shapes_raise_model_error_naming_the_shape(model):
    with pytest.raises(ModelError, match=r"\(B, N, 3\)"):
        model.encode_shape(torch.zeros(2, 10, 4))
    with pytest.raises(ModelError, match="frame times"):
        model.encode_motion(torch.zeros(2, 3, 10, 3), torch.zeros(2, 4))
    with pytest.raises(ModelError, match="code must be"):
        model.occupancy_logits(torch.zeros(1, 5, 3), torch.zeros(1, 7))
    with pytest.raises(ModelError, match="pass context"):
        model.occupancy_logits(torch.zeros(1, 5, 3), torch.zeros(1, 32))
    with pytest.raises(ModelError, match=r"context must be \(1, N, 3\)"):
        model.occupancy_logits(torch.zeros(1, 5, 3), torch.zeros(1, 32), context=torch.zeros(2, 9, 3))


def test_masked_points_and_frames_do_not_change_the_code(model):
    pts, times = window()
    point_mask = torch.ones(pts.shape[:3], dtype=torch.bool)
    point_mask[:, :, 30:] = False
    frame_mask = torch.ones(pts.shape[:2], dtype=torch.bool)
    frame_mask[:, 2] = False
    codes_a, _ = model.encode_motion(pts, times, point_mask, frame_mask)
    garbage = pts.clone()
    garbage[:, :, 30:] = 1e3 * torch.randn_like(garbage[:, :, 30:])
    garbage[:, 2] = 1e3
    codes_b, _ = model.encode_motion(garbage, times, point_mask, frame_mask)
    assert torch.allclose(codes_a, codes_b)
    # and the mask matters: without it, the garbage changes the code
    codes_c, _ = model.encode_motion(garbage, times)
    assert not torch.allclose(codes_a[:, -1], codes_c[:, -1])


def test_frames_with_different_point_counts_equal_their_unpadded_encoding(model):
    """A padded batch with masks gives the same code as feeding each frame's real points alone."""
    pts, times = window(batch=1, frames=3, points=50)
    counts = [50, 17, 33]
    mask = torch.zeros(1, 3, 50, dtype=torch.bool)
    for k, n in enumerate(counts):
        mask[0, k, :n] = True
    padded, _ = model.encode_motion(pts, times, mask)
    state = None
    for k, n in enumerate(counts):
        code, state = model.encode_motion(pts[:, k:k + 1, :n], times[:, k:k + 1], state=state)
    assert torch.allclose(padded[:, -1], code[:, 0], rtol=1e-5, atol=1e-5)


def test_codes_are_invariant_to_point_order_within_a_frame(model):
    pts, times = window()
    perm = torch.randperm(pts.shape[2])
    a, _ = model.encode_motion(pts, times)
    b, _ = model.encode_motion(pts[:, :, perm], times)
    assert torch.allclose(a, b, rtol=1e-5, atol=1e-5)  # (means sum in another order)
    assert torch.allclose(model.encode_shape(pts[:, 0]), model.encode_shape(pts[:, 0, perm]),
                          rtol=1e-5, atol=1e-5)


def test_causal_code_equals_code_of_truncated_window(model):
    pts, times = window(frames=6)
    full, _ = model.encode_motion(pts, times)
    for k in range(6):
        truncated, _ = model.encode_motion(pts[:, :k + 1], times[:, :k + 1])
        assert torch.allclose(full[:, k], truncated[:, -1], rtol=1e-5, atol=1e-5), f"frame {k}"
    # and later frames do change the code (it is not constant)
    assert not torch.allclose(full[:, 0], full[:, -1])


def test_streaming_one_frame_at_a_time_equals_the_batch_encoding(model):
    pts, times = window(frames=6)
    full, full_state = model.encode_motion(pts, times)
    state = None
    for k in range(6):
        code, state = model.encode_motion(pts[:, k:k + 1], times[:, k:k + 1], state=state)
        assert torch.allclose(code[:, 0], full[:, k], rtol=1e-5, atol=1e-5)
    assert state.frames == 6
    assert torch.allclose(state.running, full_state.running, rtol=1e-5, atol=1e-5)
    assert torch.allclose(state.first, full_state.first, rtol=1e-5, atol=1e-5)


def test_occupancy_is_independent_of_chunking_and_of_other_samples(model):
    """FiLM conditioning is per sample: chunks and batch neighbours do not change a query's answer."""
    pts, _ = window()
    c_s = model.encode_shape(pts[:, 0])
    q = torch.rand(2, 300, 3) - 0.5
    x = pts[:, 0]
    whole = model.occupancy_logits(q, c_s, context=x)
    parts = torch.cat([model.occupancy_logits(q[:, i:i + 70], c_s, context=x)
                       for i in range(0, 300, 70)], 1)
    assert torch.allclose(whole, parts, atol=1e-5)
    alone = model.occupancy_logits(q[1:], c_s[1:], context=x[1:])
    assert torch.allclose(whole[1:], alone, atol=1e-5)


def test_velocity_code_projection_is_computed_once_per_flow_call(model):
    """The code's per-block projections (FiLM) run once per call, not once per ODE evaluation."""
    from occflow_ros.model import SolverConfig

    pts, times = window()
    c_t, _ = model.encode_motion(pts, times)
    calls = []
    handle = model.velocity.film.register_forward_hook(lambda *_: calls.append(1))
    stats: dict = {}
    try:
        with torch.inference_mode():
            model.flow(torch.rand(2, 500, 3) - 0.5, 0.0, 1.0, c_t[:, -1],
                       SolverConfig("rk4", step_size=0.1), chunk_size=100, stats=stats)
    finally:
        handle.remove()
    assert stats["evaluations"] >= 40  # 10 rk4 steps x 4 stages x 5 chunks would be 200
    assert len(calls) == 1


def test_untrained_velocity_field_is_the_identity_flow():
    model = OccupancyFlow(SMALL).eval()
    pts = torch.rand(1, 20, 3) - 0.5
    code = torch.randn(1, SMALL.c_dim)
    with torch.inference_mode():
        assert torch.equal(model.velocity_at(pts, 0.5, code), torch.zeros(1, 20, 3))
        assert torch.equal(model.flow(pts, 0.0, 1.0, code), pts)


def test_fourier_features_are_the_point_and_its_sines_and_cosines():
    from occflow_ros.model.layers import FourierFeatures

    p = torch.tensor([[0.25, -0.5, 0.0]])
    ff = FourierFeatures(2)
    out = ff(p)
    assert ff.out_dim == 15 and out.shape == (1, 15)
    assert torch.equal(out[:, :3], p)
    angles = torch.tensor([0.25 * torch.pi, 0.5 * torch.pi, -0.5 * torch.pi, -torch.pi, 0.0, 0.0])
    assert torch.allclose(out[0, 3:9], torch.sin(angles), atol=1e-6)
    assert torch.allclose(out[0, 9:], torch.cos(angles), atol=1e-6)
    assert torch.equal(FourierFeatures(0)(p), p)


def test_occupancy_of_one_body_is_learned_quickly_with_fourier_features():
    """The reason the networks see Fourier features: a thin shape (a stick figure's limbs, 4 cm wide)
    is fitted in a few hundred steps with them and is not without them (spectral bias)."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    q = torch.rand(1, 2048, 3, generator=g) - 0.5
    # a cross of two thin bars: a torso and outstretched arms
    inside = ((q[..., 0].abs() < 0.04) & (q[..., 2].abs() < 0.04) & (q[..., 1].abs() < 0.4)) | \
             ((q[..., 1] - 0.2).abs().lt(0.03) & (q[..., 2].abs() < 0.03) & (q[..., 0].abs() < 0.35))
    q = torch.cat([q, torch.tensor([[[0.0, y, 0.0] for y in torch.linspace(-0.35, 0.35, 64)]])], 1)
    labels = torch.cat([inside, torch.ones(1, 64, dtype=torch.bool)], 1).float()
    results = {}
    from occflow_ros.model import OccupancyDecoder

    for octaves in (0, 4):
        torch.manual_seed(0)
        decoder = OccupancyDecoder(8, 64, 2, octaves)
        opt = torch.optim.Adam(decoder.parameters(), 3e-3)
        code = torch.zeros(1, 8)
        for _ in range(150):
            logits = decoder(q, code)
            loss = F.binary_cross_entropy_with_logits(logits, labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
        pred = logits > 0
        results[octaves] = float((pred & (labels > 0)).sum() / (pred | (labels > 0)).sum())
    assert results[4] > 0.95 and results[4] > results[0], results


def test_local_cue_sees_only_the_nearest_valid_points():
    """A query's local feature depends on its k nearest valid input points and on nothing else:
    not their order, not points farther away, not masked points however close."""
    from occflow_ros.model.layers import LocalPointFeatures

    torch.manual_seed(0)
    local = LocalPointFeatures(k=4, hidden=16, out_dim=8)
    pts = torch.rand(1, 50, 3) - 0.5
    q = torch.tensor([[[0.0, 0.0, 0.0], [0.3, 0.3, 0.3]]])
    base = local(q, pts)
    assert torch.allclose(base, local(q, pts[:, torch.randperm(50)]), atol=1e-6)
    # move the point farthest from the first query further away: no change for that query
    d = (pts[0] - q[0, 0]).norm(dim=1)
    far = int(d.argmax())
    moved = pts.clone()
    moved[0, far] *= 1.5
    assert torch.allclose(local(q, moved)[0, 0], base[0, 0], atol=1e-6)
    # put a point right at the first query: its feature changes
    near = torch.cat([pts, q[:, :1]], dim=1)
    assert not torch.allclose(local(q, near)[0, 0], base[0, 0], atol=1e-3)
    # ... unless that point is masked out
    mask = torch.ones(1, 51, dtype=torch.bool)
    mask[0, 50] = False
    assert torch.allclose(local(q, near, mask), base, atol=1e-6)
    # fewer points than k, and no valid point at all (a zero feature through the last layer)
    assert local(q, pts[:, :2]).shape == (1, 2, 8)
    none = local(q, pts, torch.zeros(1, 50, dtype=torch.bool))
    assert torch.isfinite(none).all()
    assert torch.allclose(none[0, 0], none[0, 1])


def test_decoder_with_the_local_cue_reads_the_observed_surface_beside_each_query():
    """Trained briefly on shells of random radii (the code carries nothing: it is zero), the decoder
    separates inside from outside by where the observed points are, which a code-only decoder cannot."""
    import torch.nn.functional as F

    from occflow_ros.model import OccupancyDecoder

    g = torch.Generator().manual_seed(0)

    def batch(n=16):
        radius = 0.15 + 0.25 * torch.rand(n, 1, 1, generator=g)
        dirs = torch.nn.functional.normalize(torch.randn(n, 200, 3, generator=g), dim=-1)
        surface = dirs * radius
        q = torch.rand(n, 256, 3, generator=g) - 0.5
        return q, surface, (q.norm(dim=-1) < radius[..., 0]).float()

    scores = {}
    for k in (0, 8):
        torch.manual_seed(0)
        decoder = OccupancyDecoder(8, 64, 2, 0, local_neighbors=k, local_hidden=32)
        opt = torch.optim.Adam(decoder.parameters(), 3e-3)
        code = torch.zeros(16, 8)
        for _ in range(150):
            q, surface, labels = batch()
            logits = decoder(q, code, context=surface)
            loss = F.binary_cross_entropy_with_logits(logits, labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
        q, surface, labels = batch()
        with torch.no_grad():
            pred = decoder(q, code, context=surface) > 0
        scores[k] = (pred == labels.bool()).float().mean().item()
    assert scores[8] > 0.93 and scores[8] > scores[0] + 0.05, scores
