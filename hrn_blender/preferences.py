"""Extension preferences: where the official HRN weights are, and the default device."""
from typing import Optional

import bpy

DEVICE_ITEMS = (
    ("AUTO", "Auto", "CUDA when available, otherwise the CPU"),
    ("CPU", "CPU", "Run on the CPU (works everywhere, slower)"),
    ("CUDA", "CUDA", "Run on an NVIDIA GPU (needs a CUDA build of torch)"),
)


class HRN_AddonPreferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    weights_dir: bpy.props.StringProperty(
        name="Official HRN Weights",
        description="Folder holding the official HRN weights (used when Model is 'Official HRN')",
        subtype="DIR_PATH",
    )
    default_device: bpy.props.EnumProperty(
        name="Default Device", items=DEVICE_ITEMS, default="AUTO",
        description="Device used when a scene's Device is 'Default'",
    )

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        layout.prop(self, "weights_dir")
        layout.prop(self, "default_device")


def get_preferences(context: bpy.types.Context) -> Optional[HRN_AddonPreferences]:
    """The preferences, or None when the package is registered without being an enabled add-on
    (e.g. imported directly by tests)."""
    addon = context.preferences.addons.get(__package__)
    return addon.preferences if addon is not None else None


classes = (HRN_AddonPreferences,)
