"""The official 106-point landmark net + two-pass crop, and the 5-point box regressor crop
for the 68-point detector (engine.hrn_official.landmark106 / .bbox_regressor)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.io import savemat

from engine.errors import ModelFilesError, NoFaceError
from engine.hrn_official import bbox_regressor as bbr
from engine.hrn_official.landmark106 import (PIXEL_MEAN, Landmark106Net, five_from_106,
                                             landmarks106, load_landmark106, soft_argmax)
from tests.fake_landmark106 import write_bbox_regressor, write_landmark106


@pytest.fixture(scope="module")
def fake_pth(tmp_path_factory):
    return write_landmark106(tmp_path_factory.mktemp("lm106") / "large_base_net.pth", seed=1)


@pytest.fixture(scope="module")
def fake_net(fake_pth):
    return load_landmark106(fake_pth)


def _content(fake_pth) -> dict:
    """A fresh copy of the fake file's content (quicker than building a new fake)."""
    return torch.load(fake_pth, weights_only=True)


# ---------------------------------------------------------------- loading

def test_fake_has_official_layout(fake_pth):
    state = _content(fake_pth)["state_dict"]
    assert all(k.startswith("module.") for k in state)
    assert tuple(state["module.block1.0.weight"].shape) == (64, 3, 3, 3)
    assert tuple(state["module.block1.2.weight"].shape) == (64,)                 # PReLU
    assert tuple(state["module.block9.conv.3.weight"].shape) == (512, 1, 3, 3)   # dw, x4
    assert tuple(state["module.block17.conv.6.weight"].shape) == (128, 256, 1, 1)
    assert tuple(state["module.block18.0.weight"].shape) == (256, 128, 3, 3)
    assert tuple(state["module.block19.weight"].shape) == (106, 256, 3, 3)
    assert "module.block19.bias" not in state
    assert "module.block5.conv.7.running_var" in state


def test_strict_load_strips_module_prefix(fake_pth, fake_net):
    saved = torch.load(fake_pth, weights_only=True)["state_dict"]
    loaded = fake_net.state_dict()
    assert set(loaded) == {k[len("module."):] for k in saved}
    for key in ("block19.weight", "block12.conv.4.running_mean", "block1.2.weight"):
        assert torch.equal(loaded[key], saved["module." + key])
    assert not fake_net.training


def test_loads_without_prefix(tmp_path, fake_pth):
    state = {k[len("module."):]: v for k, v in _content(fake_pth)["state_dict"].items()}
    torch.save({"state_dict": state}, tmp_path / "large_base_net.pth")
    assert isinstance(load_landmark106(tmp_path / "large_base_net.pth"), Landmark106Net)


def _save_modified(tmp_path, fake_pth, edit):
    content = _content(fake_pth)
    edit(content["state_dict"])
    torch.save(content, tmp_path / "large_base_net.pth")
    return tmp_path / "large_base_net.pth"


def test_renamed_key_is_named(tmp_path, fake_pth):
    path = _save_modified(tmp_path, fake_pth, lambda sd: sd.__setitem__(
        "module.block19.conv.weight", sd.pop("module.block19.weight")))
    with pytest.raises(ModelFilesError, match=r"block19\.weight.*block19\.conv\.weight"):
        load_landmark106(path)


def test_wrong_shape_is_named(tmp_path, fake_pth):
    path = _save_modified(tmp_path, fake_pth, lambda sd: sd.__setitem__("module.block1.2.weight", torch.ones(32)))
    with pytest.raises(ModelFilesError, match=r"block1\.2\.weight.*\(64,\).*\(32,\)"):
        load_landmark106(path)


