"""Coordinate conventions, written down once, with one conversion per boundary.

Model space (every mesh in :class:`engine.result.FaceReconstruction`):
    Right-handed, **metres**. +Y up, +Z out of the face (the direction the person looks),
    +X towards the person's left ear (the viewer's right when facing them). Canonical
    (unposed): the head looks along +Z whatever its pose in the photo.

Camera space (OpenGL style, as nvdiffrast and Blender cameras):
    The camera sits at the origin, looks down -Z, +Y up, +X right. A model point p maps to
    camera space as ``R @ p + t`` with ``Camera.rotation`` R (3x3) and ``Camera.translation``
    t (metres).

Image space (photos, numpy arrays, PNG files):
    Pixel (col x, row y), origin at the **top-left** corner of the top-left pixel, y down.
    Pixel centres are at integer + 0.5. Intrinsics: focal length ``f`` in pixels and principal
    point (cx, cy) in these coordinates.

Clip space (the rasterizer, nvdiffrast's convention):
    Homogeneous ``[x, y, z, w]``; after division x, y, z in [-1, 1]; y up; the rasterizer's
    output rows are **bottom-up** (row 0 = bottom of the image).

UV space (textures, deformation and displacement maps):
    (u, v) in [0, 1], origin bottom-left, v up (OBJ and Blender convention). A map stored as
    an ``[H, W, ...]`` array has row 0 at the top (v = 1): texel (row i, col j) has its centre
    at u = (j + 0.5) / W, v = 1 - (i + 0.5) / H.

Blender (world space):
    Z up, metres. The canonical head is placed facing -Y (Blender's Front view looks at
    it), so model (x, y, z) becomes Blender (x, -z, y): :func:`model_to_blender`.
"""
from __future__ import annotations

import numpy as np

#: Rotation taking model-space vectors to Blender world space (x, y, z) -> (x, -z, y).
MODEL_TO_BLENDER = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


def model_to_blender(points: np.ndarray) -> np.ndarray:
    """Model-space points or vectors ``[..., 3]`` (metres) to Blender world space ``[..., 3]``."""
    return np.asarray(points) @ MODEL_TO_BLENDER.T


def camera_to_clip(points_cam: "np.ndarray", focal_px: float, principal_px: tuple[float, float],
                   image_size: tuple[int, int], near: float = 0.01, far: float = 10.0) -> np.ndarray:
    """Camera-space points ``[..., 3]`` to clip space ``[..., 4]`` for a pinhole camera.

    Args:
        focal_px: focal length in pixels.
        principal_px: principal point (cx, cy) in image space (top-left origin, y down).
        image_size: (width, height) in pixels.
        near, far: clip planes in metres.
    Works on numpy arrays and on torch tensors (through the array API they share).
    """
    w, h = image_size
    cx, cy = principal_px
    x, y, z = points_cam[..., 0], points_cam[..., 1], points_cam[..., 2]
    # x_ndc = (2 (f x / -z + cx) / w) - 1 ; clip = ndc * w_clip with w_clip = -z.
    xc = (2.0 * focal_px / w) * x + (2.0 * cx / w - 1.0) * (-z)
    yc = (2.0 * focal_px / h) * y + (1.0 - 2.0 * cy / h) * (-z)
    zc = (-(far + near) / (far - near)) * z - (2.0 * far * near / (far - near))
    wc = -z
    stack = np.stack if isinstance(points_cam, np.ndarray) else _torch_stack
    return stack([xc, yc, zc, wc], -1)


def _torch_stack(items, dim):
    import torch

    return torch.stack(items, dim)
