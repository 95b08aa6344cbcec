"""The official 106-point landmark network (``large_base_net.pth``) and its two-pass crop.

FACTS 1.3, 2.4 and quirks 4, 5, 9; source: youngLBW/HRN ``facelandmark/nets/
large_base_lmks_net.py`` (network), ``facelandmark/large_base_lmks_infer.py`` (checkpoint
and normalisation), ``facelandmark/large_model_infer.py::LargeModelInfer.infer`` (crops).

Network: MobileNet-v2-like, 224^2 input -> 106 heatmaps of 14 x 14 -> soft-argmax ->
``[B, 212]`` interleaved (x0, y0, x1, y1, ...) in [0, 1) of the crop. Quirk kept on purpose:
the "x" output is the expected heatmap ROW index / 14 and "y" the expected COLUMN index / 14
(``torch.meshgrid`` with matrix indexing); the net was trained that way, so the values are
used as (x, y) = (column, row) of the crop.

Crop (each pass): square of side 1.35 * max(w, h), w = x2 - x1 + 1, h = y2 - y1 + 1,
centred on ((x1 + x2) / 2, (y1 + y2) / 2); the part inside the photo is cut at the truncated
(``int``) float bounds, the outside padded with the colour (103.94, 116.78, 123.68) (which
OpenCV rounds to (104, 117, 124) on uint8), and resized to 224^2 with ``cv2.resize``'s
default, **bilinear** (``INTER_LINEAR``; the official call passes no interpolation, so the
"cubic" of quirk 9 applies only to the 68-point crop). The network input is
(crop - (103.94, 116.78, 123.68)) / 255 on the **RGB** crop (BGR-style means on RGB, quirk 5).
Points map back as p * side / 224 + (unrounded crop corner). Pass 2 repeats this on the
bounding box of the pass-1 points.

Coordinates in and out: OpenCV pixel-index photo coordinates, x = column, y = row, **y
down**, origin at the top-left pixel (the official frame; pixel centres at integers up to
the official crop's sub-pixel truncation). These are what the official chain feeds to the
5-point box regressor (:mod:`.bbox_regressor`) unchanged.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import cv2
import numpy as np
import torch
from torch import nn

from ..errors import ModelFilesError, NoFaceError
from . import layout
from .checkpoint import build_empty, load_strict, read_pth

#: Side of the network input, pixels.
INPUT_SIZE = 224
#: Crop side / max(box width, box height).
ENLARGE_RATIO = 1.35
#: Per-channel value subtracted before /255, applied to R, G, B in that order (quirk 5);
#: also the padding colour outside the photo.
PIXEL_MEAN = (103.94, 116.78, 123.68)
#: Indices into the 106 points of (eyeL, eyeR, nose, mouthL, mouthR) as the official
#: ``models/hrn.py::predict_base`` takes them for the box regressor.
FIVE_POINT_INDICES = (74, 83, 54, 84, 90)
NUM_POINTS = 106
_PREFIX = "module."

# (in, out, stride, residual, expansion) of block2..block17 (``LargeBaseLmksNet.__init__``).
_INVERTED_RESIDUALS = (
    (64, 64, 1, False, 2),
    (64, 64, 2, False, 2),
    *[(64, 64, 1, True, 2)] * 4,                 # block4..7
    (64, 128, 2, False, 2),
    (128, 128, 1, False, 4),
    *[(128, 128, 1, True, 4)] * 5,               # block10..14
    (128, 128, 1, False, 2),
    (128, 128, 2, False, 2),
    (128, 128, 1, False, 2),
)


def _conv_bn_prelu(in_ch: int, out_ch: int, stride: int) -> nn.Sequential:
    """3x3 conv (no bias) + BN + PReLU: keys ``.0.weight``, ``.1.*``, ``.2.weight``."""
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False),
                         nn.BatchNorm2d(out_ch), nn.PReLU(out_ch))


class InvertedResidual(nn.Module):
    """1x1 expand + BN + PReLU, depthwise 3x3 + BN + PReLU, 1x1 project + BN (``conv.0..7``),
    plus the input when ``residual``."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, residual: bool, expansion: int):
        super().__init__()
        hidden = in_ch * expansion
        self.residual = residual
        self.conv = nn.Sequential(
            nn.Conv2d(in_ch, hidden, 1, 1, 0, bias=False), nn.BatchNorm2d(hidden), nn.PReLU(hidden),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden), nn.PReLU(hidden),
            nn.Conv2d(hidden, out_ch, 1, 1, 0, bias=False), nn.BatchNorm2d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.residual else self.conv(x)


