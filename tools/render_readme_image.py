"""Render the README picture: the astronaut photo, the reconstructed head rendered in Cycles
through the photo's camera, and the same head from a three-quarter view.

    python tools/render_readme_image.py [--result DIR] [--out docs/astronaut_blender.png]
                                        [--samples 64] [--panel 400]

Runs the engine on scikit-image's astronaut photo (``python -m engine reconstruct``), or reuses
a saved result (``--result``), builds the scene with the extension's own code
(``hrn_blender.headless.build_scene``) and renders with Cycles on the CPU. Output: three square
panels side by side (photo crop | camera-view render | three-quarter render), each ``--panel``
pixels, around the head.
"""
from __future__ import annotations

import argparse
import math
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import bpy  # noqa: E402
from mathutils import Vector  # noqa: E402

from engine.result import FaceReconstruction  # noqa: E402
from hrn_blender import headless  # noqa: E402

GREY = np.array([0.30, 0.30, 0.32])  # panel background behind the three-quarter render
THREE_QUARTER_YAW_DEG = 35.0
THREE_QUARTER_LENS_MM = 85.0


def reconstruct(photo: Path, out: Path) -> FaceReconstruction:
    """Run the engine's command line on ``photo`` into ``out``."""
    subprocess.run([sys.executable, "-m", "engine", "reconstruct", str(photo), "--out", str(out),
                    "--device", "cpu", "--no-preview"], cwd=ROOT, check=True)
    return FaceReconstruction.load(out)


def head_square(result: FaceReconstruction, margin: float = 0.12) -> tuple[int, int, int]:
    """(x0, y0, side) of a square, in photo pixels, around the projected head."""
    projected = result.camera.project(result.vertices)
    lo, hi = projected.min(0), projected.max(0)
    side = int(math.ceil((hi - lo).max() * (1 + 2 * margin)))
    x0, y0 = ((lo + hi) / 2 - side / 2).round().astype(int)
    width, height = result.camera.image_size
    x0, y0 = np.clip([x0, y0], 0, [width - side, height - side])
    return int(x0), int(y0), side


def render_rgba(path: Path, samples: int) -> np.ndarray:
    """Render the scene camera with Cycles (denoised); ``[H, W, 4]`` float in [0, 1]."""
    headless.render(str(path), samples=samples, denoise=True)
    return np.asarray(Image.open(path), np.float32) / 255.0


def camera_view(result: FaceReconstruction, square: tuple[int, int, int], panel: int,
                samples: int, tmp: Path) -> np.ndarray:
    """The photo camera's view of the head square, at ``panel`` pixels, RGBA."""
    scene = bpy.context.scene
    x0, y0, side = square
    width, height = result.camera.image_size
    render = scene.render
    render.resolution_percentage = 100
    scale = panel / side
    render.resolution_x, render.resolution_y = round(width * scale), round(height * scale)
    render.use_border = render.use_crop_to_border = True
    render.border_min_x, render.border_max_x = x0 / width, (x0 + side) / width
    render.border_min_y, render.border_max_y = 1 - (y0 + side) / height, 1 - y0 / height
    rgba = render_rgba(tmp / "camera.png", samples)
    render.use_border = render.use_crop_to_border = False
    return _fit(rgba, panel)


def three_quarter_view(head: bpy.types.Object, panel: int, samples: int, tmp: Path) -> np.ndarray:
    """The head from the subject's right, 35 degrees off the front, RGBA."""
    scene = bpy.context.scene
    corners = np.array([head.matrix_world @ Vector(c) for c in head.bound_box])
    centre = Vector((corners.min(0) + corners.max(0)) / 2)
    size = float((corners.max(0) - corners.min(0))[[0, 2]].max())  # width or height, metres
    data = bpy.data.cameras.new("three-quarter")
    data.lens = THREE_QUARTER_LENS_MM
    distance = 1.15 * size / (data.sensor_width / data.lens)
    yaw = math.radians(THREE_QUARTER_YAW_DEG)
    # The face looks along Blender -Y; swing the camera round the vertical axis.
    location = centre + distance * Vector((-math.sin(yaw), -math.cos(yaw), 0.0))
    camera = bpy.data.objects.new("three-quarter", data)
    camera.location = location
    camera.rotation_euler = (centre - location).to_track_quat("-Z", "Y").to_euler()
    scene.collection.objects.link(camera)
    scene.camera = camera
    scene.render.resolution_x = scene.render.resolution_y = panel
    return render_rgba(tmp / "three_quarter.png", samples)


def _fit(rgba: np.ndarray, panel: int) -> np.ndarray:
    """Border renders can be a pixel off the panel size: resize to exactly ``panel``."""
    if rgba.shape[:2] == (panel, panel):
        return rgba
    image = Image.fromarray((rgba * 255).round().astype(np.uint8), "RGBA")
    return np.asarray(image.resize((panel, panel), Image.LANCZOS), np.float32) / 255.0


def over(rgba: np.ndarray, background: np.ndarray) -> np.ndarray:
    alpha = rgba[..., 3:]
    return rgba[..., :3] * alpha + background * (1 - alpha)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--result", type=Path, help="a saved reconstruction of the astronaut")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "astronaut_blender.png")
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--panel", type=int, default=400, help="panel size in pixels")
    args = parser.parse_args()
    from skimage import data

    photo_rgb = data.astronaut()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        photo = tmp / "astronaut.png"
        Image.fromarray(photo_rgb).save(photo)
        result = FaceReconstruction.load(args.result) if args.result else \
            reconstruct(photo, tmp / "result")
        bpy.ops.wm.read_factory_settings(use_empty=True)
        head = headless.build_scene(result, "astronaut", photo=str(photo))
        square = head_square(result)
        x0, y0, side = square
        crop = Image.fromarray(photo_rgb[y0:y0 + side, x0:x0 + side])
        photo_panel = np.asarray(crop.resize((args.panel, args.panel), Image.LANCZOS),
                                 np.float32) / 255.0
        front = camera_view(result, square, args.panel, args.samples, tmp)
        side_view = three_quarter_view(head, args.panel, args.samples, tmp)
    panels = [photo_panel, over(front, GREY), over(side_view, GREY)]
    strip = (np.concatenate(panels, axis=1).clip(0, 1) * 255).round().astype(np.uint8)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(strip).save(args.out, optimize=True)
    print(f"Wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
