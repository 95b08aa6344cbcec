"""The ground-truth head scan: Lee Perry-Smith "Infinite" head (Infinite-Realities, CC-BY 3.0).

The scan files are read from a folder given by the caller (default
``../shared/data/head_scan`` next to the repository) and are never copied into the repo:

* ``LeePerrySmith.glb``: base mesh (9279 vertices, arbitrary units, face towards +z, +y up,
  UVs shared by the maps below).
* ``Infinite-Level_02_Disp_NoSmoothUV-4096.jpg``: 8-bit displacement, same UV layout.
* ``Map-COL.jpg``: colour (albedo-like) map.

:func:`load_scan` builds the **detailed ground-truth surface**: the base mesh, subdivided
(midpoints, twice: ~150k vertices, edges about 0.6 mm) and displaced along its smooth
normals by the displacement map. Everything is converted to the engine's model space
(metres, +Y up, +Z out of the face; engine.conventions), UVs to the engine's UV convention
(origin bottom-left).

Two numbers are not in the files and are set here, once:

* :data:`HEAD_LENGTH_M`: the scan's units are arbitrary, so it is scaled to metres by its
  head length (glabella to back of the head, the largest front-to-back extent of the
  skull above the nasion; :func:`head_length`) = 0.195 m, the adult male mean of
  anthropometric surveys. Every millimetre figure of the benchmark scales with this
  assumption (a few percent).
* :data:`DISPLACEMENT_SCALE_M`: metres per unit of the displacement image (value in [0,1],
  mid-level :data:`DISPLACEMENT_MIDLEVEL`); undocumented by the author. 4 mm full range
  is a typical ZBrush level-2 bake; only the detail score's normalisation is insensitive to
  it (it is a correlation), the millimetre errors change by well under 0.1 mm.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.errors import ModelFilesError

MESH_FILE = "LeePerrySmith.glb"
DISPLACEMENT_FILE = "Infinite-Level_02_Disp_NoSmoothUV-4096.jpg"
COLOUR_FILE = "Map-COL.jpg"
LICENSE_FILE = "LeePerrySmith_License.txt"

#: Assumed head length (glabella - opisthocranion), metres: sets the scan's scale.
HEAD_LENGTH_M = 0.195
#: Metres per unit of displacement-image value (image value in [0, 1]).
DISPLACEMENT_SCALE_M = 0.004
#: Image value of zero displacement.
DISPLACEMENT_MIDLEVEL = 0.5
#: Midpoint subdivision levels applied to the base mesh before displacement.
SUBDIVISION_LEVELS = 2

ATTRIBUTION = ("Infinite, 3D Head Scan by Lee Perry-Smith (Infinite-Realities), CC-BY 3.0, "
               "based on a work at www.triplegangers.com")


@dataclass(frozen=True)
class Scan:
    """The ground-truth head in engine model space.

    Attributes:
        vertices: ``[V, 3]`` float64, detailed surface (base + displacement), metres.
        base_vertices: ``[V, 3]`` float64, the subdivided base mesh before displacement.
        normals: ``[V, 3]`` float64 unit normals of the detailed surface.
        faces: ``[F, 3]`` int64 triangles, counter-clockwise from outside.
        uvs: ``[V, 2]`` float64 per-vertex UVs (origin bottom-left).
        displacement: ``[H, W]`` float32 displacement map in metres (top row first).
        colour: ``[Hc, Wc, 3]`` float32 colour map, sRGB in [0, 1] (top row first).
        scale: metres per scan unit.
        folder: where the files were read from.
    """

    vertices: np.ndarray
    base_vertices: np.ndarray
    normals: np.ndarray
    faces: np.ndarray
    uvs: np.ndarray
    displacement: np.ndarray
    colour: np.ndarray
    scale: float
    folder: Path


def default_scan_dir() -> Path:
    """``../shared/data/head_scan`` relative to the repository root."""
    return Path(__file__).resolve().parents[2] / "shared" / "data" / "head_scan"


def load_scan(folder: str | Path | None = None) -> Scan:
    """Read the scan files and build the detailed ground-truth surface (about 2 s).

    Raises:
        ModelFilesError: a file is missing or unreadable (says which, and where).
    """
    import trimesh
    from PIL import Image

    folder = Path(folder) if folder is not None else default_scan_dir()
    for name in (MESH_FILE, DISPLACEMENT_FILE, COLOUR_FILE):
        if not (folder / name).is_file():
            raise ModelFilesError(f"Head scan file {name} not found in {folder}; pass the folder "
                                  "holding the Lee Perry-Smith scan with --scan.")
    mesh = trimesh.load(folder / MESH_FILE, force="mesh", process=False)
    # trimesh flips v on load (uv = (u, 1 - v_gltf)); the engine's v is the glTF/OpenGL one.
    uv = np.asarray(mesh.visual.uv, np.float64).copy()
    uv[:, 1] = 1.0 - uv[:, 1]
    verts, faces = np.asarray(mesh.vertices, np.float64), np.asarray(mesh.faces, np.int64)
    for _ in range(SUBDIVISION_LEVELS):
        verts, faces, attrs = trimesh.remesh.subdivide(verts, faces, vertex_attributes={"uv": uv})
        uv = attrs["uv"]
    scale = HEAD_LENGTH_M / head_length(verts)
    verts = verts * scale
    with Image.open(folder / DISPLACEMENT_FILE) as im:
        disp01 = np.asarray(im.convert("L"), np.float32) / 255.0
    with Image.open(folder / COLOUR_FILE) as im:
        colour = np.asarray(im.convert("RGB"), np.float32) / 255.0
    displacement = (disp01 - DISPLACEMENT_MIDLEVEL) * DISPLACEMENT_SCALE_M
    base_normals = vertex_normals(verts, faces)
    detailed = verts + base_normals * sample_map(displacement, uv)[:, None]
    return Scan(vertices=detailed, base_vertices=verts, normals=vertex_normals(detailed, faces),
                faces=faces, uvs=uv, displacement=displacement, colour=colour, scale=scale,
                folder=folder)


def head_length(vertices: np.ndarray) -> float:
    """Glabella to the back of the skull, in the mesh's units: the largest front-to-back (z)
    extent of 1 %-of-height horizontal slices above the nasion.

    The nasion is the first slice above the nose tip where the face's front stops receding
    (the front rises again towards the brow ridge); slices below it would measure the nose.
    """
    y, z = vertices[:, 1], vertices[:, 2]
    tip_y = y[np.argmax(z)]
    top = y.max()
    step = 0.01 * (top - y.min())
    fronts, lengths = [], []
    for lo in np.arange(tip_y, top - step, step):
        zs = z[(y >= lo) & (y < lo + step)]
        fronts.append(zs.max() if zs.size else np.inf)
        lengths.append(zs.max() - zs.min() if zs.size else 0.0)
    rising = np.flatnonzero(np.diff(fronts) > 0)
    nasion = int(rising[0]) if rising.size else 0
    return float(max(lengths[nasion:]))


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals ``[V, 3]`` float64 of triangles ``[F, 3]``."""
    v = np.asarray(vertices, np.float64)
    fn = np.cross(v[faces[:, 1]] - v[faces[:, 0]], v[faces[:, 2]] - v[faces[:, 0]])
    n = np.zeros_like(v)
    for k in range(3):
        np.add.at(n, faces[:, k], fn)
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-20)


