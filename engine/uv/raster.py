"""Per-vertex attributes to UV maps and back, for a fixed UV layout.

A head model's UV layout never changes, so which face covers each texel, and where inside
it, is computed once (:func:`rasterize_uv`) and reused for every map: world2uv
(:meth:`UVRaster.to_uv`) is then one gather and a weighted sum. :func:`sample_map` goes the
other way (a map read at UV points, e.g. to carry a deformation map onto vertices), and
:func:`dilate` pushes values across island borders so those reads never see empty texels.

UV convention (:mod:`engine.conventions`): origin bottom-left, v up; maps are ``[H, W, C]``
with row 0 at the top, texel ``(i, j)`` centred at ``u = (j + 0.5) / W, v = 1 - (i + 0.5) / H``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .. import render


@dataclass(frozen=True)
class UVRaster:
    """Which face covers each texel of an ``H x W`` UV map, and the barycentric weights
    of the texel centre in that face. Built by :func:`rasterize_uv`."""

    triangle: torch.Tensor
    """``[H, W]`` int64: index of the face covering the texel centre, -1 where none does.
    Where UV islands overlap, the lower face index wins."""
    barycentric: torch.Tensor
    """``[H, W, 3]`` float32 weights of the face's three corners (sum 1); zeros where uncovered."""
    num_faces: int
    """Number of faces of the layout; ``to_uv`` checks its ``faces`` against it."""

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)`` of the maps this raster makes."""
        return tuple(self.triangle.shape)

    @property
    def coverage(self) -> torch.Tensor:
        """``[H, W]`` bool: texels whose centre lies inside some face."""
        return self.triangle >= 0

    def to(self, device: str | torch.device) -> "UVRaster":
        """Copy on ``device``."""
        return UVRaster(self.triangle.to(device), self.barycentric.to(device), self.num_faces)

    def to_uv(self, attr: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
        """Interpolate per-vertex attributes into a UV map (world2uv).

        Args:
            attr: ``[V, C]`` or ``[B, V, C]`` per-vertex values (any float dtype).
            faces: ``[F, 3]`` integer vertex indices of the mesh, face f matching face f of
                the UV layout given to :func:`rasterize_uv`.

        Returns:
            ``[H, W, C]`` or ``[B, H, W, C]`` map, in ``attr``'s dtype; uncovered texels are
            exactly 0. Differentiable w.r.t. ``attr``.
        """
        if faces.dim() != 2 or faces.shape != (self.num_faces, 3):
            raise ValueError(f"to_uv: faces must be [{self.num_faces}, 3] to match the UV layout, "
                             f"got {tuple(faces.shape)}")
        height, width = self.size
        flat_face = self.triangle.reshape(-1)
        texel = (flat_face >= 0).nonzero().squeeze(1)
        corners = faces.long().to(attr.device)[flat_face[texel]]                # [N, 3]
        weights = self.barycentric.reshape(-1, 3)[texel].to(attr.dtype)         # [N, 3]
        values = (attr[..., corners, :] * weights.unsqueeze(-1)).sum(-2)        # [..., N, C]
        out = attr.new_zeros(*attr.shape[:-2], height * width, attr.shape[-1])
        out = out.index_copy(out.dim() - 2, texel, values)
        return out.reshape(*attr.shape[:-2], height, width, attr.shape[-1])


def rasterize_uv(uvs: torch.Tensor | np.ndarray, face_uvs: torch.Tensor | np.ndarray,
                 size: tuple[int, int]) -> UVRaster:
    """Rasterize a UV layout once.

    Args:
        uvs: ``[T, 2]`` UV coordinates in [0, 1] (origin bottom-left).
        face_uvs: ``[F, 3]`` integer indices into ``uvs``, one row per mesh face.
        size: ``(H, W)`` of the UV maps.

    Returns:
        The :class:`UVRaster` (on the CPU).
    """
    uvs = torch.as_tensor(np.asarray(uvs), dtype=torch.float64)
    face_uvs = torch.as_tensor(np.asarray(face_uvs)).to(torch.int32)
    if uvs.dim() != 2 or uvs.shape[1] != 2:
        raise ValueError(f"rasterize_uv: uvs must be [T, 2], got {tuple(uvs.shape)}")
    if face_uvs.dim() != 2 or face_uvs.shape[1] != 3:
        raise ValueError(f"rasterize_uv: face_uvs must be [F, 3], got {tuple(face_uvs.shape)}")
    height, width = (int(s) for s in size)
    # UV square -> clip square: x = 2u - 1, y = 2v - 1; the raster's bottom-up rows then map
    # to the map's top-down rows by one flip.
    pos = torch.cat([uvs * 2.0 - 1.0, torch.zeros_like(uvs[:, :1]), torch.ones_like(uvs[:, :1])], 1)
    ctx = render.TorchRasterContext()
    rast, _ = render.rasterize(ctx, pos.unsqueeze(0), face_uvs, (height, width), grad_db=False)
    rast = rast[0].flip(0)
    triangle = rast[..., 3].long() - 1
    u, v = rast[..., 0], rast[..., 1]
    bary = torch.stack([u, v, 1.0 - u - v], -1) * (triangle >= 0).unsqueeze(-1)
    return UVRaster(triangle, bary.float(), int(face_uvs.shape[0]))


def sample_map(uv_map: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Bilinear lookup of a UV map at UV points.

    Args:
        uv_map: ``[H, W, C]`` map, row 0 at the top (v = 1).
        uv: ``[N, 2]`` UV coordinates (origin bottom-left); beyond the outermost texel
            centres the border texels are used (clamp).

    Returns:
        ``[N, C]`` values; at a texel centre exactly that texel. Differentiable w.r.t.
        ``uv_map`` and ``uv``.
    """
    # The rasterizer's texture() puts row 0 at v = 0; flipping v reads our top-down maps.
    flipped = torch.stack([uv[:, 0], 1.0 - uv[:, 1]], -1).to(uv_map.dtype)
    out = render.texture(uv_map.unsqueeze(0).contiguous(), flipped.view(1, 1, -1, 2).contiguous(),
                         filter_mode="linear", boundary_mode="clamp")
    return out.view(-1, uv_map.shape[-1])


def dilate(uv_map: torch.Tensor, coverage: torch.Tensor, pixels: int) -> torch.Tensor:
    """Grow a map's covered region outward by ``pixels`` texels.

    Each step gives every uncovered texel touching a covered one (8-neighbourhood) the mean
    of those neighbours, so bilinear lookups near UV island borders and seams blend real
    values instead of the zeros outside the islands.

    Args:
        uv_map: ``[H, W, C]`` map.
        coverage: ``[H, W]`` bool, texels holding real values (e.g. ``UVRaster.coverage``).
        pixels: number of growth steps.

    Returns:
        ``[H, W, C]`` map; covered texels unchanged. Differentiable w.r.t. ``uv_map``.
    """
    kernel = uv_map.new_ones(1, 1, 3, 3)
    values = uv_map.permute(2, 0, 1).unsqueeze(1)                         # [C, 1, H, W]
    filled = coverage.to(uv_map.dtype).view(1, 1, *coverage.shape)
    for _ in range(pixels):
        total = F.conv2d(values * filled, kernel, padding=1)
        count = F.conv2d(filled, kernel, padding=1)
        grow = (filled == 0) & (count > 0)
        values = torch.where(grow, total / count.clamp(min=1), values)
        filled = filled + grow.to(filled.dtype)
    return values.squeeze(1).permute(1, 2, 0)