class Landmark106Net(nn.Module):
    """``LargeBaseLmksNet(er=1.0)``: state-dict keys ``block1.{0,1,2}.*``,
    ``block{2..17}.conv.{0,1,2,3,4,5,6,7}.*`` (conv, BN, PReLU, dw conv, BN, PReLU, conv, BN),
    ``block18.{0,1,2}.*``, ``block19.weight`` (106, 256, 3, 3)."""

    def __init__(self) -> None:
        super().__init__()
        self.block1 = _conv_bn_prelu(3, 64, 2)
        for k, spec in enumerate(_INVERTED_RESIDUALS, start=2):
            setattr(self, f"block{k}", InvertedResidual(*spec))
        self.block18 = _conv_bn_prelu(128, 256, 1)
        self.block19 = nn.Conv2d(256, NUM_POINTS, 3, 1, 1, bias=False)

    def heatmaps(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, 224, 224]`` float32 normalised crop -> ``[B, 106, 14, 14]`` logits."""
        for k in range(1, 20):
            x = getattr(self, f"block{k}")(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, 224, 224]`` -> ``[B, 212]`` crop coordinates in [0, 1), see
        :func:`soft_argmax`."""
        return soft_argmax(self.heatmaps(x))


def soft_argmax(heatmaps: torch.Tensor) -> torch.Tensor:
    """Official soft-argmax (beta = 1), quirk included.

    Args:
        heatmaps: ``[B, C, H, W]`` logits.

    Returns:
        ``[B, 2C]`` interleaved (x_c, y_c) with x_c = E[row] / W and y_c = E[column] / H under
        the softmax over the H*W cells: the official "x" is the row expectation (matrix-style
        meshgrid), divided by the width as the official code does.
    """
    b, c, h, w = heatmaps.shape
    prob = torch.softmax(heatmaps.reshape(b, c, h * w), dim=2)
    row_of_cell, col_of_cell = torch.meshgrid(
        torch.arange(h, dtype=prob.dtype, device=prob.device),
        torch.arange(w, dtype=prob.dtype, device=prob.device), indexing="ij")
    # Sum over the flattened cells, in the official order, for bit-level parity.
    x = (prob * row_of_cell.reshape(h * w)).sum(2) / w
    y = (prob * col_of_cell.reshape(h * w)).sum(2) / h
    return torch.stack([x, y], dim=2).reshape(b, 2 * c)


def load_landmark106(path: str | Path) -> Landmark106Net:
    """Read ``large_base_net.pth`` strictly onto the CPU, eval mode.

    The file is a dict whose ``state_dict`` entry holds the weights, saved from
    ``nn.DataParallel`` (keys prefixed ``module.``, stripped here). Unlike the official
    non-strict loader, every key and shape must match :class:`Landmark106Net`.

    Raises:
        ModelFilesError: missing/truncated file, no ``state_dict`` entry, or a key/shape
            mismatch (named in the message).
    """
    content = read_pth(path, "landmark106")
    if not isinstance(content, Mapping) or "state_dict" not in content:
        found = list(content)[:8] if isinstance(content, Mapping) else type(content).__name__
        raise ModelFilesError(f"{path}: expected a dict with key 'state_dict', found {found}. "
                              + layout.where_to_get("landmark106"))
    state = {(k[len(_PREFIX):] if k.startswith(_PREFIX) else k): v
             for k, v in content["state_dict"].items()}
    net = build_empty(Landmark106Net)
    load_strict(net, state, f"{Path(path).name} [state_dict]")
    return net.eval()


