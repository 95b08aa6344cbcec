"""Derive the engine's built-in head model from the ICT Face Model Light (MIT).

Reads the published arrays in ``../shared/data/ict_facekit/`` (``generic_neutral_mesh.obj``,
``ict_face_model.npz``, ``vertex_indices.json``; see their ``SOURCE.md``) and writes
``engine/head/data/ict_head.npz`` plus its licence notice. The engine never reads the shared
folder at run time: this script is the only bridge.

What it keeps (vertex ranges of the ICT README):

========================  ==============================  ==========================
part (material)           ICT geometry                     UVs
========================  ==============================  ==========================
``skin``                  face, head and neck, eye         one square atlas for the
                          sockets                          engine's maps (below)
``mouth``                 mouth socket                     same atlas
``gums`` / ``tongue``     gums and tongue                  ICT tile 2, moved to [0, 1]
``teeth``                 the 32 teeth                     ICT tile 3, moved to [0, 1]
``sclera`` / ``cornea``   both eyeballs' outer shell       ICT's own [0, 1] layout
``iris``                  both eyeballs' inner sphere      ICT's own [0, 1] layout
``lashes``                both eyelash strips              ICT tile 6, moved to [0, 1]
========================  ==============================  ==========================

ICT's eyeball is two spheres: an outer shell (ICT's "sclera") whose front bulges into the
cornea, and an inner sphere (ICT's "iris") carrying the iris and the pupil. The shell's UVs
are polar about (0.5, 0.5), radius growing with the angle from the eye's axis; its faces
within UV radius :data:`CORNEA_UV_RADIUS` (the bulge: 30 degrees about the axis, where the
shell stands more than 0.4 mm proud of the sphere) become the transparent ``cornea``.

Left out: lacrimal fluid, eye blend and eye occlusion meshes (helpers for Unreal's eye
shaders, opaque sheets over the eye in any other renderer).

**Skin atlas.** ICT lays the face out in UDIM tile 0 (u in [0, 1]) and the back of the head,
neck, mouth socket and eye sockets in tile 1 (u in [1, 2]). The engine's UV maps
(deformation, displacement, albedo) are square, so the face tile is scaled by
:data:`FACE_TILE_SCALE` into the top-left corner and the back tile by ``1 -
FACE_TILE_SCALE`` into the bottom-right corner: the face keeps 80 % of the map's texel
density, the back of the head (never seen well in a photo) 20 %.

**Units and axes**: centimetres -> metres; axes unchanged (ICT: +Y up, +Z out of the face,
+X the subject's left, as engine.conventions). ICT's origin is kept.

**Identity**: all 100 PCA modes at one standard deviation (ICT's identity weights are unit
Gaussian), stored as float16: the largest rounding error is 0.005 mm per unit weight, while
dropping modes costs far more (RMS per face vertex, unit-Gaussian identity: 50 modes 0.85 mm,
75 modes 0.49 mm), so every mode is kept (printed when run).

**Expressions**: the 52 ARKit blendshapes in ARKit order. ICT's ``xxx_L``/``xxx_R`` are
ARKit's ``xxxLeft``/``xxxRight`` (``_L`` moves the subject's left side, +X);
``browInnerUp`` = ``browInnerUp_L`` + ``browInnerUp_R`` and ``cheekPuff`` = ``cheekPuff_L``
+ ``cheekPuff_R``. ICT has no ``tongueOut``: it is made here by moving the tongue (its two UV
islands in the gums-and-tongue mesh) forward by :data:`TONGUE_OUT_CM` and down, with a weight
rising smoothly from 0 at the middle of the tongue to 1 at its tip, so its root stays in place.
ICT's extra ``cheekRaiser`` and ``PupilDilate`` shapes are not used. ICT's ``eyeLook*`` shapes
move only the lids (its rig turns the eyeballs); here each also turns its eyeball (shell,
cornea and iris) about the centre of the sphere fitted to the shell, by
:data:`EYE_LOOK_DEGREES` at weight 1, as the linear offsets of that rotation (at weight 0.5 the
eyeball shrinks by 1 - cos(angle / 2) of its radius: 0.3 mm at 25 degrees).

**Regions** (per vertex): parts above, plus ``face`` (ICT's narrow face area), ``eyes`` (lids
and sockets: the skin within the atlas polygon of each eye's six Multi-PIE landmarks,
enlarged), ``nose`` and ``lips`` (likewise from ICT's 68 Multi-PIE landmark vertices).

Run: ``python tools/build_ict_head.py [--ict DIR]`` (seconds), then
``python tools/build_landmark_correspondence.py`` (minutes: Cycles renders).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from matplotlib.path import Path as Polygon
from scipy.spatial import cKDTree

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ICT = REPO.parent / "shared" / "data" / "ict_facekit"
OUT = REPO / "engine" / "head" / "data" / "ict_head.npz"
LICENSE_OUT = OUT.with_name("ICT_FACE_MODEL_LICENSE.md")
sys.path.insert(0, str(REPO))

from engine.head.model import ARKIT_NAMES  # noqa: E402

#: Fraction of the atlas side the face tile fills (see the module docstring).
FACE_TILE_SCALE = 0.8
#: UV radius (about (0.5, 0.5)) of the cornea on the eyeball's outer shell (module docstring).
CORNEA_UV_RADIUS = 0.14
#: Eyeball rotation (degrees) of each eyeLook shape at weight 1: ARKit's ranges as face rigs
#: commonly set them.
EYE_LOOK_DEGREES = {"Up": 25.0, "Down": 25.0, "In": 30.0, "Out": 30.0}
#: How far the tongue tip moves forward (+Z) and down (-Y) at tongueOut = 1, centimetres.
TONGUE_OUT_CM = (3.5, -1.0)

#: Kept ICT vertex ranges (inclusive) and their part; order is the order in the file.
PARTS = (
    ("skin", [(0, 11247), (13294, 14061)]),      # face, head and neck, eye sockets
    ("mouth", [(11248, 13293)]),                 # mouth socket
    ("gums", [(14062, 17038)]),                  # gums and tongue (tongue split below)
    ("teeth", [(17039, 21450)]),
    ("sclera", [(21451, 22220), (23021, 23790)]),
    ("iris", [(22221, 23020), (23791, 24590)]),
    ("lashes", [(25351, 26718)]),
)
#: ICT materials whose faces are kept, with the part their faces take (skin vs mouth is
#: decided per face by its vertices: the mouth socket shares the back-head material).
MATERIALS = {"M_Face": "skin", "M_BackHead": "skin", "M_GumsTongue": "gums", "M_Teeth": "teeth",
             "M_ScleraLeft": "sclera", "M_ScleraRight": "sclera", "M_IrisLeft": "iris",
             "M_IrisRight": "iris", "M_EyeLashes": "lashes"}
#: Names of the face materials in the output, in index order (``face_material`` values).
MATERIAL_NAMES = ("skin", "mouth", "gums", "tongue", "teeth", "sclera", "cornea", "iris", "lashes")
NARROW_FACE_LAST = 6705                          # ICT's narrow face area: vertices 0-6705


def read_obj(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """ICT's OBJ: uvs ``[T,2]``, faces and face uvs ``[F,4]`` (0-based, -1 pads triangles),
    material name per face ``[F]``."""
    uvs, faces, face_uvs, materials, current = [], [], [], [], ""
    for line in path.read_text().splitlines():
        if line.startswith("vt "):
            uvs.append([float(x) for x in line.split()[1:3]])
        elif line.startswith("usemtl"):
            current = line.split()[1]
        elif line.startswith("f "):
            corners = [c.split("/") for c in line.split()[1:]]
            if len(corners) not in (3, 4):
                raise SystemExit(f"{path}: a face with {len(corners)} corners; only 3 or 4 expected")
            pad = [-1] * (4 - len(corners))
            faces.append([int(c[0]) - 1 for c in corners] + pad)
            face_uvs.append([int(c[1]) - 1 for c in corners] + pad)
            materials.append(current)
    return (np.array(uvs, np.float64), np.array(faces, np.int64), np.array(face_uvs, np.int64),
            np.array(materials))


def kept_vertices() -> tuple[np.ndarray, np.ndarray]:
    """ICT indices of the kept vertices ``[V]`` (file order) and each one's part name ``[V]``."""
    ids, parts = [], []
    for part, ranges in PARTS:
        for lo, hi in ranges:
            ids.append(np.arange(lo, hi + 1))
            parts += [part] * (hi - lo + 1)
    return np.concatenate(ids), np.array(parts)


