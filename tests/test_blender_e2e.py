"""End to end in Blender: the extension zip installed by Blender's own extension installer, the
real engine run on the astronaut photo by the Reconstruct operator, and the scene it leaves.

The engine runs once for the whole module (``reconstruction``); the tests then look at that one
scene, render it with Cycles on the CPU, save and reopen it. Cancel and bad-input runs use the
real engine child process too.
"""
from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from bpy_extras.object_utils import world_to_camera_view  # noqa: E402
from mathutils import Vector  # noqa: E402
from PIL import Image  # noqa: E402
from synthetic_result import ARKIT_NAMES  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
REPO = "hrn_e2e"
PACKAGE = f"bl_ext.{REPO}.hrn_blender"


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def extension(tmp_path_factory):
    """The extension zip (engine inside, no wheels: this Python already has them) installed and
    enabled by ``extensions.package_install_files`` into a throw-away repository; yields the
    installed package's modules. Uninstalled afterwards so other test modules can register the
    development copy."""
    tmp = tmp_path_factory.mktemp("extension")
    (tmp / "wheels").mkdir()
    done = subprocess.run([sys.executable, str(ROOT / "build.py"), "--platform", "linux-x64",
                           "--no-download", "--torch", "none", "--wheels-dir", str(tmp / "wheels"),
                           "--out", str(tmp / "dist")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    bpy.ops.wm.read_factory_settings(use_empty=True)
    repos = bpy.context.preferences.extensions.repos
    repo = repos.new(name=REPO, module=REPO, custom_directory=str(tmp / "repo"), source="USER")
    bpy.ops.extensions.package_install_files(
        filepath=str(tmp / "dist" / "hrn_blender-0.1.0-linux_x64.zip"), repo=REPO,
        enable_on_install=True)
    assert PACKAGE in bpy.context.preferences.addons
    modules = SimpleNamespace(**{name.split(".")[-1]: importlib.import_module(f"{PACKAGE}.{name}")
                                 for name in ("engine_api", "headless", "worker", "operators",
                                              "scene.controls")})
    # The child process must run the engine bundled in the zip, not the checkout's.
    assert modules.engine_api.ENGINE_PARENT == tmp / "repo" / "hrn_blender"
    yield modules
    bpy.ops.preferences.addon_disable(module=PACKAGE)
    repos.remove(repo)
    bpy.ops.wm.read_factory_settings(use_empty=True)


@pytest.fixture(scope="module")
def reconstruction(extension, astronaut_path, tmp_path_factory):
    """Run Reconstruct (the blocking path, as in background mode) on the astronaut photo once.

    The operator deletes the engine's output folder once the scene is built; a spy on that
    clean-up copies the folder first, so the tests can compare the scene with the result.
    """
    kept = tmp_path_factory.mktemp("engine") / "result"
    run_class = extension.worker.EngineRun
    original_cleanup = run_class.cleanup

    def keep_then_cleanup(run):
        if (run.out_dir / "reconstruction.json").is_file() and not kept.exists():
            shutil.copytree(run.out_dir, kept)
        original_cleanup(run)

    settings = bpy.context.scene.hrn
    settings.photo, settings.device = astronaut_path, "CPU"
    before = set(bpy.data.objects.keys())
    start = time.monotonic()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(run_class, "cleanup", keep_then_cleanup)
        outcome = bpy.ops.hrn.reconstruct()
    seconds = time.monotonic() - start
    result = extension.engine_api.result.FaceReconstruction.load(kept)
    encoding = json.loads((kept / "reconstruction.json").read_text())["displacement_encoding"]
    print(f"engine + scene: {seconds:.1f} s")
    return SimpleNamespace(outcome=outcome, new=set(bpy.data.objects.keys()) - before,
                           result=result, encoding=encoding, photo=astronaut_path)


@pytest.fixture
def head(reconstruction):
    return bpy.data.objects["astronaut"]


def _co(blocks) -> np.ndarray:
    co = np.empty(len(blocks.data) * 3, np.float32)
    blocks.data.foreach_get("co", co)
    return co.reshape(-1, 3)


def _pixels(image) -> np.ndarray:
    """``[H, W, 4]`` float pixels, top row first like the engine's maps."""
    px = np.empty(image.size[0] * image.size[1] * 4, np.float32)
    image.pixels.foreach_get(px)
    return px.reshape(image.size[1], image.size[0], 4)[::-1]


def _evaluate(obj) -> None:
    """Run the drivers (setting an ID property from Python does not tag the depsgraph)."""
    obj.update_tag()
    bpy.context.evaluated_depsgraph_get().update()


def _blender(points: np.ndarray) -> np.ndarray:
    from engine.conventions import model_to_blender

    return model_to_blender(points)


def _render(extension, path: Path, samples: int, percentage: int = 100) -> np.ndarray:
    bpy.context.scene.cycles.seed = 0
    extension.headless.render(str(path), samples=samples, percentage=percentage)
    return np.asarray(Image.open(path), np.float32) / 255.0


# ---------------------------------------------------------------------------- the scene
def test_one_new_object_named_after_the_photo_with_uvs(reconstruction, head):
    result = reconstruction.result
    assert reconstruction.outcome == {"FINISHED"}
    assert reconstruction.new == {"astronaut", "astronaut camera"}
    mesh = head.data
    assert head.type == "MESH" and bpy.context.view_layer.objects.active == head
    assert len(mesh.vertices) == len(result.vertices) and len(mesh.polygons) == len(result.faces)
    uv = np.empty(len(mesh.loops) * 2, np.float32)
    mesh.uv_layers["UVMap"].uv.foreach_get("vector", uv)
    np.testing.assert_allclose(uv.reshape(-1, 2), result.uvs[result.face_uvs].reshape(-1, 2),
                               atol=1e-6)
    assert all(p.use_smooth for p in mesh.polygons)


def test_shape_keys_basis_mid_frequency_and_52_arkit_targets(reconstruction, head):
    result = reconstruction.result
    blocks = head.data.shape_keys.key_blocks
    assert [b.name for b in blocks] == ["Basis", "Mid-frequency detail", *ARKIT_NAMES]
    np.testing.assert_allclose(_co(blocks["Basis"]), _blender(result.vertices), atol=1e-6)
    mid = _co(blocks["Mid-frequency detail"]) - _co(blocks["Basis"])
    np.testing.assert_allclose(mid, _blender(result.mid_offsets), atol=1e-6)
    assert np.abs(mid).max() > 1e-4  # the engine really deformed the coarse head (> 0.1 mm)
    assert blocks["Mid-frequency detail"].value == 1.0
    assert all(blocks[name].value == 0.0 for name in ARKIT_NAMES)
    jaw = _co(blocks["jawOpen"]) - _co(blocks["Basis"])
    assert np.linalg.norm(jaw, axis=1).max() > 0.005  # opening the jaw moves the chin > 5 mm


def test_detail_modifiers_follow_the_engine_metadata(reconstruction, head):
    assert [(m.name, m.type) for m in head.modifiers] == [("Subdivision", "SUBSURF"),
                                                         ("Displace", "DISPLACE")]
    displace = head.modifiers["Displace"]
    _evaluate(head)
    assert displace.mid_level == pytest.approx(reconstruction.encoding["midlevel"])
    assert displace.strength == pytest.approx(reconstruction.encoding["scale"], rel=1e-5)
    assert (displace.texture_coords, displace.uv_layer) == ("UV", "UVMap")
    assert displace.texture.image == head.data.materials[0].node_tree.nodes["Displacement map"].image
    # Rendering displaces through the material instead (see test_high_frequency_...).
    assert not displace.show_render and head.modifiers["Subdivision"].show_render


def test_material_links_and_packed_images(reconstruction, head):
    result = reconstruction.result
    material = head.data.materials[0]
    tree = material.node_tree
    bsdf = next(n for n in tree.nodes if n.type == "BSDF_PRINCIPLED")
    output = next(n for n in tree.nodes if n.type == "OUTPUT_MATERIAL")
    links = {(l.from_node.name, l.to_node.name, l.to_socket.identifier) for l in tree.links}
    assert {("Albedo", "Albedo tint", "A_Color"), ("Albedo tint", bsdf.name, "Base Color"),
            ("Displacement map", "Displacement", "Height"),
            ("Displacement", output.name, "Displacement"), (bsdf.name, output.name, "Surface")} <= links
    assert material.displacement_method == "BOTH"
    nodes = tree.nodes
    assert nodes["Displacement"].inputs["Midlevel"].default_value == pytest.approx(
        reconstruction.encoding["midlevel"])
    albedo, displacement = nodes["Albedo"].image, nodes["Displacement map"].image
    assert albedo.packed_file is not None and displacement.packed_file is not None
    np.testing.assert_allclose(_pixels(albedo)[..., :3], result.albedo, atol=0.5 / 255 + 1e-6)
    metres = (_pixels(displacement)[..., 0] - reconstruction.encoding["midlevel"]) \
        * reconstruction.encoding["scale"]
    np.testing.assert_allclose(metres, result.displacement_map, atol=1e-8)


def test_parts_have_their_own_materials_and_only_the_skin_is_displaced(reconstruction, head):
    """Eyes (sclera, cornea, iris), teeth, gums, tongue, mouth socket and lashes: one material
    slot each, in the engine's order, on the faces the engine labelled; the iris wears the
    colour measured from the photo; the Displace modifier moves the skin only."""
    result = reconstruction.result
    mesh = head.data
    assert {"sclera", "cornea", "iris", "teeth", "gums", "tongue", "mouth", "lashes"} <= set(result.material_names)
    assert [m.name for m in mesh.materials] == [
        "astronaut" if part == "skin" else f"astronaut {part}" for part in result.material_names]
    index = np.empty(len(mesh.polygons), np.int32)
    mesh.polygons.foreach_get("material_index", index)
    np.testing.assert_array_equal(index, result.face_material)
    slot = dict(zip(result.material_names, mesh.materials))
    ramp = slot["iris"].node_tree.nodes["Iris colour"].color_ramp
    iris = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in result.eyes.iris_srgb]
    assert any(np.allclose(e.color[:3], iris, atol=1e-4) for e in ramp.elements)
    bsdf = next(n for n in slot["cornea"].node_tree.nodes if n.type == "BSDF_PRINCIPLED")
    assert bsdf.inputs["Transmission Weight"].default_value == 1.0
    lashes = next(n for n in slot["lashes"].node_tree.nodes if n.type == "BSDF_PRINCIPLED")
    assert lashes.inputs["Alpha"].is_linked                  # alpha-mapped strands
    assert head.modifiers["Displace"].vertex_group == "Skin"
    group = head.vertex_groups["Skin"].index
    in_group = np.array([any(g.group == group for g in v.groups) for v in mesh.vertices])
    skin_faces = result.faces[result.face_material == result.material_names.index("skin")]
    expected = np.zeros(len(mesh.vertices), bool)
    expected[skin_faces[skin_faces >= 0]] = True
    np.testing.assert_array_equal(in_group, expected)


def test_eye_look_keys_turn_the_eyes_and_blink_closes_the_lids(reconstruction, head):
    result = reconstruction.result
    blocks = head.data.shape_keys.key_blocks
    basis = _co(blocks["Basis"])
    iris_faces = result.faces[result.face_material == result.material_names.index("iris")]
    iris = np.unique(iris_faces[iris_faces >= 0])
    left = iris[basis[iris, 0] > 0]                          # the subject's left eye (+X)
    front = left[basis[left, 1] < np.quantile(basis[left, 1], 0.1)]   # Blender -Y is the front
    up = _co(blocks["eyeLookUpLeft"]) - basis
    assert up[front, 2].mean() > 0.003                       # the front of the eye turns up
    assert np.abs(up[iris[basis[iris, 0] < 0]]).max() < 1e-6  # the right eye stays
    out = _co(blocks["eyeLookOutLeft"]) - basis
    assert out[front, 0].mean() > 0.003                      # ...and out, to the subject's left
    blink = _co(blocks["eyeBlinkLeft"]) - basis
    assert blink[:, 2].min() < -0.005                        # the upper lid comes down


def test_camera_matches_the_photo(reconstruction, head, astronaut_rgb):
    result = reconstruction.result
    scene = bpy.context.scene
    camera = bpy.data.objects["astronaut camera"]
    assert scene.camera == camera and camera.parent == head  # the scene had no camera
    assert (scene.render.resolution_x, scene.render.resolution_y) == (512, 512)
    points = result.vertices[::29]
    ndc = np.array([world_to_camera_view(scene, camera, Vector(p))[:2] for p in _blender(points)])
    pixels = np.stack([ndc[:, 0] * 512, (1.0 - ndc[:, 1]) * 512], -1)
    np.testing.assert_allclose(pixels, result.camera.project(points), atol=0.05)
    assert (ndc > 0).all() and (ndc < 1).all()  # the whole head is in the frame
    landmarks = result.views[0].landmarks  # where MediaPipe found the face in the photo
    assert (landmarks.min(0) > pixels.min(0)).all() and (landmarks.max(0) < pixels.max(0)).all()
    photo = camera.data.background_images[0].image
    assert photo.packed_file is not None and tuple(photo.size) == (512, 512)
    assert np.abs(_pixels(photo)[..., :3] - astronaut_rgb / 255.0).mean() < 0.02


# ---------------------------------------------------------------------------- Cycles
@pytest.fixture(scope="module")
def lit(reconstruction, extension):
    """The headless pipeline's studio light (the operator leaves lighting to the artist)."""
    head = bpy.data.objects["astronaut"]
    extension.headless.add_studio_light(bpy.context.scene, head)
    return head


def test_small_cycles_frame_shows_the_head_where_the_photo_has_the_face(reconstruction, lit,
                                                                          extension, tmp_path):
    rgba = _render(extension, tmp_path / "frame.png", samples=4, percentage=25)
    assert rgba.shape == (128, 128, 4)
    mask = rgba[..., 3] > 0.5
    assert 0.03 < mask.mean() < 0.3  # a head in a half-length portrait
    projected = reconstruction.result.camera.project(reconstruction.result.vertices) / 4
    ys, xs = np.nonzero(mask)
    np.testing.assert_allclose([xs.min(), xs.max() + 1, ys.min(), ys.max() + 1],
                               [projected[:, 0].min(), projected[:, 0].max(),
                                projected[:, 1].min(), projected[:, 1].max()], atol=2.0)
    landmarks = np.floor(reconstruction.result.views[0].landmarks / 4).astype(int)
    assert mask[landmarks[:, 1], landmarks[:, 0]].mean() > 0.97
    assert rgba[..., :3][mask].mean() > 0.15  # lit, not a black silhouette


def test_high_frequency_strength_shows_in_the_render(reconstruction, lit, extension, tmp_path):
    """Strength 1 vs 0 through Cycles' material displacement (the Displace modifier is off for
    render), on a crop around the face at full resolution: the face changes, and much more than
    the rest of the head, where the displacement map is zero."""
    scene = bpy.context.scene
    landmarks = reconstruction.result.views[0].landmarks
    x0, y0 = landmarks.min(0) - 24
    x1, y1 = landmarks.max(0) + 24
    render = scene.render
    render.use_border = render.use_crop_to_border = True
    render.border_min_x, render.border_max_x = x0 / 512, x1 / 512
    render.border_min_y, render.border_max_y = 1 - y1 / 512, 1 - y0 / 512
    renders = {}
    try:
        for strength in (1.0, 0.0):
            lit[extension.controls.HIGH_STRENGTH] = strength
            _evaluate(lit)
            renders[strength] = _render(extension, tmp_path / f"hf_{strength}.png", samples=8)
    finally:
        lit[extension.controls.HIGH_STRENGTH] = 1.0
        render.use_border = render.use_crop_to_border = False
    difference = np.abs(renders[1.0][..., :3] - renders[0.0][..., :3]).mean(-1)
    head = renders[1.0][..., 3] > 0.5
    h, w = difference.shape
    face = np.zeros_like(head)
    face[int(0.35 * h):int(0.75 * h), int(0.3 * w):int(0.7 * w)] = True  # cheeks, nose, mouth
    rest = head & ~np.pad(np.ones((h - 16, w - 16), bool), 8)  # the head's outer rim
    print(f"high-frequency difference: face {difference[face].mean():.4f}, "
          f"rim {difference[rest].mean():.4f}")
    assert difference[face].mean() > 0.003
    assert difference[face].mean() > 3 * difference[rest].mean()


# ---------------------------------------------------------------------------- save / reopen
def test_saved_blend_reopens_with_its_textures(reconstruction, head, tmp_path):
    path = tmp_path / "moved" / "astronaut.blend"
    path.parent.mkdir()
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    bpy.ops.wm.open_mainfile(filepath=str(path))
    head = bpy.data.objects["astronaut"]
    nodes = head.data.materials[0].node_tree.nodes
    photo = bpy.data.objects["astronaut camera"].data.background_images[0].image
    for image in (nodes["Albedo"].image, nodes["Displacement map"].image, photo):
        assert image.packed_file is not None
        assert _pixels(image)[..., :3].std() > 1e-4 and image.has_data  # loads the packed data
    np.testing.assert_allclose(_pixels(nodes["Albedo"].image)[..., :3], reconstruction.result.albedo,
                               atol=0.5 / 255 + 1e-6)
    assert len(head.data.shape_keys.key_blocks) == 54
    assert head.data.shape_keys.animation_data.drivers[0].driver.is_valid


# ---------------------------------------------------------------------------- cancel, errors
def _scene_counts() -> tuple:
    return (tuple(sorted(bpy.data.objects.keys())), len(bpy.data.meshes), len(bpy.data.images),
            len(bpy.data.materials))


def test_cancel_during_mid_frequency_fit_leaves_the_scene_unchanged(extension, reconstruction,
                                                                    astronaut_path, monkeypatch):
    """Press Cancel (the same flag the panel's button sets) when the engine reports the
    mid-frequency stage: the child is stopped, its output deleted, and nothing is added."""
    operator = extension.operators.HRN_OT_reconstruct
    original_show = operator._show
    seen = {}

    def show_then_cancel(self, context, message):
        original_show(self, context, message)
        progress = extension.engine_api.progress  # the installed copy's classes
        if (isinstance(message, progress.ProgressEvent) and message.stage == progress.Stage.FITTING_MID
                and not seen):
            seen["run"] = self._run
            assert bpy.ops.hrn.cancel() == {"FINISHED"}

    monkeypatch.setattr(operator, "_show", show_then_cancel)
    bpy.context.scene.hrn.photo = astronaut_path
    before = _scene_counts()
    start = time.monotonic()
    assert bpy.ops.hrn.reconstruct() == {"CANCELLED"}
    assert "run" in seen and not seen["run"].running
    assert not seen["run"].out_dir.exists()
    assert _scene_counts() == before
    assert not bpy.context.window_manager.hrn.running
    print(f"cancel run: {time.monotonic() - start:.1f} s")


@pytest.mark.parametrize("photo, message", [("text", "Cannot read photo"),
                                            ("no_face", "No face found")])
def test_bad_input_reports_the_engine_error_and_adds_nothing(extension, reconstruction, photo,
                                                             message, no_face_path, tmp_path):
    if photo == "text":
        path = tmp_path / "notes.jpg"
        path.write_text("this is not a photo")
    else:
        path = no_face_path
    bpy.context.scene.hrn.photo = str(path)
    before = _scene_counts()
    with pytest.raises(RuntimeError, match=message):
        bpy.ops.hrn.reconstruct()
    assert _scene_counts() == before
    assert not bpy.context.window_manager.hrn.running
