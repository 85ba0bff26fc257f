"""PointCloud2 <-> numpy: every datatype and byte order, padding, organized clouds, invalid points, colour, errors."""

from __future__ import annotations

import array
import struct
import time
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sensor_msgs.msg import PointCloud2, PointField
from std_msgs.msg import Header

from occflow_ros.ros import (
    POINTFIELD_DTYPES,
    MessageError,
    PointCloud2Error,
    auto_stride,
    cloud_view,
    make_cloud,
    pack_rgb,
    read_xyz,
    unpack_rgb,
    xyz_cloud,
)

# struct format of each PointField datatype name: an oracle independent of the numpy dtype code.
STRUCT_FORMAT = {"INT8": "b", "UINT8": "B", "INT16": "h", "UINT16": "H", "INT32": "i", "UINT32": "I",
                 "FLOAT32": "f", "FLOAT64": "d", "INT64": "q", "UINT64": "Q"}
DATATYPE_NAMES = {getattr(PointField, n): n for n in STRUCT_FORMAT if hasattr(PointField, n)}
F32 = PointField.FLOAT32


def hand_message(fields, point_step, values, *, height=1, width=None, row_pad=0, big=False, pad=0xAB):
    """A PointCloud2 packed byte by byte with struct (not with the code under test).

    fields: [(name, offset, datatype, count)]; values: one dict name -> tuple per point, row-major.
    Padding bytes (inside a point and at row ends) are filled with `pad`.
    """
    width = len(values) // height if width is None else width
    endian = ">" if big else "<"
    data = bytearray()
    for r in range(height):
        for c in range(width):
            record = bytearray([pad]) * point_step
            for name, offset, datatype, count in fields:
                fmt = endian + str(count) + STRUCT_FORMAT[DATATYPE_NAMES[datatype]]
                struct.pack_into(fmt, record, offset, *values[r * width + c][name])
            data += record
        data += bytes([pad]) * row_pad
    buf = array.array("B")
    buf.frombytes(bytes(data))
    return PointCloud2(
        header=Header(frame_id="sensor"), height=height, width=width,
        fields=[PointField(name=n, offset=o, datatype=d, count=k) for n, o, d, k in fields],
        is_bigendian=big, point_step=point_step, row_step=width * point_step + row_pad, data=buf,
        is_dense=False)


def sample_values(name: str, n: int, rng: np.random.Generator) -> list:
    """n Python values of the PointField type `name`, including its extremes."""
    if name.startswith("FLOAT"):
        vals = [0.0, -0.0, 1.5, -2.25, float("inf"), float("nan"), 1e-30]
        if name == "FLOAT64":
            vals += [1e300, -5e-310]
        return [vals[i % len(vals)] if i < len(vals) else float(rng.normal() * 100) for i in range(n)]
    bits = int("".join(ch for ch in name if ch.isdigit()))
    lo, hi = (0, 2 ** bits - 1) if name.startswith("U") else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    extremes = [lo, hi, 0, 1, hi - 1]
    return [extremes[i] if i < len(extremes) else lo + (hi - lo) * int(rng.integers(0, 2**20)) // 2**20
            for i in range(n)]


def bitwise_equal(a: np.ndarray, b: np.ndarray) -> bool:
    """Same shape and the same bytes, field by field (NaN payloads included)."""
    if a.shape != b.shape or a.dtype.names != b.dtype.names:
        return False
    for name in a.dtype.names:
        fa, fb = a[name], b[name]
        if fa.dtype != fb.dtype or fa.shape != fb.shape:
            return False
        raw = np.dtype(f"V{fa.dtype.base.itemsize}")
        if not np.array_equal(np.ascontiguousarray(fa).view(raw), np.ascontiguousarray(fb).view(raw)):
            return False
    return True


# -- decoding -------------------------------------------------------------------------------------


