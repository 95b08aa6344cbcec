"""nvdiffrast's four verbs, dispatched to nvdiffrast or to the torch backend.

``rasterize`` follows its context (see :mod:`engine.render.context`). ``interpolate``,
``texture`` and ``antialias`` take no context: they use nvdiffrast when it is installed and
their inputs are float32 CUDA tensors, and the torch backend otherwise. Both backends share
nvdiffrast's conventions: clip-space ``pos``, int32 ``tri``, bottom-up rows, pixel-centre
sampling, ``rast = (u, v, z/w, triangle index + 1)`` with zeros for empty pixels.
"""
from __future__ import annotations

from typing import Sequence

import torch

from . import torch_raster, torch_shading
from .context import TorchRasterContext, _nvdiffrast_module


def _nvdiffrast_for(*tensors: torch.Tensor | None):
    """nvdiffrast module if it should handle these tensors, else None."""
    dr = _nvdiffrast_module()
    if dr is None:
        return None
    given = [t for t in tensors if t is not None and t.is_floating_point()]
    if all(t.is_cuda and t.dtype == torch.float32 for t in given):
        return dr
    return None


def rasterize(ctx, pos: torch.Tensor, tri: torch.Tensor, resolution: Sequence[int],
              ranges: torch.Tensor | None = None, grad_db: bool = True
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Rasterize triangles (``nvdiffrast.torch.rasterize``).

    Args:
        ctx: from :func:`engine.render.make_context`.
        pos: clip-space vertex positions ``[B, V, 4]`` (instanced mode) or ``[V, 4]``
            (range mode), float32 (the torch backend also takes float64).
        tri: ``[T, 3]`` int32 vertex indices; both windings are drawn (no culling).
        resolution: ``(height, width)`` in pixels.
        ranges: range mode only: ``[B, 2]`` int32 ``(first triangle, count)`` per image.
        grad_db: let gradients flow from ``rast_db`` into ``pos``.

    Returns:
        ``rast [B, H, W, 4]`` = ``(u, v, z/w, triangle index + 1)`` (the first vertex of a
        triangle has ``(u, v) = (1, 0)``, the second ``(0, 1)``, the third ``(0, 0)``; empty
        pixels are all zero; row 0 is the bottom, at clip y = -1) and ``rast_db
        [B, H, W, 4]`` = ``(du/dX, du/dY, dv/dX, dv/dY)`` per pixel. Gradients reach ``pos``
        through ``(u, v)`` and ``rast_db``, not through ``z/w`` (as in nvdiffrast).
    """
    if not isinstance(ctx, TorchRasterContext):
        return _nvdiffrast_module().rasterize(ctx, pos, tri, tuple(resolution), ranges, grad_db)
    if pos.dim() not in (2, 3) or pos.shape[-1] != 4:
        raise ValueError(f"rasterize: pos must be [B, V, 4] or [V, 4], got {tuple(pos.shape)}")
    if not pos.is_floating_point():
        raise ValueError(f"rasterize: pos must be float32 or float64, got {pos.dtype}")
    if tri.dim() != 2 or tri.shape[1] != 3 or tri.dtype != torch.int32:
        raise ValueError(f"rasterize: tri must be [T, 3] int32, got {tuple(tri.shape)} {tri.dtype}")
    height, width = (int(r) for r in resolution)
    if height <= 0 or width <= 0:
        raise ValueError(f"rasterize: resolution must be positive (height, width), got {resolution}")
    if ranges is not None and pos.dim() == 3:
        ranges = None  # Ignored in instanced mode, as in nvdiffrast.
    return torch_raster.rasterize(pos, tri, (height, width), ranges, grad_db)


def interpolate(attr: torch.Tensor, rast: torch.Tensor, tri: torch.Tensor,
                rast_db: torch.Tensor | None = None,
                diff_attrs: str | Sequence[int] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Interpolate vertex attributes (``nvdiffrast.torch.interpolate``); see
    :func:`engine.render.torch_shading.interpolate` for shapes."""
    dr = _nvdiffrast_for(attr, rast, rast_db)
    if dr is not None:
        return dr.interpolate(attr, rast, tri, rast_db, diff_attrs)
    return torch_shading.interpolate(attr, rast, tri, rast_db, diff_attrs)


def texture(tex: torch.Tensor, uv: torch.Tensor, uv_da: torch.Tensor | None = None,
            mip_level_bias: torch.Tensor | None = None, mip=None, filter_mode: str = "auto",
            boundary_mode: str = "wrap", max_mip_level: int | None = None) -> torch.Tensor:
    """Sample textures (``nvdiffrast.torch.texture``). The torch backend is bilinear or
    nearest without mipmaps; see :func:`engine.render.torch_shading.texture`."""
    dr = _nvdiffrast_for(tex, uv, uv_da, mip_level_bias)
    if dr is not None:
        return dr.texture(tex, uv, uv_da, mip_level_bias, mip, filter_mode, boundary_mode, max_mip_level)
    return torch_shading.texture(tex, uv, uv_da, mip_level_bias, mip, filter_mode, boundary_mode,
                                 max_mip_level)


def antialias(color: torch.Tensor, rast: torch.Tensor, pos: torch.Tensor, tri: torch.Tensor,
              topology_hash=None, pos_gradient_boost: float = 1.0) -> torch.Tensor:
    """Silhouette antialiasing (``nvdiffrast.torch.antialias``); a pass-through on the torch
    backend (no edge blending, no visibility gradients to ``pos``)."""
    dr = _nvdiffrast_for(color, rast, pos)
    if dr is not None:
        return dr.antialias(color, rast, pos, tri, topology_hash, pos_gradient_boost)
    return torch_shading.antialias(color, rast, pos, tri, topology_hash, pos_gradient_boost)
