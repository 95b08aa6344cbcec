"""Likeness benchmark (issue 13): is the rendered head recognised as the person in the photo?

    python -m bench.bench_likeness [--out out/likeness] [--quality fast] [--samples 16]
                                   [--panel 384] [--fresh]

A face-recognition network judges the renders, not us: dlib's ResNet face descriptor
(``dlib_face_recognition_resnet_model_v1.dat``, 128 numbers per face, Euclidean distance; dlib
calls two faces the same person below 0.6), fed by dlib's HOG face detector (its CNN "MMOD"
detector when HOG finds nothing) and the 5-point shape predictor. All three are public domain;
the 68-point predictor in the same package is never used (its training data forbids commercial
use). They come from the ``bench`` extra (``dlib-bin``, ``face-recognition-models``): never the
engine's runtime or the extension zip.

The gallery (:func:`gallery`): the HRN examples in ``../shared/data/hrn_examples`` (five people
with one photo each, and one person with three photos in ``multi_view_images/``), scikit-image's
astronaut, and the photos of Barack Obama (three) and Joe Biden (one) inside the
``face_recognition`` 1.3.0 sdist, fetched with ``pip download`` into ``OUT/cache``.

Every gallery photo is reconstructed with the engine (``engine.pipeline.reconstruct``), the
scene is built with the extension's code (``hrn_blender.headless.build_scene``, as
``python -m hrn_blender.headless`` does) and rendered in Cycles (CPU, denoised) through the
photo's camera and from 30 degrees to either side of the head's front (:func:`yaw_camera`),
each framed on a square :data:`FRAME_M` wide around the face (:func:`framed`). Measures:

- per render: the distance to the person's own photos (nearest and mean) and whether it is
  identified, i.e. nearer to its own person than to every other person of the gallery, a
  person's distance being that of their nearest photo (:func:`identify`);
- cross-view: the head reconstructed from one photo of the three-photo person, rendered at the
  pose of each other photo (that photo's camera in a three-photo fit) and compared with it;
- the reference scale: photo-to-photo distances of the same person and of different people
  (:func:`reference_scale`).

Reconstructions and renders are cached in ``OUT/<quality>/`` (``--fresh`` redoes them). Prints the
tables and writes ``OUT/results.md`` and ``OUT/contact_sheet.png`` (per photo: photo | render at
the photo's camera | -30 deg | +30 deg) and ``OUT/cross_view.png``. The contact sheets show the
HRN example photos, which may not be published: they stay in OUT.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]

#: dlib's own same-person threshold for this descriptor (Euclidean distance).
THRESHOLD = 0.6
#: The model files used, inside the ``face_recognition_models`` package's ``models/`` folder.
DETECTOR_FILE = "mmod_human_face_detector.dat"
PREDICTOR_FILE = "shape_predictor_5_face_landmarks.dat"
DESCRIPTOR_FILE = "dlib_face_recognition_resnet_model_v1.dat"
#: The sdist holding the public photos, and the photos taken from it (person, member path).
SDIST = "face_recognition==1.3.0"
SDIST_PHOTOS = (("obama", "tests/test_images/obama.jpg"), ("obama", "tests/test_images/obama2.jpg"),
                ("obama", "tests/test_images/obama3.jpg"), ("biden", "tests/test_images/biden.jpg"))
#: The person with several HRN example photos (cross-view is measured on them).
MULTI_VIEW_PERSON = "hrn-mv"
#: Side views: degrees about the head's vertical axis, from its front (+: towards its left).
YAWS_DEG = (-30.0, 30.0)
#: Background the transparent renders are put on before the descriptor sees them (sRGB, 0-1).
GREY = np.array([0.30, 0.30, 0.32])
#: Width of the square every render frames, metres at the face's depth: the face, the scalp
#: and the ears (the ICT head's face is ~0.17 m from brows to chin).
FRAME_M = 0.30


# ------------------------------------------------------------------------------- the gallery
@dataclass(frozen=True)
class Photo:
    """One gallery photo.

    Attributes:
        person: who it shows (e.g. ``"obama"``, ``"hrn-00016"``); photos of one person share it.
        path: the image file.
    """

    person: str
    path: Path

    @property
    def name(self) -> str:
        """Short label, unique in the gallery: the file stem."""
        return self.path.stem


def gallery(shared: Path, cache: Path) -> list[Photo]:
    """The photos of every person, in a fixed order.

    Args:
        shared: the HRN examples folder (``single_view_image/``, ``multi_view_images/``).
        cache: where the astronaut PNG and the ``face_recognition`` sdist's photos are written.
    Raises:
        FileNotFoundError: ``shared`` lacks the example folders.
    """
    single = sorted((shared / "single_view_image").glob("*.png"))
    multi = sorted((shared / "multi_view_images").glob("*.jpg"))
    if not single or len(multi) < 2:
        raise FileNotFoundError(f"No HRN example photos in {shared} (single_view_image/*.png, "
                                "multi_view_images/*.jpg).")
    photos = [Photo(f"hrn-{p.stem}", p) for p in single] + [Photo(MULTI_VIEW_PERSON, p) for p in multi]
    photos.append(Photo("astronaut", astronaut_photo(cache)))
    folder = sdist_photos(cache)
    photos += [Photo(person, folder / Path(member).name) for person, member in SDIST_PHOTOS]
    return photos


def astronaut_photo(cache: Path) -> Path:
    """scikit-image's astronaut (Eileen Collins, NASA, public domain) as a PNG in ``cache``."""
    path = cache / "astronaut.png"
    if not path.exists():
        from skimage import data

        cache.mkdir(parents=True, exist_ok=True)
        Image.fromarray(data.astronaut()).save(path)
    return path