def test_truncated_missing_and_wrong_structure(tmp_path, fake_pth):
    cut = tmp_path / "large_base_net.pth"
    data = fake_pth.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFilesError, match="truncated"):
        load_landmark106(cut)
    with pytest.raises(ModelFilesError, match="large_base_net.pth"):
        load_landmark106(tmp_path / "absent.pth")
    bare = tmp_path / "bare.pth"
    torch.save(_content(fake_pth)["state_dict"], bare)      # no 'state_dict' wrapper
    with pytest.raises(ModelFilesError, match="state_dict"):
        load_landmark106(bare)


# ---------------------------------------------------------------- network

def test_forward_shape_and_range(fake_net):
    x = torch.randn(2, 3, 224, 224) * 0.3
    with torch.no_grad():
        heat = fake_net.heatmaps(x)
        out = fake_net(x)
    assert heat.shape == (2, 106, 14, 14)
    assert out.shape == (2, 212) and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 13 / 14 + 1e-6
    assert (out[0] - out[1]).abs().max() > 1e-3                   # depends on the input


def test_soft_argmax_reports_row_as_x():
    heat = torch.zeros(1, 106, 14, 14)
    heat[0, 0, 3, 11] = 60.0               # landmark 0: hot cell at row 3, column 11
    heat[0, 1, 12, 1] = 60.0               # landmark 1: row 12, column 1
    out = soft_argmax(heat)
    assert out.shape == (1, 212)
    assert out[0, 0].item() == pytest.approx(3 / 14, abs=1e-6)     # "x" = row / 14
    assert out[0, 1].item() == pytest.approx(11 / 14, abs=1e-6)    # "y" = column / 14
    assert out[0, 2].item() == pytest.approx(12 / 14, abs=1e-6)
    assert out[0, 3].item() == pytest.approx(1 / 14, abs=1e-6)
    assert out[0, 4].item() == pytest.approx(6.5 / 14, abs=1e-6)   # flat map: the centre


# ---------------------------------------------------------------- two-pass crop

class _FixedPoints(torch.nn.Module):
    """Stands in for the net: always returns the same normalised points; keeps its inputs."""

    def __init__(self, points: np.ndarray):
        super().__init__()
        self.points = torch.tensor(points, dtype=torch.float32).reshape(1, 212)
        self.inputs: list[torch.Tensor] = []

    def forward(self, x):
        self.inputs.append(x.clone())
        return self.points


def _fixed_points() -> np.ndarray:
    p = np.random.default_rng(5).uniform(0.3, 0.7, (106, 2))
    p[0, 0], p[1, 0], p[2, 1], p[3, 1] = 0.2, 0.8, 0.1, 0.9      # bbox x 0.2..0.8, y 0.1..0.9
    return p.astype(np.float32).astype(np.float64)


def test_two_pass_crop_mapping():
    photo = np.empty((300, 400, 3), np.uint8)
    photo[:] = (200, 50, 10)
    p = _fixed_points()
    stub = _FixedPoints(p)
    out = landmarks106(stub, photo, (100, 80, 199, 179))
    # Pass 1: w = h = 100, side 135 centred on (149.5, 129.5) -> corner (82, 62); its points
    # span x 109..190, y 75.5..183.5 -> pass 2: side 1.35 * 109 = 147.15, same centre.
    side2 = 1.35 * 109
    expected = p * side2 + np.array([149.5 - side2 / 2, 129.5 - side2 / 2])
    assert out.shape == (106, 2) and out.dtype == np.float64
    np.testing.assert_allclose(out, expected, atol=1e-4)
    assert len(stub.inputs) == 2
    for x in stub.inputs:                       # both crops lie inside the photo
        assert x.shape == (1, 3, 224, 224) and x.dtype == torch.float32
        want = (np.array([200, 50, 10]) - np.array(PIXEL_MEAN)) / 255   # RGB minus (103.94, ...)
        np.testing.assert_allclose(x[0].mean((1, 2)).numpy(), want, atol=1e-6)


