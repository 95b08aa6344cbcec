"""The head-model interface: what the pipeline, the result and the Blender scene need of a head.

Any linear morphable head plugs in by providing these attributes: the built-in ICT Face Model
(:func:`engine.head.linear.load_head`) and the official release's Basel Face Model
(:func:`engine.hrn_official.bfm.bfm_head`) both do, as :class:`~engine.head.linear.MorphableHead`.

Conventions (:mod:`engine.conventions`): model space, **metres**, +Y up, +Z out of the face,
+X the subject's left. A head shape is::

    mean + sum_k identity_weights[k] * identity[k] + sum_j expression_weights[j] * expression[j]

Faces are ``[F, 4]`` int32 arrays, counter-clockwise seen from outside; a triangle carries -1
in its last column (a mesh may mix triangles and quads). UVs have their origin bottom-left.
"""
from __future__ import annotations

from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

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

#: Number of MediaPipe face-mesh landmarks (468 mesh + 2 x 5 iris).
N_LANDMARKS = 478

#: Materials the engine's UV maps (deformation, displacement, albedo) cover: their faces
#: share one UV atlas in [0, 1]². Other materials (eyes, teeth, ...) have their own UVs.
MAPPED_MATERIALS = ("skin", "mouth")

#: UV radii about (0.5, 0.5) of the pupil's edge and of the limbus (the iris' rim) in the
#: polar UV layout of the ``"iris"`` part (the ICT eyeball's inner sphere).
IRIS_UV_RADII = (0.12, 0.44)


@runtime_checkable
class HeadModel(Protocol):
    """A linear morphable head (V vertices, F faces, T UV points, Ki identity modes, Ke
    expression shapes). Attributes:

    name: human-readable model name (for metadata and reports).
    faces: ``[F, 4]`` int32 vertex indices; -1 in the last column marks a triangle.
    uvs: ``[T, 2]`` float32 UV points.
    face_uvs: ``[F, 4]`` int32 indices into ``uvs`` per face corner (-1 where ``faces`` is).
    face_material: ``[F]`` uint8 index into ``material_names`` of each face.
    material_names: names of the materials: ``"skin"`` (and ``"mouth"``, the mouth socket)
        carry the engine's maps (:data:`MAPPED_MATERIALS`); ``"gums"``, ``"tongue"``,
        ``"teeth"``, ``"sclera"``, ``"iris"``, ``"lashes"`` are the optional extra parts.
    mean: ``[V, 3]`` float32 neutral mean head, metres.
    identity: ``[Ki, V, 3]`` float32 offsets (metres) of one standard deviation of each
        identity mode: identity weights have a unit-Gaussian prior.
    expression: ``[Ke, V, 3]`` float32 offsets (metres) of each expression at weight 1.
    expression_names: ``Ke`` names; :data:`ARKIT_NAMES` for blendshape heads.
    expression_prior: ``"blendshape"`` (weights in [0, 1], mostly 0: ARKit shapes) or
        ``"gaussian"`` (unbounded, unit-Gaussian: PCA expression bases such as BFM's).
    mirror: ``[V]`` int32 mirror partner of each vertex (reflection in x = 0).
    regions: name -> ``[V]`` bool. Always ``"face"`` (the frontal face area), ``"eyes"``
        (lids and sockets), ``"lips"``, ``"nose"``; ``"eyeballs"``, ``"irises"``, ``"lashes"``
        etc. when the head has those parts.
    landmark_faces: ``[478]`` int32 triangle (row of :meth:`triangles`) of each MediaPipe
        landmark; landmark_barycentrics ``[478, 3]`` float32 its barycentric coordinates;
        landmark_weights ``[478]`` float32 confidence in [0, 1] (0: not on this head);
        landmark_uv ``[478, 2]`` its UV (re-locates it on subdivisions).
    """

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

    @property
    def n_vertices(self) -> int: ...

    @property
    def n_identity(self) -> int: ...

    def triangles(self) -> np.ndarray:
        """``[T, 3]`` int32 triangles of all faces (quads split along their 0-2 diagonal)."""

    def mapped_faces(self) -> np.ndarray:
        """``[F]`` bool: faces in the UV atlas of the engine's maps (:data:`MAPPED_MATERIALS`)."""

    def map_vertex_uv(self) -> tuple[np.ndarray, np.ndarray]:
        """Where each vertex reads the engine's UV maps: ``([V, 2] float32 atlas UV,
        [V] float32 weight)``. Skin vertices read at their own UV with weight 1; parts that
        ride on the skin (lashes) read at the nearest skin vertex's UV; rigid parts (eyeballs,
        teeth) have weight 0."""

    def shape(self, identity: Any = None, expression: Any = None) -> Any:
        """Vertices ``[..., V, 3]`` (metres) for identity weights ``[..., Ki]`` and expression
        weights ``[..., Ke]`` (``None``: zeros). numpy in, float32 numpy out; torch in,
        differentiable torch out (device and dtype of the input)."""

    def landmarks(self, vertices: Any) -> Any:
        """MediaPipe landmark positions ``[..., 478, 3]`` on ``vertices [..., V, 3]``."""

    def subdivided(self, levels: int = 1) -> "HeadModel":
        """The same head after ``levels`` Catmull-Clark steps (cached)."""
