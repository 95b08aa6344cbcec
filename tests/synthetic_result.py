"""A small, realistic-shaped FaceReconstruction built WITHOUT the engine pipeline, for tests.

This is test data only: a quad "cube-sphere" head (~2k vertices, all quads, closed, UV atlas of
six patches), a smooth mid-frequency field, concentric-ripple high-frequency displacement, a
coloured albedo with eye and lip marks, and the 52 ARKit expression names with simple local
deltas. It exercises every field of the result type; it must never be shown as a reconstruction.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from engine.result import DEFAULT_EYES, Camera, FaceReconstruction, ViewRecord

ARKIT_NAMES = (
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft", "eyeBlinkRight",
    "eyeLookDownLeft", "eyeLookDownRight", "eyeLookInLeft", "eyeLookInRight", "eyeLookOutLeft",
    "eyeLookOutRight", "eyeLookUpLeft", "eyeLookUpRight", "eyeSquintLeft", "eyeSquintRight",
    "eyeWideLeft", "eyeWideRight", "jawForward", "jawLeft", "jawOpen", "jawRight", "mouthClose",
    "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft", "mouthFrownRight", "mouthFunnel",
    "mouthLeft", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthPressLeft", "mouthPressRight",
    "mouthPucker", "mouthRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower",
    "mouthShrugUpper", "mouthSmileLeft", "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthUpperUpLeft", "mouthUpperUpRight", "noseSneerLeft", "noseSneerRight", "tongueOut",
)
HEAD_RADII = np.array([0.075, 0.105, 0.09])  # metres: half width, half height, half depth
RIPPLE_AMPLITUDE = 0.001  # metres
# Patch normals; patch p sits in atlas cell (column p % 3, row p // 3). +Z (the face) comes first.
_NORMALS = np.array([[0, 0, 1], [1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, -1]], float)
_UP = np.array([[0, 1, 0], [0, 1, 0], [0, 1, 0], [0, 0, -1], [0, 0, 1], [0, 1, 0]], float)
_MARGIN = 0.02  # fraction of an atlas cell left empty around each patch


def make_synthetic_result(n: int = 18, map_size: int = 256, photo_path: str = "",
                          image_size: tuple[int, int] = (192, 160)) -> FaceReconstruction:
    """A test FaceReconstruction; ``n`` quads per cube edge gives 6 n^2 faces, 6 n^2 + 2 vertices."""
    s = np.linspace(-1.0, 1.0, n + 1)
    ss, tt = np.meshgrid(s, s, indexing="xy")  # [n+1, n+1]: column = s, row = t
    cube, uvs, faces, face_uvs = [], [], [], []
    for p, (normal, up) in enumerate(zip(_NORMALS, _UP)):
        right = np.cross(up, normal)  # right x up = normal: quads come out counter-clockwise
        cube.append((normal + ss[..., None] * right + tt[..., None] * up).reshape(-1, 3))
        col, row = p % 3, p // 3
        u = (col + _MARGIN + (ss + 1) / 2 * (1 - 2 * _MARGIN)) / 3
        v = (row + _MARGIN + (tt + 1) / 2 * (1 - 2 * _MARGIN)) / 2
        uvs.append(np.stack([u, v], -1).reshape(-1, 2))
        i = np.arange(n)[None, :] + (n + 1) * np.arange(n)[:, None]
        quad = np.stack([i, i + 1, i + n + 2, i + n + 1], -1).reshape(-1, 4) + p * (n + 1) ** 2
        face_uvs.append(quad)
    cube, uvs, corner = np.concatenate(cube), np.concatenate(uvs), np.concatenate(face_uvs)
    # Patches share their border points: weld them into single vertices.
    _, first, weld = np.unique(np.round(cube, 6), axis=0, return_index=True, return_inverse=True)
    weld = weld.ravel()
    directions = _unit(cube[first])
    vertices = _head_shape(directions)

    w, h = image_size
    yaw = np.radians(20.0)
    rotation = np.array([[np.cos(yaw), 0, np.sin(yaw)], [0, 1, 0], [-np.sin(yaw), 0, np.cos(yaw)]])
    camera = Camera(rotation=rotation, translation=np.array([0.01, -0.005, -0.6]), focal_px=2.0 * w,
                    principal_px=(w / 2 + 6.0, h / 2 - 4.0), image_size=(w, h))
    deltas = np.stack([_expression_delta(name, vertices) for name in ARKIT_NAMES])
    texel_dirs = _atlas_directions(map_size)
    view = ViewRecord(image_path=photo_path, used=True, camera=camera,
                      expression=np.zeros(len(ARKIT_NAMES), np.float32))
    return FaceReconstruction(
        vertices=vertices.astype(np.float32),
        mid_offsets=_mid_field(directions).astype(np.float32),
        faces=weld[corner].astype(np.int32),
        uvs=uvs.astype(np.float32),
        face_uvs=corner.astype(np.int32),
        deformation_map=np.nan_to_num(_mid_field(texel_dirs)).astype(np.float32),
        displacement_map=_ripples(map_size).astype(np.float32),
        albedo=_albedo(map_size).astype(np.float32),
        albedo_confidence=np.where(np.isnan(texel_dirs[..., 0]), 0.0, 1.0).astype(np.float32),
        camera=camera,
        identity=np.zeros(10, np.float32),
        expression=np.zeros(len(ARKIT_NAMES), np.float32),
        expression_names=ARKIT_NAMES, face_material=np.zeros(len(corner), np.uint8),
        material_names=("skin",), eyes=DEFAULT_EYES,
        expression_deltas=deltas.astype(np.float32),
        sh_lighting=np.array([[0.8, 0.75, 0.7]] + [[0.0, 0.0, 0.0]] * 8, np.float32),
        views=(view,),
        metadata={"head_model": "synthetic test data (tests/synthetic_result.py), not a reconstruction"},
        warnings=("Synthetic test data.",),
    )


#: Per view of make_multiview_result: (yaw degrees, image size, {expression name: weight}).
MULTIVIEW_POSES = (
    (20.0, (192, 160), {"jawOpen": 0.3}),
    (-30.0, (160, 192), {"eyeBlinkLeft": 0.8}),
    (0.0, (200, 150), {"jawOpen": 0.6, "mouthSmileLeft": 0.5}),
)


def make_multiview_result(photo_paths: Sequence[str], reference: int = 0,
                          unused_photo: str = "") -> FaceReconstruction:
    """make_synthetic_result seen in the photos ``photo_paths`` (one per MULTIVIEW_POSES entry),
    as the multi-view pipeline reports it: the head wears the ``reference`` view's expression
    and ``camera`` is that view's. ``unused_photo``, if given, is appended as a skipped view."""
    base = make_synthetic_result()
    views = []
    for path, (yaw_deg, (w, h), weights) in zip(photo_paths, MULTIVIEW_POSES):
        yaw = np.radians(yaw_deg)
        rotation = np.array([[np.cos(yaw), 0, np.sin(yaw)], [0, 1, 0], [-np.sin(yaw), 0, np.cos(yaw)]])
        camera = Camera(rotation=rotation, translation=np.array([0.005, -0.01, -0.55]),
                        focal_px=1.8 * w, principal_px=(w / 2 - 3.0, h / 2 + 5.0), image_size=(w, h))
        expression = np.zeros(len(ARKIT_NAMES), np.float32)
        for name, weight in weights.items():
            expression[ARKIT_NAMES.index(name)] = weight
        displacement = base.displacement_map * (1.0 + 0.1 * len(views))
        views.append(ViewRecord(image_path=path, used=True, camera=camera, expression=expression,
                                sh_lighting=base.sh_lighting, displacement_map=displacement))
    if unused_photo:
        views.append(ViewRecord(image_path=unused_photo, used=False, note="No face found."))
    ref = views[reference]
    posed = base.vertices + np.tensordot(ref.expression, base.expression_deltas, axes=1)
    return base.replace(vertices=posed.astype(np.float32), camera=ref.camera,
                        expression=ref.expression, views=tuple(views),
                        metadata={**base.metadata, "reference_view": reference})


