"""The official HRN landmark chain, used instead of MediaPipe when its files are present.

Official ``predict_base`` (FACTS 1.2–1.6), on the working image (:func:`.align.working_image`):

1. RetinaFace (:mod:`.retinaface`) → the highest-scoring face box;
2. the 106-point net, two passes (:mod:`.landmark106`) → five points (eyes, nose, mouth corners);
3. the box regressor (:mod:`.bbox_regressor`) → a 224² crop around the face;
4. S3FD + FAN (:mod:`.s3fd`, :mod:`.fan`) on that crop → 68 points, mapped back to the photo;
5. the official five points from the 68 (:func:`.align.five_from_68`), y flipped up.

Only these five points differ from the MediaPipe route: the crop alignment, the networks and
everything after are the same code. MediaPipe still gives the face oval for the face-region
mask and the 478 landmarks stored with the result. :func:`crop_difference` measures how far
the two routes' crops are apart, reported in the result's metadata.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import ModelFilesError, NoFaceError
from . import layout
from .align import Crop, five_from_68
from .bbox_regressor import BBoxRegressor, crop_for_68, load_bbox_regressor, points_from_crop
from .fan import landmarks68, load_fan
from .landmark106 import five_from_106, landmarks106, load_landmark106
from .retinaface import detect_faces, load_retinaface
from .s3fd import load_s3fd


def available(root: str | Path) -> bool:
    """True when every file of the official chain (:data:`.layout.DETECTOR_KEYS`) is present."""
    return all(layout.find(root, key) is not None for key in layout.DETECTOR_KEYS)


@dataclass
class OfficialDetectors:
    """The official chain's networks, loaded strictly, in eval mode, on ``device``."""

    retinaface: torch.nn.Module
    landmark106: torch.nn.Module
    box_regressor: BBoxRegressor
    s3fd: torch.nn.Module
    fan: torch.nn.Module
    device: torch.device

    @classmethod
    def load(cls, root: str | Path, device: str | torch.device = "cpu") -> "OfficialDetectors":
        """Load the chain from ``root`` (GitHub or ModelScope layout, or torch hub's cache for
        S3FD/FAN).

        Raises:
            ModelFilesError: a file is missing or not the official one (named in the message).
        """
        paths = {}
        for key in layout.DETECTOR_KEYS:
            path = layout.find(root, key)
            if path is None:
                raise ModelFilesError(f"Official detector file '{key}' not found under {root}. "
                                      + layout.where_to_get(key))
            paths[key] = path
        device = torch.device(device)
        nets = {key: load(paths[key]).to(device).eval() for key, load in (
            ("retinaface", load_retinaface), ("landmark106", load_landmark106), ("s3fd", load_s3fd),
            ("fan", load_fan))}
        return cls(nets["retinaface"], nets["landmark106"], load_bbox_regressor(paths["bbreg"]),
                   nets["s3fd"], nets["fan"], device)

    @torch.no_grad()
    def five_points(self, image: np.ndarray) -> np.ndarray:
        """The official alignment points of the most confident face.

        Args:
            image: ``[H, W, 3]`` uint8 RGB working image (:func:`.align.working_image`).

        Returns:
            ``[5, 2]`` float64 (eyeL, eyeR, nose, mouthL, mouthR), OpenCV pixel-index
            coordinates, **y up** (y_up = H - 1 - y), as :func:`.align.align_crop` takes them.

        Raises:
            NoFaceError: RetinaFace finds no face, or S3FD none in the 68-point crop.
        """
        boxes = detect_faces(self.retinaface, image, self.device)
        if len(boxes) == 0:
            raise NoFaceError("The official face detector (RetinaFace) found no face in the photo.")
        five = five_from_106(landmarks106(self.landmark106, image, boxes[0, :4], self.device))
        crop = crop_for_68(image, five, self.box_regressor)
        points = landmarks68(self.s3fd, self.fan, crop.image, self.device)
        if points is None:
            raise NoFaceError("The official 68-point detector (S3FD + FAN) found no face in its "
                              "crop of the photo.")
        five = five_from_68(points_from_crop(points, crop.scale, crop.origin))
        five[:, 1] = image.shape[0] - 1 - five[:, 1]
        return five


def crop_difference(a: Crop, b: Crop) -> float:
    """How far apart two aligned crops of the same photo are: the largest displacement, in
    pixels of crop ``a``, of ``a``'s four corners when mapped through the photo into ``b``.

    0 means the same framing; 224-crop pixels are about 1 mm on a face.
    """
    if a.size != b.size:
        raise ValueError(f"crop_difference compares crops of one size, got {a.size} and {b.size}")
    corners = np.array([[0.0, 0.0], [a.size, 0.0], [0.0, a.size], [a.size, a.size]])
    # Both crops come from the same photo: any photo size gives the same answer.
    photo = (1000, 1000)
    in_b = b.photo_to_crop(a.crop_to_photo(corners, photo), photo)
    return float(np.linalg.norm(in_b - corners, axis=1).max())
