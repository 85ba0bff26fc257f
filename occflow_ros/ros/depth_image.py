"""Depth images in: sensor_msgs/Image (16UC1 millimetres or 32FC1 metres) with its
sensor_msgs/CameraInfo, back-projected to points in the camera's optical frame.

A 640x480 depth image is 0.6 MB on the wire against 4.9 MB for the same frame as a PointCloud2,
which is how nvblox and Isaac ROS take depth cameras. image_geometry (the ROS pinhole model) has no
PyPI wheel and message_filters none either, so the back-projection (a pinhole,
x = (u - cx) z / fx) and the pairing of an image with its camera info by stamp are written here, in
numpy. Only undistorted images are accepted (distortion model plumb_bob, rational_polynomial or
equidistant with all coefficients zero, or none): RealSense publishes its depth that way; anything else is refused
with an error that names the model, rather than back-projected wrongly.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Optional

import numpy as np

from .errors import DepthImageError

__all__ = ["CameraInfoStore", "depth_points"]

#: distortion models whose all-zero coefficients mean "no distortion"
UNDISTORTED_MODELS = ("", "plumb_bob", "rational_polynomial", "equidistant")


def _intrinsics(info: Any, height: int, width: int) -> tuple[float, float, float, float]:
    k = np.asarray(info.k, dtype=np.float64).reshape(-1)
    if k.size != 9 or not np.isfinite(k).all():
        raise DepthImageError(f"camera_info k must be 9 finite numbers, got {k.size}")
    fx, fy, cx, cy = k[0], k[4], k[2], k[5]
    if fx <= 0 or fy <= 0:
        raise DepthImageError(f"camera_info k has fx {fx:g}, fy {fy:g}: not a calibrated camera "
                              "(both must be > 0)")
    model = str(info.distortion_model)
    d = np.asarray(info.d, dtype=np.float64).reshape(-1)
    if model not in UNDISTORTED_MODELS or np.any(d != 0):
        raise DepthImageError(
            f"camera_info distortion_model '{model}' with coefficients {d.tolist()}: only "
            "undistorted depth images are supported (plumb_bob, rational_polynomial or "
            "equidistant with all coefficients zero; RealSense depth is published that way); "
            "rectify the image first (image_proc) or publish a PointCloud2 (input.type: points)")
    info_h, info_w = int(info.height), int(info.width)
    if (info_h, info_w) != (0, 0) and (info_h, info_w) != (height, width):
        raise DepthImageError(f"camera_info is for {info_w}x{info_h} images, the depth image is "
                              f"{width}x{height} (binning or a region of interest is not "
                              "supported)")
    return fx, fy, cx, cy


def _depth_metres(msg: Any, stride: int) -> np.ndarray:
    """The image's depth (rows, cols) in metres, float32, every ``stride``-th row and column
    (a strided view until the conversion); NaN where the sensor has none (0, NaN, inf)."""
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    encoding = str(msg.encoding).strip().upper()
    if encoding in ("16UC1", "MONO16"):
        dtype, scale = np.dtype(np.uint16), 1e-3
    elif encoding == "32FC1":
        dtype, scale = np.dtype(np.float32), 1.0
    else:
        raise DepthImageError(f"depth image encoding '{msg.encoding}' is not supported: 16UC1 "
                              "(millimetres) or 32FC1 (metres)")
    dtype = dtype.newbyteorder(">" if msg.is_bigendian else "<")
    if height < 0 or width < 0 or step < width * dtype.itemsize:
        raise DepthImageError(f"depth image {width}x{height} has step {step}, less than width * "
                              f"{dtype.itemsize} bytes")
    buf = np.frombuffer(msg.data, np.uint8)
    if buf.size < step * height:
        raise DepthImageError(f"depth image data has {buf.size} bytes, step * height = "
                              f"{step * height}")
    grid = np.ndarray((height, width), dtype, buf, 0, (step, dtype.itemsize))[::stride, ::stride]
    depth = grid.astype(np.float32)
    if scale != 1.0:
        depth *= np.float32(scale)
    depth[~np.isfinite(depth) | (depth <= 0)] = np.nan
    return depth


def depth_points(image: Any, info: Any, *, stride: int = 1) -> np.ndarray:
    """The valid pixels of a depth image as (N, 3) float32 points in metres, in the image's
    optical frame (x right, y down, z forward), row-major like an organized PointCloud2; every
    ``stride``-th pixel row and column. Raises DepthImageError for an unsupported encoding or
    distortion model, a malformed image or camera info, or camera info for another image size."""
    if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride < 1:
        raise DepthImageError(f"stride must be an integer >= 1, got {stride!r}")
    height, width = int(image.height), int(image.width)
    z = _depth_metres(image, int(stride))
    fx, fy, cx, cy = _intrinsics(info, height, width)
    rows, cols = np.nonzero(np.isfinite(z))
    zs = z[rows, cols]
    u = (cols * stride).astype(np.float32)
    v = (rows * stride).astype(np.float32)
    out = np.empty((len(zs), 3), np.float32)
    out[:, 0] = (u - np.float32(cx)) * zs / np.float32(fx)
    out[:, 1] = (v - np.float32(cy)) * zs / np.float32(fy)
    out[:, 2] = zs
    return out


class CameraInfoStore:
    """The recent camera infos of a stream, to pair each depth image with the one of its stamp
    (message_filters' exact-time policy, which has no PyPI wheel): ``put`` from the subscription's
    callback, ``match`` from the worker (thread-safe). An image whose stamp has no info yet takes
    the newest one (a camera's intrinsics do not change while it runs); before the first info,
    ``match`` returns None."""

    def __init__(self, keep: int = 30) -> None:
        self._keep = int(keep)
        self._infos: "OrderedDict[int, Any]" = OrderedDict()
        self._lock = threading.Lock()

    def put(self, stamp_ns: int, info: Any) -> None:
        with self._lock:
            self._infos[int(stamp_ns)] = info
            self._infos.move_to_end(int(stamp_ns))
            while len(self._infos) > self._keep:
                self._infos.popitem(last=False)

    def match(self, stamp_ns: int) -> tuple[Optional[Any], bool]:
        """(the camera info for this stamp, whether its stamp is the image's); (None, False) when
        no info has arrived."""
        with self._lock:
            info = self._infos.get(int(stamp_ns))
            if info is not None:
                return info, True
            if not self._infos:
                return None, False
            return next(reversed(self._infos.values())), False
