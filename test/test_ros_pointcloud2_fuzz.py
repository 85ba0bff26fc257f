"""The PointCloud2 decoder under random and adversarial messages: valid output or PointCloud2Error, never more.

Properties of ``read_xyz`` (all three modes) and ``cloud_view`` on rclpy PointCloud2 messages that are
(a) random headers over random bytes (sizes up to 2**32 - 1, any datatype byte, any counts and offsets),
and (b) well-formed clouds with nasty values (NaN, Inf, huge, zero, float64 beyond float32, integers,
big-endian) and then zero to three corruptions (wrong sizes, truncated or padded data, fields dropped,
duplicated, moved onto each other, unknown datatypes, counts). Each call either raises PointCloud2Error
or returns output that is consistent with the message; no call allocates more than a small multiple of
the data actually present (a lying header cannot make the decoder allocate what it claims).

Example counts are modest so the suite stays fast; for a long fuzzing run set OCCFLOW_FUZZ_EXAMPLES:

    . tools/env.sh && OCCFLOW_FUZZ_EXAMPLES=20000 python -m pytest -q test/test_ros_pointcloud2_fuzz.py
"""

from __future__ import annotations

import array
import os
import tracemalloc
from typing import Any, Callable, List, Tuple

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sensor_msgs.msg import PointCloud2, PointField
from std_msgs.msg import Header

from occflow_ros.ros import PointCloud2Error, cloud_view, make_cloud, read_xyz
from occflow_ros.ros.pointcloud2 import POINTFIELD_DTYPES

EXAMPLES = int(os.environ.get("OCCFLOW_FUZZ_EXAMPLES", "0"))
FUZZ = settings(max_examples=EXAMPLES or 150, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
U32 = 2**32 - 1
# sizes a header may claim: small, at numpy's and uint32's limits, or anything
SIZES = st.one_of(st.integers(0, 8), st.sampled_from([2**31 - 1, 2**31, U32]), st.integers(0, U32))
SPECIAL = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-45, 3.4e38, -3.4e38, 1e300, -1e300, 1.0, -2.5])

DECODERS: List[Tuple[str, Callable[[Any], np.ndarray]]] = [
    ("read_xyz", read_xyz),
    ("read_xyz organized", lambda m: read_xyz(m, organized=True)),
    ("read_xyz all", lambda m: read_xyz(m, skip_invalid=False)),
    ("read_xyz organized all", lambda m: read_xyz(m, organized=True, skip_invalid=False)),
    ("cloud_view", cloud_view),
]


def _message(height: int, width: int, point_step: int, row_step: int, fields: List[PointField],
             data: bytes, big_endian: bool) -> PointCloud2:
    msg = PointCloud2(header=Header(frame_id="fuzz"), height=height, width=width, fields=fields,
                      is_bigendian=big_endian, point_step=point_step, row_step=row_step)
    msg.data = array.array("B", data)
    return msg


@st.composite
def random_headers(draw) -> PointCloud2:
    """Every header field drawn on its own over a short random buffer: almost all of it nonsense."""
    names = st.one_of(st.sampled_from(["x", "y", "z", "rgb", "intensity", ""]), st.text(max_size=3))
    fields = draw(st.lists(st.builds(PointField, name=names, offset=SIZES,
                                     datatype=st.integers(0, 255), count=SIZES), max_size=6))
    return _message(draw(SIZES), draw(SIZES), draw(SIZES), draw(SIZES), fields,
                    draw(st.binary(max_size=512)), draw(st.booleans()))


