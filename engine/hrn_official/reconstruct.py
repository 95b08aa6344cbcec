"""Photo -> :class:`engine.result.FaceReconstruction` with the official HRN networks.

Five alignment points, from the official RetinaFace + 106-point + FAN chain when its files are
present (:mod:`.detectors`), else from MediaPipe's landmarks (:mod:`engine.detect.landmarks`) ->
official 5-point alignment to the 224^2 and 512^2 crops (:mod:`.align`) -> face-region mask
(:mod:`.face_mask`: MediaPipe's face oval less occluders, replaces the TensorFlow
segmentation) -> official
inference (:class:`.model.OfficialHRN`) -> our frame and units (:mod:`.convert`), plus an
albedo at up to 1024^2 unwrapped from the full-resolution photo:

* geometry: canonical BFM shape (identity + expression) in metres; ``mid_offsets`` are the
  deformation map sampled at the vertices the official way; faces and per-vertex UVs of the
  BFM front mesh (``bfm_uvs2.npy``), so ``face_uvs == faces``;
* maps: deformation 64^2 (metres, model axes), displacement 256^2 (metres along the outward
  normal; optionally bilinearly upsampled), both in the official UV layout, which is ours
  (row 0 = v 1);
* albedo: HRN's de-retouching (3DMM UV albedo A0, the UNet's blend layer B, the photo
  texture t) evaluated at the requested size with t unwrapped from the full-resolution photo
  through our camera (with a visibility test the official unwrap lacks); where the photo does
  not show the skin (occluded, grazing, outside the face mask) it falls back to A0, and
  ``albedo_confidence`` says how much of the photo is in each texel;
* lighting: the network's SH with init_lit added (official convention: normals in the
  camera frame, sRGB-valued albedo).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from .. import render
from ..detect.landmarks import FaceLandmarks
from ..errors import ModelFilesError, NoFaceError
from ..io.image_io import Photo
from ..progress import Progress, ProgressCallback, Stage
from ..render.view import face_view
from ..result import DEFAULT_EYES, Camera, FaceReconstruction, ViewRecord, to_uint8
from ..uv.unwrap import observe
from . import align, bfm, convert, layout
from .deretouch import apply_blend
from .detectors import crop_difference
from .face_mask import REPLACEMENT_WARNING, face_region_mask
from .model import OfficialHRN, OfficialOutputs
from .net_recon import Coefficients

STAGES = ((Stage.LOADING_HRN_FILES, 6), (Stage.ALIGNING_FACE, 1), (Stage.RUNNING_HRN_NETWORKS, 12),
          (Stage.UNWRAPPING_ALBEDO, 4), (Stage.ASSEMBLING_RESULT, 1))

#: Largest albedo map side (texels); the official code stops at 256.
MAX_ALBEDO_SIZE = 1024
#: Visibility from which a texel's photo colour is fully trusted over the 3DMM albedo.
FULL_TRUST_VISIBILITY = 0.3
#: Resolution (px) of the face view whose depth buffer decides which texels the photo sees.
VISIBILITY_VIEW_SIZE = 512
EXPRESSION_NAMES = tuple(f"bfm_exp_{i:02d}" for i in range(bfm.NUM_EXP))


def reconstruct_official(photo: Photo, landmarks: FaceLandmarks, assets_dir: str | Path,
                         device: str | torch.device = "cpu", progress: Optional[ProgressCallback] = None,
                         *, albedo_size: int = MAX_ALBEDO_SIZE, displacement_size: int = 256,
                         alignment: str = "auto") -> FaceReconstruction:
    """Reconstruct one photo with the official HRN release in ``assets_dir``.

    Args:
        photo: the photo (:func:`engine.io.image_io.load_photo`).
        landmarks: its MediaPipe landmarks (:func:`engine.detect.landmarks.detect_landmarks`).
        assets_dir: folder holding the official files, GitHub or ModelScope layout
            (``python -m engine.hrn_official assets check DIR`` lists them).
        device: torch device; on CUDA the visibility raster uses nvdiffrast when installed.
        progress: ``(stage, fraction)`` callback; returning False cancels.
        albedo_size: side of the albedo and confidence maps, 64..1024 texels.
        displacement_size: side of the displacement map, >= 256 (bilinear upsampling above).
        alignment: where the five alignment points come from: "auto" (the official detector
            chain when all its files are in ``assets_dir``, else MediaPipe), "official" or
            "mediapipe" (:meth:`.model.OfficialHRN.load`).

    Raises:
        ModelFilesError: a file is missing, truncated or not the official one (the message
            names it and says where to put it).
        NoFaceError: the official detector chain, when used, finds no face.
        Cancelled: ``progress`` returned False.
    """
    prog = Progress(progress, STAGES)
    prog.update(Stage.LOADING_HRN_FILES)
    root = Path(assets_dir)
    if not root.is_dir():
        raise ModelFilesError(f"The HRN assets folder {root} does not exist. {layout.where_to_get('hrn')}")
    hrn = OfficialHRN.load(root, device, landmarks=alignment)
    return _reconstruct(hrn, photo, landmarks, prog, albedo_size, displacement_size)


def reconstruct_with_model(hrn: OfficialHRN, photo: Photo, landmarks: FaceLandmarks,
                           progress: Optional[ProgressCallback] = None, *,
                           albedo_size: int = MAX_ALBEDO_SIZE, displacement_size: int = 256) -> FaceReconstruction:
    """:func:`reconstruct_official` with already loaded networks (several photos, benchmarks)."""
    return _reconstruct(hrn, photo, landmarks, Progress(progress, STAGES), albedo_size, displacement_size)


def _reconstruct(hrn: OfficialHRN, photo: Photo, landmarks: FaceLandmarks, prog: Progress,
                 albedo_size: int, displacement_size: int) -> FaceReconstruction:
    if not 64 <= albedo_size <= MAX_ALBEDO_SIZE or displacement_size < 256:
        raise ValueError(f"albedo_size must be 64..{MAX_ALBEDO_SIZE} and displacement_size >= 256, "
                         f"got {albedo_size}, {displacement_size}")
    t_start = time.perf_counter()
    timings: dict[str, float] = {}

    def mark(name: str) -> None:
        timings[name] = round(time.perf_counter() - t_start - sum(timings.values()), 3)

    prog.update(Stage.ALIGNING_FACE)
    height, width = photo.rgb.shape[:2]
    work = align.working_image(to_uint8(photo.rgb))
    work_size = (work.shape[1], work.shape[0])
    points = landmarks.points[:, :2].astype(np.float64) * [work_size[0] / width, work_size[1] / height]
    five, mediapipe_five, notes = _alignment_points(hrn, work, points)
    crop224 = align.align_crop(work, five, hrn.landmark_template, bfm.CROP_224)
    crop512 = align.align_crop(work, five, hrn.landmark_template, 512)
    alignment: dict = {"landmarks": "MediaPipe Face Mesh (replaces RetinaFace + 106-point net + FAN)"}
    if mediapipe_five is not None:
        offset = crop_difference(crop224, align.align_crop(work, mediapipe_five, hrn.landmark_template,
                                                           bfm.CROP_224))
        alignment = {"landmarks": "official chain: RetinaFace + 106-point net + box regressor + S3FD/FAN",
                     "mediapipe_crop_offset_px": round(offset, 2)}
    mask = face_region_mask(crop224.image, crop224.photo_to_crop(points, work_size))
    mark("align")

    prog.update(Stage.RUNNING_HRN_NETWORKS)
    as_batch = lambda img: torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None]  # noqa: E731
    out = hrn.run(as_batch(crop224.image), as_batch(crop512.image), torch.from_numpy(mask)[None, None],
                  on_step=lambda fraction: prog.update(Stage.RUNNING_HRN_NETWORKS, fraction))
    coeffs = Coefficients.split(out.coeffs)
    mark("networks")

    camera = convert.photo_camera(out.rotation[0], out.translation[0], crop224, (width, height))
    vertices = convert.to_metres(out.shape[0])
    mid_offsets = convert.to_metres(out.mid_offsets[0])
    prog.update(Stage.UNWRAPPING_ALBEDO)
    albedo, confidence, rasterizer = _albedo(hrn, out, coeffs, photo, landmarks, camera,
                                             vertices + mid_offsets, albedo_size)
    mark("albedo")

    prog.update(Stage.ASSEMBLING_RESULT)
    displacement = out.displacement_map
    if displacement_size > displacement.shape[-1]:
        displacement = F.interpolate(displacement, (displacement_size, displacement_size),
                                     mode="bilinear", align_corners=False)
    faces = hrn.face.triangles.cpu().numpy().astype(np.int32)
    n = bfm.NUM_VERTICES
    deltas = hrn.face.exp_basis.reshape(n, 3, bfm.NUM_EXP).permute(2, 0, 1)
    sh = coeffs.sh_coefficients()[0].cpu().numpy().astype(np.float32)
    expression = coeffs.expression[0].cpu().numpy().astype(np.float32)
    warnings = tuple(landmarks.warnings) + notes + (REPLACEMENT_WARNING,)
    view = ViewRecord(image_path=photo.path, used=True, camera=camera, expression=expression,
                      sh_lighting=sh, landmarks=landmarks.points[:, :2].astype(np.float32),
                      note=REPLACEMENT_WARNING)
    result = FaceReconstruction(
        vertices=vertices, mid_offsets=mid_offsets, faces=faces,
        uvs=hrn.uvs.cpu().numpy().astype(np.float32), face_uvs=faces.copy(),
        deformation_map=convert.to_metres(out.deformation_map[0].permute(1, 2, 0)),
        displacement_map=convert.to_metres(displacement[0, 0]),
        albedo=albedo, albedo_confidence=confidence, camera=camera,
        identity=coeffs.identity[0].cpu().numpy().astype(np.float32), expression=expression,
        expression_names=EXPRESSION_NAMES, expression_deltas=convert.to_metres(deltas),
        sh_lighting=sh, views=(view,), face_material=np.zeros(len(faces), np.uint8),
        material_names=("skin",), eyes=DEFAULT_EYES,
        metadata={
            "head_model": "official HRN weights (youngLBW/HRN hrn_v1.1) with the BFM09 front face model",
            "weights": "official HRN weights",
            "files": {key: path.name for key, path in hrn.files.items()},
            "device": str(hrn.device), "rasterizer": rasterizer,
            **alignment,
            "face_mask": "MediaPipe face oval less colour-tested occluders (replaces segment_face.pb)",
            "alpha": hrn.nets.alpha, "beta": hrn.nets.beta,
            "crop224": {"scale": crop224.scale, "offset": list(crop224.offset),
                        "resized": list(crop224.resized), "aligned_image_size": list(work_size)},
            "sh_lighting": "official HRN convention: camera-frame normals, sRGB albedo, init_lit included",
            "mid_offsets": "deformation_map sampled at vertex UVs the official way (corner-aligned texels)",
            "timings_s": timings,
        },
        warnings=warnings)
    mark("assemble")
    prog.update(Stage.ASSEMBLING_RESULT, 1.0)
    return result


def _alignment_points(hrn: OfficialHRN, work: np.ndarray, points: np.ndarray
                      ) -> tuple[np.ndarray, Optional[np.ndarray], tuple[str, ...]]:
    """The five alignment points (official convention, :func:`.align.five_points_from_mediapipe`)
    of the working image ``work`` (``[H, W, 3]`` uint8).

    Returns:
        ``(five, mediapipe_five, warnings)``: the points to align with; MediaPipe's own five
        points when the official detector chain gave ``five`` (to measure how far apart the
        two framings are), else None; warnings. When the chain finds no face, MediaPipe's
        points (from ``points``: ``[478, 2]`` in ``work``'s pixels) are used with a warning.
    """
    mediapipe = align.five_points_from_mediapipe(points, work.shape[0])
    if hrn.detectors is None:
        return mediapipe, None, ()
    try:
        return hrn.detectors.five_points(work), mediapipe, ()
    except NoFaceError as err:
        return mediapipe, None, (f"{err} The face was aligned with MediaPipe's landmarks instead.",)


def _albedo(hrn: OfficialHRN, out: OfficialOutputs, coeffs: Coefficients, photo: Photo,
            landmarks: FaceLandmarks, camera: Camera, vertices: np.ndarray,
            size: int) -> tuple[np.ndarray, np.ndarray, str]:
    """De-retouched albedo ``[size, size, 3]``, its confidence ``[size, size]`` (float32) and
    the name of the rasterizer used for the visibility test.

    The photo texture t comes from the full-resolution photo projected through ``camera``
    onto the mid-level mesh ``vertices`` ``[N, 3]`` (metres); HRN's de-retouching formula is
    applied at ``size`` with A0 from the 512^2 albedo basis and the UNet's 512^2 blend layer.
    """
    triangles = hrn.face.triangles.cpu().numpy()
    uvs = hrn.uvs.cpu().numpy()
    raster = hrn.layout_raster(size)
    ctx = render.make_context(hrn.device)
    view = face_view(camera, landmarks.points[:, :2], min(size, VISIBILITY_VIEW_SIZE))
    no_mirror = np.full((size, size, 2), -1, np.int32)
    # observe() only samples and clips the colours, so the sRGB photo gives an sRGB texture,
    # the space HRN's albedo lives in.
    obs = observe(ctx, photo.rgb, vertices, triangles, uvs, triangles, raster, no_mirror, view)
    device = hrn.device
    as_map = lambda a: torch.from_numpy(a).to(device).permute(2, 0, 1)[None]  # noqa: E731
    texture = as_map(obs.color) * 2.0 - 1.0
    base = bfm.albedo_map(hrn.albedo_mean, hrn.albedo_basis, coeffs.texture, size)
    deretouched = apply_blend(base, texture, out.retouch_blend)
    valid = F.interpolate(out.valid_mask, (size, size), mode="bilinear", align_corners=False)
    confidence = torch.from_numpy(obs.visibility).to(device) * valid[0, 0] * raster.coverage.to(device)
    trust = (confidence / FULL_TRUST_VISIBILITY).clamp(0.0, 1.0)
    trust = trust * trust * (3.0 - 2.0 * trust)
    albedo = (base + trust * (deretouched - base)).clamp(0.0, 1.0)
    return (albedo[0].permute(1, 2, 0).cpu().numpy().astype(np.float32),
            confidence.cpu().numpy().astype(np.float32), type(ctx).__name__)
