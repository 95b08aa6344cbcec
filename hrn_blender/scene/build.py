"""Scene building entry point: one FaceReconstruction -> one new head object (+ its cameras)."""
from typing import Optional

import bpy

from ..engine_api import conventions, result as engine_result
from . import controls, images, material, mesh, modifiers, shape_keys, views
from .names import find_unused_name


def build_head(result: "engine_result.FaceReconstruction", name: str,
               collection: bpy.types.Collection, photo: Optional[str] = None) -> bpy.types.Object:
    """Create the head object for ``result`` and link it (and its cameras) into ``collection``.

    Args:
        result: the engine's reconstruction (model space, metres).
        name: wanted object name, usually the photo's file stem; a free variant
            (``name.001``, ...) is used when taken, so nothing existing is renamed or replaced.
        collection: where the new objects go.
        photo: photo shown behind the reference camera (the one of ``result.camera``) instead
            of that view's image. Photos are packed into the .blend like every other image.
    Returns:
        The head object (mesh with UVs and shape keys, detail modifiers, material, detail
        sliders). Its children are one camera per used photo (scene/views.py), each with that
        photo as background; ``views.reference_camera(head)`` is the one the head is posed for.
    Everything is linked only once complete, so a failure never leaves a half-built object in
    the scene.
    """
    base = find_unused_name(bpy.data.objects.keys(), name)
    coarse = conventions.model_to_blender(result.vertices)
    head_mesh = mesh.build_mesh(base, coarse, result.faces, result.uvs, result.face_uvs)
    head = bpy.data.objects.new(base, head_mesh)
    shape_keys.add_shape_keys(head, coarse, conventions.model_to_blender(result.detailed_vertices),
                              result.expression_names,
                              conventions.model_to_blender(result.expression_deltas))

    albedo = images.albedo_image(f"{base} albedo", result.albedo)
    displacement, scale = images.displacement_image(f"{base} displacement", result.displacement_map)
    head_material = material.build_material(base, albedo, displacement, scale)
    head_mesh.materials.append(head_material)
    modifiers.add_detail_modifiers(head, displacement, scale)
    controls.add_detail_controls(head, head_material, scale)

    cameras = views.add_view_cameras(head, result, base, photo)

    collection.objects.link(head)
    for cam in cameras:
        collection.objects.link(cam)
    return head
