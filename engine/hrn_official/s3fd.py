"""The face detector of the official 68-point step: S3FD as packaged by ``face-alignment``.

HRN runs ``face_alignment.FaceAlignment(LandmarksType._3D, flip_input=False)`` on its 224²
crop (FACTS 1.5); that package first finds the face with its own S3FD detector, weights
``s3fd-619a316812.pth`` (a plain state dict). This module rebuilds the network under the
file's key names and the package's detection steps, so the official file gives the official
boxes without the package (which pulls in numba and more):

* input: the RGB photo as float, channels flipped to BGR, minus the means (104, 117, 123)
  (B, G, R), no other scaling;
* six heads at strides 4 … 128; class scores through a softmax, candidates with a face score
  over 0.05; each candidate cell (row r, column c) has a square prior centred at
  ``(stride/2 + c·stride, stride/2 + r·stride)`` with side ``4·stride``, decoded SSD-style with
  variances (0.1, 0.2);
* greedy NMS at IoU 0.3 in the package's "+1 pixel" box arithmetic, then faces are the boxes
  scoring over 0.5, in NMS order (best score first) — ``face-alignment`` takes them in that
  order, so the first one is the face HRN uses.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import checkpoint
from .boxes import nms

#: Per-channel means subtracted from the BGR image (0–255 scale).
MEAN_BGR = (104.0, 117.0, 123.0)
#: SSD box-decoding variances (centre, size).
VARIANCES = (0.1, 0.2)
#: Cells whose face probability is over this become candidate boxes.
CANDIDATE_SCORE = 0.05
#: Boxes kept after NMS must score over this to count as faces.
FACE_SCORE = 0.5
#: NMS suppresses a box overlapping a better one by more than this IoU.
NMS_IOU = 0.3
#: Strides of the six detection heads, in the order the network returns them.
STRIDES = (4, 8, 16, 32, 64, 128)


class L2Norm(nn.Module):
    """Channel-wise L2 normalisation with a learned per-channel scale (key ``weight``, ``[C]``)."""

    def __init__(self, channels: int, scale: float):
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), float(scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = x.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10
        return x / norm * self.weight.view(1, -1, 1, 1)


def _conv(cin: int, cout: int, k: int = 3, stride: int = 1, pad: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=k, stride=stride, padding=pad)


class S3FD(nn.Module):
    """S3FD (VGG-16 backbone) with the attribute names of ``s3fd-619a316812.pth``.

    Input ``[B, 3, H, W]`` float32, BGR minus :data:`MEAN_BGR`. Output: a list of 12 tensors,
    ``[cls, loc]`` for each of the six heads (strides :data:`STRIDES`): ``cls`` ``[B, 2, h, w]``
    logits (background, face), ``loc`` ``[B, 4, h, w]`` box offsets. The stride-4 head predicts
    three background logits and one face logit; the three are reduced to their maximum
    ("max-out background"), so it too returns two channels.
    """

    def __init__(self):
        super().__init__()
        self.conv1_1, self.conv1_2 = _conv(3, 64), _conv(64, 64)
        self.conv2_1, self.conv2_2 = _conv(64, 128), _conv(128, 128)
        self.conv3_1, self.conv3_2, self.conv3_3 = _conv(128, 256), _conv(256, 256), _conv(256, 256)
        self.conv4_1, self.conv4_2, self.conv4_3 = _conv(256, 512), _conv(512, 512), _conv(512, 512)
        self.conv5_1, self.conv5_2, self.conv5_3 = _conv(512, 512), _conv(512, 512), _conv(512, 512)
        self.fc6 = _conv(512, 1024, pad=3)
        self.fc7 = _conv(1024, 1024, k=1, pad=0)
        self.conv6_1 = _conv(1024, 256, k=1, pad=0)
        self.conv6_2 = _conv(256, 512, stride=2)
        self.conv7_1 = _conv(512, 128, k=1, pad=0)
        self.conv7_2 = _conv(128, 256, stride=2)
        self.conv3_3_norm = L2Norm(256, 10.0)
        self.conv4_3_norm = L2Norm(512, 8.0)
        self.conv5_3_norm = L2Norm(512, 5.0)
        self.conv3_3_norm_mbox_conf = _conv(256, 4)
        self.conv3_3_norm_mbox_loc = _conv(256, 4)
        self.conv4_3_norm_mbox_conf = _conv(512, 2)
        self.conv4_3_norm_mbox_loc = _conv(512, 4)
        self.conv5_3_norm_mbox_conf = _conv(512, 2)
        self.conv5_3_norm_mbox_loc = _conv(512, 4)
        self.fc7_mbox_conf = _conv(1024, 2)
        self.fc7_mbox_loc = _conv(1024, 4)
        self.conv6_2_mbox_conf = _conv(512, 2)
        self.conv6_2_mbox_loc = _conv(512, 4)
        self.conv7_2_mbox_conf = _conv(256, 2)
        self.conv7_2_mbox_loc = _conv(256, 4)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        def block(h, convs, pool=True):
            for conv in convs:
                h = F.relu(conv(h))
            return h, (F.max_pool2d(h, 2, 2) if pool else h)

        _, h = block(x, (self.conv1_1, self.conv1_2))
        _, h = block(h, (self.conv2_1, self.conv2_2))
        f3, h = block(h, (self.conv3_1, self.conv3_2, self.conv3_3))
        f4, h = block(h, (self.conv4_1, self.conv4_2, self.conv4_3))
        f5, h = block(h, (self.conv5_1, self.conv5_2, self.conv5_3))
        f7, _ = block(h, (self.fc6, self.fc7), pool=False)
        f6_2, _ = block(f7, (self.conv6_1, self.conv6_2), pool=False)
        f7_2, _ = block(f6_2, (self.conv7_1, self.conv7_2), pool=False)
        f3, f4, f5 = self.conv3_3_norm(f3), self.conv4_3_norm(f4), self.conv5_3_norm(f5)

        cls1 = self.conv3_3_norm_mbox_conf(f3)
        background = cls1[:, 0:3].amax(dim=1, keepdim=True)
        out = [torch.cat([background, cls1[:, 3:4]], dim=1), self.conv3_3_norm_mbox_loc(f3)]
        for feat, conf, loc in ((f4, self.conv4_3_norm_mbox_conf, self.conv4_3_norm_mbox_loc),
                                (f5, self.conv5_3_norm_mbox_conf, self.conv5_3_norm_mbox_loc),
                                (f7, self.fc7_mbox_conf, self.fc7_mbox_loc),
                                (f6_2, self.conv6_2_mbox_conf, self.conv6_2_mbox_loc),
                                (f7_2, self.conv7_2_mbox_conf, self.conv7_2_mbox_loc)):
            out += [conf(feat), loc(feat)]
        return out


def load_s3fd(path: str | Path) -> S3FD:
    """Read ``s3fd-619a316812.pth`` strictly (every key and shape) onto the CPU, eval mode.

    Raises:
        ModelFilesError: missing, truncated or corrupt file, or keys/shapes that differ from
            the official detector.
    """
    state = checkpoint.read_pth(path, "s3fd")
    net = checkpoint.build_empty(S3FD)
    checkpoint.load_strict(net, state, Path(path).name)
    return net.eval()


def priors(stride: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Prior boxes of the cells ``(rows[i], cols[i])`` of the head with this stride.

    Returns:
        ``[N, 4]`` float64 ``(cx, cy, w, h)`` in input pixels: centre
        ``(stride/2 + col·stride, stride/2 + row·stride)``, side ``4·stride``.
    """
    cx = stride / 2 + np.asarray(cols, np.float64) * stride
    cy = stride / 2 + np.asarray(rows, np.float64) * stride
    side = np.full_like(cx, 4.0 * stride)
    return np.stack([cx, cy, side, side], axis=1)


