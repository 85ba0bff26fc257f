"""sensor_msgs/PointCloud2 <-> numpy: zero-copy structured views, fast xyz decoding, packed colour, encoding."""

from __future__ import annotations

import array
import sys
from types import MappingProxyType
from typing import Any, Iterable, Mapping, Sequence, Tuple, Union

import numpy as np
from numpy.typing import ArrayLike
from sensor_msgs.msg import PointCloud2, PointField
from std_msgs.msg import Header

from occflow_ros.ros.errors import PointCloud2Error

__all__ = [
    "POINTFIELD_DTYPES",
    "PointCloud2Error",
    "cloud_dtype",
    "cloud_view",
    "make_cloud",
    "pack_rgb",
    "read_xyz",
    "auto_stride",
    "image_stride",
    "unpack_rgb",
    "xyz_cloud",
]

# numpy type of each PointField datatype, keyed by the constant's name. The numbers are read from the
# installed message definition (INT8..FLOAT64 = 1..8 in every ROS 2 distro); names a newer
# sensor_msgs may add (INT64, UINT64) are picked up when the installed PointField defines them.
_TYPE_BY_NAME = {
    "INT8": "i1", "UINT8": "u1", "INT16": "i2", "UINT16": "u2", "INT32": "i4", "UINT32": "u4",
    "FLOAT32": "f4", "FLOAT64": "f8", "INT64": "i8", "UINT64": "u8",
}


def _datatype_table() -> Mapping[int, np.dtype]:
    table = {}
    for name, code in _TYPE_BY_NAME.items():
        value = getattr(PointField, name, None)
        if isinstance(value, int) and not isinstance(value, bool):
            table[value] = np.dtype(code)
    return MappingProxyType(table)


POINTFIELD_DTYPES: Mapping[int, np.dtype] = _datatype_table()
"""PointField datatype constant -> numpy scalar dtype (native byte order), read-only."""

_DATATYPE_NAMES = {getattr(PointField, n): n for n in _TYPE_BY_NAME
                   if getattr(PointField, n, None) in POINTFIELD_DTYPES}
_DATATYPE_OF = {(dt.kind, dt.itemsize): code for code, dt in POINTFIELD_DTYPES.items()}
_NATIVE = "<" if sys.byteorder == "little" else ">"

# (name, byte offset, numpy scalar type, count) of one field: the common currency of the checks below.
_FieldSpec = Tuple[str, int, np.dtype, int]


def _check_layout(specs: Sequence[_FieldSpec], point_step: int) -> None:
    """Raise PointCloud2Error unless the fields have unique names, count >= 1, and fit point_step disjointly."""
    seen = set()
    spans = []
    for index, (name, offset, base, count) in enumerate(specs):
        if not isinstance(name, str) or not name:
            raise PointCloud2Error(f"PointCloud2 field #{index} has an empty or non-string name: {name!r}")
        if name in seen:
            raise PointCloud2Error(f"PointCloud2 has duplicate field name {name!r}")
        seen.add(name)
        if count == 0:
            raise PointCloud2Error(f"PointCloud2 field {name!r} has count 0 (must be >= 1)")
        if count < 0 or offset < 0:
            raise PointCloud2Error(f"PointCloud2 field {name!r} has negative offset {offset} or count {count}")
        end = offset + base.itemsize * count
        if end > point_step:
            raise PointCloud2Error(
                f"PointCloud2 field {name!r} (offset {offset}, {count} x {base.itemsize} bytes) ends at "
                f"byte {end}, past point_step {point_step}")
        spans.append((offset, end, name))
    spans.sort()
    for (start0, end0, name0), (start1, end1, name1) in zip(spans, spans[1:]):
        if start1 < end0:
            raise PointCloud2Error(
                f"PointCloud2 fields {name0!r} (bytes {start0}..{end0}) and {name1!r} "
                f"(bytes {start1}..{end1}) overlap")


