"""Face detection and landmarks with the real MediaPipe models on real image files."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from engine.detect import landmarks as lm
from engine.detect.landmarks import FaceLandmarks, detect_landmarks
from engine.errors import NoFaceError
from engine.io.image_io import load_photo, photo_from_array


@pytest.fixture(scope="module")
def astronaut(astronaut_path) -> FaceLandmarks:
    return detect_landmarks(load_photo(astronaut_path))


def _max_xy_error(a: FaceLandmarks, b_points: np.ndarray) -> float:
    return float(np.abs(a.points[:, :2] - b_points[:, :2]).max())


def test_index_groups():
    assert len(lm.CONTOUR) == len(set(lm.CONTOUR.tolist())) == 36
    assert lm.CONTOUR[0] == 10  # top of the forehead
    assert len(lm.IRIS_LEFT) == len(lm.IRIS_RIGHT) == 4
    assert (lm.IRIS_LEFT_CENTER, lm.IRIS_RIGHT_CENTER) == (473, 468)
    assert not set(lm.LEFT_EYE) & set(lm.RIGHT_EYE)
    groups = [lm.CONTOUR, lm.LEFT_EYE, lm.RIGHT_EYE, lm.LEFT_EYEBROW, lm.RIGHT_EYEBROW, lm.LIPS,
              lm.NOSE, lm.IRIS_LEFT, lm.IRIS_RIGHT]
    assert all(g.dtype == np.int64 and g.min() >= 0 and g.max() < lm.NUM_POINTS for g in groups)


def test_astronaut_one_face(astronaut, astronaut_rgb):
    assert astronaut.points.shape == (lm.NUM_POINTS, 3) and astronaut.points.dtype == np.float32
    assert np.isfinite(astronaut.points).all()
    assert astronaut.image_size == (512, 512)
    assert astronaut.warnings == ()
    assert astronaut.score > 0.8
    x0, y0, x1, y1 = astronaut.box
    assert 60 < x1 - x0 < 160 and 60 < y1 - y0 < 160  # her face is about 100 px wide
    # The detector box spans brows to mouth; the whole mesh lies in it grown by 40 % a side.
    w, h = x1 - x0, y1 - y0
    xy = astronaut.points[:, :2]
    assert (xy >= [x0 - 0.4 * w, y0 - 0.4 * h]).all() and (xy <= [x1 + 0.4 * w, y1 + 0.4 * h]).all()
    assert x0 < np.median(xy[:, 0]) < x1 and y0 < np.median(xy[:, 1]) < y1


def test_astronaut_anatomy(astronaut, astronaut_rgb):
    p = astronaut.points
    eyes_y = p[np.r_[lm.LEFT_EYE, lm.RIGHT_EYE], 1].mean()
    assert eyes_y < p[lm.NOSE, 1].mean() < p[lm.LIPS, 1].mean()
    assert p[lm.LEFT_EYEBROW, 1].mean() < p[lm.LEFT_EYE, 1].mean()
    # Subject's left is the image's right in this (unmirrored) photo.
    assert p[lm.LEFT_EYE, 0].mean() > p[lm.RIGHT_EYE, 0].mean() + 25
    assert p[lm.IRIS_LEFT_CENTER, 0] > p[lm.IRIS_RIGHT_CENTER, 0]
    for iris, eye in ((lm.IRIS_LEFT_CENTER, lm.LEFT_EYE), (lm.IRIS_RIGHT_CENTER, lm.RIGHT_EYE)):
        assert (p[eye, :2].min(0) < p[iris, :2]).all() and (p[iris, :2] < p[eye, :2].max(0)).all()
    # Irises are much darker than the face: the points sit on the real eyes. (Median over
    # the iris disk, as catchlights make single pixels bright; a disk 6 px off is > 130.)
    luma = astronaut_rgb.mean(axis=2)
    face_px = p[:468, :2].astype(int)
    face_luma = luma[face_px[:, 1], face_px[:, 0]].mean()
    yy, xx = np.mgrid[0:512, 0:512] + 0.5  # pixel centres
    for centre, ring in ((lm.IRIS_LEFT_CENTER, lm.IRIS_LEFT), (lm.IRIS_RIGHT_CENTER, lm.IRIS_RIGHT)):
        radius = np.linalg.norm(p[ring, :2] - p[centre, :2], axis=1).mean()
        disk = (xx - p[centre, 0]) ** 2 + (yy - p[centre, 1]) ** 2 < radius ** 2
        assert 2.0 < radius < 8.0 and np.median(luma[disk]) < 0.6 * face_luma
    # Depth: the nose tip (index 1) is nearer the camera than the face oval; z spans a
    # face-like depth in the same pixel units as x.
    assert p[1, 2] < p[lm.CONTOUR, 2].mean()
    width = np.ptp(p[:468, 0])
    assert 0.3 * width < np.ptp(p[:468, 2]) < 1.2 * width


def test_deterministic_and_thread_safe(astronaut_path, astronaut):
    photo = load_photo(astronaut_path)
    results = [None] * 3

    def run(i):
        results[i] = detect_landmarks(photo)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        assert np.array_equal(r.points, astronaut.points) and r.box == astronaut.box


@pytest.mark.parametrize("kind", ["png", "webp", "tiff", "grey16", "rgb16", "grey", "rgba"])
def test_other_files_of_the_same_photo(tmp_path, astronaut_rgb, astronaut, kind):
    suffix = {"webp": ".webp", "tiff": ".tif", "rgb16": ".tif"}.get(kind, ".png")
    path = tmp_path / f"astronaut_{kind}{suffix}"
    if kind == "grey16":
        grey = (np.asarray(Image.fromarray(astronaut_rgb).convert("L")).astype(np.uint16) * 257)
        Image.fromarray(grey).save(path)
    elif kind == "rgb16":
        tifffile.imwrite(path, astronaut_rgb.astype(np.uint16) * 257, photometric="rgb")
    elif kind == "grey":
        Image.fromarray(astronaut_rgb).convert("L").save(path)
    elif kind == "rgba":
        Image.fromarray(np.dstack([astronaut_rgb, np.full((512, 512), 255, np.uint8)])).save(path)
    else:
        Image.fromarray(astronaut_rgb).save(path)
    photo = load_photo(path)
    assert photo.rgb.shape == (512, 512, 3) and photo.rgb.dtype == np.float32
    assert 0.0 <= photo.rgb.min() and photo.rgb.max() <= 1.0
    if kind in ("png", "rgb16", "rgba"):  # same pixels as the source -> same face as the JPEG
        assert _max_xy_error(detect_landmarks(photo), astronaut.points) < 3.0
    if kind == "grey16":  # grey: still found, a little further from the colour result
        assert _max_xy_error(detect_landmarks(photo), astronaut.points) < 6.0


def test_exif_rotated_photo(tmp_path, astronaut_path, astronaut_rgb):
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to view"
    path = tmp_path / "rotated.jpg"
    Image.fromarray(astronaut_rgb).transpose(Image.Transpose.ROTATE_90).save(path, quality=95, exif=exif)
    rotated = load_photo(path)
    upright = load_photo(astronaut_path)
    assert rotated.rgb.shape == upright.rgb.shape
    assert np.abs(rotated.rgb - upright.rgb).mean() < 0.01  # equal up to JPEG re-encoding
    assert _max_xy_error(detect_landmarks(rotated), detect_landmarks(upright).points) < 3.0


def _paste(canvas: np.ndarray, image: np.ndarray, x: int, y: int):
    canvas[y:y + image.shape[0], x:x + image.shape[1]] = image


@pytest.mark.parametrize("scale, x, y", [(0.9, 1900, 1200), (2.5, 400, 300)])
def test_small_face_in_big_canvas(astronaut_rgb, astronaut, scale, x, y):
    size = round(512 * scale)
    small = np.asarray(Image.fromarray(astronaut_rgb).resize((size, size), Image.LANCZOS))
    canvas = np.full((2000, 3000, 3), 128, np.uint8)
    _paste(canvas, small, x, y)
    found = detect_landmarks(photo_from_array(canvas, "canvas"))
    assert found.image_size == (3000, 2000)
    expected = astronaut.points * [scale, scale, scale] + [x, y, 0.0]
    err = np.abs(found.points[:, :2] - expected[:, :2])
    # A few pixels of the upright photo, scaled.
    assert np.median(err) < 1.0 * max(scale, 1.0) and err.max() < 4.0 * max(scale, 1.0)
    assert np.abs(found.points[:, 2] - expected[:, 2]).max() < 4.0 * max(scale, 1.0)


def test_close_up_filling_the_frame(astronaut_rgb, astronaut):
    # Only the short-range detector finds a face that fills the whole image (and this image
    # is too small for the finer pyramid levels, where the full-range one sees parts of it).
    x0, y0, x1, y1 = (round(v) for v in astronaut.box)
    crop = astronaut_rgb[y0:y1, x0:x1]  # brows to mouth; forehead and chin cut off
    k = 4
    close = np.asarray(Image.fromarray(crop).resize((crop.shape[1] * k, crop.shape[0] * k), Image.BICUBIC))
    found = detect_landmarks(photo_from_array(close, "close-up"))
    expected = (astronaut.points[:, :2] - [x0, y0]) * k
    assert np.median(np.abs(found.points[:, :2] - expected)) < 0.75 * k


def test_pixel_convention_is_scale_consistent(astronaut_rgb, astronaut):
    # Pixel centres at integer + 0.5: upscaling the photo k times scales the points by k
    # exactly, with no half-pixel drift (MediaPipe's raw coordinates drift by 0.5 - 0.5 / k).
    k = 3
    big = np.asarray(Image.fromarray(astronaut_rgb).resize((512 * k, 512 * k), Image.BICUBIC))
    found = detect_landmarks(photo_from_array(big, "big"))
    drift = (found.points[:, :2] / k - astronaut.points[:, :2]).mean(axis=0)
    assert np.abs(drift).max() < 0.2
    # z scales like x: the depth range grows k times too.
    assert np.ptp(found.points[:, 2]) / k == pytest.approx(np.ptp(astronaut.points[:, 2]), rel=0.03)


def test_two_faces_picks_the_larger(astronaut_rgb, astronaut):
    small = np.asarray(Image.fromarray(astronaut_rgb).resize((320, 320), Image.LANCZOS))
    canvas = np.full((600, 1000, 3), 128, np.uint8)
    _paste(canvas, small, 0, 100)
    _paste(canvas, astronaut_rgb, 450, 40)
    found = detect_landmarks(photo_from_array(canvas, "pair.jpg"))
    assert _max_xy_error(found, astronaut.points + [450, 40, 0]) < 3.0
    assert len(found.warnings) == 1
    assert "2 faces" in found.warnings[0] and "1 other face" in found.warnings[0]
    assert "pair.jpg" in found.warnings[0]


def test_no_face(no_face_path):
    with pytest.raises(NoFaceError) as info:
        detect_landmarks(load_photo(no_face_path))
    assert no_face_path in str(info.value) and "100 px" in str(info.value)


def test_blank_image_has_no_face():
    with pytest.raises(NoFaceError):
        detect_landmarks(photo_from_array(np.full((1500, 2500, 3), 0.5, np.float32), "blank"))


def test_nothing_printed_to_stdout(astronaut_path):
    code = ("from engine.io.image_io import load_photo; from engine.detect.landmarks import detect_landmarks; "
            f"detect_landmarks(load_photo({astronaut_path!r}))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=Path(__file__).resolve().parents[1])
    assert run.returncode == 0, run.stderr
    assert run.stdout == ""


def test_native_stderr_filter_drops_only_the_noise(capfd):
    """MediaPipe's start-up lines are written by C++ to file descriptor 2; the filter drops
    those and passes every other line on (a real error stays visible)."""
    with lm._native_stderr_without(("inference_feedback_manager.cc",)):
        os.write(2, b"W0000 inference_feedback_manager.cc:114] Feedback manager requires...\n")
        os.write(2, b"E0000 something real went wrong\n")
    err = capfd.readouterr().err
    assert "something real went wrong" in err and "inference_feedback_manager" not in err
