"""Occupancy Flow networks with known answers, built by setting weights (for tests of the machinery).

``ball_and_drift_model``: the occupancy decoder is (close to) a ball of radius ``radius`` around
``center`` (normalised) — a polytope of many half-spaces, with the ReLU units as the faces — and the
velocity field is a constant ``velocity`` (normalised units per unit normalised time). Encoders are
left untrained: their codes are ignored because the FiLM projections are zero.
"""

from __future__ import annotations

import numpy as np
import torch

from occflow_ros.model import ModelConfig, OccupancyFlow

# raw coordinates (no Fourier features), so the first layers' weights mean what the builders say
CONFIG = ModelConfig(c_dim=16, encoder_hidden=16, encoder_blocks=1, decoder_hidden=128,
                     decoder_blocks=1, velocity_hidden=16, velocity_blocks=1, input_points=256,
                     fourier_octaves=0, local_neighbors=0)


def fibonacci_directions(n: int) -> np.ndarray:
    i = np.arange(n) + 0.5
    phi = np.arccos(1 - 2 * i / n)
    theta = np.pi * (1 + 5 ** 0.5) * i
    return np.stack([np.cos(theta) * np.sin(phi), np.sin(theta) * np.sin(phi), np.cos(phi)], 1)


def ball_and_drift_model(radius: float = 0.42, velocity=(0.0, 0.0, 0.0), center=(0.0, 0.0, 0.0),
                         sharpness: float = 1000.0) -> OccupancyFlow:
    model = OccupancyFlow(CONFIG).eval()
    dec, vel = model.decoder, model.velocity
    with torch.no_grad():
        for p in list(dec.parameters()) + list(vel.parameters()):
            p.zero_()
        # hidden unit i = relu(n_i . p - radius): 0 inside the ball's polytope, > 0 outside face i
        dirs = torch.from_numpy(fibonacci_directions(CONFIG.decoder_hidden)).float()
        dec.fc_in.weight.copy_(dirs)
        dec.fc_in.bias.copy_(-radius - dirs @ torch.tensor(center, dtype=torch.float32))
        # logit = 1 - sharpness * sum_i unit_i: inside where every unit is (nearly) zero
        dec.fc_out.weight.fill_(-sharpness)
        dec.fc_out.bias.fill_(1.0)
        vel.fc_out.bias.copy_(torch.tensor(velocity, dtype=torch.float32))
    return model


def sphere_model(*, radius: float, scale: float, center_z: float,
                 velocity=(0.0, 0.0, 0.0)) -> OccupancyFlow:
    """The ball model for a real sphere seen by a camera, in metres.

    radius: the sphere's radius (m); scale: metres per normalised unit of the keyframe normalisation
    the tracker will fit to what the camera sees; center_z: how far (m, along the optical axis) the
    sphere's centre lies behind the centre of that normalisation; velocity: the sphere's (m/s).
    """
    v = np.asarray(velocity, dtype=np.float64) * CONFIG.window_seconds / scale
    return ball_and_drift_model(radius=radius / scale, center=(0.0, 0.0, center_z / scale),
                                velocity=tuple(float(c) for c in v))


def ellipsoid_model(*, axes, scale: float, center_z: float) -> OccupancyFlow:
    """A still model whose occupancy is (close to) an axis-aligned ellipsoid with semi-axes ``axes``
    (m), placed like ``sphere_model``'s ball: the polytope's face i sits at the ellipsoid's support
    distance sqrt(sum_k (a_k n_ik)^2) along its direction n_i."""
    model = ball_and_drift_model(radius=0.0)
    axes_n = torch.tensor(np.asarray(axes, np.float64) / scale, dtype=torch.float32)
    center = torch.tensor([0.0, 0.0, center_z / scale], dtype=torch.float32)
    with torch.no_grad():
        dirs = model.decoder.fc_in.weight
        support = torch.sqrt(((dirs * axes_n) ** 2).sum(1))
        model.decoder.fc_in.bias.copy_(-support - dirs @ center)
    return model
