"""Face-region mask of the 224^2 crop from MediaPipe landmarks (replaces ``segment_face.pb``).

The official chain runs a TensorFlow-1 segmentation graph on the 224 crop and uses its
0..1 face alpha as the occlusion mask that multiplies the deformation and displacement maps
(FACTS 1.7, 1.14). We have no TensorFlow, so the mask is the inside of MediaPipe's face oval
(:data:`engine.landmarks.CONTOUR`), drawn antialiased. Unlike a segmentation it does not cut
out hair, hands or glasses in front of the face; callers warn the user about that
(:data:`REPLACEMENT_WARNING`).
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from ..landmarks import CONTOUR

#: Supersampling factor of the polygon drawing (antialiased edges like a soft alpha matte).
_SUPERSAMPLE = 4

REPLACEMENT_WARNING = (
    "The face-region mask comes from MediaPipe's face outline, not the official HRN "
    "segmentation (TensorFlow), so hair, hands or glasses over the face are not masked out: "
    "fine detail there may be wrong.")


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