def test_every_datatype_constant_of_the_installed_pointfield_is_decodable():
    constants = {getattr(PointField, n) for n in dir(PointField)
                 if n.isupper() and isinstance(getattr(PointField, n), int)}
    assert constants, "PointField defines no datatype constants?"
    assert constants <= set(POINTFIELD_DTYPES), f"unknown to cloud_dtype: {constants - set(POINTFIELD_DTYPES)}"
    assert {PointField.INT8, PointField.FLOAT64} <= set(POINTFIELD_DTYPES)


@pytest.mark.parametrize("big", [False, True], ids=["little", "big"])
@pytest.mark.parametrize("datatype", sorted(DATATYPE_NAMES), ids=lambda d: DATATYPE_NAMES[d])
def test_each_datatype_decodes_to_the_packed_values_in_either_byte_order(datatype, big):
    name = DATATYPE_NAMES[datatype]
    rng = np.random.default_rng(datatype)
    size = struct.calcsize(STRUCT_FORMAT[name])
    # a scalar field, a count-3 field after a 1-byte gap, odd padding at the end
    fields = [("a", 0, datatype, 1), ("v", size + 1, datatype, 3)]
    point_step = 4 * size + 1 + 3
    n = 9
    a_vals = sample_values(name, n, rng)
    v_vals = sample_values(name, 3 * n, rng)[::-1]
    values = [{"a": (a_vals[i],), "v": tuple(v_vals[3 * i:3 * i + 3])} for i in range(n)]
    view = cloud_view(hand_message(fields, point_step, values, big=big))

    base = np.dtype(STRUCT_FORMAT[name]).newbyteorder(">" if big else "<")
    assert view.shape == (n,)
    assert view.dtype.itemsize == point_step
    assert view["a"].dtype == base and view["v"].shape == (n, 3)
    equal_nan = name.startswith("FLOAT")
    assert np.array_equal(view["a"], np.array(a_vals, base), equal_nan=equal_nan)
    assert np.array_equal(view["v"], np.array(v_vals, base).reshape(n, 3), equal_nan=equal_nan)


@pytest.mark.parametrize("point_step,offsets", [(13, (0, 4, 8, 12)), (17, (1, 5, 9, 14))])
def test_padding_and_odd_point_steps_decode_and_read_xyz_uses_them(point_step, offsets):
    ox, oy, oz, oi = offsets
    fields = [("x", ox, F32, 1), ("y", oy, F32, 1), ("z", oz, F32, 1),
              ("intensity", oi, PointField.UINT8 if point_step == 13 else PointField.UINT16, 1)]
    pts = np.random.default_rng(point_step).normal(size=(7, 3)).astype(np.float32)
    values = [{"x": (p[0],), "y": (p[1],), "z": (p[2],), "intensity": (i * 30,)} for i, p in enumerate(pts)]
    msg = hand_message(fields, point_step, values)
    view = cloud_view(msg)
    assert view.dtype.itemsize == point_step
    assert np.array_equal(view["intensity"], np.arange(7) * 30)
    assert np.array_equal(read_xyz(msg), pts)


def test_row_padding_is_skipped_in_organized_clouds():
    height, width = 3, 4
    fields = [("x", 0, F32, 1), ("y", 4, F32, 1), ("z", 8, F32, 1), ("ring", 12, PointField.UINT16, 1)]
    pts = np.random.default_rng(0).normal(size=(height, width, 3)).astype(np.float32)
    values = [{"x": (p[0],), "y": (p[1],), "z": (p[2],), "ring": (k,)}
              for k, p in enumerate(pts.reshape(-1, 3))]
    msg = hand_message(fields, 14, values, height=height, row_pad=7, pad=0xFF)
    assert msg.row_step == width * 14 + 7

    view = cloud_view(msg)
    assert view.shape == (height, width)
    assert np.array_equal(view["ring"], np.arange(12).reshape(height, width))
    assert np.array_equal(read_xyz(msg, organized=True), pts)
    assert np.array_equal(read_xyz(msg), pts.reshape(-1, 3))


