"""The scene the extension builds from a FaceReconstruction, checked with the real bpy module.

Uses tests/synthetic_result.py (test data, not a reconstruction) so the scene code is tested
without running the engine.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from bpy_extras.object_utils import world_to_camera_view  # noqa: E402
from engine.conventions import model_to_blender  # noqa: E402
from engine.result import displacement_scale  # noqa: E402
from hrn_blender import headless  # noqa: E402
from hrn_blender.scene import controls, views  # noqa: E402
from hrn_blender.scene.build import build_head  # noqa: E402
from PIL import Image  # noqa: E402
from synthetic_result import (ARKIT_NAMES, RIPPLE_AMPLITUDE, VIEW_COLOURS,  # noqa: E402
                              make_multiview_result, make_synthetic_result, write_view_photos)

@pytest.fixture(scope="module")
def result():
    return make_synthetic_result()


@pytest.fixture(scope="module")
def multiview(tmp_path_factory):
    """Three used photos (the second is the reference) and a skipped fourth."""
    folder = tmp_path_factory.mktemp("views")
    skipped = folder / "skipped.png"
    Image.new("RGB", (64, 64)).save(skipped)
    return make_multiview_result(write_view_photos(folder), reference=1, unused_photo=str(skipped))


pytestmark = pytest.mark.usefixtures("registered_extension")


@pytest.fixture
def head(result):
    return build_head(result, "synthetic", bpy.context.scene.collection)


def _evaluated_positions(obj) -> np.ndarray:
    obj.update_tag()  # setting an ID property from Python does not tag the depsgraph by itself
    dg = bpy.context.evaluated_depsgraph_get()
    dg.update()
    mesh = obj.evaluated_get(dg).to_mesh()
    co = np.empty(len(mesh.vertices) * 3, np.float32)
    mesh.vertices.foreach_get("co", co)
    obj.evaluated_get(dg).to_mesh_clear()
    return co.reshape(-1, 3)


def _key_co(key_block) -> np.ndarray:
    co = np.empty(len(key_block.data) * 3, np.float32)
    key_block.data.foreach_get("co", co)
    return co.reshape(-1, 3)


def _projected_pixels(scene, camera, model_points: np.ndarray) -> np.ndarray:
    """Image pixels (x right, y down) of model-space points through a Blender camera."""
    from mathutils import Vector

    w, h = scene.render.resolution_x, scene.render.resolution_y
    ndc = np.array([world_to_camera_view(scene, camera, Vector(p))[:2]
                    for p in model_to_blender(model_points)])
    return np.stack([ndc[:, 0] * w, (1.0 - ndc[:, 1]) * h], -1)  # Blender: origin bottom-left


def _pixels(image) -> np.ndarray:
    px = np.empty(image.size[0] * image.size[1] * 4, np.float32)
    image.pixels.foreach_get(px)
    return px.reshape(image.size[1], image.size[0], 4)[::-1]  # top row first, like the engine


def test_mesh_topology_uvs_and_smooth_shading(result, head):
    mesh = head.data
    assert head.name == "synthetic" and head.users_collection[0] == bpy.context.scene.collection
    assert len(mesh.vertices) == len(result.vertices) and len(mesh.polygons) == len(result.faces)
    corners = np.empty(len(mesh.loops), np.int32)
    mesh.loops.foreach_get("vertex_index", corners)
    np.testing.assert_array_equal(corners, result.faces.ravel())
    uv = np.empty(len(mesh.loops) * 2, np.float32)
    mesh.uv_layers["UVMap"].uv.foreach_get("vector", uv)
    np.testing.assert_allclose(uv.reshape(-1, 2), result.uvs[result.face_uvs].reshape(-1, 2), atol=1e-6)
    assert all(p.use_smooth for p in mesh.polygons)
    # Outward normals: the front of the face (model +Z) looks along Blender -Y.
    normals = np.empty(len(mesh.polygons) * 3, np.float32)
    mesh.polygons.foreach_get("normal", normals)
    centres = np.empty(len(mesh.polygons) * 3, np.float32)
    mesh.polygons.foreach_get("center", centres)
    assert np.mean(np.sum(normals.reshape(-1, 3) * centres.reshape(-1, 3), 1) > 0) > 0.99


def test_shape_keys_basis_mid_and_arkit(result, head):
    blocks = head.data.shape_keys.key_blocks
    assert [b.name for b in blocks] == ["Basis", "Mid-frequency detail", *ARKIT_NAMES]
    assert len(ARKIT_NAMES) == 52
    coarse = model_to_blender(result.vertices)
    np.testing.assert_allclose(_key_co(blocks["Basis"]), coarse, atol=1e-7)
    np.testing.assert_allclose(_key_co(blocks["Mid-frequency detail"]),
                               model_to_blender(result.vertices + result.mid_offsets), atol=1e-7)
    jaw = ARKIT_NAMES.index("jawOpen")
    np.testing.assert_allclose(_key_co(blocks["jawOpen"]),
                               coarse + model_to_blender(result.expression_deltas[jaw]), atol=1e-7)
    assert blocks["Mid-frequency detail"].value == 1.0
    assert all(blocks[name].value == 0.0 for name in ARKIT_NAMES)
    assert all(b.relative_key.name == "Basis" for b in blocks)


def test_detail_modifiers_order_and_settings(result, head):
    assert [(m.name, m.type) for m in head.modifiers] == [("Subdivision", "SUBSURF"),
                                                         ("Displace", "DISPLACE")]
    displace = head.modifiers["Displace"]
    assert displace.texture.image.name == "synthetic displacement"
    assert (displace.texture_coords, displace.uv_layer, displace.direction) == ("UV", "UVMap", "NORMAL")
    assert displace.mid_level == pytest.approx(0.5)
    _evaluated_positions(head)  # runs the drivers
    assert displace.strength == pytest.approx(displacement_scale(result.displacement_map), rel=1e-5)


def test_material_nodes_and_packed_images(result, head):
    material = head.data.materials[0]
    tree = material.node_tree
    links = {(l.from_node.name, l.from_socket.name, l.to_node.name, l.to_socket.identifier)
             for l in tree.links}
    bsdf = next(n for n in tree.nodes if n.type == "BSDF_PRINCIPLED")
    output = next(n for n in tree.nodes if n.type == "OUTPUT_MATERIAL")
    assert ("Albedo", "Color", "Albedo tint", "A_Color") in links
    assert ("Albedo tint", "Result", bsdf.name, "Base Color") in links
    assert ("Displacement map", "Color", "Displacement", "Height") in links
    assert ("Displacement", "Displacement", output.name, "Displacement") in links
    assert (bsdf.name, "BSDF", output.name, "Surface") in links
    assert material.displacement_method == "BOTH"
    scale = displacement_scale(result.displacement_map)
    assert tree.nodes["Displacement"].inputs["Midlevel"].default_value == pytest.approx(0.5)

    albedo = tree.nodes["Albedo"].image
    displacement = tree.nodes["Displacement map"].image
    assert albedo.packed_file is not None and displacement.packed_file is not None
    assert displacement.colorspace_settings.name == "Non-Color"
    np.testing.assert_allclose(_pixels(albedo)[..., :3], result.albedo, atol=0.5 / 255 + 1e-6)
    metres = (_pixels(displacement)[..., 0] - 0.5) * scale
    np.testing.assert_allclose(metres, result.displacement_map, atol=1e-8)


def test_camera_reproduces_the_photo_projection(result, tmp_path):
    # A phone-style photo stored sideways (192 x 160 -> 160 x 192 pixels) with EXIF orientation 6
    # ("turn 90 degrees clockwise"), its stored top-left corner white: upright, that corner is
    # the top-right one, and the photo matches the camera's 192 x 160 frame.
    stored = np.full((192, 160, 3), 90, np.uint8)
    stored[:8, :8] = 255
    photo = tmp_path / "photo.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(photo, exif=exif, quality=95)
    head = headless.build_scene(result, "synthetic", photo=str(photo))
    scene = bpy.context.scene
    camera = scene.camera
    assert camera.parent == head and camera.name == "synthetic camera"
    assert (scene.render.resolution_x, scene.render.resolution_y) == result.camera.image_size
    background = camera.data.background_images[0]
    assert background.image.packed_file is not None and camera.data.show_background_images
    assert tuple(background.image.size) == result.camera.image_size
    upright = _pixels(background.image)[..., :3]
    assert upright[:4, -4:].min() > 0.9 and upright[:4, :4].max() < 0.5
    assert [c.name for c in head.children] == ["synthetic camera"]  # single view: one camera
    np.testing.assert_allclose(_projected_pixels(scene, camera, result.vertices[::37]),
                               result.camera.project(result.vertices[::37]), atol=0.05)


def test_multiview_gives_one_head_and_a_camera_per_used_photo(multiview):
    head = headless.build_scene(multiview, "multi")
    scene = bpy.context.scene
    assert [o.name for o in bpy.data.objects if o.type == "MESH"] == ["multi"]
    cameras = views.view_cameras(head)
    assert [c.name for c in cameras] == ["multi camera 1 (view_0)", "multi camera 2 (view_1)",
                                         "multi camera 3 (view_2)"]  # none for the skipped photo
    assert len([o for o in bpy.data.objects if o.type == "CAMERA"]) == 3
    assert all(c.parent == head for c in cameras)
    # The head is posed for the reference view, whose camera the scene looks through.
    assert views.reference_camera(head) == cameras[1] == scene.camera
    assert (scene.render.resolution_x, scene.render.resolution_y) == multiview.camera.image_size
    for camera, view, colour in zip(cameras, multiview.views, VIEW_COLOURS):
        background = camera.data.background_images[0].image
        assert tuple(background.size) == view.camera.image_size and background.packed_file
        np.testing.assert_allclose(_pixels(background)[..., :3].mean((0, 1)),
                                   np.array(colour) / 255, atol=1 / 255)
        views.use_view(scene, camera)
        assert (scene.render.resolution_x, scene.render.resolution_y) == view.camera.image_size
        np.testing.assert_allclose(_projected_pixels(scene, camera, multiview.vertices[::37]),
                                   view.camera.project(multiview.vertices[::37]), atol=0.05)


def test_use_view_poses_the_head_as_in_that_photo(multiview):
    head = headless.build_scene(multiview, "multi")
    head[controls.MID_STRENGTH] = 0.0
    for modifier in head.modifiers:
        modifier.show_viewport = False
    blocks = head.data.shape_keys.key_blocks
    # The Basis wears the reference's blink (0.8): the other views need the key at -0.8.
    assert (blocks["eyeBlinkLeft"].slider_min, blocks["eyeBlinkLeft"].slider_max) == (-1.0, 1.0)
    assert (blocks["jawOpen"].slider_min, blocks["browInnerUp"].slider_min) == (0.0, 0.0)
    reference = multiview.views[1].expression
    basis = multiview.vertices - np.tensordot(reference, multiview.expression_deltas, axes=1)
    for camera, view in zip(views.view_cameras(head), multiview.views):
        views.use_view(bpy.context.scene, camera)
        values = np.array([blocks[name].value for name in ARKIT_NAMES])
        np.testing.assert_allclose(values, view.expression - reference, atol=1e-6)
        posed = basis + np.tensordot(view.expression, multiview.expression_deltas, axes=1)
        np.testing.assert_allclose(_evaluated_positions(head), model_to_blender(posed), atol=1e-6)


def test_detail_sliders_drive_shape_key_and_displacement(result, head):
    scale = displacement_scale(result.displacement_map)
    for modifier in head.modifiers:
        modifier.show_viewport = False
    head[controls.MID_STRENGTH] = 2.0
    coarse = model_to_blender(result.vertices)
    np.testing.assert_allclose(_evaluated_positions(head),
                               coarse + 2.0 * model_to_blender(result.mid_offsets), atol=1e-6)
    assert head.data.shape_keys.key_blocks["Mid-frequency detail"].value == pytest.approx(2.0)

    for modifier in head.modifiers:
        modifier.show_viewport = True
    head[controls.HIGH_STRENGTH] = 0.0
    flat = _evaluated_positions(head)
    head[controls.HIGH_STRENGTH] = 1.0
    detailed = _evaluated_positions(head)
    moved = np.linalg.norm(detailed - flat, axis=1)
    assert 0.7 * RIPPLE_AMPLITUDE < moved.max() < 1.05 * RIPPLE_AMPLITUDE
    head[controls.HIGH_STRENGTH] = 0.5
    _evaluated_positions(head)
    assert head.modifiers["Displace"].strength == pytest.approx(0.5 * scale, rel=1e-5)
    nodes = head.data.materials[0].node_tree.nodes
    assert nodes["Displacement"].inputs["Scale"].default_value == pytest.approx(0.5 * scale, rel=1e-5)
    head[controls.ALBEDO_TINT] = (1.0, 0.5, 0.25)
    _evaluated_positions(head)
    assert tuple(nodes["Albedo tint"].inputs[7].default_value)[:3] == pytest.approx((1.0, 0.5, 0.25))
    # Animatable: the sliders take keyframes.
    assert head.keyframe_insert(f'["{controls.HIGH_STRENGTH}"]', frame=1)


def test_cycles_render_covers_the_head_and_shows_high_frequency_detail(result, tmp_path):
    head = headless.build_scene(result, "synthetic")
    renders = {}
    for strength in (1.0, 0.0):
        head[controls.HIGH_STRENGTH] = strength
        path = tmp_path / f"render_{strength}.png"
        headless.render(str(path), samples=6, percentage=50)
        renders[strength] = np.asarray(Image.open(path), np.float32) / 255.0
    rgba = renders[1.0]
    assert rgba.shape == (80, 96, 4)
    mask = rgba[..., 3] > 0.5
    assert 0.15 < mask.mean() < 0.8
    projected = result.camera.project(result.vertices) * 0.5
    ys, xs = np.nonzero(mask)
    np.testing.assert_allclose([xs.min(), xs.max() + 1, ys.min(), ys.max() + 1],
                               [projected[:, 0].min(), projected[:, 0].max(),
                                projected[:, 1].min(), projected[:, 1].max()], atol=2.5)
    difference = np.abs(renders[1.0][..., :3] - renders[0.0][..., :3]).mean(-1)[mask]
    assert difference.mean() > 0.01


def test_saved_blend_keeps_images_and_rig(result, head, tmp_path):
    path = tmp_path / "moved" / "head.blend"
    path.parent.mkdir()
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.wm.open_mainfile(filepath=str(path))
    head = bpy.data.objects["synthetic"]
    nodes = head.data.materials[0].node_tree.nodes
    for node in ("Albedo", "Displacement map"):
        image = nodes[node].image
        assert image.packed_file is not None
        assert _pixels(image)[..., :3].std() > 0.01  # reading the pixels loads the packed data
        assert image.has_data
    assert len(head.data.shape_keys.key_blocks) == 54
    assert head.data.shape_keys.animation_data.drivers[0].driver.is_valid


def test_second_build_never_touches_existing_objects(result):
    collection = bpy.context.scene.collection
    mine = bpy.data.objects.new("synthetic", bpy.data.meshes.new("synthetic"))
    collection.objects.link(mine)
    first = build_head(result, "synthetic", collection)
    second = build_head(result, "synthetic", collection)
    assert (first.name, second.name) == ("synthetic.001", "synthetic.002")
    assert mine.name == "synthetic" and len(mine.data.vertices) == 0
    assert first.data != second.data and first.data.materials[0] != second.data.materials[0]


def test_headless_command_writes_a_blend(result, tmp_path):
    result.save(tmp_path / "result")
    blend = tmp_path / "head.blend"
    root = Path(__file__).resolve().parent.parent
    png = tmp_path / "head.png"
    done = subprocess.run([sys.executable, "-m", "hrn_blender.headless", str(tmp_path / "result"),
                           "--blend", str(blend), "--render", str(png), "--samples", "2"],
                          cwd=root, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    # Every step is announced before it runs, so nobody waits in silence (issue 15); Blender's
    # own lines come in between.
    width, height = result.camera.image_size
    assert _said_in_order(done.stdout, ["Building the Blender scene...", f"Saving {blend}", f"Wrote {blend} (",
                                        f"Rendering with Cycles on the CPU: 2 samples, {width}x{height} px...",
                                        f"Wrote {png} ("])
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    assert {o.type for o in bpy.data.objects} >= {"MESH", "CAMERA"}
    assert bpy.context.scene.camera is not None
    rgba = np.asarray(Image.open(png))
    assert rgba.shape == (*result.camera.image_size[::-1], 4) and (rgba[..., 3] > 128).mean() > 0.15


def test_headless_command_reconstructs_photos_first(astronaut_path, tmp_path):
    """One command from a photo to a .blend: the engine's reconstruction (its options, its
    result folder), then the scene."""
    blend, out = tmp_path / "head.blend", tmp_path / "result"
    done = subprocess.run([sys.executable, "-m", "hrn_blender.headless", astronaut_path, "--out", str(out),
                           "--quality", "fast", "--device", "cpu", "--progress", "none", "--blend", str(blend)],
                          cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert _said_in_order(done.stdout, [f"Wrote {out}", "Building the Blender scene...", f"Wrote {blend} ("])
    assert (out / "reconstruction.json").is_file() and (out / "preview.png").is_file()
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    assert "astronaut" in bpy.data.objects and bpy.context.scene.camera is not None


def test_headless_command_reports_engine_errors(tmp_path):
    done = subprocess.run([sys.executable, "-m", "hrn_blender.headless", str(tmp_path / "missing.jpg"),
                           "--out", str(tmp_path / "o"), "--blend", str(tmp_path / "x.blend")],
                          cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 2 and "Cannot read" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "x.blend").exists()
    tmp_path.joinpath("result").mkdir()
    done = subprocess.run([sys.executable, "-m", "hrn_blender.headless", str(tmp_path / "result"),
                           "--out", str(tmp_path / "o"), "--blend", str(tmp_path / "x.blend")],
                          cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 2 and "is a result folder: --example and --out apply only" in done.stderr


def _said_in_order(stdout: str, starts: list[str]) -> bool:
    """Whether lines starting with each of ``starts`` appear in ``stdout``, in that order."""
    lines = iter(stdout.splitlines())
    return all(any(line.startswith(start) for line in lines) for start in starts)
