"""Pictures of tracked meshes (the project's one mesh renderer): PNG grids of panels over their input
points (open3d offscreen, laid out by matplotlib) and frames for animated GIFs (matplotlib, Pillow).

Everything is drawn in the sensor's optical frame (x right, y down, z forward, metres). Rendering is
headless (Filament on Vulkan; Mesa's llvmpipe on a machine without a GPU), and kept cheap for it:
Filament's post-processing is off (on a busy 2-core machine it cost ~60 s per 640x480 frame) and the
meshes use the unlit shader with diffuse shading baked into their vertex colours (the lit shader's
image-based lighting cost 3-18 s per 480x480 panel there, the unlit one 0.5-3 s). Even so llvmpipe's
time per frame swings from 0.05 s to over a minute when other processes load the cores, so the
renderer runs in a child process with a time budget; past it (or without Vulkan) the panels are
drawn by matplotlib's mplot3d instead (painter's algorithm, same colours and viewpoints).

:func:`render_meshes` draws a whole sequence's frames with mplot3d only (a GIF of a replayed bag:
many small frames, where open3d's start-up and swings cost more than they give), framed once on the
first non-empty mesh so that motion shows; :func:`save_gif` writes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
import os
from typing import Optional, Sequence, Tuple

import numpy as np

__all__ = ["Panel", "PictureError", "render_meshes", "render_panels", "save_gif"]

RENDER_BUDGET_S = 30.0  # open3d's time for all panels before matplotlib takes over


class PictureError(RuntimeError):
    """Offscreen rendering is unavailable or failed (the message says what to install)."""


@dataclass
class Panel:
    """One picture: a mesh with per-vertex colours and/or the observed points, from one viewpoint.

    vertices: (V, 3) float metres, optical frame; faces: (F, 3) int; colors: (V, 3) float RGB in [0, 1]
    (e.g. ``ColorBox.colors(canonical)[:, :3]``: the colours RViz shows). points: (N, 3) observed
    points (drawn grey) or None. yaw_deg: the viewpoint, rotated this many degrees about the centre
    of the mesh and points around the image's up axis (0: from the sensor itself). draw: "mesh",
    "points" or "both" (the framing always covers both, so panels of one frame share a scale).
    title: text above the panel.
    """

    vertices: np.ndarray
    faces: np.ndarray
    colors: np.ndarray
    points: Optional[np.ndarray] = None
    yaw_deg: float = 0.0
    draw: str = "both"
    title: str = ""

    def __post_init__(self) -> None:
        if self.draw not in ("mesh", "points", "both"):
            raise PictureError(f"Panel.draw must be 'mesh', 'points' or 'both', got {self.draw!r}")

    @property
    def mesh_shown(self) -> bool:
        return self.draw != "points" and len(self.faces) > 0

    @property
    def points_shown(self) -> bool:
        return self.draw != "mesh" and self.points is not None and len(self.points) > 0


def _bounds(panel: Panel) -> tuple[np.ndarray, np.ndarray]:
    """The box (lo, hi) framed: the mesh and the points together."""
    parts = [np.asarray(panel.vertices, np.float64)]
    if panel.points is not None and len(panel.points):
        parts.append(np.asarray(panel.points, np.float64))
    p = np.concatenate(parts)
    return p.min(0), p.max(0)


def _view(center: np.ndarray, yaw_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """Eye position (optical frame) looking at ``center``: the sensor origin rotated by ``yaw_deg``
    about the vertical (optical -y) axis through ``center``; and the up vector."""
    a = np.deg2rad(yaw_deg)
    rot = np.array([[np.cos(a), 0.0, np.sin(a)], [0.0, 1.0, 0.0], [-np.sin(a), 0.0, np.cos(a)]])
    eye = center + rot @ (np.zeros(3) - center)
    return eye, np.array([0.0, -1.0, 0.0])


def _shading(normals: np.ndarray, toward_viewer: np.ndarray, up: np.ndarray) -> np.ndarray:
    """(V,) diffuse brightness in [0.35, 1] of unit ``normals`` (V, 3) under a light from over the
    viewer's shoulder (two-sided: the sign of a normal does not matter)."""
    light = toward_viewer / max(float(np.linalg.norm(toward_viewer)), 1e-9) + 0.4 * up
    light /= np.linalg.norm(light)
    return 0.35 + 0.65 * np.abs(normals @ light)