def test_unorganized_clouds_view_as_one_dimensional_and_organized_as_height_by_width():
    fields = [("x", 0, F32, 1), ("y", 4, F32, 1), ("z", 8, F32, 1)]
    values = [{"x": (float(i),), "y": (1.0,), "z": (2.0,)} for i in range(6)]
    assert cloud_view(hand_message(fields, 12, values, height=1)).shape == (6,)
    organized = cloud_view(hand_message(fields, 12, values, height=2))
    assert organized.shape == (2, 3)
    assert np.array_equal(organized["x"], np.arange(6.0).reshape(2, 3))
    assert read_xyz(hand_message(fields, 12, values, height=1), organized=True).shape == (1, 6, 3)


def test_empty_clouds_decode_to_zero_points():
    for points in (np.zeros((0, 3), np.float32), np.zeros((0, 4, 3), np.float32)):
        msg = xyz_cloud(None, points)
        assert len(msg.data) == 0 and msg.is_dense is True
        assert read_xyz(msg).shape == (0, 3)
        assert read_xyz(msg, skip_invalid=False).shape == (0, 3)
        assert cloud_view(msg).size == 0


def test_view_is_zero_copy_over_msg_data():
    msg = xyz_cloud(None, np.ones((4, 5, 3), np.float32))
    view = cloud_view(msg)
    assert np.shares_memory(view, msg.data)
    view["x"][1, 2] = 7.5  # writing the view writes the message: proof it is the same memory
    assert struct.unpack_from("<f", msg.data, (1 * 5 + 2) * msg.point_step)[0] == 7.5


def test_read_xyz_drops_nan_inf_and_zero_points_and_marks_them_nan_when_organized():
    height, width = 4, 5
    pts = np.random.default_rng(3).uniform(0.2, 2.0, size=(height, width, 3)).astype(np.float32)
    pts[0, 0] = 0.0                                # RealSense "no depth"
    pts[0, 1] = (-0.0, 0.0, -0.0)                  # signed zeros are zero too
    pts[1, 2, 1] = np.nan
    pts[2, 3, 2] = np.inf
    pts[3, 4, 0] = -np.inf
    pts[3, 0] = (0.0, 0.0, 1.0)                    # one zero coordinate is a real point
    invalid = np.zeros((height, width), bool)
    invalid[0, 0] = invalid[0, 1] = invalid[1, 2] = invalid[2, 3] = invalid[3, 4] = True
    msg = xyz_cloud(Header(frame_id="cam"), pts)

    assert np.array_equal(read_xyz(msg), pts[~invalid])
    organized = read_xyz(msg, organized=True)
    assert organized.shape == (height, width, 3) and organized.dtype == np.float32
    assert np.isnan(organized[invalid]).all()
    assert np.array_equal(organized[~invalid], pts[~invalid])
    everything = read_xyz(msg, skip_invalid=False)
    assert np.array_equal(everything, pts.reshape(-1, 3), equal_nan=True)
    assert np.array_equal(read_xyz(msg, skip_invalid=False, organized=True), pts, equal_nan=True)
    assert not np.shares_memory(read_xyz(msg), msg.data)


@pytest.mark.parametrize("stride", [2, 3])
def test_read_xyz_stride_keeps_every_nth_row_and_column_on_every_path(stride):
    height, width = 7, 10
    pts = np.random.default_rng(stride).uniform(0.2, 2.0, size=(height, width, 3)).astype(np.float32)
    pts[0, 0] = 0.0  # an invalid pixel the stride keeps: dropped as ever
    pts[1, 1] = np.nan  # a skipped one
    msg = xyz_cloud(Header(frame_id="cam"), pts)
    kept = pts[::stride, ::stride]
    valid = np.isfinite(kept).all(-1) & (kept != 0).any(-1)
    assert np.array_equal(read_xyz(msg, stride=stride), kept[valid])  # the 12-byte-run path
    organized = read_xyz(msg, stride=stride, organized=True)
    assert organized.shape == kept.shape and np.isnan(organized[~valid]).all()
    assert np.array_equal(read_xyz(msg, stride=stride, skip_invalid=False), kept.reshape(-1, 3),
                          equal_nan=True)
    # float64 coordinates take the converting path, with the same stride
    wide = make_cloud(Header(frame_id="cam"), {a: pts[..., i].astype(np.float64)
                                               for i, a in enumerate("xyz")})
    assert np.array_equal(read_xyz(wide, stride=stride), kept[valid])
    # an unorganized cloud keeps every stride**2-th point
    flat = xyz_cloud(Header(frame_id="cam"), pts.reshape(-1, 3))
    every = pts.reshape(-1, 3)[::stride * stride]
    assert np.array_equal(read_xyz(flat, stride=stride),
                          every[np.isfinite(every).all(-1) & (every != 0).any(-1)])
    for bad in (0, -1, 1.5, True):
        with pytest.raises(PointCloud2Error, match="stride"):
            read_xyz(msg, stride=bad)


