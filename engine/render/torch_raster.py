"""Pure-torch triangle rasterizer with nvdiffrast's output layout (the CPU backend).

Two stages, as in nvdiffrast:

1. **Visibility, without autograd.** Vertices are snapped to a fixed-point screen grid
   (1/256 pixel, as GPUs do) so edge functions are exact 64-bit integers: a pixel centre on
   an edge shared by two triangles is given to exactly one of them (top-left rule), so meshes
   have no cracks and no double coverage. Triangles are bucketed by the power-of-two size of
   their screen bounding box; each bucket tests its triangles against a padded grid of
   candidate pixels at once, and the nearest fragment per pixel wins through a scatter-min
   over a packed ``(depth, triangle)`` 64-bit key. No Python loop runs per triangle.
2. **Barycentrics, with autograd.** For the winning triangle of each covered pixel,
   perspective-correct ``(u, v)`` and their pixel derivatives are recomputed from ``pos``
   with differentiable torch ops, so gradients reach vertex positions exactly as through
   nvdiffrast's ``rasterize`` (``z/w`` and the triangle id carry none).

Differences from nvdiffrast, by design: a triangle with any vertex at ``w <= 0`` is dropped
(nvdiffrast clips it against the near plane and draws the visible part), and pixels whose
``z/w`` lies outside ``[-1, 1]`` are discarded (the near/far planes). Screen coordinates are
clamped to +-2^21 pixels so the integer edge functions cannot overflow.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

#: Fixed-point subpixel resolution: screen coordinates are rounded to 1/SUBPIXEL pixel.
SUBPIXEL = 256
#: Largest |screen coordinate| in subpixel units; keeps edge functions within int64.
_COORD_LIMIT = 2**29
#: Candidate (triangle, pixel) pairs tested at once; bounds peak memory (~30 bytes each).
_CHUNK = 1 << 21
_EMPTY_KEY = torch.iinfo(torch.int64).max
_DEPTH_LEVELS = 2**31 - 1


def rasterize(pos: torch.Tensor, tri: torch.Tensor, resolution: tuple[int, int],
              ranges: torch.Tensor | None = None, grad_db: bool = True
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Rasterize clip-space triangles; same contract as ``nvdiffrast.torch.rasterize``.

    Args:
        pos: clip-space vertices, float32 or float64. ``[B, V, 4]`` (instanced mode: image b
            draws every triangle with ``pos[b]``) or ``[V, 4]`` (range mode with ``ranges``,
            else one image of all triangles).
        tri: ``[T, 3]`` int32 vertex indices.
        resolution: ``(height, width)`` in pixels.
        ranges: range mode only, ``[B, 2]`` int32 ``(first triangle, count)`` per image.
        grad_db: whether gradients flow from ``rast_db`` into ``pos``.

    Returns:
        ``rast [B, H, W, 4]`` = ``(u, v, z/w, triangle index + 1)``, all zeros where empty,
        and ``rast_db [B, H, W, 4]`` = ``(du/dX, du/dY, dv/dX, dv/dY)`` in pixel units.
        Rows are bottom-up (row 0 at clip y = -1); pixels are sampled at their centres.
    """
    height, width = resolution
    pos_b, img_b, tri_ids, num_images = _instances(pos, tri, ranges)
    pos3 = pos if pos.dim() == 3 else pos.unsqueeze(0)
    tri_l = tri.long()
    with torch.no_grad():
        pixel, winner = _visible_triangles(pos3.detach(), tri_l, pos_b, img_b, tri_ids,
                                           num_images, height, width)
    return _fill(pos3, tri_l, pos_b, tri_ids, pixel, winner, num_images, height, width, grad_db)


def _instances(pos, tri, ranges):
    """Which (pos batch, output image, triangle) triples to draw, as flat int64 tensors."""
    device = pos.device
    num_tri = tri.shape[0]
    all_tri = torch.arange(num_tri, device=device)
    if pos.dim() == 3:
        batch = pos.shape[0]
        b = torch.arange(batch, device=device).repeat_interleave(num_tri)
        return b, b, all_tri.repeat(batch), batch
    if ranges is None:
        zeros = torch.zeros(num_tri, dtype=torch.long, device=device)
        return zeros, zeros, all_tri, 1
    ranges = ranges.long().cpu()
    starts, counts = ranges[:, 0].tolist(), ranges[:, 1].tolist()
    ids = [torch.arange(s, s + c) for s, c in zip(starts, counts)]
    img = torch.repeat_interleave(torch.arange(len(ids)), ranges[:, 1])
    tri_ids = torch.cat(ids) if ids else torch.zeros(0, dtype=torch.long)
    return (torch.zeros_like(img).to(device), img.to(device), tri_ids.to(device), len(ids))


