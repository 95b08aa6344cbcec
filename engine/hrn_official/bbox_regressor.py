"""The official 5-point -> box regressor (``util/BBRegressorParam_r.mat``) and the 224^2 crop
it makes for the 68-point detector.

FACTS 1.4, 1.5; source: youngLBW/HRN ``util/preprocess.py`` (``BBRegression``,
``img_padding``, ``crop``, ``align_for_lm``) and ``models/hrn.py::prepare_data``.

Coordinates: the five points (eyeL, eyeR, nose, mouthL, mouthR, from
:func:`.landmark106.five_from_106`) are OpenCV pixel-index photo coordinates with **y down**,
exactly as the 106-point stage returns them; the official code flips y to y-up only later,
for the similarity alignment (``read_data``). The crop origin and
:func:`points_from_crop` use the same y-down frame.

Regressor: with p̄ the mean of the five points and r = sqrt(sum |p - p̄|^2 / 5),
x = ((p - p̄) / r) flattened as (x0, y0, x1, y1, ...), h = tanh(W1 x + B1),
o = W2 h + B2; box = (o0 r + p̄x, o1 r + p̄y, side = 224 r / o2), each rounded half-to-even
(``np.round``) to an integer.

Crop: the photo is placed in a zero canvas of twice its size at offset (W // 2, H // 2), the
box (shifted by that offset) is sliced out (numpy slicing: a box running past the canvas'
right/bottom edge gives a shorter slice, which is still resized to 224^2, as officially) and
resized to 224^2 with OpenCV bicubic. Scale s = 224 / side. A shifted box starting at a
negative coordinate is the official failure case (scale 0) and raises here.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from ..errors import ModelFilesError, NoFaceError
from . import layout

#: Side of the crop the 68-point detector gets, pixels.
CROP_SIZE = 224
#: Field name -> shape of ``BBRegressorParam_r.mat``.
FIELDS = {"W1": (200, 10), "B1": (200, 1), "W2": (3, 200), "B2": (3, 1)}


@dataclass(frozen=True)
class BBoxRegressor:
    """The regressor's weights, float64 as MATLAB stores them."""

    w1: np.ndarray
    """``[200, 10]``."""
    b1: np.ndarray
    """``[200, 1]``."""
    w2: np.ndarray
    """``[3, 200]``."""
    b2: np.ndarray
    """``[3, 1]``."""


class Crop68(NamedTuple):
    """The 224^2 crop for the 68-point detector and how it maps back."""

    image: np.ndarray
    """``[224, 224, 3]`` uint8, same channel order as the photo given; zeros outside it."""
    scale: float
    """s = 224 / box side: photo pixels -> crop pixels."""
    origin: tuple[int, int]
    """(x, y) integer photo coordinates (y down) of the box's top-left corner."""


def load_bbox_regressor(path: str | Path) -> BBoxRegressor:
    """Read ``BBRegressorParam_r.mat``.

    Raises:
        ModelFilesError: missing or unreadable file, or a field (named) missing or of the
            wrong shape.
    """
    from scipy.io import loadmat

    path = Path(path)
    if not path.is_file():
        raise ModelFilesError(f"Box regressor file not found: {path}. {layout.where_to_get('bbreg')}")
    try:
        mat = loadmat(str(path))
    except Exception as err:  # scipy raises ValueError, MatReadError, OSError, ...
        raise ModelFilesError(f"{path} is truncated or not a MATLAB file ({err}). "
                              f"{layout.where_to_get('bbreg')}") from err
    arrays = {}
    for name, shape in FIELDS.items():
        if name not in mat:
            raise ModelFilesError(f"{path} lacks field '{name}'. {layout.where_to_get('bbreg')}")
        value = np.asarray(mat[name], dtype=np.float64)
        if value.shape != shape:
            raise ModelFilesError(f"{path}: field '{name}' expected shape {shape}, found {value.shape}.")
        arrays[name.lower()] = value
    return BBoxRegressor(**arrays)


def regress_box(five: np.ndarray, params: BBoxRegressor) -> tuple[float, float, float]:
    """Official ``BBRegression``: ``[5, 2]`` y-down points -> unrounded (x, y, side) pixels.

    Raises:
        NoFaceError: the five points coincide (zero RMS radius).
    """
    pts = np.asarray(five, dtype=np.float64).reshape(5, 2)
    mean = pts.mean(0)
    centred = pts - mean
    radius = np.sqrt(np.sum(centred ** 2) / 5)
    if not radius > 0:
        raise NoFaceError("The five face landmarks are degenerate (coincident points); "
                          "the official 68-point crop cannot be placed.")
    hidden = np.tanh(params.w1 @ (centred / radius).reshape(10, 1) + params.b1)
    out = (params.w2 @ hidden + params.b2)[:, 0]
    with np.errstate(divide="ignore"):      # o2 = 0 gives an infinite side; callers check
        side = CROP_SIZE / out[2] * radius
    return float(out[0] * radius + mean[0]), float(out[1] * radius + mean[1]), float(side)


def crop_for_68(image: np.ndarray, five: np.ndarray, params: BBoxRegressor) -> Crop68:
    """Official ``align_for_lm``: the 224^2 crop for the 68-point detector.

    Args:
        image: ``[H, W, 3]`` uint8 photo (any channel order; the crop keeps it).
        five: ``[5, 2]`` (eyeL, eyeR, nose, mouthL, mouthR), pixel-index coords, y down.
        params: from :func:`load_bbox_regressor`.

    Raises:
        NoFaceError: degenerate points, or a box reaching more than half the photo's size
            beyond its left or top edge (the official failure case).
    """
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an [H, W, 3] uint8 image, got {image.dtype} {image.shape}")
    box = np.array(regress_box(five, params))
    if not np.all(np.isfinite(box)):
        raise NoFaceError("The official box regressor gave no usable box for these landmarks "
                          f"(x, y, side = {box.tolist()}).")
    x, y, side = (int(v) for v in np.round(box))
    height, width = image.shape[:2]
    cx, cy = x + width // 2, y + height // 2
    if cx < 0 or cy < 0 or side <= 0 or cx >= 2 * width or cy >= 2 * height:
        raise NoFaceError(
            f"The face is too far outside the photo for the official 68-point crop (box at "
            f"x={x}, y={y}, side {side} in a {width}x{height} photo). Use a photo with the "
            "whole face inside it.")
    canvas = np.zeros((2 * height, 2 * width, 3), dtype=np.uint8)
    canvas[height // 2:height // 2 + height, width // 2:width // 2 + width] = image
    crop = cv2.resize(canvas[cy:cy + side, cx:cx + side], (CROP_SIZE, CROP_SIZE),
                      interpolation=cv2.INTER_CUBIC)
    return Crop68(crop, CROP_SIZE / side, (x, y))


def points_from_crop(points_crop: np.ndarray, scale: float, origin: tuple[int, int]) -> np.ndarray:
    """Crop points ``[N, >=2]`` (x, y first) -> ``[N, 2]`` float64 photo pixels, y down:
    p / scale + origin (official ``prepare_data``; extra columns such as FAN's z dropped)."""
    pts = np.asarray(points_crop, dtype=np.float64)[:, :2]
    return pts / scale + np.asarray(origin, dtype=np.float64)