@pytest.mark.parametrize("height,width,stride", [(480, 640, 2), (720, 1280, 4), (480, 848, 2),
                                                 (240, 320, 1), (120, 160, 1), (1, 100_000, 1)])
def test_the_automatic_stride_leaves_at_least_320_pixels_across_and_unorganized_clouds_whole(
        height, width, stride):
    msg = SimpleNamespace(height=height, width=width)
    assert auto_stride(msg) == stride


@pytest.mark.parametrize("datatype,big", [(PointField.FLOAT64, False), (F32, True), (PointField.FLOAT64, True),
                                          (PointField.INT16, False)],
                         ids=["float64", "float32-big", "float64-big", "int16"])
def test_read_xyz_converts_other_coordinate_types_and_byte_orders(datatype, big):
    rng = np.random.default_rng(datatype)
    integer = datatype == PointField.INT16
    pts = rng.integers(-3000, 3000, size=(10, 3)) if integer else rng.normal(size=(10, 3))
    pts[2] = 0                       # a zero point
    if not integer:
        pts[5, 1] = np.nan           # a NaN point
    size = struct.calcsize(STRUCT_FORMAT[DATATYPE_NAMES[datatype]])
    fields = [("z", 0, datatype, 1), ("x", size, datatype, 1), ("y", 2 * size, datatype, 1)]  # z first
    values = [{"x": (p[0].item(),), "y": (p[1].item(),), "z": (p[2].item(),)} for p in pts]
    got = read_xyz(hand_message(fields, 3 * size + 2, values, big=big))
    keep = np.ones(10, bool)
    keep[2] = False
    keep[5] = integer
    assert got.dtype == np.float32
    assert np.array_equal(got, pts[keep].astype(np.float32))


def test_a_realsense_d435_style_cloud_decodes():
    """640x480 organized, x y z rgb float32 (16 B/point), zeros where there is no depth, is_dense false."""
    height, width = 480, 640
    rng = np.random.default_rng(435)
    v, u = np.mgrid[0:height, 0:width].astype(np.float32)
    depth = rng.uniform(0.3, 3.0, size=(height, width)).astype(np.float32)
    depth[rng.random((height, width)) < 0.15] = 0.0
    fx = fy = np.float32(615.0)
    points = np.stack([(u - 320) * depth / fx, (v - 240) * depth / fy, depth], axis=-1)
    colour = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    raw = np.zeros((height, width, 4), "<f4")   # a plain float array, laid out by hand
    raw[..., :3] = points
    raw.view("<u4")[..., 3] = ((colour[..., 0].astype(np.uint32) << 16)
                               | (colour[..., 1].astype(np.uint32) << 8) | colour[..., 2])
    data = array.array("B")
    data.frombytes(raw.tobytes())
    msg = PointCloud2(
        header=Header(frame_id="camera_depth_optical_frame"), height=height, width=width,
        fields=[PointField(name=n, offset=4 * i, datatype=F32, count=1) for i, n in enumerate("x y z rgb".split())],
        is_bigendian=False, point_step=16, row_step=16 * width, data=data, is_dense=False)

    valid = depth > 0
    assert np.array_equal(read_xyz(msg), points[valid])
    assert np.array_equal(unpack_rgb(cloud_view(msg)["rgb"]), colour)
    assert np.isnan(read_xyz(msg, organized=True)[~valid]).all()