#: Colour (8-bit RGB) of the photo that write_view_photos writes for each view.
VIEW_COLOURS = ((230, 40, 40), (40, 200, 60), (50, 70, 220))


def write_view_photos(directory: Path) -> list[str]:
    """Plain-colour PNG "photos" of each MULTIVIEW_POSES size (VIEW_COLOURS), named
    ``view_<i>.png``; returns their paths."""
    from PIL import Image

    paths = []
    for i, ((_, (w, h), _), colour) in enumerate(zip(MULTIVIEW_POSES, VIEW_COLOURS)):
        path = Path(directory) / f"view_{i}.png"
        Image.fromarray(np.full((h, w, 3), colour, np.uint8)).save(path)
        paths.append(str(path))
    return paths


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _head_shape(d: np.ndarray) -> np.ndarray:
    """Unit directions [V, 3] -> an egg-shaped head with a nose bump on +Z (metres)."""
    p = d * HEAD_RADII
    nose = 0.025 * np.exp(-((d[:, 0] / 0.18) ** 2 + ((d[:, 1] + 0.05) / 0.3) ** 2)) * (d[:, 2] > 0)
    p[:, 2] += nose
    return p


def _mid_field(d: np.ndarray) -> np.ndarray:
    """Smooth offsets (metres) along the radial direction: a few broad folds, ~3 mm."""
    azimuth = np.arctan2(d[..., 0], d[..., 2])
    elevation = np.arcsin(np.clip(d[..., 1], -1, 1))
    return 0.003 * (np.sin(4 * azimuth) * np.cos(3 * elevation))[..., None] * d


