"""The morphable head: one implementation of :class:`engine.head.model.HeadModel` for any
linear model, its Catmull-Clark subdivision, and the built-in model file.

The built-in head, ``engine/head/data/ict_head.npz``, is derived from the ICT Face Model Light
(MIT, see ``engine/head/data/ICT_FACE_MODEL_LICENSE.md``) by ``tools/build_ict_head.py``, with
the MediaPipe landmark correspondence of ``tools/build_landmark_correspondence.py``.
"""
from __future__ import annotations

import dataclasses
import functools
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from scipy.spatial import cKDTree

from ..errors import ModelFilesError
from .model import ARKIT_NAMES, MAPPED_MATERIALS, N_LANDMARKS
from ..geometry.mesh_ops import vertex_uvs
from ..result import triangle_faces, triangulate
from .subdivision import catmull_clark, locate_uv, subdivide_uvs

DEFAULT_MODEL_PATH = Path(__file__).resolve().parent / "data" / "ict_head.npz"

_REBUILD_HINT = ("Restore it from the repository (git checkout engine/head/data/ict_head.npz) or "
                 "rebuild it with `python tools/build_ict_head.py` followed by "
                 "`python tools/build_landmark_correspondence.py`.")

#: Arrays every model file holds (name -> number of dimensions).
_GEOMETRY_KEYS = {
    "name": 0, "faces": 2, "uvs": 2, "face_uvs": 2, "face_material": 1, "material_names": 1,
    "mean": 2, "identity": 3, "expression": 3, "expression_names": 1, "mirror": 1,
    "region_names": 1, "region_masks": 2,
}
_LANDMARK_KEYS = {"landmark_faces": 1, "landmark_barycentrics": 2, "landmark_weights": 1,
                  "landmark_uv": 2}
#: Parts that ride on the skin: they read the UV maps at the nearest skin vertex.
_RIDING_REGIONS = ("lashes",)


