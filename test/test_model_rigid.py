"""The rigid prior: screw motions between ICP poses, and flows that carry points with them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from occflow_ros.geometry import GeometryError, frame_poses, register_to_keyframe
from occflow_ros.model import FramePoses, ModelConfig, ModelError, OccupancyFlow, SolverConfig
from occflow_ros.model.rigid import apply_pose, se3_exp, se3_log

SMALL = ModelConfig(c_dim=16, encoder_hidden=16, decoder_hidden=16, velocity_hidden=16,
                    encoder_blocks=1, decoder_blocks=1, velocity_blocks=1, input_points=64,
                    velocity_rigid=True)


def transform(rotvec, translation) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3] = Rotation.from_rotvec(rotvec).as_matrix()
    out[:3, 3] = translation
    return out


def test_se3_log_and_exp_invert_each_other_from_tiny_to_large_rotations():
    rng = np.random.default_rng(0)
    mats = np.stack([transform(axis / np.linalg.norm(axis) * angle, rng.normal(size=3) * 0.2)
                     for angle, axis in zip([0.0, 1e-7, 1e-3, 0.4, 2.5],
                                            rng.normal(size=(5, 3)))])
    omega, w = se3_log(torch.from_numpy(mats))
    assert torch.allclose(omega, -omega.transpose(-1, -2))
    back = se3_exp(omega, w).numpy()
    assert np.abs(back - mats).max() < 1e-9
    # half the twist is half the screw motion: applied twice it gives the whole
    half = se3_exp(omega / 2, w / 2)
    assert torch.allclose(half @ half, torch.from_numpy(mats), atol=1e-9)


def test_the_pose_between_frames_is_the_screw_motion_and_stops_at_the_ends():
    p1 = transform([0.0, 0.0, 0.6], [0.2, 0.0, 0.0])
    p2 = transform([0.0, 0.0, 0.9], [0.3, 0.1, 0.0])
    poses = torch.from_numpy(np.stack([np.eye(4), p1, p2, np.eye(4)])).float()[None]
    times = torch.tensor([[0.0, 0.4, 0.8, 0.8]])
    mask = torch.tensor([[True, True, True, False]])  # the last frame is padding
    fp = FramePoses(times, poses, mask)
    at = fp.at(torch.tensor([0.4])).numpy()[0]
    assert np.abs(at - p1).max() < 1e-6
    mid = fp.at(torch.tensor([0.2])).numpy()[0]
    assert Rotation.from_matrix(mid[:3, :3]).as_rotvec() == pytest.approx([0, 0, 0.3], abs=1e-6)
    assert np.abs(fp.at(torch.tensor([0.95])).numpy()[0] - p2).max() < 1e-6  # no extrapolation
    assert np.abs(fp.at(torch.tensor([-0.1])).numpy()[0] - np.eye(4)).max() < 1e-6
    with pytest.raises(ModelError, match="frame poses must be"):
        FramePoses(times, poses[:, :3])


def test_a_rigid_flow_with_a_still_field_carries_points_exactly_by_the_poses():
    torch.manual_seed(0)
    model = OccupancyFlow(SMALL).eval()  # the field's last layer starts at zero: no own motion
    rng = np.random.default_rng(1)
    mats = [np.eye(4)] + [transform(rng.normal(size=3) * 0.2, rng.normal(size=3) * 0.1)
                          for _ in range(3)]
    fp = FramePoses(torch.tensor([[0.0, 0.3, 0.5, 0.9]]),
                    torch.from_numpy(np.stack(mats)).float()[None])
    pts = torch.rand(1, 50, 3) - 0.5
    code = torch.zeros(1, 16)
    solver = SolverConfig("midpoint", 0.25)
    many = model.flow_to_times(pts, 0.0, torch.tensor([0.3, 0.5, 0.9]), code, solver, poses=fp)
    for k, m in enumerate(mats[1:]):
        expected = apply_pose(torch.from_numpy(m)[None], pts)
        assert torch.allclose(many[0, k], expected[0], atol=1e-5)
    # backwards from the last frame to the keyframe, and between two frames
    back = model.flow(many[:, 2], 0.9, 0.0, code, solver, poses=fp)
    assert torch.allclose(back, pts, atol=1e-5)
    step = model.flow(many[:, 0], 0.3, 0.5, code, solver, poses=fp)
    assert torch.allclose(step, many[:, 1], atol=1e-5)
    with pytest.raises(ModelError, match="pass the window's FramePoses"):
        model.flow(pts, 0.0, 0.5, code, solver)


def test_the_field_of_a_rigid_model_moves_points_in_the_body_frame():
    """With a field that is a constant velocity u in the body frame and a pose that turns the body
    by 90 degrees about z, the world displacement is the turned u."""
    model = OccupancyFlow(SMALL).eval()
    with torch.no_grad():
        model.velocity.fc_out.bias.copy_(torch.tensor([0.1, 0.0, 0.0]))
    turn = transform([0.0, 0.0, np.pi / 2], [0.0, 0.0, 0.0])
    fp = FramePoses(torch.tensor([[0.0, 1.0]]),
                    torch.from_numpy(np.stack([turn, turn])).float()[None])  # turned already
    pts = torch.zeros(1, 1, 3)
    out = model.flow(pts, 0.0, 1.0, torch.zeros(1, 16), SolverConfig("rk4", 0.1), poses=fp)
    # the pose at t = 0 is already the turn: y = R^T x, y moves by +0.1 x, x = R y moves by +0.1 y
    assert out[0, 0].tolist() == pytest.approx([0.0, 0.1, 0.0], abs=1e-5)


def test_icp_recovers_a_rigid_motion_of_a_partial_view():
    rng = np.random.default_rng(2)
    d = rng.normal(size=(4000, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    # an ellipsoid's camera-facing half: asymmetric enough to pin down every degree of freedom
    key = (d * [0.3, 0.15, 0.1])[d[:, 2] < 0][:300]
    truth = transform([0.05, -0.1, 0.15], [0.03, -0.02, 0.01])
    moved = key @ truth[:3, :3].T + truth[:3, 3]
    # the frame is another random sample of the moved surface, with noise
    other = (d * [0.3, 0.15, 0.1])[d[:, 2] < 0][300:600]
    frame = other @ truth[:3, :3].T + truth[:3, 3] + rng.normal(scale=0.002, size=other.shape)
    pose = register_to_keyframe(key, frame)
    err = np.linalg.norm(key @ pose[:3, :3].T + pose[:3, 3] - moved, axis=1).mean()
    still = np.linalg.norm(key - moved, axis=1).mean()
    # two different samples of 300 points: what is left is about the sampling's spacing
    assert err < 0.3 * still and err < 0.015
    # a motion farther than the fine pass's reach is found through the coarse pass first
    far = transform([0.0, 0.0, 0.2], [0.06, 0.03, 0.0])
    jumped = other @ far[:3, :3].T + far[:3, 3]
    fine_only = register_to_keyframe(key, jumped, np.eye(4), coarse_distance=None)
    both = register_to_keyframe(key, jumped, np.eye(4))

    def miss(pose):
        return np.linalg.norm(key @ (pose - far)[:3, :3].T + (pose - far)[:3, 3], axis=1).mean()

    assert miss(both) < 0.025 and miss(fine_only) > 0.05
    poses = frame_poses([key, moved, frame])
    assert poses.shape == (3, 4, 4) and poses.dtype == np.float32
    assert np.abs(poses[0] - np.eye(4)).max() == 0
    assert np.abs(poses[1] - truth).max() < 1e-3
    with pytest.raises(GeometryError, match="NaN"):
        register_to_keyframe(key, np.full((5, 3), np.nan))
    with pytest.raises(GeometryError, match=r"\(N>0, 3\)"):
        register_to_keyframe(key, np.zeros((0, 3)))
