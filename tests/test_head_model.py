"""Tests of the built-in head (engine/head/data/ict_head.npz, derived from the ICT Face Model
by tools/build_ict_head.py) and of the head-model interface and subdivision."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.errors import ModelFilesError
from engine.head.linear import MorphableHead, load_head
from engine.head.model import ARKIT_NAMES, HeadModel, MAPPED_MATERIALS
from engine.head.subdivision import catmull_clark
from engine.result import triangle_faces, triangulate

ICT = Path(__file__).resolve().parents[2] / "shared" / "data" / "ict_facekit"
needs_ict = pytest.mark.skipif(not (ICT / "ict_face_model.npz").is_file(),
                               reason="../shared/data/ict_facekit is not present")


@pytest.fixture(scope="module")
def model() -> MorphableHead:
    return load_head()


@pytest.fixture(scope="module")
def fine(model) -> MorphableHead:
    return model.subdivided(1)


def _part(model, name):
    return model.face_material == model.material_names.index(name)


def test_implements_the_interface(model):
    assert isinstance(model, HeadModel)
    assert model.expression_prior == "blendshape"
    assert "ICT" in model.name


def test_counts_and_shapes(model):
    v, f = model.n_vertices, len(model.faces)
    assert v == 25959 and f == 25772                       # tools/build_ict_head.py's parts
    assert model.identity.shape == (100, v, 3) and model.expression.shape == (52, v, 3)
    assert model.faces.shape == (f, 4) and model.faces.max() < v
    tri = (model.faces[:, 3] < 0)
    assert 0 < tri.sum() < 600                             # a few triangles among quads
    assert len(model.triangles()) == 2 * f - tri.sum()
    assert ((model.face_uvs < 0) == (model.faces < 0)).all()
    assert set(model.material_names) == {"skin", "mouth", "gums", "tongue", "teeth", "sclera",
                                         "cornea", "iris", "lashes"}
    np.testing.assert_allclose(model.landmark_barycentrics.sum(1), 1, atol=1e-5)


@needs_ict
def test_derived_shapes_match_the_published_arrays(model):
    """Every kept vertex, identity mode and expression against ICT's own arrays (cm)."""
    src = np.load(ICT / "ict_face_model.npz")
    ids = np.load(Path(__file__).resolve().parents[1] / "engine/head/data/ict_head.npz")["source_vertex_ids"]
    np.testing.assert_allclose(model.mean, src["neutral"][ids] / 100, atol=1e-7)
    err = np.abs(model.identity - src["identity_delta"][:, ids] / 100).max()
    assert err < 1e-5                                        # float16: below 0.01 mm per unit
    names = [str(n) for n in src["expression_names"]]
    ict = lambda n: src["expression_delta"][names.index(n), ids] / 100  # noqa: E731
    expr = dict(zip(ARKIT_NAMES, model.expression))
    assert np.abs(expr["eyeBlinkLeft"] - ict("eyeBlink_L")).max() < 2e-5
    assert np.abs(expr["mouthSmileRight"] - ict("mouthSmile_R")).max() < 2e-5
    assert np.abs(expr["jawOpen"] - ict("jawOpen")).max() < 2e-5
    assert np.abs(expr["browInnerUp"] - ict("browInnerUp_L") - ict("browInnerUp_R")).max() < 2e-5
    assert np.abs(expr["cheekPuff"] - ict("cheekPuff_L") - ict("cheekPuff_R")).max() < 2e-5


def test_arkit_left_is_the_subjects_left(model):
    """ARKit's ...Left shapes move the subject's left side, +X (engine.conventions)."""
    for name in ("eyeBlinkLeft", "mouthSmileLeft", "browDownLeft"):
        d = np.linalg.norm(model.expression[ARKIT_NAMES.index(name)], axis=1)
        moving = d > 0.5 * d.max()
        assert model.mean[moving, 0].mean() > 0.01, name
    blink = model.expression[ARKIT_NAMES.index("eyeBlinkLeft")]
    lids = model.regions["eyes"] & (model.mean[:, 0] > 0)
    assert blink[lids, 1].min() < -0.005                     # the upper lid comes down