def test_read_xyz_is_vectorized():
    """A per-point Python loop takes ~0.5 s for 640x480; the target is < 5 ms (bound loose for shared CPUs)."""
    pts = np.random.default_rng(1).normal(size=(480, 640, 3)).astype(np.float32)
    msg = xyz_cloud(None, pts, rgb=np.zeros((480, 640, 3), np.uint8))
    times = []
    for _ in range(7):
        start = time.perf_counter()
        read_xyz(msg)
        times.append(time.perf_counter() - start)
    assert np.median(times) < 0.05, f"read_xyz took {np.median(times) * 1e3:.1f} ms on 640x480"


# -- colour ---------------------------------------------------------------------------------------


def test_pack_rgb_puts_red_green_blue_in_bits_23_to_0_and_alpha_in_31_to_24():
    packed = pack_rgb(np.array([[0x12, 0x34, 0x56], [255, 0, 1]], np.uint8))
    assert packed.dtype == np.float32
    assert packed.view(np.uint32).tolist() == [0x00123456, 0x00FF0001]
    rgba = pack_rgb(np.array([[0x12, 0x34, 0x56, 0xFF]], np.uint8))
    assert rgba.view(np.uint32).tolist() == [0xFF123456]
    assert unpack_rgb(np.array([0xAB00FF10], np.uint32), alpha=True).tolist() == [[0x00, 0xFF, 0x10, 0xAB]]


def test_rgb_round_trips_bit_exactly_including_nan_patterns():
    colours = np.random.default_rng(7).integers(0, 256, size=(1000, 4), dtype=np.uint8)
    colours[:10, 3] = 0xFF  # 0xFF8xxxxx..0xFFFxxxxx are NaN bit patterns
    colours[:10, 0] = 0x80 + np.arange(10, dtype=np.uint8)
    assert np.array_equal(unpack_rgb(pack_rgb(colours[:, :3])), colours[:, :3])
    assert np.array_equal(unpack_rgb(pack_rgb(colours), alpha=True), colours)
    # through a message, big-endian, as a strided field of the view
    big = np.zeros(1000, [("x", ">f4"), ("y", ">f4"), ("z", ">f4"), ("rgba", ">f4")])
    big["rgba"] = pack_rgb(colours)  # numpy keeps the bits while swapping bytes
    assert np.array_equal(unpack_rgb(cloud_view(make_cloud(None, big))["rgba"], alpha=True), colours)


def test_colour_arguments_are_checked():
    with pytest.raises(PointCloud2Error, match="uint8"):
        pack_rgb(np.zeros((3, 3), np.float32))
    with pytest.raises(PointCloud2Error, match="4-byte"):
        unpack_rgb(np.zeros(3, np.float64))


# -- malformed messages ---------------------------------------------------------------------------


def good_message():
    fields = [("x", 0, F32, 1), ("y", 4, F32, 1), ("z", 8, F32, 1), ("intensity", 12, F32, 1)]
    values = [{k: (float(i),) for k in ("x", "y", "z", "intensity")} for i in range(6)]
    return hand_message(fields, 16, values, height=2)


def set_fields(msg, fields):
    msg.fields = [PointField(name=n, offset=o, datatype=d, count=k) for n, o, d, k in fields]


def _short_data(m):
    m.data = m.data[:-1]


def _long_data(m):
    m.data = m.data + array.array("B", [0])