def cloud_dtype(fields: Iterable[Any], point_step: int, is_bigendian: bool) -> np.dtype:
    """The numpy structured dtype of one point described by PointFields.

    Each field becomes a named member at its byte offset (``count > 1``: a sub-array of shape
    ``(count,)``), in the given byte order; ``itemsize == point_step``, so padding and odd point
    steps are kept. Raises PointCloud2Error for an unknown datatype, count 0, duplicate or empty
    names, a field past point_step, overlapping fields, or a point_step numpy cannot represent.
    """
    order = ">" if is_bigendian else "<"
    specs = []
    for f in fields:
        datatype = int(f.datatype)
        base = POINTFIELD_DTYPES.get(datatype)
        if base is None:
            known = ", ".join(f"{code}={name}" for code, name in sorted(_DATATYPE_NAMES.items()))
            raise PointCloud2Error(f"PointCloud2 field {f.name!r} has unknown datatype {datatype} (known: {known})")
        if base.itemsize > 1:
            base = base.newbyteorder(order)
        specs.append((f.name, int(f.offset), base, int(f.count)))
    _check_layout(specs, point_step)
    try:
        return np.dtype({
            "names": [s[0] for s in specs],
            "formats": [base if count == 1 else np.dtype((base, (count,))) for _, _, base, count in specs],
            "offsets": [s[1] for s in specs],
            "itemsize": point_step,
        })
    except (TypeError, ValueError, OverflowError) as exc:  # e.g. point_step beyond numpy's 2**31 - 1
        raise PointCloud2Error(
            f"PointCloud2 point layout cannot be represented (point_step {point_step}, fields "
            f"{[s[0] for s in specs]}): {exc}") from exc


def _grid_view(msg: Any) -> Tuple[np.ndarray, np.ndarray]:
    """Validate msg once; return its (H, W) structured view and the uint8 buffer it aliases."""
    height, width = int(msg.height), int(msg.width)
    point_step, row_step = int(msg.point_step), int(msg.row_step)
    if min(height, width, point_step, row_step) < 0:
        raise PointCloud2Error(
            f"PointCloud2 has a negative size: height {height}, width {width}, point_step {point_step}, "
            f"row_step {row_step}")
    n_points = height * width
    if n_points and point_step == 0:
        raise PointCloud2Error(f"PointCloud2 has point_step 0 but {width} x {height} = {n_points} points")
    if row_step < width * point_step:
        raise PointCloud2Error(
            f"PointCloud2 row_step {row_step} is less than width * point_step = {width} * {point_step} "
            f"= {width * point_step}")
    try:
        buf = np.frombuffer(msg.data, np.uint8)
    except (TypeError, ValueError) as exc:
        raise PointCloud2Error(f"PointCloud2 data is not a byte buffer ({type(msg.data).__name__}): {exc}") from exc
    if buf.size != row_step * height:
        raise PointCloud2Error(
            f"PointCloud2 data has {buf.size} bytes but row_step * height = {row_step} * {height} = "
            f"{row_step * height}")
    dtype = cloud_dtype(msg.fields, point_step, bool(msg.is_bigendian))
    grid = np.ndarray((height, width), dtype, buf, 0, (row_step, point_step))
    return grid, buf


def cloud_view(msg: Any) -> np.ndarray:
    """A zero-copy structured numpy view of a PointCloud2's points.

    Shape ``(W,)`` for an unorganized cloud (height 1), ``(H, W)`` otherwise; the dtype comes from
    :func:`cloud_dtype` (field names, byte order, sub-arrays for ``count > 1``; padding and row
    padding are skipped by the strides). The view aliases ``msg.data`` (an ``array.array('B')`` in
    rclpy, a uint8 array from rosbags): writing to it writes the message, and ``msg.data`` cannot be
    resized while the view lives. Works on any object with PointCloud2's attributes.
    Raises PointCloud2Error when the message is malformed (sizes, data length, fields).
    """
    grid, _ = _grid_view(msg)
    return grid[0] if grid.shape[0] == 1 else grid


def _xyz_fields(grid: np.ndarray) -> Tuple[np.dtype, np.dtype, np.dtype]:
    fields = grid.dtype.fields or {}
    for axis in ("x", "y", "z"):
        if axis not in fields:
            raise PointCloud2Error(
                f"PointCloud2 has no field {axis!r} (fields: {', '.join(grid.dtype.names or ()) or 'none'})")
        if fields[axis][0].subdtype is not None:
            raise PointCloud2Error(f"PointCloud2 field {axis!r} has count {fields[axis][0].shape[0]}, expected 1")
    return fields["x"], fields["y"], fields["z"]