@st.composite
def nasty_clouds(draw) -> Tuple[PointCloud2, np.ndarray, bool]:
    """A well-formed cloud (random field layout around x, y, z of one numeric type, any byte order,
    organized or not, one point or many, row padding) holding NaN, Inf, huge, zero and ordinary values,
    then up to three corruptions. Returns (message, the (H, W) structured points, corrupted?)."""
    xyz_type = POINTFIELD_DTYPES[draw(st.sampled_from(sorted(POINTFIELD_DTYPES)))]
    order = draw(st.sampled_from("<>"))
    typ = xyz_type.newbyteorder(order) if xyz_type.itemsize > 1 else xyz_type
    extra = [(f"e{i}", POINTFIELD_DTYPES[draw(st.sampled_from(sorted(POINTFIELD_DTYPES)))])
             for i in range(draw(st.integers(0, 2)))]
    members = [("x", typ), ("y", typ), ("z", typ)] + [
        (n, t.newbyteorder(order) if t.itemsize > 1 else t) for n, t in extra]
    members = draw(st.permutations(members))
    names, formats, offsets, offset = [], [], [], 0
    for name, t in members:
        offset += draw(st.integers(0, 2))  # gaps between fields
        names.append(name)
        formats.append(t)
        offsets.append(offset)
        offset += t.itemsize
    dtype = np.dtype({"names": names, "formats": formats, "offsets": offsets,
                      "itemsize": offset + draw(st.integers(0, 3))})
    shape = draw(st.sampled_from([(1, 1), (1, 0), (0, 4), (1, 7), (3, 5), (2, 1), (6, 6)]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    points = np.frombuffer(rng.bytes(int(np.prod(shape)) * dtype.itemsize), dtype).reshape(shape).copy()
    mode = draw(st.sampled_from(["special", "normal", "raw"]))
    for axis in "xyz":
        if mode == "raw" or points.size == 0:
            continue
        values = (rng.choice(SPECIAL, size=shape) if mode == "special"
                  else rng.normal(0.0, 2.0, size=shape))
        if xyz_type.kind == "f":
            with np.errstate(over="ignore", invalid="ignore"):
                points[axis] = values.astype(xyz_type)
        else:
            info = np.iinfo(xyz_type)
            clean = np.nan_to_num(values, nan=0.0, posinf=info.max, neginf=info.min)
            points[axis] = np.clip(clean, info.min, info.max).astype(xyz_type)
    msg = make_cloud(Header(frame_id="fuzz"), points if shape[0] != 1 else points.reshape(-1))
    if msg.height != shape[0]:  # make_cloud writes (N,) as height 1 and (0, W) as height 0
        msg.height, msg.width = shape
        msg.row_step = msg.point_step * shape[1]
    pad = draw(st.integers(0, 3))
    if pad and msg.height:
        rows = np.frombuffer(msg.data, np.uint8).reshape(msg.height, -1)
        padded = np.concatenate([rows, np.full((msg.height, pad), 0xAB, np.uint8)], axis=1)
        msg.row_step += pad
        msg.data = array.array("B", padded.tobytes())
    corruptions = draw(st.lists(st.sampled_from(CORRUPTIONS), max_size=3))
    for corrupt in corruptions:
        corrupt(msg, draw)
    return msg, points, bool(corruptions)


def _size(msg, draw) -> None:
    name = draw(st.sampled_from(["height", "width", "point_step", "row_step"]))
    old = getattr(msg, name)
    setattr(msg, name, draw(st.sampled_from([0, 1, max(old - 1, 0), min(old + 1, U32), 2**31, U32])))


def _data(msg, draw) -> None:
    data = bytes(msg.data)
    cut = draw(st.integers(0, len(data) + 16))
    msg.data = array.array("B", data[:cut] + bytes(max(0, cut - len(data))))


def _fields(msg, draw) -> None:
    fields = list(msg.fields)
    if not fields:
        return
    i = draw(st.integers(0, len(fields) - 1))
    f = fields[i]
    how = draw(st.sampled_from(["drop", "duplicate", "overlap", "datatype", "count", "offset", "rename"]))
    if how == "drop":
        del fields[i]
    elif how == "duplicate":
        fields.append(PointField(name=f.name, offset=f.offset, datatype=f.datatype, count=f.count))
    elif how == "overlap":
        other = fields[(i + 1) % len(fields)]
        fields[i] = PointField(name=f.name, offset=other.offset + 1, datatype=f.datatype, count=f.count)
    elif how == "datatype":
        fields[i] = PointField(name=f.name, offset=f.offset, datatype=draw(st.integers(0, 255)), count=f.count)
    elif how == "count":
        fields[i] = PointField(name=f.name, offset=f.offset, datatype=f.datatype,
                               count=draw(st.sampled_from([0, 2, 3, U32])))
    elif how == "offset":
        fields[i] = PointField(name=f.name, offset=draw(SIZES), datatype=f.datatype, count=f.count)
    else:
        fields[i] = PointField(name=draw(st.sampled_from(["X", "", "y", "x "])), offset=f.offset,
                               datatype=f.datatype, count=f.count)
    msg.fields = fields


def _endian(msg, _draw) -> None:
    msg.is_bigendian = not msg.is_bigendian


CORRUPTIONS = [_size, _data, _fields, _endian]


# -- the property -------------------------------------------------------------------------------------

def _check_output(name: str, msg: PointCloud2, out: np.ndarray) -> None:
    """What a decoder that did not raise must have returned for ``msg``."""
    height, width = msg.height, msg.width
    n = height * width
    assert isinstance(out, np.ndarray)
    if name == "cloud_view":
        assert out.shape == ((width,) if height == 1 else (height, width))
        assert out.dtype.itemsize == msg.point_step
        assert list(out.dtype.names or ()) == [f.name for f in msg.fields]
        return
    assert out.dtype == np.float32
    assert not np.shares_memory(out, np.frombuffer(msg.data, np.uint8)), "aliases msg.data"
    if name == "read_xyz":
        assert out.ndim == 2 and out.shape[1] == 3 and out.shape[0] <= n
        assert np.isfinite(out).all() and (out != 0).any(axis=1).all(), "an invalid point was kept"
    elif name == "read_xyz all":
        assert out.shape == (n, 3)
    else:  # organized
        assert out.shape == (height, width, 3)
        if name == "read_xyz organized":
            flat = out.reshape(-1, 3)
            kept = ~np.isnan(flat).any(axis=1)
            assert np.isnan(flat[~kept]).all(), "an invalid pixel is not all NaN"
            assert np.isfinite(flat[kept]).all() and (flat[kept] != 0).any(axis=1).all()


def _decode_all(msg: PointCloud2) -> dict:
    """Every decoder on ``msg``: name -> output, or the PointCloud2Error it raised. Any other
    exception fails the test. Also checks the peak memory each call allocated."""
    allowed = 16 * len(msg.data) + 65536  # outputs are at most 12 bytes per point of data present
    results = {}
    tracemalloc.start()
    try:
        for name, decode in DECODERS:
            tracemalloc.reset_peak()
            before = tracemalloc.get_traced_memory()[0]
            try:
                out = decode(msg)
            except PointCloud2Error as e:
                results[name] = e
            else:
                _check_output(name, msg, out)
                results[name] = out
            peak = tracemalloc.get_traced_memory()[1] - before
            assert peak <= allowed, (f"{name} allocated {peak} bytes for a message of {len(msg.data)} "
                                     f"data bytes (height {msg.height}, width {msg.width})")
    finally:
        tracemalloc.stop()
    # all read_xyz modes agree on whether the message is acceptable, and with each other
    verdicts = {name: isinstance(r, PointCloud2Error) for name, r in results.items() if name != "cloud_view"}
    assert len(set(verdicts.values())) == 1, f"read_xyz modes disagree: {results}"
    if isinstance(results["cloud_view"], PointCloud2Error):
        assert all(verdicts.values()), "read_xyz accepted a message cloud_view refuses"
    if not any(verdicts.values()):
        everything = results["read_xyz all"]
        organized = results["read_xyz organized all"]
        assert _bits_equal(organized.reshape(-1, 3), everything)
        # the fast strided path and the generic per-field path give the same numbers
        view = np.atleast_2d(results["cloud_view"]).reshape(-1)
        with np.errstate(over="ignore", invalid="ignore"):
            generic = np.stack([view[a].astype(np.float32) for a in "xyz"], axis=-1).reshape(-1, 3)
        assert _bits_equal(everything, generic)
        valid = np.isfinite(everything).all(axis=1) & (everything != 0).any(axis=1)
        assert _bits_equal(results["read_xyz"], everything[valid])
    return results


def _bits_equal(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and (np.isnan(a) == np.isnan(b)).all() and (
        a[~np.isnan(a)] == b[~np.isnan(b)]).all()


@FUZZ
@given(random_headers())
def test_random_headers_over_random_bytes_give_valid_output_or_pointcloud2_error(msg):
    _decode_all(msg)


@FUZZ
@given(nasty_clouds())
def test_nasty_values_and_corrupted_layouts_give_valid_output_or_pointcloud2_error(case):
    msg, points, corrupted = case
    results = _decode_all(msg)
    if corrupted:
        return
    # an intact cloud always decodes, to exactly its points (any type, order, padding, one point)
    assert not any(isinstance(r, PointCloud2Error) for r in results.values()), results
    with np.errstate(over="ignore", invalid="ignore"):
        expected = np.stack([points[a].astype(np.float32) for a in "xyz"], axis=-1).reshape(-1, 3)
    assert _bits_equal(results["read_xyz all"], expected)


@pytest.mark.parametrize("height, width, point_step, row_step, data_bytes", [
    (2**31, 2**31, 16, 16 * 2**31, 16),  # claims 4.6e18 points, carries one
    (U32, U32, U32, U32, 0),
    (1, U32, 16, 16 * U32, 64),
    (U32, 0, 16, 0, 0),  # no points at all, however many rows: valid, and nothing allocated
    (1, 0, U32, 0, 0),  # a point_step numpy cannot represent
    (0, 7, 2**31, 7 * 2**31, 0),
])
def test_lying_headers_allocate_nothing_they_claim(height, width, point_step, row_step, data_bytes):
    fields = [PointField(name=a, offset=4 * i, datatype=PointField.FLOAT32, count=1)
              for i, a in enumerate("xyz")]
    msg = _message(height, width, point_step, row_step, fields, bytes(data_bytes), False)
    results = _decode_all(msg)
    if height * width:
        assert all(isinstance(r, PointCloud2Error) for r in results.values()), results
    else:
        assert isinstance(results["read_xyz"], (np.ndarray, PointCloud2Error))


def test_two_million_points_with_nan_inf_and_zeros_decode_exactly():
    n = 2_000_000
    rng = np.random.default_rng(5)
    xyz = rng.normal(0.0, 1.0, size=(n, 3)).astype(np.float32)
    bad = rng.choice(4, size=n, p=[0.7, 0.1, 0.1, 0.1])
    xyz[bad == 1, rng.integers(0, 3)] = np.nan
    xyz[bad == 2, 1] = np.inf
    xyz[bad == 3] = 0.0
    points = np.zeros(n, [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("rgb", "<f4")])
    points["x"], points["y"], points["z"] = xyz.T
    for shape in ((n,), (1000, 2000)):
        msg = make_cloud(Header(frame_id="big"), points.reshape(shape))
        out = read_xyz(msg)
        valid = np.isfinite(xyz).all(axis=1) & (xyz != 0).any(axis=1)
        assert np.array_equal(out, xyz[valid])
        assert read_xyz(msg, organized=True).shape == (*((1,) if len(shape) == 1 else ()), *shape, 3)


def test_what_the_fuzzer_found_stays_fixed():
    # a tightly packed cloud read with skip_invalid=False came back as a view of msg.data
    msg = make_cloud(Header(frame_id="f"), {a: np.array([1.0], np.float32) for a in "xyz"})
    out = read_xyz(msg, skip_invalid=False)
    out[:] = 7.0
    assert np.array_equal(read_xyz(msg), [[1.0, 1.0, 1.0]]), "writing the output wrote the message"
    # an empty cloud whose x does not start at byte 0 raised numpy's ValueError
    fields = [PointField(name=a, offset=1 + 4 * i, datatype=PointField.FLOAT32, count=1)
              for i, a in enumerate("xyz")]
    empty = _message(1, 0, 14, 0, fields, b"", False)
    for name, decode in DECODERS:
        assert decode(empty).size == 0, name
