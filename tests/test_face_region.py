"""engine.detect.face_region: what covers the face, told by colour, on painted and real photos."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from engine.detect.face_region import SKIN_SEEDS, unoccluded
from engine.detect.landmarks import CONTOUR, LEFT_EYEBROW, RIGHT_EYEBROW, detect_landmarks
from engine.io.image_io import load_photo

SKIN = (0.85, 0.62, 0.50)      # sRGB
HAIR = (0.35, 0.25, 0.12)      # brown hair
BROW = (0.25, 0.17, 0.10)


@pytest.fixture(scope="module")
def astronaut(astronaut_path):
    photo = load_photo(astronaut_path)
    return np.clip(photo.rgb, 0, 1).astype(np.float32), detect_landmarks(photo).points[:, :2]


def _paint(points: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, Image.Image]:
    """A face of flat skin with dark brows, on grey, at the astronaut's landmarks."""
    img = Image.new("RGB", size, (128, 128, 128))
    draw = ImageDraw.Draw(img)
    draw.polygon([tuple(p) for p in points[CONTOUR]], fill=tuple(int(c * 255) for c in SKIN))
    for brow in (LEFT_EYEBROW, RIGHT_EYEBROW):
        for i in brow:
            x, y = points[i]
            draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill=tuple(int(c * 255) for c in BROW))
    return points, img


def _oval(points: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    img = Image.new("L", size, 0)
    ImageDraw.Draw(img).polygon([tuple(p) for p in points[CONTOUR]], fill=255)
    return np.asarray(img) > 127


def _erode(mask: np.ndarray, px: int) -> np.ndarray:
    from scipy.ndimage import binary_erosion

    return binary_erosion(mask, iterations=px)


def _as_float(img: Image.Image, seed: int = 0) -> np.ndarray:
    """The painting as float sRGB with a little pixel noise, as skin in a photo has."""
    noise = np.random.default_rng(seed).normal(0.0, 0.01, (img.height, img.width, 1)).astype(np.float32)
    return np.clip(np.asarray(img, np.float32) / 255.0 * (1.0 + noise), 0.0, 1.0)


def _strands(draw: ImageDraw.ImageDraw, box: tuple[float, float, float, float]) -> None:
    """Hair: a dark brown block with lighter strands every 3 px."""
    draw.rectangle(box, fill=tuple(int(c * 255) for c in HAIR))
    x0, y0, x1, y1 = box
    for x in np.arange(x0, x1, 3.0):
        draw.line((x, y0, x + 4, y1), fill=tuple(int(c * 400) for c in HAIR), width=1)


def test_painted_fringe_is_occluded_and_skin_brows_moles_highlights_are_not(astronaut):
    rgb, points = astronaut
    h, w = rgb.shape[:2]
    points, img = _paint(points, (w, h))
    draw = ImageDraw.Draw(img)
    top = points[CONTOUR, 1].min()
    brow_y = points[list(LEFT_EYEBROW) + list(RIGHT_EYEBROW), 1].min()
    x0, x1 = points[CONTOUR, 0].min(), points[CONTOUR, 0].max()
    fringe = (x0, top, x0 + 0.6 * (x1 - x0), top + 0.6 * (brow_y - top))
    _strands(draw, fringe)
    cheek = points[SKIN_SEEDS[0]]
    draw.ellipse((cheek[0] - 1, cheek[1] + 8, cheek[0] + 1, cheek[1] + 10), fill=(60, 40, 30))   # a mole
    shine = (x0 + 0.78 * (x1 - x0), brow_y - 0.3 * (brow_y - top))     # right of the fringe
    draw.ellipse((shine[0] - 4, shine[1] - 3, shine[0] + 4, shine[1] + 3), fill=(250, 245, 240))
    mask = unoccluded(_as_float(img), points)

    assert mask.shape == (h, w) and mask.dtype == np.float32
    fx0, fy0, fx1, fy1 = (int(round(v)) for v in fringe)
    oval = _oval(points, (w, h))
    core = np.zeros_like(oval)
    core[fy0 + 4:fy1 - 3, fx0 + 4:fx1 - 4] = True
    core &= _erode(oval, 4)
    assert core.sum() > 50 and mask[core].max() < 0.05        # the fringe is masked
    for i in SKIN_SEEDS:
        assert mask[int(points[i, 1]), int(points[i, 0])] > 0.95
    assert mask[int(shine[1]), int(shine[0])] > 0.95             # a highlight is skin
    assert mask[int(cheek[1] + 9), int(cheek[0])] > 0.95          # the mole is a speck
    for i in list(LEFT_EYEBROW) + list(RIGHT_EYEBROW):           # brows are a face part
        if points[i, 0] > fx1 + 6:
            assert mask[int(points[i, 1]), int(points[i, 0])] > 0.9


@pytest.mark.parametrize("light", ["even", "hard side", "blue side"])
def test_shadows_and_coloured_light_are_not_occluders(astronaut, light):
    """Half the face in deep shadow, or lit blue, changes its colour smoothly: no occluder."""
    rgb, points = astronaut
    h, w = rgb.shape[:2]
    _, img = _paint(points, (w, h))
    face = _as_float(img)
    left = np.arange(w)[None, :, None] < points[1, 0]              # image left of the nose tip
    if light == "hard side":
        face = np.where(left, face * 0.2, face)
    elif light == "blue side":
        face = np.where(left, face * np.array([0.6, 0.75, 1.3], np.float32), face).clip(0, 1)
    assert unoccluded(face, points).min() > 0.99


def test_astronaut_fringe_is_found_and_cheeks_are_clear(astronaut):
    """Her fringe covers the top of the face oval; the cheeks and nose are bare."""
    rgb, points = astronaut
    mask = unoccluded(rgb, points)
    oval = _oval(points, (rgb.shape[1], rgb.shape[0]))
    brow_y = points[list(LEFT_EYEBROW) + list(RIGHT_EYEBROW), 1].min()
    above_brows = oval & (np.arange(rgb.shape[0])[:, None] < brow_y - 3)
    below = oval & (np.arange(rgb.shape[0])[:, None] > points[1, 1])      # below the nose tip
    assert (mask[above_brows] < 0.5).mean() > 0.4
    assert (mask[below] < 0.5).mean() < 0.15
    assert all(mask[int(points[i, 1]), int(points[i, 0])] > 0.9 for i in SKIN_SEEDS)
