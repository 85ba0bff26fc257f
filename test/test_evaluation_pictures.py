"""Demo pictures: panels of a coloured mesh and its points drawn into one PNG, never overwriting one."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import ConvexHull

from occflow_ros.evaluation.pictures import Panel, PictureError, render_panels


def sphere(n: int = 400) -> tuple:
    d = np.random.default_rng(0).normal(size=(n, 3))
    v = 0.3 * d / np.linalg.norm(d, axis=1, keepdims=True) + [0.0, 0.0, 2.0]
    return v, ConvexHull(v).simplices


def test_matplotlib_panels_show_the_mesh_colours_and_the_points_and_never_overwrite(tmp_path):
    import matplotlib.image

    v, f = sphere()
    red = np.tile([1.0, 0.0, 0.0], (len(v), 1))
    panels = [Panel(v, f, red, v[v[:, 2] < 2.0], 0.0, "points"),
              Panel(v, f, red, None, 70.0, "mesh")]  # no titles: no text pixels
    path = tmp_path / "frames.png"
    used = render_panels(panels, path, columns=2, size=200, budget_s=0)  # 0: matplotlib only
    assert used.startswith("matplotlib")
    image = matplotlib.image.imread(path)[:, :, :3]
    half = image.shape[1] // 2
    reddish = (image[:, :, 0] > 0.3) & (image[:, :, 1] < 0.2) & (image[:, :, 2] < 0.2)
    grey = (np.abs(image[:, :, 0] - image[:, :, 1]) < 0.05) & (image[:, :, 0] < 0.6)
    assert reddish[:, half:].sum() > 500 and reddish[:, :half].sum() == 0, "mesh only in the right panel"
    assert grey[:, :half].sum() > 100, "the points panel shows the points"
    with pytest.raises(FileExistsError):
        render_panels(panels, path, budget_s=0)


def test_a_panel_refuses_an_unknown_drawing_mode():
    v, f = sphere(20)
    with pytest.raises(PictureError, match="Panel.draw"):
        Panel(v, f, np.ones((len(v), 3)), None, 0.0, "wireframe")
