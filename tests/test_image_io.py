"""Photo loading: formats, modes, bit depths, EXIF orientation and unreadable files."""
from __future__ import annotations

import os

import cv2
import numpy as np
import pytest
import tifffile
from PIL import Image, ImageOps

from engine.errors import ImageReadError
from engine.io.image_io import ALPHA_BACKGROUND, Photo, load_photo, photo_from_array


def _check_photo(photo: Photo, size: tuple[int, int]):
    assert photo.rgb.dtype == np.float32
    assert photo.rgb.shape == (size[1], size[0], 3)
    assert photo.original_size == size
    assert 0.0 <= photo.rgb.min() and photo.rgb.max() <= 1.0


def test_jpeg(astronaut_path, astronaut_rgb):
    photo = load_photo(astronaut_path)
    _check_photo(photo, (512, 512))
    assert photo.path == astronaut_path
    assert np.abs(photo.rgb - astronaut_rgb / 255.0).mean() < 0.01  # JPEG quality 95


@pytest.mark.parametrize("suffix, options", [
    (".png", {}), (".webp", {"lossless": True}), (".tif", {}), (".tif", {"compression": "tiff_lzw"}),
    (".bmp", {}),
])
def test_lossless_formats_are_exact(tmp_path, astronaut_rgb, suffix, options):
    path = tmp_path / f"astronaut{suffix}"
    Image.fromarray(astronaut_rgb).save(path, **options)
    photo = load_photo(path)
    _check_photo(photo, (512, 512))
    assert np.array_equal(photo.rgb, astronaut_rgb.astype(np.float32) / 255.0)


def test_lossy_webp(tmp_path, astronaut_rgb):
    path = tmp_path / "astronaut.webp"
    Image.fromarray(astronaut_rgb).save(path, quality=90)
    photo = load_photo(path)
    _check_photo(photo, (512, 512))
    assert np.abs(photo.rgb - astronaut_rgb / 255.0).mean() < 0.02


def test_grayscale_is_replicated(tmp_path, astronaut_rgb):
    grey = np.asarray(Image.fromarray(astronaut_rgb).convert("L"))
    path = tmp_path / "grey.png"
    Image.fromarray(grey).save(path)
    photo = load_photo(path)
    _check_photo(photo, (512, 512))
    for c in range(3):
        assert np.array_equal(photo.rgb[..., c], grey / np.float32(255.0))


def test_16bit_grey_png_keeps_precision(tmp_path):
    # Values that differ below 8-bit resolution must stay distinct.
    grey = (np.arange(300 * 200, dtype=np.uint32) * 7 % 65536).astype(np.uint16).reshape(200, 300)
    path = tmp_path / "grey16.png"
    Image.fromarray(grey).save(path)
    assert Image.open(path).mode == "I;16"
    photo = load_photo(path)
    _check_photo(photo, (300, 200))
    assert np.allclose(photo.rgb[..., 1], grey / 65535.0, atol=1e-7)


@pytest.fixture(scope="module")
def rgb16() -> np.ndarray:
    """``[120, 160, 3]`` uint16 with fine steps an 8-bit decoder would merge."""
    rng = np.random.default_rng(0)
    return rng.integers(0, 65536, size=(120, 160, 3), dtype=np.uint16)


def test_16bit_rgb_png_keeps_precision(tmp_path, rgb16):
    path = tmp_path / "rgb16.png"
    cv2.imwrite(str(path), rgb16[..., ::-1])  # OpenCV writes BGR
    photo = load_photo(path)
    _check_photo(photo, (160, 120))
    assert np.allclose(photo.rgb, rgb16 / 65535.0, atol=1e-7)


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_16bit_rgb_tiff_keeps_precision(tmp_path, rgb16, compression):
    path = tmp_path / "rgb16.tif"
    tifffile.imwrite(path, rgb16, photometric="rgb", compression=compression)
    photo = load_photo(path)
    _check_photo(photo, (160, 120))
    assert np.allclose(photo.rgb, rgb16 / 65535.0, atol=1e-7)


def test_16bit_rgba_png_composites_alpha(tmp_path, rgb16):
    alpha = np.zeros(rgb16.shape[:2], np.uint16)
    alpha[:, 80:] = 65535
    path = tmp_path / "rgba16.png"
    cv2.imwrite(str(path), np.dstack([rgb16[..., ::-1], alpha]))
    photo = load_photo(path)
    assert np.allclose(photo.rgb[:, :80], ALPHA_BACKGROUND)
    assert np.allclose(photo.rgb[:, 80:], rgb16[:, 80:] / 65535.0, atol=1e-7)


