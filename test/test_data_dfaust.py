"""The D-FAUST loader: on a small sequence in the paper's layout that the tests write (always), on
the real sequence in ../shared/data (skipped, naming it, in a clone without ../shared), and its
simulated single view."""

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


def test_the_view_sees_what_a_depth_camera_sees_one_point_per_pixel():
    """dfaust_visible_rows is a z-buffer at the synthetic world's camera (320x240, 69 degrees): a
    sheet hidden behind a nearer one is not seen where the nearer one covers it and is seen beside
    it, the inside of a bowl that opens towards the camera is seen down to its bottom (concave
    parts, which the hidden-point removal used before missed), and no pixel holds two points."""
    from occflow_ros.data.dfaust import dfaust_visible_rows

    rng = np.random.default_rng(0)
    pose = np.eye(4)  # the optical frame is the world: the camera looks along +z
    xy = rng.uniform(-0.3, 0.3, size=(40_000, 2))
    front = np.column_stack([xy[:, 0] - 0.2, xy[:, 1], np.full(len(xy), 2.0)])  # x in -0.5..0.1
    back = np.column_stack([xy[:, 0], xy[:, 1], np.full(len(xy), 2.5)])  # x in -0.3..0.3
    rows = dfaust_visible_rows(np.concatenate([front, back]), pose)
    seen_back = back[rows[rows >= len(front)] - len(front)]
    # the back sheet is seen only beside the front one: beyond the front's edge (x = 0.1 at 2 m),
    # x > 0.125 at 2.5 m, a strip of ~16 x 55 pixels
    assert len(seen_back) > 600 and seen_back[:, 0].min() > 0.11
    seen_front = rows[rows < len(front)]
    # one point per pixel: the front sheet covers ~0.6 m x 0.6 m at 2 m, (0.3 * 231 px)^2 / m^2
    focal = 320 / (2 * np.tan(np.deg2rad(69.0) / 2))
    pixels = (0.6 * focal / 2.0) ** 2
    assert 0.8 * pixels < len(seen_front) <= pixels * 1.05
    # a bowl of radius 0.3 m opening towards the camera, its bottom 2.5 m away
    d = rng.normal(size=(60_000, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    d[:, 2] = np.abs(d[:, 2])  # the far half of a sphere: seen from inside
    bowl = d * 0.3 + np.array([0.0, 0.0, 2.2])
    seen = bowl[dfaust_visible_rows(bowl, pose)]
    assert seen[:, 2].max() > 2.49  # its bottom
    # and its middle, not the rim only
    assert np.mean(np.linalg.norm(seen[:, :2], axis=1) < 0.15) > 0.15


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


def write_paper_layout(root, frames: int = 5, points: int = 400, queries: int = 300, seed: int = 0):
    """A sequence as the Occupancy Flow data release stores D-FAUST: pcl_seq/<frame>.npz (float16
    points in a per-frame normalised space, float16 loc, float64 scale) and points_seq/<frame>.npz
    (query points and bit-packed occupancies). The body: a sphere of radius 0.3 m moving along x;
    returns its points in metres (T, N, 3) and its queries' truth (T, M) for the checks."""
    rng = np.random.default_rng(seed)
    unit = rng.normal(size=(points, 3))
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    (root / "pcl_seq").mkdir(parents=True)
    (root / "points_seq").mkdir()
    metres, inside = [], []
    for t in range(frames):
        centre = np.array([0.05 * t, 1.0, 2.0])
        body = centre + 0.3 * unit
        loc, scale = body.mean(0), 0.7 + 0.01 * t
        np.savez(root / "pcl_seq" / f"{t:08d}.npz", points=((body - loc) / scale).astype(np.float16),
                 loc=loc.astype(np.float16), scale=np.float64(scale))
        metres.append(loc.astype(np.float16).astype(np.float64)
                      + scale * ((body - loc) / scale).astype(np.float16).astype(np.float64))
        q = rng.uniform(-0.5, 0.5, size=(queries, 3))
        occ = np.linalg.norm(loc + scale * q - centre, axis=1) < 0.3
        np.savez(root / "points_seq" / f"{t:08d}.npz", points=q.astype(np.float16),
                 occupancies=np.packbits(occ), loc=loc.astype(np.float16), scale=np.float64(scale))
        inside.append(np.linalg.norm(loc.astype(np.float16).astype(np.float64)
                                     + scale * q.astype(np.float16).astype(np.float64) - centre,
                                     axis=1) < 0.3)
    return np.stack(metres), np.stack(inside)


def test_a_sequence_in_the_papers_layout_loads_in_metres_with_occupancies(tmp_path):
    root = tmp_path / "50099_test_sequence"
    metres, inside = write_paper_layout(root)
    seq = load_dfaust_sequence(root)
    assert seq.name == "50099_test_sequence" and seq.frames == 5
    assert seq.points.shape == (5, 400, 3) and seq.points.dtype == np.float32
    assert np.allclose(seq.points, metres, atol=1e-5)
    # row i is the same point in every frame: the sphere only translates
    assert np.allclose(seq.points[4] - seq.points[0], [0.2, 0.0, 0.0], atol=2e-3)
    first = np.load(root / "pcl_seq" / "00000000.npz")
    assert np.allclose(seq.in_frame0_space(seq.points[0]), first["points"].astype(np.float64),
                       atol=1e-5)
    assert seq.occ.shape == (5, 300) and seq.occ.dtype == bool
    agree = (seq.occ == inside).mean()  # float16 rounding flips a point on the sphere at most
    assert agree > 0.99 and seq.occ.any() and not seq.occ.all()
    assert np.allclose(np.linalg.norm(seq.occ_points[2][seq.occ[2]] - [0.1, 1.0, 2.0], axis=1)
                       < 0.31, True)


def test_a_sequence_whose_parts_disagree_is_refused_by_name(tmp_path):
    root = tmp_path / "seq"
    write_paper_layout(root, frames=3)
    (root / "points_seq" / "00000002.npz").unlink()
    with pytest.raises(DataError, match=r"points_seq: 2 files for 3 frames"):
        load_dfaust_sequence(root)
    other = tmp_path / "other"
    write_paper_layout(other, frames=2)
    np.savez(other / "pcl_seq" / "00000001.npz", points=np.zeros((10, 3), np.float16),
             loc=np.zeros(3, np.float16), scale=np.float64(1.0))
    with pytest.raises(DataError, match="10 points, but the first frame has 400"):
        load_dfaust_sequence(other)