def test_tongue_out_moves_only_the_tongue_forward(model):
    d = model.expression[ARKIT_NAMES.index("tongueOut")]
    moved = np.linalg.norm(d, axis=1) > 1e-6
    assert moved.any() and not (moved & ~model.regions["tongue"]).any()
    tip = model.regions["tongue"] & (model.mean[:, 2] > np.quantile(model.mean[model.regions["tongue"], 2], 0.95))
    assert d[tip, 2].mean() > 0.025                          # centimetres forward at the tip
    lips_front = model.mean[model.regions["lips"], 2].max()
    assert (model.mean + d)[tip, 2].max() > lips_front       # the tip comes out of the mouth


def test_eye_look_turns_the_eyeball_and_blink_moves_lids_and_lashes(model):
    iris = model.regions["irises"] & (model.mean[:, 0] > 0)
    look = model.expression[ARKIT_NAMES.index("eyeLookUpLeft")]
    assert look[iris, 1].mean() > 0.001                      # the front of the eye goes up
    blink = model.expression[ARKIT_NAMES.index("eyeBlinkLeft")]
    lashes = model.regions["lashes"] & (model.mean[:, 0] > 0) & (model.mean[:, 1] > 0.035)
    assert np.linalg.norm(blink[lashes], axis=1).mean() > 0.003   # upper lashes ride the lid


def test_head_has_human_size_and_faces_forward(model):
    m = model.mean
    skin = model.regions["skin"]
    assert 0.14 <= np.ptp(m[skin, 0]) <= 0.26                # ear to ear incl. the neck base
    nose = m[model.regions["nose"]]
    tip = nose[np.argmax(nose[:, 2])]
    assert abs(tip[0]) < 0.003 and tip[2] == pytest.approx(m[skin, 2].max(), abs=0.005)
    assert abs(m[:, 0].max() + m[:, 0].min()) < 1e-3        # symmetric about x = 0


def test_mirror_map(model):
    flipped = model.mean[model.mirror] * np.array([-1, 1, 1])
    assert np.abs(flipped - model.mean).max() < 0.001
    assert (model.mirror[model.mirror] == np.arange(model.n_vertices)).mean() > 0.98


def test_skin_atlas_fills_the_unit_square_without_overlap(model):
    mapped = model.mapped_faces()
    assert set(np.unique(model.face_material[mapped])) == {model.material_names.index(m) for m in MAPPED_MATERIALS}
    uv = model.uvs[model.face_uvs[mapped][model.face_uvs[mapped] >= 0]]
    assert uv.min() >= 0 and uv.max() <= 1 and uv.max(0).min() > 0.95
    # Sample points: none inside two atlas triangles.
    tri = model.uvs[triangulate(model.face_uvs[mapped])].astype(np.float64)
    pts = np.random.default_rng(0).random((4000, 2))
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]

    def side(p, q):
        return (q[None, :, 0] - p[None, :, 0]) * (pts[:, None, 1] - p[None, :, 1]) - \
            (q[None, :, 1] - p[None, :, 1]) * (pts[:, None, 0] - p[None, :, 0])
    s1, s2, s3 = side(a, b), side(b, c), side(c, a)
    inside = ((s1 > 1e-9) & (s2 > 1e-9) & (s3 > 1e-9)) | ((s1 < -1e-9) & (s2 < -1e-9) & (s3 < -1e-9))
    assert inside.sum(1).max() == 1


def test_map_vertex_uv_rigid_parts_and_riding_lashes(model):
    uv, weight = model.map_vertex_uv()
    assert (weight[model.regions["skin"]] == 1).all()
    assert (weight[model.regions["teeth"] | model.regions["eyeballs"]] == 0).all()
    lashes = model.regions["lashes"]
    assert (weight[lashes] == 1).all()
    # A lash reads the maps at an eyelid's UV: in the face tile (the atlas' top-left 0.8),
    # among the lids' UVs.
    lids = uv[model.regions["eyes"] & model.regions["skin"]]
    lids = lids[lids[:, 0] < 0.8]
    assert (uv[lashes, 0] < 0.8).all() and (uv[lashes, 1] > 0.2).all()
    assert np.abs(uv[lashes].mean(0) - lids.mean(0)).max() < 0.05


