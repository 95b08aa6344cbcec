"""The single-view hierarchical reconstruction, stage by stage.

photo -> landmarks (MediaPipe) -> coarse head (pose, identity, expression) -> SH lighting
and base albedo -> mid-frequency deformation map (analysis-by-synthesis through the
rasterizer) -> photo unwrapped into UV space -> high-frequency displacement map (from
shading) -> de-lit, de-retouched albedo -> :class:`FaceReconstruction`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter

from . import render
from .albedo import estimate_albedo, srgb_to_linear
from .coarse import default_focal_px, fit_coarse
from .deformation import LandmarkTarget, fit_deformation
from .displacement import detail_normals, fit_displacement
from .errors import DeviceError, EngineError
from .head_model import HeadModel, load_head_model
from .image_io import Photo, load_photo
from .landmarks import CONTOUR, LEFT_EYE, LIPS, RIGHT_EYE, FaceLandmarks, detect_landmarks
from .lighting import fit_lighting
from .mesh_ops import smooth_weighted, vertex_adjacency, vertex_uvs
from .progress import Progress, ProgressCallback
from .result import FaceReconstruction, ViewRecord, triangulate
from .sh import irradiance
from .unwrap import mirror_texels, observe
from .uv_raster import rasterize_uv
from .view import View, crop_photo, face_view, sample_photo, to_camera, visible_vertices

ENGINE_VERSION = "0.1.0"


@dataclass(frozen=True)
class QualitySettings:
    """Resolutions and iteration counts of one quality preset."""

    coarse_iterations: int
    mid_iterations: int
    render_size: int            # side of the face crop rendered for the photometric fit, px
    deformation_size: int       # side of the deformation map, texels
    uv_size: int                # side of the displacement and albedo maps, texels
    high_iterations: int
    subdivision: int            # Catmull-Clark levels applied to the head model


QUALITY = {
    "fast": QualitySettings(400, 60, 256, 128, 512, 40, 2),
    "high": QualitySettings(600, 150, 384, 128, 1024, 80, 2),
}


@dataclass(frozen=True)
class ReconstructionOptions:
    """Attributes:
        device: "auto" (CUDA when available), "cpu" or "cuda".
        quality: "fast" (512² maps) or "high" (1024² maps, more iterations).
        head_model: path of a head model .npz; None = the built-in model.
        weights_dir: folder of the official HRN release; None = the built-in offline model.
    """

    device: str = "auto"
    quality: str = "fast"
    head_model: Optional[Path] = None
    weights_dir: Optional[Path] = None

    def __post_init__(self) -> None:
        if self.device not in ("auto", "cpu", "cuda"):
            raise EngineError(f"Unknown device '{self.device}'; use auto, cpu or cuda.")
        if self.quality not in QUALITY:
            raise EngineError(f"Unknown quality '{self.quality}'; use one of {', '.join(QUALITY)}.")


STAGES = (("Loading photo", 1), ("Detecting face", 4), ("Fitting head shape", 4),
          ("Estimating lighting", 3), ("Fitting mid-frequency detail", 45),
          ("Unwrapping texture", 6), ("Fitting high-frequency detail", 25),
          ("Estimating albedo", 8), ("Assembling result", 4))


def resolve_device(name: str) -> torch.device:
    """"auto" -> CUDA when available, else CPU; "cuda" without CUDA -> DeviceError."""
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceError("CUDA was requested but torch sees no CUDA device; use --device cpu "
                          "or install a CUDA build of torch.")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def skin_mask(points_px: np.ndarray, view: View, feather: float = 0.0) -> torch.Tensor:
    """``[S, S]`` float mask of the face skin in the view: inside the face oval, outside the
    eyes and the mouth (their colours are not skin); edges blurred by ``feather`` × size."""
    s = view.size / view.box[2]
    to_crop = lambda idx: [tuple(p) for p in ((points_px[idx, :2] - view.box[:2]) * s)]  # noqa: E731
    img = Image.new("L", (view.size, view.size), 0)
    draw = ImageDraw.Draw(img)
    draw.polygon(to_crop(CONTOUR), fill=255)
    for group in (LEFT_EYE, RIGHT_EYE, LIPS):
        hull = _convex_hull(points_px[group, :2])
        draw.polygon(to_crop(group[hull]), fill=0)
    if feather > 0:
        img = img.filter(ImageFilter.GaussianBlur(feather * view.size))
    return torch.as_tensor(np.asarray(img, np.float32) / 255.0)


def _convex_hull(points: np.ndarray) -> np.ndarray:
    from scipy.spatial import ConvexHull

    return ConvexHull(points).vertices


def reconstruct(photos: Sequence[str | Path], options: ReconstructionOptions = ReconstructionOptions(),
                progress: Optional[ProgressCallback] = None) -> FaceReconstruction:
    """Reconstruct a head from photos of one face (one photo for now).

    Raises:
        ImageReadError, NoFaceError, ModelFilesError, DeviceError, Cancelled (all EngineError).
    """
    if options.weights_dir is not None:
        raise EngineError("Reconstruction with the official HRN weights is not available in this "
                          "version yet; use the built-in model (leave the weights folder empty).")
    if len(photos) != 1:
        raise EngineError("Multi-view reconstruction is not available yet: give exactly one photo.")
    prog = Progress(progress, STAGES)
    t_start = time.perf_counter()
    prog.update("Loading photo")
    photo = load_photo(photos[0])
    prog.update("Detecting face")
    landmarks = detect_landmarks(photo)
    model = load_head_model(options.head_model)
    device = resolve_device(options.device)
    return reconstruct_view(photo, landmarks, model, QUALITY[options.quality], device, prog,
                            options, t_start)


def reconstruct_view(photo: Photo, landmarks: FaceLandmarks, model: HeadModel,
                     settings: QualitySettings, device: torch.device, prog: Progress,
                     options: ReconstructionOptions, t_start: float) -> FaceReconstruction:
    """Every stage after detection, for one photo (see the module docstring)."""
    ctx = render.make_context(device)
    timings = {}

    def mark(name: str) -> None:
        timings[name] = round(time.perf_counter() - t_start - sum(timings.values()), 3)

    linear = srgb_to_linear(photo.rgb)
    focal = default_focal_px(landmarks.image_size)
    coarse = fit_coarse(model, landmarks, focal, settings.coarse_iterations,
                        progress=prog.sub("Fitting head shape", 0.0, 1.0))
    camera = coarse.camera
    mark("coarse")

    # Lighting and a low-pass albedo per vertex, from the coarse head.
    prog.update("Estimating lighting")
    head = model.subdivided(settings.subdivision)
    tris = head.triangles()
    verts = head.shape(coarse.identity, coarse.expression)
    view = face_view(camera, landmarks.points[:, :2], settings.render_size)
    v_t = torch.as_tensor(verts)
    tri_t = torch.as_tensor(tris)
    seen = visible_vertices(ctx, v_t, tri_t, view)
    from .geometry import vertex_normals

    normals = (vertex_normals(v_t, tri_t.long()) @ torch.as_tensor(camera.rotation, dtype=torch.float32).T).numpy()
    colours = sample_photo(linear, camera.project(verts))
    facing = np.clip(-(normals * _unit(to_camera(v_t, camera).numpy())).sum(-1), 0, 1)
    weight = seen * head.regions["face"] * (~head.regions["eyes"]) * (~head.regions["lips"]) * facing
    lighting = fit_lighting(normals, colours, weight)
    delit = colours / np.maximum(irradiance(normals, lighting.sh), 0.05)
    adjacency = vertex_adjacency(tris, head.n_vertices)
    vertex_albedo = smooth_weighted(delit, weight, adjacency, iterations=12, fill=lighting.base_albedo)
    mark("lighting")

    # Mid frequency.
    lm_use = head.landmark_weights > 0
    target = LandmarkTarget(points_px=landmarks.points[lm_use, :2],
                            triangles=tris[head.landmark_faces[lm_use]],
                            barycentrics=head.landmark_barycentrics[lm_use],
                            weights=head.landmark_weights[lm_use])
    vuv = vertex_uvs(head.faces, head.face_uvs, head.uvs, head.n_vertices)
    mid = fit_deformation(ctx, verts, tris, vuv, view, crop_photo(linear, view),
                          skin_mask(landmarks.points, view), vertex_albedo, lighting.sh, target,
                          resolution=settings.deformation_size, iterations=settings.mid_iterations,
                          progress=prog.sub("Fitting mid-frequency detail", 0.0, 1.0))
    mark("mid")

    # Unwrap into UV space at the detail resolution.
    prog.update("Unwrapping texture")
    uv_tris = triangulate(head.face_uvs)
    uv_raster = rasterize_uv(head.uvs, uv_tris, (settings.uv_size, settings.uv_size))
    mirror = mirror_texels(uv_raster, tris, vuv, head.mirror)
    detail_view = face_view(camera, landmarks.points[:, :2], min(1024, 2 * settings.uv_size))
    obs = observe(ctx, linear, verts + mid.vertex_offsets, tris, head.uvs, uv_tris, uv_raster,
                  mirror, detail_view, skin=skin_mask(landmarks.points, detail_view, feather=0.01))
    mark("unwrap")

    displacement = fit_displacement(obs, lighting.sh, iterations=settings.high_iterations,
                                    progress=prog.sub("Fitting high-frequency detail", 0.0, 1.0))
    mark("high")
    prog.update("Estimating albedo")
    albedo, confidence = estimate_albedo(obs, lighting.sh, detail_normal=detail_normals(obs, displacement))
    mark("albedo")

    prog.update("Assembling result")
    view_record = ViewRecord(image_path=photo.path, used=True, camera=camera,
                             expression=coarse.expression, sh_lighting=lighting.sh,
                             landmarks=landmarks.points[:, :2].astype(np.float32))
    result = FaceReconstruction(
        vertices=verts.astype(np.float32), mid_offsets=mid.vertex_offsets, faces=head.faces,
        uvs=head.uvs, face_uvs=head.face_uvs, deformation_map=mid.deformation_map,
        displacement_map=displacement.astype(np.float32), albedo=albedo.astype(np.float32),
        albedo_confidence=confidence.astype(np.float32), camera=camera,
        identity=coarse.identity, expression=coarse.expression,
        expression_names=head.expression_names, expression_deltas=head.expression_basis,
        sh_lighting=lighting.sh, views=(view_record,),
        metadata={
            "engine_version": ENGINE_VERSION, "head_model": "MakeHuman/MPFB2 CC0 head (built-in)",
            "device": str(device), "rasterizer": type(ctx).__name__, "quality": options.quality,
            "landmark_rms_px": coarse.landmark_rms_px,
            "photometric_error": {"coarse": mid.photometric_before, "mid": mid.photometric_after},
            "lighting_residual_rms": lighting.residual_rms, "timings_s": timings,
        },
        warnings=landmarks.warnings)
    prog.update("Assembling result", 1.0)
    return result


def _unit(v: np.ndarray) -> np.ndarray:
    return v / (np.linalg.norm(v, axis=-1, keepdims=True) + 1e-12)
