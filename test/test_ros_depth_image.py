"""Depth images in: back-projection against the demo scene's own clouds, encodings, strides, camera
info pairing by stamp, and the errors that name what is wrong."""

from __future__ import annotations

import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo, Image

from occflow_ros.data.demo_scene import DemoScene, SceneConfig
from occflow_ros.ros import (CameraInfoStore, DepthImageError, depth_points, image_stride,
                             read_xyz, xyz_cloud)


def image_msg(depth: np.ndarray, encoding: str, *, big: bool = False, pad: int = 0) -> Image:
    """An Image of ``depth`` (H, W) in the encoding's units, rows padded by ``pad`` bytes."""
    dtype = np.dtype(np.uint16 if encoding == "16UC1" else np.float32).newbyteorder(">" if big else "<")
    rows = np.ascontiguousarray(depth.astype(dtype)).view(np.uint8).reshape(depth.shape[0], -1)
    rows = np.concatenate([rows, np.full((len(rows), pad), 0xAB, np.uint8)], axis=1)
    msg = Image(height=depth.shape[0], width=depth.shape[1], encoding=encoding,
                is_bigendian=int(big), step=rows.shape[1])
    msg.data = rows.tobytes()
    return msg


def info_msg(camera, *, model: str = "plumb_bob", d=(0.0,) * 5) -> CameraInfo:
    intr = camera.intrinsics
    return CameraInfo(height=intr.height, width=intr.width, distortion_model=model, d=list(d),
                      k=[intr.fx, 0.0, intr.cx, 0.0, intr.fy, intr.cy, 0.0, 0.0, 1.0])


@pytest.fixture(scope="module")
def scene():
    s = DemoScene(SceneConfig(seconds=0.5, fps=2.0, width=320, height=240))
    s.render()
    return s


@pytest.mark.parametrize("encoding,big,pad", [("16UC1", False, 0), ("16UC1", True, 6),
                                              ("32FC1", False, 4)])
def test_a_depth_image_back_projects_to_the_scene_s_own_organized_cloud(scene, encoding, big, pad):
    depth_mm = scene.depth_mm[0]
    depth = depth_mm if encoding == "16UC1" else depth_mm.astype(np.float32) / 1000.0
    if encoding == "32FC1":
        depth = depth.copy()
        depth[0, :5] = np.nan  # 32FC1 marks no depth with NaN as well as 0
    msg = image_msg(depth, encoding, big=big, pad=pad)
    info = info_msg(scene.camera)
    cloud = scene.cloud(0)
    if encoding == "32FC1":
        cloud = cloud.copy()
        cloud[0, :5] = 0.0
    for stride in (1, 2, 3):
        expected = read_xyz(xyz_cloud(None, cloud), stride=stride)  # the same pixels, row-major
        got = depth_points(msg, info, stride=stride)
        assert got.dtype == np.float32 and got.shape == expected.shape
        np.testing.assert_allclose(got, expected, atol=2e-6, rtol=2e-6)


def test_the_automatic_image_stride_leaves_at_least_320_pixels_across():
    assert [image_stride(w) for w in (160, 320, 424, 640, 848, 1280)] == [1, 1, 1, 2, 2, 4]


def test_unusable_images_and_camera_infos_are_refused_with_what_is_wrong(scene):
    depth = scene.depth_mm[0]
    good, info = image_msg(depth, "16UC1"), info_msg(scene.camera)
    cases = {
        "encoding 'rgb8'": (Image(height=2, width=2, encoding="rgb8", step=6, data=bytes(12)), info),
        "distortion_model 'plumb_bob' with coefficients": (good, info_msg(scene.camera,
                                                                          d=(0.1, 0, 0, 0, 0))),
        "distortion_model 'fisheye'": (good, info_msg(scene.camera, model="fisheye")),
        "camera_info is for 320x240 images, the depth image is 160x120": (
            image_msg(depth[::2, ::2], "16UC1"), info),
        "data has": (Image(height=4, width=4, encoding="16UC1", step=8, data=bytes(16)), info),
        "not a calibrated camera": (good, CameraInfo(height=240, width=320, k=[0.0] * 9)),
    }
    for words, (image, camera_info) in cases.items():
        with pytest.raises(DepthImageError, match=words.replace("(", r"\(")):
            depth_points(image, camera_info)
    with pytest.raises(DepthImageError, match="stride"):
        depth_points(good, info, stride=0)


def test_camera_infos_pair_by_stamp_and_fall_back_to_the_newest():
    store = CameraInfoStore(keep=3)
    assert store.match(5) == (None, False)
    for stamp in (1, 2, 3, 4):
        store.put(stamp, f"info{stamp}")
    assert store.match(3) == ("info3", True)
    assert store.match(1) == ("info4", False)  # forgotten (keep 3): the newest stands in
    assert store.match(99) == ("info4", False)
