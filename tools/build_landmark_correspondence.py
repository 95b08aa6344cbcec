"""Find where MediaPipe's 478 face-mesh landmarks lie on the head model's surface.

Renders the model's mean head (plus yawed, pitched and two identity variants) with Blender
Cycles (skin-like material; the model's eyeballs with a procedural iris), runs the engine's detector :func:`engine.detect.landmarks.detect_landmarks` on each
render, casts each detected 2D landmark back through the render camera onto the head
skin, averages the hits of each landmark on the mean head and snaps the average to the
skin (rays that meet an eyeball first miss). Stores, in ``engine/head/data/head_model.npz``: ``landmark_faces`` (triangle index into
``HeadModel.triangles()``), ``landmark_barycentrics``, ``landmark_weights`` (hit rate
divided by ``1 + (spread / 3 mm)²``, so sliding contour points weigh less and landmarks
that never hit the skin, e.g. the irises, weigh 0) and ``landmark_uv``.

Run after ``tools/build_head_model.py``: ``python tools/build_landmark_correspondence.py
[--preview notes/head_model_landmarks.png]`` (a few minutes on two CPU cores).
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy.spatial import cKDTree

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools"))

from benchmark.render import new_cycles_scene  # noqa: E402
from engine.conventions import model_to_blender  # noqa: E402
from engine.detect.landmarks import (IRIS_LEFT, IRIS_LEFT_CENTER, IRIS_RIGHT,  # noqa: E402
                              IRIS_RIGHT_CENTER, detect_landmarks)
from engine.head.model import DEFAULT_MODEL_PATH, read_model_arrays  # noqa: E402
from engine.io.image_io import photo_from_array  # noqa: E402

IMAGE_SIDE = 512
LENS_MM, SENSOR_MM = 85.0, 36.0
CAMERA_DISTANCE = 0.8           # metres from the head origin
CAMERA_HEIGHT = -0.01           # aim a little below the ear line, at the face's centre
SPREAD_SCALE = 0.003            # metres; spread at which a landmark's weight halves
#: (yaw degrees, pitch degrees, identity coefficient vector scale) of each render.
VIEWS = ((0, 0, 0.0), (15, 0, 0.0), (-15, 0, 0.0), (0, 10, 0.0), (0, -10, 0.0),
         (0, 0, 1.5), (0, 0, -1.5))


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


def render(vertices: np.ndarray, faces: np.ndarray, lips: np.ndarray,
           eyes: list[tuple[np.ndarray, np.ndarray]], samples: int = 24) -> np.ndarray:
    """Cycles render (uint8 [H,W,3]) of the skin (``vertices`` in model space, skin quads
    ``faces``) and the eyes (per eye: vertices ``[n,3]``, quads ``[m,4]``)."""
    import bpy

    scene = new_cycles_scene(bpy, IMAGE_SIDE, samples)
    world = bpy.data.worlds.new("world")
    world.use_nodes = True
    world.node_tree.nodes["Background"].inputs["Color"].default_value = (0.25, 0.27, 0.3, 1)
    world.node_tree.nodes["Background"].inputs["Strength"].default_value = 0.8
    scene.world = world

    skin = bpy.data.materials.new("skin")
    skin.use_nodes = True
    nodes = skin.node_tree.nodes
    bsdf = nodes["Principled BSDF"]
    attr = nodes.new("ShaderNodeAttribute")
    attr.attribute_name = "tint"
    skin.node_tree.links.new(attr.outputs["Color"], bsdf.inputs["Base Color"])
    bsdf.inputs["Roughness"].default_value = 0.55
    bsdf.inputs["Subsurface Weight"].default_value = 0.15
    bsdf.inputs["Subsurface Radius"].default_value = (0.01, 0.004, 0.002)

    def add_object(name, verts, quads, material):
        mesh = bpy.data.meshes.new(name)
        mesh.from_pydata(model_to_blender(verts).tolist(), [], quads.tolist())
        mesh.update()
        mesh.polygons.foreach_set("use_smooth", [True] * len(mesh.polygons))
        mesh.materials.append(material)
        obj = bpy.data.objects.new(name, mesh)
        scene.collection.objects.link(obj)
        return mesh, obj

    head_mesh, _ = add_object("head", vertices, faces, skin)
    colours = np.tile([0.78, 0.56, 0.45, 1.0], (len(vertices), 1))
    colours[lips] = [0.62, 0.3, 0.28, 1.0]
    tint = head_mesh.color_attributes.new("tint", "FLOAT_COLOR", "POINT")
    tint.data.foreach_set("color", colours.ravel())

    for k, (verts, quads) in enumerate(eyes):
        eye = bpy.data.materials.new(f"eye{k}")
        eye.use_nodes = True
        t = eye.node_tree
        centre = verts.mean(0)
        coord = t.nodes.new("ShaderNodeTexCoord")
        norm = t.nodes.new("ShaderNodeVectorMath")
        norm.operation = "NORMALIZE"
        sep = t.nodes.new("ShaderNodeSeparateXYZ")
        ramp = t.nodes.new("ShaderNodeValToRGB")
        ramp.color_ramp.interpolation = "CONSTANT"
        ramp.color_ramp.elements[0].color = (0.9, 0.88, 0.85, 1)
        ramp.color_ramp.elements[1].position = 0.93     # iris: within ~21 deg of forward
        ramp.color_ramp.elements[1].color = (0.18, 0.1, 0.05, 1)
        pupil = ramp.color_ramp.elements.new(0.985)      # pupil: within ~10 deg
        pupil.color = (0.01, 0.01, 0.01, 1)
        neg = t.nodes.new("ShaderNodeMath")
        neg.operation = "MULTIPLY"
        neg.inputs[1].default_value = -1.0               # forward is Blender -Y
        t.links.new(coord.outputs["Object"], norm.inputs[0])
        t.links.new(norm.outputs[0], sep.inputs[0])
        t.links.new(sep.outputs["Y"], neg.inputs[0])
        t.links.new(neg.outputs[0], ramp.inputs["Fac"])
        t.links.new(ramp.outputs["Color"], t.nodes["Principled BSDF"].inputs["Base Color"])
        t.nodes["Principled BSDF"].inputs["Roughness"].default_value = 0.15
        _, obj = add_object(f"eye{k}", verts - centre, quads, eye)
        obj.location = model_to_blender(centre).tolist()
        obj.modifiers.new("smooth", "SUBSURF").levels = 2

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
        # A sun shines along its local -Z: point -Z away from the light's direction d.
        light.rotation_mode = "QUATERNION"
        from mathutils import Vector
        light.rotation_quaternion = Vector((-d).tolist()).to_track_quat("-Z", "Y")
        scene.collection.objects.link(light)

    out = Path(bpy.app.tempdir or "/tmp") / "head_landmark_render.png"
    scene.render.filepath = str(out)
    bpy.ops.render.render(write_still=True)
    return np.asarray(Image.open(out).convert("RGB"))


def cast_rays(pixels: np.ndarray, vertices: np.ndarray, triangles: np.ndarray,
              blocking: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First hit of the camera ray through each pixel ``[N,2]`` on the head triangles.

    ``blocking [T]`` marks triangles (the eyeballs) that stop rays without counting as a
    hit. Returns triangle index ``[N]`` (-1: missed, or met a blocking triangle first) and
    barycentrics ``[N,3]``.
    """
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
        if not hit.any():
            continue
        j = np.nonzero(hit)[0][np.argmin(t[hit])]
        if not blocking[j]:
            faces_out[i] = j
            bary_out[i] = (1 - u[j] - v[j], u[j], v[j])
    return faces_out, bary_out


