"""Scene building entry point: one FaceReconstruction -> one new head object (+ its cameras)."""
from typing import Optional

import bpy
import numpy as np

from ..engine_api import conventions, result as engine_result
from . import controls, images, material, mesh, modifiers, parts, shape_keys, views
from .names import find_unused_name


#: Vertex group of the skin: the Displace modifier moves only these vertices.
SKIN_GROUP = "Skin"


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
        The head object (mesh with UVs and shape keys, detail modifiers, one material per
        part: the skin's with albedo and displacement, eyes, teeth, ... procedural; detail
        sliders). Its children are one camera per used photo (scene/views.py), each with that
        photo as background; ``views.reference_camera(head)`` is the one the head is posed for.
    Everything is linked only once complete, so a failure never leaves a half-built object in
    the scene.
    """
    base = find_unused_name(bpy.data.objects.keys(), name)
    coarse = conventions.model_to_blender(result.vertices)
    head_mesh = mesh.build_mesh(base, coarse, result.faces, result.uvs, result.face_uvs,
                                result.face_material)
    head = bpy.data.objects.new(base, head_mesh)
    shape_keys.add_shape_keys(head, coarse, conventions.model_to_blender(result.detailed_vertices),
                              result.expression_names,
                              conventions.model_to_blender(result.expression_deltas))

    albedo = images.albedo_image(f"{base} albedo", result.albedo)
    displacement, scale = images.displacement_image(f"{base} displacement", result.displacement_map)
    skin_material = material.build_material(base, albedo, displacement, scale)
    for part in result.material_names:   # slots in the order of the engine's material indices
        head_mesh.materials.append(skin_material if part == "skin" else parts.part_material(
            f"{base} {part}", part, result.eyes.iris_srgb, result.eyes.sclera_srgb,
            result.eyes.iris_scale))
    skin = head.vertex_groups.new(name=SKIN_GROUP)
    skin_faces = result.faces[result.material_faces("skin")]
    skin.add(np.unique(skin_faces[skin_faces >= 0]).tolist(), 1.0, "REPLACE")
    modifiers.add_detail_modifiers(head, displacement, scale, SKIN_GROUP)
    controls.add_detail_controls(head, skin_material, scale)

    cameras = views.add_view_cameras(head, result, base, photo)

    collection.objects.link(head)
    for cam in cameras:
        collection.objects.link(cam)
    return head
