"""The official 68-point step without the face-alignment package: S3FD and 3DFAN4 loading,
box decoding/NMS and the heatmap → photo wiring, checked against hand-computed answers of
face-alignment's formulas. Networks are fakes (tests/fake_fan.py); their outputs are noise
or hand-set, never presented as a face."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from engine.errors import ModelFilesError
from engine.hrn_official import fan as fanmod
from engine.hrn_official import s3fd as s3fdmod
from engine.hrn_official.boxes import nms
from tests.fake_fan import s3fd_state, write_fake_fan, write_fake_s3fd, write_peak_fan


# ---------------------------------------------------------------- S3FD loading

def test_fake_s3fd_loads_strictly_with_every_official_key(tmp_path):
    path = write_fake_s3fd(tmp_path)
    net = s3fdmod.load_s3fd(path)
    state = torch.load(path, weights_only=True)
    assert set(net.state_dict()) == set(state)
    assert len(state) == 2 * 31 + 3                       # 31 convolutions + 3 L2Norm scales
    assert tuple(state["conv3_3_norm_mbox_conf.weight"].shape) == (4, 256, 3, 3)
    assert tuple(state["fc6.weight"].shape) == (1024, 512, 3, 3)
    for key, value in state.items():
        assert torch.equal(net.state_dict()[key], value), key
    assert not net.training


@pytest.mark.parametrize("damage, needle", [
    ("rename", "fc7_mbox_loc.weight"),
    ("shape", "conv4_3_norm.weight"),
])
def test_s3fd_key_and_shape_errors_name_the_key(tmp_path, damage, needle):
    state = s3fd_state()
    if damage == "rename":
        state["fc7_mbox_loc.kernel"] = state.pop("fc7_mbox_loc.weight")
    else:
        state["conv4_3_norm.weight"] = torch.ones(256)
    path = tmp_path / "s3fd.pth"
    torch.save(state, path)
    with pytest.raises(ModelFilesError, match=needle.replace(".", r"\.")):
        s3fdmod.load_s3fd(path)


def test_s3fd_truncated_or_missing_file_is_a_model_files_error(tmp_path):
    good = write_fake_s3fd(tmp_path)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ModelFilesError, match="truncated or corrupt"):
        s3fdmod.load_s3fd(cut)
    with pytest.raises(ModelFilesError, match="not found"):
        s3fdmod.load_s3fd(tmp_path / "absent.pth")


# ---------------------------------------------------------------- priors, decode, NMS

def test_priors_and_decode_known_answer():
    # Head of stride 8, cell row 2 / column 3: centre (4 + 3*8, 4 + 2*8), side 32.
    prior = s3fdmod.priors(8, np.array([2]), np.array([3]))
    np.testing.assert_array_equal(prior, [[28.0, 20.0, 32.0, 32.0]])
    # Centre moves by loc * 0.1 * side; size scales by exp(loc * 0.2): 5 ln 2 doubles it.
    box = s3fdmod.decode(np.array([[0.5, -0.25, 5 * math.log(2.0), 0.0]]), prior)
    np.testing.assert_allclose(box, [[-2.4, 3.2, 61.6, 35.2]], atol=1e-12)


def test_nms_uses_inclusive_pixel_overlap_and_score_order():
    dets = np.array([
        [0.0, 0.0, 10.0, 10.0, 0.90],    # A
        [1.0, 1.0, 11.0, 11.0, 0.80],    # overlaps A: IoU 100/142 -> dropped
        [0.0, 5.5, 10.0, 15.5, 0.95],    # D: IoU with A is 0.29 in plain area, 0.333 with "+1"
        [30.0, 30.0, 40.0, 40.0, 0.60],  # apart: kept
    ])
    # The "+1" arithmetic of face-alignment makes D suppress A (plain IoU would keep A).
    np.testing.assert_array_equal(nms(dets[:, :4], dets[:, 4], 0.3, inclusive_pixels=True), [2, 3])
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.3, inclusive_pixels=True).shape == (0,)


class _StubS3FD(nn.Module):
    """Returns hand-set head outputs for a 64x64 image and records its input."""

    def __init__(self, faces: dict):
        super().__init__()
        self.faces = faces              # {(level, row, col): (probability, loc[4])}
        self.seen = None

    def forward(self, x):
        self.seen = x.clone()
        out = []
        for level, stride in enumerate(s3fdmod.STRIDES):
            n = max(1, 64 // stride)
            cls = torch.zeros(1, 2, n, n)
            cls[0, 1] = -10.0
            loc = torch.zeros(1, 4, n, n)
            for (lv, r, c), (p, offsets) in self.faces.items():
                if lv == level:
                    cls[0, 1, r, c] = math.log(p / (1 - p))    # softmax([0, L])[1] == p
                    loc[0, :, r, c] = torch.tensor(offsets)
            out += [cls, loc]
        return out


_STUB_FACES = {
    (1, 2, 3): (0.9, [0.5, -0.25, 5 * math.log(2.0), 0.0]),  # box (-2.4, 3.2, 61.6, 35.2)
    (1, 2, 4): (0.8, [0.0, 0.0, 0.0, 0.0]),                   # (20, 4, 52, 36): IoU 0.49 -> dropped
    (0, 14, 14): (0.7, [0.0, 0.0, 0.0, 0.0]),                 # (50, 50, 66, 66): kept
    (2, 0, 0): (0.3, [0.0, 0.0, 0.0, 0.0]),                   # candidate, but not a face (< 0.5)
}


def test_detect_s3fd_preprocessing_decoding_and_filtering():
    rgb = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    stub = _StubS3FD(_STUB_FACES)
    faces = s3fdmod.detect_s3fd(stub, rgb, "cpu")
    # Input: BGR order, minus (104, 117, 123), no other scaling.
    seen = stub.seen[0].numpy()
    np.testing.assert_array_equal(seen[0], rgb[..., 2].astype(np.float32) - 104)
    np.testing.assert_array_equal(seen[1], rgb[..., 1].astype(np.float32) - 117)
    np.testing.assert_array_equal(seen[2], rgb[..., 0].astype(np.float32) - 123)
    assert faces.dtype == np.float32 and faces.shape == (2, 5)
    np.testing.assert_allclose(faces, [[-2.4, 3.2, 61.6, 35.2, 0.9], [50, 50, 66, 66, 0.7]],
                               rtol=1e-5, atol=1e-4)


def test_detect_s3fd_on_random_weights_returns_boxes_in_the_official_format(tmp_path):
    net = s3fdmod.load_s3fd(write_fake_s3fd(tmp_path, seed=3))
    rgb = np.random.default_rng(1).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    faces = s3fdmod.detect_s3fd(net, rgb, "cpu")
    assert faces.dtype == np.float32 and faces.ndim == 2 and faces.shape[1] == 5
    assert np.all(faces[:, 4] > 0.5) and np.all(np.diff(faces[:, 4]) <= 0)
    assert np.all(faces[:, 2] > faces[:, 0]) and np.all(faces[:, 3] > faces[:, 1])
    # What NMS leaves never overlaps more than the threshold.
    assert len(nms(faces[:, :4].astype(np.float64), faces[:, 4], 0.3, inclusive_pixels=True)) == len(faces)
    with pytest.raises(ValueError, match="uint8"):
        s3fdmod.detect_s3fd(net, rgb.astype(np.float32), "cpu")


# ---------------------------------------------------------------- FAN loading

def test_fake_fan_loads_and_bad_files_are_model_files_errors(tmp_path):
    path = write_fake_fan(tmp_path)
    fan = fanmod.load_fan(path)
    with torch.no_grad():
        out = fan(torch.rand(1, 3, 256, 256))
    assert isinstance(out, torch.Tensor) and tuple(out.shape) == (1, 68, 64, 64)

    not_script = tmp_path / "state_dict.zip"           # a plain torch.save zip, not TorchScript
    torch.save({"w": torch.zeros(3)}, not_script)
    cut = tmp_path / "cut.zip"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    for bad in (not_script, cut):
        with pytest.raises(ModelFilesError, match="not a TorchScript archive"):
            fanmod.load_fan(bad)
    with pytest.raises(ModelFilesError, match="not found"):
        fanmod.load_fan(tmp_path / "absent.zip")


def test_fan_with_wrong_outputs_is_named(tmp_path):
    wrong = write_peak_fan(tmp_path / "wrong.zip", np.zeros((10, 64, 64)))
    with pytest.raises(ModelFilesError, match=r"returns \(1, 10, 64, 64\)"):
        fanmod.load_fan(wrong)


# ---------------------------------------------------------------- FAN wiring

def _peaks(cells, equal_neighbours=()):
    """Heatmaps with one peak per landmark at cells[i] = (col, row); landmark 0 also gets a
    larger right and upper neighbour (shift +0.25 x, -0.25 y)."""
    hm = np.zeros((68, 64, 64), np.float32)
    for i, (c, r) in enumerate(cells):
        hm[i, r, c] = 1.0
    hm[0, 30, 21] = 0.5           # right of (20, 30)
    hm[0, 29, 20] = 0.3           # above (20, 30)
    for i in equal_neighbours:
        c, r = cells[i]
        hm[i, r, c - 1] = hm[i, r, c + 1] = 0.4
    hm[1, 10, 1] = 0.6            # landmark 1 sits on the border column: no shift at all
    return hm


def test_fan_landmarks_follow_face_alignment_formulas(tmp_path):
    cells = [(20, 30), (0, 10), (40, 40)] + [(3 + i % 58, 5 + (i * 7) % 50) for i in range(65)]
    fan = fanmod.load_fan(write_peak_fan(tmp_path / "peaks.zip", _peaks(cells, equal_neighbours=(2,))))
    rgb = np.random.default_rng(2).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    box = np.array([40.0, 50.0, 160.0, 190.0, 0.99], np.float32)
    pts = fanmod.fan_landmarks(fan, rgb, box, "cpu")
    assert pts.shape == (68, 2) and pts.dtype == np.float64

    # centre (100, 120 - 0.12*140) = (100, 103.2); scale 260/195; window side h = 266.67;
    # x = cx + h*(p/64 - 0.5) = 4.1667 p - 33.33, y = 4.1667 p - 30.13, truncated toward 0.
    np.testing.assert_array_equal(pts[0], [53, 95])    # p = (20.75, 30.25): with the 0.25 shift
    np.testing.assert_array_equal(pts[1], [-31, 13])   # p = (0.5, 10.5): border, trunc(-31.25)
    np.testing.assert_array_equal(pts[2], [135, 138])  # p = (40.5, 40.5): equal neighbours

    h = 200.0 * 260.0 / 195.0
    for i, (c, r) in enumerate(cells[3:], start=3):
        expected = [math.trunc(100.0 + h * ((c + 0.5) / 64 - 0.5)),
                    math.trunc(103.2 + h * ((r + 0.5) / 64 - 0.5))]
        np.testing.assert_array_equal(pts[i], expected, err_msg=f"landmark {i}")


class _RecordingFAN(nn.Module):
    def forward(self, x):
        self.seen = x.clone()
        return torch.zeros(1, 68, 64, 64)


def test_fan_input_is_the_packages_256_window_in_unit_range():
    # R = column, G = row: the crop shows where each window pixel came from.
    yy, xx = np.mgrid[0:256, 0:256]
    rgb = np.stack([xx, yy, np.zeros_like(xx)], axis=-1).astype(np.uint8)
    rec = _RecordingFAN()
    fanmod.fan_landmarks(rec, rgb, np.array([64.0, 64.0, 192.0, 192.0]), "cpu")
    x = rec.seen
    assert tuple(x.shape) == (1, 3, 256, 256) and x.dtype == torch.float32
    crop = (x[0].numpy().transpose(1, 2, 0) * 255.0).round()
    # centre (128, 112.64), side 262.56: window columns [-2, 259), rows [-17, 243).
    assert crop[:14].max() == 0                           # 17 window rows above the photo
    assert abs(crop[128, 128, 0] - 128.5) <= 1.0          # (128 + .5) * 261/256 - .5 - 2
    assert abs(crop[128, 128, 1] - 113.0) <= 1.0          # (128 + .5) * 260/256 - .5 - 17
    import cv2
    window = np.zeros((260, 261, 3), np.uint8)             # rows [-17, 243), columns [-2, 259)
    window[17:, 2:258] = rgb[:243]
    np.testing.assert_array_equal(crop, cv2.resize(window, (256, 256), interpolation=cv2.INTER_LINEAR))


def test_landmarks68_uses_the_first_face_or_returns_none(tmp_path):
    fan = fanmod.load_fan(write_peak_fan(tmp_path / "peaks.zip", _peaks([(5 + i % 50, 20) for i in range(68)])))
    rgb = np.random.default_rng(3).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    assert fanmod.landmarks68(_StubS3FD({}), fan, rgb, "cpu") is None
    stub = _StubS3FD(_STUB_FACES)
    faces = s3fdmod.detect_s3fd(stub, rgb, "cpu", dtype=np.float64)
    assert faces.dtype == np.float64 and faces.shape == (2, 5)
    got = fanmod.landmarks68(stub, fan, rgb, "cpu")
    np.testing.assert_array_equal(got, fanmod.fan_landmarks(fan, rgb, faces[0], "cpu"))
    other = fanmod.fan_landmarks(fan, rgb, faces[1], "cpu")
    assert not np.array_equal(got, other)
