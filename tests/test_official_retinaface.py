"""The official HRN face detector (ternaus RetinaFace ResNet-50): file format, strict loading,
priors, decoding, NMS, pre-processing and the mapping of detections back to the photo.

Weights here are random (tests/fake_retinaface.py): nothing they output is a face. The
wiring tests zero the class/box heads and make chosen anchors fire, so the expected boxes
follow from the official formulas alone.
"""
from __future__ import annotations

import os
import zipfile

import numpy as np
import pytest
import torch

from engine.errors import ModelFilesError
from engine.hrn_official import retinaface as rf
from engine.hrn_official.boxes import nms
from tests.fake_retinaface import fake_retinaface_state, write_fake_retinaface


@pytest.fixture(scope="module")
def fake_state() -> dict[str, torch.Tensor]:
    return fake_retinaface_state(seed=3)


@pytest.fixture(scope="module")
def fake_file(tmp_path_factory, fake_state):
    return write_fake_retinaface(tmp_path_factory.mktemp("rf") / "retinaface_resnet50_2020-07-20_old_torch.pth",
                                 state=fake_state)


@pytest.fixture(scope="module")
def net(fake_file) -> rf.RetinaFace:
    return rf.load_retinaface(fake_file)


# --- file format and strict loading ---------------------------------------------------------------

def test_fake_file_is_legacy_format_and_loads_strictly(fake_file, fake_state, net):
    # Legacy serialisation: a bare pickle stream (protocol 2 header), not a zip archive.
    assert not zipfile.is_zipfile(fake_file)
    assert fake_file.read_bytes()[:2] == b"\x80\x02"
    assert not net.training
    loaded = net.state_dict()
    assert list(loaded) == list(fake_state)
    for k, v in fake_state.items():
        assert torch.equal(loaded[k], v), k


def test_layout_matches_official_network():
    sd = rf.RetinaFace().state_dict()
    body = [k for k in sd if k.startswith("body.")]
    # torchvision resnet50 has 320 state-dict entries; the body drops fc.weight and fc.bias.
    assert len(body) == 318 and "body.fc.weight" not in sd
    assert len(sd) == 456  # + FPN 5x6, SSH 3x5x6, heads 3x3x2
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    assert shapes["body.conv1.weight"] == (64, 3, 7, 7)
    assert shapes["body.layer1.0.downsample.0.weight"] == (256, 64, 1, 1)
    assert shapes["body.layer4.2.bn3.running_var"] == (2048,)
    assert shapes["fpn.output1.0.weight"] == (256, 512, 1, 1)
    assert shapes["fpn.output3.0.weight"] == (256, 2048, 1, 1)
    assert shapes["fpn.merge2.1.num_batches_tracked"] == ()
    assert shapes["ssh3.conv3X3.0.weight"] == (128, 256, 3, 3)
    assert shapes["ssh1.conv5X5_1.0.weight"] == (64, 256, 3, 3)
    assert shapes["ssh2.conv7x7_3.0.weight"] == (64, 64, 3, 3)
    assert shapes["ClassHead.2.conv1x1.weight"] == (4, 256, 1, 1)
    assert shapes["BboxHead.0.conv1x1.bias"] == (8,)
    assert shapes["LandmarkHead.1.conv1x1.weight"] == (20, 256, 1, 1)


def test_renamed_key_is_rejected(tmp_path, fake_state):
    state = dict(fake_state)
    state["ssh2.conv7X7_3.0.weight"] = state.pop("ssh2.conv7x7_3.0.weight")
    path = write_fake_retinaface(tmp_path / "renamed.pth", state=state)
    with pytest.raises(ModelFilesError) as err:
        rf.load_retinaface(path)
    msg = str(err.value)
    assert "'ssh2.conv7x7_3.0.weight'" in msg and "'ssh2.conv7X7_3.0.weight'" in msg
    assert "renamed.pth" in msg


def test_wrong_shape_is_rejected(tmp_path, fake_state):
    state = dict(fake_state)
    state["ClassHead.1.conv1x1.weight"] = torch.zeros(6, 256, 1, 1)  # 3 anchors instead of 2
    path = write_fake_retinaface(tmp_path / "shape.pth", state=state)
    with pytest.raises(ModelFilesError, match=r"'ClassHead\.1\.conv1x1\.weight' expected shape "
                                              r"\(4, 256, 1, 1\), found \(6, 256, 1, 1\)"):
        rf.load_retinaface(path)


