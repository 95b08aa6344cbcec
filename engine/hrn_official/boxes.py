"""Greedy non-maximum suppression shared by the official detectors (RetinaFace, S3FD)."""
from __future__ import annotations

import numpy as np


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float,
        inclusive_pixels: bool = False) -> np.ndarray:
    """Keep the best-scoring boxes, dropping each box that overlaps a kept one too much.

    Args:
        boxes: ``[N, 4]`` corners (x0, y0, x1, y1), pixels.
        scores: ``[N]``; ties keep the earlier box first.
        iou_threshold: a box is dropped when its IoU with a kept, higher-scoring box is
            strictly greater than this.
        inclusive_pixels: box sides count both end pixels (``x1 - x0 + 1``), the arithmetic
            of the face-alignment package's S3FD; False is torchvision's ``nms`` (RetinaFace).

    Returns:
        ``[K]`` int64 indices into ``boxes`` of the kept boxes, by decreasing score.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    pad = 1.0 if inclusive_pixels else 0.0
    area = (boxes[:, 2] - boxes[:, 0] + pad) * (boxes[:, 3] - boxes[:, 1] + pad)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        lo = np.maximum(boxes[i, :2], boxes[rest, :2])
        hi = np.minimum(boxes[i, 2:], boxes[rest, 2:])
        inter = np.prod(np.clip(hi - lo + pad, 0, None), axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = inter / (area[i] + area[rest] - inter)
        order = rest[~(iou > iou_threshold)]  # NaN IoU (two empty boxes) keeps, as torchvision
    return np.asarray(keep, dtype=np.int64)