@dataclass(frozen=True, eq=False, repr=False)
class MorphableHead:
    """A linear morphable head; attributes as :class:`engine.head.model.HeadModel`."""

    name: str
    faces: np.ndarray
    uvs: np.ndarray
    face_uvs: np.ndarray
    face_material: np.ndarray
    material_names: tuple[str, ...]
    mean: np.ndarray
    identity: np.ndarray
    expression: np.ndarray
    expression_names: tuple[str, ...]
    expression_prior: Literal["blendshape", "gaussian"]
    mirror: np.ndarray
    regions: dict[str, np.ndarray]
    landmark_faces: np.ndarray
    landmark_barycentrics: np.ndarray
    landmark_weights: np.ndarray
    landmark_uv: np.ndarray
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __repr__(self) -> str:
        return (f"MorphableHead({self.name!r}, {self.n_vertices} vertices, {len(self.faces)} faces, "
                f"{self.n_identity} identity modes, {len(self.expression_names)} expressions)")

    @property
    def n_vertices(self) -> int:
        return len(self.mean)

    @property
    def n_identity(self) -> int:
        return len(self.identity)

    def _cached(self, key, make):
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def triangles(self) -> np.ndarray:
        return self._cached("triangles", lambda: triangulate(self.faces))

    def mapped_faces(self) -> np.ndarray:
        mapped = [self.material_names.index(m) for m in MAPPED_MATERIALS if m in self.material_names]
        return self._cached("mapped", lambda: np.isin(self.face_material, mapped))

    def map_vertex_uv(self) -> tuple[np.ndarray, np.ndarray]:
        return self._cached("map_uv", self._map_vertex_uv)

    def _map_vertex_uv(self) -> tuple[np.ndarray, np.ndarray]:
        mapped = self.mapped_faces()
        faces = self.faces[mapped]
        uv = vertex_uvs(faces, self.face_uvs[mapped], self.uvs, self.n_vertices)
        weight = np.zeros(self.n_vertices, np.float32)
        weight[faces[faces >= 0]] = 1.0
        skin = np.nonzero(weight > 0)[0]
        for name in _RIDING_REGIONS:
            riders = np.nonzero(self.regions.get(name, np.zeros(self.n_vertices, bool)))[0]
            if len(riders) and len(skin):
                _, near = cKDTree(self.mean[skin]).query(self.mean[riders])
                uv[riders], weight[riders] = uv[skin[near]], 1.0
        return uv, weight

    def shape(self, identity=None, expression=None):
        if _is_torch(identity) or _is_torch(expression):
            return self._shape_torch(identity, expression)
        out = self.mean.astype(np.float32).copy()
        if identity is not None:
            out += np.tensordot(np.asarray(identity, np.float32), self.identity, axes=1)
        if expression is not None:
            out += np.tensordot(np.asarray(expression, np.float32), self.expression, axes=1)
        return out

    def _shape_torch(self, identity, expression):
        import torch

        ref = identity if identity is not None else expression
        key = ("torch", str(ref.device), ref.dtype)
        as_t = lambda a: torch.as_tensor(a, dtype=ref.dtype, device=ref.device)  # noqa: E731
        mean, id_basis, ex_basis = self._cached(
            key, lambda: (as_t(self.mean), as_t(self.identity), as_t(self.expression)))
        out = mean
        if identity is not None:
            out = out + torch.einsum("...k,kvc->...vc", identity, id_basis)
        if expression is not None:
            out = out + torch.einsum("...k,kvc->...vc", expression, ex_basis)
        return out

    def landmarks(self, vertices):
        tri = self.triangles()[self.landmark_faces]
        bary = self.landmark_barycentrics
        if _is_torch(vertices):
            import torch

            tri_t = torch.as_tensor(tri, dtype=torch.long, device=vertices.device)
            bary_t = torch.as_tensor(bary, dtype=vertices.dtype, device=vertices.device)
            return (vertices[..., tri_t, :] * bary_t[..., None]).sum(-2)
        return (np.asarray(vertices)[..., tri, :] * bary[..., None]).sum(-2)

    def subdivided(self, levels: int = 1) -> "MorphableHead":
        """Catmull-Clark subdivision, ``levels`` times: positions (mean and every basis) through
        one sparse operator, UVs linearly per corner (seams kept), regions and materials
        carried over, mirror map found again by reflection, landmarks re-located through
        :attr:`landmark_uv`. Cached."""
        if levels < 0:
            raise ValueError(f"levels must be >= 0, got {levels}")
        if levels == 0:
            return self
        return self._cached(("subdivided", levels), lambda: self.subdivided(levels - 1)._subdivide_once())

    def _subdivide_once(self) -> "MorphableHead":
        step = catmull_clark(self.faces, self.n_vertices)
        op = step.operator
        mean = (op @ self.mean).astype(np.float32)
        op32 = op.astype(np.float32)

        def apply(bases: np.ndarray) -> np.ndarray:      # [K, V, 3] -> [K, V', 3], one product
            k, v, _ = bases.shape
            flat = np.ascontiguousarray(bases.transpose(1, 0, 2)).reshape(v, 3 * k)
            return np.ascontiguousarray((op32 @ flat).reshape(-1, k, 3).transpose(1, 0, 2))
        uvs, face_uvs = subdivide_uvs(self.uvs, self.face_uvs)
        lm_faces, lm_bary = _locate_in_children(uvs, face_uvs, step.parent,
                                                triangle_faces(self.faces)[self.landmark_faces],
                                                self.landmark_uv)
        return dataclasses.replace(
            self, faces=step.faces, uvs=uvs, face_uvs=face_uvs,
            face_material=self.face_material[step.parent],
            mean=mean, identity=apply(self.identity),
            expression=apply(self.expression), mirror=mirror_partners(mean),
            regions={name: (step.linear @ mask.astype(np.float32)) >= 0.5
                     for name, mask in self.regions.items()},
            landmark_faces=lm_faces, landmark_barycentrics=lm_bary, _cache={})


