"""Photo loading: any common image file (or an in-memory array) to upright float32 sRGB.

Everything downstream sees one representation, :class:`Photo`: ``[H, W, 3]`` float32 sRGB
in [0, 1], top row first (image space of :mod:`engine.conventions`), already turned upright
according to its EXIF orientation. No resizing happens here; stages pick their own scale.
"""
from __future__ import annotations

import os
from typing import Optional
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..errors import ImageReadError

#: Grey level (sRGB, [0, 1]) that transparent pixels are composited onto. Mid-grey keeps a
#: cut-out portrait's background neutral, so it biases neither the face detector nor the
#: lighting and albedo estimates the way black or white would.
ALPHA_BACKGROUND = 0.5

_EXIF_ORIENTATION = 0x0112
_EXIF_IFD = 0x8769            # the Exif sub-IFD, where camera settings live
_EXIF_FOCAL_35MM = 0xA405     # FocalLengthIn35mmFilm, mm (0 = unknown)


@dataclass(frozen=True)
class Photo:
    """An upright photo ready for the engine."""

    rgb: np.ndarray
    """``[H, W, 3]`` float32, sRGB-encoded (not linear) values in [0, 1], row 0 at the top."""
    path: str
    """Where the photo came from: the file path, or the name given to :func:`photo_from_array`.
    Used in messages only."""
    original_size: tuple[int, int]
    """(width, height) in pixels of the full-resolution upright image as loaded. Equal to
    ``rgb``'s size unless a later stage replaced ``rgb`` by a resized copy; results are
    reported in these pixel units."""
    focal_35mm: Optional[float] = None
    """The lens' 35 mm-equivalent focal length (EXIF ``FocalLengthIn35mmFilm``), in mm, when
    the file records it; None otherwise."""

    def __post_init__(self):
        if self.rgb.ndim != 3 or self.rgb.shape[2] != 3 or self.rgb.dtype != np.float32:
            raise ValueError(f"Photo.rgb must be [H, W, 3] float32, got {self.rgb.shape} {self.rgb.dtype}")


def load_photo(path: str | os.PathLike) -> Photo:
    """Read an image file into an upright :class:`Photo`.

    Anything Pillow decodes is accepted (JPEG, PNG, WebP, TIFF, BMP, ...). The EXIF
    orientation tag is applied. Grey, palette, CMYK and other modes become RGB; alpha is
    composited onto :data:`ALPHA_BACKGROUND` grey. 16-bit images keep their precision:
    grey ones through Pillow's ``I;16`` mode, colour ones (which Pillow truncates to 8 bits)
    through OpenCV, a dependency of MediaPipe. Pillow's decompression-bomb limit (about 179
    megapixels) still applies.

    Raises:
        ImageReadError: the path is missing or a directory, or the file is not a readable,
            complete image. The message names the file.
    """
    path = os.fspath(path)
    name = repr(path)
    if not os.path.exists(path):
        raise ImageReadError(f"Cannot read photo {name}: the file does not exist.")
    if os.path.isdir(path):
        raise ImageReadError(f"Cannot read photo {name}: it is a folder, not an image file.")
    try:
        with Image.open(path) as img:
            sixteen_bit_colour = _is_16bit_colour(img)  # before load(), which clears img.tile
            img.load()
            exif = img.getexif()
            orientation = exif.get(_EXIF_ORIENTATION, 1)
            focal_35mm = exif.get_ifd(_EXIF_IFD).get(_EXIF_FOCAL_35MM)
            pixels = _read_16bit_colour(path) if sixteen_bit_colour else _pil_to_array(img)
    except Image.UnidentifiedImageError:
        raise ImageReadError(
            f"Cannot read photo {name}: it is not an image file Pillow recognises. "
            "Use a JPEG, PNG, WebP or TIFF photo.") from None
    except PermissionError:
        raise ImageReadError(f"Cannot read photo {name}: permission denied.") from None
    except Image.DecompressionBombError as err:
        raise ImageReadError(f"Cannot read photo {name}: it is too large to open safely ({err}). "
                             "Downscale it.") from None
    except (OSError, SyntaxError, ValueError) as err:
        # Pillow reports truncated or corrupt data as OSError ("image file is truncated"),
        # and broken headers of some formats as SyntaxError or ValueError.
        raise ImageReadError(
            f"Cannot read photo {name}: the file is damaged or incomplete ({err}). "
            "Re-export or re-download it.") from None
    rgb = _to_float_rgb(_apply_orientation(pixels, orientation))
    return Photo(rgb=rgb, path=path, original_size=(rgb.shape[1], rgb.shape[0]),
                 focal_35mm=float(focal_35mm) if focal_35mm else None)