def sdist_photos(cache: Path) -> Path:
    """Folder in ``cache`` holding the photos of :data:`SDIST_PHOTOS`, downloaded once with
    ``pip download`` (the sdist from PyPI, no install) and extracted."""
    folder = cache / "face_recognition_photos"
    if all((folder / Path(m).name).exists() for _, m in SDIST_PHOTOS):
        return folder
    cache.mkdir(parents=True, exist_ok=True)
    archives = sorted(cache.glob("face_recognition-1.3.0.tar.gz"))
    if not archives:
        subprocess.run([sys.executable, "-m", "pip", "download", SDIST, "--no-deps", "--no-binary",
                        ":all:", "--dest", str(cache)], check=True)
        archives = sorted(cache.glob("face_recognition-1.3.0.tar.gz"))
    folder.mkdir(exist_ok=True)
    with tarfile.open(archives[0]) as tar:
        for _, member in SDIST_PHOTOS:
            data = tar.extractfile(f"face_recognition-1.3.0/{member}")
            (folder / Path(member).name).write_bytes(data.read())
    return folder


# ---------------------------------------------------------------------------- the descriptor
def model_dir() -> Path:
    """The ``models/`` folder of the installed ``face_recognition_models`` package, found
    without importing it (its ``__init__`` needs ``pkg_resources``).

    Raises:
        FileNotFoundError: the package or one of the model files used is missing.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("face_recognition_models is not installed: "
                                "pip install -e .[bench] (or face-recognition-models==0.3.0).")
    folder = Path(list(spec.submodule_search_locations)[0]) / "models"
    missing = [f for f in (DETECTOR_FILE, PREDICTOR_FILE, DESCRIPTOR_FILE) if not (folder / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{', '.join(missing)} not in {folder}.")
    return folder


@dataclass(frozen=True)
class Face:
    """One face described.

    Attributes:
        descriptor: ``[128]`` float64, dlib's ResNet face descriptor (unitless; faces of one
            person are < :data:`THRESHOLD` apart in Euclidean distance).
        box: (left, top, right, bottom) of the detection, image pixels.
        detector: ``"hog"`` or ``"mmod"``: which detector found it.
    """

    descriptor: np.ndarray
    box: tuple[int, int, int, int]
    detector: str


class Describer:
    """dlib's face detector, 5-point shape predictor and ResNet descriptor, loaded once."""

    def __init__(self, models: Optional[Path] = None) -> None:
        try:
            import dlib
        except ModuleNotFoundError as err:
            raise ModuleNotFoundError("dlib is not installed: pip install -e .[bench] "
                                      "(or dlib-bin==20.0.1.post1).", name="dlib") from err

        models = models or model_dir()
        self._hog = dlib.get_frontal_face_detector()
        self._mmod = dlib.cnn_face_detection_model_v1(str(models / DETECTOR_FILE))
        self._shape = dlib.shape_predictor(str(models / PREDICTOR_FILE))
        self._net = dlib.face_recognition_model_v1(str(models / DESCRIPTOR_FILE))
        self.version = dlib.__version__

    def describe(self, rgb: np.ndarray) -> Optional[Face]:
        """The largest face in ``rgb`` (``[H, W, 3]`` uint8, sRGB), or None when neither detector
        finds one. HOG with one 2x upsampling first; the CNN detector only when HOG finds nothing."""
        rgb = np.ascontiguousarray(rgb[..., :3])
        boxes, detector = list(self._hog(rgb, 1)), "hog"
        if not boxes:
            boxes, detector = [d.rect for d in self._mmod(rgb, 1)], "mmod"
        if not boxes:
            return None
        box = max(boxes, key=lambda r: r.area())
        descriptor = np.asarray(self._net.compute_face_descriptor(rgb, self._shape(rgb, box)), np.float64)
        return Face(descriptor, (box.left(), box.top(), box.right(), box.bottom()), detector)

    def describe_file(self, path: Path) -> Optional[Face]:
        """:meth:`describe` on an image file (EXIF orientation applied, as the engine does)."""
        from PIL import ImageOps

        with Image.open(path) as image:
            return self.describe(np.asarray(ImageOps.exif_transpose(image).convert("RGB")))


