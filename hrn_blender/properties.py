"""Settings stored with the scene, and run state kept on the window manager (never saved)."""
import bpy

from .preferences import DEVICE_ITEMS


class HRN_ReferenceImage(bpy.types.PropertyGroup):
    """A further photo of the same person, used for multi-view reconstruction."""

    filepath: bpy.props.StringProperty(name="Photo", subtype="FILE_PATH")


class HRN_SceneSettings(bpy.types.PropertyGroup):
    """What to reconstruct and how (``scene.hrn``)."""

    photo: bpy.props.StringProperty(
        name="Photo", subtype="FILE_PATH", description="Photo of a face (JPEG, PNG, WebP, TIFF)")
    references: bpy.props.CollectionProperty(type=HRN_ReferenceImage)
    reference_index: bpy.props.IntProperty(name="Active Reference", min=0)
    model_source: bpy.props.EnumProperty(
        name="Model",
        items=(("BUILTIN", "Built-in", "The offline head model that ships with the extension"),
               ("OFFICIAL", "Official HRN", "The official HRN weights (folder set in the preferences)")),
        default="BUILTIN",
    )
    device: bpy.props.EnumProperty(
        name="Device",
        items=(("DEFAULT", "Default", "The default device from the extension preferences"),
               *DEVICE_ITEMS),
        default="DEFAULT",
    )
    quality: bpy.props.EnumProperty(
        name="Quality",
        items=(("FAST", "Fast", "Fewer optimisation steps, smaller maps"),
               ("HIGH", "High", "More optimisation steps, larger maps (slower)")),
        default="FAST",
    )


class HRN_RunState(bpy.types.PropertyGroup):
    """Progress of the running reconstruction (``window_manager.hrn``)."""

    running: bpy.props.BoolProperty(name="Running")
    progress: bpy.props.FloatProperty(name="Progress", subtype="FACTOR", min=0.0, max=1.0)
    stage: bpy.props.StringProperty(name="Stage")
    cancel_requested: bpy.props.BoolProperty(name="Cancel Requested")


classes = (HRN_ReferenceImage, HRN_SceneSettings, HRN_RunState)


def attach() -> None:
    bpy.types.Scene.hrn = bpy.props.PointerProperty(type=HRN_SceneSettings)
    bpy.types.WindowManager.hrn = bpy.props.PointerProperty(type=HRN_RunState)


def detach() -> None:
    del bpy.types.WindowManager.hrn
    del bpy.types.Scene.hrn
