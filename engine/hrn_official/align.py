"""The official 5-point similarity alignment to the 224^2 network crop and the 512^2 HD crop.

FACTS 1.6 (Deep3D ``util/preprocess.py``): five 2D points (eyeL, eyeR, nose, mouthL,
mouthR; "L" = image left = the subject's right) are fitted to the same five points of the 3D
template ``similarity_Lm3D_all.mat`` with a linear affine least squares ("POS"):
x ~ k0 X + k1 Y + k2 Z + k3, y ~ k4 X + k5 Y + k6 Z + k7, s = (|k0..2| + |k4..6|) / 2,
t = (k3, k7). For a crop of side S the photo is scaled by s' = (102 S / 224) / s with PIL
bicubic to (w, h) = (int(w0 s'), int(h0 s')) and an S x S window is cut at
left = int(w/2 - S/2 + (tx - w0/2) s'), top = int(h/2 - S/2 + (h0/2 - ty) s').
All 2D landmark maths is **y-up** in OpenCV pixel-index coordinates (pixel centres at
integers), y_up = H - 1 - y.

Our landmarks (:mod:`engine.detect.landmarks`) are MediaPipe's 478 points with pixel centres at
integer + 0.5, y down; :func:`five_points_from_mediapipe` converts them. The mapping (the
official pipeline gets the points from FAN's 68 landmarks 37/40, 43/46, 31, 49, 55, 1-based):

* eye centres: the mean of the two eye corners, found as the two most distant points of
  MediaPipe's eye outline (``LEFT_EYE``/``RIGHT_EYE`` connection groups), as FAN's 37/40
  and 43/46 are the eye corners. eyeL = the subject's right eye (``RIGHT_EYE``);
* nose: MediaPipe index 1, the nose-tip vertex of its canonical face model (FAN 31 is the
  nose tip);
* mouth corners: the two most distant points of the ``LIPS`` group; mouthL is the one
  nearer the subject's right eye.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..detect import landmarks as mp_landmarks
from ..errors import ModelFilesError
from . import layout

#: Similarity scale the crop normalises the face to, at S = 224 (FACTS 1.6).
RESCALE_224 = 102.0
#: Photos with a side over MAX_SIDE px are resized to a long side of RESIZED_LONG_SIDE px
#: before alignment (official ``predict_base``).
MAX_SIDE, RESIZED_LONG_SIDE = 2000, 1500
#: MediaPipe Face Mesh index of the nose tip (canonical face model vertex 1).
MEDIAPIPE_NOSE_TIP = 1
# 1-based indices in the 68-point scheme: eye corners (37, 40), (43, 46), nose 31, mouth 49, 55.
_LM68_EYE_L, _LM68_EYE_R, _LM68_NOSE, _LM68_MOUTH = (37, 40), (43, 46), 31, (49, 55)


def five_from_68(points68: np.ndarray) -> np.ndarray:
    """``[68, D]`` landmarks -> ``[5, D]`` (eyeL, eyeR, nose, mouthL, mouthR), FACTS 1.6."""
    p = np.asarray(points68, dtype=np.float64)
    at = lambda i: p[i - 1]  # noqa: E731  (the scheme is 1-based)
    return np.stack([(at(_LM68_EYE_L[0]) + at(_LM68_EYE_L[1])) / 2,
                     (at(_LM68_EYE_R[0]) + at(_LM68_EYE_R[1])) / 2,
                     at(_LM68_NOSE), at(_LM68_MOUTH[0]), at(_LM68_MOUTH[1])])


def load_template(path: str | Path) -> np.ndarray:
    """``similarity_Lm3D_all.mat`` -> ``[5, 3]`` float64 template points (order as above)."""
    from scipy.io import loadmat

    path = Path(path)
    if not path.is_file():
        raise ModelFilesError(f"Landmark template not found: {path}. {layout.where_to_get('lm3d')}")
    try:
        lm = np.asarray(loadmat(str(path))["lm"])
    except Exception as err:  # scipy: ValueError, KeyError, MatReadError, ...
        raise ModelFilesError(f"{path} is truncated or lacks field 'lm' ({err}). "
                              f"{layout.where_to_get('lm3d')}") from err
    if lm.shape != (68, 3):
        raise ModelFilesError(f"{path}: field 'lm' expected shape (68, 3), found {lm.shape}.")
    return five_from_68(lm)


def five_points_from_mediapipe(points: np.ndarray, image_height: int) -> np.ndarray:
    """MediaPipe ``[478, 2|3]`` points (centres at +0.5, y down) -> official ``[5, 2]``
    float64 points (pixel-index coordinates, y up), see the module docstring."""
    xy = np.asarray(points, dtype=np.float64)[:, :2] - 0.5
    eye_r = _corner_pair(xy, mp_landmarks.RIGHT_EYE).mean(0)   # subject's right = image left
    eye_l = _corner_pair(xy, mp_landmarks.LEFT_EYE).mean(0)
    mouth = _corner_pair(xy, mp_landmarks.LIPS)
    near_right = np.argmin(np.linalg.norm(mouth - eye_r, axis=1))
    five = np.stack([eye_r, eye_l, xy[MEDIAPIPE_NOSE_TIP], mouth[near_right], mouth[1 - near_right]])
    five[:, 1] = image_height - 1 - five[:, 1]
    return five


def _corner_pair(xy: np.ndarray, group: np.ndarray) -> np.ndarray:
    """The two most distant points ``[2, 2]`` of a landmark group (the corners of an eye or
    the mouth)."""
    pts = xy[group]
    dist = np.linalg.norm(pts[:, None] - pts[None], axis=-1)
    i, j = np.unravel_index(np.argmax(dist), dist.shape)
    return pts[[i, j]]


def fit_similarity(points2d: np.ndarray, template3d: np.ndarray) -> tuple[np.ndarray, float]:
    """POS fit: ``([2] translation t, scale s)`` with 2D ~ s * (first two rows of an affine
    map of the 3D template) + t, from ``[K, 2]`` y-up points and ``[K, 3]`` template."""
    k = len(points2d)
    a = np.zeros((2 * k, 8))
    a[0::2, 0:3], a[0::2, 3] = template3d, 1.0
    a[1::2, 4:7], a[1::2, 7] = template3d, 1.0
    b = np.asarray(points2d, dtype=np.float64).reshape(-1)
    sol = np.linalg.lstsq(a, b, rcond=None)[0]
    scale = (np.linalg.norm(sol[0:3]) + np.linalg.norm(sol[4:7])) / 2.0
    return np.array([sol[3], sol[7]]), float(scale)


@dataclass(frozen=True)
class Crop:
    """One aligned square crop of the photo and how it maps back."""

    image: np.ndarray
    """``[S, S, 3]`` float32 RGB in [0, 1], row 0 at the top (black outside the photo)."""
    size: int
    """S."""
    scale: float
    """s' = (102 S / 224) / s: photo -> crop scale as the official code computes it."""
    resized: tuple[int, int]
    """(w, h) the whole photo was resized to before cropping."""
    offset: tuple[int, int]
    """(left, top) of the crop window in the resized photo, pixels, y down."""
    landmarks: np.ndarray
    """``[5, 2]`` float64 five points in crop pixels (official transform; y up)."""

    def photo_to_crop(self, xy_down: np.ndarray, photo_size: tuple[int, int]) -> np.ndarray:
        """Photo pixel-edge coordinates ``[..., 2]`` (origin top-left, y down) -> crop
        pixel-edge coordinates; the inverse of :meth:`crop_to_photo`."""
        w0, h0 = photo_size
        xy = np.asarray(xy_down, dtype=np.float64)
        return np.stack([xy[..., 0] * self.resized[0] / w0 - self.offset[0],
                         xy[..., 1] * self.resized[1] / h0 - self.offset[1]], -1)

    def crop_to_photo(self, xy_down: np.ndarray, photo_size: tuple[int, int]) -> np.ndarray:
        """Crop pixel-edge coordinates ``[..., 2]`` (origin top-left, y down) -> photo pixel-edge
        coordinates, using PIL's exact resize factors (w/w0, h/h0)."""
        w0, h0 = photo_size
        fx, fy = self.resized[0] / w0, self.resized[1] / h0
        xy = np.asarray(xy_down, dtype=np.float64)
        return np.stack([(xy[..., 0] + self.offset[0]) / fx, (xy[..., 1] + self.offset[1]) / fy], -1)


