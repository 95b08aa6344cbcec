"""The photo's camera as a Blender camera, with the photo as its background image."""
from typing import Optional

import bpy
import numpy as np
from mathutils import Matrix

from ..engine_api import conventions, result

Camera = result.Camera

SENSOR_WIDTH_MM = 36.0


def camera_matrix_world(camera: Camera) -> np.ndarray:
    """``[4, 4]`` camera-to-world matrix in Blender space for a head placed by model_to_blender.

    The engine maps model points p to camera space as ``R p + t`` (OpenGL-style camera, which is
    also Blender's camera-local frame), and the head sits in Blender at ``M p``
    (``conventions.model_to_blender``). So world -> camera is ``R M^T w + t`` and the camera's
    pose is its inverse: rotation ``M R^T``, location ``-M R^T t``.
    """
    rotation = conventions.model_to_blender(camera.rotation).T  # (R M^T)^T = M R^T
    location = conventions.model_to_blender(-(camera.translation @ camera.rotation))  # -M R^T t
    matrix = np.eye(4)
    matrix[:3, :3] = rotation
    matrix[:3, 3] = location
    return matrix


def lens_shift(camera: Camera) -> tuple[float, float]:
    """Blender (shift_x, shift_y) putting the principal point where the photo has it.

    With the sensor fitted to the width, Blender measures shifts in image widths; shift_x > 0
    moves the frame right (the optical axis lands left of centre) and shift_y > 0 moves it up
    (the axis lands below centre, i.e. larger y in top-down image rows).
    """
    width, height = camera.image_size
    cx, cy = camera.principal_px
    return (width / 2.0 - cx) / width, (cy - height / 2.0) / width


def build_camera(camera: Camera, name: str, photo: Optional[bpy.types.Image] = None) -> bpy.types.Object:
    """A camera object matching ``camera`` (pose, focal length, principal point)."""
    data = bpy.data.cameras.new(name)
    data.sensor_fit = "HORIZONTAL"
    data.sensor_width = SENSOR_WIDTH_MM
    data.lens = camera.focal_length_mm(SENSOR_WIDTH_MM)
    data.shift_x, data.shift_y = lens_shift(camera)
    data.clip_start = 0.01
    data.clip_end = 100.0
    if photo is not None:
        data.show_background_images = True
        background = data.background_images.new()
        background.image = photo
        background.frame_method = "STRETCH"  # render size = photo size, so this is exact
        background.alpha = 1.0
    obj = bpy.data.objects.new(name, data)
    obj.matrix_world = Matrix(camera_matrix_world(camera).tolist())
    return obj

