"""Which pixels of a face crop show this face's own skin, and which show something in front of it.

MediaPipe's face oval says where the face is, not what covers it: a fringe over the forehead,
a hand, glasses frames or a beard sit inside the oval. Fitting geometry to them, or taking
albedo from them, smears hair into the skin (the official HRN masks them with a TensorFlow
face-segmentation graph, FACTS 1.7, which we do not ship).

:func:`unoccluded` builds a colour model of the skin from patches that are almost never
covered (cheeks and nose bridge, found from the landmarks) and marks as occluded the
sizeable regions whose colour does not fit it:

* chroma (CIE a*, b*) more than :data:`CHROMA_SIGMAS` robust standard deviations away from
  the skin's, or
* much darker than the skin (luminance ratio below :data:`DARK_RATIO`), as hair usually is, or
* somewhat darker (below :data:`SHADED_RATIO`) and yellower (hue angle over
  :data:`YELLOWER_DEG` beyond the skin's), as fair hair is,

and that are more textured than the bare face (hair is made of strands; a shadow, a hard
side light or a coloured light changes the colour smoothly and is not an occluder).

Specular highlights (brighter than :data:`HIGHLIGHT_RATIO` x the skin) are skin, and
the eyes, brows and lips are face parts, never occluders. Specks smaller than
:data:`MIN_OCCLUDER_FRACTION` of the face width (pores, moles, stubble dots) are ignored.
"""
from __future__ import annotations

import cv2
import numpy as np
from PIL import Image, ImageDraw

from .landmarks import CONTOUR, LEFT_EYE, LEFT_EYEBROW, LIPS, RIGHT_EYE, RIGHT_EYEBROW, face_width_px

#: MediaPipe Face Mesh vertices at the cheeks (50, 280, 205, 425, 101, 330) and the nose
#: bridge (195, 5): skin that hair, hands and glasses rarely cover.
SKIN_SEEDS = (50, 280, 205, 425, 101, 330, 195, 5)
#: Radius of each seed patch, as a fraction of the face width (cheek to cheek).
SEED_RADIUS = 0.06
#: Chroma distance (robust standard deviations) from which a pixel is not skin; the mask
#: ramps to 0 over the next :data:`CHROMA_RAMP` deviations.
CHROMA_SIGMAS, CHROMA_RAMP = 4.0, 2.0
#: Floor of the chroma standard deviation (CIE a*/b* units), so a very uniform skin patch
#: does not make every slightly different pixel an occluder.
MIN_CHROMA_STD = 2.0
#: Luminance ratio to the skin's median below which a pixel is too dark to be lit skin
#: (ramping over :data:`DARK_RAMP`).
DARK_RATIO, DARK_RAMP = 0.35, 0.2
#: A pixel darker than SHADED_RATIO x the skin whose hue angle (CIE a*b*) is more than
#: YELLOWER_DEG degrees yellower than the skin's is hair: shading darkens skin without making
#: it yellower, fair hair is both.
SHADED_RATIO, YELLOWER_DEG = 0.8, 6.0
#: Luminance ratio above which a pixel counts as a specular highlight on skin.
HIGHLIGHT_RATIO = 1.2
#: Scale (fraction of the face width) of the texture measure, and how much more textured
#: than the bare face a candidate region must be to count as an occluder (hair).
TEXTURE_SCALE, TEXTURE_RATIO = 0.015, 1.4
#: Smallest occluder kept, as a fraction of the face width (opening kernel size).
MIN_OCCLUDER_FRACTION = 0.05