def working_image(rgb_u8: np.ndarray) -> np.ndarray:
    """The image the official chain aligns (FACTS 1.1): photos with a side over
    :data:`MAX_SIDE` px are first resized (OpenCV bicubic) so their long side is
    :data:`RESIZED_LONG_SIDE` px, the short side truncated; others are returned as they are."""
    h, w = rgb_u8.shape[:2]
    if max(h, w) <= MAX_SIDE:
        return rgb_u8
    import cv2  # installed with mediapipe

    scale = RESIZED_LONG_SIDE / max(h, w)
    size = (int(w * scale), RESIZED_LONG_SIDE) if h > w else (RESIZED_LONG_SIDE, int(h * scale))
    return cv2.resize(rgb_u8, size, interpolation=cv2.INTER_CUBIC)


def align_crop(rgb_u8: np.ndarray, five: np.ndarray, template5: np.ndarray, size: int) -> Crop:
    """Cut the aligned ``size`` crop from a ``[H, W, 3]`` uint8 photo (FACTS 1.6).

    Args:
        rgb_u8: the photo, uint8 RGB, row 0 at the top.
        five: ``[5, 2]`` y-up pixel-index points of the photo (:func:`five_points_from_mediapipe`).
        template5: ``[5, 3]`` template (:func:`load_template`).
        size: S (224 for the network, 512 for the HD texture crop).
    """
    h0, w0 = rgb_u8.shape[:2]
    t, s = fit_similarity(five, template5)
    scale = (RESCALE_224 * size / 224.0) / s
    w, h = int(w0 * scale), int(h0 * scale)
    left = int(w / 2 - size / 2 + (t[0] - w0 / 2) * scale)
    top = int(h / 2 - size / 2 + (h0 / 2 - t[1]) * scale)
    resized = Image.fromarray(rgb_u8).resize((w, h), resample=Image.BICUBIC)
    window = np.asarray(resized.crop((left, top, left + size, top + size)), dtype=np.float32) / 255.0
    lm = (five - t + np.array([w0 / 2, h0 / 2])) * scale - np.array([w / 2 - size / 2, h / 2 - size / 2])
    return Crop(window, size, scale, (w, h), (left, top), lm)