def photo_from_array(array: np.ndarray, name: str) -> Photo:
    """Wrap an in-memory image as a :class:`Photo` (no orientation handling).

    Args:
        array: ``[H, W]`` grey, ``[H, W, 2]`` grey+alpha, ``[H, W, 3]`` RGB or ``[H, W, 4]``
            RGBA, sRGB-encoded, row 0 at the top. uint8 (0-255), uint16 (0-65535) or float
            (0-1; values outside are clipped). Alpha is composited onto
            :data:`ALPHA_BACKGROUND` grey.
        name: shown in messages in place of a file path.
    Raises:
        ValueError: unsupported shape or dtype, or non-finite values.
    """
    rgb = _to_float_rgb(np.asarray(array))
    return Photo(rgb=rgb, path=name, original_size=(rgb.shape[1], rgb.shape[0]))


def _is_16bit_colour(img: Image.Image) -> bool:
    """Whether Pillow would truncate this file's samples to 8 bits: it has no 16-bit colour
    mode, but its decoder's raw mode ("RGB;16B", "RGBA;16L", ...) reveals the stored depth."""
    if img.mode not in ("RGB", "RGBA") or not img.tile:
        return False
    args = img.tile[0].args
    rawmode = args if isinstance(args, str) else args[0] if args else ""
    return isinstance(rawmode, str) and ";16" in rawmode


def _read_16bit_colour(path: str) -> np.ndarray:
    """``[H, W, 3|4]`` uint16 RGB(A) samples of a 16-bit colour PNG or TIFF, via OpenCV."""
    import cv2

    # imdecode from bytes rather than imread: imread cannot open non-ASCII paths on Windows.
    data = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if data is None or data.dtype != np.uint16 or data.ndim != 3 or data.shape[2] not in (3, 4):
        raise ValueError("its 16-bit colour data could not be decoded")
    order = [2, 1, 0, 3][: data.shape[2]]  # OpenCV stores BGR(A)
    return data[..., order]


def _pil_to_array(img: Image.Image) -> np.ndarray:
    """Pixels of a decoded Pillow image as uint8, uint16 or float32, 1-4 channels."""
    mode = img.mode
    if mode in ("L", "LA", "RGB", "RGBA"):
        return np.asarray(img)
    if mode.startswith("I;16"):
        return np.asarray(img).astype(np.uint16)  # I;16B arrives big-endian
    if mode == "I":
        # 32-bit integer grey: in practice 16-bit data (older PNG and TIFF decoders).
        return np.clip(np.asarray(img), 0, 65535).astype(np.uint16)
    if mode == "F":
        return np.asarray(img, dtype=np.float32)  # taken as [0, 1]; clipped later
    if mode in ("1", "La"):
        return np.asarray(img.convert("L" if mode == "1" else "LA"))
    if mode in ("P", "PA", "RGBa"):
        return np.asarray(img.convert("RGBA"))  # palettes may carry transparency
    # CMYK, YCbCr, LAB, HSV, RGBX: Pillow's own conversion (ICC profiles are not applied).
    return np.asarray(img.convert("RGB"))


def _apply_orientation(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Turn ``[H, W, ...]`` pixels upright according to an EXIF orientation value (1-8), as
    :func:`PIL.ImageOps.exif_transpose` does; works on any dtype, including 16-bit colour."""
    ops = {
        2: lambda a: a[:, ::-1],                      # mirrored
        3: lambda a: a[::-1, ::-1],                   # rotated 180
        4: lambda a: a[::-1],                         # flipped
        5: lambda a: a.swapaxes(0, 1),                # transposed
        6: lambda a: np.rot90(a, -1),                 # needs 90 clockwise
        7: lambda a: a[::-1, ::-1].swapaxes(0, 1),    # transversed
        8: lambda a: np.rot90(a, 1),                  # needs 90 counter-clockwise
    }
    op = ops.get(orientation)
    return np.ascontiguousarray(op(pixels)) if op else pixels


def _to_float_rgb(pixels: np.ndarray) -> np.ndarray:
    """uint8/uint16/float pixels with 1-4 channels to ``[H, W, 3]`` float32 in [0, 1]."""
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    if pixels.ndim != 3 or pixels.shape[2] not in (1, 2, 3, 4) or 0 in pixels.shape:
        raise ValueError(f"expected an [H, W], [H, W, 2], [H, W, 3] or [H, W, 4] image, got {pixels.shape}")
    if pixels.dtype == np.uint8:
        values = pixels.astype(np.float32) / 255.0
    elif pixels.dtype == np.uint16:
        values = pixels.astype(np.float32) / 65535.0
    elif np.issubdtype(pixels.dtype, np.floating):
        if not np.isfinite(pixels).all():
            raise ValueError("image contains NaN or infinite values")
        values = np.clip(pixels, 0.0, 1.0).astype(np.float32)
    else:
        raise ValueError(f"unsupported image dtype {pixels.dtype}; use uint8, uint16 or float")
    if values.shape[2] in (2, 4):
        colour, alpha = values[..., :-1], values[..., -1:]
        values = colour * alpha + ALPHA_BACKGROUND * (1.0 - alpha)
    if values.shape[2] == 1:
        values = np.repeat(values, 3, axis=2)
    return np.ascontiguousarray(values, dtype=np.float32)
