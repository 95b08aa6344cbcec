"""Clean-room HRN (engine.hrn_official): strict loading of files in the exact official formats
(random weights, tests/official_fakes.py), network shapes, parity facts that need no real
weights, alignment maths, assets check and downloader, and the whole photo ->
FaceReconstruction -> Blender object chain on the astronaut photo. Random-weight outputs are
only checked for shapes, units, frames and consistency, never shown."""
from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import math
import os
import re
import signal
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.errors import ModelFilesError
from engine.geometry import sh
from engine.hrn_official import align, assets, bfm, checkpoint, convert, layout, net_recon, pix2pix, uv
from engine.hrn_official.deretouch import DeRetouchUNet
from engine.hrn_official.face_mask import face_oval_mask
from engine.hrn_official.model import OfficialHRN
from official_fakes import FAKE_ANGLES, write_official_tree

LAYOUT_MD = Path("/work/shared/hrn/OFFICIAL-LAYOUT.md")


@pytest.fixture(scope="session")
def tree(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("hrn_assets")
    fields = write_official_tree(root)
    return root, fields


@pytest.fixture(scope="session")
def hrn(tree) -> OfficialHRN:
    return OfficialHRN.load(tree[0], "cpu")


# ---------------------------------------------------------------- networks and strict loading
@pytest.mark.skipif(not LAYOUT_MD.exists(), reason="manifest not available")
def test_state_dict_keys_shapes_dtypes_match_official_manifest():
    rows = {}
    for line in LAYOUT_MD.read_text().splitlines():
        m = re.match(r"\| `([^`]+)` \| (\([^)]*\)) \| (\w+) \|", line)
        if m:
            rows[m.group(1)] = (m.group(2), m.group(3))
    nets = {"net_recon": net_recon.ReconNet(), "mid_net": pix2pix.mid_net(),
            "high_net": pix2pix.high_net(), "generator": DeRetouchUNet()}
    for prefix, net in nets.items():
        ours = {f"{prefix}.{k}": (str(tuple(v.shape)), str(v.dtype)[6:]) for k, v in net.state_dict().items()}
        theirs = {k: v for k, v in rows.items() if k.startswith(prefix + ".")}
        assert list(ours) == list(theirs), prefix
        assert ours == theirs, prefix
    assert len(nets["net_recon"].state_dict()) == 332 and len(nets["generator"].state_dict()) == 136


def test_generator_forward_shape_range_and_size_check():
    net = pix2pix.high_net().eval()
    with torch.no_grad():
        out = net(torch.rand(1, 9, 32, 32))
    assert out.shape == (1, 1, 32, 32) and out.abs().max() <= 1
    with pytest.raises(ValueError, match="divisible by 4"):
        net(torch.rand(1, 9, 30, 30))


def test_renamed_key_and_wrong_shape_are_named(tree, tmp_path):
    content = torch.load(tree[0] / layout.BY_KEY["hrn"].github_path, map_location="cpu", weights_only=True)
    mid = dict(content["mid_net"])
    mid["model.1.weights"] = mid.pop("model.1.weight")
    with pytest.raises(ModelFilesError) as err:
        checkpoint.hrn_networks_from({**content, "mid_net": mid}, tmp_path / "epoch_10.pth")
    msg = str(err.value)
    assert "epoch_10.pth [mid_net]" in msg and "missing key(s) 'model.1.weight'" in msg
    assert "unexpected key(s) 'model.1.weights'" in msg
    high = dict(content["high_net"])
    high["model.26.weight"] = torch.zeros(3, 64, 7, 7)
    with pytest.raises(ModelFilesError, match=r"'model.26.weight' expected shape \(1, 64, 7, 7\), "
                                              r"found \(3, 64, 7, 7\)"):
        checkpoint.hrn_networks_from({**content, "high_net": high}, tmp_path / "epoch_10.pth")
    with pytest.raises(ModelFilesError, match="missing entry 'beta'"):
        checkpoint.hrn_networks_from({k: v for k, v in content.items() if k != "beta"}, "x.pth")
    with pytest.raises(ModelFilesError, match="unexpected entry 'extra'"):
        checkpoint.hrn_networks_from({**content, "extra": 1}, "x.pth")
    # Training state is accepted and ignored; alpha/beta come out as floats; weights are the file's.
    nets = checkpoint.hrn_networks_from({**content, "opt_00": {"state": {}}, "sched_00": {}}, "x.pth")
    assert (nets.alpha, nets.beta) == pytest.approx((0.37, 0.21))
    assert not nets.mid.training
    assert torch.equal(nets.high.model[26].weight, content["high_net"]["model.26.weight"])
    assert all(not t.is_meta for t in nets.recon.state_dict().values())
    # A wrong-shaped tensor in a file on disk (de-retouching UNet, key 'generator').
    bad = torch.load(tree[0] / layout.BY_KEY["deretouch"].github_path, weights_only=True)
    bad["generator"]["outc.conv.weight"] = torch.zeros(3, 32, 1, 1)
    path = tmp_path / "de-retouching.pth"
    torch.save(bad, path)
    with pytest.raises(ModelFilesError, match=r"de-retouching.pth \[generator\].*'outc.conv.weight' "
                                              r"expected shape \(3, 64, 1, 1\), found \(3, 32, 1, 1\)"):
        checkpoint.load_deretouch(path)


def test_truncated_and_missing_files_say_what_to_do(tree, tmp_path):
    src = tree[0] / layout.BY_KEY["hrn"].github_path
    cut = tmp_path / "epoch_10.pth"
    with open(src, "rb") as fh:
        cut.write_bytes(fh.read(1 << 20))
    with pytest.raises(ModelFilesError, match=r"truncated or corrupt.*Google Drive.*damo/cv_resnet50"):
        checkpoint.load_hrn_networks(cut)
    with pytest.raises(ModelFilesError, match="not found.*epoch_10.pth"):
        checkpoint.load_hrn_networks(tmp_path / "nothing.pth")
    cut_mat = tmp_path / "BFM_model_front.mat"
    with open(tree[0] / layout.BY_KEY["bfm"].github_path, "rb") as fh:
        cut_mat.write_bytes(fh.read(4 << 20))
    with pytest.raises(ModelFilesError, match="BFM_model_front.mat"):
        bfm.BFMModel.load(cut_mat)


# ---------------------------------------------------------------- parity facts
def test_coefficient_split_and_sh_layout():
    coeffs = torch.arange(257, dtype=torch.float32).unsqueeze(0)
    c = net_recon.Coefficients.split(coeffs)
    assert [t.shape[1] for t in (c.identity, c.expression, c.texture, c.angles, c.gamma, c.translation)] == \
        [80, 64, 80, 3, 27, 3]
    assert c.expression[0, 0] == 80 and c.texture[0, 0] == 144 and c.angles[0, 0] == 224
    assert c.gamma[0, 0] == 227 and c.translation[0].tolist() == [254, 255, 256]
    shc = c.sh_coefficients()[0]                       # [9, 3]: R block first in the vector
    assert shc[0].tolist() == pytest.approx([227.8, 236.8, 245.8]) and shc[8, 2] == 253
    # SH constants of the official code, a_k c_k products (FACTS 1.11).
    n = torch.tensor([[0.3, -0.5, 0.81]])
    n = n / n.norm()
    a = [math.pi, 2 * math.pi / math.sqrt(3), 2 * math.pi / math.sqrt(8)]
    cc = [1 / math.sqrt(4 * math.pi), math.sqrt(3) / math.sqrt(4 * math.pi), 3 * math.sqrt(5) / math.sqrt(12 * math.pi)]
    x, y, z = n[0]
    ref = [a[0] * cc[0], -a[1] * cc[1] * y, a[1] * cc[1] * z, -a[1] * cc[1] * x, a[2] * cc[2] * x * y,
           -a[2] * cc[2] * y * z, 0.5 * a[2] * cc[2] / math.sqrt(3) * (3 * z * z - 1),
           -a[2] * cc[2] * x * z, 0.5 * a[2] * cc[2] * (x * x - y * y)]
    assert torch.allclose(sh.sh_basis(n)[0], torch.tensor(ref), atol=1e-6)


def test_bfm_indices_recentering_and_camera(tree, hrn):
    fields = tree[1]
    face = hrn.face
    assert face.triangles.dtype == torch.int64 and face.triangles.min() == 0
    assert np.array_equal(face.triangles.numpy(), fields["tri"].astype(np.int64) - 1)
    assert np.array_equal(face.keypoints.numpy(), fields["keypoints"].reshape(-1).astype(np.int64) - 1)
    assert face.point_buf.max() == bfm.NUM_FACES                 # padding face, 0-based
    assert np.array_equal(face.front_mask.numpy(), fields["frontmask2_idx"].reshape(-1).astype(np.int64) - 1)
    mean = fields["meanshape"].reshape(-1, 3)
    assert torch.allclose(face.mean_shape.mean(0), torch.zeros(3), atol=1e-4)  # float32 sums
    assert np.allclose(face.mean_shape.numpy(), mean - mean.mean(0), atol=1e-6)
    assert face.exp_basis.dtype == torch.float32                 # float64 on disk
    # Camera: z = 10 dm, f = 1015, centre 112, y up; the 512 crop is the same camera scaled.
    pts = torch.tensor([[0.0, 0.0, 0.0], [0.1, 0.2, 0.0], [-0.5, 0.3, 2.0]])
    want = torch.tensor([[112.0, 112.0], [112 + 1015 * 0.01, 112 + 1015 * 0.02],
                         [112 - 1015 * 0.5 / 8, 112 + 1015 * 0.3 / 8]])
    assert torch.allclose(bfm.project(pts), want, atol=1e-4)
    assert torch.allclose(bfm.project(pts, 512), want * 512 / 224, atol=1e-3)
    # Rotation R = Rz Ry Rx: yaw +90 deg turns +x into -z; pitch +90 turns +y into +z.
    r = bfm.rotation(torch.tensor([[0.0, math.pi / 2, 0.0], [math.pi / 2, 0.0, 0.0]]))
    assert torch.allclose(r[0] @ torch.tensor([1.0, 0, 0]), torch.tensor([0.0, 0, -1]), atol=1e-6)
    assert torch.allclose(r[1] @ torch.tensor([0.0, 1, 0]), torch.tensor([0.0, 0, 1]), atol=1e-6)
    # Normals of the fake dome face the camera (+z) near its centre.
    normals = face.vertex_normals(face.mean_shape.unsqueeze(0))[0]
    centre = (face.mean_shape[:, :2] - face.mean_shape[:, :2].mean(0)).norm(dim=1) < 0.2
    assert normals[centre, 2].min() > 0.9
    assert torch.allclose(normals.norm(dim=1), torch.ones(len(normals)), atol=1e-5)


def test_index_fields_must_be_whole_and_in_range():
    with pytest.raises(ModelFilesError, match="'tri' must hold 1-based whole-number indices"):
        bfm._indices(np.array([[1.0, 2.5, 3.0]], np.float32), 10, "tri", Path("x.mat"))
    with pytest.raises(ModelFilesError, match="in 1..10"):
        bfm._indices(np.array([[0.0, 2.0, 3.0]], np.float32), 10, "tri", Path("x.mat"))
    assert bfm._indices(np.array([[1.0, 10.0]], np.float32), 10, "k", Path("x")).tolist() == [[0, 9]]


def test_unwrap_quirk_and_vertex_sampling():
    img = torch.arange(16, dtype=torch.float32).reshape(1, 1, 4, 4)   # value = 4 row + col
    # A texel whose 3D point projects (224 camera, scaled to 4 px) to x = 1.25, y_up = 1.5,
    # so row = 4 - 1 - 1.5 = 1.5: official weights give row 1 weight 0.5 ... use y_up = 1.75.
    x_px, y_up = 1.25, 1.75
    p = torch.tensor([[[[(x_px * 56 - 112) * 10 / 1015, (y_up * 56 - 112) * 10 / 1015, 0.0]]]])
    got = uv.unwrap(p, torch.ones(1, 1, dtype=torch.bool), img)[0, 0, 0, 0]
    row = 4 - 1 - y_up                                                   # 1.25: i0 = 1, f = 0.25
    swapped = (4 * 1 * 0.25 + 4 * 2 * 0.75) + x_px                       # row i0 gets f (quirk)
    assert got.item() == pytest.approx(swapped, abs=1e-4)
    assert got.item() != pytest.approx(4 * row + x_px, abs=1e-3)         # not standard bilinear
    # Uncovered texels read pixel (h-1, 0) like the official NaN -> 0 path.
    assert uv.unwrap(p, torch.zeros(1, 1, dtype=torch.bool), img)[0, 0, 0, 0].item() == 12.0
    # Vertex sampling: corner-aligned (col = u w, row = h - v h), standard bilinear.
    grid = torch.arange(16, dtype=torch.float32).reshape(1, 4, 4, 1)
    uvs = torch.tensor([[0.5, 0.5], [0.375, 0.625], [0.0, 1.0]])
    got = uv.sample_at_vertices(grid, uvs)[0, :, 0]
    assert got.tolist() == pytest.approx([4 * 2 + 2, 4 * 1.5 + 1.5, 0.0])


def test_alignment_recovers_a_known_similarity():
    template = np.array([[-0.3, 0.3, 0.1], [0.3, 0.3, 0.1], [0.0, 0.0, 0.4], [-0.25, -0.35, 0.1],
                         [0.25, -0.35, 0.1]])
    s_true, t_true = 400.0, np.array([310.0, 250.0])
    five = template[:, :2] * s_true + t_true                       # y-up pixel coordinates
    t, s = align.fit_similarity(five, template)
    assert s == pytest.approx(s_true) and np.allclose(t, t_true)
    h0, w0 = 480, 640
    photo = np.zeros((h0, w0, 3), np.uint8)
    nx, ny = five[2].round().astype(int)                           # a white dot at the nose
    photo[h0 - 1 - ny - 2:h0 - 1 - ny + 3, nx - 2:nx + 3] = 255
    for size in (224, 512):
        crop = align.align_crop(photo, five, template, size)
        scale = 102 * size / 224 / s_true
        assert crop.scale == pytest.approx(scale)
        assert crop.resized == (int(w0 * scale), int(h0 * scale))
        assert crop.offset == (int(crop.resized[0] / 2 - size / 2 + (t_true[0] - w0 / 2) * scale),
                               int(crop.resized[1] / 2 - size / 2 + (h0 / 2 - t_true[1]) * scale))
        # Landmarks land at 102 S/224 * template + S/2 (up to the integer resize).
        assert np.allclose(crop.landmarks, template[:, :2] * 102 * size / 224 + size / 2, atol=1.0)
        # The dot appears where the landmark transform says (crop rows are y down).
        ys, xs = np.nonzero(crop.image[..., 0] > 0.5)
        lx, ly_up = crop.landmarks[2]
        assert abs(xs.mean() - lx) < 1.5 and abs(ys.mean() - (size - 1 - ly_up)) < 1.5
        back = crop.crop_to_photo(np.array([xs.mean() + 0.5, ys.mean() + 0.5]), (w0, h0))
        assert np.allclose(back, [nx + 0.5, h0 - 1 - ny + 0.5], atol=1.5)


def test_five_points_from_mediapipe_groups():
    from engine.detect import landmarks as L

    pts = np.zeros((478, 2))
    pts[:] = [200.0, 200.0]
    pts[L.RIGHT_EYE] = [150.0, 100.0]; pts[L.RIGHT_EYE[:2]] = [[130.0, 100.0], [170.0, 100.0]]
    pts[L.LEFT_EYE] = [250.0, 100.0]; pts[L.LEFT_EYE[:2]] = [[230.0, 100.0], [270.0, 100.0]]
    pts[L.LIPS] = [200.0, 250.0]; pts[L.LIPS[:2]] = [[260.0, 250.0], [140.0, 250.0]]
    pts[align.MEDIAPIPE_NOSE_TIP] = [200.0, 180.0]
    five = align.five_points_from_mediapipe(pts, image_height=400)
    # pixel-index coordinates (-0.5), y up (H - 1 - y); eyeL = image left = subject's right.
    want = np.array([[150, 100], [250, 100], [200, 180], [140, 250], [260, 250]]) - 0.5
    want[:, 1] = 399 - want[:, 1]
    assert np.allclose(five, want)


# ---------------------------------------------------------------- assets check and downloader
def test_assets_check_both_layouts_and_cli(tree, tmp_path, capsys):
    root = tree[0]
    statuses = {s.entry.key: s for s in assets.check(root)}
    assert all(statuses[e.key].loads for e in layout.FILES if e.needed)
    assert statuses["hrn"].size == (root / layout.BY_KEY["hrn"].github_path).stat().st_size
    assert statuses["segment"].path is None
    # The flat ModelScope layout is found too (links to the same files).
    flat = tmp_path / "ms"
    for e in layout.FILES:
        if e.needed:
            (flat / e.modelscope_path).parent.mkdir(parents=True, exist_ok=True)
            os.symlink(root / e.github_path, flat / e.modelscope_path)
    found = {s.entry.key: s for s in assets.check(flat, load=False)}
    assert found["hrn"].path == flat / "pytorch_model.pt" and found["bfm"].path.parent.name == "assets"
    from engine.hrn_official.__main__ import main

    assert main(["assets", "check", str(root)]) == 0
    out = capsys.readouterr().out
    assert "All needed files are present and load." in out and "hrn_v1.1/epoch_10.pth" in out
    (flat / "pytorch_model.pt").unlink()
    assert main(["assets", "check", str(flat), "--no-load"]) == 1
    assert "damo/cv_resnet50_face-reconstruction" in capsys.readouterr().out


def test_download_offline_message(tmp_path):
    with pytest.raises(ModelFilesError) as err:
        assets.download("http://127.0.0.1:9/epoch_10.pth", tmp_path / "x" / "epoch_10.pth", timeout=5)
    msg = str(err.value)
    assert "Cannot download" in msg and "drive.google.com" in msg and str(tmp_path / "x" / "epoch_10.pth") in msg


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    payload = b""
    ranges: list = []

    def do_GET(self):  # noqa: N802
        rng = self.headers.get("Range")
        start = int(rng.split("=")[1].rstrip("-")) if rng else 0
        type(self).ranges.append(start)
        body = self.payload[start:]
        self.send_response(206 if rng else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_download_resumes_and_verifies(tmp_path):
    payload = np.random.default_rng(0).bytes(3 << 20)
    _RangeHandler.payload, _RangeHandler.ranges = payload, []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/f.bin"
        dest = tmp_path / "f.bin"
        (tmp_path / "f.bin.part").write_bytes(payload[:1000000])      # an interrupted download
        seen = []
        digest = hashlib.sha256(payload).hexdigest()
        assert assets.download(url, dest, sha256=digest, progress=lambda s, f: seen.append(f)) == dest
        assert dest.read_bytes() == payload and _RangeHandler.ranges == [1000000]
        assert seen[-1] == pytest.approx(1.0) and not (tmp_path / "f.bin.part").exists()
        with pytest.raises(ModelFilesError, match="sha256"):
            assets.download(url, tmp_path / "g.bin", sha256="0" * 64)
        assert not (tmp_path / "g.bin.part").exists() and not (tmp_path / "g.bin").exists()
    finally:
        server.shutdown()


# ---------------------------------------------------------------- photo -> FaceReconstruction
def test_working_image_and_crop_point_maps():
    small = np.zeros((1200, 2000, 3), np.uint8)
    assert align.working_image(small) is small                       # no side over 2000 px
    big = np.zeros((2400, 1201, 3), np.uint8)
    assert align.working_image(big).shape == (1500, int(1201 * 1500 / 2400), 3)
    crop = align.Crop(np.zeros((224, 224, 3), np.float32), 224, 0.5, (321, 240), (40, -7), np.zeros((5, 2)))
    pts = np.array([[10.0, 20.0], [630.5, 470.25]])
    back = crop.crop_to_photo(crop.photo_to_crop(pts, (640, 480)), (640, 480))
    assert np.allclose(back, pts)


def test_face_oval_mask_fills_the_contour():
    from engine.detect.landmarks import CONTOUR

    points = np.zeros((478, 2))
    angle = np.linspace(0, 2 * np.pi, len(CONTOUR), endpoint=False)
    points[CONTOUR] = np.stack([112 + 60 * np.cos(angle), 100 + 80 * np.sin(angle)], 1)
    mask = face_oval_mask(points, 224)
    assert mask.shape == (224, 224) and mask.dtype == np.float32
    assert mask[100, 112] == 1.0 and mask[5, 5] == 0.0 and mask[100, 180] == 0.0
    assert mask.sum() == pytest.approx(np.pi * 60 * 80, rel=0.02)
    assert 0 < mask[100, 171] < 1 or 0 < mask[100, 172] < 1               # antialiased edge


def test_photo_camera_reproduces_official_projection():
    """Our Camera vs the official 224-crop projection mapped through the crop, for a rotated,
    translated head and a crop resized anisotropically by the integer truncation."""
    rng = np.random.default_rng(0)
    crop = align.Crop(np.zeros((224, 224, 3), np.float32), 224, 0.437, (279, 209), (61, 14), np.zeros((5, 2)))
    photo_size = (640, 480)                       # 640 * 0.437 = 279.7 -> 279; 480 * 0.437 = 209.8 -> 209
    rot = bfm.rotation(torch.tensor([[0.2, -0.4, 0.1]], dtype=torch.float64))[0]
    t = torch.tensor([0.3, -0.2, 0.5], dtype=torch.float64)
    verts = rng.uniform(-0.9, 0.9, (500, 3))      # decimetres, head-sized
    official = bfm.project(bfm.pose(torch.from_numpy(verts)[None], rot[None], t[None]))[0].numpy()
    want = convert.crop224_to_photo(official, crop, photo_size)
    cam = convert.photo_camera(rot, t, crop, photo_size)
    got = cam.project(verts * convert.DM_TO_M)
    kx, ky = 640 / 279, 480 / 209
    dist = np.abs(official - 112.0).max()        # crop px from the crop centre
    assert np.abs(got - want).max() <= abs(kx - ky) / 2 * dist * 1.001 + 1e-9
    assert np.abs(got - want).max() < 0.5
    # Pixel convention: the principal ray lands on crop pixel-index (112, 223 - 112) = (112, 111).
    assert np.allclose(cam.principal_px, [(112.5 + 61) * kx, (111.5 + 14) * ky])
    # Isotropic resize: exact.
    crop_iso = align.Crop(crop.image, 224, 0.5, (320, 240), (61, 14), crop.landmarks)
    cam_iso = convert.photo_camera(rot, t, crop_iso, photo_size)
    assert np.allclose(cam_iso.project(verts * 0.1), convert.crop224_to_photo(official, crop_iso, photo_size),
                       atol=1e-9)


@pytest.fixture(scope="session")
def official_result(hrn, astronaut_path):
    """One reconstruction of the astronaut photo with the fake files; the official outputs are
    captured on the way (a spy on ``OfficialHRN.run``)."""
    from engine.detect.landmarks import detect_landmarks
    from engine.hrn_official.reconstruct import reconstruct_with_model
    from engine.io.image_io import load_photo

    photo = load_photo(astronaut_path)
    lm = detect_landmarks(photo)
    captured, stages = {}, []
    run = hrn.run
    hrn.run = lambda *a, **k: captured.setdefault("out", run(*a, **k))
    try:
        result = reconstruct_with_model(hrn, photo, lm, progress=lambda s, f: stages.append((s, f)),
                                        albedo_size=256, displacement_size=512)
    finally:
        del hrn.run
    return photo, lm, result, captured["out"], stages


def test_official_outputs_have_official_shapes(hrn, official_result):
    out = official_result[3]
    n = bfm.NUM_VERTICES
    assert out.coeffs.shape == (1, 257) and out.shape.shape == (1, n, 3)
    assert out.position_map.shape == out.texture_map.shape == out.deretouched_albedo.shape == (1, 3, 256, 256)
    assert out.retouch_blend.shape == (1, 3, 512, 512)
    assert 0 <= out.retouch_blend.min() and out.retouch_blend.max() <= 1     # UNet sigmoid
    assert out.deformation_map.shape == (1, 3, 64, 64) and out.mid_offsets.shape == (1, n, 3)
    assert out.displacement_map.shape == (1, 1, 256, 256)
    for t in (out.coeffs, out.deformation_map, out.displacement_map, out.deretouched_albedo):
        assert torch.isfinite(t).all()
    # Output scaling by the learned alpha/beta: |D| <= 0.1 alpha, |d| <= 0.1 beta (tanh range).
    assert out.deformation_map.abs().max() <= 0.1 * hrn.nets.alpha + 1e-6
    assert out.displacement_map.abs().max() <= 0.1 * hrn.nets.beta + 1e-6
    assert torch.all(out.position_map[0, :, ~hrn.raster.coverage] == 0)  # world2uv: uncovered = 0
    # The MediaPipe face mask reached the valid mask: zero at the chart border, > 0 inside.
    assert out.valid_mask.max() > 0.5 and out.valid_mask.min() == 0.0
    assert torch.allclose(out.coeffs[0, 224:227], torch.tensor(FAKE_ANGLES), atol=1e-6)


def test_reconstruction_is_valid_in_our_frame_and_units(hrn, official_result):
    photo, lm, result, out, stages = official_result
    n, f = bfm.NUM_VERTICES, bfm.NUM_FACES
    assert result.vertices.shape == (n, 3) and result.vertices.dtype == np.float32
    assert result.faces.shape == (f, 3) and result.faces.dtype == np.int32
    assert np.array_equal(result.face_uvs, result.faces) and result.uvs.shape == (n, 2)
    extent = result.vertices.max(0) - result.vertices.min(0)
    assert 0.1 < extent[0] < 0.3 and 0.1 < extent[1] < 0.3              # metres, head-sized
    assert np.allclose(result.vertices, out.shape[0].numpy() * 0.1, atol=1e-7)
    assert np.allclose(result.mid_offsets, out.mid_offsets[0].numpy() * 0.1, atol=1e-8)
    assert result.deformation_map.shape == (64, 64, 3)
    assert np.allclose(result.deformation_map[10, 20], out.deformation_map[0, :, 10, 20].numpy() * 0.1)
    assert result.displacement_map.shape == (512, 512)                   # upsampled from 256
    assert np.abs(result.displacement_map).max() <= 0.1 * 0.1 * hrn.nets.beta + 1e-7
    assert result.albedo.shape == (256, 256, 3) and 0 <= result.albedo.min() and result.albedo.max() <= 1
    conf = result.albedo_confidence
    assert conf.shape == (256, 256) and 0 <= conf.min() and conf.max() <= 1 and (conf > 0.5).mean() > 0.05
    # Expression deltas: metres per unit weight; the head minus its expression is the identity shape.
    assert result.expression_names[0] == "bfm_exp_00" and len(result.expression_names) == 64
    assert result.expression_deltas.shape == (64, n, 3)
    neutral = result.vertices - np.einsum("k,kvc->vc", result.expression, result.expression_deltas)
    ident = hrn.face.shape(out.coeffs[:, :80], torch.zeros(1, 64))[0].numpy() * 0.1
    assert np.allclose(neutral, ident, atol=2e-6)
    # Lighting: the network's gamma with init_lit on the DC term.
    assert np.allclose(result.sh_lighting[0], out.coeffs[0, [227, 236, 245]].numpy() + sh.HRN_INIT_LIT, atol=1e-6)
    assert result.metadata["weights"] == "official HRN weights"
    assert result.metadata["files"]["hrn"] == "epoch_10.pth"
    assert any("MediaPipe" in w for w in result.warnings)
    assert result.views[0].used and result.views[0].camera == result.camera
    fractions = np.array([fr for _, fr in stages])
    assert np.all(np.diff(fractions) > -1e-9) and fractions[-1] == pytest.approx(1.0)
    assert [s for s, _ in stages][0] == "Aligning face"


def test_reconstruction_camera_lands_on_the_face(hrn, official_result):
    photo, lm, result, out, _ = official_result
    cam = result.camera
    assert cam.image_size == (512, 512)
    # Every vertex projects where the official 224-crop camera puts it (through the crop).
    work = align.working_image((photo.rgb * 255 + 0.5).astype(np.uint8))
    five = align.five_points_from_mediapipe(lm.points, 512)
    crop = align.align_crop(work, five, hrn.landmark_template, 224)
    posed = bfm.pose(out.shape, out.rotation, out.translation)
    official = convert.crop224_to_photo(bfm.project(posed)[0].numpy(), crop, cam.image_size)
    ours = cam.project(result.vertices)
    err = np.abs(ours - official).max()
    print(f"camera vs official projection: max {err:.4f} px over {len(ours)} vertices")
    assert err < 0.25
    # The fake net predicts zero translation, so the model origin projects onto the photo
    # point the alignment maps to the template origin (POS fit), up to the crop's integer offset.
    t_fit, _ = align.fit_similarity(five, hrn.landmark_template)
    origin = cam.project(np.zeros((1, 3)))[0]
    assert np.allclose(origin, [t_fit[0] + 0.5, 512 - 1 - t_fit[1] + 0.5], atol=512 / crop.resized[0] + 1e-6)
    # The projected face lies on the detected face, and faces point towards the camera.
    x0, y0, x1, y1 = lm.box
    centroid = ours.mean(0)
    assert x0 < centroid[0] < x1 and y0 < centroid[1] < y1
    v_cam = cam.to_camera(result.vertices.astype(np.float64))
    a, b, c = (v_cam[result.faces[:, k]] for k in range(3))
    normals = np.cross(b - a, c - a)                  # counter-clockwise from outside = outward
    assert normals[:, 2].sum() > 0.3 * np.linalg.norm(normals, axis=1).sum()


def test_reconstruction_save_load_and_blender_object(official_result, tmp_path):
    from engine.result import FaceReconstruction

    result = official_result[2]
    back = FaceReconstruction.load(result.save(tmp_path / "out"))
    for name in FaceReconstruction._ARRAYS:
        assert np.array_equal(getattr(back, name), getattr(result, name)), name
    assert back.camera.focal_px == result.camera.focal_px and back.warnings == result.warnings
    assert back.expression_names == result.expression_names
    assert back.metadata["files"] == result.metadata["files"]

    bpy = pytest.importorskip("bpy")
    import hrn_blender
    from hrn_blender.scene.build import build_head

    bpy.ops.wm.read_factory_settings(use_empty=True)
    hrn_blender.register()
    try:
        head = build_head(back, "hrn_official", bpy.context.scene.collection)
        assert len(head.data.vertices) == bfm.NUM_VERTICES and len(head.data.polygons) == bfm.NUM_FACES
        keys = head.data.shape_keys.key_blocks.keys()
        assert "bfm_exp_00" in keys and "bfm_exp_63" in keys
        assert bpy.data.objects.get("hrn_official camera") is not None
    finally:
        hrn_blender.unregister()
        # Freeing a 35k-vertex head with 64 shape keys inside read_factory_settings takes
        # ~90 s; removing it first takes milliseconds.
        for obj in list(bpy.data.objects):
            bpy.data.objects.remove(obj)
        for mesh in list(bpy.data.meshes):
            bpy.data.meshes.remove(mesh)
        bpy.ops.wm.read_factory_settings(use_empty=True)


def test_reconstruct_official_errors_and_cancel(official_result, tmp_path):
    from engine.errors import Cancelled
    from engine.hrn_official.reconstruct import reconstruct_official

    photo, lm = official_result[:2]
    with pytest.raises(ModelFilesError, match="does not exist"):
        reconstruct_official(photo, lm, tmp_path / "nowhere", "cpu")
    with pytest.raises(ModelFilesError, match=r"epoch_10.pth.*put it at 'assets/pretrained_models/hrn_v1.1"):
        reconstruct_official(photo, lm, tmp_path, "cpu")


#: The official networks, by class, in the order OfficialHRN.run runs them: net_recon, the
#: de-retouching UNet, then mid_net and high_net (both pix2pix ResnetGenerators).
_NETWORKS = ("ReconNet", "DeRetouchUNet", "ResnetGenerator")


@contextlib.contextmanager
def _networks_run():
    """The official networks that run meanwhile, in order (a global forward hook)."""
    ran = []

    def record(module, inputs, output):
        if type(module).__name__ in _NETWORKS:
            ran.append(type(module).__name__)

    handle = torch.nn.modules.module.register_module_forward_hook(record)
    try:
        yield ran
    finally:
        handle.remove()


def test_reconstruct_official_cancelled_in_the_middle_of_the_networks(tree, official_result):
    """The progress callback says stop once two of the four networks ran (files loaded, face
    aligned): Cancelled is raised there and the remaining networks never run."""
    from engine.errors import Cancelled
    from engine.hrn_official.reconstruct import reconstruct_official

    photo, lm = official_result[:2]
    reports = []

    def progress(stage, fraction):
        reports.append(fraction)
        return "DeRetouchUNet" not in ran

    with _networks_run() as ran, pytest.raises(Cancelled):
        reconstruct_official(photo, lm, tree[0], "cpu", progress=progress)
    assert ran == ["ReconNet", "DeRetouchUNet"]
    assert 0.3 < reports[-1] < 0.8  # stopped mid-way, not at the start or the end


def test_cli_ctrl_c_during_the_official_networks_writes_nothing(tree, astronaut_path, tmp_path, capsys):
    """Ctrl-C (a real SIGINT, sent once two networks ran) stops `python -m engine reconstruct
    --weights`: exit code 130, a Cancelled event, no output folder and nothing else left."""
    from engine import cli

    out = tmp_path / "result"

    def interrupt(module, inputs, output):
        if type(module).__name__ == "DeRetouchUNet":
            signal.raise_signal(signal.SIGINT)

    with _networks_run() as ran:
        handle = torch.nn.modules.module.register_module_forward_hook(interrupt)
        try:
            code = cli.main(["reconstruct", str(astronaut_path), "--weights", str(tree[0]),
                             "--out", str(out), "--progress", "jsonl"])
        finally:
            handle.remove()
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert ran == ["ReconNet", "DeRetouchUNet"]
    assert code == 130
    assert events[-1]["event"] == "error" and events[-1]["kind"] == "Cancelled"
    assert any(e["event"] == "progress" for e in events) and not any(e["event"] == "done" for e in events)
    assert not out.exists() and list(tmp_path.iterdir()) == []
