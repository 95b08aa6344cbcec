"""The one result type that crosses from the engine to the Blender extension.

:class:`FaceReconstruction` holds numpy arrays only (no tensors), so it can be saved by one
process and loaded by another. ``save(dir)`` writes:

==========================  ===========================================================
``reconstruction.json``     parameters, camera, per-view records, metadata, file list
``arrays.npz``              every array, exactly (``load`` reads this: exact round trip)
``coarse.obj``              low-frequency head (Basis), with UVs, using ``head.mtl``
``detailed.obj``            coarse + mid-frequency deformation, with UVs
``head.mtl``                material referencing ``albedo.png``
``albedo.png``              de-lit albedo, 8-bit sRGB
``albedo_confidence.png``   UV visibility/confidence mask, 8-bit
``displacement.png``        high-frequency displacement, 16-bit grey; metres =
                            (value/65535 - midlevel) * scale (JSON ``displacement_encoding``)
``deformation.exr``         mid-frequency deformation map, float32 RGB = model-space XYZ metres
==========================  ===========================================================

Conventions (axes, units, UV origin) are those of :mod:`engine.conventions`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from .errors import EngineError, ModelFilesError
from .io import exr

FORMAT_VERSION = 2

#: Colours (sRGB) of the parts whose colour is not measured from the photo, shared by the OBJ
#: export and the Blender scene (mouth: the mouth socket).
PART_SRGB = {"teeth": (0.86, 0.82, 0.72), "gums": (0.72, 0.36, 0.36), "tongue": (0.72, 0.38, 0.38),
             "mouth": (0.30, 0.09, 0.09), "lashes": (0.04, 0.03, 0.025)}


@dataclass(frozen=True)
class Camera:
    """A pinhole camera that saw the (posed) head.

    Attributes:
        rotation: ``[3, 3]`` float64, model space -> camera space (see engine.conventions).
        translation: ``[3]`` float64, metres, camera-space position of the model origin.
        focal_px: focal length in pixels of the photo.
        principal_px: principal point (cx, cy) in image pixels, top-left origin, y down.
        image_size: (width, height) of the photo in pixels.
    """

    rotation: np.ndarray
    translation: np.ndarray
    focal_px: float
    principal_px: tuple[float, float]
    image_size: tuple[int, int]

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        """Model-space points ``[N, 3]`` -> camera-space points ``[N, 3]`` (metres)."""
        return points @ self.rotation.T + self.translation

    def project(self, points: np.ndarray) -> np.ndarray:
        """Model-space points ``[N, 3]`` -> image pixels ``[N, 2]`` (x right, y down)."""
        pc = self.to_camera(points)
        z = -pc[:, 2]
        x = self.focal_px * pc[:, 0] / z + self.principal_px[0]
        y = -self.focal_px * pc[:, 1] / z + self.principal_px[1]
        return np.stack([x, y], -1)

    def focal_length_mm(self, sensor_width_mm: float = 36.0) -> float:
        """Focal length in mm for a sensor of the given width fitted to the image width."""
        return self.focal_px * sensor_width_mm / self.image_size[0]

    def to_json(self) -> dict[str, Any]:
        return {
            "rotation": np.asarray(self.rotation).tolist(),
            "translation": np.asarray(self.translation).tolist(),
            "focal_px": float(self.focal_px),
            "principal_px": [float(v) for v in self.principal_px],
            "image_size": [int(v) for v in self.image_size],
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Camera":
        return cls(
            rotation=np.asarray(d["rotation"], dtype=np.float64),
            translation=np.asarray(d["translation"], dtype=np.float64),
            focal_px=float(d["focal_px"]),
            principal_px=(float(d["principal_px"][0]), float(d["principal_px"][1])),
            image_size=(int(d["image_size"][0]), int(d["image_size"][1])),
        )


@dataclass(frozen=True)
class ViewRecord:
    """What was fitted for one input photo (one per photo given, used or not).

    Attributes:
        image_path: the photo as given.
        used: False when the photo was skipped (no face, outlier); ``note`` says why.
        camera: camera of this view, None when unused.
        expression: ``[Ke]`` float32 expression weights of this view.
        sh_lighting: ``[9, 3]`` float32 second-order SH lighting (9 coefficients per RGB channel).
        landmarks: ``[478, 2]`` float32 detected MediaPipe landmarks in image pixels, or empty.
        displacement_map: ``[H, W]`` float32 high-frequency displacement fitted to this photo
            alone (UV space, metres along the normal, + outward, same layout as
            ``FaceReconstruction.displacement_map``), or ``[0, 0]`` when not stored.
        note: human-readable remark (why skipped, warnings).
    """

    image_path: str
    used: bool
    camera: Optional[Camera] = None
    expression: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    sh_lighting: np.ndarray = field(default_factory=lambda: np.zeros((9, 3), np.float32))
    landmarks: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))
    displacement_map: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    note: str = ""

    # Arrays saved in view_<index>.npz (used views only); load passes them back by name.
    _ARRAYS = ("expression", "sh_lighting", "landmarks", "displacement_map")


@dataclass(frozen=True)
class EyeAppearance:
    """The eyes as the photos show them (engine.levels.eyes).

    Attributes:
        iris_srgb: iris colour, sRGB in [0, 1], de-lit.
        sclera_srgb: colour of the white of the eye, sRGB in [0, 1], de-lit.
        iris_scale: iris radius over the head model's (1 = the model's iris).
    """

    iris_srgb: tuple[float, float, float]
    sclera_srgb: tuple[float, float, float]
    iris_scale: float

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "EyeAppearance":
        return cls(iris_srgb=tuple(d["iris_srgb"]), sclera_srgb=tuple(d["sclera_srgb"]),
                   iris_scale=float(d["iris_scale"]))


#: The eyes when no photo shows them well enough (too small, closed) or the head has none.
DEFAULT_EYES = EyeAppearance(iris_srgb=(0.36, 0.25, 0.16), sclera_srgb=(0.88, 0.85, 0.8), iris_scale=1.0)


@dataclass(frozen=True)
class FaceReconstruction:
    """A hierarchical face reconstruction: coarse head, mid- and high-frequency detail, albedo.

    Geometry is in canonical (unposed) model space, metres (engine.conventions); ``camera``
    poses it into the photo.

    Attributes:
        vertices: ``[V, 3]`` float32, the low-frequency (coarse) head: identity + expression.
        mid_offsets: ``[V, 3]`` float32, mid-frequency deformation sampled at the vertices;
            the detailed mesh is ``vertices + mid_offsets``.
        faces: ``[F, K]`` int32 vertex indices, K = 3 (triangles) or 4 (quads; -1 in the last
            column marks a triangle), counter-clockwise seen from outside.
        uvs: ``[T, 2]`` float32 UV coordinates (origin bottom-left, v up).
        face_uvs: ``[F, K]`` int32 indices into ``uvs`` per face corner (-1 where ``faces`` is).
        face_material: ``[F]`` uint8 index into ``material_names`` of each face.
        material_names: the parts' materials (engine.head.model.HeadModel.material_names);
            the maps below cover the faces of engine.head.model.MAPPED_MATERIALS ("skin").
        deformation_map: ``[Hd, Wd, 3]`` float32 UV-space map of model-space offsets (metres).
        displacement_map: ``[H, W]`` float32 UV-space offset along the normal (metres, + outward).
        albedo: ``[Ha, Wa, 3]`` float32 de-lit albedo, sRGB-encoded, in [0, 1].
        albedo_confidence: ``[Ha, Wa]`` float32 in [0, 1]: 1 where the photo saw the surface
            head-on, 0 where the colour was filled in.
        camera: the camera of the (first) photo.
        identity: ``[Ki]`` float32 identity (shape) coefficients of the head model.
        expression: ``[Ke]`` float32 expression weights of the (first) photo.
        expression_names: ``Ke`` names of the expression targets (ARKit names for the default model).
        expression_deltas: ``[Ke, V, 3]`` float32 per-unit offsets of each expression target,
            carried onto this head; ``vertices`` already includes ``expression``.
        sh_lighting: ``[9, 3]`` float32 SH lighting of the (first) photo.
        eyes: the eyes' colours and iris size as the photos show them.
        views: one :class:`ViewRecord` per photo given.
        metadata: JSON-able provenance: head model, device, rasterizer backend, quality, timings.
        warnings: messages for the user (e.g. "second face ignored").
    """

    vertices: np.ndarray
    mid_offsets: np.ndarray
    faces: np.ndarray
    uvs: np.ndarray
    face_uvs: np.ndarray
    deformation_map: np.ndarray
    displacement_map: np.ndarray
    albedo: np.ndarray
    albedo_confidence: np.ndarray
    camera: Camera
    identity: np.ndarray
    expression: np.ndarray
    expression_names: tuple[str, ...]
    expression_deltas: np.ndarray
    sh_lighting: np.ndarray
    face_material: np.ndarray
    material_names: tuple[str, ...]
    eyes: EyeAppearance
    views: tuple[ViewRecord, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    # Arrays saved in arrays.npz, in this order.
    _ARRAYS = ("vertices", "mid_offsets", "faces", "uvs", "face_uvs", "face_material",
               "deformation_map", "displacement_map", "albedo", "albedo_confidence", "identity",
               "expression", "expression_deltas", "sh_lighting")

    def __post_init__(self) -> None:
        v = self.vertices.shape[0]
        checks = [
            (self.vertices.ndim == 2 and self.vertices.shape[1] == 3, "vertices must be [V, 3]"),
            (self.mid_offsets.shape == self.vertices.shape, "mid_offsets must match vertices"),
            (self.faces.ndim == 2 and self.faces.shape[1] in (3, 4), "faces must be [F, 3|4]"),
            (self.face_uvs.shape == self.faces.shape, "face_uvs must match faces"),
            (self.face_material.shape == self.faces.shape[:1]
             and (self.face_material < len(self.material_names)).all(),
             "face_material must be [F] indices into material_names"),
            (self.deformation_map.ndim == 3 and self.deformation_map.shape[2] == 3,
             "deformation_map must be [H, W, 3]"),
            (self.displacement_map.ndim == 2, "displacement_map must be [H, W]"),
            (self.albedo.ndim == 3 and self.albedo.shape[2] == 3, "albedo must be [H, W, 3]"),
            (self.albedo_confidence.shape == self.albedo.shape[:2], "albedo_confidence must be [H, W]"),
            (self.expression_deltas.shape == (len(self.expression_names), v, 3),
             "expression_deltas must be [Ke, V, 3]"),
            (self.sh_lighting.shape == (9, 3), "sh_lighting must be [9, 3]"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(f"FaceReconstruction: {msg}")

    @property
    def detailed_vertices(self) -> np.ndarray:
        """``[V, 3]`` float32: coarse head plus the mid-frequency deformation."""
        return self.vertices + self.mid_offsets

    def triangles(self) -> np.ndarray:
        """``[F', 3]`` int32 triangles (quads split along their 0-2 diagonal)."""
        return triangulate(self.faces)

    def material_faces(self, *names: str) -> np.ndarray:
        """``[F]`` bool: faces whose material is one of ``names``."""
        wanted = [self.material_names.index(n) for n in names if n in self.material_names]
        return np.isin(self.face_material, wanted)

    # ------------------------------------------------------------------ save / load
    def save(self, directory: str | Path) -> Path:
        """Write the reconstruction into ``directory`` (created if needed). Returns the path.

        Existing files of the same names in the directory are replaced; nothing else there is
        touched. All files are first written into a hidden staging folder inside
        ``directory`` and renamed into place only once every one was written, so a failed
        save (disk full, permissions, an exception) leaves any earlier result as it was.

        Raises:
            EngineError: the directory cannot be created or written; the message names it.
        """
        out = Path(directory)
        encoded, scale = encode_displacement(self.displacement_map)
        meta = {
            "format": "hrn-blender-face-reconstruction",
            "format_version": FORMAT_VERSION,
            "conventions": "model space: metres, +Y up, +Z forward (face direction), +X subject's left; "
                           "UV origin bottom-left, maps stored top row first",
            "camera": self.camera.to_json(),
            "expression_names": list(self.expression_names),
            "material_names": list(self.material_names),
            "eyes": self.eyes.to_json(),
            "views": [_view_to_json(vw, i) for i, vw in enumerate(self.views)],
            "metadata": self.metadata,
            "warnings": list(self.warnings),
            "displacement_encoding": {"file": "displacement.png", "midlevel": DISPLACEMENT_MIDLEVEL,
                                      "scale": scale,
                                      "unit": "metre", "rule": "d = (value / 65535 - midlevel) * scale"},
            "files": {
                "coarse_mesh": "coarse.obj", "detailed_mesh": "detailed.obj", "material": "head.mtl",
                "albedo": "albedo.png", "albedo_confidence": "albedo_confidence.png",
                "displacement": "displacement.png", "deformation": "deformation.exr",
                "arrays": "arrays.npz",
            },
        }
        created = not out.exists()
        try:
            out.mkdir(parents=True, exist_ok=True)
            # Inside `out`, so the final renames stay on one file system.
            stage = Path(tempfile.mkdtemp(prefix=".hrn-saving-", dir=out))
        except OSError as err:
            raise EngineError(f"Cannot write the result to the folder {str(out)!r}: "
                              f"{err.strerror or err}. Choose a folder you can write to.") from err
        try:
            np.savez_compressed(stage / "arrays.npz", **{k: getattr(self, k) for k in self._ARRAYS})
            (stage / "reconstruction.json").write_text(json.dumps(meta, indent=2))
            for i, vw in enumerate(self.views):
                if vw.used:
                    np.savez_compressed(stage / f"view_{i}.npz",
                                        **{k: getattr(vw, k) for k in vw._ARRAYS})
            for name, verts in (("coarse.obj", self.vertices), ("detailed.obj", self.detailed_vertices)):
                write_obj(stage / name, verts, self.faces, self.uvs, self.face_uvs, "head.mtl",
                          [self.material_names[m] for m in self.face_material])
            (stage / "head.mtl").write_text(self._mtl())
            from PIL import Image

            Image.fromarray(to_uint8(self.albedo)).save(stage / "albedo.png")
            Image.fromarray(to_uint8(self.albedo_confidence)).save(stage / "albedo_confidence.png")
            Image.fromarray(np.clip(np.round(encoded * 65535), 0, 65535).astype(np.uint16)).save(
                stage / "displacement.png")
            exr.write_exr(stage / "deformation.exr", self.deformation_map)
            # reconstruction.json last: until it is in place, a reader sees the old result.
            for name in sorted(os.listdir(stage), key=lambda n: n == "reconstruction.json"):
                os.replace(stage / name, out / name)
            stage.rmdir()
        except BaseException as err:
            shutil.rmtree(stage, ignore_errors=True)
            if created:
                with contextlib.suppress(OSError):
                    out.rmdir()  # the folder this save made, if still empty
            if isinstance(err, OSError):
                raise EngineError(f"Cannot write the result to the folder {str(out)!r}: "
                                  f"{err.strerror or err}. Choose a folder you can write to, "
                                  "with free space.") from err
            raise
        return out

    @classmethod
    def load(cls, directory: str | Path) -> "FaceReconstruction":
        """Read a reconstruction written by :meth:`save` (exactly, from arrays.npz + JSON)."""
        src = Path(directory)
        try:
            meta = json.loads((src / "reconstruction.json").read_text())
            arrays = dict(np.load(src / "arrays.npz"))
        except (OSError, ValueError) as err:
            raise ModelFilesError(f"Cannot read a reconstruction from {src}: {err}") from err
        if meta.get("format") != "hrn-blender-face-reconstruction":
            raise ModelFilesError(f"{src / 'reconstruction.json'} is not an HRN for Blender result.")
        views = []
        for i, vd in enumerate(meta["views"]):
            extra = dict(np.load(src / f"view_{i}.npz")) if vd["used"] else {}
            views.append(ViewRecord(
                image_path=vd["image_path"], used=vd["used"],
                camera=Camera.from_json(vd["camera"]) if vd.get("camera") else None,
                note=vd.get("note", ""), **extra))
        return cls(camera=Camera.from_json(meta["camera"]),
                   expression_names=tuple(meta["expression_names"]),
                   material_names=tuple(meta["material_names"]),
                   eyes=EyeAppearance.from_json(meta["eyes"]),
                   views=tuple(views), metadata=meta["metadata"], warnings=tuple(meta["warnings"]),
                   **arrays)

    def _mtl(self) -> str:
        """The OBJ material file: the skin with the albedo, the other parts plain colours."""
        colours = {**PART_SRGB, "iris": self.eyes.iris_srgb, "sclera": self.eyes.sclera_srgb}
        out = []
        for name in self.material_names:
            kd = (1.0, 1.0, 1.0) if name == "skin" else colours.get(name, (0.5, 0.5, 0.5))
            out.append(f"newmtl {name}\nKd {kd[0]:.4f} {kd[1]:.4f} {kd[2]:.4f}\nKa 0 0 0\nKs 0 0 0\n"
                       f"illum 1\n" + ("map_Kd albedo.png\n" if name == "skin" else "")
                       + ("d 0.0\n" if name == "cornea" else ""))
        return "\n".join(out)

    def replace(self, **changes: Any) -> "FaceReconstruction":
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


def _view_to_json(view: ViewRecord, index: int) -> dict[str, Any]:
    return {"index": index, "image_path": view.image_path, "used": view.used,
            "camera": view.camera.to_json() if view.camera else None, "note": view.note,
            "expression": np.asarray(view.expression).tolist(),
            "sh_lighting": np.asarray(view.sh_lighting).tolist()}


#: Grey level of zero displacement in encoded displacement images.
DISPLACEMENT_MIDLEVEL = 0.5


def displacement_scale(displacement: np.ndarray) -> float:
    """Scale (metres) so that the displacement fits a [0, 1] map centred at 0.5."""
    peak = float(np.abs(displacement).max()) if displacement.size else 0.0
    return max(2.0 * peak * 1.001, 1e-6)


def encode_displacement(displacement: np.ndarray) -> tuple[np.ndarray, float]:
    """Metres ``[H, W]`` -> (values in [0, 1] ``[H, W]`` float64, scale in metres), with
    ``metres = (value - DISPLACEMENT_MIDLEVEL) * scale``: the rule of displacement.png and of
    Blender's Displace modifier / Displacement node (midlevel 0.5, strength = scale)."""
    scale = displacement_scale(displacement)
    return np.asarray(displacement, np.float64) / scale + DISPLACEMENT_MIDLEVEL, scale


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Float image in [0, 1] -> uint8, rounded and clipped."""
    return np.clip(np.round(np.asarray(image) * 255.0), 0, 255).astype(np.uint8)


def triangulate(faces: np.ndarray) -> np.ndarray:
    """``[F, 3|4]`` faces (4 columns: -1 in the last marks a triangle) -> ``[T, 3]`` int32
    triangles in face order: a quad (a, b, c, d) gives (a, b, c), (a, c, d); a triangle gives
    itself. Vertex and UV index faces triangulate alike, row for row."""
    faces = np.asarray(faces)
    if faces.shape[1] == 3:
        return np.ascontiguousarray(faces, dtype=np.int32)
    pairs = np.stack([faces[:, [0, 1, 2]], faces[:, [0, 2, 3]]], 1)          # [F, 2, 3]
    keep = np.stack([np.ones(len(faces), bool), faces[:, 3] >= 0], 1)
    return np.ascontiguousarray(pairs[keep], dtype=np.int32)


def triangle_faces(faces: np.ndarray) -> np.ndarray:
    """``[T]`` int64: the face each row of :func:`triangulate` comes from."""
    faces = np.asarray(faces)
    if faces.shape[1] == 3:
        return np.arange(len(faces))
    return np.repeat(np.arange(len(faces)), np.where(faces[:, 3] >= 0, 2, 1))


def write_obj(path: Path, vertices: np.ndarray, faces: np.ndarray, uvs: np.ndarray,
              face_uvs: np.ndarray, mtl: Optional[str] = None,
              materials: Optional[list[str]] = None) -> None:
    """Write a Wavefront OBJ with per-corner UVs (1-based indices, v/vt); ``faces`` may pad
    triangles with -1. ``materials``: optional material name per face (``usemtl`` groups)."""
    lines = [f"mtllib {mtl}"] if mtl else []
    lines += [f"v {x:.7g} {y:.7g} {z:.7g}" for x, y, z in np.asarray(vertices, np.float64)]
    lines += [f"vt {u:.7g} {v:.7g}" for u, v in np.asarray(uvs, np.float64)]
    lines.append("s 1")
    current = None
    for k, (fr, tr) in enumerate(zip(np.asarray(faces), np.asarray(face_uvs))):
        if materials is not None and materials[k] != current:
            current = materials[k]
            lines.append(f"usemtl {current}")
        lines.append("f " + " ".join(f"{a + 1}/{b + 1}" for a, b in zip(fr, tr) if a >= 0))
    path.write_text("\n".join(lines) + "\n")