def _render_all(panels: Sequence[Panel], size: int) -> list[np.ndarray]:
    try:
        import open3d as o3d

        rendering = o3d.visualization.rendering
        renderer = rendering.OffscreenRenderer(size, size)
    except Exception as e:  # no Vulkan/EGL: say what to install
        raise PictureError(f"open3d offscreen rendering is unavailable ({type(e).__name__}: {e}); "
                           "on Debian/Ubuntu install libvulkan1 and mesa-vulkan-drivers "
                           "(tools/setup.sh does)") from e
    scene = renderer.scene
    scene.view.set_post_processing(False)
    scene.set_background([1.0, 1.0, 1.0, 1.0])
    flat = rendering.MaterialRecord()
    flat.shader = "defaultUnlit"
    dots = rendering.MaterialRecord()
    dots.shader = "defaultUnlit"
    dots.point_size = 2.0
    images = []
    for panel in panels:
        scene.clear_geometry()
        v = np.asarray(panel.vertices, np.float64)
        f = np.asarray(panel.faces, np.int32)
        lo, hi = _bounds(panel)
        center = 0.5 * (lo + hi)
        radius = 0.5 * float(np.linalg.norm(hi - lo))
        eye, up = _view(center, panel.yaw_deg)
        distance = float(np.linalg.norm(eye - center))
        if panel.mesh_shown:
            mesh = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(v), o3d.utility.Vector3iVector(f))
            mesh.compute_vertex_normals()
            colors = np.clip(np.asarray(panel.colors, np.float64)[:, :3], 0.0, 1.0)
            mesh.vertex_colors = o3d.utility.Vector3dVector(colors * _shading(
                np.asarray(mesh.vertex_normals), eye - center, up)[:, None])
            scene.add_geometry("mesh", mesh, flat)
        if panel.points_shown:
            cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.asarray(panel.points, np.float64)))
            cloud.paint_uniform_color([0.35, 0.35, 0.35])
            scene.add_geometry("points", cloud, dots)
        fov = float(np.rad2deg(2.0 * np.arctan(1.1 * radius / max(distance, 1e-6))))
        renderer.setup_camera(fov, center.astype(np.float32), eye.astype(np.float32),
                              up.astype(np.float32))
        images.append(np.asarray(renderer.render_to_image()))
    scene.clear_geometry()
    return images


def _quiet() -> None:
    """Child initializer: Filament and Mesa print their start-up lines on fds 1 and 2; drop them."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    os.close(devnull)


def _render_open3d(panels: Sequence[Panel], size: int, budget_s: float) -> list[np.ndarray]:
    """_render_all in a child process (spawned: no inherited threads or DDS state), killed after
    ``budget_s`` seconds. Raises PictureError on a timeout or a failure."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    pool = ctx.Pool(1, initializer=_quiet)
    try:
        return pool.apply_async(_render_all, (list(panels), size)).get(timeout=budget_s)
    except multiprocessing.TimeoutError:
        raise PictureError(f"open3d offscreen rendering took more than {budget_s:g} s (llvmpipe on "
                           "a busy CPU)") from None
    except PictureError:
        raise
    except Exception as e:
        raise PictureError(f"open3d offscreen rendering failed: {type(e).__name__}: {e}") from e
    finally:
        pool.terminate()
        pool.join()


