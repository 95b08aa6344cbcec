"""Shared test fixtures: real photos written to temporary files."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from skimage import data


@pytest.fixture(scope="session")
def astronaut_rgb() -> np.ndarray:
    """scikit-image's astronaut photo (Eileen Collins): ``[512, 512, 3]`` uint8, one face
    about 100 px wide, looking slightly to the image's left."""
    return data.astronaut()


@pytest.fixture(scope="session")
def astronaut_path(tmp_path_factory, astronaut_rgb) -> str:
    """The astronaut photo as a quality-95 JPEG file."""
    path = tmp_path_factory.mktemp("photos") / "astronaut.jpg"
    Image.fromarray(astronaut_rgb).save(path, quality=95)
    return str(path)


@pytest.fixture(scope="session")
def no_face_path(tmp_path_factory) -> str:
    """A JPEG with no face in it: scikit-image's coffee cup (tests check that no face is
    found in it)."""
    path = tmp_path_factory.mktemp("photos") / "coffee.jpg"
    Image.fromarray(data.coffee()).save(path, quality=95)
    return str(path)


@pytest.fixture
def registered_extension():
    """An empty Blender scene with the development copy of the extension registered."""
    import bpy

    import hrn_blender

    bpy.ops.wm.read_factory_settings(use_empty=True)
    hrn_blender.register()
    yield
    hrn_blender.unregister()