def _locate_in_children(uvs: np.ndarray, child_uvs: np.ndarray, child_parent: np.ndarray,
                        parent: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Triangle (row of ``triangulate`` of the all-quad ``child_uvs [C, 4]``) and barycentrics
    ``[N, 3]`` of each query UV ``[N, 2]`` among the child quads of its ``parent`` face ``[N]``
    (``child_parent [C]``: each child's parent). Searching only a point's own children keeps
    it on its own part where UV layouts repeat (both irises share one)."""
    first = np.searchsorted(child_parent, parent)                 # children are in parent order
    count = np.searchsorted(child_parent, parent, side="right") - first
    cand = first[:, None] + np.arange(4)[None]                    # [N, 4] child quads (<= 4)
    valid = np.arange(4)[None] < count[:, None]
    tri = np.stack([2 * cand, 2 * cand + 1], -1).reshape(len(parent), 8)      # [N, 8] rows
    corners = uvs[triangulate(child_uvs)[np.where(np.repeat(valid, 2, 1), tri, 0)]].astype(np.float64)
    a, b, c = corners[..., 0, :], corners[..., 1, :], corners[..., 2, :]
    v0, v1, v2 = b - a, c - a, np.asarray(queries, np.float64)[:, None] - a
    den = v0[..., 0] * v1[..., 1] - v1[..., 0] * v0[..., 1]
    den = np.where(np.abs(den) < 1e-20, 1e-20, den)
    w1 = (v2[..., 0] * v1[..., 1] - v1[..., 0] * v2[..., 1]) / den
    w2 = (v0[..., 0] * v2[..., 1] - v2[..., 0] * v0[..., 1]) / den
    bary = np.stack([1 - w1 - w2, w1, w2], -1)                    # [N, 8, 3]
    score = np.where(np.repeat(valid, 2, 1), bary.min(-1), -np.inf)
    j = np.argmax(score, 1)                                       # inside if its min >= 0
    rows = np.arange(len(parent))
    best = np.clip(bary[rows, j], 0, 1)
    return tri[rows, j].astype(np.int32), (best / best.sum(1, keepdims=True)).astype(np.float32)


def mirror_partners(points: np.ndarray) -> np.ndarray:
    """``[V]`` int32: the vertex nearest to each vertex's reflection in x = 0 (the mirror map
    of a symmetric mesh; ``points [V, 3]``)."""
    return cKDTree(points).query(np.asarray(points) * [-1.0, 1.0, 1.0])[1].astype(np.int32)


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def read_model_arrays(path: Path, require_landmarks: bool = True) -> dict[str, np.ndarray]:
    """The arrays of a head model file, checked for presence and rank.

    Raises:
        ModelFilesError: the file is missing, unreadable or lacks arrays.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFilesError(f"Head model file {path} is missing. {_REBUILD_HINT}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise ModelFilesError(f"Head model file {path} is corrupt ({err}). {_REBUILD_HINT}") from err
    required = {**_GEOMETRY_KEYS, **(_LANDMARK_KEYS if require_landmarks else {})}
    bad = [k for k, nd in required.items() if k not in arrays or arrays[k].ndim != nd]
    if bad:
        raise ModelFilesError(f"Head model file {path} lacks or has malformed arrays "
                              f"{', '.join(bad)}. {_REBUILD_HINT}")
    return arrays


@functools.lru_cache(maxsize=4)
def load_head(path: str | Path | None = None) -> MorphableHead:
    """Load (once per path) a head model file (default: the built-in ICT head).

    Raises:
        ModelFilesError: the file is missing, corrupt or inconsistent; the message says how
            to restore or rebuild it.
    """
    path = Path(path) if path is not None else DEFAULT_MODEL_PATH
    a = read_model_arrays(path)
    v, f = len(a["mean"]), len(a["faces"])
    names = tuple(str(n) for n in a["expression_names"])
    materials = tuple(str(n) for n in a["material_names"])
    faces, face_uvs = a["faces"], a["face_uvs"]
    n_tri = int(np.where(faces[:, 3] >= 0, 2, 1).sum()) if faces.shape[1] == 4 else 0
    checks = {
        "faces": faces.shape[1] == 4 and faces.max() < v and (faces[:, :3] >= 0).all(),
        "face_uvs": face_uvs.shape == faces.shape and face_uvs.max() < len(a["uvs"])
        and ((face_uvs < 0) == (faces < 0)).all(),
        "face_material": a["face_material"].shape == (f,) and a["face_material"].max() < len(materials)
        and "skin" in materials,
        "identity": a["identity"].shape[1:] == (v, 3),
        "expression": a["expression"].shape == (len(ARKIT_NAMES), v, 3),
        "expression_names": names == ARKIT_NAMES,
        "mirror": a["mirror"].shape == (v,) and a["mirror"].max() < v,
        "region_masks": a["region_masks"].shape == (len(a["region_names"]), v),
        "landmarks": a["landmark_faces"].shape == (N_LANDMARKS,) and a["landmark_faces"].max() < n_tri,
    }
    bad = [k for k, ok in checks.items() if not ok]
    if bad:
        raise ModelFilesError(f"Head model file {path} is inconsistent ({', '.join(bad)}). "
                              f"{_REBUILD_HINT}")
    f32 = lambda k: np.ascontiguousarray(a[k], np.float32)  # noqa: E731
    return MorphableHead(
        name=str(a["name"]), faces=faces.astype(np.int32), uvs=f32("uvs"),
        face_uvs=face_uvs.astype(np.int32), face_material=a["face_material"].astype(np.uint8),
        material_names=materials, mean=f32("mean"), identity=f32("identity"),
        expression=f32("expression"), expression_names=names, expression_prior="blendshape",
        mirror=a["mirror"].astype(np.int32),
        regions={str(n): m.astype(bool) for n, m in zip(a["region_names"], a["region_masks"])},
        landmark_faces=a["landmark_faces"].astype(np.int32),
        landmark_barycentrics=f32("landmark_barycentrics"),
        landmark_weights=f32("landmark_weights"), landmark_uv=f32("landmark_uv"))