def _valid_mask(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """(H, W) bool: all three coordinates finite and not all exactly zero (RealSense's 'no depth')."""
    valid = np.isfinite(x)
    valid &= np.isfinite(y)
    valid &= np.isfinite(z)
    nonzero = x != 0
    nonzero |= y != 0
    nonzero |= z != 0
    valid &= nonzero
    return valid


#: the image width an automatic stride (``input.stride: 0``) brings an organized cloud down to
AUTO_STRIDE_WIDTH = 320


def image_stride(width: int) -> int:
    """The automatic stride (``input.stride: 0``) of an image ``width`` pixels wide: the largest
    that leaves it at least ``AUTO_STRIDE_WIDTH`` (320) pixels wide (640 -> 2, 1280 -> 4,
    320 -> 1)."""
    return max(1, int(width) // AUTO_STRIDE_WIDTH)


def auto_stride(msg: Any) -> int:
    """The stride ``input.stride: 0`` uses for this cloud: :func:`image_stride` of an organized
    cloud's width; 1 for an unorganized cloud (height 1), whose point order need not follow the
    image."""
    return 1 if int(msg.height) <= 1 else image_stride(int(msg.width))


def read_xyz(msg: Any, *, skip_invalid: bool = True, organized: bool = False,
             stride: int = 1) -> np.ndarray:
    """The points of a PointCloud2 as float32 coordinates (in ``msg.header.frame_id``, the message's units).

    ``stride`` > 1 decimates in image space before anything else reads the points: an organized
    cloud keeps every ``stride``-th row and column (pixels ``[::stride, ::stride]``, a strided
    view, so the skipped points are never touched), an unorganized one every ``stride ** 2``-th
    point (the same share of its points).

    - ``organized=False``: ``(N, 3)`` float32, in row-major pixel order; with ``skip_invalid`` only the
      valid points (finite, and not exactly (0, 0, 0), which depth cameras publish for "no depth"),
      otherwise all ``H * W`` points.
    - ``organized=True``: ``(H, W, 3)`` float32 (``(1, W, 3)`` for an unorganized cloud); with
      ``skip_invalid`` the invalid points are set to NaN.

    Always a new array (never aliases ``msg.data``). Native-endian float32 x, y, z at consecutive
    offsets (the usual layout) take a fast strided path; float64, integer or byte-swapped
    coordinates are converted (float64 beyond float32's range becomes inf and counts as invalid).
    Raises PointCloud2Error for a malformed message or a missing x, y or z field.
    """
    if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride < 1:
        raise PointCloud2Error(f"stride must be an integer >= 1, got {stride!r}")
    grid, buf = _grid_view(msg)
    if stride > 1:
        grid = grid[:, ::stride * stride] if grid.shape[0] == 1 else grid[::stride, ::stride]
    (tx, ox), (ty, oy), (tz, oz) = (f[:2] for f in _xyz_fields(grid))
    f32 = np.dtype(np.float32)
    native_f32 = all(t == f32 for t in (tx, ty, tz))
    if native_f32:
        x, y, z = grid["x"], grid["y"], grid["z"]  # strided views, no copy
    else:
        with np.errstate(over="ignore", invalid="ignore"):  # out of float32's range: inf (invalid)
            x, y, z = (grid[a].astype(np.float32) for a in ("x", "y", "z"))
    height, width = grid.shape
    if grid.size == 0:  # no points: the buffer may be too short even for the empty strided views below
        return np.empty((height, width, 3) if organized else (0, 3), np.float32)
    valid = _valid_mask(x, y, z) if skip_invalid else None

    if organized:
        out = np.empty((height, width, 3), np.float32)
        out[..., 0], out[..., 1], out[..., 2] = x, y, z
        if valid is not None:
            out[~valid] = np.nan
        return out

    if native_f32 and oy == ox + 4 and oz == ox + 8:
        # x, y, z are one 12-byte run per point: gather whole runs as opaque 12-byte items.
        runs = np.ndarray((height, width), np.dtype("V12"), buf, ox, grid.strides)
        picked = runs[valid] if valid is not None else np.array(runs, order="C").reshape(-1)  # a copy
        return picked.view(np.float32).reshape(-1, 3)
    if valid is None:
        out = np.empty((height * width, 3), np.float32)
        out[:, 0], out[:, 1], out[:, 2] = x.reshape(-1), y.reshape(-1), z.reshape(-1)
        return out
    out = np.empty((int(np.count_nonzero(valid)), 3), np.float32)
    out[:, 0], out[:, 1], out[:, 2] = x[valid], y[valid], z[valid]
    return out


def unpack_rgb(values: ArrayLike, *, alpha: bool = False) -> np.ndarray:
    """Colours from packed ``rgb``/``rgba`` field values: ``(...,)`` -> ``(..., 3)`` uint8 (R, G, B).

    ``values`` are the field's 4-byte values (float32 as published, or uint32; any byte order, any
    strides, e.g. ``cloud_view(msg)["rgb"]``) whose bits are 0xAARRGGBB. ``alpha=True`` returns
    ``(..., 4)`` R, G, B, A.
    """
    v = np.asarray(values)
    if v.dtype.itemsize != 4 or v.dtype.kind not in "fiu":
        raise PointCloud2Error(f"packed colours must be 4-byte float32 or uint32 values, got dtype {v.dtype}")
    bits = v.view(np.dtype(np.uint32).newbyteorder(v.dtype.byteorder))
    out = np.empty(v.shape + (4 if alpha else 3,), np.uint8)
    out[..., 0] = bits >> 16
    out[..., 1] = bits >> 8
    out[..., 2] = bits
    if alpha:
        out[..., 3] = bits >> 24
    return out


def pack_rgb(rgb: ArrayLike) -> np.ndarray:
    """Pack ``(..., 3)`` uint8 R, G, B (or ``(..., 4)`` R, G, B, A) into ``(...,)`` float32 whose bits are
    0x00RRGGBB (0xAARRGGBB): the ``rgb``/``rgba`` field of PCL and depth-camera drivers.

    The float32 values are bit patterns, not numbers (some are NaN): copy them as numpy arrays;
    converting through Python floats may change NaN payloads.
    """
    c = np.asarray(rgb)
    if c.dtype != np.uint8 or c.ndim < 1 or c.shape[-1] not in (3, 4):
        raise PointCloud2Error(f"colours must be (..., 3) or (..., 4) uint8, got shape {c.shape} dtype {c.dtype}")
    bits = c[..., 0].astype(np.uint32) << 16
    bits |= c[..., 1].astype(np.uint32) << 8
    bits |= c[..., 2]
    if c.shape[-1] == 4:
        bits |= c[..., 3].astype(np.uint32) << 24
    return bits.view(np.float32)


def _point_fields(dtype: np.dtype) -> Tuple[list, bool]:
    """PointFields for a structured dtype, and whether its multi-byte fields are big-endian."""
    if dtype.names is None:
        raise PointCloud2Error(f"a point cloud array needs a structured dtype with named fields, got {dtype}")
    specs = []
    orders = set()
    for name in dtype.names:
        field_type, offset = dtype.fields[name][:2]
        base, count = field_type, 1
        if field_type.subdtype is not None:
            base, shape = field_type.subdtype
            if len(shape) != 1:
                raise PointCloud2Error(f"field {name!r} has sub-array shape {shape}; PointField counts are 1-D")
            count = shape[0]
        if base.names is not None or (base.kind, base.itemsize) not in _DATATYPE_OF:
            supported = ", ".join(sorted(str(t) for t in POINTFIELD_DTYPES.values()))
            raise PointCloud2Error(f"field {name!r} has dtype {base}, not a PointField datatype ({supported})")
        if base.itemsize > 1:
            orders.add(_NATIVE if base.byteorder == "=" else base.byteorder)
        specs.append((name, offset, base, count))
    if len(orders) > 1:
        raise PointCloud2Error(
            f"a PointCloud2 has one byte order, but dtype {dtype} mixes little- and big-endian fields")
    _check_layout(specs, dtype.itemsize)
    fields = [
        PointField(name=name, offset=offset, datatype=_DATATYPE_OF[(base.kind, base.itemsize)], count=count)
        for name, offset, base, count in specs
    ]
    return fields, orders == {">"}


def _columns_to_array(columns: Mapping[str, ArrayLike], shape: Sequence[int] | None) -> np.ndarray:
    """Pack named columns (each ``shape`` or ``shape + (count,)``) into one structured array."""
    if not columns:
        raise PointCloud2Error("a point cloud needs at least one column")
    arrays = {name: np.asarray(col) for name, col in columns.items()}
    shape = tuple(next(iter(arrays.values())).shape if shape is None else shape)
    descr = []
    for name, a in arrays.items():
        if not isinstance(name, str):
            raise PointCloud2Error(f"column names must be strings, got {name!r}")
        if a.shape == shape:
            descr.append((name, a.dtype))
        elif a.shape[:-1] == shape and a.ndim == len(shape) + 1:
            descr.append((name, a.dtype, (a.shape[-1],)))
        else:
            raise PointCloud2Error(
                f"column {name!r} has shape {a.shape} but the points have shape {shape} "
                "(a column holds shape or shape + (count,))")
    try:
        out = np.empty(shape, np.dtype(descr))
    except (TypeError, ValueError) as exc:
        raise PointCloud2Error(f"cannot build a point dtype from columns {list(arrays)}: {exc}") from exc
    for name, a in arrays.items():
        out[name] = a
    return out


def make_cloud(header: Header | None, data: Union[np.ndarray, Mapping[str, ArrayLike]], *,
               shape: Sequence[int] | None = None, is_dense: bool | None = None) -> PointCloud2:
    """Encode points into a sensor_msgs/PointCloud2.

    ``data`` is a structured array (``(N,)``: unorganized, height 1; ``(H, W)``: organized) whose
    fields become PointFields (offsets, padding and itemsize kept; ``(count,)`` sub-arrays become
    ``count``; byte order gives ``is_bigendian``), or a mapping of named columns, each of the point
    ``shape`` (default: the first column's shape) or ``shape + (count,)``, packed without padding
    in the mapping's order. ``is_dense`` defaults to "x, y and z (those present) are all finite".
    ``msg.data`` is an ``array.array('B')`` filled with one copy (``frombytes``): fast on every
    ROS 2 distro. Raises PointCloud2Error for unsupported dtypes, overlapping fields or bad shapes.
    """
    if isinstance(data, np.ndarray):
        points = data
        if shape is not None and tuple(shape) != points.shape:
            raise PointCloud2Error(f"shape {tuple(shape)} given but the array has shape {points.shape}")
    elif isinstance(data, Mapping):
        points = _columns_to_array(data, shape)
    else:
        raise PointCloud2Error(f"make_cloud takes a structured array or a mapping of columns, got {type(data)}")
    if points.ndim == 1:
        height, width = 1, points.shape[0]
    elif points.ndim == 2:
        height, width = points.shape
    else:
        raise PointCloud2Error(f"points must be (N,) or (H, W), got shape {points.shape}")
    fields, big_endian = _point_fields(points.dtype)
    if points.dtype.itemsize == 0 and points.size:
        raise PointCloud2Error("points have a zero-byte dtype")
    if is_dense is None:
        is_dense = True
        for axis in ("x", "y", "z"):
            if axis in points.dtype.names and points.dtype[axis].base.kind == "f":
                is_dense = is_dense and bool(np.isfinite(points[axis]).all())

    raw = np.ascontiguousarray(points).reshape(-1).view(np.uint8)
    buf = array.array("B")
    buf.frombytes(raw)
    msg = PointCloud2()
    msg.header = header if header is not None else Header()
    msg.height = height
    msg.width = width
    msg.fields = fields
    msg.is_bigendian = big_endian
    msg.point_step = points.dtype.itemsize
    msg.row_step = points.dtype.itemsize * width
    msg.data = buf
    msg.is_dense = bool(is_dense)
    return msg


def xyz_cloud(header: Header | None, points: ArrayLike, *, rgb: ArrayLike | None = None,
              is_dense: bool | None = None, **columns: ArrayLike) -> PointCloud2:
    """A PointCloud2 of float32 x, y, z (+ packed colour, + extra columns), organized or not.

    ``points``: ``(N, 3)`` (unorganized) or ``(H, W, 3)`` (organized), cast to float32, in the
    header's frame and units. ``rgb``: ``(..., 3)`` or ``(..., 4)`` uint8, packed into one float32
    field ``rgb`` (``rgba``) right after z, as depth cameras publish it. ``columns``: more per-point
    fields, e.g. ``vertex_id=(N,) uint32``, ``x0=(N,) float32``, or ``(N, count)`` arrays.
    """
    pts = np.asarray(points)
    if pts.ndim not in (2, 3) or pts.shape[-1] != 3:
        raise PointCloud2Error(f"points must be (N, 3) or (H, W, 3), got shape {pts.shape}")
    pts = pts.astype(np.float32, copy=False)
    cols: dict = {"x": pts[..., 0], "y": pts[..., 1], "z": pts[..., 2]}
    if rgb is not None:
        colours = np.asarray(rgb)
        cols["rgba" if colours.shape[-1:] == (4,) else "rgb"] = pack_rgb(colours)
    for name, col in columns.items():
        if name in cols:
            raise PointCloud2Error(f"column {name!r} clashes with a field xyz_cloud makes itself")
        cols[name] = col
    return make_cloud(header, cols, shape=pts.shape[:-1], is_dense=is_dense)
