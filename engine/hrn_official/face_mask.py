"""Face-region mask of the 224^2 crop from MediaPipe landmarks (replaces ``segment_face.pb``).

The official chain runs a TensorFlow-1 segmentation graph on the 224 crop and uses its
0..1 face alpha as the occlusion mask that multiplies the deformation and displacement maps
(FACTS 1.7, 1.14). We have no TensorFlow, so the mask is the inside of MediaPipe's face oval
(:data:`engine.detect.landmarks.CONTOUR`), drawn antialiased, less what covers the face as told by
colour (:func:`engine.detect.face_region.unoccluded`: hair, glasses frames, dark or coloured
occluders). Unlike a trained segmentation it misses occluders of skin colour, such as a hand;
callers warn the user about that (:data:`REPLACEMENT_WARNING`).
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from ..detect.face_region import unoccluded
from ..detect.landmarks import CONTOUR

#: Supersampling factor of the polygon drawing (antialiased edges like a soft alpha matte).
_SUPERSAMPLE = 4

REPLACEMENT_WARNING = (
    "The face-region mask comes from MediaPipe's face outline and a skin-colour test, not the "
    "official HRN segmentation (TensorFlow): hair and glasses over the face are masked out, but "
    "a hand or anything else of skin colour is not, and fine detail there may be wrong.")


def face_oval_mask(points_crop: np.ndarray, size: int) -> np.ndarray:
    """``[size, size]`` float32 mask in [0, 1], 1 inside the face oval.

    Args:
        points_crop: ``[478, 2]`` MediaPipe landmarks in the crop's pixel-edge coordinates
            (origin top-left, y down), e.g. from :meth:`.align.Crop.photo_to_crop`.
        size: side of the crop in pixels.
    """
    big = Image.new("L", (size * _SUPERSAMPLE, size * _SUPERSAMPLE), 0)
    ImageDraw.Draw(big).polygon([tuple(p) for p in np.asarray(points_crop)[CONTOUR, :2] * _SUPERSAMPLE],
                                fill=255)
    small = big.resize((size, size), resample=Image.BOX)
    return np.asarray(small, np.float32) / 255.0


def face_region_mask(image: np.ndarray, points_crop: np.ndarray) -> np.ndarray:
    """``[S, S]`` float32 face alpha of the crop ``image`` (``[S, S, 3]`` sRGB in [0, 1]):
    :func:`face_oval_mask` times :func:`engine.detect.face_region.unoccluded`."""
    size = image.shape[0]
    return face_oval_mask(points_crop, size) * unoccluded(image, points_crop)
