"""The D-FAUST loader on the real sequence in ../shared/data, and its simulated single view."""

from __future__ import annotations

import numpy as np
import pytest

from occflow_ros.data import DataError
from occflow_ros.data.dfaust import dfaust_window_record, load_dfaust_sequence


@pytest.fixture(scope="module")
def sequence(dfaust_sequence):
    return load_dfaust_sequence(dfaust_sequence)


def test_loads_every_frame_in_metres_with_row_correspondence(sequence, dfaust_sequence):
    files = sorted(dfaust_sequence.glob("*.npz"))
    assert sequence.frames == len(files) == 17
    assert sequence.points.shape == (17, 100_000, 3)
    raw = np.load(files[5])
    expected = raw["loc"].astype(np.float64) + float(raw["scale"]) * raw["points"].astype(np.float64)
    assert np.allclose(sequence.points[5], expected, atol=1e-5)
    # a person: about 1.8 m tall along y (D-FAUST is y-up)
    extent = sequence.points[0].max(0) - sequence.points[0].min(0)
    assert 1.6 < extent[1] < 2.0 and extent[1] == extent.max()
    # the same row is the same body point: it moves little between frames at 60 Hz
    step = np.linalg.norm(sequence.points[1] - sequence.points[0], axis=1)
    assert np.median(step) < 0.02


def test_frame0_normalised_space_is_the_documented_map(sequence, dfaust_sequence):
    files = sorted(dfaust_sequence.glob("*.npz"))
    f0, f9 = np.load(files[0]), np.load(files[9])
    loc0, s0 = f0["loc"].astype(np.float64), float(f0["scale"])
    loc9, s9 = f9["loc"].astype(np.float64), float(f9["scale"])
    p9 = f9["points"].astype(np.float64)
    expected = (loc9 + s9 * p9 - loc0) / s0
    assert np.allclose(sequence.in_frame0_space(sequence.points[9]), expected, atol=1e-5)
    # frame 0 maps back onto its own file's normalised points
    assert np.allclose(sequence.in_frame0_space(sequence.points[0]),
                       f0["points"].astype(np.float64), atol=1e-5)


def test_simulated_single_view_sees_the_near_side_only(sequence):
    rng = np.random.default_rng(0)
    record = dfaust_window_record(sequence, rng, corr_points=5000, noise_k=0.0)
    assert len(record.frame_times) == 17 and record.frame_times[1] == pytest.approx(1 / 60)
    pts = record.frame_points[0]
    assert 500 <= len(pts) <= 1024
    body = record.corr[0]
    # visible points are on the camera's side: nearer than the body's middle, mostly
    assert np.mean(pts[:, 2] < np.median(body[:, 2])) > 0.8
    # and they lie on the body (noise off): close to some true body point
    from scipy.spatial import cKDTree

    full = cKDTree(body)
    assert np.median(full.query(pts)[0]) < 0.03
    assert record.meta["normalization"]["scale"] == pytest.approx(float(sequence.scale[0]))


def test_bad_sequence_folders_are_named(tmp_path):
    with pytest.raises(DataError, match="no such sequence folder"):
        load_dfaust_sequence(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no .npz frames"):
        load_dfaust_sequence(tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    np.savez(bad / "00000000.npz", points=np.zeros((10, 3)), loc=np.zeros(3))
    with pytest.raises(DataError, match=r"00000000\.npz: lacks \['scale'\]"):
        load_dfaust_sequence(bad)
