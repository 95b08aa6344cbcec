"""UV-space sampling exactly as the official code does it (FACTS 1.13, 1.17, section 7).

* :func:`unwrap` samples a photo crop into UV space by projecting each texel's 3D point
  with the official camera. Quirk kept for parity: the **vertical bilinear weights are
  swapped** (row i0 gets f, row i0 + 1 gets 1 - f); uncovered texels project to (0, 0).
  No visibility test.
* :func:`sample_at_vertices` reads a UV map at vertex UVs with corner-aligned texel
  coordinates (col = u w, row = h - v h, no half-texel offset), standard bilinear weights,
  clamped indices; while world2uv (:class:`engine.uv.raster.UVRaster`) uses texel centres.
"""
from __future__ import annotations

import torch

from . import bfm


def unwrap(points_uv: torch.Tensor, coverage: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Photo colours at UV texels.

    Args:
        points_uv: ``[B, H, W, 3]`` world-frame (posed) positions per texel, decimetres.
        coverage: ``[H, W]`` bool, texels inside the UV chart.
        image: ``[B, C, h, w]`` crop aligned like the 224 network input (224 or 512 wide).

    Returns:
        ``[B, H, W, C]`` sampled values (HWC like the official ``texture_map``).
    """
    b, c, h, w = image.shape
    proj = bfm.project(points_uv)                                  # 224 camera, y up
    proj = torch.stack([proj[..., 0] * (w / bfm.CROP_224), proj[..., 1] * (h / bfm.CROP_224)], -1)
    proj = proj * coverage[..., None].to(proj.dtype)               # official: NaN -> 0
    x, y = proj[..., 0], (h - 1) - proj[..., 1]
    x0, y0 = torch.floor(x), torch.floor(y)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    x0, y0 = x0.long(), y0.long()
    img = image.permute(0, 2, 3, 1)
    bi = torch.arange(b, device=image.device).view(b, 1, 1).expand_as(x0)

    def at(yy, xx):
        return img[bi, yy.clamp(0, h - 1), xx.clamp(0, w - 1)]

    return (at(y0, x0) * (1 - fx) * fy + at(y0 + 1, x0) * (1 - fx) * (1 - fy)
            + at(y0, x0 + 1) * fx * fy + at(y0 + 1, x0 + 1) * fx * (1 - fy))


def sample_at_vertices(uv_map: torch.Tensor, uvs: torch.Tensor) -> torch.Tensor:
    """``[B, h, w, C]`` map read at ``[N, 2]`` vertex UVs -> ``[B, N, C]`` (official
    ``add_nonlinear_offset`` sampling)."""
    h, w = uv_map.shape[1:3]
    x, y = uvs[:, 0] * w, uvs[:, 1] * h
    x0, y0 = torch.floor(x), torch.floor(y)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    x0, y0 = x0.long(), y0.long()

    def at(row, col):
        return uv_map[:, row.clamp(0, h - 1), col.clamp(0, w - 1)]

    top, bottom = h - 1 - y0, h - y0
    return (at(top, x0) * (1 - fx) * fy + at(bottom, x0) * (1 - fx) * (1 - fy)
            + at(top, x0 + 1) * fx * fy + at(bottom, x0 + 1) * fx * (1 - fy))