@pytest.mark.parametrize("fraction", [0.0001, 0.5])
def test_truncated_file_is_rejected(tmp_path, fake_file, fraction):
    data = fake_file.read_bytes()
    path = tmp_path / "truncated.pth"
    path.write_bytes(data[:int(len(data) * fraction)])
    with pytest.raises(ModelFilesError, match="truncated.pth.*truncated or corrupt"):
        rf.load_retinaface(path)


def test_legacy_file_is_read_without_running_code(tmp_path):
    # A legacy-format file referencing a callable: weights_only loading must refuse it.
    path = tmp_path / "code.pth"
    torch.save({"x": os.getcwd}, path, _use_new_zipfile_serialization=False)
    with pytest.raises(ModelFilesError, match="not a plain weights file"):
        rf.load_retinaface(path)


# --- priors, decoding, NMS ------------------------------------------------------------------------

def test_prior_boxes_for_512():
    p = rf.prior_boxes(512).numpy()
    assert p.shape == (2 * (64 * 64 + 32 * 32 + 16 * 16), 4) == (10752, 4) and p.dtype == np.float32
    np.testing.assert_allclose(p[0], [4 / 512, 4 / 512, 16 / 512, 16 / 512])
    np.testing.assert_allclose(p[1], [4 / 512, 4 / 512, 32 / 512, 32 / 512])
    np.testing.assert_allclose(p[2], [12 / 512, 4 / 512, 16 / 512, 16 / 512])   # next column
    np.testing.assert_allclose(p[128], [4 / 512, 12 / 512, 16 / 512, 16 / 512])  # next row
    np.testing.assert_allclose(p[8191], [508 / 512, 508 / 512, 32 / 512, 32 / 512])
    np.testing.assert_allclose(p[8192], [8 / 512, 8 / 512, 64 / 512, 64 / 512])
    # stride 32, row 6, column 8, first anchor (256 px)
    np.testing.assert_allclose(p[8192 + 2048 + (6 * 16 + 8) * 2], [272 / 512, 208 / 512, 0.5, 0.5])
    np.testing.assert_allclose(p[-1], [496 / 512, 496 / 512, 1.0, 1.0])  # not clipped


def test_decode_known_deltas():
    priors = torch.tensor([[0.5, 0.5, 0.2, 0.1], [0.25, 0.75, 0.5, 0.5]])
    deltas = torch.tensor([[0.0, 0.0, 0.0, 0.0], [1.0, -2.0, 5 * np.log(2.0), -5 * np.log(2.0)]])
    out = rf.decode_boxes(deltas, priors).numpy()
    # row 1: centre (0.25 + 0.1*0.5, 0.75 - 0.2*0.5) = (0.3, 0.65); size (0.5*2, 0.5/2) = (1, 0.25)
    np.testing.assert_allclose(out, [[0.4, 0.45, 0.6, 0.55], [-0.2, 0.525, 0.8, 0.775]], atol=1e-6)


def test_nms_known_answer():
    boxes = np.array([[0, 0, 10, 10],      # 0: kept (highest score)
                      [1, 1, 11, 11],      # 1: IoU 81/119 with 0 -> dropped
                      [20, 20, 30, 30],    # 2: disjoint -> kept
                      [5, 0, 15, 10],      # 3: IoU 1/3 with 0 -> kept
                      [0, 0, 10, 4]], float)  # 4: IoU exactly 0.4 with 0 -> kept (strict >)
    scores = np.array([0.9, 0.8, 0.85, 0.3, 0.2])
    assert nms(boxes, scores, 0.4).tolist() == [0, 2, 3, 4]
    assert nms(boxes, scores, 0.3).tolist() == [0, 2]
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.4).tolist() == []


def test_preprocess_resizes_longest_side_and_centres():
    grey = np.full((600, 800, 3), 128, np.uint8)
    image, (left, top) = rf.preprocess(grey)
    assert image.shape == (1, 3, 512, 512) and image.dtype == torch.float32
    assert (left, top) == (0, 64)  # 800x600 -> 512x384, padded 64 above and below
    expected = (128 / 255 - np.array(rf.IMAGENET_MEAN)) / np.array(rf.IMAGENET_STD)
    np.testing.assert_allclose(image[0, :, 64:448].mean((1, 2)).numpy(), expected, atol=1e-5)
    assert image[0, :, :64].abs().max() == 0 and image[0, :, 448:].abs().max() == 0
    image, pads = rf.preprocess(np.full((800, 600, 3), 128, np.uint8))
    assert pads == (64, 0) and image[0, :, :, :64].abs().max() == 0


