"""One camera per photo the head was fitted to, and switching between them ("use view").

Each view camera is a child of the head with the photo as its background. What switching needs
is stored on the objects as custom properties, so it survives saving and reopening the .blend
and needs no Python-side state:

==========================  ===========================================================
camera ``hrn_view_index``   index of the photo in ``FaceReconstruction.views`` (-1: none)
camera ``hrn_view_label``   text for the UI, e.g. ``"2: IMG_0042"``
camera ``hrn_resolution``   (width, height) of the photo in pixels = render size
camera ``hrn_expression``   {shape key name: value} that poses the head as in this photo
head ``hrn_reference_view`` ``hrn_view_index`` of the camera the head's Basis was posed for
==========================  ===========================================================

The Basis already wears the reference photo's expression (``FaceReconstruction.vertices``), so
a view's key values are its expression weights minus the reference's; they can be negative.
"""
import math
import os
from pathlib import Path
from typing import Optional

import bpy
import numpy as np

from ..engine_api import result as engine_result
from . import camera as camera_builder, controls, images
from .names import find_unused_name

VIEW_INDEX = "hrn_view_index"
VIEW_LABEL = "hrn_view_label"
RESOLUTION = "hrn_resolution"
EXPRESSION = "hrn_expression"
REFERENCE_VIEW = "hrn_reference_view"
NO_VIEW = -1  # a camera made from ``result.camera`` when no view record carries it

_SLIDER_LIMIT = 10.0  # Blender's bound on shape key slider_min / slider_max


def add_view_cameras(head: bpy.types.Object, result: "engine_result.FaceReconstruction",
                     base: str, photo: Optional[str] = None) -> list[bpy.types.Object]:
    """Create (unlinked) one camera per used view, parented to ``head``; return them in view order.

    A single camera is named ``"<base> camera"``, several ``"<base> camera <n> (<photo stem>)"``
    with n the photo's 1-based position among the photos given. Each shows its own photo (when
    the file exists) as background. ``photo`` replaces the reference view's photo path. Widens the
    expression keys' slider ranges so that every view's values fit.
    """
    shown = [(i, view) for i, view in enumerate(result.views) if view.used and view.camera is not None]
    reference = next((i for i, view in shown if _same_camera(view.camera, result.camera)), None)
    if reference is None:  # no record carries the result's camera (e.g. no views): add it first
        reference = NO_VIEW
        shown.insert(0, (NO_VIEW, engine_result.ViewRecord(
            image_path="", used=True, camera=result.camera, expression=result.expression)))
    head[REFERENCE_VIEW] = reference
    cameras, poses = [], []
    for index, view in shown:
        path = photo if photo and index == reference else view.image_path
        stem = Path(path).stem if path else "photo"
        number = f" {index + 1} ({stem})" if len(shown) > 1 else ""
        name = find_unused_name(bpy.data.objects.keys(), f"{base} camera{number}")
        image = images.photo_image(f"{base} photo{number}", path) if os.path.isfile(path) else None
        cam = camera_builder.build_camera(view.camera, name, image)
        cam.parent = head  # moving the head keeps the photo match
        cam[VIEW_INDEX] = index
        cam[VIEW_LABEL] = f"{index + 1}: {stem}" if index != NO_VIEW else stem
        cam[RESOLUTION] = list(view.camera.image_size)
        poses.append(_key_values(result, view))
        cam[EXPRESSION] = poses[-1]
        cameras.append(cam)
    _fit_slider_ranges(head, poses)
    return cameras


def is_view_camera(obj: Optional[bpy.types.Object]) -> bool:
    """True for cameras made by :func:`add_view_cameras` (whose head still exists)."""
    return (obj is not None and obj.type == "CAMERA" and VIEW_INDEX in obj
            and controls.is_head(obj.parent))


def head_of(obj: Optional[bpy.types.Object]) -> Optional[bpy.types.Object]:
    """The head ``obj`` is, or whose view camera it is; None otherwise."""
    if controls.is_head(obj):
        return obj
    return obj.parent if is_view_camera(obj) else None


def view_cameras(head: bpy.types.Object) -> list[bpy.types.Object]:
    """The head's view cameras, in photo order (the camera without a view record first)."""
    return sorted((c for c in head.children if is_view_camera(c)), key=lambda c: c[VIEW_INDEX])


def reference_camera(head: bpy.types.Object) -> bpy.types.Object:
    """The view camera the head's Basis was fitted for (the one shown after reconstruction)."""
    cameras = view_cameras(head)
    return next((c for c in cameras if c[VIEW_INDEX] == head.get(REFERENCE_VIEW)), cameras[0])


def use_view(scene: bpy.types.Scene, camera: bpy.types.Object) -> None:
    """Look through ``camera`` at its photo: make it the scene camera, set the render size to
    the photo's, and pose the head's expression keys as in that photo.

    Keys the user deleted or renamed are skipped.
    """
    scene.camera = camera
    scene.render.resolution_x, scene.render.resolution_y = camera[RESOLUTION]
    scene.render.pixel_aspect_x = scene.render.pixel_aspect_y = 1.0
    blocks = camera.parent.data.shape_keys.key_blocks
    for name, value in camera[EXPRESSION].items():
        if name in blocks:
            blocks[name].value = value


def _key_values(result: "engine_result.FaceReconstruction",
                view: "engine_result.ViewRecord") -> dict[str, float]:
    """{expression key: value} posing the reference-posed Basis as in ``view``; a view without
    expression weights counts as the reference's expression."""
    weights = view.expression if len(view.expression) else result.expression
    delta = np.asarray(weights, np.float64) - np.asarray(result.expression, np.float64)
    return {name: float(v) for name, v in zip(result.expression_names, delta)}


def _fit_slider_ranges(head: bpy.types.Object, poses: list[dict[str, float]]) -> None:
    """Widen each expression key's slider range (default 0..1) to whole units covering every
    view's value, so no view's pose is clamped; single-view heads keep the default range."""
    blocks = head.data.shape_keys.key_blocks
    for name in poses[0]:
        low = min(0.0, *(p[name] for p in poses))
        high = max(1.0, *(p[name] for p in poses))
        block = blocks[name]
        block.slider_min = max(-_SLIDER_LIMIT, float(math.floor(low)))
        block.slider_max = min(_SLIDER_LIMIT, float(math.ceil(high)))


def _same_camera(a: "engine_result.Camera", b: "engine_result.Camera") -> bool:
    return a.to_json() == b.to_json()