def unoccluded(rgb: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``[H, W]`` float32 in [0, 1]: 1 where the crop shows the face itself (skin or a face
    part), 0 where something covers it. Outside the face oval the value is 1: callers combine
    this with their own face-region mask.

    Args:
        rgb: ``[H, W, 3]`` sRGB crop, float in [0, 1].
        points: ``[478, 2+]`` MediaPipe landmarks in the crop's pixel coordinates (x right,
            y down, pixel centres at +0.5).
    """
    h, w = rgb.shape[:2]
    pts = np.asarray(points, np.float64)[:, :2]
    face_width = face_width_px(pts)
    lab = cv2.cvtColor(np.ascontiguousarray(np.clip(rgb, 0.0, 1.0), np.float32), cv2.COLOR_RGB2LAB)
    oval = _polygon_mask((h, w), [pts[CONTOUR]])
    seeds = _seed_mask((h, w), pts, SEED_RADIUS * face_width) & oval
    if seeds.sum() < 20:
        return np.ones((h, w), np.float32)
    chroma, lum = lab[..., 1:], lab[..., 0]
    skin_chroma = np.median(chroma[seeds], axis=0)
    spread = np.maximum(1.4826 * np.median(np.abs(chroma[seeds] - skin_chroma), axis=0), MIN_CHROMA_STD)
    distance = np.linalg.norm((chroma - skin_chroma) / spread, axis=-1)
    ratio = (lum + 1.0) / (np.median(lum[seeds]) + 1.0)
    skin_like = np.clip((CHROMA_SIGMAS + CHROMA_RAMP - distance) / CHROMA_RAMP, 0.0, 1.0) \
        * np.clip((ratio - DARK_RATIO) / DARK_RAMP, 0.0, 1.0)
    # Darker and yellower together: fair hair, in tones that shading alone would not give
    # (shaded skin keeps its hue or turns redder).
    hue = np.degrees(np.arctan2(chroma[..., 1], chroma[..., 0]))
    skin_hue = np.degrees(np.arctan2(skin_chroma[1], skin_chroma[0]))
    skin_like = np.where((ratio < SHADED_RATIO) & (hue > skin_hue + YELLOWER_DEG), 0.0, skin_like)
    skin_like = np.where(ratio > HIGHLIGHT_RATIO, 1.0, skin_like)
    parts = _polygon_mask((h, w), [pts[g][convex_hull(pts[g])] for g in (LEFT_EYE, RIGHT_EYE, LEFT_EYEBROW,
                                                                    RIGHT_EYEBROW, LIPS)])
    occluded = ((skin_like < 0.5) & oval & ~parts).astype(np.uint8)
    k = max(3, int(round(MIN_OCCLUDER_FRACTION * face_width)) | 1)
    occluded = cv2.morphologyEx(occluded, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    occluded = _textured_regions(occluded, lum, oval & ~parts, face_width)
    # Grow into the occluder's fringe (stray hairs) and feather, so nothing of its colour
    # bleeds into what is kept and downstream blends have no hard edge.
    grow = (k // 2) | 1
    occluded = cv2.dilate(occluded, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (grow, grow)))
    soft = cv2.GaussianBlur(occluded.astype(np.float32), (0, 0), k / 4)
    return (1.0 - np.clip(soft, 0.0, 1.0)).astype(np.float32)


def _textured_regions(candidates: np.ndarray, lum: np.ndarray, bare: np.ndarray,
                      face_width: float) -> np.ndarray:
    """Keep the connected regions of ``candidates`` (``[H, W]`` uint8 0/1) that are more
    textured than the rest of the face: hair is made of strands, while a shadow or a coloured
    light changes colour smoothly. Texture = local standard deviation of log luminance
    (``lum``: CIE L*) over :data:`TEXTURE_SCALE` x the face width; a region is kept when its
    median exceeds :data:`TEXTURE_RATIO` x that of the ``bare`` face (``[H, W]`` bool: the
    oval less eyes, brows and lips) outside the candidates."""
    count, labels = cv2.connectedComponents(candidates)
    if count <= 1:
        return candidates
    log_lum = np.log(lum.astype(np.float32) + 2.0)
    sigma = max(1.0, TEXTURE_SCALE * face_width)
    mean = cv2.GaussianBlur(log_lum, (0, 0), sigma)
    texture = np.sqrt(np.maximum(cv2.GaussianBlur(log_lum * log_lum, (0, 0), sigma) - mean * mean, 0.0))
    rest = bare & (candidates == 0)
    if not rest.any():
        return candidates
    threshold = TEXTURE_RATIO * np.median(texture[rest])
    keep = np.zeros(count, bool)
    for label in range(1, count):
        keep[label] = np.median(texture[labels == label]) > threshold
    return keep[labels].astype(np.uint8)


def _polygon_mask(shape: tuple[int, int], polygons: list[np.ndarray]) -> np.ndarray:
    img = Image.new("L", (shape[1], shape[0]), 0)
    draw = ImageDraw.Draw(img)
    for poly in polygons:
        draw.polygon([tuple(p) for p in poly], fill=255)
    return np.asarray(img) > 127


def _seed_mask(shape: tuple[int, int], pts: np.ndarray, radius: float) -> np.ndarray:
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]] + 0.5
    mask = np.zeros(shape, bool)
    for i in SKIN_SEEDS:
        mask |= (xx - pts[i, 0]) ** 2 + (yy - pts[i, 1]) ** 2 < radius * radius
    return mask


def convex_hull(points: np.ndarray) -> np.ndarray:
    """Indices of the convex hull of ``[N, 2]`` points, in order around it."""
    from scipy.spatial import ConvexHull

    return ConvexHull(points).vertices