def _atlas_directions(size: int) -> np.ndarray:
    """Unit direction [size, size, 3] under each texel centre; NaN in the gaps between patches."""
    rows, cols = np.mgrid[0:size, 0:size]
    u, v = (cols + 0.5) / size, 1.0 - (rows + 0.5) / size
    col, row = np.minimum((u * 3).astype(int), 2), np.minimum((v * 2).astype(int), 1)
    s = ((u * 3 - col) - _MARGIN) / (1 - 2 * _MARGIN) * 2 - 1
    t = ((v * 2 - row) - _MARGIN) / (1 - 2 * _MARGIN) * 2 - 1
    p = row * 3 + col
    normal, up = _NORMALS[p], _UP[p]
    right = np.cross(up, normal)
    d = _unit(normal + s[..., None] * right + t[..., None] * up)
    d[(np.abs(s) > 1) | (np.abs(t) > 1)] = np.nan
    return d


def _ripples(size: int) -> np.ndarray:
    """Concentric ripples around each patch centre, RIPPLE_AMPLITUDE metres."""
    rows, cols = np.mgrid[0:size, 0:size]
    u, v = (cols + 0.5) / size, 1.0 - (rows + 0.5) / size
    cu, cv = (np.floor(u * 3) + 0.5) / 3, (np.floor(v * 2) + 0.5) / 2
    r = np.hypot((u - cu) * 3, (v - cv) * 2)
    return RIPPLE_AMPLITUDE * np.sin(2 * np.pi * 5 * r)


def _albedo(size: int) -> np.ndarray:
    """Skin tone per patch, a faint checker, and dark eyes and red lips on the face patch."""
    rows, cols = np.mgrid[0:size, 0:size]
    u, v = (cols + 0.5) / size, 1.0 - (rows + 0.5) / size
    patch = np.minimum((v * 2).astype(int), 1) * 3 + np.minimum((u * 3).astype(int), 2)
    tones = np.array([[0.86, 0.66, 0.55], [0.80, 0.60, 0.50], [0.80, 0.60, 0.50],
                      [0.35, 0.25, 0.18], [0.70, 0.52, 0.44], [0.35, 0.25, 0.18]])
    checker = ((np.floor(u * 24) + np.floor(v * 24)) % 2)[..., None] * 0.04
    image = tones[patch] - checker
    fu, fv = u * 3 - 0.5, v * 2 - 0.5  # face patch local coordinates, centre (0, 0)
    for eye_u in (-0.17, 0.17):
        image[(patch == 0) & (((fu - eye_u) / 0.07) ** 2 + ((fv - 0.12) / 0.04) ** 2 < 1)] = (0.1, 0.08, 0.07)
    image[(patch == 0) & ((fu / 0.15) ** 2 + ((fv + 0.22) / 0.04) ** 2 < 1)] = (0.7, 0.2, 0.2)
    return np.clip(image, 0, 1)


def _expression_delta(name: str, vertices: np.ndarray) -> np.ndarray:
    """A local Gaussian bump (metres) at a spot chosen from the name's region and side."""
    region_height = {"brow": 0.045, "eye": 0.025, "cheek": -0.005, "nose": 0.0, "mouth": -0.045,
                     "jaw": -0.07, "tongue": -0.05}
    region = next(r for r in region_height if name.startswith(r))
    side = 0.035 if "Left" in name else -0.035 if "Right" in name else 0.0
    centre = np.array([side, region_height[region], HEAD_RADII[2]])
    if any(k in name for k in ("Down", "Open", "Frown", "Lower", "Blink")):
        direction = np.array([0.0, -1.0, 0.0])
    elif any(k in name for k in ("Up", "Wide", "Smile", "Upper", "Shrug")):
        direction = np.array([0.0, 1.0, 0.0])
    else:
        direction = np.array([0.0, 0.0, 1.0])
    weight = np.exp(-np.sum((vertices - centre) ** 2, -1) / (2 * 0.02 ** 2))
    return 0.008 * weight[:, None] * direction