def test_landmarks_sit_where_mediapipe_puts_them(model):
    from engine.detect.landmarks import IRIS_LEFT, LEFT_EYE, LIPS
    used = model.landmark_weights > 0
    assert used.sum() > 450 and (model.landmark_weights > 0.5).sum() > 300
    points = model.landmarks(model.mean)
    own = model.face_material[triangle_faces(model.faces)[model.landmark_faces]]
    lips = [i for i in LIPS if used[i]]
    assert np.isin(own[lips], [model.material_names.index("skin")]).all()
    assert np.linalg.norm(points[lips] - model.mean[model.regions["lips"]].mean(0), axis=1).max() < 0.035
    left_eye = points[LEFT_EYE].mean(0)
    assert left_eye[0] > 0.02                                # subject's left = +X
    iris = [i for i in IRIS_LEFT if used[i]]
    assert np.linalg.norm(points[iris] - left_eye, axis=1).max() < 0.012


def test_shape_numpy_and_torch_agree(model):
    rng = np.random.default_rng(1)
    ident = rng.normal(size=model.n_identity).astype(np.float32)
    expr = rng.uniform(0, 0.3, 52).astype(np.float32)
    ref = model.shape(ident, expr)
    out = model.shape(torch.tensor(ident, dtype=torch.float64), torch.tensor(expr, dtype=torch.float64))
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-5)


def test_subdivision_matches_blender_subsurf(model):
    """Our Catmull-Clark on the mixed triangle/quad mesh against bpy's Subdivision Surface
    (simple boundary rule 'All', no limit surface): the same points to float precision."""
    bpy = pytest.importorskip("bpy")
    from scipy.spatial import cKDTree
    # The eyes: closed spheres with triangle poles, the lashes: open strips.
    sel = _part(model, "sclera") | _part(model, "lashes")
    faces = model.faces[sel]
    used = np.unique(faces[faces >= 0])
    remap = np.full(model.n_vertices, -1)
    remap[used] = np.arange(len(used))
    local = np.where(faces >= 0, remap[np.maximum(faces, 0)], -1)
    verts = model.mean[used].astype(np.float64)
    ours = catmull_clark(local, len(verts)).operator @ verts
    mesh = bpy.data.meshes.new("cc")
    mesh.from_pydata(verts.tolist(), [], [list(f[f >= 0]) for f in local])
    obj = bpy.data.objects.new("cc", mesh)
    bpy.context.scene.collection.objects.link(obj)
    mod = obj.modifiers.new("s", "SUBSURF")
    mod.levels, mod.boundary_smooth, mod.use_limit_surface = 1, "ALL", False
    evaluated = obj.evaluated_get(bpy.context.evaluated_depsgraph_get()).to_mesh()
    theirs = np.array([v.co[:] for v in evaluated.vertices])
    assert len(theirs) == len(ours)
    assert cKDTree(theirs).query(ours)[0].max() < 1e-6       # metres


def test_subdivision_carries_everything(model, fine):
    assert fine.n_vertices > 3 * model.n_vertices and (fine.faces >= 0).all()     # all quads
    assert fine.identity.shape == (100, fine.n_vertices, 3)
    assert len(fine.face_material) == len(fine.faces)
    for name, mask in model.regions.items():
        assert (fine.regions[name][:model.n_vertices] == mask).all(), name
    # Landmarks stay on the same material and move less than a millimetre.
    own = lambda m: m.face_material[triangle_faces(m.faces)[m.landmark_faces]]  # noqa: E731
    assert (own(fine) == own(model)).all()
    used = model.landmark_weights > 0
    moved = np.linalg.norm(fine.landmarks(fine.mean) - model.landmarks(model.mean), axis=1)[used]
    assert np.median(moved) < 0.0005 and moved.max() < 0.003
    flipped = fine.mean[fine.mirror] * np.array([-1, 1, 1])
    assert np.median(np.abs(flipped - fine.mean)) < 1e-5