# ------------------------------------------------------------------------------- the measures
@dataclass(frozen=True)
class Identification:
    """How a face (a render) compares with the gallery.

    Attributes:
        person: who it should be.
        own: distance to the person's nearest photo.
        own_mean: mean distance to the person's photos.
        other_person: the nearest other person.
        other: distance to that person's nearest photo.
    """

    person: str
    own: float
    own_mean: float
    other_person: str
    other: float

    @property
    def identified(self) -> bool:
        """Nearer to its own person than to every other person."""
        return self.own < self.other


def identify(descriptor: np.ndarray, person: str, people: dict[str, np.ndarray]) -> Identification:
    """Compare one descriptor with a gallery.

    Args:
        descriptor: ``[D]`` the face to identify (D = 128 for dlib).
        person: who it should be; a key of ``people``.
        people: person -> ``[K, D]`` descriptors of their photos (K >= 1); at least two people.
    """
    if person not in people or len(people) < 2:
        raise ValueError(f"the gallery needs {person!r} and at least one other person")
    distances = {p: np.linalg.norm(np.asarray(d) - descriptor, axis=1) for p, d in people.items()}
    other_person = min((p for p in distances if p != person), key=lambda p: distances[p].min())
    return Identification(person, float(distances[person].min()), float(distances[person].mean()),
                          other_person, float(distances[other_person].min()))


