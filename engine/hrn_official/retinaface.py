"""The official HRN face detector: Iglovikov's "ternaus/retinaface" ResNet-50 (2020-07-20).

HRN (``facelandmark/large_model_infer.py``) builds the detector with ``max_size=512``, loads
``retinaface_resnet50_2020-07-20_old_torch.pth`` strictly, feeds it the RGB photo and keeps
only the boxes (the 5 detector landmarks are ignored downstream). FACTS 1.2, 2.5.

Network (``retinaface/network.py``, ``retinaface/net.py``):

* ``body``: torchvision ResNet-50 through ``layer4`` (no ``avgpool``/``fc`` parameters),
  returning the outputs of layer2/3/4 (512, 1024, 2048 channels; strides 8, 16, 32);
* ``fpn``: 1x1 conv+BN+ReLU laterals ``output1..3`` to 256 channels; top-down nearest
  upsampling added, then 3x3 conv+BN+ReLU ``merge2`` (stride 16) and ``merge1`` (stride 8);
  the stride-32 level is not merged;
* ``ssh1..3``: SSH context modules (3x3 branch 128 ch; 5x5 and 7x7 branches 64 ch each as
  stacked 3x3 convs), concatenated to 256 channels, ReLU after the concatenation only;
* ``ClassHead``/``BboxHead``/``LandmarkHead``: one 1x1 conv (with bias) per level, 2 anchors
  per location, giving 2 logits (background, face), 4 box deltas, 10 landmark deltas.

The official ``LeakyReLU`` slopes are 0 for 256 output channels (slope 0.1 only for <= 64),
so they are plain ReLUs here; they carry no parameters, so the state-dict keys are unchanged.

Post-processing (``retinaface/predict_single.py``, ``prior_box.py``, ``box_utils.py``):
softmax over the 2 logits, score = face probability, keep score > 0.7, sort descending, NMS at
IoU 0.4, then map back: truncate to integers in the 512 canvas, remove the centred padding,
multiply by ``max(H, W) / 512`` and truncate again.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from . import checkpoint
from .boxes import nms
from .net_recon import ResNet50Trunk

#: Side of the square canvas the photo is resized (longest side) and padded to.
MAX_SIZE = 512
#: Anchor sizes per pyramid level, pixels of the 512 canvas (strides 8, 16, 32).
MIN_SIZES = ((16, 32), (64, 128), (256, 512))
#: Feature strides of the three pyramid levels, pixels.
STEPS = (8, 16, 32)
#: Box-delta variances (centre, size) of the SSD-style encoding.
VARIANCES = (0.1, 0.2)
#: Face-probability threshold (strictly greater passes) and NMS IoU threshold (official defaults).
SCORE_THRESHOLD = 0.7
NMS_IOU = 0.4
#: ImageNet mean/std applied to RGB / 255 (albumentations ``Normalize`` defaults).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Channels of the ResNet-50 stages the FPN reads (layer2, layer3, layer4) and FPN width.
FPN_IN_CHANNELS = (512, 1024, 2048)
FPN_CHANNELS = 256
ANCHORS_PER_LOCATION = 2


def _conv_bn(in_ch: int, out_ch: int, kernel: int, relu: bool) -> nn.Sequential:
    """Conv (no bias, 'same' padding) -> BN [-> ReLU]; keys ``0.weight``, ``1.*``."""
    layers = [nn.Conv2d(in_ch, out_ch, kernel, stride=1, padding=kernel // 2, bias=False),
              nn.BatchNorm2d(out_ch)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class _Body(ResNet50Trunk):
    """ResNet-50 trunk returning the layer2/3/4 feature maps instead of the pooled vector."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``[B, 3, H, W]`` -> ``[B, 512, H/8, W/8]``, ``[B, 1024, H/16, W/16]``,
        ``[B, 2048, H/32, W/32]`` (sizes rounded up)."""
        x = self.layer1(self.maxpool(self.relu(self.bn1(self.conv1(x)))))
        c3 = self.layer2(x)
        c4 = self.layer3(c3)
        return c3, c4, self.layer4(c4)


class _FPN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        for i, in_ch in enumerate(FPN_IN_CHANNELS):
            setattr(self, f"output{i + 1}", _conv_bn(in_ch, FPN_CHANNELS, 1, relu=True))
        self.merge1 = _conv_bn(FPN_CHANNELS, FPN_CHANNELS, 3, relu=True)
        self.merge2 = _conv_bn(FPN_CHANNELS, FPN_CHANNELS, 3, relu=True)

    def forward(self, c3: torch.Tensor, c4: torch.Tensor, c5: torch.Tensor) -> list[torch.Tensor]:
        p5 = self.output3(c5)
        p4 = self.merge2(self.output2(c4) + F.interpolate(p5, size=c4.shape[2:], mode="nearest"))
        p3 = self.merge1(self.output1(c3) + F.interpolate(p4, size=c3.shape[2:], mode="nearest"))
        return [p3, p4, p5]


class _SSH(nn.Module):
    # Official attribute names, including the lower-case 'x' of conv7x7_3.
    def __init__(self, ch: int = FPN_CHANNELS) -> None:
        super().__init__()
        self.conv3X3 = _conv_bn(ch, ch // 2, 3, relu=False)
        self.conv5X5_1 = _conv_bn(ch, ch // 4, 3, relu=True)
        self.conv5X5_2 = _conv_bn(ch // 4, ch // 4, 3, relu=False)
        self.conv7X7_2 = _conv_bn(ch // 4, ch // 4, 3, relu=True)
        self.conv7x7_3 = _conv_bn(ch // 4, ch // 4, 3, relu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mid = self.conv5X5_1(x)
        branches = [self.conv3X3(x), self.conv5X5_2(mid), self.conv7x7_3(self.conv7X7_2(mid))]
        return F.relu(torch.cat(branches, 1))


class _Head(nn.Module):
    """1x1 conv predicting ``per_anchor`` values for each of the 2 anchors of a location."""

    def __init__(self, per_anchor: int) -> None:
        super().__init__()
        self.per_anchor = per_anchor
        self.conv1x1 = nn.Conv2d(FPN_CHANNELS, ANCHORS_PER_LOCATION * per_anchor, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 256, h, w]`` -> ``[B, h*w*2, per_anchor]`` ordered (row, column, anchor),
        the order of :func:`prior_boxes`."""
        out = self.conv1x1(x).permute(0, 2, 3, 1)
        return out.reshape(out.shape[0], -1, self.per_anchor)


