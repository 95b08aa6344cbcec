"""The engine's parametric full-head model (coarse level) and its loading.

The model is derived from CC0 MakeHuman assets by ``tools/build_head_model.py`` (geometry,
identity PCA, ARKit expressions, regions, UVs) and ``tools/build_landmark_correspondence.py``
(MediaPipe landmark correspondence), and stored in ``engine/head/data/head_model.npz``;
see ``engine/head/data/HEAD_MODEL_LICENSE.md`` for provenance. Subdivision is
:mod:`engine.head.subdivision`.

Geometry is a quad mesh of the head skin (face, scalp, ears, neck cut at the lower neck) and
two eyeballs (closed quad spheres, separate connected parts that the identity and the ARKit
eyeLook* expressions move with the sockets) in model space (:mod:`engine.conventions`: metres, +Y up, +Z out of the face, +X subject's
left), origin at the midpoint between the ears on the mid-sagittal plane (about the ear
canals). A head shape is::

    mean + sum_k identity[k] * identity_std[k] * identity_basis[k]
         + sum_j expression[j] * expression_basis[j]

with identity coefficients under a unit Gaussian prior and expression weights in [0, 1]
(ARKit blendshape semantics, names in :data:`ARKIT_NAMES`).
"""
from __future__ import annotations

import dataclasses
import functools
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelFilesError
from ..result import triangulate
from .subdivision import catmull_clark, locate_uv, subdivide_uvs

DEFAULT_MODEL_PATH = Path(__file__).resolve().parent / "data" / "head_model.npz"

#: The 52 ARKit face blendshapes, in ARKit's (alphabetical) order.
ARKIT_NAMES: tuple[str, ...] = (
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft", "eyeBlinkRight",
    "eyeLookDownLeft", "eyeLookDownRight", "eyeLookInLeft", "eyeLookInRight",
    "eyeLookOutLeft", "eyeLookOutRight", "eyeLookUpLeft", "eyeLookUpRight", "eyeSquintLeft",
    "eyeSquintRight", "eyeWideLeft", "eyeWideRight", "jawForward", "jawLeft", "jawOpen",
    "jawRight", "mouthClose", "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft",
    "mouthFrownRight", "mouthFunnel", "mouthLeft", "mouthLowerDownLeft", "mouthLowerDownRight",
    "mouthPressLeft", "mouthPressRight", "mouthPucker", "mouthRight", "mouthRollLower",
    "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper", "mouthSmileLeft",
    "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight", "mouthUpperUpLeft",
    "mouthUpperUpRight", "noseSneerLeft", "noseSneerRight", "tongueOut",
)

N_LANDMARKS = 478
_REBUILD_HINT = ("Restore it from the repository (git checkout engine/head/data/head_model.npz) or "
                 "rebuild it with `python tools/build_head_model.py` followed by "
                 "`python tools/build_landmark_correspondence.py`.")

#: Arrays every model file holds (name -> number of dimensions).
_GEOMETRY_KEYS = {
    "faces": 2, "uvs": 2, "face_uvs": 2, "mean": 2, "identity_basis": 3, "identity_std": 1,
    "expression_basis": 3, "expression_names": 1, "mirror": 1, "region_names": 1,
    "region_masks": 2,
}
_LANDMARK_KEYS = {"landmark_faces": 1, "landmark_barycentrics": 2, "landmark_weights": 1,
                  "landmark_uv": 2}