def snap_to_surface(points: np.ndarray, vertices: np.ndarray, triangles: np.ndarray):
    """Nearest surface point (triangle ``[N]``, barycentrics ``[N,3]``) to each point,
    searching the triangles around the 12 nearest vertices."""
    tree = cKDTree(vertices)
    vert_tris: dict[int, list[int]] = {}
    for t, tri in enumerate(triangles):
        for v in tri:
            vert_tris.setdefault(int(v), []).append(t)
    faces_out = np.empty(len(points), np.int32)
    bary_out = np.empty((len(points), 3), np.float32)
    for i, p in enumerate(points):
        _, near = tree.query(p, k=12)
        cand = np.unique(np.concatenate([vert_tris.get(int(v), []) for v in near])).astype(int)
        a, b, c = (vertices[triangles[cand, k]] for k in range(3))
        n = np.cross(b - a, c - a)
        n /= np.linalg.norm(n, axis=1, keepdims=True)
        proj = p - ((p - a) * n).sum(1, keepdims=True) * n
        bary = _barycentric(proj, a, b, c)
        bary = np.clip(bary, 0, None)
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
    v = (d11 * d20 - d01 * d21) / den
    w = (d00 * d21 - d01 * d20) / den
    return np.stack([1 - v - w, v, w], 1)


