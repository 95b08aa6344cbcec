"""The hierarchical reconstruction from one or more photos, stage by stage.

photos -> landmarks (MediaPipe) per photo -> [several photos: identities fitted alone and
compared, see engine.levels.multiview] -> coarse head (one identity; pose and expression per photo)
-> SH lighting and base albedo per photo -> one mid-frequency deformation map fitted to all
photos (analysis-by-synthesis through the rasterizer) -> per photo: photo unwrapped into UV
space, high-frequency displacement map (from shading), de-lit albedo -> [several photos:
maps fused by visibility and view angle] -> :class:`FaceReconstruction`.
One photo is the single-view case of the same code.
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
from .detect.face_region import convex_hull, unoccluded
from .detect.landmarks import CONTOUR, LEFT_EYE, LIPS, RIGHT_EYE, FaceLandmarks, detect_landmarks
from .errors import DeviceError, EngineError, ModelFilesError, NoFaceError
from .geometry.mesh_ops import seam_uv_pairs, smooth_weighted, vertex_adjacency
from .geometry.sh import irradiance
from .geometry.transforms import vertex_normals
from .head.linear import load_head
from .head.model import HeadModel
from .io.image_io import Photo, load_photo
from .levels.albedo import estimate_albedo, linear_to_srgb, srgb_to_linear
from .levels.coarse import default_focal_px, fit_coarse
from .levels.eyes import eye_centres, iris_radius, measure_eyes
from .levels.high import detail_normals, fit_displacement, lowpass_albedo, shading_error
from .levels.lighting import LightingFit, fit_lighting, shading_free_albedo
from .levels.mid import (DeformationView, LandmarkTarget, fit_deformation, sample_deformation,
                         vertex_confidence)
from .levels.multiview import OUTLIER_DISTANCE_M, check_identities, fuse_albedo, fuse_weighted, reference_view
from .progress import Progress, ProgressCallback, Stage, per_photo
from .render.view import View, crop_photo, face_view, sample_photo, to_camera, visible_vertices
from .result import FaceReconstruction, ViewRecord, triangulate
from .uv.raster import rasterize_uv
from .uv.unwrap import mirror_texels, observe

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
    mid_subdivision: int        # levels of the head on which lighting and the mid level are fitted


QUALITY = {
    "fast": QualitySettings(400, 40, 256, 64, 512, 40, 1, 0),
    "high": QualitySettings(600, 100, 384, 64, 1024, 80, 1, 1),
}


@dataclass(frozen=True)
class ReconstructionOptions:
    """Attributes:
        device: "auto" (CUDA when available), "cpu" or "cuda".
        quality: "fast" (512² maps) or "high" (1024² maps, more iterations).
        head_model: the head to fit (:func:`load_model`): None = the built-in ICT head; a head
            model file (.npz, tools/build_ict_head.py's format); or the official HRN release
            folder, to fit its Basel Face Model.
        weights_dir: folder of the official HRN release (single photo only, through
            engine.hrn_official); None = the built-in offline model.
        face_index: which face to use in photos with several: None = the largest; N = face N
            counting from 0 left to right (engine.detect.landmarks.detect_landmarks); every photo.
        alignment: with ``weights_dir``, where the five crop-alignment points come from:
            "auto" (the official detector chain when its files are in ``weights_dir``),
            "official" or "mediapipe" (engine.hrn_official.model.OfficialHRN.load).
    """

    device: str = "auto"
    quality: str = "fast"
    head_model: Optional[Path] = None
    weights_dir: Optional[Path] = None
    face_index: Optional[int] = None
    alignment: str = "auto"

    def __post_init__(self) -> None:
        if self.device not in ("auto", "cpu", "cuda"):
            raise EngineError(f"Unknown device '{self.device}'; use auto, cpu or cuda.")
        if self.quality not in QUALITY:
            raise EngineError(f"Unknown quality '{self.quality}'; use one of {', '.join(QUALITY)}.")
        if self.alignment not in ("auto", "official", "mediapipe"):
            raise EngineError(f"Unknown alignment '{self.alignment}'; use auto, official or mediapipe.")


STAGES = ((Stage.LOADING_PHOTO, 1), (Stage.DETECTING_FACE, 4), (Stage.FITTING_HEAD_SHAPE, 4),
          (Stage.ESTIMATING_LIGHTING, 3), (Stage.FITTING_MID, 45),
          (Stage.UNWRAPPING_TEXTURE, 6), (Stage.FITTING_HIGH, 25),
          (Stage.ESTIMATING_ALBEDO, 8), (Stage.ASSEMBLING_RESULT, 4))
"""Stages of a single-view run and their relative run times."""

_PER_PHOTO = {Stage.LOADING_PHOTO, Stage.DETECTING_FACE, Stage.ESTIMATING_LIGHTING,
              Stage.UNWRAPPING_TEXTURE, Stage.FITTING_HIGH, Stage.ESTIMATING_ALBEDO}


def stages(count: int) -> tuple[tuple[str, float], ...]:
    """``(name, weight)`` of every progress stage of a run on ``count`` photos, in run order:
    per-photo stages once per photo, shared ones (scaled by the number of photos) once."""
    if count == 1:
        return STAGES
    weight = {**dict(STAGES), Stage.COMPARING_FACES: 1, Stage.FUSING_VIEWS: 2}
    out = []
    for names in ((Stage.LOADING_PHOTO, Stage.DETECTING_FACE),
                  (Stage.COMPARING_FACES, Stage.FITTING_HEAD_SHAPE),
                  (Stage.ESTIMATING_LIGHTING,), (Stage.FITTING_MID,),
                  (Stage.UNWRAPPING_TEXTURE, Stage.FITTING_HIGH, Stage.ESTIMATING_ALBEDO),
                  (Stage.FUSING_VIEWS, Stage.ASSEMBLING_RESULT)):
        if names[0] in _PER_PHOTO:
            out += [(per_photo(n, k, count), weight[n]) for k in range(count) for n in names]
        else:
            out += [(n, weight[n] * count) for n in names]
    return tuple(out)


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
    in_crop = view.to_crop(points_px)
    img = Image.new("L", (view.size, view.size), 0)
    draw = ImageDraw.Draw(img)
    draw.polygon([tuple(p) for p in in_crop[CONTOUR]], fill=255)
    for group in (LEFT_EYE, RIGHT_EYE, LIPS):
        draw.polygon([tuple(p) for p in in_crop[group][convex_hull(in_crop[group])]], fill=0)
    if feather > 0:
        img = img.filter(ImageFilter.GaussianBlur(feather * view.size))
    return torch.as_tensor(np.asarray(img, np.float32) / 255.0)


def unoccluded_mask(points_px: np.ndarray, view: View, crop: torch.Tensor) -> torch.Tensor:
    """``[S, S]`` float: 0 where hair or anything else covers the face in the view's photo
    ``crop`` (``[S, S, 3]`` linear RGB, :func:`.view.crop_photo`), else 1
    (:func:`.face_region.unoccluded`)."""
    return torch.as_tensor(unoccluded(linear_to_srgb(crop.numpy()), view.to_crop(points_px)))


@dataclass(frozen=True)
class _Input:
    """A photo in which a face was found."""

    index: int                  # position in the photos given
    photo: Photo
    landmarks: FaceLandmarks
    linear: np.ndarray          # [H, W, 3] float32 linear RGB

    @property
    def focal_px(self) -> float:
        return default_focal_px(self.landmarks.image_size, self.photo.focal_35mm)


def reconstruct(photos: Sequence[str | Path], options: ReconstructionOptions = ReconstructionOptions(),
                progress: Optional[ProgressCallback] = None) -> FaceReconstruction:
    """Reconstruct a head from one or more photos of one face.

    With several photos (MV-HRN, see :mod:`engine.levels.multiview`) the identity and the
    mid-frequency deformation map are shared; pose, expression, lighting and displacement
    are fitted per photo and the displacement and albedo maps fused. Photos without a face
    are skipped with a warning, as are (with three or more photos) photos that probably show
    a different person. The result's ``views`` has one record per photo given, in order;
    its camera, expression and lighting are those of the most frontal photo used.

    Raises:
        ImageReadError, NoFaceError (one photo without a face, or no face in any photo),
        ModelFilesError, DeviceError, Cancelled (all EngineError).
    """
    if not photos:
        raise EngineError("Give at least one photo.")
    if options.weights_dir is not None:
        return _reconstruct_official(photos, options, progress)
    count = len(photos)
    _warm_up_torch()
    prog = Progress(progress, stages(count))
    t_start = time.perf_counter()
    inputs, skipped, notes = [], {}, []
    for k, path in enumerate(photos):
        prog.update(per_photo(Stage.LOADING_PHOTO, k, count))
        photo = load_photo(path)
        prog.update(per_photo(Stage.DETECTING_FACE, k, count))
        try:
            landmarks = detect_landmarks(photo, options.face_index)
        except NoFaceError as err:
            if count == 1:
                raise
            skipped[k] = f"{err} This photo was skipped."
            notes.append(skipped[k])
            continue
        notes.extend(landmarks.warnings)
        inputs.append(_Input(k, photo, landmarks, srgb_to_linear(photo.rgb)))
    if not inputs:
        raise NoFaceError(f"No face found in any of the {count} photos. Use photos where the face is "
                          "clearly visible, at least ~100 px wide and well lit.")
    model = load_model(options.head_model)
    device = resolve_device(options.device)
    settings = QUALITY[options.quality]
    check = None
    if len(inputs) > 1:
        # Each photo's identity alone: a different person shows as an outlier among them.
        check = check_identities(model, [
            fit_coarse(model, [v.landmarks], [v.focal_px], settings.coarse_iterations,
                       progress=prog.sub(Stage.COMPARING_FACES, k / len(inputs), (k + 1) / len(inputs))).identity
            for k, v in enumerate(inputs)])
        for k in check.outliers:
            skipped[inputs[k].index] = (
                f"{inputs[k].photo.path!r} probably shows a different person (its face shape is "
                f"{check.distances_m[k] * 1e3:.1f} mm from the others'); this photo was left out.")
            notes.append(skipped[inputs[k].index])
        if len(inputs) == 2 and check.distances_m.max() > OUTLIER_DISTANCE_M:
            notes.append(f"{inputs[0].photo.path!r} and {inputs[1].photo.path!r} may show different "
                         "people (their face shapes disagree); both were used.")
        kept = [v for k, v in enumerate(inputs) if k not in check.outliers]
        distances = {v.index: float(d) for v, d in zip(inputs, check.distances_m)}
        inputs = kept
    else:
        distances = {}
    result = reconstruct_views(inputs, model, settings, device, prog, options, t_start, count)
    records = with_skipped(result.views, skipped, photos)
    meta = dict(result.metadata)
    if distances:
        meta["identity_distance_mm"] = {str(k): round(d * 1e3, 3) for k, d in distances.items()}
    return result.replace(views=records, metadata=meta, warnings=tuple(notes))


def _warm_up_torch() -> None:
    """Import what torch's optimisers import on first use (torch._dynamo: 1.2-1.9 s on 2
    cores) in a background thread, while the photos load and MediaPipe, which runs in C++,
    finds the faces. Idempotent: a second import is free."""
    import importlib
    import threading

    threading.Thread(target=importlib.import_module, args=("torch._dynamo",), daemon=True,
                     name="hrn-torch-warm-up").start()


def with_skipped(records: Sequence[ViewRecord], skipped: dict[int, str],
                 photos: Sequence[str | Path]) -> tuple[ViewRecord, ...]:
    """The used photos' ``records`` (in photo order) with a record for each skipped photo
    (index -> why) put at its place, so record k is always photo k."""
    out = list(records)
    for k, note in sorted(skipped.items()):     # ascending: each insert lands at its index
        out.insert(k, ViewRecord(image_path=str(photos[k]), used=False, note=note))
    return tuple(out)


def load_model(path: Optional[Path] = None) -> HeadModel:
    """The head to fit: the built-in ICT head (``None``), a head model file (.npz), or the
    Basel Face Model of an official HRN release folder (engine.hrn_official.bfm.bfm_head).

    Raises:
        ModelFilesError: a file is missing or malformed; the message says where to get it.
    """
    if path is None or not Path(path).is_dir():
        return load_head(path)
    from .hrn_official import bfm, layout

    missing = [key for key in ("bfm", "uvs") if layout.find(path, key) is None]
    if missing:
        raise ModelFilesError(f"The folder {str(path)!r} has no Basel Face Model to fit. "
                              + " ".join(layout.where_to_get(key) for key in missing))
    return bfm.bfm_head(bfm.BFMModel.load(layout.find(path, "bfm")), bfm.load_uvs(layout.find(path, "uvs")))


def _reconstruct_official(photos, options: ReconstructionOptions, progress) -> FaceReconstruction:
    """One photo through the official HRN networks (engine.hrn_official)."""
    if len(photos) != 1:
        raise EngineError("The official HRN weights reconstruct from one photo; give exactly one "
                          "photo, or leave the weights folder empty to use several.")
    from .hrn_official.reconstruct import reconstruct_official

    photo = load_photo(photos[0])
    return reconstruct_official(photo, detect_landmarks(photo, options.face_index),
                                options.weights_dir, resolve_device(options.device), progress,
                                alignment=options.alignment)


def reconstruct_views(inputs: Sequence[_Input], model: HeadModel, settings: QualitySettings,
                      device: torch.device, prog: Progress, options: ReconstructionOptions,
                      t_start: float, count: int) -> FaceReconstruction:
    """Every stage after detection, for the usable photos (see the module docstring);
    ``count`` is the number of photos given (for progress names). The result's views hold
    only these photos, in order."""
    ctx = render.make_context(device)
    clock = _Clock(t_start)
    coarse = fit_coarse(model, [v.landmarks for v in inputs], [v.focal_px for v in inputs],
                        settings.coarse_iterations, progress=prog.sub(Stage.FITTING_HEAD_SHAPE, 0.0, 1.0))
    clock.mark("coarse")
    # Lighting and the mid level are fitted on a coarser subdivision (fit_head) than the
    # result's (head): the 64² map varies more slowly than either mesh's vertices.
    fit_head = model.subdivided(settings.mid_subdivision)
    lit = []
    for v, pose in zip(inputs, coarse.views):
        prog.update(per_photo(Stage.ESTIMATING_LIGHTING, v.index, count))
        lit.append(_light_photo(ctx, fit_head, coarse.identity, pose, v, settings))
    clock.mark("lighting")
    mid = _fit_mid(ctx, fit_head, lit, settings, prog)
    head = model.subdivided(settings.subdivision)
    uv, deformable = head.map_vertex_uv()
    posed = [head.shape(coarse.identity, pose.expression) for pose in coarse.views]
    confidence = _confidence(ctx, head, posed, [light.fit.view for light in lit])
    mid_offsets = sample_deformation(mid.deformation_map, uv, deformable * confidence)
    clock.mark("mid")
    layout = _UVLayout.of(head, settings.uv_size)
    details = [_detail_photo(ctx, head, layout, verts + mid_offsets, pose, v, light.lighting,
                             settings, prog, count)
               for v, pose, verts, light in zip(inputs, coarse.views, posed, lit)]
    clock.mark("detail")
    if len(inputs) > 1:
        prog.update(Stage.FUSING_VIEWS)
        displacement = fuse_weighted([d.displacement for d in details], [d.visibility for d in details])
        albedo, confidence = fuse_albedo([d.albedo for d in details], [d.confidence for d in details])
    else:
        displacement, albedo, confidence = details[0].displacement, details[0].albedo, details[0].confidence
    clock.mark("fusion")
    prog.update(Stage.ASSEMBLING_RESULT)
    eyes = measure_eyes([v.linear for v in inputs], [v.landmarks.points for v in inputs],
                        [p.camera for p in coarse.views], [light.lighting.sh for light in lit],
                        iris_radius(model), [eye_centres(model, verts) for verts in posed])
    ref = reference_view([p.camera.rotation for p in coarse.views])
    pose = coarse.views[ref]
    result = FaceReconstruction(
        vertices=posed[ref].astype(np.float32), mid_offsets=mid_offsets,
        faces=head.faces, uvs=head.uvs, face_uvs=head.face_uvs, face_material=head.face_material,
        material_names=head.material_names, deformation_map=mid.deformation_map,
        displacement_map=displacement.astype(np.float32), albedo=albedo.astype(np.float32),
        albedo_confidence=confidence.astype(np.float32), camera=pose.camera,
        identity=coarse.identity, expression=pose.expression, eyes=eyes,
        expression_names=head.expression_names, expression_deltas=head.expression,
        sh_lighting=lit[ref].lighting.sh,
        views=tuple(ViewRecord(image_path=v.photo.path, used=True, camera=p.camera,
                               expression=p.expression, sh_lighting=light.lighting.sh,
                               landmarks=v.landmarks.points[:, :2].astype(np.float32),
                               displacement_map=d.displacement.astype(np.float32))
                    for v, p, light, d in zip(inputs, coarse.views, lit, details)),
        metadata={
            "engine_version": ENGINE_VERSION, "head_model": model.name,
            "device": str(device), "rasterizer": type(ctx).__name__, "quality": options.quality,
            "reference_view": inputs[ref].index,
            "landmark_rms_px": pose.landmark_rms_px,
            "photometric_error": {"coarse": float(np.mean(mid.photometric_before)),
                                  "mid": float(np.mean(mid.photometric_after))},
            "uv_shading_error": {k: float(np.mean([d.shading_error[k] for d in details]))
                                 for k in ("mid", "high")},
            "lighting_residual_rms": lit[ref].lighting.residual_rms, "timings_s": clock.timings,
            "views": [{"index": v.index, "landmark_rms_px": p.landmark_rms_px,
                       "photometric_error": {"coarse": b, "mid": a}, "uv_shading_error": d.shading_error,
                       "lighting_residual_rms": light.lighting.residual_rms}
                      for v, p, light, b, a, d in zip(inputs, coarse.views, lit, mid.photometric_before,
                                                      mid.photometric_after, details)],
        })
    prog.update(Stage.ASSEMBLING_RESULT, 1.0)
    return result


class _Clock:
    """Seconds spent per stage since ``start`` (``time.perf_counter``), for the metadata."""

    def __init__(self, start: float) -> None:
        self.start, self.timings = start, {}

    def mark(self, name: str) -> None:
        self.timings[name] = round(time.perf_counter() - self.start - sum(self.timings.values()), 3)


@dataclass(frozen=True)
class _LitPhoto:
    """One photo after the lighting stage: its lighting and its part of the mid-level fit."""

    lighting: LightingFit
    fit: DeformationView


def _light_photo(ctx, head: HeadModel, identity: np.ndarray, pose, v: _Input,
                 settings: QualitySettings) -> _LitPhoto:
    """Lighting stage of one photo: SH lighting and low-pass vertex albedo from the coarse
    head (``head`` at the mid level's subdivision), and the photo's deformation-fit inputs."""
    verts = head.shape(identity, pose.expression)
    view = face_view(pose.camera, v.landmarks.points[:, :2], settings.render_size)
    crop = crop_photo(v.linear, view)
    clear = unoccluded_mask(v.landmarks.points, view, crop)
    lighting, vertex_albedo = _lighting(ctx, head, mapped_triangles(head), verts, view, v.linear, clear)
    use = head.landmark_weights > 0
    target = LandmarkTarget(points_px=v.landmarks.points[use, :2],
                            triangles=head.triangles()[head.landmark_faces[use]],
                            barycentrics=head.landmark_barycentrics[use],
                            weights=head.landmark_weights[use])
    return _LitPhoto(lighting, DeformationView(verts, view, crop, skin_mask(v.landmarks.points, view) * clear,
                                               vertex_albedo, lighting.sh, target))


def _fit_mid(ctx, head: HeadModel, lit: Sequence[_LitPhoto], settings: QualitySettings,
             prog: Progress):
    """Mid level: one deformation map fitted to all photos (engine.levels.mid)."""
    uv, deformable = head.map_vertex_uv()
    mapped = head.mapped_faces()
    confidence = _confidence(ctx, head, [p.fit.vertices for p in lit], [p.fit.view for p in lit])
    # The skin alone is drawn: eyes, teeth and lashes never cover the skin pixels fitted.
    return fit_deformation(ctx, mapped_triangles(head), uv, [p.fit for p in lit],
                           resolution=settings.deformation_size, iterations=settings.mid_iterations,
                           vertex_weight=deformable * confidence,
                           seam_uvs=seam_uv_pairs(head.faces[mapped], head.face_uvs[mapped], head.uvs),
                           progress=prog.sub(Stage.FITTING_MID, 0.0, 1.0))


@dataclass(frozen=True)
class _UVLayout:
    """The head's UV atlas (its mapped faces) rasterised at the maps' resolution."""

    triangles: np.ndarray        # [T, 3] vertex triangles of the mapped faces
    uv_triangles: np.ndarray     # [T, 3] their UV triangles
    raster: object               # engine.uv.raster.UVRaster
    mirror: np.ndarray           # [H, W, 2] mirror texels
    occluders: np.ndarray        # [T', 3] every opaque triangle (lashes can hide skin)

    @classmethod
    def of(cls, head: HeadModel, size: int) -> "_UVLayout":
        tris, uv_tris = mapped_triangles(head), triangulate(head.face_uvs[head.mapped_faces()])
        raster = rasterize_uv(head.uvs, uv_tris, (size, size))
        return cls(tris, uv_tris, raster, mirror_texels(raster, tris, head.map_vertex_uv()[0], head.mirror),
                   opaque_triangles(head))


@dataclass(frozen=True)
class _PhotoDetail:
    """One photo's high level and albedo, in the UV layout."""

    displacement: np.ndarray     # [H, W] metres
    visibility: np.ndarray       # [H, W]
    albedo: np.ndarray           # [H, W, 3] sRGB
    confidence: np.ndarray       # [H, W]
    shading_error: dict          # "mid"/"high": UV shading error with smooth/detail normals


def _detail_photo(ctx, head: HeadModel, layout: _UVLayout, vertices: np.ndarray, pose, v: _Input,
                  lighting: LightingFit, settings: QualitySettings, prog: Progress,
                  count: int) -> _PhotoDetail:
    """Unwrapping, high level and albedo of one photo, on the mid-level head ``vertices``."""
    prog.update(per_photo(Stage.UNWRAPPING_TEXTURE, v.index, count))
    view = face_view(pose.camera, v.landmarks.points[:, :2], min(1024, 2 * settings.uv_size))
    obs = observe(ctx, v.linear, vertices, layout.triangles, head.uvs, layout.uv_triangles,
                  layout.raster, layout.mirror, view,
                  skin=skin_mask(v.landmarks.points, view, feather=0.01)
                  * unoccluded_mask(v.landmarks.points, view, crop_photo(v.linear, view)),
                  occluders=layout.occluders)
    smooth_albedo = lowpass_albedo(obs, lighting.sh)
    displacement = fit_displacement(obs, lighting.sh, smooth_albedo, iterations=settings.high_iterations,
                                    progress=prog.sub(per_photo(Stage.FITTING_HIGH, v.index, count), 0.0, 1.0))
    detail_normal = detail_normals(obs, displacement)
    errors = {"mid": shading_error(obs, lighting.sh, smooth_albedo),
              "high": shading_error(obs, lighting.sh, smooth_albedo, detail_normal)}
    prog.update(per_photo(Stage.ESTIMATING_ALBEDO, v.index, count))
    albedo, confidence = estimate_albedo(obs, lighting.sh, detail_normal=detail_normal)
    return _PhotoDetail(displacement, obs.visibility, albedo, confidence, errors)


def _confidence(ctx, head: HeadModel, vertices: Sequence[np.ndarray], views: Sequence[View]) -> np.ndarray:
    """``[V]`` confidence of the mid level at each vertex of ``head`` (engine.levels.mid.
    vertex_confidence) from each photo's posed ``vertices`` and face ``views``."""
    tris = mapped_triangles(head)
    return vertex_confidence(ctx, tris, vertices, views, vertex_adjacency(tris, head.n_vertices))


def mapped_triangles(head: HeadModel) -> np.ndarray:
    """``[T, 3]`` triangles of the faces in the UV maps' atlas (skin, mouth socket)."""
    return triangulate(head.faces[head.mapped_faces()])


def opaque_triangles(head: HeadModel) -> np.ndarray:
    """``[T, 3]`` triangles of every face but the transparent cornea: what the photo shows."""
    keep = head.face_material != (head.material_names.index("cornea")
                                  if "cornea" in head.material_names else -1)
    return triangulate(head.faces[keep])


#: Fewest visible skin vertices the lighting is fitted from (engine.levels.lighting needs 20).
MIN_LIGHTING_SAMPLES = 20


def _lighting(ctx, head: HeadModel, tris: np.ndarray, verts: np.ndarray, view: View,
              linear: np.ndarray, clear: torch.Tensor) -> tuple[LightingFit, np.ndarray]:
    """SH lighting of one photo and a low-pass albedo per vertex ``[V, 3]`` (linear RGB,
    skin luminance flattened: lighting.shading_free_albedo), from the coarse head ``verts``
    (drawn with ``tris``) seen through ``view``; vertices where ``clear`` (``[S, S]`` in the
    view, :func:`unoccluded_mask`) is 0 are left out."""
    camera = view.camera
    v_t = torch.as_tensor(verts)
    tri_t = torch.as_tensor(tris)
    seen = visible_vertices(ctx, v_t, tri_t, view)
    rot = torch.as_tensor(camera.rotation, dtype=torch.float32)
    normals = (vertex_normals(v_t, tri_t.long()) @ rot.T).numpy()
    projected = camera.project(verts)
    colours = sample_photo(linear, projected)
    at = np.clip(np.floor(view.to_crop(projected)).astype(np.int64), 0, view.size - 1)
    facing = np.clip(-(normals * _unit(to_camera(v_t, camera).numpy())).sum(-1), 0, 1)
    skin = head.regions["face"] & ~head.regions["eyes"] & ~head.regions["lips"]
    weight = seen * skin * facing * clear.numpy()[at[:, 1], at[:, 0]]
    if (weight > 0).sum() < MIN_LIGHTING_SAMPLES:
        raise NoFaceError(
            f"Too little bare skin of the face shows in the photo to estimate its lighting "
            f"({(weight > 0).sum()} usable points of the fitted head; {MIN_LIGHTING_SAMPLES} needed). "
            "Use a photo where the face is not covered by hair, hands or a mask and is turned "
            "less than about 60 degrees from the camera.")
    lighting = fit_lighting(normals, colours, weight)
    delit = colours / np.maximum(irradiance(normals, lighting.sh), 0.05)
    adjacency = vertex_adjacency(head.triangles(), head.n_vertices)
    vertex_albedo = smooth_weighted(delit, weight, adjacency, iterations=12, fill=lighting.base_albedo)
    return lighting, shading_free_albedo(vertex_albedo, skin)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / (np.linalg.norm(v, axis=-1, keepdims=True) + 1e-12)
