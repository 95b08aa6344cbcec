"""engine.hrn_official.detectors: the official landmark chain, wired into the official path.

The chain's files are written in their exact official formats with random weights
(tests/fake_*.py); their output is noise and is only used to check loading and wiring, never
shown as a detection. The data flow through the chain is checked with its stages replaced by
recorders that return known values.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from engine.detect.landmarks import detect_landmarks
from engine.hrn_official import assets, detectors, layout
from engine.hrn_official.align import align_crop, five_from_68, five_points_from_mediapipe, working_image
from engine.hrn_official.bbox_regressor import Crop68
from engine.hrn_official.model import OfficialHRN
from engine.io.image_io import load_photo
from engine.result import to_uint8
from tests.fake_fan import write_fake_fan, write_fake_s3fd
from tests.fake_landmark106 import write_bbox_regressor, write_landmark106
from tests.fake_retinaface import write_fake_retinaface
from tests.official_fakes import write_official_tree


@pytest.fixture(scope="module")
def chain_root(tmp_path_factory) -> Path:
    """The needed HRN files plus every file of the official detector chain (GitHub layout)."""
    root = tmp_path_factory.mktemp("hrn_with_detectors")
    write_official_tree(root)
    paths = {key: root / layout.BY_KEY[key].github_path for key in layout.DETECTOR_KEYS}
    for path in paths.values():
        path.parent.mkdir(parents=True, exist_ok=True)
    write_fake_retinaface(paths["retinaface"])
    write_landmark106(paths["landmark106"])
    write_bbox_regressor(paths["bbreg"])
    write_fake_s3fd(paths["s3fd"].parent)
    write_fake_fan(paths["fan"].parent)
    return root


@pytest.fixture(scope="module")
def astronaut(astronaut_path):
    photo = load_photo(astronaut_path)
    return photo, detect_landmarks(photo)


def test_assets_check_loads_every_detector_file(chain_root):
    found = {s.entry.key: s for s in assets.check(chain_root)}
    for key in layout.DETECTOR_KEYS:
        assert found[key].loads is True, (key, found[key].message)
    assert detectors.available(chain_root)
    report = assets.format_report(chain_root, list(found.values()))
    assert "official detector chain is complete" in report
    os.rename(chain_root / layout.BY_KEY["fan"].github_path, chain_root / "fan.moved")
    try:
        assert not detectors.available(chain_root)
        assert "chain is incomplete" in assets.format_report(chain_root, assets.check(chain_root, load=False))
    finally:
        os.rename(chain_root / "fan.moved", chain_root / layout.BY_KEY["fan"].github_path)


def test_broken_detector_file_is_named(chain_root, tmp_path):
    broken = tmp_path / "broken"
    for entry in layout.FILES:
        src = layout.find(chain_root, entry.key)
        if src is not None and src.is_relative_to(chain_root):
            (broken / entry.github_path).parent.mkdir(parents=True, exist_ok=True)
            os.symlink(src, broken / entry.github_path)
    target = broken / layout.BY_KEY["landmark106"].github_path
    target.unlink()
    target.write_bytes(layout.find(chain_root, "landmark106").read_bytes()[:5000])
    from engine.errors import ModelFilesError

    with pytest.raises(ModelFilesError, match="large_base_net.pth"):
        OfficialHRN.load(broken, landmarks="official")
    found = {s.entry.key: s for s in assets.check(broken)}
    assert found["landmark106"].loads is False and "large_base_net.pth" in found["landmark106"].message


def test_chain_passes_each_stage_its_input_and_flips_y(monkeypatch):
    """RetinaFace box -> 106 points -> regressor crop -> S3FD/FAN -> photo -> five, y up."""
    calls = {}
    image = np.zeros((300, 400, 3), np.uint8)
    boxes = np.array([[50, 60, 250, 280, 0.99], [0, 0, 10, 10, 0.8]], np.float32)
    p106 = np.random.default_rng(0).uniform(50, 250, (106, 2))
    crop = Crop68(np.full((224, 224, 3), 7, np.uint8), 2.0, (30, 40))
    p68 = np.random.default_rng(1).uniform(0, 224, (68, 2))

    def stage(name: str, arg: int, result):
        """A stand-in for one stage: records its ``arg``-th argument, returns ``result``."""
        def run(*args):
            calls[name] = args[arg]
            return result
        return run

    monkeypatch.setattr(detectors, "detect_faces", stage("image", 1, boxes))
    monkeypatch.setattr(detectors, "landmarks106", stage("box", 2, p106))
    monkeypatch.setattr(detectors, "crop_for_68", stage("five106", 1, crop))
    monkeypatch.setattr(detectors, "landmarks68", stage("crop", 2, p68))
    chain = detectors.OfficialDetectors(None, None, None, None, None, "cpu")
    five = chain.five_points(image)

    assert calls["image"] is image
    assert np.array_equal(calls["box"], boxes[0, :4])                       # the best face
    assert np.array_equal(calls["five106"], p106[[74, 83, 54, 84, 90]])
    assert calls["crop"] is crop.image
    expected = five_from_68(p68 / 2.0 + [30, 40])
    expected[:, 1] = 300 - 1 - expected[:, 1]
    assert np.allclose(five, expected)

    monkeypatch.setattr(detectors, "landmarks68", lambda *a: None)
    from engine.errors import NoFaceError

    with pytest.raises(NoFaceError, match="S3FD"):
        chain.five_points(image)
    monkeypatch.setattr(detectors, "detect_faces", lambda *a: np.zeros((0, 5), np.float32))
    with pytest.raises(NoFaceError, match="RetinaFace"):
        chain.five_points(image)


def test_crop_difference_measures_a_known_shift(chain_root, astronaut):
    photo, lm = astronaut
    hrn_template = OfficialHRN.load(chain_root, landmarks="mediapipe").landmark_template
    work = working_image(to_uint8(photo.rgb))
    five = five_points_from_mediapipe(lm.points, work.shape[0])
    a = align_crop(work, five, hrn_template, 224)
    assert detectors.crop_difference(a, a) == 0.0
    shifted = align_crop(work, five + [6.0, 0.0], hrn_template, 224)
    # 6 photo px to the right -> 6 * scale crop px (up to the official integer crop window).
    assert abs(detectors.crop_difference(a, shifted) - 6.0 * a.scale) < 1.5


def test_official_alignment_is_used_end_to_end(chain_root, astronaut, monkeypatch):
    """With the chain loaded, its five points frame the crops and the offset from MediaPipe's
    framing is reported; when it finds no face, MediaPipe's points are used with a warning."""
    from engine.hrn_official.reconstruct import reconstruct_with_model

    photo, lm = astronaut
    hrn = OfficialHRN.load(chain_root, landmarks="auto")
    assert hrn.detectors is not None and hrn.files.keys() >= {"hrn", "bfm"}
    work_h = working_image(to_uint8(photo.rgb)).shape[0]
    mediapipe_five = five_points_from_mediapipe(lm.points, work_h)
    monkeypatch.setattr(type(hrn.detectors), "five_points", lambda self, img: mediapipe_five + [0.0, 8.0])
    result = reconstruct_with_model(hrn, photo, lm, albedo_size=128)
    meta = result.metadata
    assert meta["landmarks"].startswith("official chain")
    # 8 photo px up, at the crop's scale (up to the official integer crop window).
    assert abs(meta["mediapipe_crop_offset_px"] - 8.0 * meta["crop224"]["scale"]) < 1.5
    assert result.vertices.shape == (35709, 3) and np.isfinite(result.vertices).all()

    from engine.errors import NoFaceError

    def no_face(self, img):
        raise NoFaceError("The official face detector (RetinaFace) found no face in the photo.")

    monkeypatch.setattr(type(hrn.detectors), "five_points", no_face)
    fallback = reconstruct_with_model(hrn, photo, lm, albedo_size=128)
    assert fallback.metadata["landmarks"].startswith("MediaPipe")
    assert any("aligned with MediaPipe's landmarks instead" in w for w in fallback.warnings)
    assert "mediapipe_crop_offset_px" not in fallback.metadata