def decode(loc: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """SSD decoding with :data:`VARIANCES`: ``[N, 4]`` offsets and ``[N, 4]`` priors
    ``(cx, cy, w, h)`` → ``[N, 4]`` float64 boxes ``(x0, y0, x1, y1)`` in input pixels."""
    centre = prior[:, :2] + loc[:, :2] * VARIANCES[0] * prior[:, 2:]
    size = prior[:, 2:] * np.exp(loc[:, 2:] * VARIANCES[1])
    top_left = centre - size / 2
    return np.concatenate([top_left, top_left + size], axis=1)


def candidates(outputs: list[torch.Tensor]) -> np.ndarray:
    """All candidate boxes of one image from the network's 12 outputs (batch of one).

    Returns:
        ``[N, 5]`` float64 ``(x0, y0, x1, y1, score)``, head by head in :data:`STRIDES` order,
        cells in row-major order within a head, for cells with face probability over
        :data:`CANDIDATE_SCORE`.
    """
    boxes = []
    for level, stride in enumerate(STRIDES):
        prob = F.softmax(outputs[2 * level].float(), dim=1)[0, 1].cpu().numpy()
        loc = outputs[2 * level + 1][0].float().cpu().numpy()
        rows, cols = np.nonzero(prob > CANDIDATE_SCORE)
        decoded = decode(loc[:, rows, cols].T.astype(np.float64), priors(stride, rows, cols))
        boxes.append(np.concatenate([decoded, prob[rows, cols, None].astype(np.float64)], axis=1))
    return np.concatenate(boxes, axis=0)


@torch.no_grad()
def detect_s3fd(net: nn.Module, rgb: np.ndarray, device: str | torch.device,
                dtype: type = np.float32) -> np.ndarray:
    """Faces in a photo, as ``face-alignment``'s S3FD step finds them.

    Args:
        net: :class:`S3FD` (loaded with :func:`load_s3fd`), already on ``device``.
        rgb: ``[H, W, 3]`` uint8 RGB photo, row 0 at the top.
        device: where to run the network.
        dtype: of the result; ``np.float64`` keeps the package's own precision (boxes feed
            FAN's integer crop corners, so :func:`~.fan.landmarks68` uses it).

    Returns:
        ``[K, 5]`` ``dtype`` ``(x0, y0, x1, y1, score)`` in the photo's pixels (top-left origin,
        y down), score over :data:`FACE_SCORE`, best first; ``K = 0`` when there is no face.
    """
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an [H, W, 3] uint8 RGB image, got {rgb.dtype} {rgb.shape}")
    x = torch.from_numpy(np.ascontiguousarray(rgb[:, :, ::-1].transpose(2, 0, 1)))
    x = x.to(device=device, dtype=torch.float32)[None]
    x = x - torch.tensor(MEAN_BGR, device=x.device).view(1, 3, 1, 1)
    dets = candidates(net(x))
    dets = dets[nms(dets[:, :4], dets[:, 4], NMS_IOU, inclusive_pixels=True)]
    return dets[dets[:, 4] > FACE_SCORE].astype(dtype).reshape(-1, 5)
