"""Photos of the ground-truth scan rendered with Cycles (through ``bpy``), with the exact
camera and lights saved beside each image.

``bpy`` is imported inside :func:`render_set` only: the rest of the engine never needs Blender.

Shot parameters (:class:`Shot`):

* ``yaw_deg``: the camera orbits the head about its vertical axis; positive = the camera moves
  towards the subject's left (+X), so the face turns to the image's left.
* ``pitch_deg``: positive = the camera rises above the head and looks down.
* ``focal_mm``: 35 mm-equivalent focal length (36 mm sensor width, square image). The camera
  distance keeps a 0.32 m wide field at the head, so 26 mm means a close, phone-like
  perspective (~0.23 m) and 85 mm a portrait distance (~0.76 m).
* ``light``: "soft_frontal" (wide-angle sun from the camera side, bright ambient), "hard_side"
  (sharp sun from the subject's left, little ambient) or "coloured_ambient" (blue sky
  ambient and a warm key from the upper right).

Each ``<name>.png`` has a ``<name>.json`` with the shot, the camera as
:class:`engine.result.Camera` JSON (model space -> camera space, focal in pixels), the lights
(directions in model space), and the render settings.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from engine.conventions import MODEL_TO_BLENDER
from engine.result import Camera

from .scan import ATTRIBUTION, COLOUR_FILE, Scan

#: Width of the field of view at the head, metres (sets the camera distance).
FIELD_M = 0.32
SENSOR_MM = 36.0


@dataclass(frozen=True)
class Shot:
    """One rendered view of the scan (see the module docstring for the meaning of each field)."""

    yaw_deg: float = 0.0
    pitch_deg: float = 0.0
    focal_mm: float = 85.0
    light: str = "soft_frontal"

    @property
    def name(self) -> str:
        return (f"yaw{self.yaw_deg:+04.0f}_pitch{self.pitch_deg:+03.0f}_f{self.focal_mm:.0f}_"
                f"{self.light}")


LIGHTS = ("soft_frontal", "hard_side", "coloured_ambient")

#: The small default set: the frontal reference, ±30° and 60° yaw, a phone-like focal, a
#: hard side light, a raised camera under coloured light.
DEFAULT_SHOTS = (
    Shot(0, 0, 85, "soft_frontal"),
    Shot(30, 0, 85, "soft_frontal"),
    Shot(-30, 0, 85, "soft_frontal"),
    Shot(60, 0, 85, "soft_frontal"),
    Shot(0, 0, 26, "soft_frontal"),
    Shot(0, 0, 85, "hard_side"),
    Shot(0, 15, 85, "coloured_ambient"),
)

#: The frontal reference shot (scan landmarks and the headline targets come from it).
REFERENCE_SHOT = DEFAULT_SHOTS[0]


def full_shots() -> tuple[Shot, ...]:
    """The optional large set: yaw 0/±30/±60 × pitch 0/±15 × 85/26 mm × three lights (90)."""
    return tuple(Shot(y, p, f, l) for y in (0, 30, -30, 60, -60) for p in (0, 15, -15)
                 for f in (85, 26) for l in LIGHTS)


def head_centre(scan: Scan) -> np.ndarray:
    """``[3]`` point the cameras orbit and aim at: 9 cm behind the nose tip, 1.5 cm above it."""
    tip = scan.vertices[np.argmax(scan.vertices[:, 2])]
    return tip + np.array([0.0, 0.015, -0.09])


def shot_camera(shot: Shot, centre: np.ndarray, size: int) -> Camera:
    """The engine :class:`Camera` of a shot (square image of ``size`` px)."""
    distance = FIELD_M * shot.focal_mm / SENSOR_MM
    yaw, pitch = math.radians(shot.yaw_deg), math.radians(shot.pitch_deg)
    back = np.array([math.sin(yaw) * math.cos(pitch), math.sin(pitch), math.cos(yaw) * math.cos(pitch)])
    position = centre + distance * back
    x = np.cross([0.0, 1.0, 0.0], back)
    x /= np.linalg.norm(x)
    y = np.cross(back, x)
    rotation = np.stack([x, y, back])                       # rows: camera axes in model space
    return Camera(rotation=rotation, translation=-rotation @ position,
                  focal_px=shot.focal_mm / SENSOR_MM * size, principal_px=(size / 2, size / 2),
                  image_size=(size, size))


def light_rig(light: str) -> dict:
    """Lights of a setup, directions in model space (towards the light), colours linear RGB."""
    if light == "soft_frontal":
        return {"suns": [{"direction": [0.0, 0.35, 1.0], "strength": 2.2, "angle_deg": 60.0,
                          "colour": [1.0, 1.0, 1.0]}],
                "world_colour": [0.35, 0.35, 0.35]}
    if light == "hard_side":
        return {"suns": [{"direction": [1.0, 0.25, 0.25], "strength": 3.5, "angle_deg": 1.0,
                          "colour": [1.0, 1.0, 1.0]}],
                "world_colour": [0.05, 0.05, 0.05]}
    if light == "coloured_ambient":
        return {"suns": [{"direction": [-0.6, 0.5, 0.8], "strength": 2.0, "angle_deg": 10.0,
                          "colour": [1.0, 0.72, 0.45]}],
                "world_colour": [0.12, 0.22, 0.5]}
    raise ValueError(f"Unknown light setup '{light}'; use one of {', '.join(LIGHTS)}.")


def render_set(scan: Scan, out_dir: str | Path, shots: Sequence[Shot] = DEFAULT_SHOTS,
               size: int = 512, samples: int = 32,
               log: Optional[Callable[[str], None]] = None) -> list[Path]:
    """Render each shot of the scan's detailed surface into ``out_dir`` (PNG + JSON); shots
    whose PNG and JSON already exist are skipped. Returns the PNG paths in shot order."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    centre = head_centre(scan)
    todo = [s for s in shots if not ((out / f"{s.name}.png").is_file() and (out / f"{s.name}.json").is_file())]
    if todo:
        import bpy

        _build_scene(bpy, scan, size, samples)
        for shot in todo:
            if log:
                log(f"rendering {shot.name}")
            camera = shot_camera(shot, centre, size)
            rig = light_rig(shot.light)
            _set_camera(bpy, camera, shot.focal_mm)
            _set_lights(bpy, rig)
            bpy.context.scene.render.filepath = str(out / f"{shot.name}.png")
            bpy.ops.render.render(write_still=True)
            (out / f"{shot.name}.json").write_text(json.dumps({
                "image": f"{shot.name}.png", "shot": asdict(shot), "camera": camera.to_json(),
                "lights": rig, "head_centre": centre.tolist(), "samples": samples,
                "renderer": f"Cycles (Blender {bpy.app.version_string}), view transform Standard",
                "scan_scale_m_per_unit": scan.scale, "scan": ATTRIBUTION}, indent=2))
    return [out / f"{s.name}.png" for s in shots]


