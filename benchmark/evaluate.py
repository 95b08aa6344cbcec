"""Score reconstructions of the rendered scan: every method and level, every rendered shot.

Methods:

* ``MediaPipe mesh``: the 478 landmarks of the photo, lifted to metres with the camera our
  pipeline fitted (pixels × depth / focal; MediaPipe's relative z in pixels × depth / focal
  too), triangulated by MediaPipe's face-mesh tessellation. The coarse input alone.
* ``ours (1 view)``: :func:`engine.pipeline.reconstruct` on the shot, scored at three levels:
  coarse, coarse+mid (``detailed_vertices``), coarse+mid+high (the displacement map applied
  along the vertex normals).
* ``ours (3 views)``: frontal + ±30° yaw together, when the pipeline accepts several photos.

Each surface is aligned to the scan by itself (:func:`benchmark.align.align`), then
the distance from every scan point of a region to it is averaged, weighted by the surface area
each scan point stands for (REALY's direction: scan to reconstruction). Geometry is scored on
the whole regions, seen or not; the detail score and the albedo error only on scan points
visible in the shot, each beside its chance level: the detail score of random displacement
(95 % of |r| below it) and the albedo error of the best constant colour, on the same points.

Detail score: the scan's displacement at each visible scan point and the reconstruction's
displacement map read at the corresponding point (closest point of the aligned surface, its
UV) pass through one band-pass on the scan surface (:class:`benchmark.metrics.SurfaceBandPass`),
then are correlated. Filtering both on the same surface, in millimetres, keeps either UV
layout's distortion out of the comparison.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from engine.detect.landmarks import FaceLandmarks
from engine.errors import EngineError
from engine.head.model import MAPPED_MATERIALS
from engine.result import Camera, FaceReconstruction, triangle_faces, triangulate

from .align import Surface, align
from .metrics import (DETAIL_BAND_M, SurfaceBandPass, albedo_error, detail_noise_floor,
                      detail_score, region_errors)
from .render import DEFAULT_SHOTS, REFERENCE_SHOT
from .scan import (REGIONS, Scan, ScanRegions, define_regions, locate_landmarks, sample_map,
                   vertex_areas, vertex_normals, visible_points)

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
        detail_floor: |r| that random displacement stays below in 95 % of draws, same points.
        albedo_mae: albedo error (8-bit levels, gain removed, visible region), or None.
        albedo_flat_mae: albedo error of the best constant colour on the same points.
        icp_rms_mm: RMS of the kept ICP correspondences; scale: the alignment's scale factor.
        distances: ``[N]`` float32 metres per scan evaluation point (for heat maps).
    """

    shot: str
    method: str
    level: str
    errors_mm: dict[str, float]
    detail: Optional[float]
    detail_floor: Optional[float]
    albedo_mae: Optional[float]
    albedo_flat_mae: Optional[float]
    icp_rms_mm: float
    scale: float
    distances: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class Evaluation:
    """All scores, the evaluation points and regions they refer to, and remarks for the report.

    Attributes:
        points: ``[N]`` int64 scan vertex indices of the evaluation points (the regions' union).
        masks: region -> ``[N]`` bool over ``points``.
    """

    scores: list[Score]
    scan: Scan
    regions: ScanRegions
    points: np.ndarray
    masks: dict[str, np.ndarray]
    notes: list[str]


