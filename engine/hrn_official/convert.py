"""From the official HRN frame and units to ours (:mod:`engine.conventions`).

Model frame: the official canonical BFM frame has x to the viewer's right (the subject's
left), y up and z out of the face towards the camera, the axes of our model space; only the
unit differs (decimetres -> metres, x :data:`DM_TO_M`).

Camera: the official world frame is our camera frame shifted by the camera position
(0, 0, 10) dm, so a posed point R v + t (dm) is at 0.1 (R v + t - (0, 0, 10)) m in camera
space: ``Camera.rotation = R``, ``Camera.translation = 0.1 (t - (0, 0, 10))``.

Pixels: the official 224-crop projection (u, v_up) = f (X, Y) / (10 - Z) + 112 is in
pixel-index coordinates (pixel centres at integers) with v measured upwards, the convention
of its landmarks and of its texture unwrap (FACTS 1.6, 1.13): crop row index = 223 - v_up.
In pixel-edge coordinates, y down, that is (u + 0.5, 223.5 - v_up). The crop is a window of
the photo resized by (w / W, h / H) (PIL, pixel edges map linearly), so a crop point maps to
the photo by ``(x + left) W / w, (y + top) H / h``. The two factors differ by the integer
truncation of (w, h) (at most one resized pixel over the photo); our pinhole camera has one
focal length, so it uses their mean: projections differ from the official ones by at most
|W/w - H/h| / 2 times the distance (224-crop px) from the crop centre, a fraction of a pixel
over the face (tests measure it).
"""
from __future__ import annotations

import numpy as np
import torch

from ..result import Camera
from . import bfm
from .align import Crop

#: Official shape unit (decimetre) in metres.
DM_TO_M = 0.1


def to_metres(values: torch.Tensor) -> np.ndarray:
    """Official decimetre tensor -> float32 numpy array in metres (our model axes)."""
    return (values.detach().to("cpu", torch.float64) * DM_TO_M).numpy().astype(np.float32)


def _photo_per_crop_px(crop: Crop, photo_size: tuple[int, int]) -> tuple[float, float]:
    """Photo pixels per resized-image pixel along x and y."""
    return photo_size[0] / crop.resized[0], photo_size[1] / crop.resized[1]


def crop224_to_photo(u_vup: np.ndarray, crop: Crop, photo_size: tuple[int, int]) -> np.ndarray:
    """Official 224-crop projections ``[..., 2]`` (u, v_up) -> photo pixel-edge coordinates
    ``[..., 2]`` (x right, y down), exactly as the official crop maps them (see the module
    docstring). ``photo_size`` is (W, H) of the photo the crop was cut from, any resize of
    the official chain included, i.e. the full-resolution photo."""
    u_vup = np.asarray(u_vup, np.float64)
    kx, ky = _photo_per_crop_px(crop, photo_size)
    x = u_vup[..., 0] + 0.5 + crop.offset[0]
    y = crop.size - 0.5 - u_vup[..., 1] + crop.offset[1]
    return np.stack([x * kx, y * ky], -1)


def photo_camera(rotation: torch.Tensor, translation: torch.Tensor, crop: Crop,
                 photo_size: tuple[int, int]) -> Camera:
    """Our :class:`Camera` of the photo from the official pose.

    Args:
        rotation: ``[3, 3]`` official R (v' = R v + t).
        translation: ``[3]`` official t, decimetres.
        crop: the **224** network crop the pose was predicted on.
        photo_size: (W, H) of the full-resolution photo.
    """
    if crop.size != bfm.CROP_224:
        raise ValueError(f"photo_camera needs the {bfm.CROP_224} network crop, got a {crop.size} crop")
    kx, ky = _photo_per_crop_px(crop, photo_size)
    t = translation.detach().to("cpu", torch.float64).numpy() - np.array([0.0, 0.0, bfm.CAMERA_DISTANCE])
    centre = crop224_to_photo(np.array([crop.size / 2.0, crop.size / 2.0]), crop, photo_size)
    return Camera(rotation=rotation.detach().to("cpu", torch.float64).numpy(),
                  translation=t * DM_TO_M,
                  focal_px=float(bfm.FOCAL_224 * (kx + ky) / 2.0),
                  principal_px=(float(centre[0]), float(centre[1])),
                  image_size=(int(photo_size[0]), int(photo_size[1])))
