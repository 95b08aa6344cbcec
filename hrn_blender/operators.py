"""Operators: reconstruct (modal in the UI, blocking in background/scripts), cancel, the
reference-photo list editing, and switching the view to one photo's camera."""
from pathlib import Path
from typing import Optional

import bpy

from .engine_api import progress
from .preferences import get_preferences

TIMER_INTERVAL_S = 0.1


class HRN_OT_reconstruct(bpy.types.Operator):
    """Reconstruct a detailed 3D head from the photo (and reference photos)"""

    bl_idname = "hrn.reconstruct"
    bl_label = "Reconstruct"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return not context.window_manager.hrn.running

    # bl_pkg's split: invoked in a UI session -> modal with a timer; executed (scripts) or in
    # background mode -> the same run, blocking.
    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        if bpy.app.background or context.window is None:
            return self.execute(context)
        run = self._start(context)
        if run is None:
            return {"CANCELLED"}
        self._run = run
        wm = context.window_manager
        self._timer = wm.event_timer_add(TIMER_INTERVAL_S, window=context.window)
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        state = context.window_manager.hrn
        if event.type == "ESC" or state.cancel_requested:
            self._run.cancel()
            return self._finish(context, progress.CANCELLED)
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        for message in self._run.poll():
            self._show(context, message)
            if isinstance(message, (progress.DoneEvent, progress.ErrorEvent)):
                return self._finish(context, message)
        return {"PASS_THROUGH"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        run = self._start(context)
        if run is None:
            return {"CANCELLED"}
        self._run = run

        def on_event(message) -> bool:
            self._show(context, message)
            return not context.window_manager.hrn.cancel_requested

        return self._finish(context, run.wait(on_event))

    # ------------------------------------------------------------------ steps
    def _start(self, context: bpy.types.Context):
        """Validate the settings and start the engine; None (after a report) if they are unusable."""
        from .worker import EngineRun, ReconstructionRequest

        settings = context.scene.hrn
        photo = bpy.path.abspath(settings.photo)
        if not settings.photo:
            self.report({"ERROR"}, "Choose a photo first (HRN tab > Photo).")
            return None
        references = [bpy.path.abspath(r.filepath) for r in settings.references if r.filepath]
        weights = None
        if settings.model_source == "OFFICIAL":
            prefs = get_preferences(context)
            weights = bpy.path.abspath(prefs.weights_dir) if prefs and prefs.weights_dir else ""
            if not weights:
                self.report({"ERROR"}, "Set the official HRN weights folder in the extension "
                                       "preferences, or choose the built-in model.")
                return None
        request = ReconstructionRequest(photos=(photo, *references), device=_device(context),
                                        quality=settings.quality.lower(), weights_dir=weights)
        state = context.window_manager.hrn
        state.running, state.progress, state.cancel_requested = True, 0.0, False
        state.stage = progress.Stage.STARTING
        self._photo = photo
        self._timer = None
        return EngineRun(request)

    def _show(self, context: bpy.types.Context, message) -> None:
        """Mirror one engine message into the UI (progress) or a report (warnings)."""
        state = context.window_manager.hrn
        if isinstance(message, progress.ProgressEvent):
            state.progress, state.stage = message.fraction, message.stage
            if context.window is not None:
                context.workspace.status_text_set(f"HRN: {message.stage} ({message.fraction:.0%})")
            elif bpy.app.background:
                print(f"HRN: {message.stage} ({message.fraction:.0%})", flush=True)
            _redraw(context)
        elif isinstance(message, progress.WarningEvent):
            self.report({"WARNING"}, message.message)

    def _finish(self, context: bpy.types.Context, final) -> set[str]:
        """Build the scene after ``done``; report errors. The scene is only touched on success."""
        from .engine_api import errors, result
        from .scene import views
        from .scene.build import build_head

        try:
            if isinstance(final, progress.ErrorEvent):
                level = {"INFO"} if final.cancelled else {"ERROR"}
                self.report(level, final.message)
                return {"CANCELLED"}
            try:
                reconstruction = result.FaceReconstruction.load(final.result)
            except errors.EngineError as err:
                self.report({"ERROR"}, str(err))
                return {"CANCELLED"}
            # Each camera shows its view's photo: the paths the engine was given, made absolute.
            head = build_head(reconstruction, Path(self._photo).stem, context.scene.collection)
            camera = views.reference_camera(head)
            if context.scene.camera is None:
                views.use_view(context.scene, camera)
            else:
                self.report({"INFO"}, f"Added '{camera.name}'; use HRN > Views (or make it the "
                                      "active camera) to see the head over the photo.")
            for obj in context.view_layer.objects.selected:
                obj.select_set(False)
            head.select_set(True)
            context.view_layer.objects.active = head
            return {"FINISHED"}
        finally:
            self._run.cleanup()
            state = context.window_manager.hrn
            state.running, state.cancel_requested, state.stage = False, False, ""
            if self._timer is not None:
                context.window_manager.event_timer_remove(self._timer)
            if context.window is not None:
                context.workspace.status_text_set(None)
            _redraw(context)


class HRN_OT_cancel(bpy.types.Operator):
    """Stop the running reconstruction; the scene stays as it was"""

    bl_idname = "hrn.cancel"
    bl_label = "Cancel"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return context.window_manager.hrn.running

    def execute(self, context: bpy.types.Context) -> set[str]:
        context.window_manager.hrn.cancel_requested = True
        return {"FINISHED"}


class HRN_OT_reference_add(bpy.types.Operator):
    """Add a reference photo of the same person"""

    bl_idname = "hrn.reference_add"
    bl_label = "Add Reference Photo"
    bl_options = {"REGISTER", "UNDO"}

    filepath: bpy.props.StringProperty(subtype="FILE_PATH")
    filter_image: bpy.props.BoolProperty(default=True, options={"HIDDEN", "SKIP_SAVE"})
    filter_folder: bpy.props.BoolProperty(default=True, options={"HIDDEN", "SKIP_SAVE"})

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = context.scene.hrn
        settings.references.add().filepath = self.filepath
        settings.reference_index = len(settings.references) - 1
        return {"FINISHED"}


class HRN_OT_reference_remove(bpy.types.Operator):
    """Remove the selected reference photo from the list"""

    bl_idname = "hrn.reference_remove"
    bl_label = "Remove Reference Photo"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return len(context.scene.hrn.references) > 0

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = context.scene.hrn
        settings.references.remove(settings.reference_index)
        settings.reference_index = max(0, min(settings.reference_index, len(settings.references) - 1))
        return {"FINISHED"}


class HRN_OT_reference_move(bpy.types.Operator):
    """Move the selected reference photo up or down"""

    bl_idname = "hrn.reference_move"
    bl_label = "Move Reference Photo"
    bl_options = {"REGISTER", "UNDO"}

    direction: bpy.props.EnumProperty(items=(("UP", "Up", ""), ("DOWN", "Down", "")))

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = context.scene.hrn
        target = settings.reference_index + (-1 if self.direction == "UP" else 1)
        if not 0 <= target < len(settings.references):
            return {"CANCELLED"}
        settings.references.move(settings.reference_index, target)
        settings.reference_index = target
        return {"FINISHED"}


class HRN_OT_use_view(bpy.types.Operator):
    """Look through this photo's camera: the head over the photo, posed with its expression"""

    bl_idname = "hrn.use_view"
    bl_label = "Use View"
    bl_options = {"REGISTER", "UNDO"}

    camera: bpy.props.StringProperty(
        name="Camera", description="View camera of a head (default: the active object)")

    def execute(self, context: bpy.types.Context) -> set[str]:
        from .scene import views

        camera = bpy.data.objects.get(self.camera) if self.camera else context.object
        if not views.is_view_camera(camera):
            what = f"'{self.camera}'" if self.camera else "The active object"
            self.report({"ERROR"}, f"{what} is not the camera of an HRN head's photo.")
            return {"CANCELLED"}
        views.use_view(context.scene, camera)
        return {"FINISHED"}


def _device(context: bpy.types.Context) -> str:
    device = context.scene.hrn.device
    if device == "DEFAULT":
        prefs = get_preferences(context)
        device = prefs.default_device if prefs is not None else "AUTO"
    return device.lower()


def _redraw(context: bpy.types.Context) -> None:
    screen: Optional[bpy.types.Screen] = context.screen
    if screen is None:
        return
    for area in screen.areas:
        if area.type == "VIEW_3D":
            area.tag_redraw()


classes = (HRN_OT_reconstruct, HRN_OT_cancel, HRN_OT_reference_add, HRN_OT_reference_remove,
           HRN_OT_reference_move, HRN_OT_use_view)
