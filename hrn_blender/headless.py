"""One command from photos (or a saved result) to a .blend, without the UI.

    python -m hrn_blender.headless PHOTO [PHOTO ...] --blend OUT.blend [--render OUT.png]
                                   [--samples N] [any option of python -m engine reconstruct]
    python -m hrn_blender.headless RESULT_DIR --blend OUT.blend [--render OUT.png] [--samples N]

Given photos (or ``--example``), it first runs the engine's reconstruction in this process,
through the engine's own command-line code (same options, progress and errors; the result is
saved to ``--out``); given a folder written by ``python -m engine reconstruct``, it loads it.
Then it builds the scene with the same code as the extension (scene.build.build_head), in a
fresh empty scene with a simple studio light, saves it and optionally renders it with Cycles,
saying what it does at each step. Needs the ``bpy`` module.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import bpy

from .engine_api import cli as engine_cli, errors, result as engine_result
from .scene import views
from .scene.build import build_head


def build_scene(result: "engine_result.FaceReconstruction", name: str = "Head",
                photo: Optional[str] = None) -> bpy.types.Object:
    """Add the head to the current scene, look through its reference camera and light it if
    unlit."""
    scene = bpy.context.scene
    head = build_head(result, name, scene.collection, photo=photo)
    views.use_view(scene, views.reference_camera(head))
    if scene.world is None:
        add_studio_light(scene, head)
    return head


def add_studio_light(scene: bpy.types.Scene, head: bpy.types.Object) -> None:
    """A grey world plus a key light from above the camera's left, so relief reads in renders."""
    world = bpy.data.worlds.new("HRN studio")
    if bpy.app.version < (5, 0, 0):  # node worlds are the only kind from 5.0 on
        world.use_nodes = True
    background = world.node_tree.nodes["Background"]
    background.inputs["Color"].default_value = (0.35, 0.35, 0.38, 1.0)
    scene.world = world
    light = bpy.data.lights.new("HRN key light", "SUN")
    light.energy = 3.0
    light.angle = 0.1
    key = bpy.data.objects.new("HRN key light", light)
    camera = scene.camera.matrix_world
    # Aim along the camera's view, tilted down and to the side (Blender lights shine along -Z).
    key.rotation_euler = (camera.to_quaternion().to_euler())
    key.rotation_euler.x -= 0.5
    key.rotation_euler.z -= 0.6
    scene.collection.objects.link(key)


def render(path: str, samples: int = 32, percentage: int = 100, denoise: bool = False) -> None:
    """Render the current scene with Cycles on the CPU to a PNG file."""
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = samples
    scene.cycles.use_denoising = denoise
    scene.render.resolution_percentage = percentage
    scene.render.film_transparent = True
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGBA"
    scene.render.filepath = str(Path(path).resolve())
    bpy.ops.render.render(write_still=True)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hrn_blender.headless",
        description="Build (and render) the HRN head scene from photos, reconstructed first with "
                    "the engine, or from a result folder the engine wrote.")
    engine_cli.add_reconstruct_arguments(
        parser, photos_help="photos of a face to reconstruct first (see python -m engine reconstruct "
                            "--help), or one result folder written by it")
    parser.add_argument("--blend", required=True, help="where to save the .blend")
    parser.add_argument("--render", help="also render the camera view with Cycles to this PNG")
    parser.add_argument("--samples", type=int, default=32, help="Cycles samples (default 32)")
    args = parser.parse_args(argv)
    rep = engine_cli.Reporter(args.progress)
    return engine_cli.run(rep, lambda: _blend_command(args, rep))


def _blend_command(args: argparse.Namespace, rep: "engine_cli.Reporter") -> Path:
    """Reconstruct (photos) or load (a result folder), then build, save and render; return the
    result folder."""
    if len(args.photos) == 1 and Path(args.photos[0]).is_dir():
        if args.example or args.out:
            raise errors.EngineError(f"{args.photos[0]!r} is a result folder: --example and --out "
                                     "apply only when reconstructing from photos. Leave them out.")
        folder = Path(args.photos[0])
    else:
        folder = engine_cli.reconstruct_command(args, rep)
    result = engine_result.FaceReconstruction.load(folder)
    start = time.perf_counter()
    rep.say("Building the Blender scene...")
    bpy.ops.wm.read_factory_settings(use_empty=True)
    build_scene(result, _name(result))
    blend = Path(args.blend).resolve()
    rep.say(f"Saving {blend} (images packed)...")
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    rep.say(f"Wrote {blend} ({time.perf_counter() - start:.1f} s)")
    if args.render:
        start = time.perf_counter()
        size = bpy.context.scene.render
        rep.say(f"Rendering with Cycles on the CPU: {args.samples} samples, "
                f"{size.resolution_x}x{size.resolution_y} px...")
        render(args.render, samples=args.samples)
        rep.say(f"Wrote {Path(args.render).resolve()} ({time.perf_counter() - start:.1f} s)")
    return folder


def _name(result: "engine_result.FaceReconstruction") -> str:
    used = [v for v in result.views if v.used and v.image_path]
    return Path(used[0].image_path).stem if used else "Head"


if __name__ == "__main__":
    sys.exit(main())