def atlas_uv(uv: np.ndarray) -> np.ndarray:
    """ICT tile 0/1 UVs ``[N,2]`` -> the square skin atlas (module docstring)."""
    s = FACE_TILE_SCALE
    face = uv[:, 0] < 1.0
    out = np.empty_like(uv)
    out[face] = np.stack([s * uv[face, 0], (1.0 - s) + s * uv[face, 1]], 1)
    out[~face] = np.stack([s + (1.0 - s) * (uv[~face, 0] - 1.0), (1.0 - s) * uv[~face, 1]], 1)
    return out


def mirror_map(points: np.ndarray, part: np.ndarray) -> np.ndarray:
    """``[V]`` index of each vertex's mirror partner (reflection in x = 0) within its part."""
    mirror = np.empty(len(points), np.int64)
    worst = 0.0
    for name in np.unique(part):
        idx = np.nonzero(part == name)[0]
        dist, near = cKDTree(points[idx]).query(points[idx] * [-1.0, 1.0, 1.0])
        mirror[idx] = idx[near]
        worst = max(worst, float(dist.max()))
    print(f"mirror map: largest distance from a reflected vertex to its partner {worst * 1e3:.3f} mm")
    return mirror


def inside_uv_polygon(uv: np.ndarray, corners: np.ndarray, grow: float) -> np.ndarray:
    """``[N]`` bool: points ``uv [N,2]`` inside the polygon ``corners [K,2]`` scaled by ``grow``
    about its centroid."""
    centre = corners.mean(0)
    return Polygon(centre + grow * (corners - centre)).contains_points(uv)


