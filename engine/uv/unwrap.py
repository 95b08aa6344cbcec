"""Unwrap the photo onto the head's UV layout: build a :class:`UVObservation`.

For every texel of the UV map the fitted head gives a surface point (through the
precomputed UV rasterisation); the point is projected into the photo to read its colour,
and tested against the depth buffer of the head rendered from the photo's camera to know
whether the photo really sees it.
"""
from __future__ import annotations

import numpy as np
import torch

from ..geometry.transforms import vertex_normals
from ..render.view import View, interpolate_top_down, render_rast, sample_photo, to_camera
from .observation import UVObservation
from .raster import UVRaster


def face_tangents(vertices: np.ndarray, triangles: np.ndarray, uvs: np.ndarray,
                  uv_triangles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-triangle surface derivatives dP/du and dP/dv ``[T, 3]`` (metres per UV unit)."""
    p = vertices[triangles]                       # [T, 3, 3]
    t = uvs[uv_triangles]                         # [T, 3, 2]
    e1, e2 = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
    d1, d2 = t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]
    det = d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0]
    det = np.where(np.abs(det) < 1e-12, 1e-12, det)[:, None]
    dpdu = (e1 * d2[:, 1:2] - e2 * d1[:, 1:2]) / det
    dpdv = (e2 * d1[:, 0:1] - e1 * d2[:, 0:1]) / det
    return dpdu.astype(np.float32), dpdv.astype(np.float32)


def mirror_texels(uv_raster: UVRaster, triangles: np.ndarray, vertex_uv: np.ndarray,
                  mirror: np.ndarray) -> np.ndarray:
    """``[H, W, 2]`` int32 (row, col) of each texel's mirror texel, -1 outside the layout.

    The mirror UV of a texel interpolates the UVs of the mirror partners of its triangle's
    vertices.
    """
    h, w = uv_raster.coverage.shape
    muv = uv_raster.to_uv(torch.as_tensor(vertex_uv[mirror]), torch.as_tensor(triangles)).numpy()
    col = np.clip(np.floor(muv[..., 0] * w), 0, w - 1).astype(np.int32)
    row = np.clip(np.floor((1.0 - muv[..., 1]) * h), 0, h - 1).astype(np.int32)
    out = np.stack([row, col], -1)
    out[~uv_raster.coverage.numpy()] = -1
    return out


def observe(ctx, photo_linear: np.ndarray, vertices: np.ndarray, triangles: np.ndarray,
            uvs: np.ndarray, uv_triangles: np.ndarray, uv_raster: UVRaster, mirror_map: np.ndarray,
            view: View, skin: torch.Tensor | None = None, depth_tolerance: float = 3e-3,
            grazing: float = 0.15, occluders: np.ndarray | None = None) -> UVObservation:
    """Observe the photo in UV space.

    Args:
        ctx: rasterizer context.
        photo_linear: ``[H, W, 3]`` full-resolution photo, linear RGB.
        vertices: ``[V, 3]`` fitted (mid-level) head, model space, metres.
        triangles: ``[T, 3]`` vertex triangles; ``uv_triangles`` ``[T, 3]`` the matching UV
            triangles into ``uvs [N, 2]`` (the ones ``uv_raster`` was built from).
        uv_raster: precomputed UV rasterisation of the layout.
        mirror_map: ``[H, W, 2]`` mirror texels (:func:`mirror_texels`).
        view: a view of the face used for the visibility depth test (its resolution sets the
            depth test's precision).
        skin: optional ``[S, S]`` weight in ``view``'s crop (1 = skin): texels seen through
            hair, eyes or background get this weight, so detail and albedo come from skin only.
        depth_tolerance: metres a texel may lie behind the depth buffer and still count as seen.
        grazing: view-angle cosine below which a texel's visibility weight is 0.
        occluders: ``[T', 3]`` vertex triangles drawn for the depth test (default
            ``triangles``): parts outside the UV layout that can hide it, such as eyelashes.
    """
    cam = view.camera
    v = torch.as_tensor(vertices, dtype=torch.float32)
    tri = torch.as_tensor(triangles, dtype=torch.int32)
    rot = torch.as_tensor(cam.rotation, dtype=torch.float32)
    v_cam = to_camera(v, cam)
    n_cam = vertex_normals(v, tri.long()) @ rot.T
    tu, tv = face_tangents(vertices, triangles, uvs, uv_triangles)
    position = uv_raster.to_uv(v_cam, tri).numpy()
    normal = uv_raster.to_uv(n_cam, tri).numpy()
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True) + 1e-12
    face_id = uv_raster.triangle.clamp_min(0).numpy()
    rot_np = cam.rotation.astype(np.float32)
    tangent_u, tangent_v = tu[face_id] @ rot_np.T, tv[face_id] @ rot_np.T

    cov = uv_raster.coverage.numpy()
    pts = position[cov]
    depth = -pts[:, 2]
    px = np.stack([cam.focal_px * pts[:, 0] / depth + cam.principal_px[0],
                   -cam.focal_px * pts[:, 1] / depth + cam.principal_px[1]], -1)
    h_img, w_img = photo_linear.shape[:2]
    inside = (px[:, 0] >= 0) & (px[:, 0] < w_img) & (px[:, 1] >= 0) & (px[:, 1] < h_img)
    color = np.zeros_like(position)
    color[cov] = sample_photo(photo_linear, px)

    with torch.no_grad():
        drawn_tri = tri if occluders is None else torch.as_tensor(occluders, dtype=torch.int32)
        rast = render_rast(ctx, v, drawn_tri, view)
        zbuf = interpolate_top_down((-v_cam[:, 2:3]).contiguous(), rast, drawn_tri)[0, :, :, 0].numpy()
        drawn = rast[0, :, :, 3].numpy() > 0
    col, row = np.floor(view.to_crop(px)).astype(np.int64).T
    in_view = (col >= 0) & (col < view.size) & (row >= 0) & (row < view.size)
    col, row = np.clip(col, 0, view.size - 1), np.clip(row, 0, view.size - 1)
    unoccluded = in_view & drawn[row, col] & (depth <= zbuf[row, col] + depth_tolerance)
    view_dir = -pts / np.linalg.norm(pts, axis=-1, keepdims=True)
    cos = (normal[cov] * view_dir).sum(-1)
    weight = np.clip((cos - grazing) / (1.0 - grazing), 0.0, 1.0)
    visibility = np.zeros(cov.shape, np.float32)
    if skin is not None:
        weight = weight * skin.numpy()[row, col]
    visibility[cov] = np.where(inside & unoccluded, weight, 0.0)
    return UVObservation(color=np.clip(color, 0, 1), position=position, normal=normal,
                         tangent_u=tangent_u, tangent_v=tangent_v, visibility=visibility,
                         coverage=cov, mirror=mirror_map)