def test_float_tiff(tmp_path):
    values = np.linspace(-0.5, 1.5, 64 * 32, dtype=np.float32).reshape(32, 64)
    path = tmp_path / "float.tif"
    Image.fromarray(values, mode="F").save(path)
    photo = load_photo(path)
    _check_photo(photo, (64, 32))
    assert np.array_equal(photo.rgb[..., 0], np.clip(values, 0, 1))


def test_rgba_composited_on_grey(tmp_path, astronaut_rgb):
    alpha = np.zeros((512, 512), np.uint8)
    alpha[:, 256:] = 255
    alpha[:10, :10] = 128
    path = tmp_path / "rgba.png"
    Image.fromarray(np.dstack([astronaut_rgb, alpha])).save(path)
    photo = load_photo(path)
    _check_photo(photo, (512, 512))
    src = astronaut_rgb / np.float32(255.0)
    assert np.allclose(photo.rgb[:, 256:], src[:, 256:])
    assert np.allclose(photo.rgb[10:, 10:256], ALPHA_BACKGROUND)
    a = 128 / 255.0
    assert np.allclose(photo.rgb[:10, :10], src[:10, :10] * a + ALPHA_BACKGROUND * (1 - a), atol=1e-6)


def test_grey_alpha_and_bilevel(tmp_path):
    grey = np.tile(np.arange(256, dtype=np.uint8), (4, 1))
    la = Image.fromarray(np.dstack([grey, np.full_like(grey, 255)]), mode="LA")
    la.save(tmp_path / "la.png")
    assert np.allclose(load_photo(tmp_path / "la.png").rgb[..., 2], grey / 255.0)
    Image.fromarray(grey >= 128).save(tmp_path / "bw.png")  # mode "1"
    assert Image.open(tmp_path / "bw.png").mode == "1"
    assert np.array_equal(load_photo(tmp_path / "bw.png").rgb[..., 0], (grey >= 128).astype(np.float32))


def test_palette_with_transparency(tmp_path, astronaut_rgb):
    palette_img = Image.fromarray(astronaut_rgb).quantize(16)
    palette_img.info["transparency"] = 0  # palette entry 0 is see-through
    path = tmp_path / "palette.png"
    palette_img.save(path, transparency=0)
    photo = load_photo(path)
    _check_photo(photo, (512, 512))
    index = np.asarray(palette_img)
    colours = np.asarray(palette_img.convert("RGB")) / np.float32(255.0)
    assert np.allclose(photo.rgb[index == 0], ALPHA_BACKGROUND)
    assert np.allclose(photo.rgb[index != 0], colours[index != 0])


def test_cmyk(tmp_path, astronaut_rgb):
    path = tmp_path / "cmyk.tif"
    Image.fromarray(astronaut_rgb).convert("CMYK").save(path)
    photo = load_photo(path)
    _check_photo(photo, (512, 512))
    assert np.allclose(photo.rgb, astronaut_rgb / 255.0, atol=1e-6)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow(tmp_path, orientation):
    rng = np.random.default_rng(orientation)
    stored = rng.integers(0, 256, size=(6, 10, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"oriented{orientation}.png"
    Image.fromarray(stored).save(path, exif=exif)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(path)))
    photo = load_photo(path)
    assert photo.original_size == (expected.shape[1], expected.shape[0])
    assert np.array_equal(photo.rgb, expected / np.float32(255.0))


def test_exif_rotated_jpeg_is_upright(tmp_path, astronaut_rgb):
    # Stored lying on its side, with Orientation 6 ("rotate 90 degrees clockwise to view").
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    Image.fromarray(astronaut_rgb[:, :400]).transpose(Image.Transpose.ROTATE_90).save(path, quality=95, exif=exif)
    photo = load_photo(path)
    _check_photo(photo, (400, 512))
    assert np.abs(photo.rgb - astronaut_rgb[:, :400] / 255.0).mean() < 0.01


def test_exif_rotated_16bit_colour(tmp_path, rgb16):
    # The 16-bit colour path reads pixels with OpenCV but must still honour the tag.
    path = tmp_path / "rgb16_rotated.tif"
    tifffile.imwrite(path, rgb16, photometric="rgb", extratags=[(274, "H", 1, 8, True)])  # Orientation 8
    photo = load_photo(path)
    _check_photo(photo, (120, 160))
    assert np.allclose(photo.rgb, np.rot90(rgb16) / 65535.0, atol=1e-7)