def _visible_triangles(pos, tri, pos_b, img_b, tri_ids, num_images, height, width):
    """Nearest triangle per pixel. Returns covered flat pixel indices ``[M]`` (into
    ``num_images * H * W``) and the winning instance index ``[M]`` for each."""
    # Project and snap each vertex once (a vertex is shared by ~6 triangles), then gather
    # the snapped corners: the same float64 arithmetic as per corner, so the same results.
    # (index_select throughout: advanced indexing is several times slower on CPU.)
    pos = pos.double()
    w = pos[..., 3]
    ndc = pos[..., :3] / torch.where(w > 0, w, torch.ones_like(w)).unsqueeze(-1)
    scale = ndc.new_tensor([width * 0.5 * SUBPIXEL, height * 0.5 * SUBPIXEL])
    sub = torch.round((ndc[..., :2] + 1.0) * scale).clamp(-_COORD_LIMIT, _COORD_LIMIT).long()
    sub, zn_v, w_ok = sub.reshape(-1, 2), ndc[..., 2].reshape(-1), (w > 0).reshape(-1)
    corner = pos_b.unsqueeze(1) * pos.shape[1] + tri.index_select(0, tri_ids)   # [N, 3]

    # Pixel-centre bounding box: centres sit at (p + 0.5) * SUBPIXEL. At mesh densities near
    # one triangle per pixel most boxes hold no pixel centre; those triangles are culled
    # here, before any further per-triangle work.
    x0, x1, y0, y1 = _pixel_box(sub, corner, height, width)
    valid = w_ok[corner[:, 0]] & w_ok[corner[:, 1]] & w_ok[corner[:, 2]]
    idx = (valid & (x0 <= x1) & (y0 <= y1)).nonzero().squeeze(1)
    corner = corner.index_select(0, idx)
    x0, x1, y0, y1 = (t.index_select(0, idx) for t in (x0, x1, y0, y1))

    (sx0, sy0), (sx1, sy1), (sx2, sy2) = (sub.index_select(0, corner[:, i]).unbind(1) for i in range(3))
    z0, z1, z2 = (zn_v.index_select(0, corner[:, i]) for i in range(3))
    area = (sx1 - sx0) * (sy2 - sy0) - (sy1 - sy0) * (sx2 - sx0)
    # Both windings rasterize (nvdiffrast does no culling): reorder clockwise triangles to
    # counter-clockwise so one top-left rule serves all.
    flip = area < 0
    sx1, sx2 = torch.where(flip, sx2, sx1), torch.where(flip, sx1, sx2)
    sy1, sy2 = torch.where(flip, sy2, sy1), torch.where(flip, sy1, sy2)
    z1, z2 = torch.where(flip, z2, z1), torch.where(flip, z1, z2)
    area = area.abs()
    keep = ((area > 0) & (torch.minimum(torch.minimum(z0, z1), z2) <= 1.0)
            & (torch.maximum(torch.maximum(z0, z1), z2) >= -1.0))
    kept = keep.nonzero().squeeze(1)
    idx = idx.index_select(0, kept)
    sx0, sx1, sx2, sy0, sy1, sy2, z0, z1, z2, x0, x1, y0, y1, area = (
        t.index_select(0, kept) for t in (sx0, sx1, sx2, sy0, sy1, sy2, z0, z1, z2, x0, x1, y0, y1, area))

    # Edge e is opposite vertex e: from vertex e+1 to vertex e+2. E = d x (P - a).
    sx, sy = torch.stack([sx0, sx1, sx2], 1), torch.stack([sy0, sy1, sy2], 1)   # [n, 3]
    ax, ay = torch.stack([sx1, sx2, sx0], 1), torch.stack([sy1, sy2, sy0], 1)
    dx, dy = torch.stack([sx2, sx0, sx1], 1) - ax, torch.stack([sy2, sy0, sy1], 1) - ay
    half = SUBPIXEL // 2
    px0 = (x0 * SUBPIXEL + half).unsqueeze(1)
    py0 = (y0 * SUBPIXEL + half).unsqueeze(1)
    top_left = (dy < 0) | ((dy == 0) & (dx < 0))
    # Integer edge values: E > 0 inside; on the edge (E == 0) only top-left edges own the
    # pixel, so subtract 1 elsewhere and test E >= 0.
    e_origin = dx * (py0 - ay) - dy * (px0 - ax) - (~top_left).long()

    # Depth plane z/w(P) through the snapped vertices, in float64.
    fx, fy = sx.double(), sy.double()
    ex1, ey1, ez1 = fx[:, 1] - fx[:, 0], fy[:, 1] - fy[:, 0], z1 - z0
    ex2, ey2, ez2 = fx[:, 2] - fx[:, 0], fy[:, 2] - fy[:, 0], z2 - z0
    det = area.double()
    gx, gy = (ez1 * ey2 - ez2 * ey1) / det, (ex1 * ez2 - ex2 * ez1) / det
    z_origin = z0 + gx * (px0[:, 0] - fx[:, 0]) + gy * (py0[:, 0] - fy[:, 0])

    # Sort triangles by bucket so each bucket, and each chunk of it, is a contiguous slice.
    bucket = _log2_ceil(x1 - x0 + 1) * 32 + _log2_ceil(y1 - y0 + 1)
    bucket, perm = bucket.sort()
    edge = torch.stack([e_origin, -dy * SUBPIXEL, dx * SUBPIXEL], 2)     # [n, 3 edges, 3]
    depth = torch.stack([z_origin, gx * SUBPIXEL, gy * SUBPIXEL], 1)
    origin = (img_b.index_select(0, idx) * height + y0) * width + x0
    setup = _Setup(*(t.index_select(0, perm) for t in (edge, depth, torch.stack([origin, idx], 1), x0, y0)))

    keys = torch.full((num_images * height * width,), _EMPTY_KEY, dtype=torch.long, device=pos.device)
    groups, counts = torch.unique_consecutive(bucket, return_counts=True)
    start = 0
    for group, count in zip(groups.tolist(), counts.tolist()):
        grid_w, grid_h = 1 << (group // 32), 1 << (group % 32)
        # Big triangles are tiled by rows so one chunk never exceeds _CHUNK candidates.
        rows_per_tile = max(1, min(grid_h, _CHUNK // grid_w))
        tris_per_chunk = max(1, _CHUNK // (grid_w * rows_per_tile))
        for lo in range(start, start + count, tris_per_chunk):
            hi = min(lo + tris_per_chunk, start + count)
            for row0 in range(0, grid_h, rows_per_tile):
                _scatter_fragments(keys, setup, lo, hi, row0, min(rows_per_tile, grid_h - row0),
                                   grid_w, height, width)
        start += count

    covered = (keys != _EMPTY_KEY).nonzero().squeeze(1)
    winner = keys.index_select(0, covered) & 0xFFFFFFFF
    return covered, winner


class _Setup(NamedTuple):
    """Per-triangle raster setup of the kept triangles, sorted by bucket."""
    edge: torch.Tensor    # [n, 3, 3] int64 per edge: biased value at the bounding-box origin
    #                       pixel, change per pixel step in x, change per pixel step in y
    depth: torch.Tensor   # [n, 3] float64 z/w at the origin pixel, change per step in x, in y
    ids: torch.Tensor     # [n, 2] int64 flat output index of the origin pixel, instance index
    x0: torch.Tensor      # [n] int64 origin pixel column
    y0: torch.Tensor      # [n] int64 origin pixel row


def _scatter_fragments(keys, s: _Setup, lo, hi, row0, rows, grid_w, height, width):
    """Test triangles ``lo:hi`` on rows ``row0:row0+rows`` of a ``grid_w``-wide grid anchored
    at their bounding-box origins; scatter-min the covered fragments' keys into ``keys``."""
    ox = torch.arange(grid_w, device=keys.device)
    oy = torch.arange(row0, row0 + rows, device=keys.device).unsqueeze(1)
    edge = s.edge[lo:hi, :, :, None, None]
    inside = ((s.x0[lo:hi, None] + ox) < width).unsqueeze(1) \
        & ((s.y0[lo:hi, None, None] + oy) < height)
    for e in range(3):
        inside &= edge[:, e, 0] + edge[:, e, 2] * oy + edge[:, e, 1] * ox >= 0
    t, fy, fx = inside.nonzero().unbind(1)
    t, fy = t + lo, fy + row0
    plane = s.depth.index_select(0, t)
    depth = plane[:, 0] + plane[:, 1] * fx + plane[:, 2] * fy
    ids = s.ids.index_select(0, t)
    pixel = ids[:, 0] + fy * width + fx
    # Nearest depth wins; equal depths go to the lower triangle index. Fragments beyond the
    # near/far planes get the empty key, which never wins.
    key = (((depth.clamp(-1.0, 1.0) + 1.0) * (0.5 * _DEPTH_LEVELS)).long() << 32) | ids[:, 1]
    key = torch.where((depth >= -1.0) & (depth <= 1.0), key, _EMPTY_KEY)
    keys.scatter_reduce_(0, pixel, key, reduce="amin")


def _fill(pos, tri, pos_b, tri_ids, pixel, winner, num_images, height, width, grad_db):
    """Differentiable rast / rast_db for covered pixels ``pixel`` drawn by instances ``winner``."""
    # index_select on a flat view: its backward (index_add) is much faster than index_put's.
    tri_winner = tri_ids.index_select(0, winner)
    flat = (pos_b.index_select(0, winner).unsqueeze(1) * pos.shape[1]
            + tri.index_select(0, tri_winner)).reshape(-1)
    verts = pos.reshape(-1, 4).index_select(0, flat).view(-1, 3, 4)   # [M, 3, 4]
    col = pixel % width
    row = torch.div(pixel, width, rounding_mode="floor") % height
    px = ((2 * col + 1).to(pos.dtype) / width - 1.0).unsqueeze(1)
    py = ((2 * row + 1).to(pos.dtype) / height - 1.0).unsqueeze(1)
    x, y, z, w = verts.unbind(-1)
    # Perspective-correct barycentrics b solve sum b_i (x_i - px w_i) = sum b_i (y_i - py w_i)
    # = 0 with sum b_i = 1: b is the normalised cross product of those two vectors.
    ex, ey = x - px * w, y - py * w
    c = torch.linalg.cross(ex, ey, dim=1)
    s = c.sum(1, keepdim=True)
    s = torch.where(s == 0, torch.ones_like(s), s)
    bary = c / s
    zw = ((bary * z).sum(1) / (bary * w).sum(1)).detach()
    tri_id = (tri_winner + 1).to(pos.dtype)
    values = torch.stack([bary[:, 0], bary[:, 1], zw, tri_id], 1)
    total = num_images * height * width
    rast = pos.new_zeros(total, 4).index_copy(0, pixel, values)

    # d/dX of c = (-w) x ey, d/dY of c = ex x (-w); NDC per pixel is 2/W and 2/H.
    dc_x = torch.linalg.cross(-w, ey, dim=1)
    dc_y = torch.linalg.cross(ex, -w, dim=1)
    db_x = (dc_x - bary * dc_x.sum(1, keepdim=True)) / s * (2.0 / width)
    db_y = (dc_y - bary * dc_y.sum(1, keepdim=True)) / s * (2.0 / height)
    db = torch.stack([db_x[:, 0], db_y[:, 0], db_x[:, 1], db_y[:, 1]], 1)
    if not grad_db:
        db = db.detach()
    rast_db = pos.new_zeros(total, 4).index_copy(0, pixel, db)
    shape = (num_images, height, width, 4)
    return rast.view(shape), rast_db.view(shape)


def _pixel_box(sub, corner, height, width):
    """Pixel-centre bounding box ``(x0, x1, y0, y1)``, each ``[N]`` int64 clamped to the
    image (empty when ``x0 > x1`` or ``y0 > y1``), of triangles ``corner [N, 3]`` (vertex
    rows of ``sub [V, 2]``, snapped subpixel coordinates). Pixel centres sit at
    ``(p + 0.5) * SUBPIXEL``."""
    half = SUBPIXEL // 2
    (ax, ay), (bx, by), (cx, cy) = (sub.index_select(0, corner[:, i]).unbind(1) for i in range(3))
    lo_x, hi_x = torch.minimum(torch.minimum(ax, bx), cx), torch.maximum(torch.maximum(ax, bx), cx)
    lo_y, hi_y = torch.minimum(torch.minimum(ay, by), cy), torch.maximum(torch.maximum(ay, by), cy)
    x0 = _ceil_div(lo_x - half, SUBPIXEL).clamp(min=0)
    x1 = torch.div(hi_x - half, SUBPIXEL, rounding_mode="floor").clamp(max=width - 1)
    y0 = _ceil_div(lo_y - half, SUBPIXEL).clamp(min=0)
    y1 = torch.div(hi_y - half, SUBPIXEL, rounding_mode="floor").clamp(max=height - 1)
    return x0, x1, y0, y1


def _ceil_div(a: torch.Tensor, d: int) -> torch.Tensor:
    return -torch.div(-a, d, rounding_mode="floor")


def _log2_ceil(n: torch.Tensor) -> torch.Tensor:
    """Smallest k with 2**k >= n, for int64 n >= 1."""
    return torch.ceil(torch.log2(n.double())).long()
