"""Mid-frequency level: a UV-space deformation map fitted by analysis-by-synthesis.

The deformation map ``D [R, R, 3]`` holds model-space offsets (metres) in the head's UV
layout; each vertex of the subdivided head moves by ``D`` sampled at its UV. ``D`` is fitted
so that the shaded, rendered head matches the photo (photometric term, robust Charbonnier),
while its landmarks stay on the detected ones, under two detail priors: smoothness (squared
differences of neighbouring texels) and magnitude (L2). The albedo used for shading is a
low-pass of the de-lit photo, so shading variations are explained by geometry and colour
variations are not. Gradients come from the differentiable rasterizer (engine.render).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from .errors import Cancelled
from .geometry import project, vertex_normals
from .progress import ProgressCallback
from .sh import irradiance
from .uv_raster import sample_map
from .view import View, interpolate_top_down, render_rast, to_camera


@dataclass(frozen=True)
class DeformationWeights:
    """Weights of the mid-level terms (photometric error is in linear RGB units)."""

    landmarks: float = 2.0
    smoothness: float = 0.3
    magnitude: float = 0.001


@dataclass(frozen=True)
class DeformationFit:
    """Attributes:
        deformation_map: ``[R, R, 3]`` float32 model-space offsets in metres (UV layout).
        vertex_offsets: ``[V, 3]`` float32 the map sampled at the vertices (metres).
        photometric_before: robust photometric error of the coarse head.
        photometric_after: the same error after the fit.
    """

    deformation_map: np.ndarray
    vertex_offsets: np.ndarray
    photometric_before: float
    photometric_after: float


@dataclass(frozen=True)
class LandmarkTarget:
    """Detected landmarks and where they sit on the mesh.

    Attributes:
        points_px: ``[L, 2]`` detected positions in photo pixels.
        triangles: ``[L, 3]`` vertex ids of the triangle holding each landmark.
        barycentrics: ``[L, 3]`` barycentric weights inside that triangle.
        weights: ``[L]`` per-landmark weights.
    """

    points_px: np.ndarray
    triangles: np.ndarray
    barycentrics: np.ndarray
    weights: np.ndarray


def fit_deformation(ctx, vertices: np.ndarray, triangles: np.ndarray, vertex_uv: np.ndarray,
                    view: View, photo_crop: torch.Tensor, pixel_weight: torch.Tensor,
                    vertex_albedo: np.ndarray, sh: np.ndarray, landmarks: LandmarkTarget,
                    resolution: int = 128, iterations: int = 60,
                    weights: DeformationWeights = DeformationWeights(),
                    progress: Optional[ProgressCallback] = None) -> DeformationFit:
    """Fit the deformation map.

    Args:
        ctx: rasterizer context (engine.render.make_context).
        vertices: ``[V, 3]`` coarse (subdivided) head in model space, metres.
        triangles: ``[T, 3]`` int triangles.
        vertex_uv: ``[V, 2]`` one UV per vertex.
        view: the face crop view of the photo.
        photo_crop: ``[S, S, 3]`` linear RGB photo resampled into the view (top-down).
        pixel_weight: ``[S, S]`` weight of each crop pixel (0 outside the skin region).
        vertex_albedo: ``[V, 3]`` low-pass linear albedo per vertex.
        sh: ``[9, 3]`` SH lighting (camera space).
        landmarks: 2D landmark targets on this mesh.
        resolution: side of the deformation map in texels.
        iterations: Adam iterations.
        progress: ``(stage, fraction)`` callback; False cancels.
    """
    dt = torch.float32
    v0 = torch.as_tensor(vertices, dtype=dt)
    tri = torch.as_tensor(triangles, dtype=torch.int32)
    tri_l = tri.long()
    uv = torch.as_tensor(vertex_uv, dtype=dt)
    albedo = torch.as_tensor(vertex_albedo, dtype=dt)
    sh_t = torch.as_tensor(sh, dtype=dt)
    rot = torch.as_tensor(view.camera.rotation, dtype=dt)
    lm_tri = torch.as_tensor(landmarks.triangles, dtype=torch.long)
    lm_bary = torch.as_tensor(landmarks.barycentrics, dtype=dt)
    lm_w = torch.as_tensor(landmarks.weights / landmarks.weights.sum(), dtype=dt)
    lm_px = torch.as_tensor(landmarks.points_px, dtype=dt)
    face_px = float(np.linalg.norm(landmarks.points_px.max(0) - landmarks.points_px.min(0)))
    wsum = float(pixel_weight.sum()) + 1e-6

    unit = 1e-3  # the map's parameters are in millimetres, so Adam steps are well scaled
    param = torch.zeros(resolution, resolution, 3, dtype=dt, requires_grad=True)
    opt = torch.optim.Adam([param], lr=0.05)

    def offsets():
        return sample_map(param * unit, uv)

    def photometric(v: torch.Tensor) -> torch.Tensor:
        rast = render_rast(ctx, v, tri, view)
        normals = vertex_normals(v, tri_l) @ rot.T
        attr = torch.cat([albedo, normals], -1)[None]
        pix = interpolate_top_down(attr.contiguous(), rast, tri)[0]
        n = pix[..., 3:] / (pix[..., 3:].norm(dim=-1, keepdim=True) + 1e-8)
        shaded = pix[..., :3] * irradiance(n, sh_t)
        mask = (rast[0, :, :, 3] > 0).to(dt) * pixel_weight
        diff = shaded - photo_crop
        return (mask * torch.sqrt((diff * diff).sum(-1) + 1e-6)).sum() / wsum

    def landmark_term(v: torch.Tensor) -> torch.Tensor:
        pts = (v[lm_tri] * lm_bary[:, :, None]).sum(1)
        px = project(to_camera(pts, view.camera), view.camera.focal_px, view.camera.principal_px)
        return (lm_w * ((px - lm_px) ** 2).sum(-1)).sum() / face_px ** 2

    def priors() -> tuple[torch.Tensor, torch.Tensor]:
        dx = param[:, 1:] - param[:, :-1]
        dy = param[1:] - param[:-1]
        return (dx * dx).mean() + (dy * dy).mean(), (param * param).mean()

    with torch.no_grad():
        before = float(photometric(v0))
    for it in range(iterations):
        opt.zero_grad()
        v = v0 + offsets()
        smooth, mag = priors()
        loss = photometric(v) + weights.landmarks * 1e3 * landmark_term(v) \
            + weights.smoothness * smooth + weights.magnitude * mag
        loss.backward()
        opt.step()
        if progress is not None and progress("Fitting mid-frequency detail", (it + 1) / iterations) is False:
            raise Cancelled("Cancelled while fitting mid-frequency detail.")
    with torch.no_grad():
        off = offsets()
        after = float(photometric(v0 + off))
    return DeformationFit(deformation_map=(param.detach() * unit).numpy().astype(np.float32),
                          vertex_offsets=off.numpy().astype(np.float32),
                          photometric_before=before, photometric_after=after)
