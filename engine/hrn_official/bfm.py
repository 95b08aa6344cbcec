"""The BFM "front" face model of the official release, its camera and its UV layout files.

Read from ``BFM_model_front.mat`` (scipy ``loadmat``; field names, shapes and dtypes of
OFFICIAL-LAYOUT.md, FACTS 1.9 and 9). Index fields are stored as float32 and 1-based; they
are converted explicitly to 0-based int64 after checking they hold whole numbers in range.
Shapes are in **decimetres** in the official model frame (x viewer's right, y up, z towards
the camera), which is also our model frame up to the unit (x 0.1 gives metres).

Geometry (FACTS 1.10, 1.11): S = mean + B_id a_id + B_exp a_exp (mean recentered on its own
35 709-vertex centroid); R = Rz(g) Ry(b) Rx(a); posed v' = R v + t. The camera sits at
z = 10 dm looking down -z with f = 1015 px and principal point (112, 112) for the 224 crop,
so u = f x / (10 - z) + 112 and v_up = f y / (10 - z) + 112 (y-up pixels, row = 224 - v_up
in pixel-edge units). Vertex normals sum the unit normals of the (up to 8) faces listed in
``point_buf`` (padding points at an appended zero normal) and renormalise.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ModelFilesError
from . import layout

if TYPE_CHECKING:
    from ..head.linear import MorphableHead

NUM_VERTICES = 35709
NUM_FACES = 70789
NUM_ID, NUM_EXP, NUM_TEX = 80, 64, 80
#: Distance of the camera from the model origin along +z, decimetres.
CAMERA_DISTANCE = 10.0
#: Focal length (px) and principal point of the 224x224 network crop.
FOCAL_224 = 1015.0
CROP_224 = 224
#: Near and far clip planes of the official renders, decimetres.
Z_NEAR, Z_FAR = 5.0, 15.0
#: Side of the UV albedo basis maps (512 x 512 x 3 values per component).
ALBEDO_MAP_SIZE = 512

# field -> (shape, is_index). N = vertices, F = faces; values from OFFICIAL-LAYOUT.md.
_N3 = 3 * NUM_VERTICES
_FIELDS = {
    "meanshape": ((1, _N3), False),
    "meantex": ((1, _N3), False),
    "idBase": ((_N3, NUM_ID), False),
    "exBase": ((_N3, NUM_EXP), False),
    "texBase": ((_N3, NUM_TEX), False),
    "tri": ((NUM_FACES, 3), True),
    "point_buf": ((NUM_VERTICES, 8), True),
    "tri_mask2": ((None, 3), True),
    "keypoints": ((1, 68), True),
    "frontmask2_idx": ((None, 1), True),
    "skinmask": ((1, NUM_VERTICES), False),
}


@dataclass(frozen=True)
class BFMModel:
    """The official BFM front model as float32 / int64 torch tensors (CPU unless moved)."""

    mean_shape: torch.Tensor
    """``[N, 3]`` float32 recentered mean shape, decimetres."""
    id_basis: torch.Tensor
    """``[3N, 80]`` float32 identity basis (xyz interleaved rows)."""
    exp_basis: torch.Tensor
    """``[3N, 64]`` float32 expression basis (float64 on disk)."""
    mean_tex: torch.Tensor
    """``[N, 3]`` float32 per-vertex mean albedo, 0..255."""
    tex_basis: torch.Tensor
    """``[3N, 80]`` float32 per-vertex albedo basis (0..255 scale)."""
    triangles: torch.Tensor
    """``[F, 3]`` int64 0-based vertex indices."""
    point_buf: torch.Tensor
    """``[N, 8]`` int64 0-based adjacent-face indices; ``F`` is the zero-normal padding face."""
    keypoints: torch.Tensor
    """``[68]`` int64 0-based vertex indices of the 68 landmarks."""
    front_mask: torch.Tensor
    """``[M]`` int64 0-based vertices of the photometric-loss face region."""
    front_triangles: torch.Tensor
    """``[Fm, 3]`` int64 0-based indices into ``front_mask``."""
    skin_mask: torch.Tensor
    """``[N]`` float32 0/1 skin-region mask."""
    centroid: torch.Tensor
    """``[3]`` float32 centroid subtracted from the mean shape (decimetres)."""

    @classmethod
    def load(cls, path: str | Path) -> "BFMModel":
        """Read and check ``BFM_model_front.mat``.

        Raises:
            ModelFilesError: missing/unreadable file, a missing field, a wrong shape, or an
                index field that is not whole numbers within range.
        """
        from scipy.io import loadmat

        path = Path(path)
        if not path.is_file():
            raise ModelFilesError(f"Face model file not found: {path}. {layout.where_to_get('bfm')}")
        try:
            mat = loadmat(str(path))
        except Exception as err:  # scipy raises ValueError, TypeError, OSError, MatReadError...
            raise ModelFilesError(f"{path} ({path.stat().st_size} bytes) is truncated or not a "
                                  f"MATLAB file ({err}). {layout.where_to_get('bfm')}") from err
        fields = {}
        for name, (shape, _) in _FIELDS.items():
            if name not in mat:
                raise ModelFilesError(f"{path}: field '{name}' is missing; not the official "
                                      f"BFM_model_front.mat. {layout.where_to_get('bfm')}")
            value = np.asarray(mat[name])
            if value.ndim != len(shape) or any(s is not None and s != v for s, v in zip(shape, value.shape)):
                raise ModelFilesError(f"{path}: field '{name}' expected shape "
                                      f"{tuple('any' if s is None else s for s in shape)}, found {value.shape}.")
            fields[name] = value
        front = _indices(fields["frontmask2_idx"].reshape(-1), NUM_VERTICES, "frontmask2_idx", path)
        mean = fields["meanshape"].astype(np.float32).reshape(-1, 3)
        centroid = mean.mean(0)
        t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
        return cls(
            mean_shape=t(mean - centroid),
            id_basis=t(fields["idBase"].astype(np.float32)),
            exp_basis=t(fields["exBase"].astype(np.float32)),
            mean_tex=t(fields["meantex"].astype(np.float32).reshape(-1, 3)),
            tex_basis=t(fields["texBase"].astype(np.float32)),
            triangles=t(_indices(fields["tri"], NUM_VERTICES, "tri", path)),
            # point_buf may reference the padding face F (0-based) as well.
            point_buf=t(_indices(fields["point_buf"], NUM_FACES + 1, "point_buf", path)),
            keypoints=t(_indices(fields["keypoints"].reshape(-1), NUM_VERTICES, "keypoints", path)),
            front_mask=t(front),
            front_triangles=t(_indices(fields["tri_mask2"], len(front), "tri_mask2", path)),
            skin_mask=t(fields["skinmask"].astype(np.float32).reshape(-1)),
            centroid=t(centroid.astype(np.float32)),
        )

    def to(self, device: str | torch.device) -> "BFMModel":
        """Copy with every tensor on ``device``."""
        return BFMModel(**{k: getattr(self, k).to(device) for k in self.__dataclass_fields__})

    # ------------------------------------------------------------------ geometry
    def shape(self, identity: torch.Tensor, expression: torch.Tensor) -> torch.Tensor:
        """Canonical (unposed) shape ``[B, N, 3]`` float32, decimetres, from ``[B, 80]``
        identity and ``[B, 64]`` expression weights."""
        flat = identity @ self.id_basis.T + expression @ self.exp_basis.T
        return flat.reshape(identity.shape[0], -1, 3) + self.mean_shape

    def vertex_normals(self, shape: torch.Tensor) -> torch.Tensor:
        """Unit vertex normals ``[B, N, 3]`` of ``[B, N, 3]`` vertices (FACTS 1.11)."""
        a, b, c = (shape[:, self.triangles[:, k]] for k in range(3))
        face = F.normalize(torch.cross(a - b, b - c, dim=-1), dim=-1)
        face = torch.cat([face, face.new_zeros(face.shape[0], 1, 3)], 1)
        return F.normalize(face[:, self.point_buf].sum(2), dim=-1)


def rotation(angles: torch.Tensor) -> torch.Tensor:
    """``[B, 3, 3]`` rotation R = Rz(angles[2]) Ry(angles[1]) Rx(angles[0]) for ``[B, 3]``
    radians; applied to column vectors (v' = R v)."""
    x, y, z = angles.unbind(-1)
    one, zero = torch.ones_like(x), torch.zeros_like(x)
    rx = torch.stack([one, zero, zero, zero, x.cos(), -x.sin(), zero, x.sin(), x.cos()], -1)
    ry = torch.stack([y.cos(), zero, y.sin(), zero, one, zero, -y.sin(), zero, y.cos()], -1)
    rz = torch.stack([z.cos(), -z.sin(), zero, z.sin(), z.cos(), zero, zero, zero, one], -1)
    shape = angles.shape[:-1] + (3, 3)
    return rz.reshape(shape) @ ry.reshape(shape) @ rx.reshape(shape)


def pose(points: torch.Tensor, rot: torch.Tensor, translation: torch.Tensor) -> torch.Tensor:
    """``[B, N, 3]`` points -> ``R p + t`` (world frame, camera at z = 10)."""
    return points @ rot.transpose(-1, -2) + translation.unsqueeze(-2)


def project(points: torch.Tensor, size: int = CROP_224) -> torch.Tensor:
    """Project world-frame points ``[..., 3]`` (decimetres) with the official camera scaled to
    a ``size`` crop: ``[..., 2]`` pixels (u, v_up), v measured **upwards** from the bottom.

    f = 1015 * size / 224, centre size / 2 (so 224 -> 1015/112, 512 -> 2320/256)."""
    scale = size / CROP_224
    depth = CAMERA_DISTANCE - points[..., 2]
    focal, centre = FOCAL_224 * scale, size / 2.0
    return torch.stack([focal * points[..., 0] / depth + centre,
                        focal * points[..., 1] / depth + centre], -1)


def load_uvs(path: str | Path) -> torch.Tensor:
    """``bfm_uvs2.npy`` -> ``[N, 2]`` float32 per-vertex UVs (v up). float32 or float64 on
    disk (unverified), exactly N x 2 values."""
    array = _load_npy(path, "uvs", NUM_VERTICES * 2)
    return torch.from_numpy(array.reshape(NUM_VERTICES, 2))


def load_template_faces(path: str | Path) -> torch.Tensor:
    """``template_bfm.obj`` faces -> ``[F, 3]`` int64 0-based (index before any '/')."""
    path = Path(path)
    if not path.is_file():
        raise ModelFilesError(f"Template mesh not found: {path}. {layout.where_to_get('template_obj')}")
    faces, num_v = [], 0
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if line.startswith("v "):
                num_v += 1
            elif line.startswith("f "):
                items = line.split()[1:]
                if len(items) != 3:
                    raise ModelFilesError(f"{path}: face line with {len(items)} corners, expected triangles.")
                faces.append([int(i.split("/")[0]) for i in items])
    faces = np.asarray(faces, dtype=np.int64) - 1
    if faces.shape != (NUM_FACES, 3) or num_v < NUM_VERTICES or faces.min() < 0 or faces.max() >= NUM_VERTICES:
        raise ModelFilesError(f"{path}: expected {NUM_FACES} triangles over {NUM_VERTICES} vertices, "
                              f"found {len(faces)} faces and {num_v} vertices. "
                              f"{layout.where_to_get('template_obj')}")
    return torch.from_numpy(faces)


def load_albedo_basis(mean_path: str | Path, basis_path: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """UV albedo model: ``([786432], [786432, 80])`` float32, 0..255, row = (y*512 + x)*3 + c."""
    count = ALBEDO_MAP_SIZE * ALBEDO_MAP_SIZE * 3
    mean = _load_npy(mean_path, "tex_mean", count)
    basis = _load_npy(basis_path, "tex_basis", count * NUM_TEX)
    return torch.from_numpy(mean.reshape(-1)), torch.from_numpy(basis.reshape(count, NUM_TEX))


def albedo_map(mean: torch.Tensor, basis: torch.Tensor, texture: torch.Tensor, size: int = 256) -> torch.Tensor:
    """3DMM UV albedo A0 ``[B, 3, size, size]`` in [0, 1] from ``[B, 80]`` texture weights:
    (basis a + mean) / 255 at 512^2, bilinearly resized (align_corners False) (FACTS 1.15)."""
    flat = (texture @ basis.T + mean) / 255.0
    full = flat.reshape(-1, ALBEDO_MAP_SIZE, ALBEDO_MAP_SIZE, 3).permute(0, 3, 1, 2)
    return F.interpolate(full, (size, size), mode="bilinear", align_corners=False)


def _load_npy(path: str | Path, key: str, count: int) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise ModelFilesError(f"File not found: {path}. {layout.where_to_get(key)}")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise ModelFilesError(f"{path} ({path.stat().st_size} bytes) is truncated or not a .npy "
                              f"array ({err}). {layout.where_to_get(key)}") from err
    if array.dtype not in (np.float32, np.float64) or array.size != count:
        raise ModelFilesError(f"{path}: expected {count} float32/float64 values, found "
                              f"{array.size} {array.dtype} (shape {array.shape}).")
    return np.ascontiguousarray(array, dtype=np.float32)


def _indices(values: np.ndarray, bound: int, name: str, path: Path) -> np.ndarray:
    """1-based whole-number float indices -> 0-based int64, all in [0, bound)."""
    values = np.asarray(values)
    ints = np.rint(values).astype(np.int64)
    if not np.array_equal(ints, values) or ints.min() < 1 or ints.max() > bound:
        raise ModelFilesError(f"{path}: field '{name}' must hold 1-based whole-number indices in "
                              f"1..{bound}; found values in {values.min()}..{values.max()}.")
    return ints - 1


def bfm_head(model: BFMModel, uvs: torch.Tensor) -> "MorphableHead":
    """The BFM front model as the engine's head interface (:class:`engine.head.model.HeadModel`),
    so the built-in pipeline (coarse, mid, high, albedo) and the Blender scene run on it.

    Metres instead of decimetres, axes unchanged (the official model frame is ours); the 80
    identity columns are at one standard deviation (Deep3D's basis), the 64 expression
    columns are PCA modes with a unit-Gaussian prior; one material, ``"skin"``, in the
    official UV layout (``uvs``, ``bfm_uvs2.npy``). Landmarks: BFM knows the 68 Multi-PIE
    points (``keypoints``); each stands in for its MediaPipe landmark
    (:data:`engine.head.multipie68.MULTIPIE68_TO_MEDIAPIPE`), the jaw points (which slide
    along the contour) at weight 0.3, the others at 1; every other MediaPipe landmark has
    weight 0. Regions (eyes, nose, lips) are the vertices inside the frontal outline of
    their keypoints.
    """
    from scipy.spatial import Delaunay

    from ..head.linear import MorphableHead, mirror_partners
    from ..head.multipie68 import MULTIPIE68_TO_MEDIAPIPE

    metres = 0.1
    n = NUM_VERTICES
    mean = model.mean_shape.numpy().astype(np.float64) * metres
    faces = np.concatenate([model.triangles.numpy(), np.full((NUM_FACES, 1), -1)], 1).astype(np.int32)
    keypoints = model.keypoints.numpy()
    weights = np.zeros(478, np.float32)
    vertex = np.zeros(478, np.int64)
    for k, mp_index in enumerate(MULTIPIE68_TO_MEDIAPIPE):
        vertex[mp_index], weights[mp_index] = keypoints[k], 0.3 if k < 17 else 1.0
    # A face holding each landmark vertex, barycentrics picking that corner.
    tri = model.triangles.numpy()
    face_of = np.full(n, -1, np.int64)
    corner_of = np.zeros(n, np.int64)
    for c in range(3):
        face_of[tri[:, c]], corner_of[tri[:, c]] = np.arange(NUM_FACES), c
    bary = np.zeros((478, 3), np.float32)
    bary[np.arange(478), corner_of[vertex]] = 1.0

    def inside(indices: Sequence[int], grow: float) -> np.ndarray:
        pts = mean[keypoints[list(indices)], :2]
        centre = pts.mean(0)
        hull = Delaunay(centre + grow * (pts - centre))
        return (hull.find_simplex(mean[:, :2]) >= 0) & (mean[:, 2] > np.median(mean[:, 2]))

    regions = {"face": np.ones(n, bool), "skin": np.ones(n, bool),
               "eyes": inside(range(36, 42), 1.7) | inside(range(42, 48), 1.7),
               "nose": inside([27, 31, 32, 33, 34, 35], 1.4), "lips": inside(range(48, 60), 1.05)}
    uv = uvs.numpy().astype(np.float32)
    return MorphableHead(
        name="Basel Face Model 2009 (official HRN release, front model)",
        faces=faces, uvs=uv, face_uvs=faces.copy(), face_material=np.zeros(NUM_FACES, np.uint8),
        material_names=("skin",), mean=mean.astype(np.float32),
        identity=(model.id_basis.numpy().T.reshape(NUM_ID, n, 3) * metres).astype(np.float32),
        expression=(model.exp_basis.numpy().T.reshape(NUM_EXP, n, 3) * metres).astype(np.float32),
        expression_names=tuple(f"bfm_expression_{k:02d}" for k in range(NUM_EXP)),
        expression_prior="gaussian", mirror=mirror_partners(mean), regions=regions,
        landmark_faces=face_of[vertex].astype(np.int32), landmark_barycentrics=bary,
        landmark_weights=weights, landmark_uv=uv[vertex])
