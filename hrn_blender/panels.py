"""The "HRN" tab of the 3D viewport sidebar: reconstruction settings, the detail sliders and
the photo views of the selected head."""
import os

import bpy
import bpy.utils.previews

from .preferences import get_preferences
from .scene import controls, views

_previews = None  # photo thumbnails; a preview collection adds no data-blocks to the file


class HRN_UL_references(bpy.types.UIList):
    def draw_item(self, context, layout, data, item, icon, active_data, active_property, index=0):
        name = os.path.basename(bpy.path.abspath(item.filepath)) or "(no file)"
        layout.label(text=name, icon="IMAGE_DATA")


class _Sidebar:
    """Where every HRN panel lives: the 3D viewport's sidebar (N), tab "HRN"."""

    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "HRN"


class HRN_PT_reconstruct(_Sidebar, bpy.types.Panel):
    bl_idname = "HRN_PT_reconstruct"
    bl_label = "Reconstruct"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        settings = context.scene.hrn
        state = context.window_manager.hrn
        layout.prop(settings, "photo", text="")
        _draw_preview(layout, bpy.path.abspath(settings.photo))

        layout.label(text="Reference Photos (multi-view)")
        row = layout.row()
        row.template_list("HRN_UL_references", "", settings, "references", settings,
                          "reference_index", rows=3)
        buttons = row.column(align=True)
        buttons.operator("hrn.reference_add", icon="ADD", text="")
        buttons.operator("hrn.reference_remove", icon="REMOVE", text="")
        buttons.separator()
        buttons.operator("hrn.reference_move", icon="TRIA_UP", text="").direction = "UP"
        buttons.operator("hrn.reference_move", icon="TRIA_DOWN", text="").direction = "DOWN"

        col = layout.column(align=True)
        col.prop(settings, "model_source")
        prefs = get_preferences(context)
        if settings.model_source == "OFFICIAL" and not (prefs and prefs.weights_dir):
            col.label(text="Set the weights folder in the preferences", icon="ERROR")
        col.prop(settings, "device")
        col.prop(settings, "quality")

        if state.running:
            row = layout.row(align=True)
            text = f"{state.stage} {state.progress:.0%}"
            if hasattr(row, "progress"):  # UILayout.progress: Blender 4.0+
                row.progress(factor=state.progress, type="BAR", text=text)
            else:
                row.label(text=text)
            row.operator("hrn.cancel", icon="CANCEL", text="")
        else:
            layout.operator("hrn.reconstruct", icon="USER")


class HRN_PT_detail(_Sidebar, bpy.types.Panel):
    bl_idname = "HRN_PT_detail"
    bl_label = "Head Detail"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return controls.is_head(context.object)

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        obj = context.object
        col = layout.column(align=True)
        col.prop(obj, f'["{controls.MID_STRENGTH}"]', text="Mid-frequency", slider=True)
        col.prop(obj, f'["{controls.HIGH_STRENGTH}"]', text="High-frequency", slider=True)
        layout.prop(obj, f'["{controls.ALBEDO_TINT}"]', text="Albedo Tint")


class HRN_PT_views(_Sidebar, bpy.types.Panel):
    """One button per photo of the selected head (or of its camera): looks through that photo's
    camera with the head posed as in it; arrows step to the previous / next photo."""

    bl_idname = "HRN_PT_views"
    bl_label = "Views"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return views.head_of(context.object) is not None

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        cameras = views.view_cameras(views.head_of(context.object))
        if not cameras:
            layout.label(text="This head has no photo cameras left")
            return
        current = cameras.index(context.scene.camera) if context.scene.camera in cameras else -1
        row = layout.row(align=True)
        back = row.row(align=True)
        back.enabled = current > 0
        back.operator("hrn.use_view", icon="TRIA_LEFT", text="").camera = cameras[max(current - 1, 0)].name
        row.label(text=f"Photo {current + 1} of {len(cameras)}" if current >= 0 else
                  f"{len(cameras)} photos (none in use)")
        forward = row.row(align=True)
        forward.enabled = current < len(cameras) - 1
        forward.operator("hrn.use_view", icon="TRIA_RIGHT",
                         text="").camera = cameras[min(current + 1, len(cameras) - 1)].name
        col = layout.column(align=True)
        for i, cam in enumerate(cameras):
            col.operator("hrn.use_view", text=cam[views.VIEW_LABEL], icon="OUTLINER_OB_CAMERA",
                         depress=i == current).camera = cam.name


def _draw_preview(layout: bpy.types.UILayout, path: str) -> None:
    if _previews is None or not os.path.isfile(path):
        return
    preview = _previews.get(path) or _previews.load(path, path, "IMAGE")
    layout.template_icon(icon_value=preview.icon_id, scale=6.0)


def open_previews() -> None:
    global _previews
    _previews = bpy.utils.previews.new()


def close_previews() -> None:
    global _previews
    if _previews is not None:
        bpy.utils.previews.remove(_previews)
        _previews = None


classes = (HRN_UL_references, HRN_PT_reconstruct, HRN_PT_detail, HRN_PT_views)