def new_cycles_scene(bpy, size: int, samples: int):
    """An empty scene (factory settings) set up for square ``size`` px CPU Cycles renders with
    ``samples`` samples, denoised, Standard view transform (sRGB without a tone curve),
    opaque film. Returns ``bpy.context.scene``."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = samples
    scene.cycles.use_denoising = True
    scene.render.resolution_x = scene.render.resolution_y = size
    scene.render.resolution_percentage = 100
    scene.view_settings.view_transform = "Standard"
    scene.render.film_transparent = False
    return scene


def _build_scene(bpy, scan: Scan, size: int, samples: int) -> None:
    scene = new_cycles_scene(bpy, size, samples)
    scene.render.image_settings.file_format = "PNG"

    verts = scan.vertices @ MODEL_TO_BLENDER.T
    faces = scan.faces
    mesh = bpy.data.meshes.new("scan")
    mesh.vertices.add(len(verts))
    mesh.vertices.foreach_set("co", verts.astype(np.float32).ravel())
    mesh.loops.add(faces.size)
    mesh.loops.foreach_set("vertex_index", faces.astype(np.int32).ravel())
    mesh.polygons.add(len(faces))
    mesh.polygons.foreach_set("loop_start", (np.arange(len(faces)) * 3).astype(np.int32))
    mesh.update(calc_edges=True)
    uv_layer = mesh.uv_layers.new(name="UVMap")
    uv_layer.data.foreach_set("uv", scan.uvs[faces].astype(np.float32).ravel())
    mesh.polygons.foreach_set("use_smooth", np.ones(len(faces), bool))
    obj = bpy.data.objects.new("scan", mesh)
    scene.collection.objects.link(obj)

    mat = bpy.data.materials.new("skin")
    mat.use_nodes = True
    nodes = mat.node_tree.nodes
    bsdf = nodes["Principled BSDF"]
    tex = nodes.new("ShaderNodeTexImage")
    tex.image = bpy.data.images.load(str(scan.folder / COLOUR_FILE))
    mat.node_tree.links.new(tex.outputs["Color"], bsdf.inputs["Base Color"])
    bsdf.inputs["Roughness"].default_value = 0.55
    mesh.materials.append(mat)

    cam = bpy.data.objects.new("camera", bpy.data.cameras.new("camera"))
    scene.collection.objects.link(cam)
    scene.camera = cam
    world = bpy.data.worlds.new("world")
    world.use_nodes = True
    scene.world = world


def _set_camera(bpy, camera: Camera, focal_mm: float) -> None:
    cam = bpy.context.scene.camera
    cam.data.sensor_fit = "HORIZONTAL"
    cam.data.sensor_width = SENSOR_MM
    cam.data.lens = focal_mm
    cam.data.clip_start, cam.data.clip_end = 0.01, 10.0
    # camera -> model: R^T, position -R^T t; then model -> Blender world.
    rot = MODEL_TO_BLENDER @ camera.rotation.T
    pos = MODEL_TO_BLENDER @ (-camera.rotation.T @ camera.translation)
    matrix = np.eye(4)
    matrix[:3, :3], matrix[:3, 3] = rot, pos
    from mathutils import Matrix

    cam.matrix_world = Matrix(matrix.tolist())


def _set_lights(bpy, rig: dict) -> None:
    scene = bpy.context.scene
    for obj in [o for o in scene.objects if o.type == "LIGHT"]:
        bpy.data.objects.remove(obj)
    from mathutils import Vector

    for i, sun in enumerate(rig["suns"]):
        data = bpy.data.lights.new(f"sun{i}", "SUN")
        data.energy = sun["strength"]
        data.angle = math.radians(sun["angle_deg"])
        data.color = sun["colour"]
        obj = bpy.data.objects.new(f"sun{i}", data)
        scene.collection.objects.link(obj)
        towards = MODEL_TO_BLENDER @ np.asarray(sun["direction"], float)
        # A sun shines along its local -Z: point -Z away from the light direction.
        obj.rotation_euler = Vector(towards.tolist()).to_track_quat("Z", "Y").to_euler()
    bg = scene.world.node_tree.nodes["Background"]
    bg.inputs["Color"].default_value = (*rig["world_colour"], 1.0)
    bg.inputs["Strength"].default_value = 1.0
