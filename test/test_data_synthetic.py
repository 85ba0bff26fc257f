"""Synthetic window records: what the tracker would see, with exact ground truth, reproducibly."""

from __future__ import annotations

import numpy as np
import pytest

from occflow_ros.data import DataError, shape_from_description
from occflow_ros.data.records import load_records
from occflow_ros.data.synthetic import (SyntheticConfig, synthetic_records, with_iou_queries,
                                        write_synthetic_shards)
from occflow_ros.evaluation.metrics import mesh_iou
from occflow_ros.geometry import fit_normalization

SMALL = SyntheticConfig(families=("human",), family_weights=None, windows_per_shape=2,
                        width=160, height=120, occ_points=512, corr_points=256, frame_points=256)


def test_records_hold_causal_frames_and_exact_ground_truth_in_the_optical_frame():
    records = list(synthetic_records(7, 2, SMALL))
    for r in records:
        assert r.frame_times[0] == 0.0 and np.all(np.diff(r.frame_times) > 0)
        assert 15 <= len(r.frame_times) <= 32  # about 30 Hz for 1 s, some frames dropped
        assert r.gt_frames[0] == 0 and r.gt_frames[-1] == len(r.frame_times) - 1
        assert all(len(p) <= SMALL.frame_points for p in r.frame_points)
        # points are in front of the camera (optical z forward) at a plausible distance
        z = r.frame_points[0][:, 2]
        assert z.min() > 0.5 and z.max() < 6.0
        # occupancy labels agree with the shape rebuilt from the record's own description
        shape = shape_from_description(r.meta["shape"])
        pose = np.asarray(r.meta["camera_to_world"])
        for k, g in enumerate(r.gt_frames):
            t = r.meta["t_start"] + r.frame_times[g]
            world = r.occ_points[k] @ pose[:3, :3].T + pose[:3, 3]
            # (query points are stored as float32: a label may flip within ~1e-7 m of the surface)
            assert np.mean(shape.occupancy(world.astype(np.float64), t) == r.occ[k]) > 0.999
            assert 0.05 < r.occ[k].mean() < 0.6, "both inside and outside are sampled"
            # correspondences lie on the surface at their time
            cw = r.corr[k].astype(np.float64) @ pose[:3, :3].T + pose[:3, 3]
            assert np.abs(shape.surface_residual(cw, t)).max() < 1e-3 * shape.height
        # half of the queries cover the keyframe's meshing cube in normalised space
        norm = fit_normalization(r.frame_points[0], padding=SMALL.margin)
        cube = norm.to_normalized(r.occ_points[0][: SMALL.occ_points // 2])
        assert np.abs(cube).max() <= SMALL.box_size / 2 + 1e-4
        assert (np.abs(cube).max(axis=0) > 0.5).all(), "the whole cube, not the object's box"


def test_dense_iou_queries_fill_the_meshing_cube_with_exact_labels_at_each_gt_time():
    record = next(iter(synthetic_records(11, 1, SMALL)))
    dense = with_iou_queries(record, 30_000, seed=5, cfg=SMALL)
    n_near = SMALL.occ_points - SMALL.occ_points // 2
    assert dense.occ_points.shape == (len(record.gt_frames), 30_000 + n_near, 3)
    assert dense.meta["occ_uniform"] == 30_000 and record.meta["occ_uniform"] == SMALL.occ_points // 2
    # the record's frames and near-surface queries are kept; only the uniform ones are new
    assert all(np.array_equal(p, q) for p, q in zip(record.frame_points, dense.frame_points))
    assert np.array_equal(dense.occ_points[:, 30_000:], record.occ_points[:, SMALL.occ_points // 2:])
    assert np.array_equal(dense.occ[:, 30_000:], record.occ[:, SMALL.occ_points // 2:])
    norm = fit_normalization(record.frame_points[0], padding=SMALL.margin)
    cube = norm.to_normalized(dense.occ_points[0][:30_000])
    assert np.abs(cube).max() <= SMALL.box_size / 2 + 1e-4
    assert (np.abs(cube).max(axis=0) > 0.54).all()
    # labels at each GT time: the exact mesh of that time scores them near 1; the keyframe's mesh
    # scores the last frame's labels lower (the person moved), so each frame has its own time
    shape = shape_from_description(record.meta["shape"])
    pose = np.asarray(record.meta["camera_to_world"])
    meshes = []
    for g in record.gt_frames:
        v, f = shape.mesh(record.meta["t_start"] + record.frame_times[g])
        meshes.append(((v - pose[:3, 3]) @ pose[:3, :3], f))
    inside = dense.occ[:, :30_000]
    assert inside.sum(axis=1).min() > 50, "enough queries inside the person for a steady IoU"
    own = [mesh_iou(*meshes[k], dense.occ_points[k][:30_000], inside[k]) for k in range(len(meshes))]
    assert min(own) > 0.9, own
    stale = mesh_iou(*meshes[0], dense.occ_points[-1][:30_000], inside[-1])
    assert stale < own[-1] - 0.03, (stale, own[-1])
    # the same seed draws the same queries; another seed other ones
    again = with_iou_queries(record, 30_000, seed=5, cfg=SMALL)
    assert np.array_equal(again.occ_points, dense.occ_points)
    other = with_iou_queries(record, 30_000, seed=6, cfg=SMALL)
    assert not np.array_equal(other.occ_points[:, :30_000], dense.occ_points[:, :30_000])


def test_dense_iou_queries_refuse_a_record_without_a_synthetic_shape():
    record = next(iter(synthetic_records(11, 1, SMALL)))
    record.meta = {k: v for k, v in record.meta.items() if k != "shape"}
    with pytest.raises(DataError, match="synthetic shape"):
        with_iou_queries(record, 1000, seed=0, cfg=SMALL)
    with pytest.raises(DataError, match="n must be"):
        with_iou_queries(record, 0, seed=0, cfg=SMALL)


def test_the_same_seed_gives_the_same_records(tmp_path):
    a = write_synthetic_shards(tmp_path / "a", seed=3, shards=1, per_shard=2, cfg=SMALL,
                               progress=False)
    b = write_synthetic_shards(tmp_path / "b", seed=3, shards=1, per_shard=2, cfg=SMALL,
                               progress=False)
    ra, rb = load_records(a), load_records(b)
    for x, y in zip(ra, rb):
        assert np.array_equal(x.frame_times, y.frame_times)
        assert all(np.array_equal(p, q) for p, q in zip(x.frame_points, y.frame_points))
        assert np.array_equal(x.occ, y.occ) and np.array_equal(x.corr, y.corr)
    # an existing shard is kept, not rewritten
    before = a[0].stat().st_mtime_ns
    write_synthetic_shards(tmp_path / "a", seed=99, shards=1, per_shard=2, cfg=SMALL,
                           progress=False)
    assert a[0].stat().st_mtime_ns == before
