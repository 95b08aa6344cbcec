"""The extension as Blender sees it: registration, operators, and the engine worker protocol."""
from __future__ import annotations

import sys
import textwrap
import time
from pathlib import Path

import pytest

bpy = pytest.importorskip("bpy")

import hrn_blender  # noqa: E402
from engine.progress import DoneEvent, ErrorEvent, ProgressEvent, WarningEvent  # noqa: E402
from hrn_blender.engine_api import ENGINE_PARENT  # noqa: E402
from hrn_blender.worker import EngineRun, ReconstructionRequest  # noqa: E402


pytestmark = pytest.mark.usefixtures("registered_extension")


def test_register_unregister_round_trip():
    assert hasattr(bpy.types, "HRN_PT_reconstruct") and hasattr(bpy.types, "HRN_PT_detail")
    assert bpy.context.scene.hrn.model_source == "BUILTIN"
    assert bpy.context.window_manager.hrn.running is False
    hrn_blender.unregister()
    assert not hasattr(bpy.types, "HRN_PT_reconstruct")
    assert not hasattr(bpy.types.Scene, "hrn")
    hrn_blender.register()
    assert bpy.ops.hrn.reconstruct.poll()


def test_reference_list_add_move_remove(tmp_path):
    settings = bpy.context.scene.hrn
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        bpy.ops.hrn.reference_add(filepath=str(tmp_path / name))
    assert [Path(r.filepath).name for r in settings.references] == ["a.jpg", "b.jpg", "c.jpg"]
    settings.reference_index = 2
    bpy.ops.hrn.reference_move(direction="UP")
    assert [Path(r.filepath).name for r in settings.references] == ["a.jpg", "c.jpg", "b.jpg"]
    assert settings.reference_index == 1
    bpy.ops.hrn.reference_remove()
    assert [Path(r.filepath).name for r in settings.references] == ["a.jpg", "b.jpg"]


def test_reconstruct_without_photo_reports_and_adds_nothing():
    with pytest.raises(RuntimeError, match="Choose a photo first"):
        bpy.ops.hrn.reconstruct()
    assert len(bpy.data.objects) == 0


def test_official_model_without_weights_folder_reports(tmp_path):
    bpy.context.scene.hrn.photo = str(tmp_path / "x.jpg")
    bpy.context.scene.hrn.model_source = "OFFICIAL"
    with pytest.raises(RuntimeError, match="weights folder"):
        bpy.ops.hrn.reconstruct()
    assert len(bpy.data.objects) == 0


# ---------------------------------------------------------------------- photo views
def _view_state() -> tuple:
    """(scene camera name, render size, jawOpen and eyeBlinkLeft key values)."""
    scene = bpy.context.scene
    blocks = bpy.data.objects["multi"].data.shape_keys.key_blocks
    return (scene.camera.name, (scene.render.resolution_x, scene.render.resolution_y),
            round(blocks["jawOpen"].value, 5), round(blocks["eyeBlinkLeft"].value, 5))


def test_use_view_operator_flips_views_and_survives_save_and_reopen(tmp_path):
    from hrn_blender.headless import build_scene
    from synthetic_result import make_multiview_result, write_view_photos

    result = make_multiview_result(write_view_photos(tmp_path), reference=0)
    head = build_scene(result, "multi")
    sizes = [v.camera.image_size for v in result.views]
    assert _view_state() == ("multi camera 1 (view_0)", sizes[0], 0.0, 0.0)
    assert bpy.ops.hrn.use_view(camera="multi camera 2 (view_1)") == {"FINISHED"}
    assert _view_state() == ("multi camera 2 (view_1)", sizes[1], -0.3, 0.8)
    # The Views panel shows for the head and for its cameras, not for other objects.
    bpy.context.view_layer.objects.active = head
    assert bpy.types.HRN_PT_views.poll(bpy.context)
    bpy.context.view_layer.objects.active = bpy.data.objects["multi camera 3 (view_2)"]
    assert bpy.types.HRN_PT_views.poll(bpy.context)

    path = tmp_path / "views.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.wm.open_mainfile(filepath=str(path))
    assert _view_state() == ("multi camera 2 (view_1)", sizes[1], -0.3, 0.8)
    # Without a camera name the operator uses the active object (camera 3, as saved).
    assert bpy.ops.hrn.use_view() == {"FINISHED"}
    assert _view_state() == ("multi camera 3 (view_2)", sizes[2], 0.3, 0.0)
    assert bpy.ops.hrn.use_view(camera="multi camera 1 (view_0)") == {"FINISHED"}
    assert _view_state() == ("multi camera 1 (view_0)", sizes[0], 0.0, 0.0)

    bpy.context.view_layer.objects.active = None
    assert not bpy.types.HRN_PT_views.poll(bpy.context)
    with pytest.raises(RuntimeError, match="not the camera of an HRN head"):
        bpy.ops.hrn.use_view(camera="multi")
    assert _view_state()[0] == "multi camera 1 (view_0)"


# ---------------------------------------------------------------------- worker protocol
def _program(tmp_path: Path, body: str) -> list[str]:
    """A small real program standing in for the engine's command line (protocol tests only)."""
    script = tmp_path / "child.py"
    script.write_text("import json, sys, time\n"
                      "def emit(**m): print(json.dumps(m), flush=True)\n" + textwrap.dedent(body))
    return [sys.executable, str(script)]


def test_worker_passes_options_and_reports_done(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = EngineRun(ReconstructionRequest(("a.jpg", "b.jpg"), device="cpu", quality="high"),
                    command=_program(tmp_path, """
        import os
        emit(event="progress", stage="Detecting face", fraction=0.5)
        emit(event="warning", message=" ".join(sys.argv[1:]))
        emit(event="warning", message=os.getcwd())
        emit(event="done", result=sys.argv[sys.argv.index("--out") + 1])
    """))
    seen = []
    final = run.wait(seen.append)
    assert [type(e) for e in seen] == [ProgressEvent, WarningEvent, WarningEvent, DoneEvent]
    # Photos resolved against Blender's working folder; the child runs beside the engine.
    assert f"reconstruct {tmp_path / 'a.jpg'} {tmp_path / 'b.jpg'}" in seen[1].message
    assert "--device cpu --quality high" in seen[1].message
    assert "--progress jsonl" in seen[1].message
    assert Path(seen[2].message) == ENGINE_PARENT
    assert final.result == str(run.out_dir) and run.out_dir.is_dir()
    run.cleanup()
    assert not run.out_dir.exists()


def test_worker_reports_a_crash_with_its_stderr(tmp_path):
    run = EngineRun(ReconstructionRequest(("a.jpg",)), command=_program(tmp_path, """
        print("Segmentation fault (pretend)", file=sys.stderr)
        sys.exit(139)
    """))
    final = run.wait()
    assert isinstance(final, ErrorEvent) and final.kind == "EngineCrash"
    assert "exit code 139" in final.message and "pretend" in final.message


def test_cancel_terminates_the_child_and_deletes_its_output(tmp_path):
    run = EngineRun(ReconstructionRequest(("a.jpg",)), command=_program(tmp_path, """
        emit(event="progress", stage="Fitting", fraction=0.1)
        time.sleep(60)
        emit(event="done", result="never")
    """))
    deadline = time.monotonic() + 30
    while not run.poll():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    start = time.monotonic()
    run.cancel()
    assert time.monotonic() - start < 5 and not run.running
    assert not run.out_dir.exists()
    assert run.poll() == []  # nothing arrives after a cancel