def _assert_read_error(path, *words):
    with pytest.raises(ImageReadError) as info:
        load_photo(path)
    message = str(info.value)
    assert os.fspath(path) in message
    for word in words:
        assert word in message
    return message


def test_missing_file(tmp_path):
    _assert_read_error(tmp_path / "nope.jpg", "does not exist")


def test_directory(tmp_path):
    _assert_read_error(tmp_path, "folder")


def test_text_file_named_jpg(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("these are not pixels\n" * 20)
    _assert_read_error(path, "not an image file", "JPEG")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    _assert_read_error(path)


@pytest.mark.parametrize("fraction", [0.5, 0.05])
def test_truncated_jpeg(tmp_path, astronaut_path, fraction):
    data = open(astronaut_path, "rb").read()
    path = tmp_path / "truncated.jpg"
    path.write_bytes(data[: int(len(data) * fraction)])
    _assert_read_error(path, "damaged or incomplete")


def test_corrupt_png(tmp_path, astronaut_rgb):
    path = tmp_path / "corrupt.png"
    Image.fromarray(astronaut_rgb).save(path)
    data = bytearray(path.read_bytes())
    data[200:400] = b"\x00" * 200  # inside the compressed pixel data: CRC and zlib break
    path.write_bytes(bytes(data))
    _assert_read_error(path, "damaged or incomplete")


def test_photo_from_array_dtypes_and_channels(astronaut_rgb):
    ref = astronaut_rgb / np.float32(255.0)
    assert np.array_equal(photo_from_array(astronaut_rgb, "a").rgb, ref)
    as16 = astronaut_rgb.astype(np.uint16) * 257  # 255 -> 65535
    assert np.allclose(photo_from_array(as16, "a").rgb, ref, atol=1e-7)
    assert np.array_equal(photo_from_array(ref.astype(np.float64), "a").rgb, ref)
    grey = photo_from_array(astronaut_rgb[..., 0], "grey")
    assert np.array_equal(grey.rgb[..., 2], ref[..., 0])
    rgba = np.dstack([astronaut_rgb, np.zeros((512, 512), np.uint8)])
    assert np.allclose(photo_from_array(rgba, "clear").rgb, ALPHA_BACKGROUND)
    photo = photo_from_array(np.zeros((20, 30, 3), np.uint8), "name")
    assert photo.path == "name" and photo.original_size == (30, 20)


@pytest.mark.parametrize("bad", [
    np.zeros((4, 4, 5), np.uint8), np.zeros((4,), np.uint8), np.zeros((0, 4, 3), np.uint8),
    np.zeros((4, 4, 3), np.int64), np.full((4, 4, 3), np.nan, np.float32),
])
def test_photo_from_array_rejects(bad):
    with pytest.raises(ValueError):
        photo_from_array(bad, "bad")


def test_photo_checks_its_array():
    with pytest.raises(ValueError):
        Photo(rgb=np.zeros((4, 4, 3), np.float64), path="x", original_size=(4, 4))


def test_exif_35mm_focal_length_sets_the_camera(tmp_path, astronaut_rgb):
    """A phone photo's EXIF FocalLengthIn35mmFilm (26 mm) reaches the camera the coarse fit
    uses: focal = long side x 26 / 36 px; without the tag, the 50 mm default."""
    from engine.detect.landmarks import detect_landmarks
    from engine.levels.albedo import srgb_to_linear
    from engine.pipeline import _Input

    exif = Image.Exif()
    exif.get_ifd(0x8769)[0xA405] = 26
    path = tmp_path / "phone.jpg"
    Image.fromarray(astronaut_rgb).save(path, exif=exif, quality=95)
    photo = load_photo(path)
    assert photo.focal_35mm == 26.0
    plain = tmp_path / "plain.jpg"
    Image.fromarray(astronaut_rgb).save(plain, quality=95)
    assert load_photo(plain).focal_35mm is None
    landmarks = detect_landmarks(photo)
    assert _Input(0, photo, landmarks, srgb_to_linear(photo.rgb)).focal_px == pytest.approx(512 * 26 / 36)
    unknown = load_photo(plain)
    assert _Input(0, unknown, landmarks, srgb_to_linear(unknown.rgb)).focal_px == pytest.approx(512 * 50 / 36)