class RetinaFace(nn.Module):
    """The official detector; ``state_dict()`` keys and shapes equal the release file's."""

    def __init__(self) -> None:
        super().__init__()
        self.body = _Body()
        self.fpn = _FPN()
        self.ssh1, self.ssh2, self.ssh3 = _SSH(), _SSH(), _SSH()
        self.ClassHead = nn.ModuleList(_Head(2) for _ in range(3))
        self.BboxHead = nn.ModuleList(_Head(4) for _ in range(3))
        self.LandmarkHead = nn.ModuleList(_Head(10) for _ in range(3))

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Args:
            image: ``[B, 3, 512, 512]`` float32, ImageNet-normalised RGB (see :func:`preprocess`).

        Returns:
            ``(box_deltas [B, P, 4], class_logits [B, P, 2], landmark_deltas [B, P, 10])`` with
            P = :func:`prior_boxes` count (10 752 for 512); logits are (background, face).
        """
        levels = self.fpn(*self.body(image))
        feats = [ssh(p) for ssh, p in zip((self.ssh1, self.ssh2, self.ssh3), levels)]
        cat = lambda heads: torch.cat([h(f) for h, f in zip(heads, feats)], 1)  # noqa: E731
        return cat(self.BboxHead), cat(self.ClassHead), cat(self.LandmarkHead)


def load_retinaface(path: str | Path) -> RetinaFace:
    """Read ``retinaface_resnet50_2020-07-20_old_torch.pth`` strictly onto the CPU, eval mode.

    Raises:
        ModelFilesError: missing, truncated or corrupt file, or a key/shape that differs from
            the official layout (the message names the key and the file).
    """
    state = checkpoint.read_pth(path, "retinaface")
    net = checkpoint.build_empty(RetinaFace)
    checkpoint.load_strict(net, state, Path(path).name)
    return net.eval()


def prior_boxes(size: int = MAX_SIZE) -> torch.Tensor:
    """Anchors of a square ``size`` canvas: ``[P, 4]`` float32 (cx, cy, w, h) in units of
    ``size`` (0..1 inside the canvas; not clipped, as in the official ``clip=False``).

    Order: level (stride 8, 16, 32), then row, then column, then the level's two min sizes.
    Centres are at ((col + 0.5) * step, (row + 0.5) * step); the grid has ceil(size/step) cells.
    """
    out = []
    for step, sizes in zip(STEPS, MIN_SIZES):
        n = -(-size // step)
        centres = (torch.arange(n, dtype=torch.float64) + 0.5) * step / size
        cy, cx = torch.meshgrid(centres, centres, indexing="ij")
        wh = torch.tensor(sizes, dtype=torch.float64) / size
        grid = torch.stack([cx.reshape(-1, 1).expand(-1, len(sizes)), cy.reshape(-1, 1).expand(-1, len(sizes)),
                            wh.expand(n * n, -1), wh.expand(n * n, -1)], -1)
        out.append(grid.reshape(-1, 4))
    return torch.cat(out).float()


def decode_boxes(deltas: torch.Tensor, priors: torch.Tensor,
                 variances: tuple[float, float] = VARIANCES) -> torch.Tensor:
    """SSD decoding: ``[P, 4]`` deltas (dcx, dcy, dlogw, dlogh) + ``[P, 4]`` priors
    (cx, cy, w, h) -> ``[P, 4]`` corners (x0, y0, x1, y1), in the priors' units.

    centre = prior centre + d * variances[0] * prior size; size = prior size * exp(d * variances[1]).
    """
    centre = priors[:, :2] + deltas[:, :2] * variances[0] * priors[:, 2:]
    size = priors[:, 2:] * torch.exp(deltas[:, 2:] * variances[1])
    return torch.cat([centre - size / 2, centre + size / 2], 1)


def preprocess(rgb: np.ndarray) -> tuple[torch.Tensor, tuple[int, int]]:
    """Official pre-processing of an RGB photo.

    The photo is resized (OpenCV bilinear, albumentations ``LongestMaxSize``: both sides times
    512 / max(H, W), rounded half-to-even, also when enlarging), normalised as
    (RGB / 255 - mean) / std, and zero-padded (zero = the mean colour after normalisation)
    to 512 x 512 with the image centred: the left/top pads are (512 - w) // 2, (512 - h) // 2.

    Args:
        rgb: ``[H, W, 3]`` uint8 RGB photo, row 0 at the top.

    Returns:
        ``([1, 3, 512, 512] float32 tensor, (left_pad, top_pad))`` in canvas pixels.
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an [H, W, 3] uint8 RGB image, got {rgb.shape} {rgb.dtype}")
    h, w = rgb.shape[:2]
    scale = MAX_SIZE / max(h, w)
    if scale != 1.0:
        rgb = cv2.resize(rgb, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_LINEAR)
    h, w = rgb.shape[:2]
    mean = np.float32(255.0) * np.asarray(IMAGENET_MEAN, np.float32)
    inv_std = 1.0 / (np.float32(255.0) * np.asarray(IMAGENET_STD, np.float32))
    canvas = np.zeros((MAX_SIZE, MAX_SIZE, 3), np.float32)
    left, top = (MAX_SIZE - w) // 2, (MAX_SIZE - h) // 2
    canvas[top:top + h, left:left + w] = (rgb.astype(np.float32) - mean) * inv_std
    return torch.from_numpy(canvas).permute(2, 0, 1)[None].contiguous(), (left, top)


