"""Pictures of tracked meshes in their vertex colours (matplotlib, software only) and animated GIFs (Pillow).

Rendered with matplotlib's mplot3d (painter's algorithm, Lambert shading from a head light), not
open3d's OffscreenRenderer: on these CPU-only machines Filament runs on Mesa's llvmpipe, and there
``render_to_image`` intermittently never returned while other processes loaded the cores (a
5.7k-triangle mesh, minutes of busy looping). matplotlib draws such a mesh in ~50 ms, needs no GPU,
Vulkan or display, and gives the same picture every run.
"""

from __future__ import annotations

import os
from typing import Sequence, Tuple

import numpy as np

__all__ = ["render_meshes", "save_gif"]

Mesh = Tuple[np.ndarray, np.ndarray, np.ndarray]  # vertices (V, 3), faces (F, 3), colours (V, 3) in [0, 1]


def _panel(ax, vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray, centre: np.ndarray,
           half: float, azim: float) -> None:
    """Draw one mesh on a 3D axes. Optical frame (x right, y down, z forward) is shown as matplotlib's
    (X, Y, Z) = (x, z, -y), so image up is the camera's up; ``azim`` -90: seen from the sensor."""
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    ax.set_axis_off()
    ax.set_proj_type("ortho")
    ax.view_init(elev=0.0, azim=azim)
    c = np.array([centre[0], centre[2], -centre[1]])
    ax.set_xlim(c[0] - half, c[0] + half)
    ax.set_ylim(c[1] - half, c[1] + half)
    ax.set_zlim(c[2] - half, c[2] + half)
    ax.set_box_aspect((1, 1, 1), zoom=1.35)  # mplot3d leaves wide margins by default
    if not len(faces):
        return
    v = np.asarray(vertices, np.float64)
    tri = np.stack([v[..., 0], v[..., 2], -v[..., 1]], axis=-1)[np.asarray(faces, np.int64)]  # (F, 3, 3)
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normal /= np.linalg.norm(normal, axis=1, keepdims=True) + 1e-12
    a = np.deg2rad(azim)
    toward_viewer = np.array([np.cos(a), np.sin(a), 0.0])
    shade = 0.35 + 0.65 * np.abs(normal @ toward_viewer)
    face_colors = np.clip(np.asarray(colors, np.float64)[np.asarray(faces, np.int64)].mean(axis=1)
                          * shade[:, None], 0.0, 1.0)
    ax.add_collection3d(Poly3DCollection(tri, facecolors=face_colors, edgecolors="none", antialiased=False))


def render_meshes(meshes: Sequence[Mesh], *, width: int = 320, height: int = 240,
                  side_view: bool = True) -> list[np.ndarray]:
    """One image per mesh: ``(height, width * (2 if side_view else 1), 3)`` uint8 RGB, white background.

    Meshes are in a camera's optical frame (x right, y down, z forward, metres), coloured per vertex
    (RGB in [0, 1]; a face shows the mean of its corners). Left panel: seen from the sensor's side
    (the view the depth camera had); right panel: from 90 degrees around the vertical (the side the
    camera did not see). Orthographic views fixed for the whole sequence, framed on the first
    non-empty mesh, so motion shows. An empty mesh gives an empty panel.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 2 if side_view else 1
    first = next((np.asarray(v, np.float64) for v, f, _ in meshes if len(f)), None)
    if first is None:
        return [np.full((height, width * panels, 3), 255, np.uint8) for _ in meshes]
    lo, hi = first.min(axis=0), first.max(axis=0)
    centre = (lo + hi) / 2
    half = 0.6 * float((hi - lo).max())
    dpi = 100
    images = []
    for vertices, faces, colors in meshes:
        fig = plt.figure(figsize=(width * panels / dpi, height / dpi), dpi=dpi)
        try:
            for i, azim in enumerate((-90.0, 0.0)[:panels]):
                ax = fig.add_axes((i / panels, 0.0, 1.0 / panels, 1.0), projection="3d")
                _panel(ax, vertices, faces, colors, centre, half, azim)
            fig.canvas.draw()
            images.append(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())
        finally:
            plt.close(fig)
    return images


def save_gif(path: str | os.PathLike, images: Sequence[np.ndarray], *, fps: float = 10.0) -> None:
    """An animated GIF of RGB ``uint8`` images (looping forever), ``fps`` frames per second."""
    from PIL import Image

    if not images:
        raise ValueError("save_gif needs at least one image")
    frames = [Image.fromarray(np.asarray(image, np.uint8)) for image in images]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=max(1, int(round(1000 / fps))),
                   loop=0, optimize=False)
