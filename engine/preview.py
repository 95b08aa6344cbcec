"""Preview image: the reconstruction over the photo and the three levels side by side.

Panels, left to right: the photo (face crop), the detailed head blended over it, then the
coarse head, coarse + mid, and coarse + mid + high, shaded grey under a fixed studio light,
and finally the albedo under that light. It is a picture for people; nothing reads it back.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from . import render
from .geometry.sh import A0, A1, C0, C1, irradiance
from .geometry.transforms import vertex_normals
from .levels.albedo import linear_to_srgb, srgb_to_linear
from .levels.high import detail_normals
from .render.view import View, crop_photo, interpolate_top_down, render_rast
from .result import FaceReconstruction, to_uint8, triangulate
from .uv.raster import rasterize_uv, sample_map
from .uv.unwrap import observe

GREY = 0.6


def studio_sh(ambient: float = 0.45, key: float = 0.75) -> np.ndarray:
    """``[9, 3]`` SH of white ambient light plus a key light from the upper left of the camera."""
    light = np.array([-0.45, 0.5, 1.0])
    light /= np.linalg.norm(light)
    sh = np.zeros((9, 3), np.float32)
    sh[0] = ambient / (A0 * C0)
    sh[1], sh[2], sh[3] = -key * light[1] / (A1 * C1), key * light[2] / (A1 * C1), -key * light[0] / (A1 * C1)
    return sh


def head_view(result: FaceReconstruction, size: int) -> View:
    """A square view of the whole head in the photo's camera."""
    px = result.camera.project(result.vertices)
    lo, hi = px.min(0), px.max(0)
    side = float((hi - lo).max() * 1.1)
    c = (lo + hi) / 2
    return View(camera=result.camera, box=(float(c[0] - side / 2), float(c[1] - side / 2), side), size=size)


def render_panels(result: FaceReconstruction, photo_srgb: np.ndarray, size: int = 384) -> list[np.ndarray]:
    """The preview's panels, each ``[size, size, 3]`` float sRGB in [0, 1]."""
    ctx = render.make_context(torch.device("cpu"))
    view = head_view(result, size)
    tris = torch.as_tensor(result.triangles())
    uv_tris_np = triangulate(result.face_uvs)
    uv_tris = torch.as_tensor(uv_tris_np)
    rot = torch.as_tensor(result.camera.rotation, dtype=torch.float32)
    sh = torch.as_tensor(studio_sh())
    photo_crop = crop_photo(photo_srgb, view).numpy()

    def shade(vertices: np.ndarray, pixel_normals=None, albedo=None):
        v = torch.as_tensor(vertices, dtype=torch.float32)
        rast = render_rast(ctx, v, tris, view)
        if pixel_normals is None:
            n = vertex_normals(v, tris.long()) @ rot.T
            pixel_normals = interpolate_top_down(n.contiguous(), rast, tris)[0]
        pn = pixel_normals / (pixel_normals.norm(dim=-1, keepdim=True) + 1e-8)
        base = torch.full_like(pn, GREY) if albedo is None else albedo
        colour = linear_to_srgb(np.clip((base * irradiance(pn, sh)).numpy(), 0, 1))
        mask = (rast[0, :, :, 3] > 0).numpy()[..., None]
        return np.where(mask, colour, 0.12), mask, rast

    coarse, _, _ = shade(result.vertices)
    mid, mask, rast = shade(result.detailed_vertices)

    # High level: per-pixel normals from the displacement map through the UV layout.
    uv_size = result.displacement_map.shape[0]
    uv_raster = rasterize_uv(result.uvs, uv_tris_np, (uv_size, uv_size))
    obs = observe(ctx, srgb_to_linear(photo_srgb), result.detailed_vertices, result.triangles(),
                  result.uvs, uv_tris_np, uv_raster,
                  np.full((uv_size, uv_size, 2), -1, np.int32), view)
    normal_map = torch.as_tensor(detail_normals(obs, result.displacement_map))
    pix_uv = interpolate_top_down(torch.as_tensor(result.uvs), rast, uv_tris)[0]
    flat_uv = pix_uv.reshape(-1, 2)
    n_pix = sample_map(normal_map, flat_uv).reshape(size, size, 3)
    high, _, _ = shade(result.detailed_vertices, pixel_normals=n_pix)
    albedo_lin = torch.as_tensor(srgb_to_linear(result.albedo))
    alb_pix = sample_map(albedo_lin, flat_uv).reshape(size, size, 3)
    textured, _, _ = shade(result.detailed_vertices, pixel_normals=n_pix, albedo=alb_pix)
    overlay = np.where(mask, 0.5 * photo_crop + 0.5 * mid, photo_crop)
    return [photo_crop, overlay, coarse, mid, high, textured]


def write_preview(result: FaceReconstruction, photo_srgb: np.ndarray, path: str | Path,
                  size: int = 384) -> Path:
    """Write the preview PNG (panels side by side) and return its path."""
    panels = render_panels(result, photo_srgb, size)
    Image.fromarray(to_uint8(np.concatenate(panels, 1))).save(path)
    return Path(path)
