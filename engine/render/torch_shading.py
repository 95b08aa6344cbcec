"""Pure-torch ``interpolate``, ``texture`` and ``antialias`` (the CPU backend).

Each matches the nvdiffrast function of the same name in arguments, layouts and results,
and is built from differentiable torch ops, so gradients reach attributes, barycentrics
(hence vertex positions), textures and texture coordinates. Work runs on covered pixels
only; empty pixels (``rast[..., 3] == 0``) output zeros and pass no gradient.
"""
from __future__ import annotations

from typing import Sequence

import torch

FILTER_MODES = ("auto", "nearest", "linear", "linear-mipmap-nearest", "linear-mipmap-linear")
BOUNDARY_MODES = ("wrap", "clamp", "zero", "cube")


def interpolate(attr: torch.Tensor, rast: torch.Tensor, tri: torch.Tensor,
                rast_db: torch.Tensor | None = None,
                diff_attrs: str | Sequence[int] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Interpolate per-vertex attributes over the raster; same contract as nvdiffrast's.

    Args:
        attr: ``[V, C]`` or ``[B, V, C]`` (batch 1 broadcasts) vertex attributes.
        rast: ``[B, H, W, 4]`` output of ``rasterize``.
        tri: ``[T, 3]`` int32, the triangles given to ``rasterize``.
        rast_db: ``[B, H, W, 4]`` second output of ``rasterize``; needed with ``diff_attrs``.
        diff_attrs: attribute indices (or ``'all'``) whose pixel derivatives to output.

    Returns:
        ``out [B, H, W, C]`` = ``u a0 + v a1 + (1 - u - v) a2``, zero where empty, and
        ``out_da [B, H, W, 2 K]`` holding ``(dA/dX, dA/dY)`` per selected attribute in pixel
        units (``[B, H, W, 0]`` when no derivatives were asked for).
    """
    batch, height, width, _ = rast.shape
    channels = attr.shape[-1]
    flat_rast = rast.reshape(-1, 4)
    tri_index = flat_rast[:, 3].detach().long() - 1
    pixel = (tri_index >= 0).nonzero().squeeze(1)
    vert = tri.long().index_select(0, tri_index.index_select(0, pixel))     # [M, 3]
    if attr.dim() == 3 and attr.shape[0] > 1:
        image = torch.div(pixel, height * width, rounding_mode="floor")
        vert = vert + (image * attr.shape[1]).unsqueeze(1)
    # index_select on a flat view: its backward (index_add) is much faster than index_put's.
    corners = attr.reshape(-1, channels).index_select(0, vert.reshape(-1)).view(-1, 3, channels)
    uv = flat_rast.index_select(0, pixel)[:, :2]
    u, v = uv[:, :1], uv[:, 1:]
    a0, a1, a2 = corners.unbind(1)
    values = a2 + u * (a0 - a2) + v * (a1 - a2)
    total = batch * height * width
    out = values.new_zeros(total, channels).index_copy(0, pixel, values)
    out = out.view(batch, height, width, channels)

    selected = _selected_attrs(diff_attrs, channels)
    if not selected:
        return out, out.new_zeros(batch, height, width, 0)
    if rast_db is None:
        raise ValueError("interpolate: diff_attrs needs rast_db, the second output of rasterize")
    db = rast_db.reshape(-1, 4).index_select(0, pixel)
    ds_du, ds_dv = (a0 - a2)[:, selected], (a1 - a2)[:, selected]           # [M, K]
    d_dx = db[:, 0:1] * ds_du + db[:, 2:3] * ds_dv
    d_dy = db[:, 1:2] * ds_du + db[:, 3:4] * ds_dv
    da = torch.stack([d_dx, d_dy], 2).reshape(-1, 2 * len(selected))
    out_da = da.new_zeros(total, da.shape[1]).index_copy(0, pixel, da)
    return out, out_da.view(batch, height, width, -1)


def _selected_attrs(diff_attrs, channels: int) -> list[int]:
    if diff_attrs is None:
        return []
    if isinstance(diff_attrs, str):
        if diff_attrs != "all":
            raise ValueError(f"interpolate: diff_attrs must be 'all' or a list of indices, "
                             f"got {diff_attrs!r}")
        return list(range(channels))
    # Python-style negative indices, as nvdiffrast accepts them.
    return [int(i) % channels for i in diff_attrs]


def texture(tex: torch.Tensor, uv: torch.Tensor, uv_da: torch.Tensor | None = None,
            mip_level_bias: torch.Tensor | None = None, mip=None, filter_mode: str = "auto",
            boundary_mode: str = "wrap", max_mip_level: int | None = None) -> torch.Tensor:
    """Sample 2D textures; same contract as nvdiffrast's ``texture`` without mipmaps.

    Texel ``(row i, col j)`` of ``tex`` has its centre at ``u = (j + 0.5) / W``,
    ``v = (i + 0.5) / H`` (nvdiffrast's convention: row 0 at v = 0).

    Args:
        tex: ``[B or 1, H, W, C]`` texture (batch 1 broadcasts).
        uv: ``[B, h, w, 2]`` texture coordinates.
        uv_da, mip_level_bias, mip, max_mip_level: accepted for signature compatibility;
            this backend has no mipmaps, so ``filter_mode='auto'`` always means ``'linear'``.
        filter_mode: ``'auto'``, ``'linear'`` (bilinear) or ``'nearest'``. The mipmap modes
            raise ``NotImplementedError``.
        boundary_mode: ``'wrap'`` (repeat), ``'clamp'`` (clamp to the centres of border
            texels) or ``'zero'`` (zeros outside). ``'cube'`` raises ``NotImplementedError``.

    Returns:
        ``[B, h, w, C]`` sampled values, differentiable w.r.t. ``tex`` and (for ``'linear'``)
        ``uv``.
    """
    if filter_mode not in FILTER_MODES:
        raise ValueError(f"texture: filter_mode must be one of {FILTER_MODES}, got {filter_mode!r}")
    if boundary_mode not in BOUNDARY_MODES:
        raise ValueError(f"texture: boundary_mode must be one of {BOUNDARY_MODES}, got {boundary_mode!r}")
    if "mipmap" in filter_mode:
        raise NotImplementedError(
            f"texture: the torch backend has no mipmaps; use filter_mode='linear' or 'auto' "
            f"instead of {filter_mode!r}")
    if boundary_mode == "cube":
        raise NotImplementedError("texture: the torch backend has no cube maps")
    if tex.dim() != 4 or uv.dim() != 4 or uv.shape[-1] != 2:
        raise ValueError(f"texture: expected tex [B, H, W, C] and uv [B, h, w, 2], got "
                         f"{tuple(tex.shape)} and {tuple(uv.shape)}")
    batch = uv.shape[0]
    if tex.shape[0] not in (1, batch):
        raise ValueError(f"texture: tex batch {tex.shape[0]} must be 1 or match uv batch {batch}")
    tex_h, tex_w, channels = tex.shape[1:]
    flat_tex = tex.reshape(-1, channels)
    # Index offset of each lookup's texture in flat_tex (0 when one texture is shared).
    texels_per_image = tex_h * tex_w if tex.shape[0] > 1 else 0
    base = torch.arange(batch, device=uv.device).view(batch, 1, 1) * texels_per_image
    u, v = uv[..., 0], uv[..., 1]
    if boundary_mode == "wrap":
        u, v = u - torch.floor(u), v - torch.floor(v)

    if filter_mode == "nearest":
        col, ok_u = _texel_index(torch.floor(u.detach() * tex_w).long(), tex_w, boundary_mode)
        row, ok_v = _texel_index(torch.floor(v.detach() * tex_h).long(), tex_h, boundary_mode)
        out = _gather_texels(flat_tex, base + row * tex_w + col)
        return out * (ok_u & ok_v).unsqueeze(-1).to(out.dtype)

    x, y = u * tex_w - 0.5, v * tex_h - 0.5
    if boundary_mode == "clamp":
        # Clamp to border texel centres; clamped coordinates carry no gradient, as nvdiffrast.
        x, y = x.clamp(0, tex_w - 1), y.clamp(0, tex_h - 1)
    x0, y0 = torch.floor(x.detach()), torch.floor(y.detach())
    fx, fy = (x - x0).unsqueeze(-1), (y - y0).unsqueeze(-1)
    x0, y0 = x0.long(), y0.long()
    cols = [_texel_index(x0, tex_w, boundary_mode), _texel_index(x0 + 1, tex_w, boundary_mode)]
    rows = [_texel_index(y0, tex_h, boundary_mode), _texel_index(y0 + 1, tex_h, boundary_mode)]

    def fetch(r, c):
        (row, ok_r), (col, ok_c) = rows[r], cols[c]
        value = _gather_texels(flat_tex, base + row * tex_w + col)
        return value * (ok_r & ok_c).unsqueeze(-1).to(value.dtype)

    top = fetch(0, 0) + fx * (fetch(0, 1) - fetch(0, 0))
    bottom = fetch(1, 0) + fx * (fetch(1, 1) - fetch(1, 0))
    return top + fy * (bottom - top)


def _gather_texels(flat_tex: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``flat_tex [N, C]`` rows at ``index [...]`` -> ``[..., C]``. index_select rather than
    advanced indexing: its backward (index_add) is much faster than index_put's."""
    return flat_tex.index_select(0, index.reshape(-1)).view(*index.shape, flat_tex.shape[-1])


def _texel_index(i: torch.Tensor, size: int, boundary_mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Texel index in range for ``boundary_mode`` and whether the texel exists (``'zero'``)."""
    if boundary_mode == "wrap":
        return i % size, torch.ones_like(i, dtype=torch.bool)
    ok = (i >= 0) & (i < size) if boundary_mode == "zero" else torch.ones_like(i, dtype=torch.bool)
    return i.clamp(0, size - 1), ok


def antialias(color: torch.Tensor, rast: torch.Tensor, pos: torch.Tensor, tri: torch.Tensor,
              topology_hash=None, pos_gradient_boost: float = 1.0) -> torch.Tensor:
    """Pass-through: returns ``color`` unchanged (gradients reach ``color`` only).

    nvdiffrast's ``antialias`` blends colours across silhouette edges, which also gives
    gradients to ``pos`` from visibility changes. The torch backend does neither; the same
    call runs on both backends so code need not branch.
    """
    return color