def test_crop_pads_with_rounded_mean_colour():
    photo = np.full((300, 400, 3), 255, np.uint8)
    stub = _FixedPoints(_fixed_points())
    landmarks106(stub, photo, (0, 0, 99, 99))   # side 135 from (-18, -18): 18 px padded
    first = stub.inputs[0][0].numpy()
    pad = (np.array([104, 117, 124]) - np.array(PIXEL_MEAN)) / 255    # OpenCV rounds the value
    np.testing.assert_allclose(first[:, 0, 0], pad, atol=1e-6)
    np.testing.assert_allclose(first[:, 112, 112], (255 - np.array(PIXEL_MEAN)) / 255, atol=1e-6)


def test_box_outside_photo_is_no_face():
    stub = _FixedPoints(_fixed_points())
    with pytest.raises(NoFaceError, match="outside the photo"):
        landmarks106(stub, np.zeros((300, 400, 3), np.uint8), (1000, 1000, 1100, 1100))


def test_real_network_on_photo(fake_net, astronaut_rgb):
    box = (170, 60, 270, 190)
    pts = landmarks106(fake_net, astronaut_rgb, box)
    assert pts.shape == (106, 2) and pts.dtype == np.float64 and np.all(np.isfinite(pts))
    # Pass 1 window: side 1.35 * 131 centred on (220, 125); pass 2 lies within 1.35x of it.
    side1 = 1.35 * 131
    assert np.all(np.abs(pts - [220, 125]) < 1.35 * (side1 + 1))


def test_five_from_106():
    pts = np.stack([np.arange(106), -np.arange(106)], axis=1)
    np.testing.assert_array_equal(five_from_106(pts), [[74, -74], [83, -83], [54, -54],
                                                       [84, -84], [90, -90]])


# ---------------------------------------------------------------- box regressor

#: Five points with mean (200, 150) and RMS radius exactly 50 (offsets (+-50, +-25) and 0).
FIVE = np.array([[150, 125], [250, 125], [200, 150], [150, 175], [250, 175]], dtype=np.float64)


def _regressor(tmp_path, b2, w1=None, b1=None, w2=None) -> bbr.BBoxRegressor:
    path = write_bbox_regressor(
        tmp_path / "BBRegressorParam_r.mat", w1=np.zeros((200, 10)) if w1 is None else w1,
        b1=np.zeros((200, 1)) if b1 is None else b1, w2=np.zeros((3, 200)) if w2 is None else w2,
        b2=np.asarray(b2, dtype=np.float64).reshape(3, 1))
    return bbr.load_bbox_regressor(path)


def test_regressor_file_fields(tmp_path):
    params = bbr.load_bbox_regressor(write_bbox_regressor(tmp_path / "r.mat"))
    assert params.w1.shape == (200, 10) and params.b1.shape == (200, 1)
    assert params.w2.shape == (3, 200) and params.b2.shape == (3, 1)
    assert params.w1.dtype == np.float64
    good = {"W1": np.zeros((200, 10)), "B1": np.zeros((200, 1)), "W2": np.zeros((3, 200)),
            "B2": np.ones((3, 1))}
    savemat(tmp_path / "no_w2.mat", {k: v for k, v in good.items() if k != "W2"})
    with pytest.raises(ModelFilesError, match="'W2'"):
        bbr.load_bbox_regressor(tmp_path / "no_w2.mat")
    savemat(tmp_path / "bad_b1.mat", {**good, "B1": np.zeros((100, 1))})
    with pytest.raises(ModelFilesError, match=r"'B1'.*\(200, 1\).*\(100, 1\)"):
        bbr.load_bbox_regressor(tmp_path / "bad_b1.mat")
    (tmp_path / "cut.mat").write_bytes((tmp_path / "r.mat").read_bytes()[:300])
    with pytest.raises(ModelFilesError):
        bbr.load_bbox_regressor(tmp_path / "cut.mat")
    with pytest.raises(ModelFilesError, match="BBRegressorParam_r.mat"):
        bbr.load_bbox_regressor(tmp_path / "absent.mat")


