"""The demo's pre-rendered scene: compact frames that rebuild RealSense-like clouds on the moving surface."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree

from occflow_ros.data.demo_scene import DemoScene, DemoSceneError, SceneConfig


@pytest.fixture(scope="module")
def scene():
    s = DemoScene(SceneConfig(seed=3, seconds=0.5, width=96, height=72, truth_points=5000))
    s.render()
    return s


def test_frames_come_at_30_hz_with_jitter_as_uint16_depth(scene):
    assert len(scene) == 16 and scene.depth_mm.dtype == np.uint16 and scene.depth_mm.shape[1:] == (72, 96)
    steps = np.diff(scene.times)
    assert np.all(steps > 0) and np.allclose(steps, 1 / 30, atol=0.4 / 30 * 2)
    assert not np.allclose(steps, 1 / 30, atol=1e-6), "jitter"


def test_clouds_are_organized_with_zero_invalid_pixels_and_the_person_on_the_exact_surface(scene):
    for k in (0, 15):
        cloud = scene.cloud(k)
        assert cloud.shape == (72, 96, 3) and cloud.dtype == np.float32
        assert np.isfinite(cloud).all(), "invalid pixels are zeros, as a RealSense writes them"
        invalid = scene.depth_mm[k] == 0
        assert invalid.any() and np.all(cloud[invalid] == 0)
        np.testing.assert_allclose(cloud[:, :, 2], scene.depth_mm[k] / 1000.0, atol=1e-6)
        person = cloud[scene.object_mask(k)]
        assert len(person) > 100
        truth = scene.truth(float(scene.times[k]))
        d, _ = cKDTree(truth).query(person)
        assert np.median(d) < 0.02, "the person's pixels lie on the truth surface at that frame's time"
        later = scene.truth(float(scene.times[k]) + 0.3)
        assert np.median(cKDTree(later).query(person)[0]) > np.median(d), "and the person moves"


def test_truth_rows_are_the_same_material_points_at_every_time(scene):
    a, b = scene.truth(0.0), scene.truth(0.2)
    assert a.shape == b.shape == (5000, 3)
    world = scene.shape.trajectory(scene.material, np.array([0.2]))[0]
    np.testing.assert_allclose(scene.camera.to_world(b), world, atol=1e-9)


def test_the_region_of_interest_holds_the_person_over_the_stream(scene):
    lo, hi = scene.object_box(0.1)
    for k in (0, 15):
        person = scene.cloud(k)[scene.object_mask(k)]
        assert np.all(person >= lo) and np.all(person <= hi)


def test_frames_rendered_to_disk_are_the_frames_rendered_in_memory(scene, tmp_path):
    """render(store=...): the same stream (same seed), in memory-mapped files instead of memory."""
    on_disk = DemoScene(scene.config)
    on_disk.render(store=tmp_path)
    assert isinstance(on_disk.depth_mm, np.memmap) and (tmp_path / "depth_mm.npy").is_file()
    assert on_disk.rendered_bytes == on_disk.depth_mm.nbytes + on_disk.object_bits.nbytes
    np.testing.assert_array_equal(on_disk.depth_mm, scene.depth_mm)
    np.testing.assert_array_equal(on_disk.cloud(5), scene.cloud(5))
    np.testing.assert_array_equal(on_disk.object_mask(5), scene.object_mask(5))


def test_a_bad_setting_names_its_key():
    with pytest.raises(DemoSceneError, match="scene.motion must be one of"):
        SceneConfig(motion="moonwalk")
    with pytest.raises(DemoSceneError, match=r"scene.seconds must be in \[0.5, 600\]"):
        SceneConfig(seconds=0.1)