MALFORMED = {
    "data too short": (_short_data, r"data has 95 bytes but row_step \* height = 48 \* 2 = 96"),
    "data too long": (_long_data, r"data has 97 bytes but row_step \* height = 48 \* 2 = 96"),
    "row_step < width*point_step": (lambda m: setattr(m, "row_step", 40),
                                    r"row_step 40 is less than width \* point_step = 3 \* 16 = 48"),
    "field past point_step": (lambda m: set_fields(m, [("x", 0, F32, 1), ("y", 4, F32, 1), ("z", 8, F32, 1),
                                                       ("intensity", 14, F32, 1)]),
                              r"'intensity' \(offset 14, 1 x 4 bytes\) ends at byte 18, past point_step 16"),
    "overlapping fields": (lambda m: set_fields(m, [("x", 0, F32, 1), ("y", 2, F32, 1), ("z", 8, F32, 1)]),
                           r"'x' \(bytes 0..4\) and 'y' \(bytes 2..6\) overlap"),
    "overlap by one byte": (lambda m: set_fields(m, [("x", 0, F32, 1), ("i", 3, PointField.UINT8, 1)]),
                            r"'x' \(bytes 0..4\) and 'i' \(bytes 3..4\) overlap"),
    "overlap via count": (lambda m: set_fields(m, [("x", 0, F32, 1), ("y", 4, F32, 2), ("z", 8, F32, 1)]),
                          r"'y' \(bytes 4..12\) and 'z' \(bytes 8..12\) overlap"),
    "duplicate names": (lambda m: set_fields(m, [("x", 0, F32, 1), ("y", 4, F32, 1), ("x", 8, F32, 1)]),
                        r"duplicate field name 'x'"),
    "empty name": (lambda m: set_fields(m, [("x", 0, F32, 1), ("", 4, F32, 1)]), r"field #1 has an empty"),
    "unknown datatype": (lambda m: set_fields(m, [("x", 0, 42, 1)]), r"'x' has unknown datatype 42 \(known: 1=INT8"),
    "count 0": (lambda m: set_fields(m, [("x", 0, F32, 1), ("y", 4, F32, 0)]), r"'y' has count 0"),
    "point_step 0": (lambda m: (setattr(m, "point_step", 0), setattr(m, "row_step", 0)),
                     r"point_step 0 but 3 x 2 = 6 points"),
    "huge sizes": (lambda m: (setattr(m, "width", 2**32 - 1), setattr(m, "height", 2**32 - 1),
                              setattr(m, "point_step", 1), setattr(m, "row_step", 2**32 - 1)),
                   r"data has 96 bytes but row_step \* height = 4294967295 \* 4294967295 = 18446744065119617025"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_messages_raise_pointcloud2error_naming_the_problem(case):
    mutate, message = MALFORMED[case]
    msg = good_message()
    cloud_view(msg)  # the unmutated message is fine
    mutate(msg)
    for decode in (cloud_view, read_xyz):
        with pytest.raises(PointCloud2Error, match=message):
            decode(msg)


def test_decoding_takes_any_message_like_object_with_a_byte_buffer():
    """rosbags hands out PointCloud2 objects whose data is a numpy uint8 array; a list is refused."""
    msg = good_message()
    attrs = {k: getattr(msg, k) for k in ("header", "height", "width", "fields", "is_bigendian", "point_step",
                                          "row_step", "is_dense")}
    like = SimpleNamespace(data=np.frombuffer(msg.data, np.uint8).copy(), **attrs)
    assert bitwise_equal(cloud_view(like), cloud_view(msg))
    assert np.shares_memory(cloud_view(like), like.data)
    with pytest.raises(PointCloud2Error, match=r"data is not a byte buffer \(list\)"):
        read_xyz(SimpleNamespace(data=list(msg.data), **attrs))


def test_missing_or_vector_xyz_fields_are_named_by_read_xyz():
    msg = good_message()
    set_fields(msg, [("x", 0, F32, 1), ("y", 4, F32, 1), ("intensity", 12, F32, 1)])
    assert cloud_view(msg).dtype.names == ("x", "y", "intensity")  # a valid cloud, just not xyz
    with pytest.raises(PointCloud2Error, match=r"no field 'z' \(fields: x, y, intensity\)"):
        read_xyz(msg)
    set_fields(msg, [("x", 0, F32, 1), ("y", 4, F32, 1), ("z", 8, F32, 2)])
    with pytest.raises(PointCloud2Error, match="'z' has count 2"):
        read_xyz(msg)


def test_pointcloud2error_is_a_valueerror_of_the_room():
    assert issubclass(PointCloud2Error, MessageError) and issubclass(PointCloud2Error, ValueError)


# -- encoding -------------------------------------------------------------------------------------


def test_make_cloud_describes_the_structured_dtype_exactly():
    dtype = np.dtype({"names": ["x", "y", "z", "ring", "normal"],
                      "formats": ["<f4", "<f4", "<f4", "<u2", ("<f8", (3,))],
                      "offsets": [0, 4, 8, 14, 16], "itemsize": 48})
    points = np.zeros((2, 3), dtype)
    points["x"] = np.arange(6).reshape(2, 3)
    points["x"][1, 1] = np.nan
    msg = make_cloud(Header(frame_id="lidar"), points)
    assert (msg.height, msg.width, msg.point_step, msg.row_step) == (2, 3, 48, 144)
    assert [(f.name, f.offset, f.datatype, f.count) for f in msg.fields] == [
        ("x", 0, F32, 1), ("y", 4, F32, 1), ("z", 8, F32, 1), ("ring", 14, PointField.UINT16, 1),
        ("normal", 16, PointField.FLOAT64, 3)]
    assert msg.is_bigendian is False and msg.is_dense is False
    assert isinstance(msg.data, array.array) and msg.data.typecode == "B" and len(msg.data) == 288
    assert msg.header.frame_id == "lidar"
    assert bitwise_equal(cloud_view(msg), points)
    assert make_cloud(None, points, is_dense=True).is_dense is True
    assert make_cloud(None, points.astype(dtype.newbyteorder(">"))).is_bigendian is True


def test_make_cloud_from_columns_packs_them_in_order():
    n = 5
    columns = {"x": np.arange(n, dtype=np.float32), "y": np.zeros(n, np.float32), "z": np.ones(n, np.float32),
               "label": np.arange(n, dtype=np.int8), "uv": np.ones((n, 2), np.uint16)}
    msg = make_cloud(None, columns)
    assert [(f.name, f.offset, f.count) for f in msg.fields] == [
        ("x", 0, 1), ("y", 4, 1), ("z", 8, 1), ("label", 12, 1), ("uv", 13, 2)]
    assert msg.point_step == 17 and msg.height == 1 and msg.is_dense is True
    view = cloud_view(msg)
    for name, col in columns.items():
        assert np.array_equal(view[name], col)
    organized = make_cloud(None, {"x": np.zeros((2, 3), np.float32), "rgb": np.zeros((2, 3, 3), np.uint8)})
    assert (organized.height, organized.width) == (2, 3)


def test_xyz_cloud_adds_packed_colour_and_extra_columns():
    pts = np.random.default_rng(2).normal(size=(50, 3))  # float64 in, float32 out
    colour = np.random.default_rng(3).integers(0, 256, size=(50, 3), dtype=np.uint8)
    ids = np.arange(50, dtype=np.uint32) * 3
    msg = xyz_cloud(Header(frame_id="world"), pts, rgb=colour, vertex_id=ids, x0=pts[:, 0].astype(np.float32))
    assert [f.name for f in msg.fields] == ["x", "y", "z", "rgb", "vertex_id", "x0"]
    assert msg.point_step == 24 and msg.is_dense is True
    view = cloud_view(msg)
    assert np.array_equal(read_xyz(msg), pts.astype(np.float32))
    assert np.array_equal(unpack_rgb(view["rgb"]), colour)
    assert np.array_equal(view["vertex_id"], ids)
    organized = xyz_cloud(None, np.full((3, 4, 3), np.nan, np.float32))
    assert (organized.height, organized.width, organized.is_dense) == (3, 4, False)


@pytest.mark.parametrize("data,message", [
    (np.zeros(3, [("x", "<f4"), ("y", ">f4")]), "mixes little- and big-endian"),
    (np.zeros(3, [("x", "<f4"), ("flag", "?")]), r"'flag' has dtype bool, not a PointField datatype"),
    (np.zeros(3, [("x", "<f2")]), r"'x' has dtype float16"),
    (np.zeros(3, [("m", "<f4", (2, 2))]), r"'m' has sub-array shape \(2, 2\)"),
    (np.zeros(3, [("p", [("a", "<f4")])]), r"'p' has dtype"),
    (np.zeros(3, np.float32), "needs a structured dtype"),
    (np.zeros((2, 2, 2), [("x", "<f4")]), r"must be \(N,\) or \(H, W\)"),
    ({"x": np.zeros(3, np.float32), "y": np.zeros(4, np.float32)},
     r"'y' has shape \(4,\) but the points have shape \(3,\)"),
    ({}, "at least one column"),
])
def test_make_cloud_rejects_what_pointcloud2_cannot_describe(data, message):
    with pytest.raises(PointCloud2Error, match=message):
        make_cloud(None, data)


def test_xyz_cloud_rejects_bad_points_and_clashing_columns():
    with pytest.raises(PointCloud2Error, match=r"\(N, 3\) or \(H, W, 3\)"):
        xyz_cloud(None, np.zeros((4, 2)))
    with pytest.raises(PointCloud2Error, match="'z' clashes"):
        xyz_cloud(None, np.zeros((4, 3)), z=np.zeros(4))


# -- round trip property ---------------------------------------------------------------------------


@st.composite
def layouts(draw):
    """A random structured point dtype (any datatype, counts, gaps, order, byte order) and a shape."""
    codes = sorted(POINTFIELD_DTYPES)
    specs, offset = [], 0
    for i in range(draw(st.integers(1, 5))):
        offset += draw(st.integers(0, 3))
        base = POINTFIELD_DTYPES[draw(st.sampled_from(codes))]
        count = draw(st.integers(1, 3))
        specs.append((f"f{i}", offset, base, count))
        offset += base.itemsize * count
    itemsize = offset + draw(st.integers(0, 5))
    specs = draw(st.permutations(specs))
    order = draw(st.sampled_from("<>"))
    dtype = np.dtype({
        "names": [s[0] for s in specs],
        "formats": [(b.newbyteorder(order) if c == 1 else np.dtype((b.newbyteorder(order), (c,))))
                    for _, _, b, c in specs],
        "offsets": [s[1] for s in specs], "itemsize": itemsize})
    shape = draw(st.sampled_from([(0,), (1,), (7,), (1, 3), (3, 2), (4, 5)]))
    return dtype, shape, draw(st.integers(0, 2**32 - 1)), draw(st.integers(0, 9))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layouts())
def test_decode_of_encode_is_the_identity_for_any_field_layout(layout):
    dtype, shape, seed, row_pad = layout
    n_bytes = int(np.prod(shape)) * dtype.itemsize
    points = np.frombuffer(np.random.default_rng(seed).bytes(n_bytes), dtype).reshape(shape)  # NaNs too

    msg = make_cloud(Header(frame_id="f"), points)
    view = cloud_view(msg)
    expected = points if len(shape) == 2 and shape[0] != 1 else points.reshape(-1)
    assert view.dtype == dtype
    assert bitwise_equal(view, expected)
    assert msg.is_bigendian == (dtype.byteorder == ">" or any(
        dtype[n].base.byteorder == ">" for n in dtype.names))

    # the same points with padding after every row decode the same
    height, width = msg.height, msg.width
    padded = np.full((height, width * dtype.itemsize + row_pad), 0xEE, np.uint8)
    padded[:, :width * dtype.itemsize] = np.frombuffer(msg.data, np.uint8).reshape(height, -1)
    msg.row_step = width * dtype.itemsize + row_pad
    msg.data = array.array("B", padded.tobytes())
    assert bitwise_equal(cloud_view(msg), expected)
