"""Score reconstructions of the rendered scan: every method and level, every rendered shot.

Methods:

* ``MediaPipe mesh``: the 478 landmarks of the photo, lifted to metres with the camera our
  pipeline fitted (pixels × depth / focal; MediaPipe's relative z in pixels × depth / focal
  too), triangulated by MediaPipe's face-mesh tessellation. The coarse input alone.
* ``ours (1 view)``: :func:`engine.pipeline.reconstruct` on the shot, scored at three levels:
  coarse, coarse+mid (``detailed_vertices``), coarse+mid+high (the displacement map applied
  along the vertex normals).
* ``ours (3 views)``: frontal + ±30° yaw together, when the pipeline accepts several photos.

Each surface is aligned to the scan by itself (:func:`engine.benchmark.align.align`), then
the distance from every scan point of a region to it is averaged (REALY's direction: scan to
reconstruction). Geometry is scored on the whole regions, seen or not; the detail score and
the albedo error only on scan points visible in the shot.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from ..errors import EngineError
from ..landmarks import FaceLandmarks
from ..result import Camera, FaceReconstruction, triangulate
from .align import Surface, align
from .metrics import (DETAIL_BAND_M, albedo_error, band_pass, detail_score, region_errors,
                      texel_size)
from .render import DEFAULT_SHOTS, REFERENCE_SHOT
from .scan import (REGIONS, Scan, ScanRegions, define_regions, locate_landmarks, sample_map,
                   vertex_normals, visible_points)

LEVELS = ("coarse", "coarse+mid", "coarse+mid+high")
MEDIAPIPE = "MediaPipe mesh"
SINGLE = "ours (1 view)"
MULTI = "ours (3 views)"
#: Shots (by name) combined for the multi-view result, the reference first.
MULTI_VIEW_SHOTS = ("yaw+000_pitch+00_f85_soft_frontal", "yaw+030_pitch+00_f85_soft_frontal",
                    "yaw-030_pitch+00_f85_soft_frontal")


@dataclass(frozen=True)
class Score:
    """One method at one level on one shot.

    Attributes:
        shot: render name; method: see module docstring; level: one of :data:`LEVELS` or "-".
        errors_mm: region name (and "all") -> mean scan-to-reconstruction distance, mm.
        detail: detail score (Pearson r, visible region), None when the level has no detail map.
        albedo_mae: albedo error (8-bit levels, gain removed, visible region), or None.
        icp_rms_mm: RMS of the kept ICP correspondences; scale: the alignment's scale factor.
        distances: ``[N]`` float32 metres per scan evaluation point (for heat maps).
    """

    shot: str
    method: str
    level: str
    errors_mm: dict[str, float]
    detail: Optional[float]
    albedo_mae: Optional[float]
    icp_rms_mm: float
    scale: float
    distances: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class Evaluation:
    """All scores, the evaluation points and regions they refer to, and remarks for the report.

    Attributes:
        points: ``[N]`` int64 scan vertex indices of the evaluation points (the regions' union).
        masks: region -> ``[N]`` bool over ``points``.
        albedo_flat_mae: albedo error of the best constant colour (a floor to compare with).
    """

    scores: list[Score]
    scan: Scan
    regions: ScanRegions
    points: np.ndarray
    masks: dict[str, np.ndarray]
    albedo_flat_mae: float
    notes: list[str]


def evaluate(render_dir: str | Path, work_dir: str | Path, scan: Scan,
             shots: Optional[Sequence[str]] = None, options=None, fresh: bool = False,
             log: Callable[[str], None] = print) -> Evaluation:
    """Reconstruct each rendered shot (cached in ``work_dir/reconstructions``) and score it.

    Args:
        render_dir: folder written by :func:`engine.benchmark.render.render_set`.
        shots: shot names to score; None = every render in the folder.
        options: :class:`engine.pipeline.ReconstructionOptions` (default: its defaults).
        fresh: reconstruct again even when a cached reconstruction exists.
    """
    from ..image_io import load_photo
    from ..landmarks import detect_landmarks
    from ..pipeline import ReconstructionOptions

    options = options or ReconstructionOptions()
    render_dir, work_dir = Path(render_dir), Path(work_dir)
    if shots:
        names = list(shots)
    else:   # the default set in its order (reference first), then any others
        present = {p.stem for p in render_dir.glob("*.json")}
        names = [s.name for s in DEFAULT_SHOTS if s.name in present]
        names += sorted(present - set(names))
    ref = _load_shot(render_dir, REFERENCE_SHOT.name)
    regions = define_regions(scan, locate_landmarks(
        scan, detect_landmarks(load_photo(ref[0])).points, ref[1]))
    union = np.zeros(len(scan.vertices), bool)
    for name in REGIONS:
        union |= regions.masks[name]
    points = np.flatnonzero(union)
    masks = {name: regions.masks[name][points] for name in REGIONS}
    scan_detail = _scan_detail(scan, points)
    scan_colour = sample_map(scan.colour, scan.uvs[points])
    flat = albedo_error(scan_colour, np.broadcast_to(scan_colour.mean(0), scan_colour.shape))[0]
    fit_points = scan.vertices[regions.face]
    ctx = _Context(scan, regions, points, masks, scan_detail, scan_colour, fit_points)

    scores, notes = [], []
    for name in names:
        image, camera = _load_shot(render_dir, name)
        log(f"evaluating {name}")
        rec = _reconstruction(work_dir / "reconstructions" / name, [image], options, fresh, log)
        seen = visible_points(scan.vertices[points], scan.normals[points], camera)
        scores.append(_score_mediapipe(ctx, name, detect_landmarks(load_photo(image)), rec))
        scores += _score_levels(ctx, name, SINGLE, rec, seen)
    if all((render_dir / f"{n}.png").is_file() for n in MULTI_VIEW_SHOTS):
        try:
            rec = _reconstruction(work_dir / "reconstructions" / "multi_view",
                                  [render_dir / f"{n}.png" for n in MULTI_VIEW_SHOTS], options,
                                  fresh, log)
            _, camera = _load_shot(render_dir, MULTI_VIEW_SHOTS[0])
            seen = visible_points(scan.vertices[points], scan.normals[points], camera)
            scores += _score_levels(ctx, MULTI_VIEW_SHOTS[0], MULTI, rec, seen)
        except EngineError as err:
            notes.append(f"Multi-view: not yet ({err})")
    if options.weights_dir is None:
        notes.append("Official HRN: not run (no HRN weights folder given).")
    return Evaluation(scores, scan, regions, points, masks, flat, notes)


@dataclass(frozen=True)
class _Context:
    scan: Scan
    regions: ScanRegions
    points: np.ndarray
    masks: dict[str, np.ndarray]
    scan_detail: np.ndarray
    scan_colour: np.ndarray
    fit_points: np.ndarray


def _load_shot(render_dir: Path, name: str) -> tuple[Path, Camera]:
    meta = render_dir / f"{name}.json"
    if not meta.is_file():
        raise EngineError(f"Render {meta} is missing; run `python -m engine.benchmark render` first.")
    return render_dir / f"{name}.png", Camera.from_json(json.loads(meta.read_text())["camera"])


def _reconstruction(folder: Path, images: list[Path], options, fresh: bool,
                    log: Callable[[str], None]) -> FaceReconstruction:
    from ..pipeline import reconstruct

    if not fresh and (folder / "reconstruction.json").is_file():
        return FaceReconstruction.load(folder)
    log(f"  reconstructing from {len(images)} photo(s)")
    rec = reconstruct([str(p) for p in images], options)
    rec.save(folder)
    return rec


def _scan_detail(scan: Scan, points: np.ndarray) -> np.ndarray:
    """Band-passed scan displacement at the evaluation points ``[N]`` (on a 4x smaller map)."""
    h, w = scan.displacement.shape
    small = scan.displacement.reshape(h // 4, 4, w // 4, 4).mean((1, 3))
    touching = np.isin(scan.faces, points).any(1)
    tris = scan.faces[touching]
    texel = texel_size(scan.vertices, tris, scan.uvs[tris], small.shape[0])
    return sample_map(band_pass(small, texel).astype(np.float32), scan.uvs[points])


def mediapipe_points(landmarks: FaceLandmarks, camera: Camera, depth_m: float) -> np.ndarray:
    """MediaPipe landmarks ``[478, 3]`` lifted to camera-space metres: a point at image
    (x, y) with relative z (pixels) lies at depth ``d = depth_m + z * depth_m / f`` and
    ``X = (x - cx) d / f``, ``Y = -(y - cy) d / f``, ``Z = -d``."""
    f, (cx, cy) = camera.focal_px, camera.principal_px
    p = np.asarray(landmarks.points, np.float64)
    d = depth_m + p[:, 2] * depth_m / f
    return np.stack([(p[:, 0] - cx) * d / f, -(p[:, 1] - cy) * d / f, -d], 1)


def mediapipe_triangles() -> np.ndarray:
    """``[T, 3]`` int64 triangles of MediaPipe's face mesh: the 3-cliques of its tessellation."""
    from mediapipe.python.solutions.face_mesh_connections import FACEMESH_TESSELATION

    adj: dict[int, set[int]] = {}
    for a, b in FACEMESH_TESSELATION:
        adj.setdefault(a, set()).add(b)
        adj.setdefault(b, set()).add(a)
    tris = {tuple(sorted((a, b, c))) for a in adj for b in adj[a] for c in adj[a] & adj[b]}
    return np.array(sorted(tris), np.int64)


def _rec_landmarks(rec: FaceReconstruction, vertices: np.ndarray) -> np.ndarray:
    """``[478, 3]`` landmark positions on the reconstruction (NaN where the model has none)."""
    from ..head_model import load_head_model, locate_uv

    model = load_head_model()
    tri, bary = locate_uv(rec.uvs, rec.face_uvs, model.landmark_uv)
    corners = vertices[rec.triangles()[tri]]
    out = np.einsum("nk,nkd->nd", bary.astype(np.float64), corners)
    out[model.landmark_weights <= 0] = np.nan
    return out


def _score_mediapipe(ctx: _Context, shot: str, landmarks: FaceLandmarks,
                     rec: FaceReconstruction) -> Score:
    depth = -np.nanmean(rec.camera.to_camera(_rec_landmarks(rec, rec.vertices.astype(np.float64)))[:, 2])
    pts = mediapipe_points(landmarks, rec.camera, depth)
    surface = Surface(pts, mediapipe_triangles())
    return _score_surface(ctx, shot, MEDIAPIPE, "-", surface, pts)


def _score_levels(ctx: _Context, shot: str, method: str, rec: FaceReconstruction,
                  seen: np.ndarray) -> list[Score]:
    from ..mesh_ops import vertex_uvs

    tris = rec.triangles().astype(np.int64)
    coarse = rec.vertices.astype(np.float64)
    mid = rec.detailed_vertices.astype(np.float64)
    vuv = vertex_uvs(rec.faces, rec.face_uvs, rec.uvs, len(mid)).astype(np.float64)
    high = mid + vertex_normals(mid, tris) * sample_map(rec.displacement_map, vuv)[:, None]
    out = []
    for level, verts in zip(LEVELS, (coarse, mid, high)):
        out.append(_score_surface(ctx, shot, method, level, Surface(verts, tris),
                                  _rec_landmarks(rec, verts), rec if level == LEVELS[2] else None, seen))
    return out


def _score_surface(ctx: _Context, shot: str, method: str, level: str, surface: Surface,
                   landmarks: np.ndarray, rec: Optional[FaceReconstruction] = None,
                   seen: Optional[np.ndarray] = None) -> Score:
    fit = align(surface, landmarks, ctx.regions.landmarks, ctx.fit_points)
    t = fit.transform
    pts = ctx.scan.vertices[ctx.points]
    hit = surface.closest(t.inverse().apply(pts))
    distances = hit.distances * t.scale
    detail = albedo = None
    if rec is not None and seen is not None and seen.sum() >= 10:
        corner_uvs = rec.uvs[triangulate(rec.face_uvs)].astype(np.float64)
        uv = np.einsum("nk,nkd->nd", hit.barycentrics[seen], corner_uvs[hit.triangle[seen]])
        side = rec.displacement_map.shape[0]
        hit_tris = np.unique(hit.triangle)
        texel = texel_size(surface.vertices, surface.triangles[hit_tris], corner_uvs[hit_tris], side)
        rec_detail = sample_map(band_pass(rec.displacement_map, texel).astype(np.float32), uv)
        try:
            detail = detail_score(ctx.scan_detail[seen], rec_detail)
        except ValueError:
            detail = float("nan")
        albedo = albedo_error(ctx.scan_colour[seen], sample_map(rec.albedo, uv))[0]
    return Score(shot, method, level, region_errors(distances, ctx.masks), detail, albedo,
                 fit.rms * 1000.0, t.scale, distances.astype(np.float32))


__all__ = ["Evaluation", "Score", "evaluate", "mediapipe_points", "mediapipe_triangles",
           "LEVELS", "DETAIL_BAND_M"]
