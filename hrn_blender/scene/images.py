"""Images made from the reconstruction's arrays and packed into the .blend file.

Maps are stored top row first (engine.conventions); Blender's pixel buffers start at the bottom
row, hence the vertical flip. Packing keeps everything when the .blend is moved: the byte albedo
packs as PNG, the float displacement as OpenEXR (exact float32, no 8/16-bit rounding).
"""
import bpy
import numpy as np

from ..engine_api import image_io, result as engine_result

#: The displacement image stores ``metres / scale + MIDLEVEL`` (the engine's displacement.png rule).
DISPLACEMENT_MIDLEVEL = engine_result.DISPLACEMENT_MIDLEVEL


def albedo_image(name: str, albedo: np.ndarray) -> bpy.types.Image:
    """``[H, W, 3]`` float sRGB-encoded albedo in [0, 1] -> packed 8-bit sRGB image."""
    image = bpy.data.images.new(name, albedo.shape[1], albedo.shape[0], alpha=False)
    _fill(image, albedo)
    return image


def displacement_image(name: str, displacement: np.ndarray) -> tuple[bpy.types.Image, float]:
    """``[H, W]`` float32 metres -> (packed Non-Color float image, scale in metres).

    Pixel value v encodes ``(v - DISPLACEMENT_MIDLEVEL) * scale`` metres, as the engine's
    displacement.png does, so the Displace modifier and Displacement node read it with
    ``midlevel = DISPLACEMENT_MIDLEVEL`` and ``strength = scale``.
    """
    encoded, scale = engine_result.encode_displacement(displacement)
    image = bpy.data.images.new(name, displacement.shape[1], displacement.shape[0], alpha=False,
                                float_buffer=True)
    image.colorspace_settings.name = "Non-Color"
    _fill(image, np.repeat(encoded[..., None], 3, axis=2))
    return image, scale


def photo_image(name: str, path: str) -> bpy.types.Image:
    """The photo as a new packed 8-bit sRGB image, upright as the engine saw it.

    Read through the engine's photo loader rather than ``bpy.data.images.load``: Blender ignores
    the EXIF orientation tag, so a phone portrait would lie sideways behind the camera whose
    frame (the engine's upright image size) it has to fill.

    Raises:
        errors.ImageReadError: the file cannot be read as an image.
    """
    photo = image_io.load_photo(path)
    image = bpy.data.images.new(name, photo.rgb.shape[1], photo.rgb.shape[0], alpha=False)
    _fill(image, photo.rgb)
    return image


def _fill(image: bpy.types.Image, rgb: np.ndarray) -> None:
    h, w = rgb.shape[:2]
    rgba = np.ones((h, w, 4), np.float32)
    rgba[..., :3] = rgb[::-1]
    image.pixels.foreach_set(rgba.ravel())
    image.pack()
