"""The official 68-point landmarks: FAN as packaged by ``face-alignment`` (FACTS 1.5, 2.7).

HRN calls ``FaceAlignment(LandmarksType._3D, flip_input=False).get_landmarks_from_image(crop)[0]``
on its 224² RGB crop and keeps only x and y (``landmark[:, :2]`` in ``models/hrn.py``). In
3D mode the package runs the ``3DFAN4`` network for x, y and a separate depth network only
to append a z column, so the depth file is not needed here. This module repeats the
package's steps (its 1.3 releases, whose API has the ``LandmarksType._3D`` HRN uses)
without the package:

1. :func:`engine.hrn_official.s3fd.detect_s3fd` finds the faces; the first (best) is used.
2. From its box ``(x0, y0, x1, y1)``: centre ``((x0+x1)/2, (y0+y1)/2 − 0.12·(y1−y0))``
   (kept in float32, as the package stores it in a float32 tensor), scale
   ``((x1−x0) + (y1−y0)) / 195``; the face window has side ``h = 200·scale`` px.
3. The window is cut with the package's integer corners (zero outside the photo) and resized
   to 256² (OpenCV bilinear); the network gets ``[1, 3, 256, 256]`` RGB in [0, 1].
4. Each of the 68 ``64×64`` heatmaps gives its argmax cell (column c, row r), moved 0.25
   cell towards the larger neighbour on each axis (not on the border cells), then the cell
   centre: ``p = (c, r) + 0.5 ± 0.25``.
5. Back to the photo: ``x = c_x + h·(p/64 − 0.5)`` (same for y), **truncated toward zero
   to an integer**, exactly as the package returns them.

Coordinates are in the photo's pixel frame of the package: top-left origin, y down; with the
truncation they are whole numbers, about half a pixel from pixel-centre indices. They are
returned as the package gives them, because HRN consumed them that way.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..errors import ModelFilesError
from . import layout
from .s3fd import detect_s3fd

#: ``face-alignment``'s S3FD ``reference_scale``: box width + height over this is the scale.
REFERENCE_SCALE = 195.0
#: The window centre sits this fraction of the box height above the box centre.
CENTER_SHIFT = 0.12
#: Side of the network input, pixels.
INPUT_SIZE = 256
#: Side of each output heatmap, cells.
HEATMAP_SIZE = 64
#: Number of landmarks (iBUG 68 order).
N_POINTS = 68

_FAN_HELP = ("It is the 3DFAN4 TorchScript archive of the face-alignment package "
             "('3DFAN4-4a694010b9.zip', or '3DFAN4_1.6-ec5cf40a1d.zip' for torch 1.6).")


def load_fan(path: str | Path) -> torch.jit.ScriptModule:
    """Load the 3DFAN4 TorchScript archive onto the CPU, eval mode, and check its outputs.

    Raises:
        ModelFilesError: missing, truncated or non-TorchScript file, or a network that does
            not map ``[1, 3, 256, 256]`` to one ``[1, 68, 64, 64]`` heatmap tensor.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFilesError(f"Model file not found: {path}. {layout.where_to_get('fan')}")
    try:
        with warnings.catch_warnings():
            # Torch flags TorchScript as deprecated; the official file is TorchScript.
            warnings.simplefilter("ignore", DeprecationWarning)
            fan = torch.jit.load(str(path), map_location="cpu")
    except (RuntimeError, ValueError, OSError) as err:
        first = str(err).splitlines()[0] if str(err) else err.__class__.__name__
        raise ModelFilesError(
            f"{path} ({path.stat().st_size} bytes) is truncated, corrupt or not a TorchScript "
            f"archive ({first}). Download it again. {layout.where_to_get('fan')}") from err
    fan.eval()
    try:
        with torch.no_grad():
            out = fan(torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE))
    except Exception as err:  # any failure of foreign TorchScript code means a wrong file
        raise ModelFilesError(f"{path} is a TorchScript archive but does not run on a "
                              f"[1, 3, {INPUT_SIZE}, {INPUT_SIZE}] image ({err.__class__.__name__}: "
                              f"{str(err).splitlines()[0] if str(err) else ''}). {_FAN_HELP}") from err
    expected = (1, N_POINTS, HEATMAP_SIZE, HEATMAP_SIZE)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != expected:
        found = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ModelFilesError(f"{path} returns {found} for a [1, 3, {INPUT_SIZE}, {INPUT_SIZE}] "
                              f"image; the 3DFAN4 network returns heatmaps {expected}. {_FAN_HELP}")
    return fan


def window(box: np.ndarray) -> tuple[np.ndarray, float]:
    """The package's face window for a detector box.

    Args:
        box: ``(x0, y0, x1, y1[, score])`` photo pixels.

    Returns:
        ``(center, scale)``: ``[2]`` float32 centre (px) and the float scale (window side
        ``200·scale`` px).
    """
    x0, y0, x1, y1 = (float(v) for v in box[:4])
    center = np.array([x1 - (x1 - x0) / 2.0, y1 - (y1 - y0) / 2.0], np.float32)
    center[1] = center[1] - (y1 - y0) * CENTER_SHIFT
    return center, ((x1 - x0) + (y1 - y0)) / REFERENCE_SCALE