def landmarks106(net: nn.Module, rgb: np.ndarray, box: Sequence[float],
                 device: str | torch.device = "cpu") -> np.ndarray:
    """The official two-pass 106-point landmarks of one face.

    Args:
        net: :class:`Landmark106Net` (or any module with its input/output), already on
            ``device`` and in eval mode.
        rgb: ``[H, W, 3]`` uint8 RGB photo.
        box: face box (x1, y1, x2, y2) in photo pixels, as RetinaFace returns it.
        device: where the crop tensor is sent.

    Returns:
        ``[106, 2]`` float64 (x, y) photo coordinates: OpenCV pixel-index frame, y down.

    Raises:
        NoFaceError: the crop around the box (or around the pass-1 points) misses the photo.
    """
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an [H, W, 3] uint8 RGB image, got {rgb.dtype} {rgb.shape}")
    x1, y1, x2, y2 = (float(v) for v in box)
    points = _one_pass(net, rgb, x1, y1, x2, y2, device)
    (x1, y1), (x2, y2) = points.min(0), points.max(0)
    return _one_pass(net, rgb, x1, y1, x2, y2, device)


def five_from_106(points106: np.ndarray) -> np.ndarray:
    """``[106, 2]`` -> ``[5, 2]`` float64 (eyeL, eyeR, nose, mouthL, mouthR), same frame."""
    return np.asarray(points106, dtype=np.float64)[list(FIVE_POINT_INDICES)]


def _one_pass(net: nn.Module, rgb: np.ndarray, x1: float, y1: float, x2: float, y2: float,
              device: str | torch.device) -> np.ndarray:
    """One crop + network run around box corners (x1, y1, x2, y2) -> ``[106, 2]`` photo
    points."""
    side = max(x2 - x1 + 1, y2 - y1 + 1) * ENLARGE_RATIO
    left, top = (x1 + x2) / 2 - side / 2, (y1 + y2) / 2 - side / 2
    crop = _square_crop(rgb, left, top, side)
    normalised = (crop.astype(np.float64) - np.asarray(PIXEL_MEAN)) / 255.0
    tensor = torch.from_numpy(normalised.transpose(2, 0, 1)[None].astype(np.float32)).to(device)
    with torch.no_grad():
        # x224 in float32 before going to float64, as the official code rounds it.
        out = (net(tensor)[0].float() * INPUT_SIZE).cpu().numpy().reshape(NUM_POINTS, 2)
    return out.astype(np.float64) * (side / INPUT_SIZE) + np.array([left, top])


def _square_crop(rgb: np.ndarray, left: float, top: float, side: float) -> np.ndarray:
    """``[224, 224, 3]`` uint8 crop of the window [left, left + side) x [top, top + side),
    cut and padded with the official truncations."""
    height, width = rgb.shape[:2]
    right, bottom = left + side, top + side
    # Slice bounds as the official code computes them; a window wholly left of or above the
    # photo would give negative (wrapping) slice ends there, so it is rejected first.
    x0, y0, x1, y1 = max(0.0, left), max(0.0, top), min(width, right), min(height, bottom)
    patch = rgb[int(y0):int(y1), int(x0):int(x1)] if right > 0 and bottom > 0 else rgb[:0, :0]
    if patch.size == 0:
        raise NoFaceError(
            f"The face box lies outside the photo (crop window x {left:.0f}..{right:.0f}, "
            f"y {top:.0f}..{bottom:.0f} of a {width}x{height} photo); no landmarks can be found.")
    patch = cv2.copyMakeBorder(
        patch, int(max(0.0, -top)), int(max(0.0, bottom - height)), int(max(0.0, -left)),
        int(max(0.0, right - width)), cv2.BORDER_CONSTANT, value=PIXEL_MEAN)
    return cv2.resize(patch, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_LINEAR)