# --- detection ------------------------------------------------------------------------------------

def _photo(h: int, w: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_random_weights_give_well_formed_output(net):
    out = rf.detect_faces(net, _photo(600, 800))
    assert out.dtype == np.float32 and out.ndim == 2 and out.shape[1] == 5
    if len(out):
        assert np.all(np.diff(out[:, 4]) <= 0) and np.all(out[:, 4] > rf.SCORE_THRESHOLD)
        assert np.all(out[:, 0] < 799) and np.all(out[:, 1] < 599)
        np.testing.assert_array_equal(out[:, :4], np.trunc(out[:, :4]))


@pytest.fixture()
def wired_net(fake_state):
    """Detector whose class/box heads ignore the image: every anchor scores ~0 except the ones
    a forward hook fires; box deltas are the head biases."""
    net = rf.RetinaFace()
    net.load_state_dict(fake_state)
    with torch.no_grad():
        for head in list(net.ClassHead) + list(net.BboxHead):
            head.conv1x1.weight.zero_()
            head.conv1x1.bias.zero_()
        for head in net.ClassHead:
            head.conv1x1.bias.copy_(torch.tensor([5.0, -5.0, 5.0, -5.0]))  # (bg, face) per anchor
        # stride-32 level, anchor 0: dcx, dcy, dlogw, dlogh
        net.BboxHead[2].conv1x1.bias[:4] = torch.tensor([0.7, -0.45, np.log(1.3) / 0.2, -0.5])
    fire = {0: [(3, 10, 20, 6.0)],                     # (channel, row, col, face logit)
            2: [(1, 6, 8, 20.0), (1, 6, 9, 12.0)]}
    # Channel 2a+1 is anchor a's face logit in the official [A*2, h, w] head layout.

    def hook_for(level):
        def hook(_module, _inputs, out):
            out = out.clone()
            for ch, row, col, logit in fire[level]:
                out[0, ch, row, col] = logit
            return out
        return hook

    for level in fire:
        net.ClassHead[level].conv1x1.register_forward_hook(hook_for(level))
    return net.eval()


def test_detections_map_back_to_landscape_photo(wired_net):
    out = rf.detect_faces(wired_net, _photo(600, 800))
    # 800x600 -> 512x384 canvas with 64 px padding on top; photo = (canvas - pad) * 800/512.
    # Stride-32 anchor (row 6, col 8): prior centre (272, 208), size 256.
    #   centre (272 + 0.7*0.1*256, 208 - 0.45*0.1*256) = (289.92, 196.48);
    #   size (256*1.3, 256*exp(-0.1)) = (332.8, 231.64)
    #   canvas box (123.52, 80.66, 456.32, 312.30) -> int (123, 80, 456, 312)
    #   -> photo (123, 16, 456, 248) * 1.5625 = (192.19, 25, 712.5, 387.5) -> (192, 25, 712, 387).
    # Its neighbour (col 9, lower score) overlaps with IoU 0.82 and is suppressed.
    # Stride-8 anchor 1 (row 10, col 20, 32 px): canvas (148, 68, 180, 100)
    #   -> photo (148, 4, 180, 36) * 1.5625 -> (231, 6, 281, 56), score sigmoid(6 - 5).
    assert out.shape == (2, 5)
    np.testing.assert_array_equal(out[:, :4], [[192, 25, 712, 387], [231, 6, 281, 56]])
    np.testing.assert_allclose(out[:, 4], [1 / (1 + np.exp(-25.0)), 1 / (1 + np.exp(-1.0))], rtol=1e-6)


def test_detections_map_back_to_portrait_photo(wired_net):
    out = rf.detect_faces(wired_net, _photo(800, 600))
    # 600x800 -> 384x512 canvas with 64 px padding on the left.
    # Stride-32 box: canvas (123, 80, 456, 312) -> photo (59, 80, 392, 312) * 1.5625
    #   = (92.19, 125, 612.5, 487.5) -> (92, 125, 612, 487).
    # Stride-8 box: canvas (148, 68, 180, 100) -> (84, 68, 116, 100) * 1.5625 -> (131, 106, 181, 156).
    np.testing.assert_array_equal(out[:, :4], [[92, 125, 612, 487], [131, 106, 181, 156]])