def evaluate(render_dir: str | Path, work_dir: str | Path, scan: Scan,
             shots: Optional[Sequence[str]] = None, options=None, fresh: bool = False,
             log: Callable[[str], None] = print) -> Evaluation:
    """Reconstruct each rendered shot (cached in ``work_dir/reconstructions``) and score it.

    Args:
        render_dir: folder written by :func:`benchmark.render.render_set`.
        shots: shot names to score; None = every render in the folder.
        options: :class:`engine.pipeline.ReconstructionOptions` (default: its defaults).
        fresh: reconstruct again even when a cached reconstruction exists.
    """
    from engine.detect.landmarks import detect_landmarks
    from engine.io.image_io import load_photo
    from engine.pipeline import ReconstructionOptions

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
    ctx = _Context(scan, regions, points, masks, vertex_areas(scan.vertices, scan.faces),
                   _scan_displacement(scan), np.flatnonzero(union | regions.face),
                   scan.vertices[regions.face])

    scores, notes, views = [], [], {}
    for name in names:
        image, camera = _load_shot(render_dir, name)
        log(f"evaluating {name}")
        rec = _reconstruction(work_dir / "reconstructions" / name, [image], options, fresh, log)
        view = views[name] = _view(ctx, camera)
        scores.append(_score_mediapipe(ctx, name, detect_landmarks(load_photo(image)), rec))
        scores += _score_levels(ctx, name, SINGLE, rec, view)
    if all((render_dir / f"{n}.png").is_file() for n in MULTI_VIEW_SHOTS):
        try:
            rec = _reconstruction(work_dir / "reconstructions" / "multi_view",
                                  [render_dir / f"{n}.png" for n in MULTI_VIEW_SHOTS], options,
                                  fresh, log)
            # Scored on what the reference (frontal) shot sees, like the single view.
            ref = MULTI_VIEW_SHOTS[0]
            view = views.get(ref) or _view(ctx, _load_shot(render_dir, ref)[1])
            scores += _score_levels(ctx, ref, MULTI, rec, view)
        except EngineError as err:
            notes.append(f"Multi-view: not yet ({err})")
    if options.weights_dir is None:
        notes.append("Official HRN: not run (no HRN weights folder given).")
    return Evaluation(scores, scan, regions, points, masks, notes)


@dataclass(frozen=True)
class _Context:
    scan: Scan
    regions: ScanRegions
    points: np.ndarray
    masks: dict[str, np.ndarray]
    areas: np.ndarray              # [V] m², surface area per scan vertex
    scan_displacement: np.ndarray  # [V] m, the scan's displacement per scan vertex
    filter_points: np.ndarray      # scan vertex indices the detail band-pass runs over
    fit_points: np.ndarray         # [M, 3] m, the scan area ICP fits to


@dataclass(frozen=True)
class _View:
    """What one camera sees of the scan around the evaluation points, and the chance levels.

    The detail band-pass runs over every seen scan point of the face (``points``), not only
    over the regions, so that the regions' borders are no edges of the filter; scores count
    the points of the regions (``scored``).
    """

    points: np.ndarray           # [S] scan vertex indices: seen, on the face or in a region
    scored: np.ndarray           # [S] bool: in a region
    band_pass: SurfaceBandPass   # over ``points``
    scan_detail: np.ndarray      # [R] band-passed scan displacement at the scored points
    detail_floor: float
    albedo_flat_mae: float


def _view(ctx: _Context, camera: Camera) -> _View:
    scan = ctx.scan
    points = ctx.filter_points[visible_points(scan.vertices[ctx.filter_points],
                                              scan.normals[ctx.filter_points], camera)]
    scored = np.isin(points, ctx.points)
    band = SurfaceBandPass(scan.vertices[points], ctx.areas[points])
    truth = band(ctx.scan_displacement[points])[scored]
    areas = ctx.areas[points[scored]]
    colour = sample_map(scan.colour, scan.uvs[points[scored]])
    flat = np.broadcast_to(np.average(colour, axis=0, weights=areas), colour.shape)
    return _View(points, scored, band, truth, detail_noise_floor(truth, band, areas, scored),
                 albedo_error(colour, flat, areas)[0])


def _load_shot(render_dir: Path, name: str) -> tuple[Path, Camera]:
    meta = render_dir / f"{name}.json"
    if not meta.is_file():
        raise EngineError(f"Render {meta} is missing; run `python -m benchmark render` first.")
    return render_dir / f"{name}.png", Camera.from_json(json.loads(meta.read_text())["camera"])


def _reconstruction(folder: Path, images: list[Path], options, fresh: bool,
                    log: Callable[[str], None]) -> FaceReconstruction:
    from engine.pipeline import reconstruct

    if not fresh and (folder / "reconstruction.json").is_file():
        return FaceReconstruction.load(folder)
    log(f"  reconstructing from {len(images)} photo(s)")
    rec = reconstruct([str(p) for p in images], options)
    rec.save(folder)
    return rec


