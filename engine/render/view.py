"""Rendering the posed head into (a crop of) the photo.

A :class:`View` is the photo camera restricted to a square crop around the face, rendered at
a chosen resolution. All images here are top-down (image convention); the rasterizer's
bottom-up rows are flipped in exactly one place, :func:`render_rast`.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .. import render
from ..conventions import camera_to_clip
from ..result import Camera


@dataclass(frozen=True)
class View:
    """Attributes:
        camera: the photo's camera (pose + intrinsics in photo pixels).
        box: ``(x0, y0, side)`` of the square crop in photo pixels.
        size: rendered resolution (pixels per side).
    """

    camera: Camera
    box: tuple[float, float, float]
    size: int

    @property
    def focal_px(self) -> float:
        return self.camera.focal_px * self.size / self.box[2]

    @property
    def principal_px(self) -> tuple[float, float]:
        x, y = self.to_crop(np.asarray([self.camera.principal_px], np.float64))[0]
        return float(x), float(y)

    def to_crop(self, points_px: np.ndarray) -> np.ndarray:
        """Photo pixel positions ``[N, 2+]`` (x, y first) -> ``[N, 2]`` positions in this
        view's crop, in crop pixels (same corner convention as the photo's)."""
        return (np.asarray(points_px)[:, :2] - self.box[:2]) * (self.size / self.box[2])


def face_view(camera: Camera, points_px: np.ndarray, size: int, margin: float = 1.6) -> View:
    """A square crop centred on ``points_px`` ``[N, 2]`` (e.g. the landmarks), ``margin`` times
    their extent."""
    lo, hi = points_px.min(0), points_px.max(0)
    side = float((hi - lo).max() * margin)
    centre = (lo + hi) / 2.0
    return View(camera=camera, box=(float(centre[0] - side / 2), float(centre[1] - side / 2), side),
                size=size)


def to_camera(vertices: torch.Tensor, camera: Camera) -> torch.Tensor:
    """Model-space vertices ``[..., V, 3]`` -> camera space (metres)."""
    rot = torch.as_tensor(camera.rotation, dtype=vertices.dtype, device=vertices.device)
    t = torch.as_tensor(camera.translation, dtype=vertices.dtype, device=vertices.device)
    return vertices @ rot.T + t


def clip_positions(vertices: torch.Tensor, view: View) -> torch.Tensor:
    """Model-space vertices ``[V, 3]`` -> clip space ``[1, V, 4]`` float32 for ``view``."""
    cam = to_camera(vertices, view.camera)
    return camera_to_clip(cam, view.focal_px, view.principal_px, (view.size, view.size),
                          near=0.05, far=5.0)[None].float()


def render_rast(ctx, vertices: torch.Tensor, triangles: torch.Tensor, view: View) -> torch.Tensor:
    """Rasterize; returns nvdiffrast's ``rast`` flipped to top-down rows, ``[1, H, W, 4]``."""
    rast, _ = render.rasterize(ctx, clip_positions(vertices, view), triangles, (view.size, view.size))
    return torch.flip(rast, dims=[1])


def interpolate_top_down(attr: torch.Tensor, rast_top_down: torch.Tensor, triangles: torch.Tensor):
    """``render.interpolate`` on a top-down ``rast``; returns ``[1, H, W, C]`` top-down."""
    out, _ = render.interpolate(attr, rast_top_down, triangles)
    return out


def crop_photo(photo: np.ndarray, view: View) -> torch.Tensor:
    """Resample the ``[H, W, 3]`` photo into the view's crop, ``[size, size, 3]`` float32.

    Bilinear, with the photo's pixel centres at integer + 0.5; outside the photo is black.
    When the crop is smaller than the face in the photo (large photos), the photo is first
    area-averaged to about the crop's scale, so the crop is not aliased.
    """
    h, w = photo.shape[:2]
    x0, y0, side = view.box
    shrink = side / view.size
    if shrink > 1.5:
        # Normalised grid coordinates span the whole photo at any resolution: only the
        # pixel count changes.
        photo = cv2.resize(np.ascontiguousarray(photo, np.float32),
                           (max(1, round(w / shrink)), max(1, round(h / shrink))), interpolation=cv2.INTER_AREA)
    img = torch.as_tensor(photo, dtype=torch.float32).permute(2, 0, 1)[None]
    centres = (torch.arange(view.size, dtype=torch.float32) + 0.5) * side / view.size
    gx = (x0 + centres) / w * 2 - 1
    gy = (y0 + centres) / h * 2 - 1
    grid = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), -1)[None]
    return F.grid_sample(img, grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0].permute(1, 2, 0)


def sample_photo(photo: np.ndarray, points_px: np.ndarray) -> np.ndarray:
    """Bilinear photo colours ``[N, 3]`` at pixel positions ``[N, 2]`` (x, y; centres at +0.5)."""
    img = torch.as_tensor(photo, dtype=torch.float32).permute(2, 0, 1)[None]
    h, w = photo.shape[:2]
    pts = torch.as_tensor(points_px, dtype=torch.float32)
    grid = torch.stack([pts[:, 0] / w * 2 - 1, pts[:, 1] / h * 2 - 1], -1)[None, None]
    return F.grid_sample(img, grid, mode="bilinear", padding_mode="border",
                         align_corners=False)[0, :, 0].T.numpy()


def visible_vertices(ctx, vertices: torch.Tensor, triangles: torch.Tensor, view: View,
                     tolerance: float = 2e-3) -> np.ndarray:
    """``[V]`` bool: vertices inside the view and not hidden behind other surface.

    A vertex counts as visible when the depth buffer at its pixel is within ``tolerance``
    metres of its own depth (or one of its own triangles is drawn there).
    """
    with torch.no_grad():
        rast = render_rast(ctx, vertices, triangles, view)
        depth_cam = -to_camera(vertices, view.camera)[:, 2]
        zbuf = interpolate_top_down(depth_cam[:, None].contiguous().float(), rast, triangles)[0, :, :, 0]
        covered = rast[0, :, :, 3] > 0
        cam = to_camera(vertices, view.camera)
        x = view.focal_px * cam[:, 0] / -cam[:, 2] + view.principal_px[0]
        y = -view.focal_px * cam[:, 1] / -cam[:, 2] + view.principal_px[1]
        col, row = x.floor().long(), y.floor().long()
        inside = (col >= 0) & (col < view.size) & (row >= 0) & (row < view.size)
        col, row = col.clamp(0, view.size - 1), row.clamp(0, view.size - 1)
        seen = inside & covered[row, col] & (zbuf[row, col] > depth_cam - tolerance)
    return seen.numpy()