@dataclass(frozen=True, eq=False, repr=False)
class HeadModel:
    """A parametric head: quad mesh, identity and expression bases, landmarks.

    Attributes (V vertices, F quads, T UV points, Ki identity components):
        faces: ``[F,4]`` int32 quads, counter-clockwise seen from outside.
        uvs: ``[T,2]`` float32 UV points in [0,1]² (origin bottom-left).
        face_uvs: ``[F,4]`` int32 index into ``uvs`` for each quad corner.
        mean: ``[V,3]`` float32 neutral average head, metres.
        identity_basis: ``[Ki,V,3]`` float32 unit-norm PCA directions.
        identity_std: ``[Ki]`` float32 standard deviation of each direction, metres.
        expression_basis: ``[52,V,3]`` float32 vertex offsets (metres) at weight 1.
        expression_names: the 52 ARKit names, :data:`ARKIT_NAMES` order.
        mirror: ``[V]`` int32 index of each vertex's mirror partner (itself on the midline).
        regions: name -> ``[V]`` bool mask; "face", "scalp", "ears", "neck", "eyeballs"
            partition the mesh, "eyes" (lids and sockets), "nose", "mouth", "lips" are
            sub-regions of the face.
        landmark_faces: ``[478]`` int32 triangle (index into :meth:`triangles`) of each
            MediaPipe face-mesh landmark.
        landmark_barycentrics: ``[478,3]`` float32 barycentric coordinates in that triangle.
        landmark_weights: ``[478]`` float32 confidence in [0,1]; 0 = not on this surface
            (irises), lower for contour points that slide.
        landmark_uv: ``[478,2]`` float32 UV of each landmark, to re-locate it on any mesh
            with this UV layout.
    """

    faces: np.ndarray
    uvs: np.ndarray
    face_uvs: np.ndarray
    mean: np.ndarray
    identity_basis: np.ndarray
    identity_std: np.ndarray
    expression_basis: np.ndarray
    expression_names: tuple[str, ...]
    mirror: np.ndarray
    regions: dict[str, np.ndarray]
    landmark_faces: np.ndarray
    landmark_barycentrics: np.ndarray
    landmark_weights: np.ndarray
    landmark_uv: np.ndarray
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def n_vertices(self) -> int:
        return len(self.mean)

    @property
    def n_identity(self) -> int:
        return len(self.identity_std)

    def triangles(self) -> np.ndarray:
        """``[2F,3]`` int32 triangles; quad f (a,b,c,d) gives rows 2f (a,b,c), 2f+1 (a,c,d)."""
        if "triangles" not in self._cache:
            self._cache["triangles"] = triangulate(self.faces)
        return self._cache["triangles"]

    def shape(self, identity=None, expression=None):
        """Vertices ``[V,3]`` (metres) for identity coefficients ``[Ki]`` (unit Gaussian
        prior) and expression weights ``[52]`` (in [0,1]); ``None`` means zeros.

        Accepts numpy arrays (returns float32 numpy) or torch tensors (returns a tensor on
        their device and dtype, differentiable; see :meth:`shape_torch`).
        """
        if _is_torch(identity) or _is_torch(expression):
            return self.shape_torch(identity, expression)
        out = self.mean.astype(np.float32).copy()
        if identity is not None:
            coeff = np.asarray(identity, np.float32) * self.identity_std
            out += np.tensordot(coeff, self.identity_basis, axes=1)
        if expression is not None:
            out += np.tensordot(np.asarray(expression, np.float32), self.expression_basis, axes=1)
        return out

    def shape_torch(self, identity=None, expression=None):
        """Torch twin of :meth:`shape`: ``identity [...,Ki]``, ``expression [...,52]``
        tensors (either may be ``None``) -> ``[...,V,3]`` tensor."""
        import torch

        ref = identity if identity is not None else expression
        device, dtype = (ref.device, ref.dtype) if ref is not None else ("cpu", torch.float32)
        mean, id_basis, std, ex_basis = self._torch_arrays(device, dtype)
        out = mean
        if identity is not None:
            out = out + torch.einsum("...k,kvc->...vc", identity * std, id_basis)
        if expression is not None:
            out = out + torch.einsum("...k,kvc->...vc", expression, ex_basis)
        return out

    def _torch_arrays(self, device, dtype):
        import torch

        key = ("torch", str(device), dtype)
        if key not in self._cache:
            as_t = lambda a: torch.as_tensor(a, dtype=dtype, device=device)  # noqa: E731
            self._cache[key] = (as_t(self.mean), as_t(self.identity_basis),
                                as_t(self.identity_std), as_t(self.expression_basis))
        return self._cache[key]

    def landmarks(self, vertices):
        """MediaPipe landmark positions ``[...,478,3]`` on ``vertices [...,V,3]`` (numpy or
        torch) by barycentric evaluation. Check :attr:`landmark_weights` before use."""
        tri = self.triangles()[self.landmark_faces]           # [478,3]
        bary = self.landmark_barycentrics
        if _is_torch(vertices):
            import torch

            tri_t = torch.as_tensor(tri, dtype=torch.long, device=vertices.device)
            bary_t = torch.as_tensor(bary, dtype=vertices.dtype, device=vertices.device)
            return (vertices[..., tri_t, :] * bary_t[..., None]).sum(-2)
        return (np.asarray(vertices)[..., tri, :] * bary[..., None]).sum(-2)

    def subdivided(self, levels: int = 1) -> "HeadModel":
        """Catmull-Clark subdivision of the model, ``levels`` times.

        Positions (mean and every basis) go through the same sparse linear operator, UVs
        are subdivided linearly per face corner (seams kept), mirror map and regions are
        carried over and landmarks re-located through :attr:`landmark_uv`. Results are
        cached on this model, so repeated calls are cheap.
        """
        if levels < 0:
            raise ValueError(f"levels must be >= 0, got {levels}")
        if levels == 0:
            return self
        key = ("subdivided", levels)
        if key not in self._cache:
            self._cache[key] = self.subdivided(levels - 1)._subdivide_once()
        return self._cache[key]

    def _subdivide_once(self) -> "HeadModel":
        step = catmull_clark(self.faces, self.n_vertices)
        op = step.operator
        apply = lambda a: np.stack([op @ a[k] for k in range(len(a))]).astype(np.float32)  # noqa: E731
        uvs, face_uvs = subdivide_uvs(self.uvs, self.face_uvs)
        mirror = step.carry_mirror(self.mirror, self.faces)
        regions = {name: (step.linear @ mask.astype(np.float32)) >= 0.5
                   for name, mask in self.regions.items()}
        faces = step.faces
        lm_faces, lm_bary = locate_uv(uvs, face_uvs, self.landmark_uv)
        return dataclasses.replace(
            self, faces=faces, uvs=uvs, face_uvs=face_uvs,
            mean=(op @ self.mean).astype(np.float32),
            identity_basis=apply(self.identity_basis),
            expression_basis=apply(self.expression_basis),
            mirror=mirror, regions=regions,
            landmark_faces=lm_faces, landmark_barycentrics=lm_bary, _cache={})


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
def load_head_model(path: str | Path | None = None) -> HeadModel:
    """Load (once per path) the head model from ``path`` (default: the packaged
    ``engine/head/data/head_model.npz``).

    Raises:
        ModelFilesError: the file is missing, corrupt or inconsistent; the message says
            how to restore or rebuild it.
    """
    path = Path(path) if path is not None else DEFAULT_MODEL_PATH
    a = read_model_arrays(path)
    v = len(a["mean"])
    names = tuple(str(n) for n in a["expression_names"])
    checks = {
        "faces": a["faces"].shape[1] == 4 and a["faces"].max() < v,
        "face_uvs": a["face_uvs"].shape == a["faces"].shape and a["face_uvs"].max() < len(a["uvs"]),
        "identity_basis": a["identity_basis"].shape[1:] == (v, 3)
        and len(a["identity_std"]) == len(a["identity_basis"]),
        "expression_basis": a["expression_basis"].shape == (len(ARKIT_NAMES), v, 3),
        "expression_names": names == ARKIT_NAMES,
        "mirror": a["mirror"].shape == (v,),
        "region_masks": a["region_masks"].shape == (len(a["region_names"]), v),
        "landmarks": a["landmark_faces"].shape == (N_LANDMARKS,)
        and a["landmark_faces"].max() < 2 * len(a["faces"]),
    }
    bad = [k for k, ok in checks.items() if not ok]
    if bad:
        raise ModelFilesError(f"Head model file {path} is inconsistent ({', '.join(bad)}). "
                              f"{_REBUILD_HINT}")
    f32 = lambda k: np.ascontiguousarray(a[k], np.float32)  # noqa: E731
    return HeadModel(
        faces=a["faces"].astype(np.int32), uvs=f32("uvs"), face_uvs=a["face_uvs"].astype(np.int32),
        mean=f32("mean"), identity_basis=f32("identity_basis"), identity_std=f32("identity_std"),
        expression_basis=f32("expression_basis"), expression_names=names,
        mirror=a["mirror"].astype(np.int32),
        regions={str(n): m.astype(bool) for n, m in zip(a["region_names"], a["region_masks"])},
        landmark_faces=a["landmark_faces"].astype(np.int32),
        landmark_barycentrics=f32("landmark_barycentrics"),
        landmark_weights=f32("landmark_weights"), landmark_uv=f32("landmark_uv"),
    )
