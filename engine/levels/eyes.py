"""The eyes' appearance from the photo: iris colour, sclera tone and iris size.

MediaPipe's points 468-477 are the two irises (centre + 4 rim points each). The iris colour is
the median of the photo's pixels inside the iris disc, outside the pupil, inside the eye
opening (the lids cover part of the iris) and below the brightest tenth (catch-lights); the
sclera tone is the median of the eye opening's pixels outside the iris. Both are divided by
the fitted lighting's irradiance for a surface facing the camera, so they are albedos in the
same sense as the skin's. The iris size is the rim radius in metres at the eye (pixels x
depth / focal length) over the model's.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from ..detect.landmarks import IRIS_LEFT, IRIS_LEFT_CENTER, IRIS_RIGHT, IRIS_RIGHT_CENTER, LEFT_EYE, RIGHT_EYE
from ..detect.face_region import convex_hull
from ..geometry.sh import irradiance
from ..head.model import IRIS_UV_RADII, HeadModel
from ..result import DEFAULT_EYES, Camera, EyeAppearance
from .albedo import linear_to_srgb

#: Average human iris radius (metres), used when the model gives none: 11.7 mm diameter.
HUMAN_IRIS_RADIUS_M = 0.00585
#: Limits on the iris scale taken from a photo (its rim points are only a few pixels apart).
IRIS_SCALE_RANGE = (0.85, 1.15)
_MIN_PIXELS = 12


def measure_eyes(photos_linear: Sequence[np.ndarray], points_px: Sequence[np.ndarray],
                 cameras: Sequence[Camera], sh: Sequence[np.ndarray], model_iris_radius_m: float,
                 eye_centres: Sequence[np.ndarray]) -> EyeAppearance:
    """The eyes' appearance, pooled over photos.

    Args:
        photos_linear: per photo, ``[H, W, 3]`` linear RGB.
        points_px: per photo, its ``[478, 2+]`` MediaPipe landmarks (pixels).
        cameras: per photo, the fitted camera.
        sh: per photo, its ``[9, 3]`` SH lighting (camera space).
        model_iris_radius_m: the head model's iris (limbus) radius, metres.
        eye_centres: per photo, ``[2, 3]`` model-space centres of the subject's left (+X) and
            right eyeballs on this photo's head.
    """
    iris, sclera, radii = [], [], []
    for photo, pts, camera, lighting, centres in zip(photos_linear, points_px, cameras, sh, eye_centres):
        light = np.maximum(irradiance(np.array([[0.0, 0.0, 1.0]]), lighting)[0], 0.05)
        depth = -camera.to_camera(np.asarray(centres, np.float64))[:, 2]
        for (centre, rim, outline), eye_depth in zip(((IRIS_LEFT_CENTER, IRIS_LEFT, LEFT_EYE),
                                                      (IRIS_RIGHT_CENTER, IRIS_RIGHT, RIGHT_EYE)), depth):
            c = pts[centre, :2]
            r = float(np.linalg.norm(pts[rim, :2] - c, axis=1).mean())
            pixels, dist = _eye_pixels(photo, pts[outline, :2], c)
            if r < 2.0 or len(pixels) < _MIN_PIXELS:
                continue
            radii.append(r * eye_depth / camera.focal_px)
            for ring, out in (((dist > 0.4 * r) & (dist < 0.9 * r), iris), (dist > 1.2 * r, sclera)):
                pixels_ring = pixels[ring]
                if len(pixels_ring) >= _MIN_PIXELS:
                    bright = pixels_ring.mean(1)
                    out.append(pixels_ring[bright <= np.quantile(bright, 0.9)] / light)
    if not iris:
        return DEFAULT_EYES
    iris_srgb = linear_to_srgb(np.clip(np.median(np.concatenate(iris), 0), 0, 1))
    sclera_srgb = (linear_to_srgb(np.clip(np.median(np.concatenate(sclera), 0), 0, 1))
                   if sclera else np.asarray(DEFAULT_EYES.sclera_srgb))
    scale = float(np.clip(np.median(radii) / model_iris_radius_m, *IRIS_SCALE_RANGE))
    return EyeAppearance(iris_srgb=tuple(float(v) for v in iris_srgb),
                         sclera_srgb=tuple(float(v) for v in sclera_srgb), iris_scale=scale)


def iris_radius(model: HeadModel) -> float:
    """Radius (metres) of the model's iris at the limbus (:data:`IRIS_UV_RADII`) on its mean
    shape; the average human iris when the model has no iris part."""
    if "iris" not in model.material_names:
        return HUMAN_IRIS_RADIUS_M
    faces = model.faces[model.face_material == model.material_names.index("iris")]
    corners = model.face_uvs[model.face_material == model.material_names.index("iris")]
    ok = corners >= 0
    radius = np.linalg.norm(model.uvs[corners[ok]] - 0.5, axis=1)
    rim = np.unique(faces[ok][np.abs(radius - IRIS_UV_RADII[1]) < 0.02])
    rim = rim[model.mean[rim, 0] > 0]                        # one eye
    points = model.mean[rim].astype(np.float64)
    return float(np.linalg.norm(points - points.mean(0), axis=1).mean())


def eye_centres(model: HeadModel, vertices: np.ndarray) -> np.ndarray:
    """``[2, 3]`` centres of the subject's left (+X) and right eye openings on ``vertices``:
    the mean of each eye's outline landmarks on the head."""
    points = model.landmarks(np.asarray(vertices))
    return np.stack([points[LEFT_EYE].mean(0), points[RIGHT_EYE].mean(0)])


def _eye_pixels(photo: np.ndarray, outline: np.ndarray, centre: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The photo's pixels ``[N, 3]`` inside the eye opening (convex hull of its ``outline``
    points, pixels) and each one's distance ``[N]`` from the iris ``centre`` (pixels)."""
    h, w = photo.shape[:2]
    x0, y0 = np.clip(np.floor(outline.min(0)).astype(int), 0, [w, h])
    x1, y1 = np.clip(np.ceil(outline.max(0)).astype(int) + 1, 0, [w, h])
    if x1 <= x0 or y1 <= y0:
        return np.zeros((0, 3), photo.dtype), np.zeros(0)
    img = Image.new("L", (int(x1 - x0), int(y1 - y0)), 0)
    local = outline - [x0, y0]
    ImageDraw.Draw(img).polygon([tuple(p) for p in local[convex_hull(local)]], fill=255)
    inside = np.asarray(img) > 0
    ys, xs = np.nonzero(inside)
    dist = np.hypot(xs + x0 + 0.5 - centre[0], ys + y0 + 0.5 - centre[1])
    return photo[y0:y1, x0:x1][inside], dist
