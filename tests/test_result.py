"""FaceReconstruction: validation, exact save/load round trip, file formats."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from engine.errors import ModelFilesError
from engine.io import exr
from engine.result import Camera, EyeAppearance, FaceReconstruction, ViewRecord, triangle_faces, triangulate


def small_result(rng=np.random.default_rng(0)) -> FaceReconstruction:
    """A tiny, arbitrary (not reconstructed) result: a quad grid whose last quad is split into
    two triangles (the padded mixed layout) of a second material, with random maps."""
    n = 4
    ys, xs = np.mgrid[0:n, 0:n]
    verts = np.stack([xs.ravel() * 0.01, ys.ravel() * 0.01, np.zeros(n * n)], -1).astype(np.float32)
    idx = np.arange(n * n).reshape(n, n)
    faces = np.stack([idx[:-1, :-1], idx[:-1, 1:], idx[1:, 1:], idx[1:, :-1]], -1).reshape(-1, 4).astype(np.int32)
    a, b, c, d = faces[-1]
    faces = np.concatenate([faces[:-1], [[a, b, c, -1], [a, c, d, -1]]]).astype(np.int32)
    uvs = (verts[:, :2] / 0.03).astype(np.float32)
    cam = Camera(rotation=np.eye(3), translation=np.array([0.0, 0.0, -0.5]), focal_px=1000.0,
                 principal_px=(320.0, 240.0), image_size=(640, 480))
    return FaceReconstruction(
        vertices=verts, mid_offsets=rng.normal(0, 1e-3, verts.shape).astype(np.float32), faces=faces,
        uvs=uvs, face_uvs=faces.copy(), deformation_map=rng.normal(0, 1e-3, (8, 8, 3)).astype(np.float32),
        displacement_map=rng.normal(0, 2e-4, (16, 16)).astype(np.float32),
        albedo=rng.uniform(0, 1, (16, 16, 3)).astype(np.float32),
        albedo_confidence=rng.uniform(0, 1, (16, 16)).astype(np.float32), camera=cam,
        identity=rng.normal(size=5).astype(np.float32), expression=rng.uniform(size=2).astype(np.float32),
        expression_names=("jawOpen", "eyeBlinkLeft"),
        face_material=np.r_[np.zeros(len(faces) - 2), 1, 1].astype(np.uint8),
        material_names=("skin", "teeth"),
        eyes=EyeAppearance(iris_srgb=(0.2, 0.3, 0.4), sclera_srgb=(0.9, 0.85, 0.8), iris_scale=1.05),
        expression_deltas=rng.normal(0, 1e-3, (2, n * n, 3)).astype(np.float32),
        sh_lighting=rng.normal(size=(9, 3)).astype(np.float32),
        views=(ViewRecord(image_path="a.jpg", used=True, camera=cam, expression=np.ones(2, np.float32),
                          landmarks=rng.uniform(0, 640, (478, 2)).astype(np.float32),
                          displacement_map=rng.normal(0, 2e-4, (16, 16)).astype(np.float32)),
               ViewRecord(image_path="b.jpg", used=False, note="no face found")),
        metadata={"device": "cpu"}, warnings=("one warning",))


def test_round_trip_is_exact(tmp_path):
    res = small_result()
    res.save(tmp_path)
    back = FaceReconstruction.load(tmp_path)
    for name in FaceReconstruction._ARRAYS:
        a, b = getattr(res, name), getattr(back, name)
        assert a.dtype == b.dtype and np.array_equal(a, b), name
    assert back.camera.to_json() == res.camera.to_json()
    assert back.expression_names == res.expression_names
    assert back.material_names == res.material_names and back.eyes == res.eyes
    assert back.warnings == res.warnings and back.metadata == res.metadata
    assert [v.used for v in back.views] == [True, False]
    assert back.views[1].note == "no face found"
    for name in ViewRecord._ARRAYS:
        a, b = getattr(res.views[0], name), getattr(back.views[0], name)
        assert a.dtype == b.dtype and np.array_equal(a, b), name
    assert back.views[0].camera.to_json() == res.views[0].camera.to_json()
    assert back.views[1].displacement_map.shape == (0, 0)  # unused view: nothing stored


def test_saved_files_are_real_formats(tmp_path):
    res = small_result()
    res.save(tmp_path)
    meta = json.loads((tmp_path / "reconstruction.json").read_text())
    assert len(meta["views"]) == 2
    disp = np.asarray(Image.open(tmp_path / "displacement.png"))
    assert disp.dtype == np.uint16
    enc = meta["displacement_encoding"]
    decoded = (disp / 65535.0 - enc["midlevel"]) * enc["scale"]
    assert np.abs(decoded - res.displacement_map).max() < enc["scale"] / 65535.0
    assert np.asarray(Image.open(tmp_path / "albedo.png")).shape == (16, 16, 3)
    assert np.array_equal(exr.read_exr(tmp_path / "deformation.exr"), res.deformation_map)
    obj = (tmp_path / "detailed.obj").read_text().splitlines()
    vs = np.array([[float(x) for x in line.split()[1:]] for line in obj if line.startswith("v ")])
    assert np.allclose(vs, res.detailed_vertices, atol=1e-6)
    faces = [line.split()[1:] for line in obj if line.startswith("f ")]
    assert len(faces) == len(res.faces) and [len(f) for f in faces[-3:]] == [4, 3, 3]
    assert [line for line in obj if line.startswith("usemtl")] == ["usemtl skin", "usemtl teeth"]
    mtl = (tmp_path / "head.mtl").read_text()
    assert "newmtl skin" in mtl and "map_Kd albedo.png" in mtl and "newmtl teeth" in mtl


def test_exr_is_readable_by_opencv(tmp_path):
    img = np.random.default_rng(1).normal(size=(5, 7, 3)).astype(np.float32)
    exr.write_exr(tmp_path / "m.exr", img)
    code = ("import cv2, numpy as np, sys; a = cv2.imread(sys.argv[1], cv2.IMREAD_UNCHANGED);"
            "np.save(sys.argv[2], a)")
    env = dict(os.environ, OPENCV_IO_ENABLE_OPENEXR="1")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "m.exr"), str(tmp_path / "m.npy")],
                   check=True, env=env)
    assert np.array_equal(np.load(tmp_path / "m.npy")[:, :, ::-1], img)  # OpenCV reads BGR


def test_invalid_shapes_are_rejected():
    res = small_result()
    with pytest.raises(ValueError, match="mid_offsets"):
        res.replace(mid_offsets=res.mid_offsets[:3])
    with pytest.raises(ValueError, match="expression_deltas"):
        res.replace(expression_deltas=res.expression_deltas[:1])


def test_load_errors_name_the_problem(tmp_path):
    with pytest.raises(ModelFilesError, match="Cannot read"):
        FaceReconstruction.load(tmp_path)
    (tmp_path / "reconstruction.json").write_text(json.dumps({"format": "other"}))
    np.savez(tmp_path / "arrays.npz", x=np.zeros(1))
    with pytest.raises(ModelFilesError, match="not an HRN for Blender result"):
        FaceReconstruction.load(tmp_path)


def test_camera_projection_matches_conventions():
    cam = small_result().camera
    # A point straight ahead of the camera projects to the principal point; +Y (up) goes up in
    # the image (smaller row), +X goes right.
    p = np.array([[0.0, 0.0, 0.0], [0.01, 0.0, 0.0], [0.0, 0.01, 0.0]])
    px = cam.project(p)
    assert np.allclose(px[0], cam.principal_px)
    assert px[1, 0] > px[0, 0] and px[2, 1] < px[0, 1]
    assert np.isclose(px[1, 0] - px[0, 0], 1000.0 * 0.01 / 0.5)


def test_triangulate_keeps_orientation():
    quads = np.array([[0, 1, 2, 3]])
    assert triangulate(quads).tolist() == [[0, 1, 2], [0, 2, 3]]
    mixed = np.array([[0, 1, 2, 3], [4, 5, 6, -1], [7, 8, 9, 10]])
    assert triangulate(mixed).tolist() == [[0, 1, 2], [0, 2, 3], [4, 5, 6], [7, 8, 9], [7, 9, 10]]
    assert triangle_faces(mixed).tolist() == [0, 0, 1, 2, 2]