def _scan_displacement(scan: Scan) -> np.ndarray:
    """The scan's displacement (metres) at its vertices ``[V]``, read from the map averaged
    over 4x4 texels (~0.5 mm, about the vertices' spacing), so finer pores do not alias."""
    h, w = scan.displacement.shape
    small = scan.displacement.reshape(h // 4, 4, w // 4, 4).mean((1, 3))
    return sample_map(small, scan.uvs).astype(np.float64)


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
    """``[478, 3]`` landmark positions on the reconstruction's skin (NaN where the built-in
    model has none there), located through their UVs."""
    from engine.head.linear import load_head
    from engine.head.subdivision import locate_uv

    model = load_head()
    own = model.face_material[triangle_faces(model.faces)[model.landmark_faces]]
    on_skin = np.isin(own, [model.material_names.index(m) for m in MAPPED_MATERIALS
                            if m in model.material_names])
    skin = _skin(rec)
    tri, bary = locate_uv(rec.uvs, rec.face_uvs[skin], model.landmark_uv)
    corners = vertices[triangulate(rec.faces[skin])[tri]]
    out = np.einsum("nk,nkd->nd", bary.astype(np.float64), corners)
    out[(model.landmark_weights <= 0) | ~on_skin] = np.nan
    return out


def _skin(rec: FaceReconstruction) -> np.ndarray:
    """``[F]`` bool: the reconstruction's faces in the UV maps' atlas (skin, mouth socket):
    the surface scored against the scan (eyeballs, teeth and lashes are not in the scan)."""
    return rec.material_faces(*MAPPED_MATERIALS)


def _score_mediapipe(ctx: _Context, shot: str, landmarks: FaceLandmarks,
                     rec: FaceReconstruction) -> Score:
    depth = -np.nanmean(rec.camera.to_camera(_rec_landmarks(rec, rec.vertices.astype(np.float64)))[:, 2])
    pts = mediapipe_points(landmarks, rec.camera, depth)
    surface = Surface(pts, mediapipe_triangles())
    return _score_surface(ctx, shot, MEDIAPIPE, "-", surface, pts)


def _score_levels(ctx: _Context, shot: str, method: str, rec: FaceReconstruction,
                  view: _View) -> list[Score]:
    from engine.geometry.mesh_ops import vertex_uvs

    skin = _skin(rec)
    tris = triangulate(rec.faces[skin]).astype(np.int64)
    coarse = rec.vertices.astype(np.float64)
    mid = rec.detailed_vertices.astype(np.float64)
    vuv = vertex_uvs(rec.faces[skin], rec.face_uvs[skin], rec.uvs, len(mid)).astype(np.float64)
    high = mid + vertex_normals(mid, tris) * sample_map(rec.displacement_map, vuv)[:, None]
    out = []
    for level, verts in zip(LEVELS, (coarse, mid, high)):
        out.append(_score_surface(ctx, shot, method, level, Surface(verts, tris),
                                  _rec_landmarks(rec, verts), rec if level == LEVELS[2] else None, view))
    return out


def _score_surface(ctx: _Context, shot: str, method: str, level: str, surface: Surface,
                   landmarks: np.ndarray, rec: Optional[FaceReconstruction] = None,
                   view: Optional[_View] = None) -> Score:
    fit = align(surface, landmarks, ctx.regions.landmarks, ctx.fit_points)
    t = fit.transform
    pts = ctx.scan.vertices[ctx.points]
    hit = surface.closest(t.inverse().apply(pts))
    distances = hit.distances * t.scale
    detail = floor = albedo = flat = None
    if rec is not None and view is not None and view.scored.sum() >= 10:
        near = surface.closest(t.inverse().apply(ctx.scan.vertices[view.points]))
        corner_uvs = rec.uvs[triangulate(rec.face_uvs[_skin(rec)])].astype(np.float64)
        uv = np.einsum("nk,nkd->nd", near.barycentrics, corner_uvs[near.triangle])
        rec_detail = view.band_pass(sample_map(rec.displacement_map, uv))[view.scored]
        areas = ctx.areas[view.points[view.scored]]
        try:
            detail = detail_score(view.scan_detail, rec_detail, areas)
        except ValueError:
            detail = float("nan")
        floor, flat = view.detail_floor, view.albedo_flat_mae
        albedo = albedo_error(sample_map(ctx.scan.colour, ctx.scan.uvs[view.points[view.scored]]),
                              sample_map(rec.albedo, uv[view.scored]), areas)[0]
    errors = region_errors(distances, ctx.masks, ctx.areas[ctx.points])
    return Score(shot, method, level, errors, detail, floor, albedo, flat, fit.rms * 1000.0,
                 t.scale, distances.astype(np.float32))


__all__ = ["Evaluation", "Score", "evaluate", "mediapipe_points", "mediapipe_triangles",
           "LEVELS", "DETAIL_BAND_M"]
