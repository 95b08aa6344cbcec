"""Mid-frequency level: a UV-space deformation map fitted by analysis-by-synthesis.

The deformation map ``D [R, R, 3]`` holds model-space offsets (metres) in the head's UV
layout; each vertex of the subdivided head moves by ``D`` sampled at its UV. ``D`` is fitted
so that the shaded, rendered head matches the photo (photometric term, robust Charbonnier),
while its landmarks stay on the detected ones, under two detail priors: smoothness (squared
differences of neighbouring texels) and magnitude (L2). The albedo used for shading is a
low-pass of the de-lit photo, so shading variations are explained by geometry and colour
variations are not. Gradients come from the differentiable rasterizer (engine.render).
With several photos one map is fitted to all of them (each with its own pose, expression,
lighting and albedo), as MV-HRN's shared canonical deformation.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch

from ..errors import Cancelled
from ..geometry.sh import irradiance
from ..geometry.transforms import project, vertex_normals
from ..progress import ProgressCallback, Stage
from ..render.view import View, interpolate_top_down, render_rast, to_camera
from ..uv.raster import sample_map


@dataclass(frozen=True)
class DeformationWeights:
    """Weights of the mid-level terms (photometric error is in linear RGB units)."""

    #: Off by default: on renders of a known head (tests/test_multiview.py) pulling the
    #: deformation toward MediaPipe's landmarks raised the shape error from 1.57 mm (0.0) to
    #: 1.92 mm (0.2) and 2.12 mm (2.0): the landmarks' own bias gets carved into the face.
    landmarks: float = 0.0
    smoothness: float = 0.3
    magnitude: float = 0.001
    #: On the squared difference (mm²) of the map at the two UVs of a seam vertex: without it
    #: the islands' borders move apart (measured: 1.8 mm steps across the face island's seam).
    seams: float = 1.0


@dataclass(frozen=True)
class DeformationFit:
    """Attributes:
        deformation_map: ``[R, R, 3]`` float32 model-space offsets in metres (UV layout).
        photometric_before: per view, robust photometric error of the coarse head.
        photometric_after: per view, the same error after the fit.
    """

    deformation_map: np.ndarray
    photometric_before: tuple[float, ...]
    photometric_after: tuple[float, ...]


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


@dataclass(frozen=True)
class DeformationView:
    """One photo's part of the fit.

    Attributes:
        vertices: ``[V, 3]`` coarse (subdivided) head of this photo (shared identity, this
            photo's expression), model space, metres.
        view: the face crop view of the photo.
        photo_crop: ``[S, S, 3]`` linear RGB photo resampled into the view (top-down).
        pixel_weight: ``[S, S]`` weight of each crop pixel (0 outside the skin region).
        vertex_albedo: ``[V, 3]`` low-pass linear albedo per vertex, de-lit from this photo.
        sh: ``[9, 3]`` SH lighting of this photo (camera space).
        landmarks: 2D landmark targets on this mesh.
    """

    vertices: np.ndarray
    view: View
    photo_crop: torch.Tensor
    pixel_weight: torch.Tensor
    vertex_albedo: np.ndarray
    sh: np.ndarray
    landmarks: LandmarkTarget


class _ViewTerms:
    """The photometric and landmark terms of one photo, as torch closures."""

    def __init__(self, ctx, v: DeformationView, tri: torch.Tensor) -> None:
        dt = torch.float32
        self.ctx, self.view, self.tri, self.tri_l = ctx, v.view, tri, tri.long()
        self.v0 = torch.as_tensor(v.vertices, dtype=dt)
        self.albedo = torch.as_tensor(v.vertex_albedo, dtype=dt)
        self.sh = torch.as_tensor(v.sh, dtype=dt)
        self.rot = torch.as_tensor(v.view.camera.rotation, dtype=dt)
        self.photo, self.pixel_weight = v.photo_crop, v.pixel_weight
        self.wsum = float(v.pixel_weight.sum()) + 1e-6
        lm = v.landmarks
        self.lm_tri = torch.as_tensor(lm.triangles, dtype=torch.long)
        self.lm_bary = torch.as_tensor(lm.barycentrics, dtype=dt)
        self.lm_w = torch.as_tensor(lm.weights / lm.weights.sum(), dtype=dt)
        self.lm_px = torch.as_tensor(lm.points_px, dtype=dt)
        self.face_px = float(np.linalg.norm(lm.points_px.max(0) - lm.points_px.min(0)))

    def photometric(self, v: torch.Tensor) -> torch.Tensor:
        rast = render_rast(self.ctx, v, self.tri, self.view)
        normals = vertex_normals(v, self.tri_l) @ self.rot.T
        attr = torch.cat([self.albedo, normals], -1)[None]
        pix = interpolate_top_down(attr.contiguous(), rast, self.tri)[0]
        n = pix[..., 3:] / (pix[..., 3:].norm(dim=-1, keepdim=True) + 1e-8)
        shaded = pix[..., :3] * irradiance(n, self.sh)
        mask = (rast[0, :, :, 3] > 0).to(v.dtype) * self.pixel_weight
        diff = shaded - self.photo
        return (mask * torch.sqrt((diff * diff).sum(-1) + 1e-6)).sum() / self.wsum

    def landmark(self, v: torch.Tensor) -> torch.Tensor:
        pts = (v[self.lm_tri] * self.lm_bary[:, :, None]).sum(1)
        cam = self.view.camera
        px = project(to_camera(pts, cam), cam.focal_px, cam.principal_px)
        return (self.lm_w * ((px - self.lm_px) ** 2).sum(-1)).sum() / self.face_px ** 2


def fit_deformation(ctx, triangles: np.ndarray, vertex_uv: np.ndarray, views: Sequence[DeformationView],
                    resolution: int = 128, iterations: int = 60,
                    weights: DeformationWeights = DeformationWeights(),
                    vertex_weight: Optional[np.ndarray] = None,
                    seam_uvs: Optional[np.ndarray] = None,
                    progress: Optional[ProgressCallback] = None) -> DeformationFit:
    """Fit one deformation map, shared by all the photos of ``views``.

    The loss is the mean over photos of each photo's photometric and landmark terms, plus
    the map's priors once, so the balance between data and priors does not depend on the
    number of photos; one photo is the single-view fit. Each photo's head (its own
    expression, pose, lighting and albedo) moves by the same map, as in MV-HRN's canonical
    deformation: the map lives in the unposed model frame.

    Args:
        ctx: rasterizer context (engine.render.make_context).
        triangles: ``[T, 3]`` int triangles of the (subdivided) head.
        vertex_uv: ``[V, 2]`` one UV per vertex.
        views: one :class:`DeformationView` per photo (at least one).
        resolution: side of the deformation map in texels.
        iterations: Adam iterations.
        vertex_weight: optional ``[V]`` factor on each vertex's offset (0 keeps a part rigid,
            e.g. the eyeballs).
        seam_uvs: optional ``[P, 2, 2]`` UV pairs that are one surface point
            (mesh_ops.seam_uv_pairs); the map is held equal at both.
        progress: ``(stage, fraction)`` callback; False cancels.
    """
    if not views:
        raise ValueError("fit_deformation: no views given.")
    dt = torch.float32
    tri = torch.as_tensor(triangles, dtype=torch.int32)
    uv = torch.as_tensor(vertex_uv, dtype=dt)
    terms = [_ViewTerms(ctx, v, tri) for v in views]

    unit = 1e-3  # the map's parameters are in millimetres, so Adam steps are well scaled
    param = torch.zeros(resolution, resolution, 3, dtype=dt, requires_grad=True)
    opt = torch.optim.Adam([param], lr=0.05)

    scale = None if vertex_weight is None else torch.as_tensor(vertex_weight, dtype=dt)

    def offsets():
        return _offsets(param * unit, uv, scale)

    seam_a, seam_b = ((None, None) if seam_uvs is None or len(seam_uvs) == 0 else
                      (torch.as_tensor(seam_uvs[:, 0], dtype=dt), torch.as_tensor(seam_uvs[:, 1], dtype=dt)))

    def priors() -> torch.Tensor:
        dx = param[:, 1:] - param[:, :-1]
        dy = param[1:] - param[:-1]
        loss = (weights.smoothness * ((dx * dx).mean() + (dy * dy).mean())
                + weights.magnitude * (param * param).mean())
        if seam_a is not None:
            step = sample_map(param, seam_a) - sample_map(param, seam_b)
            loss = loss + weights.seams * (step * step).sum(-1).mean()
        return loss

    with torch.no_grad():
        before = tuple(float(t.photometric(t.v0)) for t in terms)
    steps = iterations * len(terms)
    for it in range(iterations):
        opt.zero_grad()
        off = offsets()
        priors().backward(retain_graph=True)
        # One backward pass per photo keeps only one photo's render graph in memory.
        for k, t in enumerate(terms):
            v = t.v0 + off
            data = t.photometric(v)
            if weights.landmarks > 0:
                data = data + weights.landmarks * 1e3 * t.landmark(v)
            data = data / len(terms)
            data.backward(retain_graph=k + 1 < len(terms))
            if progress is not None and progress(Stage.FITTING_MID,
                                                 (it * len(terms) + k + 1) / steps) is False:
                raise Cancelled("Cancelled while fitting mid-frequency detail.")
        opt.step()
    with torch.no_grad():
        off = offsets()
        after = tuple(float(t.photometric(t.v0 + off)) for t in terms)
    return DeformationFit(deformation_map=(param.detach() * unit).numpy().astype(np.float32),
                          photometric_before=before, photometric_after=after)


def _offsets(deformation_map: torch.Tensor, vertex_uv: torch.Tensor,
             vertex_weight: Optional[torch.Tensor]) -> torch.Tensor:
    off = sample_map(deformation_map, vertex_uv)
    return off if vertex_weight is None else off * vertex_weight[:, None]


def sample_deformation(deformation_map: np.ndarray, vertex_uv: np.ndarray,
                       vertex_weight: Optional[np.ndarray] = None) -> np.ndarray:
    """``[V, 3]`` float32 vertex offsets (metres) of any mesh in the head's UV layout (e.g. a
    finer subdivision than the one fitted), from ``deformation_map [R, R, 3]`` sampled at
    ``vertex_uv [V, 2]``, times the optional ``vertex_weight [V]`` (as in fit_deformation)."""
    t = lambda a: None if a is None else torch.as_tensor(np.asarray(a, np.float32))  # noqa: E731
    with torch.no_grad():
        return _offsets(t(deformation_map), t(vertex_uv), t(vertex_weight)).numpy()


#: View-angle cosines between which a vertex's confidence ramps from 0 to 1.
CONFIDENCE_COSINE = (0.25, 0.65)


def vertex_confidence(ctx, triangles: np.ndarray, vertices: Sequence[np.ndarray], views: Sequence[View],
                      adjacency) -> np.ndarray:
    """``[V]`` float32 in [0, 1]: how well the photos constrain each vertex's shape.

    Per photo, a vertex counts when the photo sees it (depth test) and by how squarely: 0 at a
    view-angle cosine of :data:`CONFIDENCE_COSINE` [0] or below (grazing: the outer cheeks of
    a frontal photo, the back of the head), 1 from [1] on; the best photo counts. Smoothed
    over the mesh (``adjacency``, a few rounds) so the mid level fades out gently. The mid
    level's offsets are scaled by it: where no photo shows the surface the deformation map's
    guesses are left out (on the scan benchmark's frontal render the unfaded mid level raised
    the outer cheeks' error from 1.35 to 1.82 mm)."""
    from ..geometry.mesh_ops import smooth_weighted
    from ..render.view import visible_vertices

    best = np.zeros(len(vertices[0]), np.float32)
    tri = torch.as_tensor(triangles)
    for verts, view in zip(vertices, views):
        v = torch.as_tensor(np.asarray(verts, np.float32))
        seen = visible_vertices(ctx, v, tri, view)
        cam = to_camera(v, view.camera)
        normal = vertex_normals(v, tri.long()) @ torch.as_tensor(view.camera.rotation, dtype=torch.float32).T
        cos = (-(normal * cam).sum(-1) / (cam.norm(dim=-1) + 1e-12)).numpy()
        lo, hi = CONFIDENCE_COSINE
        best = np.maximum(best, seen * np.clip((cos - lo) / (hi - lo), 0.0, 1.0))
    smooth = smooth_weighted(best[:, None], np.ones_like(best), adjacency, iterations=4, fill=np.zeros(1))
    return np.clip(smooth[:, 0], 0.0, 1.0).astype(np.float32)