def reference_scale(people: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Photo-to-photo distances: (same person ``[Ns]``, different people ``[Nd]``), each
    unordered pair of photos once.

    Args:
        people: person -> ``[K, D]`` descriptors of their photos.
    """
    labels = [p for p, d in people.items() for _ in range(len(d))]
    all_ = np.concatenate([np.asarray(d) for d in people.values()])
    i, j = np.triu_indices(len(all_), 1)
    d = np.linalg.norm(all_[i] - all_[j], axis=1)
    same = np.array([labels[a] == labels[b] for a, b in zip(i, j)], bool)
    return d[same], d[~same]


def cell(ident: Optional[Identification]) -> str:
    """One table cell: distance to the own person, the nearest other person's in brackets,
    and ✓ when identified (``no face`` when dlib found none)."""
    if ident is None:
        return "no face ✗"
    mark = "✓" if ident.identified else "✗"
    return f"{ident.own:.2f} ({ident.other:.2f} {ident.other_person}) {mark}"


# ----------------------------------------------------------------------------- the renders
def yaw_camera(camera, centre: np.ndarray, yaw_deg: float):
    """The photo's camera swung about the head's vertical axis to ``yaw_deg`` from its front.

    Args:
        camera: ``engine.result.Camera`` of the photo (model -> camera: ``R p + t``, metres).
        centre: ``[3]`` model-space point (metres) the vertical axis (model +Y) passes through.
        yaw_deg: where the camera ends up, in degrees about +Y from the face's front (+Z);
            positive towards the head's left (+X), so it shows the left cheek.
    Returns:
        A ``Camera`` with the same intrinsics, distance to the axis, height and roll; only the
        angle about the axis changes. The head is not moved: the camera goes round it.
    """
    from engine.result import Camera

    rotation, translation = np.asarray(camera.rotation), np.asarray(camera.translation)
    position = -rotation.T @ translation - centre          # camera centre, relative to ``centre``
    turn = math.radians(yaw_deg) - math.atan2(position[0], position[2])
    c, s = math.cos(turn), math.sin(turn)
    about_y = np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
    new_rotation = rotation @ about_y.T
    new_position = about_y @ position + centre
    return Camera(new_rotation, -new_rotation @ new_position, camera.focal_px, camera.principal_px,
                  camera.image_size)


def head_centre(result) -> np.ndarray:
    """``[3]`` model-space centre (metres) of the head's bounding box: the yaw axis passes
    through it."""
    return (result.vertices.min(0) + result.vertices.max(0)) / 2


def face_centre(result) -> np.ndarray:
    """``[3]`` model-space point (metres) midway between the eyes' and the teeth's centres
    (about the nose), the centre of the framed square; the skin's bounding-box centre for a
    head without those parts."""
    def centre(material: str) -> Optional[np.ndarray]:
        faces = result.faces[result.material_faces(material)]
        return result.vertices[np.unique(faces[faces >= 0])].mean(0) if len(faces) else None

    eyes, teeth = centre("sclera"), centre("teeth")
    if eyes is None or teeth is None:
        faces = result.faces[result.material_faces("skin")]
        skin = result.vertices[np.unique(faces[faces >= 0])]
        return (skin.min(0) + skin.max(0)) / 2
    return (eyes + teeth) / 2


def framed(camera, centre: np.ndarray, panel: int):
    """``camera``'s view of a square :data:`FRAME_M` metres wide around ``centre``, at that
    point's depth, as its own ``panel`` x ``panel`` pixel camera.

    Args:
        camera: ``engine.result.Camera`` (pose and intrinsics of a photo or a turned view).
        centre: ``[3]`` model-space point (metres) the square is centred on.
        panel: side of the new image, pixels.
    Returns:
        (the camera, same pose, focal length and principal point scaled and shifted so that its
        ``[panel, panel]`` image is exactly the square; the square in ``camera``'s pixels as
        (left, top, side)). The square may reach beyond the photo's edges.
    """
    from engine.result import Camera

    depth = -camera.to_camera(centre[None])[0, 2]
    side = camera.focal_px * FRAME_M / depth
    corner = camera.project(centre[None])[0] - side / 2
    scale = panel / side
    principal = (np.asarray(camera.principal_px) - corner) * scale
    return (Camera(camera.rotation, camera.translation, camera.focal_px * scale,
                   (float(principal[0]), float(principal[1])), (panel, panel)),
            (float(corner[0]), float(corner[1]), float(side)))


def photo_square(path: Path, square: tuple[float, float, float], panel: int) -> np.ndarray:
    """The photo's ``square`` (left, top, side: pixels, as :func:`framed` gives) at ``panel``
    pixels, ``[panel, panel, 3]`` uint8; parts beyond the photo are :data:`GREY`."""
    from PIL import ImageOps

    left, top, side = square
    fill = tuple(int(round(v * 255)) for v in GREY)
    with Image.open(path) as image:
        upright = ImageOps.exif_transpose(image).convert("RGB")
        return np.asarray(upright.transform((panel, panel), Image.Transform.EXTENT,
                                            (left, top, left + side, top + side),
                                            Image.Resampling.BICUBIC, fillcolor=fill))


class Renderer:
    """Renders one reconstruction's scene, built once, through any camera (Cycles, CPU,
    denoised), with the extension's scene code (``hrn_blender.headless.build_scene``: the head,
    its view cameras, the studio light aimed from the photo's camera)."""

    def __init__(self, result, name: str, samples: int) -> None:
        import bpy

        from hrn_blender import headless

        self._samples = samples
        bpy.ops.wm.read_factory_settings(use_empty=True)
        headless.build_scene(result, name)

    def render(self, camera, path: Path) -> np.ndarray:
        """Render the whole image of ``camera`` (an ``engine.result.Camera``, e.g. from
        :func:`framed`) and save it as ``path`` (PNG); return it, ``[H, W, 3]`` uint8 sRGB, the
        head over :data:`GREY`."""
        import bpy

        from hrn_blender import headless
        from hrn_blender.scene.camera import build_camera

        scene = bpy.context.scene
        obj = build_camera(camera, "likeness camera")
        scene.collection.objects.link(obj)
        scene.camera = obj
        scene.render.resolution_x, scene.render.resolution_y = camera.image_size
        scene.render.use_border = False
        with tempfile.TemporaryDirectory() as tmp:
            headless.render(str(Path(tmp) / "render.png"), samples=self._samples, denoise=True)
            with Image.open(Path(tmp) / "render.png") as rgba:
                grey = Image.new("RGBA", rgba.size, tuple(int(round(v * 255)) for v in GREY) + (255,))
                rgb = Image.alpha_composite(grey, rgba.convert("RGBA")).convert("RGB")
        bpy.data.objects.remove(obj)
        path.parent.mkdir(parents=True, exist_ok=True)
        rgb.save(path)
        return np.asarray(rgb)