def _crop_corner(point: float, center: np.ndarray, scale: float) -> np.ndarray:
    """Photo pixel of the 256-crop point ``(point, point)``, truncated to int, computed in
    float32 with an explicit matrix inverse as the package's ``transform(..., invert=True)``
    does, so the crop corners match it to the pixel."""
    h = 200.0 * scale
    c = torch.from_numpy(center)
    t = torch.eye(3)
    t[0, 0] = t[1, 1] = INPUT_SIZE / h
    t[0, 2] = INPUT_SIZE * (-c[0] / h + 0.5)
    t[1, 2] = INPUT_SIZE * (-c[1] / h + 0.5)
    p = torch.tensor([point, point, 1.0])
    return (torch.linalg.inv(t) @ p)[:2].int().numpy()


def crop(rgb: np.ndarray, center: np.ndarray, scale: float) -> np.ndarray:
    """The 256² network input window: ``[256, 256, 3]`` uint8, black outside the photo.

    The window covers photo columns ``[ul_x, br_x)`` and rows ``[ul_y, br_y)``, the corners
    being the photo points of crop points (1, 1) and (256, 256) truncated toward zero; it
    is resized with OpenCV bilinear interpolation.
    """
    import cv2  # installed with mediapipe

    ul, br = _crop_corner(1.0, center, scale), _crop_corner(float(INPUT_SIZE), center, scale)
    out = np.zeros((br[1] - ul[1], br[0] - ul[0], rgb.shape[2]), np.uint8)
    x0, y0 = max(ul[0], 0), max(ul[1], 0)
    x1, y1 = min(br[0], rgb.shape[1]), min(br[1], rgb.shape[0])
    if x1 > x0 and y1 > y0:
        out[y0 - ul[1]:y1 - ul[1], x0 - ul[0]:x1 - ul[0]] = rgb[y0:y1, x0:x1]
    return cv2.resize(out, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_LINEAR)


def heatmap_points(heatmaps: np.ndarray) -> np.ndarray:
    """Sub-cell peak of each heatmap.

    Args:
        heatmaps: ``[N, 64, 64]`` float.

    Returns:
        ``[N, 2]`` float32 ``(x, y)`` in heatmap cells, cell c spanning ``[c, c+1)``: argmax
        cell centre, plus ±0.25 towards the larger neighbour per axis (0 when the neighbours
        are equal; no shift for peaks on the border cells).
    """
    n, rows, cols = heatmaps.shape
    flat = heatmaps.reshape(n, rows * cols).argmax(axis=1)
    r, c = flat // cols, flat % cols
    pts = np.stack([c, r], axis=1).astype(np.float32) + 0.5
    inner = (c > 0) & (c < cols - 1) & (r > 0) & (r < rows - 1)
    i, ri, ci = np.nonzero(inner)[0], r[inner], c[inner]
    dx = heatmaps[i, ri, ci + 1] - heatmaps[i, ri, ci - 1]
    dy = heatmaps[i, ri + 1, ci] - heatmaps[i, ri - 1, ci]
    pts[i] += np.sign(np.stack([dx, dy], axis=1)).astype(np.float32) * 0.25
    return pts


def to_photo(points: np.ndarray, center: np.ndarray, scale: float) -> np.ndarray:
    """Heatmap points → photo pixels: ``c + 200·scale·(p/64 − 0.5)``, truncated toward zero
    (the package's ``transform_np(..., invert=True)``, float64 pseudo-inverse).

    Returns:
        ``[N, 2]`` float64 whole numbers.
    """
    h = 200.0 * scale
    t = np.eye(3)
    t[0, 0] = t[1, 1] = HEATMAP_SIZE / h
    t[:2, 2] = HEATMAP_SIZE * (-center.astype(np.float64) / h + 0.5)
    homog = np.concatenate([points.astype(np.float64), np.ones((len(points), 1))], axis=1)
    return (homog @ np.linalg.pinv(t).T)[:, :2].astype(np.int32).astype(np.float64)


@torch.no_grad()
def fan_landmarks(fan: torch.nn.Module, rgb: np.ndarray, box: np.ndarray,
                  device: str | torch.device) -> np.ndarray:
    """68 landmarks of the face in ``box``, as ``face-alignment`` computes them.

    Args:
        fan: the 3DFAN4 network (:func:`load_fan`), already on ``device``.
        rgb: ``[H, W, 3]`` uint8 RGB photo.
        box: ``(x0, y0, x1, y1[, score])`` detector box, photo pixels.
        device: where to run the network.

    Returns:
        ``[68, 2]`` float64 ``(x, y)`` photo pixels in the package's convention (module doc):
        top-left origin, y down, whole numbers.
    """
    center, scale = window(np.asarray(box, np.float64))
    inp = torch.from_numpy(crop(rgb, center, scale).transpose(2, 0, 1).copy())
    inp = (inp.to(device=device, dtype=torch.float32) / 255.0)[None]
    heatmaps = fan(inp)[0].to(device="cpu", dtype=torch.float32).numpy()
    return to_photo(heatmap_points(heatmaps), center, scale)


def landmarks68(s3fd: torch.nn.Module, fan: torch.nn.Module, rgb: np.ndarray,
                device: str | torch.device) -> Optional[np.ndarray]:
    """The official 68-point step on one image (HRN gives it its 224² crop).

    Returns:
        ``[68, 2]`` float64 photo pixels (:func:`fan_landmarks`) of the first face S3FD
        finds (highest score), or None when it finds none.
    """
    faces = detect_s3fd(s3fd, rgb, device, dtype=np.float64)
    if len(faces) == 0:
        return None
    return fan_landmarks(fan, rgb, faces[0], device)
