"""HRN for Blender: reconstruct a detailed 3D head from photos of a face.

This module only registers; the work lives in operators.py (UI actions), worker.py (the
engine's child process) and scene/ (FaceReconstruction -> Blender data).
"""
import bpy

from . import operators, panels, preferences, properties

classes = (*preferences.classes, *properties.classes, *operators.classes, *panels.classes)


def register() -> None:
    for cls in classes:
        bpy.utils.register_class(cls)
    properties.attach()
    panels.open_previews()


def unregister() -> None:
    panels.close_previews()
    properties.detach()
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