# ----------------------------------------------------------------------------- the run
@dataclass(frozen=True)
class Shot:
    """One render to compare.

    Attributes:
        photo: the photo reconstructed.
        view: ``"camera"``, ``"yaw-30"``, ``"yaw+30"`` or ``"at <photo name>"`` (cross-view).
        path: the rendered PNG.
        target: the photo the render is posed as (cross-view), else ``photo``.
    """

    photo: Photo
    view: str
    path: Path
    target: Photo


def engine_commit() -> str:
    """HEAD's short hash, with ``+dirty`` when engine/ or hrn_blender/ has uncommitted changes."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + ("+dirty" if git("status", "--porcelain", "--", "engine", "hrn_blender") else "")


def reconstruct_cached(photos: Sequence[Photo], folder: Path, quality: str, fresh: bool,
                       log: Callable[[str], None]):
    """The engine's reconstruction of ``photos`` (one or several of one person), saved in
    ``folder`` with ``engine_commit.txt``, or loaded from there when present and not ``fresh``."""
    from engine.pipeline import ReconstructionOptions, reconstruct
    from engine.result import FaceReconstruction

    if (folder / "reconstruction.json").exists() and not fresh:
        made_with = (folder / "engine_commit.txt").read_text().strip()
        if made_with != engine_commit():
            log(f"  note: {folder} was made with engine {made_with} (now {engine_commit()}); --fresh redoes it")
        return FaceReconstruction.load(folder)
    start = time.perf_counter()
    result = reconstruct([p.path for p in photos], ReconstructionOptions(device="cpu", quality=quality))
    result.save(folder)
    (folder / "engine_commit.txt").write_text(engine_commit() + "\n")
    log(f"  reconstructed {', '.join(p.name for p in photos)} ({time.perf_counter() - start:.0f} s)")
    return result


def make_renders(photos: Sequence[Photo], out: Path, quality: str, samples: int, panel: int,
                 fresh: bool, log: Callable[[str], None]) -> list[Shot]:
    """Reconstruct every photo and render it (camera, both yaws), plus the cross-view renders;
    reuse what ``out`` already holds unless ``fresh`` (renders older than their reconstruction
    are redone). Renders go to ``out/renders-<samples>spp-<panel>px/``."""
    renders = out / f"renders-{samples}spp-{panel}px"
    shots: list[Shot] = []
    multi = [p for p in photos if p.person == MULTI_VIEW_PERSON]
    fit = reconstruct_cached(multi, out / "reconstructions" / "multi_view_fit", quality, fresh, log)
    pose = {p.name: v.camera for p, v in zip(multi, fit.views) if v.used}
    for photo in photos:
        log(f"{photo.person} / {photo.name}")
        result = reconstruct_cached([photo], out / "reconstructions" / photo.name, quality, fresh, log)
        wanted = [("camera", result.camera, photo)]
        wanted += [(f"yaw{yaw:+.0f}", yaw_camera(result.camera, head_centre(result), yaw), photo)
                   for yaw in YAWS_DEG]
        if photo.person == MULTI_VIEW_PERSON:
            wanted += [(f"at {other.name}", pose[other.name], other) for other in multi
                       if other != photo and other.name in pose]
        renderer = None
        for view, camera, target in wanted:
            path = renders / f"{photo.name}_{view.replace(' ', '_')}.png"
            made = (out / "reconstructions" / photo.name / "reconstruction.json").stat().st_mtime
            if fresh or not path.exists() or path.stat().st_mtime < made:
                renderer = renderer or Renderer(result, photo.name, samples)
                start = time.perf_counter()
                renderer.render(framed(camera, face_centre(result), panel)[0], path)
                log(f"  rendered {view} ({time.perf_counter() - start:.0f} s)")
            shots.append(Shot(photo, view, path, target))
    return shots


def contact_sheet(rows: Sequence[tuple[str, Sequence[np.ndarray], Sequence[str]]], path: Path) -> None:
    """Rows of equal square panels, each captioned. ``rows``: (row label, panels ``[P, P, 3]``
    uint8, one caption per panel)."""
    panel = rows[0][1][0].shape[0]
    columns = max(len(r[1]) for r in rows)
    sheet = Image.new("RGB", (columns * panel, len(rows) * panel), (40, 40, 40))
    draw = ImageDraw.Draw(sheet)
    for r, (label, panels, captions) in enumerate(rows):
        for c, (image, caption) in enumerate(zip(panels, captions)):
            sheet.paste(Image.fromarray(image), (c * panel, r * panel))
            text = f"{label}  {caption}" if c == 0 else caption
            draw.rectangle((c * panel, r * panel, c * panel + 7 * len(text) + 6, r * panel + 14), fill=(0, 0, 0))
            draw.text((c * panel + 3, r * panel + 2), text, fill=(255, 255, 255))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, optimize=True)


def report(photos: Sequence[Photo], shots: Sequence[Shot], faces: dict[Path, Optional[Face]],
           header: str) -> str:
    """The Markdown report: summary, per-photo table, cross-view table, reference scale, and
    every render in detail."""
    people: dict[str, list[np.ndarray]] = {}
    for p in photos:
        if faces[p.path] is not None:
            people.setdefault(p.person, []).append(faces[p.path].descriptor)
    people_arr = {k: np.stack(v) for k, v in people.items()}
    idents = {s.path: identify(faces[s.path].descriptor, s.target.person, people_arr)
              if faces[s.path] is not None else None for s in shots}
    views = ["camera", *(f"yaw{y:+.0f}" for y in YAWS_DEG)]
    main = [s for s in shots if s.view in views]
    cross = [s for s in shots if s.view not in views]
    lines = [header, ""]

    def count(selection, test) -> str:
        return f"{sum(1 for s in selection if idents[s.path] is not None and test(s)):d}/{len(selection)}"

    def to_target(s: Shot) -> float:
        """Distance of the render to the photo it is posed as (nan: no face in one of them)."""
        render, photo = faces[s.path], faces[s.target.path]
        return float(np.linalg.norm(render.descriptor - photo.descriptor)) if render and photo else math.nan

    lines += [f"Renders identified as their person: {count(main, lambda s: idents[s.path].identified)}; "
              f"nearest own photo within 0.5: {count(main, lambda s: idents[s.path].own < 0.5)}, "
              f"within {THRESHOLD}: {count(main, lambda s: idents[s.path].own < THRESHOLD)}. "
              f"Cross-view within 0.55 of the photo: {count(cross, lambda s: to_target(s) < 0.55)}, "
              f"identified: {count(cross, lambda s: idents[s.path].identified)}.", ""]
    lines += ["Each cell: distance of the render to the person's nearest photo (nearest other "
              "person's distance and name); ✓ = identified (nearer its own person than every other).", ""]
    lines += ["| person | photo | " + " | ".join(v.replace("yaw", "yaw ") + "°" if v != "camera"
                                               else "photo's camera" for v in views) + " |",
              "|---|---|" + "---|" * len(views)]
    for p in photos:
        row = {s.view: idents[s.path] for s in main if s.photo == p}
        if row:
            lines.append(f"| {p.person} | {p.name} | " + " | ".join(cell(row.get(v)) for v in views) + " |")
    if cross:
        lines += ["", f"Cross-view ({MULTI_VIEW_PERSON}): the head reconstructed from one photo, rendered "
                  "at another photo's pose (its camera in the three-photo fit) and compared with that photo.", "",
                  "| reconstructed from | posed as | distance to that photo | identified |", "|---|---|---|---|"]
        for s in cross:
            i = idents[s.path]
            lines.append(f"| {s.photo.name} | {s.target.name} | "
                         + (f"{to_target(s):.2f} | {cell(i)} |" if i else "no face | ✗ |"))
    same, different = reference_scale(people_arr)
    lines += ["", f"Reference scale (photo to photo, dlib's threshold {THRESHOLD}): same person "
              f"{len(same)} pairs, {same.min():.2f}–{same.max():.2f} (median {np.median(same):.2f}); "
              f"different people {len(different)} pairs, {different.min():.2f}–{different.max():.2f} "
              f"(median {np.median(different):.2f})."]
    own_renders: dict[str, list[np.ndarray]] = {}
    for s in main:
        if s.view == "camera" and faces[s.path] is not None:
            own_renders.setdefault(s.photo.person, []).append(faces[s.path].descriptor)
    if len(own_renders) > 1:
        same_r, different_r = reference_scale({k: np.stack(v) for k, v in own_renders.items()})
        lines.append(f"Render to render (through the photos' cameras): same person {len(same_r)} pairs"
                     + (f", {same_r.min():.2f}–{same_r.max():.2f}" if len(same_r) else "")
                     + f"; different people {len(different_r)} pairs, {different_r.min():.2f}–"
                     f"{different_r.max():.2f} (median {np.median(different_r):.2f}).")
    missing = [p.name for p in photos if faces[p.path] is None]
    if missing:
        lines.append(f"Photos where dlib found no face (left out of the gallery): {', '.join(missing)}.")
    lines += ["", "Every render:", "", "| photo | view | detector | to its photo | own nearest | own mean | "
              "nearest other | identified |", "|---|---|---|---|---|---|---|---|"]
    for s in shots:
        i, f = idents[s.path], faces[s.path]
        if i is None:
            lines.append(f"| {s.photo.name} | {s.view} | none | — | — | — | — | ✗ |")
            continue
        lines.append(f"| {s.photo.name} | {s.view} | {f.detector} | {to_target(s):.2f} | {i.own:.2f} | "
                     f"{i.own_mean:.2f} | {i.other_person} {i.other:.2f} | {'✓' if i.identified else '✗'} |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_likeness",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("out/likeness"), help="results and cache folder")
    parser.add_argument("--quality", default="fast", choices=("fast", "high"))
    parser.add_argument("--samples", type=int, default=16, help="Cycles samples (denoised)")
    parser.add_argument("--panel", type=int, default=384, help="render size, pixels (square)")
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data" / "hrn_examples",
                        help="the HRN example photos")
    parser.add_argument("--fresh", action="store_true", help="reconstruct and render again")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    out = args.out / args.quality
    photos = gallery(args.shared, args.out / "cache")
    describer = Describer()
    shots = make_renders(photos, out, args.quality, args.samples, args.panel, args.fresh, print)
    faces = {p.path: describer.describe_file(p.path) for p in photos}
    faces.update({s.path: describer.describe_file(s.path) for s in shots})
    commits = sorted({(out / "reconstructions" / d / "engine_commit.txt").read_text().strip()
                      for d in [p.name for p in photos] + ["multi_view_fit"]})
    header = (f"Likeness benchmark, {time.strftime('%Y-%m-%d')}, engine {', '.join(commits)}, "
              f"quality {args.quality}, Cycles {args.samples} samples (denoised), {args.panel}² renders; "
              f"descriptor: dlib {describer.version} ResNet, HOG detector (MMOD fallback), "
              "5-point predictor.")
    text = report(photos, shots, faces, header)
    (args.out / "results.md").write_text(text)
    print(text)
    _sheets(photos, shots, faces, out, args.out, args.panel)
    print(f"Wrote {args.out / 'results.md'}, {args.out / 'contact_sheet.png'}, {args.out / 'cross_view.png'} "
          f"({time.perf_counter() - start:.0f} s)")
    return 0


def _sheets(photos: Sequence[Photo], shots: Sequence[Shot], faces: dict[Path, Optional[Face]],
            out: Path, dest: Path, panel: int) -> None:
    """Write the two contact sheets (captions: distance to the posed photo)."""
    from engine.result import FaceReconstruction

    def caption(s: Shot) -> str:
        f, t = faces[s.path], faces[s.target.path]
        distance = f"{np.linalg.norm(f.descriptor - t.descriptor):.2f}" if f and t else "no face"
        return f"{s.view}: {distance}"

    def load(shot: Shot) -> np.ndarray:
        return np.asarray(Image.open(shot.path).convert("RGB"))

    def crop(photo: Photo) -> np.ndarray:
        """The photo, framed as the render through its camera."""
        result = FaceReconstruction.load(out / "reconstructions" / photo.name)
        return photo_square(photo.path, framed(result.camera, face_centre(result), panel)[1], panel)

    crops = {p.name: crop(p) for p in photos}
    rows = []
    for p in photos:
        mine = [s for s in shots if s.photo == p and not s.view.startswith("at ")]
        rows.append((p.person, [crops[p.name]] + [load(s) for s in mine],
                     [p.name] + [caption(s) for s in mine]))
    contact_sheet(rows, dest / "contact_sheet.png")
    cross = [s for s in shots if s.view.startswith("at ")]
    if cross:
        contact_sheet([(s.target.person, [crops[s.target.name], load(s)],
                        [s.target.name, f"from {s.photo.name} " + caption(s)]) for s in cross],
                      dest / "cross_view.png")


if __name__ == "__main__":
    sys.exit(main())
