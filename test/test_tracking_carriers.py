"""The motion-carrier seam: the tracker's keyframes, ids and checks read the same whichever carrier
moves the mesh, and a new carrier is one class behind the interface."""

from __future__ import annotations

import numpy as np
import torch
from test_tracking_mechanics import FLOW, make_tracker, sphere_frame

from occflow_ros.tracking import DeformationConfig, TrackerConfig
from occflow_ros.tracking.carriers import (CARRIERS, Carrier, CarrierContext, Frame, SegmentStart,
                                           carrier_name)
from occflow_ros.tracking.carriers.flow import FlowCarrier
from occflow_ros.tracking.carriers.graph import GraphCarrier


class StillCarrier(Carrier):
    """A carrier that never moves the mesh, and counts what it was asked."""

    made: list = []

    def __init__(self, ctx: CarrierContext, start: SegmentStart) -> None:
        super().__init__(ctx, start)
        StillCarrier.made.append(self)
        self.vertices = np.asarray(start.vertices, np.float32)
        self.frames = []

    def carry(self, frame: Frame) -> np.ndarray:
        self.frames.append(frame.t)
        self.t = frame.t
        return self.vertices

    def back(self, x: torch.Tensor, t: float) -> np.ndarray:
        return x[0].float().cpu().numpy()


def test_the_configuration_selects_the_carrier():
    assert carrier_name(TrackerConfig()) == "graph" and CARRIERS["graph"] is GraphCarrier
    assert carrier_name(TrackerConfig(deformation=FLOW)) == "flow" and CARRIERS["flow"] is FlowCarrier
    assert make_tracker().carrier == "flow"
    assert make_tracker(deformation=DeformationConfig()).carrier == "graph"
    # the graph needs the outlier stage only on keyframe frames, the flow's rigid prior on all
    assert not GraphCarrier.clean_frames and FlowCarrier.clean_frames


def test_a_new_carrier_plugs_in_and_the_keyframe_and_id_logic_is_unchanged(monkeypatch):
    monkeypatch.setitem(CARRIERS, "flow", StillCarrier)
    StillCarrier.made = []
    rng = np.random.default_rng(1)
    tracker = make_tracker(max_frames=4, input_correspondences=True)
    meshes = [tracker.feed(sphere_frame(k / 30, rng), k / 30) for k in range(9)]
    keyframes = [m.info["keyframe"] for m in meshes]
    assert keyframes == [True, False, False, False, True, False, False, False, True]
    assert len(StillCarrier.made) == 3  # one carrier per keyframe segment
    # each was asked for its segment's frames, in normalised time since its keyframe
    scale = tracker.time_scale
    np.testing.assert_allclose(StillCarrier.made[0].frames, [k / 30 / scale for k in (1, 2, 3)])
    np.testing.assert_allclose(StillCarrier.made[1].frames, [k / 30 / scale for k in (1, 2, 3)])
    assert StillCarrier.made[2].frames == [] and tracker._segment.carrier is StillCarrier.made[2]
    first = meshes[0]
    for m in meshes[1:4]:  # the still carrier left the keyframe mesh where it was ...
        np.testing.assert_allclose(m.vertices, first.vertices, atol=1e-6)
        assert (m.vertex_ids == first.vertex_ids).all() and not m.topology_changed
        # ... and its input correspondences are its own answer: the points where they were seen
        np.testing.assert_allclose(m.input_keyframe_points, m.input_points, atol=1e-6)
        assert "residual_m" in m.info and "coverage_m" in m.info
    # the next keyframe inherits ids from the last tracked mesh, as with every carrier
    assert len(np.intersect1d(meshes[4].vertex_ids, first.vertex_ids)) > 0
