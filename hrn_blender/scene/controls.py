"""Detail sliders: custom properties on the head object that drive the scene through drivers.

Custom properties are undoable and animatable, and drivers re-evaluate on every frame and
render, so no modal code or update callback is involved.
"""
import bpy

from .material import DISPLACEMENT_NODE, TINT_COLOR_INPUT, TINT_NODE
from .modifiers import DISPLACE
from .shape_keys import MID_FREQUENCY

MID_STRENGTH = "hrn_mid_strength"
HIGH_STRENGTH = "hrn_high_strength"
ALBEDO_TINT = "hrn_albedo_tint"
DISPLACEMENT_SCALE = "hrn_displacement_scale"


def is_head(obj: bpy.types.Object | None) -> bool:
    """True for objects made by :func:`scene.build.build_head`."""
    return obj is not None and MID_STRENGTH in obj


def add_detail_controls(obj: bpy.types.Object, material: bpy.types.Material, scale: float) -> None:
    """Add the slider properties to ``obj`` and the drivers they feed.

    ``hrn_mid_strength`` (0-2) -> value of the mid-frequency shape key;
    ``hrn_high_strength`` (0-2) -> Displace modifier strength and Displacement node scale,
    both ``strength * scale`` metres; ``hrn_albedo_tint`` (RGB) multiplies the albedo.
    """
    _slider(obj, MID_STRENGTH, 1.0, "Mid-frequency detail (wrinkle folds, shape) strength")
    _slider(obj, HIGH_STRENGTH, 1.0, "High-frequency detail (pores, fine wrinkles) strength")
    obj[ALBEDO_TINT] = (1.0, 1.0, 1.0)
    obj.id_properties_ui(ALBEDO_TINT).update(subtype="COLOR", min=0.0, max=2.0, soft_min=0.0,
                                             soft_max=1.0, description="Colour the albedo is multiplied by")
    obj[DISPLACEMENT_SCALE] = scale
    obj.id_properties_ui(DISPLACEMENT_SCALE).update(
        description="Metres per unit of the displacement map, set by the engine")

    key = obj.data.shape_keys
    key.key_blocks[MID_FREQUENCY].slider_max = 2.0
    _drive(key, f'key_blocks["{MID_FREQUENCY}"].value', obj, f'["{MID_STRENGTH}"]', "var")
    strength = f"var * {scale!r}"
    _drive(obj, f'modifiers["{DISPLACE}"].strength', obj, f'["{HIGH_STRENGTH}"]', strength)
    tree = material.node_tree
    _drive(tree, f'nodes["{DISPLACEMENT_NODE}"].inputs["Scale"].default_value', obj,
           f'["{HIGH_STRENGTH}"]', strength)
    tint = tree.nodes[TINT_NODE].inputs[TINT_COLOR_INPUT].path_from_id("default_value")
    for channel in range(3):
        _drive(tree, tint, obj, f'["{ALBEDO_TINT}"][{channel}]', "var", index=channel)


def _slider(obj: bpy.types.Object, name: str, value: float, description: str) -> None:
    obj[name] = value
    obj.id_properties_ui(name).update(min=0.0, max=2.0, soft_min=0.0, soft_max=2.0,
                                      description=description)


def _drive(owner: bpy.types.ID, path: str, source: bpy.types.Object, source_path: str,
           expression: str, index: int = -1) -> None:
    """``owner.path[index] = expression(var)`` with ``var = source.source_path``.

    Expressions stay within Blender's simple-expression subset (no Python needed), so they
    evaluate even where auto-running Python scripts is disabled.
    """
    fcurve = owner.driver_add(path, index)
    driver = fcurve.driver
    driver.type = "SCRIPTED"
    driver.expression = expression
    var = driver.variables.new()
    var.name = "var"
    var.type = "SINGLE_PROP"
    var.targets[0].id_type = "OBJECT"
    var.targets[0].id = source
    var.targets[0].data_path = source_path