def tongue_out(neutral: np.ndarray, tongue: np.ndarray) -> np.ndarray:
    """``[V,3]`` offsets (cm) of the synthetic tongueOut shape (module docstring)."""
    z = neutral[tongue, 2]
    middle, tip = z.min() + 0.5 * np.ptp(z), z.max()
    t = np.clip((z - middle) / (tip - middle), 0.0, 1.0)
    weight = t * t * (3.0 - 2.0 * t)
    delta = np.zeros_like(neutral)
    delta[tongue, 2] = TONGUE_OUT_CM[0] * weight
    delta[tongue, 1] = TONGUE_OUT_CM[1] * weight
    return delta


def tongue_vertices(neutral: np.ndarray, faces: np.ndarray, face_uvs: np.ndarray,
                    uvs: np.ndarray, gums: np.ndarray) -> np.ndarray:
    """``[V]`` bool: ICT vertices of the tongue, the UV islands of the gums-and-tongue mesh
    that lie between the lower teeth (|x| < 2.2 cm) and below the palate (y < -2.8 cm)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    fuv = face_uvs[gums]
    a, b = fuv, np.roll(fuv, -1, 1)
    b = np.where(b < 0, fuv[:, :1], b)
    ok = a >= 0
    n = len(uvs)
    _, island = connected_components(coo_matrix((np.ones(ok.sum()), (a[ok], b[ok])), shape=(n, n)),
                                     directed=False)
    tongue = np.zeros(len(neutral), bool)
    fv = faces[gums]
    face_island = island[fuv[:, 0]]
    for label in np.unique(face_island):
        verts = np.unique(fv[face_island == label])
        verts = verts[verts >= 0]
        p = neutral[verts]
        if np.abs(p[:, 0]).max() < 2.2 and p[:, 1].max() < -2.8 and len(verts) > 100:
            tongue[verts] = True
    if not 500 < tongue.sum() < 1200:
        raise SystemExit(f"tongue: found {tongue.sum()} vertices; expected its two islands (~780)")
    return tongue


def eyeball_centre(points: np.ndarray) -> np.ndarray:
    """Centre ``[3]`` of the least-squares sphere through ``points [N, 3]``."""
    a = np.concatenate([2.0 * points, np.ones((len(points), 1))], 1)
    return np.linalg.lstsq(a, (points ** 2).sum(1), rcond=None)[0][:3]


def eye_look(neutral: np.ndarray, eyes: dict[str, np.ndarray], shell: dict[str, np.ndarray],
             name: str) -> np.ndarray:
    """``[V,3]`` offsets turning one eyeball for the ARKit shape ``name`` (e.g. eyeLookUpLeft):
    the rotation's linear offsets about the centre of its shell (module docstring).
    ``eyes``/``shell``: side ("Left"/"Right") -> ``[V]`` bool of the eyeball / its shell."""
    side = "Left" if name.endswith("Left") else "Right"
    direction = name[len("eyeLook"):-len(side)]
    angle = np.radians(EYE_LOOK_DEGREES[direction])
    centre = eyeball_centre(neutral[shell[side]])
    # +X is the subject's left: a left eye looks "out" towards +X, a right eye towards -X.
    outward = 1.0 if side == "Left" else -1.0
    if direction in ("Up", "Down"):          # about X; Up brings the front (+Z) up (+Y)
        a = -angle if direction == "Up" else angle
        rot = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    else:                                     # about Y; a positive angle brings +Z towards +X
        a = angle * outward * (1.0 if direction == "Out" else -1.0)
        rot = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    delta = np.zeros_like(neutral)
    p = neutral[eyes[side]] - centre
    delta[eyes[side]] = p @ rot.T - p
    return delta


def arkit_expressions(names: list[str], deltas: np.ndarray, tongue_delta: np.ndarray,
                      eye_turn) -> np.ndarray:
    """``[52,V,3]`` ARKit shapes (ARKIT_NAMES order) from ICT's named deltas (module
    docstring); ``eye_turn(name)`` gives the eyeball offsets added to each eyeLook shape."""
    ict = {n: d for n, d in zip(names, deltas)}
    out = []
    for name in ARKIT_NAMES:
        if name == "tongueOut":
            out.append(tongue_delta)
        elif name in ict:
            out.append(ict[name])
        elif name in ("browInnerUp", "cheekPuff"):
            out.append(ict[name + "_L"] + ict[name + "_R"])
        elif name.endswith("Left"):
            out.append(ict[name[:-4] + "_L"])
        else:
            out.append(ict[name[:-5] + "_R"])
        if name.startswith("eyeLook"):
            out[-1] = out[-1] + eye_turn(name)
    return np.stack(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ict", type=Path, default=DEFAULT_ICT, help="the ict_facekit folder")
    args = parser.parse_args()
    src = np.load(args.ict / "ict_face_model.npz")
    uvs, faces, face_uvs, materials = read_obj(args.ict / "generic_neutral_mesh.obj")
    landmarks68 = np.array(json.loads((args.ict / "vertex_indices.json").read_text())
                           ["idx_to_landmark_verts"])
    neutral = src["neutral"].astype(np.float64)

    ids, part = kept_vertices()
    new_index = np.full(len(neutral), -1, np.int64)
    new_index[ids] = np.arange(len(ids))
    keep = np.isin(materials, list(MATERIALS))
    faces, face_uvs, materials = faces[keep], face_uvs[keep], materials[keep]
    if (new_index[faces[faces >= 0]] < 0).any():
        raise SystemExit("a kept face uses a dropped vertex")

    # Per-face material: the ICT material's part, mouth-socket faces and tongue faces split off.
    tongue_ict = tongue_vertices(neutral, faces, face_uvs, uvs, materials == "M_GumsTongue")
    material = np.array([MATERIALS[m] for m in materials], dtype=object)
    first = faces[:, 0]
    material[(material == "skin") & (part[new_index[first]] == "mouth")] = "mouth"
    corner_tongue = np.where(faces >= 0, tongue_ict[np.maximum(faces, 0)], True)
    material[(material == "gums") & corner_tongue.all(1)] = "tongue"
    corner_radius = np.where(face_uvs >= 0, np.linalg.norm(uvs[np.maximum(face_uvs, 0)] - 0.5, axis=-1), 0)
    material[(material == "sclera") & (corner_radius < CORNEA_UV_RADIUS).all(1)] = "cornea"
    face_material = np.array([MATERIAL_NAMES.index(m) for m in material], np.uint8)

    # UVs: one output UV per (ICT uv index, atlas or not); the skin atlas or the tile moved to [0, 1].
    in_atlas = np.isin(material, ["skin", "mouth"])
    corner_uv = face_uvs[face_uvs >= 0]
    corner_atlas = np.broadcast_to(in_atlas[:, None], face_uvs.shape)[face_uvs >= 0]
    keys, inverse = np.unique(np.stack([corner_uv, corner_atlas], 1), axis=0, return_inverse=True)
    raw = uvs[keys[:, 0]]
    out_uvs = np.where(keys[:, 1:2].astype(bool), atlas_uv(raw), raw - np.floor(raw[:, :1]) * [1, 0])
    out_face_uvs = np.full(face_uvs.shape, -1, np.int64)
    out_face_uvs[face_uvs >= 0] = inverse.ravel()
    out_faces = np.where(faces >= 0, new_index[np.maximum(faces, 0)], -1)

    metres = 0.01
    mean = neutral[ids] * metres
    identity = src["identity_delta"][:, ids].astype(np.float64) * metres
    norms2 = (src["identity_delta"][:, :NARROW_FACE_LAST + 1].reshape(len(identity), -1) ** 2).sum(1)
    for k in (50, 75, 100):
        rest = norms2[k:].sum() / (NARROW_FACE_LAST + 1)
        print(f"identity modes {k}: RMS truncation error per face vertex {np.sqrt(rest) * 10:.3f} mm")
    tongue_delta = tongue_out(neutral, tongue_ict)[ids] * metres
    eyeball = np.isin(material, ["sclera", "cornea", "iris"])
    eye_faces = {side: eyeball & (sign * neutral[faces[:, 0], 0] > 0) for side, sign in (("Left", 1), ("Right", -1))}
    in_eye = {side: np.isin(ids, faces[f][faces[f] >= 0]) for side, f in eye_faces.items()}
    shell = {side: np.isin(ids, faces[f & (material == "sclera")][faces[f & (material == "sclera")] >= 0])
             for side, f in eye_faces.items()}
    expressions = arkit_expressions([str(n) for n in src["expression_names"]],
                                    src["expression_delta"][:, ids].astype(np.float64) * metres,
                                    tongue_delta, lambda name: eye_look(mean, in_eye, shell, name))
    for name, arr in (("identity", identity), ("expression", expressions)):
        err = np.abs(arr.astype(np.float16).astype(np.float64) - arr).max()
        print(f"{name}: float16 rounding error at most {err * 1e3:.4f} mm per unit weight")

    # Regions.
    vertex_uv = np.zeros((len(ids), 2))
    atlas_corners = (out_face_uvs >= 0) & in_atlas[:, None]
    vertex_uv[out_faces[atlas_corners]] = out_uvs[out_face_uvs[atlas_corners]]
    skin_like = np.isin(part, ["skin", "mouth"])
    lm_uv = vertex_uv[new_index[landmarks68]]
    on_face = skin_like & (vertex_uv[:, 0] < FACE_TILE_SCALE) & (vertex_uv[:, 1] > 1 - FACE_TILE_SCALE)
    regions = {
        "skin": part == "skin", "mouth_socket": part == "mouth", "gums": part == "gums",
        "tongue": tongue_ict[ids], "teeth": part == "teeth",
        "eyeballs": np.isin(part, ["sclera", "iris"]), "irises": part == "iris",
        "sclerae": part == "sclera",
        "lashes": part == "lashes",
        "face": ids <= NARROW_FACE_LAST,
        "eyes": (on_face & (inside_uv_polygon(vertex_uv, lm_uv[36:42], 1.7)
                            | inside_uv_polygon(vertex_uv, lm_uv[42:48], 1.7)))
        | ((ids >= 13294) & (ids <= 14061)),
        "nose": on_face & inside_uv_polygon(vertex_uv, lm_uv[[27, 31, 32, 33, 34, 35]], 1.4),
        "lips": on_face & inside_uv_polygon(vertex_uv, lm_uv[48:60], 1.05),
        "back_head": (ids >= 9409) & (ids <= 11247),
    }
    for name, mask in regions.items():
        print(f"region {name}: {mask.sum()} vertices")

    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        OUT, name=np.array("ICT Face Model Light (ICT-FaceKit, MIT)"),
        faces=out_faces.astype(np.int32), uvs=out_uvs.astype(np.float32),
        face_uvs=out_face_uvs.astype(np.int32), face_material=face_material,
        material_names=np.array(MATERIAL_NAMES), mean=mean.astype(np.float32),
        identity=identity.astype(np.float16), expression=expressions.astype(np.float16),
        expression_names=np.array(ARKIT_NAMES), mirror=mirror_map(mean, part).astype(np.int32),
        region_names=np.array(list(regions)), region_masks=np.stack(list(regions.values())),
        source_vertex_ids=ids.astype(np.int32))
    notice = (args.ict / "LICENSE").read_text()
    LICENSE_OUT.write_text(
        "# Built-in head model: ICT Face Model Light\n\n"
        "`ict_head.npz` is derived by `tools/build_ict_head.py` from the ICT Face Model Light of\n"
        "ICT-FaceKit (github.com/ICT-VGL/ICT-FaceKit, commit da5f95a) by the USC Institute for\n"
        "Creative Technologies, Vision and Graphics Lab (contributors: Kalle Bladin, Owen Ingraham,\n"
        "Yajie Zhao, Pratusha Prasad, Xinglei Ren, Bipin Kishore, Marcel Ramos and others; see the\n"
        "repository's CREDITS.md). Changes: units (cm -> m), parts kept, UVs packed into one skin\n"
        "atlas, shapes stored as float16, ARKit blendshapes assembled (browInnerUp and cheekPuff\n"
        "from their halves; tongueOut made by the script), MediaPipe landmark correspondence added\n"
        "by `tools/build_landmark_correspondence.py`. The model is distributed under its MIT\n"
        "licence, reproduced here:\n\n```\n" + notice.strip() + "\n```\n")
    print(f"wrote {OUT} ({OUT.stat().st_size / 1e6:.1f} MB): {len(mean)} vertices, "
          f"{len(out_faces)} faces, {len(identity)} identity modes, {len(expressions)} expressions")


if __name__ == "__main__":
    main()