def _render_matplotlib(panel: Panel, size: int, height: Optional[int] = None, *,
                       frame: Optional[Tuple[np.ndarray, float]] = None,
                       orthographic: bool = False) -> np.ndarray:
    """One panel drawn by mplot3d (painter's algorithm): (height or size, size, 3) uint8. frame:
    (centre, half-width) to frame on (default: the panel's own mesh and points); orthographic:
    a parallel projection (default: perspective)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    height = size if height is None else height
    v = np.asarray(panel.vertices, np.float64).reshape(-1, 3)
    f = np.asarray(panel.faces, np.int64).reshape(-1, 3)

    def axes(p: np.ndarray) -> np.ndarray:  # optical (x right, y down, z forward) -> (x, z, -y): z up
        return np.stack([p[:, 0], p[:, 2], -p[:, 1]], axis=1)

    if frame is None:
        lo, hi = _bounds(panel)
        center, r = 0.5 * (lo + hi), 0.55 * float(np.linalg.norm(hi - lo))
    else:
        center, r = np.asarray(frame[0], np.float64), float(frame[1])
    eye, up = _view(center, panel.yaw_deg)
    fig = plt.figure(figsize=(size / 100, height / 100), dpi=100)
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0), projection="3d")
    if panel.mesh_shown:
        tri_normals = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
        tri_normals /= np.maximum(np.linalg.norm(tri_normals, axis=1, keepdims=True), 1e-12)
        colors = np.clip(np.asarray(panel.colors, np.float64)[:, :3], 0.0, 1.0)[f].mean(axis=1)
        colors = colors * _shading(tri_normals, eye - center, up)[:, None]
        ax.add_collection3d(Poly3DCollection(axes(v)[f], facecolors=colors, edgecolors="none",
                                             antialiased=False))
    if panel.points_shown:
        p = axes(np.asarray(panel.points, np.float64)[:: max(1, len(panel.points) // 4000)])
        ax.scatter(p[:, 0], p[:, 1], p[:, 2], s=0.3, c="#595959", depthshade=False)
    c = axes(center[None])[0]
    ax.set_xlim(c[0] - r, c[0] + r)
    ax.set_ylim(c[1] - r, c[1] + r)
    ax.set_zlim(c[2] - r, c[2] + r)
    ax.set_box_aspect((1, 1, 1), zoom=1.35)
    if orthographic:
        ax.set_proj_type("ortho")
    else:
        ax.set_proj_type("persp", focal_length=0.4)
    ax.view_init(elev=0.0, azim=-90.0 - panel.yaw_deg)  # azim -90: looking along +depth (the sensor)
    ax.set_axis_off()
    fig.canvas.draw()
    image = np.asarray(fig.canvas.buffer_rgba())[:, :, :3].copy()
    plt.close(fig)
    return image


Mesh = Tuple[np.ndarray, np.ndarray, np.ndarray]  # vertices (V, 3), faces (F, 3), colours (V, 3) in [0, 1]


def render_meshes(meshes: Sequence[Mesh], *, width: int = 320, height: int = 240,
                  side_view: bool = True) -> list[np.ndarray]:
    """One image per mesh: ``(height, width * (2 if side_view else 1), 3)`` uint8 RGB, white background.

    Meshes are in a camera's optical frame (x right, y down, z forward, metres), coloured per vertex
    (RGB in [0, 1]; a face shows the mean of its corners). Left panel: seen from the sensor's side
    (the view the depth camera had); right panel: from 90 degrees around the vertical (the side the
    camera did not see). Orthographic views fixed for the whole sequence, framed on the first
    non-empty mesh, so motion shows. An empty mesh gives an empty panel.
    """
    yaws = (0.0, 90.0) if side_view else (0.0,)
    first = next((np.asarray(v, np.float64) for v, f, _ in meshes if len(f)), None)
    if first is None:
        return [np.full((height, width * len(yaws), 3), 255, np.uint8) for _ in meshes]
    lo, hi = first.min(axis=0), first.max(axis=0)
    frame = ((lo + hi) / 2, 0.6 * float((hi - lo).max()))
    return [np.concatenate([_render_matplotlib(Panel(v, f, c, yaw_deg=yaw, draw="mesh"), width,
                                               height, frame=frame, orthographic=True)
                            for yaw in yaws], axis=1)
            for v, f, c in meshes]


def save_gif(path: str | os.PathLike, images: Sequence[np.ndarray], *, fps: float = 10.0) -> None:
    """An animated GIF of RGB ``uint8`` images (looping forever), ``fps`` frames per second."""
    from PIL import Image

    if not images:
        raise ValueError("save_gif needs at least one image")
    frames = [Image.fromarray(np.asarray(image, np.uint8)) for image in images]
    frames[0].save(path, save_all=True, append_images=frames[1:],
                   duration=max(1, int(round(1000 / fps))), loop=0, optimize=False)


def render_panels(panels: Sequence[Panel], path: Path, *, columns: int = 3, size: int = 400,
                  title: str = "", budget_s: float = RENDER_BUDGET_S) -> str:
    """Render ``panels`` (``size`` x ``size`` pixels each) into one PNG at ``path`` (not overwritten),
    ``columns`` per row, each with its title. Returns which renderer drew them: "open3d", or
    "matplotlib (<why open3d did not>)" when open3d's offscreen renderer is unavailable or took more
    than ``budget_s`` seconds. Raises FileExistsError when ``path`` exists, PictureError for no panels.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} exists; refusing to overwrite it")
    if not panels:
        raise PictureError("no panels to render")
    try:
        images = _render_open3d(panels, size, budget_s) if budget_s > 0 else None
        used = "open3d"
    except PictureError as e:
        images, used = None, f"matplotlib ({e})"
    if images is None:
        images = [_render_matplotlib(p, size) for p in panels]
        used = used if used != "open3d" else "matplotlib (open3d not asked for)"
    rows = (len(images) + columns - 1) // columns
    cols = min(columns, len(images))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.6 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, image, panel in zip(axes.ravel(), images, panels):
        ax.imshow(image)
        ax.set_title(panel.title, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return used
