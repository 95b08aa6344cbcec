"""Bad input the user can act on: several faces (choosing one by index), a face too small to
reconstruct, and an output folder that cannot be written. Real MediaPipe models, real files,
real CLI runs (each stops before any fitting)."""
from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
from PIL import Image

from engine.detect.landmarks import (MIN_FACE_PX, FaceIndexError, FaceTooSmallError, detect_landmarks,
                              face_width_px)
from engine.errors import EngineError, NoFaceError
from engine.io import exr
from engine.io.image_io import load_photo, photo_from_array
from engine.result import FaceReconstruction

from synthetic_result import make_synthetic_result

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str) -> tuple[int, list[dict], str]:
    done = subprocess.run([sys.executable, "-m", "engine", "reconstruct", *args, "--progress", "jsonl"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return done.returncode, events, done.stderr


def _scaled(rgb: np.ndarray, side: int) -> np.ndarray:
    return np.asarray(Image.fromarray(rgb).resize((side, side), Image.LANCZOS))


@pytest.fixture(scope="module")
def astronaut(astronaut_path):
    return detect_landmarks(load_photo(astronaut_path))


# ----------------------------------------------------------------------------- several faces
@pytest.fixture(scope="module")
def pair(astronaut_rgb):
    """A small astronaut (320 px) on the left and the full-size one on the right: the index
    order (left to right) differs from the size order (largest first)."""
    canvas = np.full((600, 1000, 3), 128, np.uint8)
    canvas[100:420, 0:320] = _scaled(astronaut_rgb, 320)
    canvas[40:552, 450:962] = astronaut_rgb
    return photo_from_array(canvas, "pair.jpg")


def test_face_index_counts_left_to_right(pair, astronaut):
    left = detect_landmarks(pair, face_index=0)
    right = detect_landmarks(pair, face_index=1)
    largest = detect_landmarks(pair)
    small = astronaut.points[:, :2] * (320 / 512) + [0, 100]
    assert np.median(np.abs(left.points[:, :2] - small)) < 2.0
    assert np.median(np.abs(right.points[:, :2] - (astronaut.points[:, :2] + [450, 40]))) < 2.0
    assert np.array_equal(largest.points, right.points)     # default: the largest face


def test_several_faces_warning_lists_the_indices(pair, astronaut):
    (default,) = detect_landmarks(pair).warnings
    assert "2 faces found in 'pair.jpg'" in default and "using face 1 (the largest)" in default
    # Both faces with their index and width, so the user knows what to pass.
    listed = {int(i): float(w) for i, w in re.findall(r"(\d+): (\d+) px wide", default)}
    width = face_width_px(astronaut.points)
    assert listed.keys() == {0, 1} and "--face-index" in default
    assert listed[0] == pytest.approx(width * 320 / 512, abs=3) and listed[1] == pytest.approx(width, abs=3)
    (chosen,) = detect_landmarks(pair, face_index=0).warnings
    assert "using face 0 (as asked)" in chosen


@pytest.mark.parametrize("index", [2, -1])
def test_face_index_out_of_range(pair, index):
    with pytest.raises(FaceIndexError) as info:
        detect_landmarks(pair, face_index=index)
    message = str(info.value)
    assert f"Face index {index}" in message and "has 2 faces" in message
    assert "0 to 1" in message and "pair.jpg" in message
    assert isinstance(info.value, NoFaceError)  # callers that skip faceless photos skip it too


def test_cli_face_index(astronaut_path, tmp_path):
    out = tmp_path / "out"
    code, events, _ = run_cli(astronaut_path, "--face-index", "1", "--out", str(out))
    assert code == 2 and events[-1]["event"] == "error" and events[-1]["kind"] == "FaceIndexError"
    assert "has 1 face," in events[-1]["message"]
    assert not out.exists()                                 # the output check left no trace
    # Not a face number: argparse refuses it before anything runs.
    done = subprocess.run([sys.executable, "-m", "engine", "reconstruct", astronaut_path,
                           "--face-index", "-1"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "face number" in done.stderr


# ----------------------------------------------------------------------------- face size
def test_minimum_face_size(astronaut_rgb, astronaut):
    per_px = face_width_px(astronaut.points) / 512  # face width per px of the photo's side
    too_small = round(0.8 * MIN_FACE_PX / per_px)
    with pytest.raises(FaceTooSmallError) as info:
        detect_landmarks(photo_from_array(_scaled(astronaut_rgb, too_small), "tiny.png"))
    message = str(info.value)
    said = float(re.search(r"is (\d+) px wide", message).group(1))
    assert said == pytest.approx(0.8 * MIN_FACE_PX, abs=2)
    assert f"the minimum is {MIN_FACE_PX} px" in message and "tiny.png" in message
    assert isinstance(info.value, NoFaceError)
    # A little above the minimum: accepted, with landmarks close to the full-size ones.
    side = round(1.2 * MIN_FACE_PX / per_px)
    found = detect_landmarks(photo_from_array(_scaled(astronaut_rgb, side), "small.png"))
    assert face_width_px(found.points) >= MIN_FACE_PX
    eyes = np.abs(astronaut.points[33, 0] - astronaut.points[263, 0]) * side / 512
    err = np.linalg.norm(found.points[:, :2] - astronaut.points[:, :2] * side / 512, axis=1)
    assert np.median(err) < 0.03 * eyes


@pytest.mark.parametrize("size", [(1, 1), (MIN_FACE_PX - 1, 300)])
def test_a_photo_too_small_to_hold_a_face_says_so(size, tmp_path):
    path = tmp_path / "dot.png"
    Image.new("RGB", size, (200, 150, 120)).save(path)
    code, events, _ = run_cli(str(path), "--out", str(tmp_path / "out"))
    assert code == 2 and [e["event"] for e in events[-1:]] == ["error"]
    assert events[-1]["kind"] == "FaceTooSmallError"
    message = events[-1]["message"]
    assert f"{size[0]}x{size[1]} px" in message and f"at least {MIN_FACE_PX} px" in message
    assert "No face found" not in message


def test_no_face_message_quotes_the_minimum(no_face_path):
    with pytest.raises(NoFaceError) as info:
        detect_landmarks(load_photo(no_face_path))
    assert f"at least {MIN_FACE_PX} px wide" in str(info.value)


# ----------------------------------------------------------------------------- output folder
def test_cli_refuses_an_unwritable_output_before_working(astronaut_path, tmp_path):
    blocker = tmp_path / "somefile.txt"
    blocker.write_text("a file, not a folder")
    code, events, _ = run_cli(astronaut_path, "--out", str(blocker / "out"))
    assert code == 2
    assert [e["event"] for e in events] == ["error"]        # not one progress event before it
    assert events[0]["kind"] == "EngineError" and "output folder" in events[0]["message"]
    assert str(blocker / "out") in events[0]["message"]
    assert blocker.read_text() == "a file, not a folder"


def test_cli_refuses_an_output_path_that_is_a_file(astronaut_path, tmp_path):
    existing = tmp_path / "result.txt"
    existing.write_text("a file, not a folder")
    code, events, _ = run_cli(astronaut_path, "--out", str(existing))
    assert code == 2 and [e["event"] for e in events] == ["error"]
    message = events[0]["message"]
    assert f"{str(existing)!r} is a file" in message and "folder" in message
    assert "File exists" not in message and existing.read_text() == "a file, not a folder"


@contextlib.contextmanager
def read_only_folder(folder: Path) -> Iterator[str]:
    """Make ``folder`` (created if missing) a folder nobody can create files in, root
    included, and yield the reason the OS gives. A user: permission bits (0o500, "Permission
    denied"). Root, as in CI, ignores those: the immutable attribute (``chattr +i``,
    "Operation not permitted") binds root too. Undone on exit."""
    folder.mkdir(exist_ok=True)
    if os.geteuid() != 0:
        folder.chmod(0o500)
        lock, unlock, reason = None, lambda: folder.chmod(0o700), os.strerror(errno.EACCES)
    else:
        try:
            lock = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, text=True)
        except FileNotFoundError:
            pytest.skip("running as root without chattr: no way to make a folder read-only for root")
        if lock.returncode:
            pytest.skip(f"running as root and chattr +i failed: {lock.stderr.strip()}")
        unlock, reason = lambda: subprocess.run(["chattr", "-i", str(folder)], check=True), os.strerror(errno.EPERM)
    try:
        with pytest.raises(OSError):  # the lock holds (else the test below would prove nothing)
            (folder / "probe").mkdir()
        yield reason
    finally:
        unlock()


def test_cli_refuses_a_read_only_output(astronaut_path, tmp_path):
    locked = tmp_path / "locked"
    with read_only_folder(locked) as reason:
        code, events, _ = run_cli(astronaut_path, "--out", str(locked / "result"))
        assert list(locked.iterdir()) == []
    assert code == 2 and [e["event"] for e in events] == ["error"]
    assert reason in events[0]["message"] and str(locked / "result") in events[0]["message"]


def test_save_into_a_read_only_folder_fails_and_keeps_the_earlier_result(result, tmp_path):
    out = tmp_path / "result"
    make_synthetic_result(n=3, map_size=8).save(out)
    before = _contents(out)
    with read_only_folder(out) as reason:
        with pytest.raises(EngineError, match=f"{out.name}.*{reason}"):
            result.save(out)
        assert _contents(out) == before                     # same names, same bytes
        with pytest.raises(EngineError, match=reason):
            result.save(out / "inner")
    assert _contents(out) == before


@pytest.fixture(scope="module")
def result() -> FaceReconstruction:
    return make_synthetic_result(n=4, map_size=16)


def _contents(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_save_replaces_its_files_and_keeps_the_users(result, tmp_path):
    out = tmp_path / "result"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "albedo.png").write_text("an old, broken albedo")
    result.save(out)
    assert (out / "notes.txt").read_text() == "mine"
    Image.open(out / "albedo.png").verify()
    names = {p.name for p in out.iterdir()}
    assert not [n for n in names if n.startswith(".")]      # no staging folder left behind
    assert {"reconstruction.json", "arrays.npz", "coarse.obj", "deformation.exr"} <= names
    FaceReconstruction.load(out)


def test_save_to_an_unwritable_folder(result, tmp_path):
    blocker = tmp_path / "somefile.txt"
    blocker.write_text("x")
    with pytest.raises(EngineError, match="somefile.txt"):
        result.save(blocker / "out")


def test_failed_save_leaves_the_earlier_result_untouched(result, tmp_path, monkeypatch):
    out = tmp_path / "result"
    make_synthetic_result(n=3, map_size=8).save(out)
    (out / "notes.txt").write_text("mine")
    before = _contents(out)

    def disk_full(path, image):  # the last file written: everything else is already staged
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(exr, "write_exr", disk_full)
    with pytest.raises(EngineError, match="No space left"):
        result.save(out)
    assert _contents(out) == before                         # same names, same bytes
    # A new folder the failed save made is removed again.
    with pytest.raises(EngineError):
        result.save(tmp_path / "new" / "result")
    assert (tmp_path / "new").exists() and not (tmp_path / "new" / "result").exists()


def test_large_photo_crops_are_not_aliased():
    """A face many times larger than the fitting crop (a huge photo) is area-averaged, not
    point-sampled: 1-px stripes come out as their mean grey, not as stripes."""
    from engine.render.view import View, crop_photo
    from engine.result import Camera

    stripes = np.zeros((4000, 4000, 3), np.float32)
    stripes[:, ::2] = 1.0
    cam = Camera(rotation=np.eye(3), translation=np.zeros(3), focal_px=4000.0,
                 principal_px=(2000.0, 2000.0), image_size=(4000, 4000))
    crop = crop_photo(stripes, View(camera=cam, box=(1000.3, 1000.0, 2000.0), size=256)).numpy()
    assert crop.shape == (256, 256, 3)
    assert abs(crop.mean() - 0.5) < 0.02 and crop.std() < 0.05
    # At the photo's own scale the stripes stay.
    sharp = crop_photo(stripes, View(camera=cam, box=(1000.0, 1000.0, 256.0), size=256)).numpy()
    assert sharp.std() > 0.45


def test_no_bare_skin_to_light_is_a_clear_error(astronaut_path, monkeypatch):
    """When nothing of the face's skin can be used for the lighting (here: everything taken
    for hair), the user gets a message saying so, not fit_lighting's ValueError (issue 15,
    item 2: a 9000x7000 photo ended in that traceback)."""
    import torch

    from engine import pipeline

    monkeypatch.setattr(pipeline, "unoccluded_mask",
                        lambda points, view, crop: torch.zeros(view.size, view.size))
    with pytest.raises(NoFaceError, match="Too little bare skin"):
        pipeline.reconstruct([astronaut_path])


def test_example_without_scikit_image_says_how_to_get_it(tmp_path, monkeypatch):
    """The extension zip leaves scikit-image out; --example then explains itself."""
    from engine import cli

    monkeypatch.setitem(sys.modules, "skimage", None)          # import skimage -> ImportError
    with pytest.raises(EngineError, match="pip install scikit-image"):
        cli._example_photo("astronaut", tmp_path)