def test_alignment_choice_is_checked(chain_root, tmp_path):
    assert OfficialHRN.load(chain_root, landmarks="mediapipe").detectors is None
    with pytest.raises(ValueError, match="landmarks must be one of"):
        OfficialHRN.load(chain_root, landmarks="fan")
    from engine.errors import ModelFilesError

    bare = tmp_path / "bare"
    write_official_tree(bare)
    assert OfficialHRN.load(bare).detectors is None                     # auto: chain absent
    with pytest.raises(ModelFilesError, match="retinaface_resnet50"):
        OfficialHRN.load(bare, landmarks="official")


def test_download_with_detectors_uses_publisher_urls_and_checksums(tmp_path, monkeypatch):
    fetched = []
    def record(url, dest, sha256, progress):
        fetched.append((url, dest, sha256))
        return dest

    monkeypatch.setattr(assets, "download", record)
    assets.download_official(tmp_path)
    assert {Path(d).name for _, d, _ in fetched} == {Path(e.modelscope_path).name for e in layout.FILES if e.needed}
    fetched.clear()
    assets.download_official(tmp_path, detectors=True)
    by_name = {Path(d).name: (u, s) for u, d, s in fetched}
    assert by_name["3DFAN4-4a694010b9.zip"] == (layout.BY_KEY["fan"].url, layout.BY_KEY["fan"].sha256)
    assert by_name["s3fd-619a316812.pth"][0].startswith("https://www.adrianbulat.com/")
    assert by_name["s3fd-619a316812.pth"][1].startswith("619a316812")     # name carries the sha256 prefix
    assert "modelscope" in by_name["large_base_net.pth"][0] and "segment_face.pb" not in by_name


def test_face_alignment_download_cache_is_searched(tmp_path, monkeypatch):
    """Users of the official install have S3FD and FAN in torch hub's cache, under either FAN
    name face-alignment uses."""
    import torch

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    (cache / "3DFAN4_1.6-ec5cf40a1d.zip").write_bytes(b"x")
    assert layout.find(tmp_path / "assets", "fan") == cache / "3DFAN4_1.6-ec5cf40a1d.zip"
    assert layout.find(tmp_path / "assets", "s3fd") is None
    report = assets.format_report(tmp_path / "assets", assets.check(tmp_path / "assets", load=False))
    assert str(cache / "3DFAN4_1.6-ec5cf40a1d.zip") in report       # shown in full, outside the folder
    (tmp_path / "assets" / "face_alignment").mkdir(parents=True)
    (tmp_path / "assets" / "face_alignment" / "3DFAN4-4a694010b9.zip").write_bytes(b"x")
    assert layout.find(tmp_path / "assets", "fan").parent.name == "face_alignment"   # the folder first