def project(points: np.ndarray) -> np.ndarray:
    """Model-space points ``[N,3]`` to render pixels ``[N,2]``."""
    cam = points - camera_position()
    f, c = focal_px(), IMAGE_SIDE / 2
    return np.stack([f * cam[:, 0] / -cam[:, 2] + c, -f * cam[:, 1] / -cam[:, 2] + c], 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_PATH)
    parser.add_argument("--preview", type=Path, help="PNG of the frontal render with landmarks")
    args = parser.parse_args()

    arrays = read_model_arrays(args.model, require_landmarks=False)
    faces = arrays["faces"].astype(np.int64)
    triangles = np.stack([faces[:, [0, 1, 2]], faces[:, [0, 2, 3]]], 1).reshape(-1, 3)
    mean = arrays["mean"].astype(np.float64)
    basis = arrays["identity_basis"].astype(np.float64)
    std = arrays["identity_std"].astype(np.float64)
    regions = dict(zip(arrays["region_names"], arrays["region_masks"]))
    on_eyeball = regions["eyeballs"][faces].all(1)
    skin_quads = faces[~on_eyeball]
    eyeball_quads = [faces[on_eyeball & (np.sign(mean[faces[:, 0], 0]) == side)] for side in (1, -1)]
    blocking = np.repeat(on_eyeball, 2)                  # triangles 2f, 2f+1 of quad f

    renders: list[Render] = []
    hits_tri, hits_bary = [], []
    for yaw, pitch, id_scale in VIEWS:
        coeff = np.zeros(len(std))
        coeff[:3] = id_scale * np.array([1.0, -1.0, 1.0])
        shape = mean + np.tensordot(coeff * std, basis, axes=1)
        r = rotation(yaw, pitch)
        posed = shape @ r.T
        eyes_posed = []
        for quads in eyeball_quads:
            used, inverse = np.unique(quads, return_inverse=True)
            eyes_posed.append((posed[used], inverse.reshape(-1, 4)))
        image = render(posed, skin_quads, regions["lips"], eyes_posed)
        lm = detect_landmarks(photo_from_array(image, f"render yaw={yaw} pitch={pitch} id={id_scale}"))
        detected = lm.points[:, :2].astype(np.float64)
        tri, bary = cast_rays(detected, posed, triangles, blocking)
        renders.append(Render(image, posed, detected))
        hits_tri.append(tri)
        hits_bary.append(bary)
        print(f"view yaw={yaw:+} pitch={pitch:+} id={id_scale:+}: {np.sum(tri >= 0)} hits", flush=True)

    hits_tri, hits_bary = np.stack(hits_tri), np.stack(hits_bary)      # [R,478], [R,478,3]
    on_mean = (mean[triangles[np.maximum(hits_tri, 0)]] * hits_bary[..., None]).sum(-2)
    hit = hits_tri >= 0
    count = hit.sum(0)
    avg = np.where(count[:, None] > 0, (on_mean * hit[..., None]).sum(0)
                   / np.maximum(count, 1)[:, None], mean.mean(0))
    spread = np.sqrt((((on_mean - avg) ** 2).sum(-1) * hit).sum(0) / np.maximum(count, 1))
    skin_tris = np.nonzero(~blocking)[0]
    lm_faces, lm_bary = snap_to_surface(avg, mean, triangles[skin_tris])
    lm_faces = skin_tris[lm_faces]
    weights = (count / len(VIEWS)) / (1 + (spread / SPREAD_SCALE) ** 2)
    weights[count == 0] = 0.0
    # Iris points ride on the eyeball, which turns with the gaze (not fitted): rays near the
    # iris rim can graze the eyelids, but those hits are not the landmark.
    weights[np.r_[IRIS_LEFT_CENTER, IRIS_LEFT, IRIS_RIGHT_CENTER, IRIS_RIGHT]] = 0.0
    face_uvs = arrays["face_uvs"].astype(np.int64)
    uv_tris = np.stack([face_uvs[:, [0, 1, 2]], face_uvs[:, [0, 2, 3]]], 1).reshape(-1, 3)
    lm_uv = (arrays["uvs"][uv_tris[lm_faces]] * lm_bary[..., None]).sum(1)

    # Reprojection error of the stored correspondence, per render, weighted landmarks only.
    errors = []
    for rd in renders:
        pts = (rd.vertices[triangles[lm_faces]] * lm_bary[..., None]).sum(1)
        err = np.linalg.norm(project(pts) - rd.detected, axis=1)
        errors.append(err[weights > 0])
    errors = np.concatenate(errors)
    print(f"landmarks: {np.sum(weights > 0)} on the skin, {np.sum(weights > 0.5)} with weight > 0.5, "
          f"median spread {np.median(spread[count > 0]) * 1000:.2f} mm")
    print(f"reprojection error: mean {errors.mean():.2f} px, median {np.median(errors):.2f} px, "
          f"90th percentile {np.percentile(errors, 90):.2f} px (on {IMAGE_SIDE}px renders)")

    arrays.update(landmark_faces=lm_faces.astype(np.int32),
                  landmark_barycentrics=lm_bary.astype(np.float32),
                  landmark_weights=weights.astype(np.float32),
                  landmark_uv=lm_uv.astype(np.float32))
    np.savez_compressed(args.model, **arrays)
    print(f"wrote {args.model}")

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
