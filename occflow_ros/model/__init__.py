"""The networks: point-set encoders, occupancy decoder, velocity field, ODE flow, checkpoints."""