def test_hand_computed_box(tmp_path):
    # W1 = 0 and B1 = atanh(0.5): h = 0.5 everywhere; W2 row 0 = 0.01 adds 200 * 0.005 = 1.
    w2 = np.zeros((3, 200))
    w2[0] = 0.01
    params = _regressor(tmp_path, b2=[-2.0, -1.2, 112.0], b1=np.full((200, 1), np.arctanh(0.5)), w2=w2)
    x, y, side = bbr.regress_box(FIVE, params)
    # o = (-1, -1.2, 112): box = (-1 * 50 + 200, -1.2 * 50 + 150), side 224 * 50 / 112.
    assert (x, y, side) == pytest.approx((150.0, 90.0, 100.0), abs=1e-9)
    photo = np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    crop = bbr.crop_for_68(photo, FIVE, params)
    assert crop.scale == pytest.approx(2.24) and crop.origin == (150, 90)
    assert crop.image.shape == (224, 224, 3) and crop.image.dtype == np.uint8


def test_input_is_interleaved_xy(tmp_path):
    w1 = np.zeros((200, 10))
    w1[0, 3] = 1.0                 # 4th input = y of the 2nd point (eyeR): (125 - 150) / 50
    w2 = np.zeros((3, 200))
    w2[0, 0] = 1.0
    params = _regressor(tmp_path, b2=[0.0, 0.0, 50.0], w1=w1, w2=w2)
    x, y, side = bbr.regress_box(FIVE, params)
    assert x == pytest.approx(np.tanh(-0.5) * 50 + 200, abs=1e-9)
    assert (y, side) == pytest.approx((150.0, 224.0))


def test_identity_scale_crop_is_photo_pixels(tmp_path):
    photo = np.random.default_rng(1).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    inside = bbr.crop_for_68(photo, FIVE, _regressor(tmp_path, b2=[-2.0, -2.2, 50.0]))
    assert inside.scale == 1.0 and inside.origin == (100, 40)            # side 224 * 50 / 50
    np.testing.assert_array_equal(inside.image, photo[40:264, 100:324])
    # Box from (-30, -20): inside the doubled zero canvas, so black where off the photo.
    edge = bbr.crop_for_68(photo, FIVE, _regressor(tmp_path, b2=[-4.6, -3.4, 50.0]))
    assert edge.origin == (-30, -20)
    assert not edge.image[:20].any() and not edge.image[:, :30].any()
    np.testing.assert_array_equal(edge.image[20:, 30:], photo[:204, :194])
    # A crop point maps back onto the photo pixel it shows.
    back = bbr.points_from_crop(np.array([[57.0, 101.0, 3.0]]), edge.scale, edge.origin)
    np.testing.assert_array_equal(back, [[27.0, 81.0]])
    np.testing.assert_array_equal(edge.image[101, 57], photo[81, 27])


def test_box_start_off_canvas_fails(tmp_path):
    photo = np.zeros((300, 400, 3), np.uint8)
    # x = -9 * 50 + 200 = -250 < -400 // 2: the official crop fails (scale 0) here.
    with pytest.raises(NoFaceError, match="outside the photo"):
        bbr.crop_for_68(photo, FIVE, _regressor(tmp_path, b2=[-9.0, -2.0, 50.0]))
    with pytest.raises(NoFaceError, match="degenerate"):
        bbr.crop_for_68(photo, np.full((5, 2), 7.0), _regressor(tmp_path, b2=[0.0, 0.0, 50.0]))
    with pytest.raises(NoFaceError, match="no usable box"):                    # o2 = 0
        bbr.crop_for_68(photo, FIVE, _regressor(tmp_path, b2=[0.0, 0.0, 0.0]))


def test_points_from_crop_scales_then_shifts():
    pts = bbr.points_from_crop(np.array([[20.0, 40.0], [0.0, 224.0]]), 2.0, (10, -5))
    np.testing.assert_array_equal(pts, [[20.0, 15.0], [10.0, 107.0]])