def test_missing_or_corrupt_file_raises(tmp_path):
    with pytest.raises(ModelFilesError, match="missing.*build_ict_head"):
        load_head(tmp_path / "nope.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ModelFilesError, match="corrupt"):
        load_head(bad)
    partial = tmp_path / "partial.npz"
    np.savez(partial, mean=np.zeros((3, 3)))
    with pytest.raises(ModelFilesError, match="lacks"):
        load_head(partial)


def test_licence_notice_ships_with_the_model():
    notice = (Path(__file__).resolve().parents[1] / "engine/head/data/ICT_FACE_MODEL_LICENSE.md").read_text()
    assert "MIT License" in notice and "USC Institute for Creative Technologies" in notice
    assert "Permission is hereby granted" in notice


def test_multipie_table_is_consistent(model):
    from engine.head.multipie68 import MULTIPIE68_TO_MEDIAPIPE
    table = np.asarray(MULTIPIE68_TO_MEDIAPIPE)
    assert table.shape == (68,) and table.max() < 478
    assert (model.landmark_weights[table] > 0).all()
    points = model.landmarks(model.mean)[table]
    # Nose tip (30) in front of the eye corners (36, 45); mouth corners (48, 54) left-right.
    assert points[30, 2] > points[[36, 45], 2].max() and points[54, 0] > 0 > points[48, 0]


def test_bfm_plugs_in_through_the_same_interface(tmp_path):
    """The official BFM (generated files in the exact official formats, a dome with random
    bases: wiring, not a face) as a HeadModel: units, landmarks, subdivision and the coarse
    fit run on it like on the ICT head."""
    from engine.detect.landmarks import FaceLandmarks
    from engine.head.multipie68 import MULTIPIE68_TO_MEDIAPIPE
    from engine.levels.coarse import fit_coarse
    from engine.pipeline import load_model
    from engine.result import Camera
    from official_fakes import write_official_tree

    fields = write_official_tree(tmp_path)
    head = load_model(tmp_path)
    assert isinstance(head, HeadModel) and head.expression_prior == "gaussian"
    assert head.n_vertices == 35709 and head.n_identity == 80 and len(head.expression_names) == 64
    mean_dm = fields["meanshape"].reshape(-1, 3)
    np.testing.assert_allclose(head.mean, (mean_dm - mean_dm.mean(0)) / 10, atol=1e-6)   # metres
    assert (head.landmark_weights > 0).sum() == len(set(MULTIPIE68_TO_MEDIAPIPE))
    keypoints = fields["keypoints"].astype(int).ravel() - 1
    table = np.asarray(MULTIPIE68_TO_MEDIAPIPE)
    unique = np.array([(table == t).sum() == 1 for t in table])     # jaw points may share one
    assert unique.sum() > 50
    np.testing.assert_allclose(head.landmarks(head.mean)[table[unique]], head.mean[keypoints[unique]],
                               atol=1e-7)
    fine = head.subdivided(1)
    assert (fine.faces >= 0).all() and fine.n_vertices > 2 * head.n_vertices
    used = head.landmark_weights > 0
    moved = np.linalg.norm(fine.landmarks(fine.mean) - head.landmarks(head.mean), axis=1)[used]
    assert moved.max() < 0.002
    # The coarse fit recovers a known pose from the head's own projected landmarks.
    cam = Camera(rotation=np.eye(3), translation=np.array([0.0, 0.0, -0.6]), focal_px=1000.0,
                 principal_px=(256.0, 256.0), image_size=(512, 512))
    pts = head.landmarks(head.mean).astype(np.float64)
    px = cam.project(pts)
    z = -cam.to_camera(pts)[:, 2]
    lm = FaceLandmarks(points=np.c_[px, (z - z.mean()) * 1000.0 / 0.6].astype(np.float32),
                       box=(0.0, 0.0, 512.0, 512.0), score=1.0, image_size=(512, 512), warnings=())
    fit = fit_coarse(head, [lm], [1000.0], iterations=300)
    assert fit.views[0].landmark_rms_px < 1.0
    np.testing.assert_allclose(fit.views[0].camera.translation, cam.translation, atol=0.01)