def vertex_areas(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """``[V]`` float64: surface area each vertex stands for (a third of its triangles' areas),
    in the vertices' units squared."""
    v = np.asarray(vertices, np.float64)
    area = 0.5 * np.linalg.norm(np.cross(v[faces[:, 1]] - v[faces[:, 0]], v[faces[:, 2]] - v[faces[:, 0]]), axis=1)
    out = np.zeros(len(v))
    for k in range(3):
        np.add.at(out, faces[:, k], area / 3.0)
    return out


def sample_map(image: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear lookup of a map ``[H, W]`` or ``[H, W, C]`` (top row first) at UVs ``[N, 2]``
    (origin bottom-left); returns ``[N]`` or ``[N, C]`` float32. UVs are clamped to the map."""
    h, w = image.shape[:2]
    x = np.clip(uv[:, 0] * w - 0.5, 0, w - 1)
    y = np.clip((1.0 - uv[:, 1]) * h - 0.5, 0, h - 1)
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = x - x0, y - y0
    if image.ndim == 3:
        fx, fy = fx[:, None], fy[:, None]
    top = image[y0, x0] * (1 - fx) + image[y0, x1] * fx
    bottom = image[y1, x0] * (1 - fx) + image[y1, x1] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)


# --------------------------------------------------------------------------- landmarks, regions

#: REALY's four evaluation regions, in report order.
REGIONS = ("nose", "mouth", "forehead", "cheeks")
#: Margins of the region definitions (metres); see :func:`define_regions`.
REGION_MARGIN_M = 0.005
MOUTH_MARGIN_M = 0.008
CHEEK_INSET_M = 0.008


@dataclass(frozen=True)
class ScanRegions:
    """Regions of the scan surface (masks over :attr:`Scan.vertices`).

    Attributes:
        landmarks: ``[478, 3]`` float64 MediaPipe landmarks located on the scan (metres).
        masks: region name (:data:`REGIONS`) -> ``[V]`` bool.
        face: ``[V]`` bool, the area alignment uses: inside the face oval, facing forward,
            eyes excluded (the scan's eyes are closed, a reconstruction's may be open).
    """

    landmarks: np.ndarray
    masks: dict[str, np.ndarray]
    face: np.ndarray


def visible_points(points: np.ndarray, normals: np.ndarray, camera, cell_px: float = 2.0,
                   tolerance_m: float = 0.003) -> np.ndarray:
    """``[N]`` bool: points ``[N, 3]`` (model space) that face the camera and are not hidden.

    Hidden = more than ``tolerance_m`` behind the nearest point falling in the same
    ``cell_px`` image cell (a point-splat depth buffer; needs points denser than the cells)."""
    cam = camera.to_camera(points)
    depth = -cam[:, 2]
    px = camera.project(points)
    facing = (normals @ camera.rotation.T * -cam / np.linalg.norm(cam, axis=1, keepdims=True)).sum(1) > 0
    w, h = camera.image_size
    cx = np.clip((px[:, 0] / cell_px).astype(np.int64), 0, int(w / cell_px))
    cy = np.clip((px[:, 1] / cell_px).astype(np.int64), 0, int(h / cell_px))
    cell = cy * (int(w / cell_px) + 1) + cx
    zbuf = np.full(cell.max() + 1, np.inf)
    np.minimum.at(zbuf, cell[facing], depth[facing])
    inside = (px[:, 0] >= 0) & (px[:, 0] < w) & (px[:, 1] >= 0) & (px[:, 1] < h)
    return facing & inside & (depth <= zbuf[cell] + tolerance_m)


def locate_landmarks(scan: Scan, points_px: np.ndarray, camera) -> np.ndarray:
    """Lift landmarks detected in a render (``[L, 2]`` image pixels) onto the scan: the visible
    scan vertex projecting nearest to each landmark. Returns ``[L, 3]`` float64 metres."""
    from scipy.spatial import cKDTree

    seen = np.flatnonzero(visible_points(scan.vertices, scan.normals, camera))
    _, nearest = cKDTree(camera.project(scan.vertices[seen])).query(points_px[:, :2])
    return scan.vertices[seen[nearest]]


def define_regions(scan: Scan, landmarks: np.ndarray) -> ScanRegions:
    """REALY's four regions on the scan, from its MediaPipe landmarks, in the frontal plane.

    The scan looks along +Z, so each vertex is tested by its (x, y) against polygons of
    landmarks (x, y); only vertices in front count: normal z > 0, not behind the face oval's
    rearmost landmark, and not hidden behind the surface seen from the front
    (:func:`front_most`: this drops the inside of the mouth and of the nostrils, which the
    scan models and no photo shows). With margin m = :data:`REGION_MARGIN_M`:

    * nose: convex hull of MediaPipe's nose landmarks (bridge between the eyes, tip, wings).
    * mouth: convex hull of the lip landmarks grown by :data:`MOUTH_MARGIN_M`, minus the nose.
    * forehead: inside the face oval (whose top, landmark 10, is near the hairline), above the
      highest eyebrow landmark + m, between the outer ends of the eyebrows (less m). Kept
      inside the oval so that every method, MediaPipe's face-only mesh too, covers it.
    * cheeks: inside the face oval (at least :data:`CHEEK_INSET_M` from its edge), below the
      lowest eye landmark - 2m, above the lowest lip landmark, outside the nose hull and the
      mouth region grown by m, and further than m from the nose's sides.
    """
    from engine.detect.landmarks import CONTOUR, LEFT_EYE, LEFT_EYEBROW, LIPS, NOSE, RIGHT_EYE, RIGHT_EYEBROW

    xy, lm = scan.vertices[:, :2], landmarks[:, :2]
    front = ((scan.normals[:, 2] > 0) & front_most(scan.vertices)
             & (scan.vertices[:, 2] > landmarks[CONTOUR, 2].min() - REGION_MARGIN_M))
    m = REGION_MARGIN_M
    oval = _polygon_distance(xy, lm[CONTOUR])
    nose = _polygon_distance(xy, lm[NOSE][_hull(lm[NOSE])])
    lips = _polygon_distance(xy, lm[LIPS][_hull(lm[LIPS])])
    eyes = np.minimum(_polygon_distance(xy, lm[LEFT_EYE][_hull(lm[LEFT_EYE])]),
                      _polygon_distance(xy, lm[RIGHT_EYE][_hull(lm[RIGHT_EYE])]))
    brows = lm[np.concatenate([LEFT_EYEBROW, RIGHT_EYEBROW])]
    eye_pts = lm[np.concatenate([LEFT_EYE, RIGHT_EYE])]
    y = xy[:, 1]
    nose_mask = front & (nose <= 0)
    mouth_mask = front & (lips <= MOUTH_MARGIN_M) & ~nose_mask
    brow_top = brows[:, 1].max()
    forehead = (front & (oval <= 0) & (y > brow_top + m)
                & (xy[:, 0] > brows[:, 0].min() + m) & (xy[:, 0] < brows[:, 0].max() - m))
    nose_x = lm[NOSE, 0]
    cheeks = (front & (oval <= -CHEEK_INSET_M) & (y < eye_pts[:, 1].min() - 2 * m)
              & (y > lm[LIPS, 1].min()) & (nose > m) & (lips > MOUTH_MARGIN_M + m)
              & ((xy[:, 0] < nose_x.min() - m) | (xy[:, 0] > nose_x.max() + m)))
    masks = {"nose": nose_mask, "mouth": mouth_mask, "forehead": forehead, "cheeks": cheeks}
    return ScanRegions(landmarks=landmarks, masks=masks, face=front & (oval <= 0) & (eyes > m))


def front_most(vertices: np.ndarray, cell_m: float = 0.001, tolerance_m: float = 0.003) -> np.ndarray:
    """``[V]`` bool: vertices ``[V, 3]`` (metres) on the surface seen from the front (+Z,
    orthographic): within ``tolerance_m`` of the frontmost vertex of their ``cell_m`` square
    in (x, y)."""
    cell = np.floor((vertices[:, :2] - vertices[:, :2].min(0)) / cell_m).astype(np.int64)
    key = cell[:, 0] * (cell[:, 1].max() + 1) + cell[:, 1]
    _, inverse = np.unique(key, return_inverse=True)
    top = np.full(inverse.max() + 1, -np.inf)
    np.maximum.at(top, inverse, vertices[:, 2])
    return vertices[:, 2] >= top[inverse] - tolerance_m


def _hull(points: np.ndarray) -> np.ndarray:
    from scipy.spatial import ConvexHull

    return ConvexHull(points).vertices


def _polygon_distance(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Signed distance ``[N]`` of 2D points to a closed polygon ``[M, 2]`` (negative inside)."""
    from matplotlib.path import Path as MplPath

    a, b = polygon, np.roll(polygon, -1, axis=0)
    ab = b - a
    t = np.clip(((points[:, None] - a) * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-20), 0, 1)
    dist = np.linalg.norm(points[:, None] - (a + t[..., None] * ab), axis=-1).min(1)
    inside = MplPath(polygon).contains_points(points)
    return np.where(inside, -dist, dist)
