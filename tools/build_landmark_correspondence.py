"""Find where MediaPipe's 478 face-mesh landmarks lie on the built-in head.

Renders the model's mean head (plus yawed, pitched and other-identity variants) with Blender
Cycles — skin with darker lips, white sclera, brown iris with a black pupil, teeth, gums and
dark lashes —, runs the engine's detector :func:`engine.detect.landmarks.detect_landmarks` on
each render, casts each detected 2D landmark back through the render camera onto the head (any
part: iris points land on the irises, which turn with the eyeLook shapes), averages the hits of
each landmark on the mean head and snaps the average to the part it hit most. Stores, in the
model file: ``landmark_faces`` (row of ``MorphableHead.triangles()``), ``landmark_barycentrics``,
``landmark_weights`` (hit rate divided by ``1 + (spread / 3 mm)²``, so sliding contour points
weigh less and landmarks that never hit weigh 0) and ``landmark_uv``. Also writes
``engine/head/multipie68.py``: the MediaPipe landmark nearest to each of the head's 68
Multi-PIE landmark vertices, used to fit heads that only know those 68 points (BFM).

Run after ``tools/build_ict_head.py``: ``python tools/build_landmark_correspondence.py
[--preview notes/head_landmarks.png]`` (a few minutes on two CPU cores).
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy.spatial import cKDTree

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmark.render import new_cycles_scene  # noqa: E402
from engine.conventions import model_to_blender  # noqa: E402
from engine.detect.landmarks import detect_landmarks  # noqa: E402
from engine.head.linear import DEFAULT_MODEL_PATH, read_model_arrays  # noqa: E402
from engine.result import triangle_faces, triangulate  # noqa: E402
from engine.io.image_io import photo_from_array  # noqa: E402
from hrn_blender.scene.mesh import build_mesh  # noqa: E402
from hrn_blender.scene.parts import part_material  # noqa: E402

IMAGE_SIDE = 512
LENS_MM, SENSOR_MM = 85.0, 36.0
CAMERA_DISTANCE = 0.8           # metres from the head origin
CAMERA_HEIGHT = 0.0             # the camera looks along -Z at the model origin's height
SPREAD_SCALE = 0.003            # metres; spread at which a landmark's weight halves
#: (yaw degrees, pitch degrees, identity seed or None for the mean) of each render.
VIEWS = ((0, 0, None), (15, 0, None), (-15, 0, None), (0, 10, None), (0, -10, None),
         (0, 0, 1), (0, 0, 2), (10, 5, 3))
ICT_DEFAULT = REPO.parent / "shared" / "data" / "ict_facekit"
#: Skin and lip colours (linear RGB) and eye colours (sRGB) of the renders; the other parts
#: take the scene builder's materials (hrn_blender/scene/parts.py).
SKIN, LIPS = (0.6, 0.36, 0.26), (0.42, 0.14, 0.12)
IRIS_SRGB, SCLERA_SRGB = (0.35, 0.22, 0.12), (0.9, 0.88, 0.84)


@dataclass(frozen=True)
class Render:
    image: np.ndarray          # [H,W,3] uint8
    vertices: np.ndarray       # [V,3] model space (posed) metres
    detected: np.ndarray       # [478,2] image pixels


def focal_px() -> float:
    return LENS_MM / SENSOR_MM * IMAGE_SIDE


def rotation(yaw_deg: float, pitch_deg: float) -> np.ndarray:
    """Model-space rotation: yaw about +Y (turning to the subject's left), then pitch about +X."""
    y, p = np.radians(yaw_deg), np.radians(pitch_deg)
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    return rx @ ry


def camera_position() -> np.ndarray:
    return np.array([0.0, CAMERA_HEIGHT, CAMERA_DISTANCE])


def render(vertices: np.ndarray, faces: np.ndarray, uvs: np.ndarray, face_uvs: np.ndarray,
           face_material: np.ndarray, material_names: tuple[str, ...], lips: np.ndarray,
           samples: int = 24) -> np.ndarray:
    """Cycles render (uint8 [H,W,3]) of the posed head: one object, one material per part."""
    import bpy
    from mathutils import Vector

    scene = new_cycles_scene(bpy, IMAGE_SIDE, samples)
    world = bpy.data.worlds.new("world")
    world.use_nodes = True
    world.node_tree.nodes["Background"].inputs["Color"].default_value = (0.25, 0.27, 0.3, 1)
    world.node_tree.nodes["Background"].inputs["Strength"].default_value = 0.8
    scene.world = world

    mesh = build_mesh("head", model_to_blender(vertices), faces, uvs, face_uvs, face_material)
    colours = np.tile([*SKIN, 1.0], (len(vertices), 1))
    colours[lips] = [*LIPS, 1.0]
    tint = mesh.color_attributes.new("tint", "FLOAT_COLOR", "POINT")
    tint.data.foreach_set("color", colours.ravel())
    for name in material_names:
        if name == "skin":
            mat = bpy.data.materials.new(name)
            tree = mat.node_tree
            bsdf = tree.nodes["Principled BSDF"]
            attr = tree.nodes.new("ShaderNodeAttribute")
            attr.attribute_name = "tint"
            tree.links.new(attr.outputs["Color"], bsdf.inputs["Base Color"])
            bsdf.inputs["Roughness"].default_value = 0.5
            bsdf.inputs["Subsurface Weight"].default_value = 0.15
            bsdf.inputs["Subsurface Radius"].default_value = (0.01, 0.004, 0.002)
        else:
            mat = part_material(name, name, IRIS_SRGB, SCLERA_SRGB, 1.0)
        mesh.materials.append(mat)
    obj = bpy.data.objects.new("head", mesh)
    scene.collection.objects.link(obj)

    cam_data = bpy.data.cameras.new("camera")
    cam_data.lens, cam_data.sensor_width, cam_data.sensor_fit = LENS_MM, SENSOR_MM, "HORIZONTAL"
    cam = bpy.data.objects.new("camera", cam_data)
    cam.location = model_to_blender(camera_position()).tolist()
    cam.rotation_euler = (np.pi / 2, 0.0, 0.0)          # look along Blender +Y, Z up
    scene.collection.objects.link(cam)
    scene.camera = cam
    for name, energy, direction in (("key", 3.0, (0.5, 0.6, 1.0)), ("fill", 1.2, (-0.7, 0.1, 1.0))):
        light = bpy.data.objects.new(name, bpy.data.lights.new(name, "SUN"))
        light.data.energy = energy
        light.data.angle = np.radians(25)
        d = model_to_blender(np.array(direction) / np.linalg.norm(direction))
        light.rotation_mode = "QUATERNION"
        light.rotation_quaternion = Vector((-d).tolist()).to_track_quat("-Z", "Y")
        scene.collection.objects.link(light)

    out = Path(bpy.app.tempdir or "/tmp") / "head_landmark_render.png"
    scene.render.filepath = str(out)
    bpy.ops.render.render(write_still=True)
    return np.asarray(Image.open(out).convert("RGB"))


def cast_rays(pixels: np.ndarray, vertices: np.ndarray, triangles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First hit of the camera ray through each pixel ``[N,2]`` on ``triangles [T,3]``.
    Returns the triangle index ``[N]`` (-1: missed) and barycentrics ``[N,3]``."""
    cam = camera_position()
    f = focal_px()
    c = IMAGE_SIDE / 2
    dirs = np.stack([(pixels[:, 0] - c) / f, -(pixels[:, 1] - c) / f, -np.ones(len(pixels))], 1)
    tri = vertices[triangles]
    a, e1, e2 = tri[:, 0], tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    faces_out = np.full(len(pixels), -1)
    bary_out = np.zeros((len(pixels), 3))
    for i, d in enumerate(dirs):           # Moller-Trumbore against every triangle
        p = np.cross(d, e2)
        det = (e1 * p).sum(1)
        ok = np.abs(det) > 1e-12
        inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
        s = cam - a
        u = (s * p).sum(1) * inv
        q = np.cross(s, e1)
        v = (q @ d) * inv
        t = (e2 * q).sum(1) * inv
        hit = ok & (u >= 0) & (v >= 0) & (u + v <= 1) & (t > 0)
        if hit.any():
            j = np.nonzero(hit)[0][np.argmin(t[hit])]
            faces_out[i] = j
            bary_out[i] = (1 - u[j] - v[j], u[j], v[j])
    return faces_out, bary_out


def snap_to_surface(points: np.ndarray, vertices: np.ndarray, triangles: np.ndarray):
    """Nearest surface point (triangle ``[N]``, barycentrics ``[N,3]``) to each point,
    searching the triangles around the 12 nearest vertices."""
    used = np.unique(triangles)
    tree = cKDTree(vertices[used])
    vert_tris: dict[int, list[int]] = {}
    for t, tri in enumerate(triangles):
        for v in tri:
            vert_tris.setdefault(int(v), []).append(t)
    faces_out = np.empty(len(points), np.int32)
    bary_out = np.empty((len(points), 3), np.float32)
    for i, p in enumerate(points):
        _, near = tree.query(p, k=12)
        cand = np.unique(np.concatenate([vert_tris[int(v)] for v in used[near]])).astype(int)
        a, b, c = (vertices[triangles[cand, k]] for k in range(3))
        n = np.cross(b - a, c - a)
        n /= np.linalg.norm(n, axis=1, keepdims=True) + 1e-30
        proj = p - ((p - a) * n).sum(1, keepdims=True) * n
        bary = np.clip(_barycentric(proj, a, b, c), 0, None)
        bary /= bary.sum(1, keepdims=True)
        closest = bary[:, :1] * a + bary[:, 1:2] * b + bary[:, 2:] * c
        j = int(np.argmin(np.linalg.norm(closest - p, axis=1)))
        faces_out[i], bary_out[i] = cand[j], bary[j]
    return faces_out, bary_out


def _barycentric(p, a, b, c):
    v0, v1, v2 = b - a, c - a, p - a
    d00, d01, d11 = (v0 * v0).sum(1), (v0 * v1).sum(1), (v1 * v1).sum(1)
    d20, d21 = (v2 * v0).sum(1), (v2 * v1).sum(1)
    den = d00 * d11 - d01 * d01
    den = np.where(np.abs(den) < 1e-30, 1e-30, den)
    v = (d11 * d20 - d01 * d21) / den
    w = (d00 * d21 - d01 * d20) / den
    return np.stack([1 - v - w, v, w], 1)


def project(points: np.ndarray) -> np.ndarray:
    """Model-space points ``[N,3]`` to render pixels ``[N,2]``."""
    cam = points - camera_position()
    f, c = focal_px(), IMAGE_SIDE / 2
    return np.stack([f * cam[:, 0] / -cam[:, 2] + c, -f * cam[:, 1] / -cam[:, 2] + c], 1)


def write_multipie_table(path: Path, ict: Path, source_ids: np.ndarray, mean: np.ndarray,
                         landmarks: np.ndarray, weights: np.ndarray) -> None:
    """``engine/head/multipie68.py``: for each Multi-PIE 68 point (ICT's landmark vertices),
    the MediaPipe landmark nearest to it on the mean head, and that distance."""
    ids = json.loads((ict / "vertex_indices.json").read_text())["idx_to_landmark_verts"]
    where = {int(s): i for i, s in enumerate(source_ids)}
    points = mean[[where[i] for i in ids]]
    usable = np.nonzero(weights > 0.3)[0]
    dist, near = cKDTree(landmarks[usable]).query(points)
    table = usable[near]
    print(f"Multi-PIE 68 -> MediaPipe: median distance {np.median(dist) * 1e3:.1f} mm, "
          f"largest {dist.max() * 1e3:.1f} mm")
    path.write_text(
        '"""Multi-PIE 68-point landmarks as MediaPipe face-mesh indices (written by\n'
        "tools/build_landmark_correspondence.py: the MediaPipe landmark nearest to each of the ICT\n"
        'head\'s 68 landmark vertices on its mean shape; the jaw points 0-16 only approximately)."""\n\n'
        "#: ``MULTIPIE68_TO_MEDIAPIPE[i]``: MediaPipe index of Multi-PIE point i (0-based).\n"
        f"MULTIPIE68_TO_MEDIAPIPE = {tuple(int(t) for t in table)}\n"
        "#: Distance (mm) on the ICT mean head between each Multi-PIE point and its MediaPipe one.\n"
        f"DISTANCE_MM = {tuple(round(float(d) * 1e3, 1) for d in dist)}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_PATH)
    parser.add_argument("--ict", type=Path, default=ICT_DEFAULT, help="the ict_facekit folder")
    parser.add_argument("--preview", type=Path, help="PNG of the frontal render with landmarks")
    args = parser.parse_args()

    arrays = read_model_arrays(args.model, require_landmarks=False)
    faces = arrays["faces"].astype(np.int64)
    triangles = triangulate(faces).astype(np.int64)
    tri_material = arrays["face_material"][triangle_faces(faces)]
    materials = tuple(str(m) for m in arrays["material_names"])
    mean = arrays["mean"].astype(np.float64)
    identity = arrays["identity"].astype(np.float64)
    regions = dict(zip(arrays["region_names"], arrays["region_masks"]))
    opaque = tri_material != materials.index("cornea")

    renders: list[Render] = []
    hits_tri, hits_bary = [], []
    for yaw, pitch, seed in VIEWS:
        weights = np.zeros(len(identity)) if seed is None else np.random.default_rng(seed).normal(size=len(identity))
        shape = mean + np.tensordot(weights, identity, axes=1)
        posed = shape @ rotation(yaw, pitch).T
        image = render(posed, faces, arrays["uvs"], arrays["face_uvs"], arrays["face_material"],
                       materials, regions["lips"])
        lm = detect_landmarks(photo_from_array(image, f"render yaw={yaw} pitch={pitch} id={seed}"))
        detected = lm.points[:, :2].astype(np.float64)
        # Rays pass the transparent cornea and meet the iris behind it.
        tri, bary = cast_rays(detected, posed, triangles[opaque])
        tri = np.where(tri >= 0, np.nonzero(opaque)[0][np.maximum(tri, 0)], -1)
        renders.append(Render(image, posed, detected))
        hits_tri.append(tri)
        hits_bary.append(bary)
        print(f"view yaw={yaw:+} pitch={pitch:+} identity={seed}: {np.sum(tri >= 0)} hits", flush=True)

    hits_tri, hits_bary = np.stack(hits_tri), np.stack(hits_bary)      # [R,478], [R,478,3]
    # Hits on the mean head, for renders of other identities too: same triangle, same barycentrics.
    on_mean = (mean[triangles[np.maximum(hits_tri, 0)]] * hits_bary[..., None]).sum(-2)
    hit = hits_tri >= 0
    count = hit.sum(0)
    avg = np.where(count[:, None] > 0, (on_mean * hit[..., None]).sum(0)
                   / np.maximum(count, 1)[:, None], mean.mean(0))
    spread = np.sqrt((((on_mean - avg) ** 2).sum(-1) * hit).sum(0) / np.maximum(count, 1))
    # Snap each landmark to the material its rays hit most often (skin, iris, ...).
    hit_material = np.where(hit, tri_material[np.maximum(hits_tri, 0)], 255)
    lm_faces = np.zeros(len(avg), np.int64)
    lm_bary = np.full((len(avg), 3), 1.0 / 3.0)
    for k in range(len(avg)):
        found = hit_material[:, k][hit_material[:, k] != 255]
        material = np.bincount(found).argmax() if len(found) else materials.index("skin")
        rows = np.nonzero(tri_material == material)[0]
        f, b = snap_to_surface(avg[k:k + 1], mean, triangles[rows])
        lm_faces[k], lm_bary[k] = rows[f[0]], b[0]
    weights = (count / len(VIEWS)) / (1 + (spread / SPREAD_SCALE) ** 2)
    weights[count == 0] = 0.0
    uv_tris = triangulate(arrays["face_uvs"].astype(np.int64))
    lm_uv = (arrays["uvs"][uv_tris[lm_faces]] * lm_bary[..., None]).sum(1)

    errors = []
    for rd in renders:
        pts = (rd.vertices[triangles[lm_faces]] * lm_bary[..., None]).sum(1)
        err = np.linalg.norm(project(pts) - rd.detected, axis=1)
        errors.append(err[weights > 0])
    errors = np.concatenate(errors)
    on_iris = tri_material[lm_faces] == materials.index("iris")
    print(f"landmarks: {np.sum(weights > 0)} with weight > 0 ({np.sum(on_iris & (weights > 0))} on "
          f"the irises), {np.sum(weights > 0.5)} with weight > 0.5, median spread "
          f"{np.median(spread[count > 0]) * 1000:.2f} mm")
    print(f"reprojection error: mean {errors.mean():.2f} px, median {np.median(errors):.2f} px, "
          f"90th percentile {np.percentile(errors, 90):.2f} px (on {IMAGE_SIDE}px renders)")

    arrays.update(landmark_faces=lm_faces.astype(np.int32),
                  landmark_barycentrics=lm_bary.astype(np.float32),
                  landmark_weights=weights.astype(np.float32),
                  landmark_uv=lm_uv.astype(np.float32))
    np.savez_compressed(args.model, **arrays)
    print(f"wrote {args.model}")
    positions = (mean[triangles[lm_faces]] * lm_bary[..., None]).sum(1)
    write_multipie_table(REPO / "engine" / "head" / "multipie68.py", args.ict,
                         arrays["source_vertex_ids"], mean, positions, weights)

    if args.preview:
        front = renders[0]
        img = Image.fromarray(front.image)
        draw = ImageDraw.Draw(img)
        pts = project((front.vertices[triangles[lm_faces]] * lm_bary[..., None]).sum(1))
        for (x, y), (dx, dy), w in zip(pts, front.detected, weights):
            draw.ellipse([dx - 1.5, dy - 1.5, dx + 1.5, dy + 1.5], outline=(255, 255, 0))
            colour = (0, 255, 0) if w > 0.5 else (255, 128, 0) if w > 0 else (255, 0, 0)
            draw.ellipse([x - 1, y - 1, x + 1, y + 1], fill=colour)
        args.preview.parent.mkdir(parents=True, exist_ok=True)
        img.save(args.preview)
        print(f"preview: {args.preview} (yellow rings: detected; dots: stored, green w>0.5, "
              f"orange w>0, red w=0)")


if __name__ == "__main__":
    main()