def detect_faces(net: RetinaFace, rgb: np.ndarray, device: str | torch.device = "cpu") -> np.ndarray:
    """Detect faces with the official detector and post-processing.

    Args:
        net: from :func:`load_retinaface` (moved to ``device`` here if needed).
        rgb: ``[H, W, 3]`` uint8 RGB photo, row 0 at the top.
        device: torch device to run on.

    Returns:
        ``[K, 5]`` float32 rows (x0, y0, x1, y1, score) sorted by score descending; box
        corners in photo pixels (image top-left origin, y down), integer-valued and not
        clipped to the photo, exactly as the official ``predict_jsons`` returns them
        (truncation toward zero in the 512 canvas and again after scaling by max(H, W) / 512);
        score = face probability in (0.7, 1]. K may be 0. Like the official code, boxes whose
        left edge lies at or beyond the last column (or top edge at or beyond the last row)
        are dropped.
    """
    image, (left, top) = preprocess(rgb)
    net = net.to(device)
    with torch.no_grad():
        deltas, logits, _landmarks = net(image.to(device))
    scores = F.softmax(logits[0].float(), -1)[:, 1].cpu()
    boxes = decode_boxes(deltas[0].float().cpu(), prior_boxes()) * MAX_SIZE
    passed = scores > SCORE_THRESHOLD
    boxes, scores = boxes[passed].numpy(), scores[passed].numpy()
    keep = nms(boxes, scores, NMS_IOU)
    boxes, scores = boxes[keep], scores[keep]
    h, w = rgb.shape[:2]
    photo = (np.trunc(boxes) - np.array([left, top, left, top])) * (max(h, w) / MAX_SIZE)
    photo = np.trunc(photo)
    inside = (photo[:, 0] < w - 1) & (photo[:, 1] < h - 1)
    return np.concatenate([photo, scores[:, None]], 1)[inside].astype(np.float32)
