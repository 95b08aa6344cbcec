"""Face detection and 478-point face landmarks with the MediaPipe models bundled in its wheel.

Three steps, all offline (the ``.tflite`` graphs ship inside the ``mediapipe`` package):

1. **Find faces** with MediaPipe Face Detection over a coarse-to-fine window pyramid. Level 0
   is the whole image, searched with both models: the short-range one (faces filling 15-100 %
   of the frame; the full-range one misses a face that fills it) and the full-range one
   (8-90 %). Each finer level halves the square window side and slides it with half-window
   steps, searched with the full-range model, so a face of any size is, at some level, whole
   inside a window at 10-50 % of its side, where the detector is reliable. The search stops
   at the first level that finds a face (larger faces show up at coarser levels) and never
   goes below :data:`MIN_WINDOW_PX` windows, so faces of about 100 px and up are always found.
   Windows are downscaled to :data:`_DETECT_SIDE` px before detection, so a 12-megapixel
   photo costs a few hundred milliseconds at worst.
2. **Landmarks** with MediaPipe Face Mesh (``refine_landmarks=True``: 468 mesh points plus
   5 per iris) on a square crop :data:`CROP_SCALE` times each face's box, so small faces in
   big photos get the full model resolution. Points are mapped back to full-image pixels. A
   detection Face Mesh cannot place landmarks on is a false positive and is dropped.
3. **Choose one face**: the largest, or the one the caller names by index. Faces are
   numbered from 0, **left to right** by the centre of their detector box (the order a user
   sees them in). A face narrower than :data:`MIN_FACE_PX` is refused
   (:class:`FaceTooSmallError`) rather than reconstructed poorly.

Left and right: MediaPipe's, and therefore this module's, ``LEFT``/``RIGHT`` mean the
**subject's** left and right. In an ordinary (unmirrored) photo of a person facing the
camera, the subject's left eye appears on the **image's right** (larger x).

The MediaPipe graphs are created on first use and reused; a lock serialises them, so
:func:`detect_landmarks` may be called from several threads. Results are deterministic.
Nothing is printed to stdout. MediaPipe's C++ side logs routine INFO/WARNING lines to stderr
while its graphs start (absl and TFLite logging, which neither ``GLOG_minloglevel`` nor
``TF_CPP_MIN_LOG_LEVEL`` turns down in this wheel; measured): they are filtered out of file
descriptor 2 while the graphs start (:func:`_native_stderr_without`), every other line is
passed on.
"""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
import warnings
from dataclasses import dataclass

import mediapipe as mp
import numpy as np
from mediapipe.python.solutions import face_mesh_connections as _connections
from PIL import Image

from ..errors import NoFaceError
from ..io.image_io import Photo


class FaceTooSmallError(NoFaceError):
    """The chosen face, or the whole photo, is narrower than :data:`MIN_FACE_PX`."""


class FaceIndexError(NoFaceError):
    """The face index asked for is not one of the faces found."""


#: Number of points :func:`detect_landmarks` returns: 468 mesh + 2 x 5 iris.
NUM_POINTS = 478

#: Smallest window side (px) the detection pyramid descends to; faces down to about a tenth
#: of it are found, so every face of ~100 px or more is.
MIN_WINDOW_PX = 512
#: Side of the square crop handed to Face Mesh, as a multiple of the detected box's larger
#: side. The detector's box spans brows to mouth; 1.8x adds forehead, chin and some margin.
CROP_SCALE = 1.8
#: Minimum detector confidence for a face.
MIN_SCORE = 0.5
#: Narrowest face reconstructed, px: width of the face oval (cheek to cheek, from the
#: landmarks; about the detector box's width for a frontal face). Measured on the astronaut
#: photo downscaled (Lanczos, bilinear, box): the median landmark error, as a fraction of the
#: eye distance, is 0.8-1.0 % at 44-60 px, 1.1-1.5 % at 40 px, 1.7-1.9 % at 32 px, 2.3 % at
#: 28 px, 3 % at 24 px and 4-5 % at 15-20 px (detection itself still succeeds there), and
#: a 40 px face already gives the 256 px photometric fit 6x upsampled pixels. Faces this
#: small are found in photos up to ~700 px (searched whole); in larger ones the window search
#: is only sure to find faces of ~100 px (60-70 px ones were found on 1000-4000 px canvases).
MIN_FACE_PX = 40

# Windows are resized to at most this side before detection (the models' inputs are 128 and
# 192 px; our antialiased resize is better than MediaPipe's internal bilinear one).
_DETECT_SIDE = 256
# Face Mesh crops are resized to at most this side (its landmark model's input is 192 px).
_MESH_SIDE = 384
# Two detections overlapping by more than this fraction of the smaller box are one face
# (windows overlap, and a face cut by a window edge gives a smaller box inside the full one).
_SAME_FACE_OVERLAP = 0.5


def _indices(connections) -> np.ndarray:
    """Sorted unique landmark indices ``[N]`` int64 of a MediaPipe connection set."""
    return np.array(sorted({i for edge in connections for i in edge}), dtype=np.int64)


def _loop(connections) -> np.ndarray:
    """Indices ``[N]`` int64 of a connection set that forms one closed loop, in loop order
    (following the edges' direction), starting from the smallest index."""
    nxt = dict(connections)
    start = min(nxt)
    order = [start]
    while nxt[order[-1]] != start:
        order.append(nxt[order[-1]])
    if len(order) != len(nxt):
        raise ValueError("connection set is not a single loop")
    return np.array(order, dtype=np.int64)


#: Face oval (jaw line, cheeks, forehead) as a closed polygon: 36 indices in loop order,
#: clockwise on the image starting at the top of the forehead (index 10).
CONTOUR = _loop(_connections.FACEMESH_FACE_OVAL)
#: Subject's left eye outline (upper and lower lid), sorted indices.
LEFT_EYE = _indices(_connections.FACEMESH_LEFT_EYE)
#: Subject's right eye outline, sorted indices.
RIGHT_EYE = _indices(_connections.FACEMESH_RIGHT_EYE)
#: Subject's left eyebrow, sorted indices.
LEFT_EYEBROW = _indices(_connections.FACEMESH_LEFT_EYEBROW)
#: Subject's right eyebrow, sorted indices.
RIGHT_EYEBROW = _indices(_connections.FACEMESH_RIGHT_EYEBROW)
#: Outer and inner lip lines, sorted indices.
LIPS = _indices(_connections.FACEMESH_LIPS)
#: Nose (bridge, tip, wings), sorted indices.
NOSE = _indices(_connections.FACEMESH_NOSE)
#: Subject's left iris ring (4 points), sorted indices.
IRIS_LEFT = _indices(_connections.FACEMESH_LEFT_IRIS)
#: Subject's right iris ring (4 points), sorted indices.
IRIS_RIGHT = _indices(_connections.FACEMESH_RIGHT_IRIS)
# Each iris is stored as its centre followed by its 4 ring points.
#: Index of the subject's left iris centre.
IRIS_LEFT_CENTER = int(IRIS_LEFT.min()) - 1
#: Index of the subject's right iris centre.
IRIS_RIGHT_CENTER = int(IRIS_RIGHT.min()) - 1


@dataclass(frozen=True)
class FaceLandmarks:
    """MediaPipe Face Mesh landmarks of the one face chosen in a photo."""

    points: np.ndarray
    """``[478, 3]`` float32. x, y: image pixels of :attr:`Photo.rgb`, origin at the top-left
    corner of the top-left pixel, y down (pixel centres at integer + 0.5). z: MediaPipe's
    relative depth in the same pixel units as x (its normalised z times the side of the crop
    the mesh was computed on); origin near the mesh's centroid depth, **smaller = nearer the
    camera**. z comes from a weak-perspective model: trust it for local shape, not as metric
    depth. Indices 0-467 are the face mesh, 468-477 the irises (see :data:`IRIS_LEFT`)."""
    box: tuple[float, float, float, float]
    """Face detector box (x0, y0, x1, y1) in image pixels, approximate (a few pixels). It
    spans roughly brows to mouth: the forehead and chin landmarks lie above and below it."""
    score: float
    """Face detector confidence of the chosen face, in [0, 1]."""
    image_size: tuple[int, int]
    """(width, height) in pixels of the image the points refer to."""
    warnings: tuple[str, ...]
    """Things the user should know (e.g. other faces that were ignored)."""


def detect_landmarks(photo: Photo, face_index: int | None = None) -> FaceLandmarks:
    """Find the faces in ``photo`` and return the 478 landmarks of one of them.

    Args:
        photo: the photo.
        face_index: None = the face with the largest detector box; N = face N, counting
            from 0 **left to right** by the centre of the detector box. When several faces
            are found, a warning lists them with their index and width.

    Deterministic: the same pixels give the same result.

    Raises:
        NoFaceError: no face was found, or none for which Face Mesh could place landmarks.
        FaceIndexError: ``face_index`` is negative or not below the number of faces found.
        FaceTooSmallError: the chosen face, or the photo itself, is narrower than :data:`MIN_FACE_PX`.
    """
    height, width = photo.rgb.shape[:2]
    if min(width, height) < MIN_FACE_PX:
        raise FaceTooSmallError(
            f"The photo {photo.path!r} is {width}x{height} px: too small to hold a face, which must be "
            f"at least {MIN_FACE_PX} px wide. Use a larger photo of the face.")
    u8 = (photo.rgb * 255.0 + 0.5).astype(np.uint8)
    with _lock:
        detector_short, detector_full, mesh = _models()
        with warnings.catch_warnings():
            # protobuf's GetPrototype deprecation, raised inside MediaPipe on every call.
            warnings.simplefilter("ignore", UserWarning)
            found = _find_faces(u8, detector_short, detector_full)
            meshed = [(box, score, _mesh_points(u8, box, mesh)) for box, score in found]
    # Largest box first (as _find_faces gives them), then numbered left to right.
    faces = [m for m in meshed if m[2] is not None]
    if not faces:
        raise NoFaceError(
            f"No face found in {photo.path!r}. Use a photo where the face is clearly visible, "
            f"at least {MIN_FACE_PX} px wide (in photos over ~1000 px, about 100 px, or crop the "
            "photo around the face), well lit and not covered by hair, hands or sunglasses.")
    centres = [(box[0] + box[2]) / 2.0 for box, _, _ in faces]
    order = sorted(range(len(faces)), key=centres.__getitem__)  # order[index] = position in faces
    if face_index is None:
        chosen = 0
    elif 0 <= face_index < len(faces):
        chosen = order[face_index]
    else:
        raise FaceIndexError(
            f"Face index {face_index} was asked for, but {photo.path!r} has {len(faces)} "
            f"face{'s' if len(faces) > 1 else ''}, numbered 0 to {len(faces) - 1} from left to "
            "right. Give one of those, or no index to use the largest face.")
    box, score, points = faces[chosen]
    face_px = face_width_px(points)
    if face_px < MIN_FACE_PX:
        raise FaceTooSmallError(
            f"The face in {photo.path!r} is {face_px:.0f} px wide; the minimum is {MIN_FACE_PX} px "
            "(smaller faces hold too few pixels for a good reconstruction). Use a larger or "
            "closer photo of the face.")
    notes = ()
    if len(faces) > 1:
        others = len(faces) - 1
        listing = "; ".join(f"{n}: {face_width_px(faces[i][2]):.0f} px wide, centre x = {centres[i]:.0f}"
                            for n, i in enumerate(order))
        which = "the largest" if face_index is None else "as asked"
        notes = (f"{len(faces)} faces found in {photo.path!r}; using face {order.index(chosen)} "
                 f"({which}) and ignoring {others} other face{'s' if others > 1 else ''}. Faces "
                 f"by index, numbered from 0 left to right: {listing}. To use another, give its "
                 "index as the face index (--face-index N on the command line).",)
    return FaceLandmarks(points=points, box=tuple(float(v) for v in box), score=float(score),
                         image_size=(width, height), warnings=notes)


def face_width_px(points: np.ndarray) -> float:
    """Width in px of the face oval (cheek to cheek) of ``points`` ``[478, 2|3]``
    (:attr:`FaceLandmarks.points`): the face size :data:`MIN_FACE_PX` is compared with."""
    return float(np.ptp(points[CONTOUR, 0]))


_lock = threading.Lock()
_cache: tuple | None = None


#: Routine lines MediaPipe's graphs log to stderr when they start (substrings).
_MEDIAPIPE_NOISE = ("Created TensorFlow Lite XNNPACK delegate for CPU",
                    "All log messages before absl::InitializeLog() is called are written to STDERR",
                    "inference_feedback_manager.cc")


def _models():
    """The (short-range detector, full-range detector, face mesh) MediaPipe graphs, created
    once and run once on a blank image, so that their start-up log lines (written by graph
    threads after the constructors return) are filtered. Call with ``_lock`` held."""
    global _cache
    if _cache is None:
        solutions = mp.solutions
        with _native_stderr_without(_MEDIAPIPE_NOISE), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # protobuf's GetPrototype deprecation
            graphs = (
                solutions.face_detection.FaceDetection(model_selection=0, min_detection_confidence=MIN_SCORE),
                solutions.face_detection.FaceDetection(model_selection=1, min_detection_confidence=MIN_SCORE),
                solutions.face_mesh.FaceMesh(static_image_mode=True, refine_landmarks=True, max_num_faces=1,
                                             min_detection_confidence=MIN_SCORE),
            )
            blank = np.zeros((64, 64, 3), np.uint8)
            for graph in graphs:
                graph.process(blank)  # returns once every calculator of the graph has started
        _cache = graphs
    return _cache


@contextlib.contextmanager
def _native_stderr_without(noise: tuple[str, ...]):
    """Capture file descriptor 2 (C++ logging writes there, below Python's ``sys.stderr``) for
    the duration, then write back every captured line that contains none of ``noise``."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = [line for line in capture.read().decode("utf-8", "replace").splitlines(keepends=True)
                    if not any(n in line for n in noise)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def _find_faces(u8: np.ndarray, detector_short, detector_full) -> list[tuple[np.ndarray, float]]:
    """Faces ``[(box [4] float64 (x0, y0, x1, y1) px, score)]`` in ``u8`` ``[H, W, 3]``,
    distinct, largest box first; empty if none. See the module docstring for the search."""
    height, width = u8.shape[:2]
    image = Image.fromarray(u8)
    side = float(max(width, height))
    level = 0
    while True:
        scale = min(1.0, _DETECT_SIDE / side)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        scaled = np.asarray(image.resize(size, Image.BILINEAR)) if scale < 1.0 else u8
        to_image = np.array([width / size[0], height / size[1]] * 2)  # exact, after rounding
        win = round(side * scale)
        detectors = (detector_short, detector_full) if level == 0 else (detector_full,)
        found = []
        for x0 in _window_starts(size[0], win):
            for y0 in _window_starts(size[1], win):
                window = np.ascontiguousarray(scaled[y0:y0 + win, x0:x0 + win])
                for detector in detectors:
                    for box, score in _detect(window, detector):
                        found.append(((box + [x0, y0, x0, y0]) * to_image, score))
        if found:
            return _distinct(found)
        side /= 2.0
        level += 1
        if side < MIN_WINDOW_PX:
            return []


def _window_starts(length: int, win: int) -> list[int]:
    """Start offsets of windows of side ``win`` covering ``[0, length)`` with steps of at most
    half a window (so anything up to half a window wide is whole inside one of them)."""
    if length <= win:
        return [0]
    steps = int(np.ceil((length - win) / (win / 2.0)))
    return [round(i * (length - win) / steps) for i in range(steps + 1)]


def _detect(window: np.ndarray, detector) -> list[tuple[np.ndarray, float]]:
    """Detector boxes ``(x0, y0, x1, y1)`` in ``window`` pixels and scores."""
    result = detector.process(window)
    height, width = window.shape[:2]
    out = []
    for detection in result.detections or ():
        rel = detection.location_data.relative_bounding_box
        corners = np.array([rel.xmin, rel.ymin, rel.xmin + rel.width, rel.ymin + rel.height])
        out.append((corners * [width, height, width, height], float(detection.score[0])))
    return out


def _distinct(found: list[tuple[np.ndarray, float]]) -> list[tuple[np.ndarray, float]]:
    """Merge detections of the same face (keeping the most confident), largest box first."""
    kept: list[tuple[np.ndarray, float]] = []
    for box, score in sorted(found, key=lambda f: -f[1]):
        if all(_overlap(box, other) <= _SAME_FACE_OVERLAP for other, _ in kept):
            kept.append((box, score))
    return sorted(kept, key=lambda f: -_area(f[0]))


def _area(box: np.ndarray) -> float:
    return float(max(box[2] - box[0], 0.0) * max(box[3] - box[1], 0.0))


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection area over the smaller box's area."""
    inter = _area(np.array([max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])]))
    return inter / max(min(_area(a), _area(b)), 1e-9)


def _mesh_points(u8: np.ndarray, box: np.ndarray, mesh) -> np.ndarray | None:
    """``[478, 3]`` float32 landmarks (see :attr:`FaceLandmarks.points`) of the face in
    ``box``, or None when Face Mesh finds no face there."""
    height, width = u8.shape[:2]
    side = int(np.ceil(CROP_SCALE * max(box[2] - box[0], box[3] - box[1])))
    x0 = int(np.floor((box[0] + box[2] - side) / 2.0))
    y0 = int(np.floor((box[1] + box[3] - side) / 2.0))
    # Parts of the crop outside the photo are mid-grey, like composited transparency.
    crop = np.full((side, side, 3), 128, np.uint8)
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x0 + side, width), min(y0 + side, height)
    crop[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = u8[sy0:sy1, sx0:sx1]
    if side > _MESH_SIDE:
        crop = np.asarray(Image.fromarray(crop).resize((_MESH_SIDE, _MESH_SIDE), Image.BILINEAR))
    result = mesh.process(crop)
    if not result.multi_face_landmarks:
        return None
    landmarks = result.multi_face_landmarks[0].landmark
    norm = np.array([(p.x, p.y, p.z) for p in landmarks], dtype=np.float64)
    # MediaPipe's normalised x * input width is a pixel *index* (pixel centres at integers;
    # measured: upscaling a photo k times shifts its points by 0.5 - 0.5 / k px). Shift by
    # half an input pixel to this project's convention of pixel centres at integer + 0.5.
    norm[:, :2] += 0.5 / crop.shape[0]
    points = (norm * side + [x0, y0, 0.0]).astype(np.float32)
    # Face Mesh runs its own detector on the crop; make sure it meshed the chosen face and
    # not a neighbour reaching into the crop.
    cx, cy = points[:, 0].mean(), points[:, 1].mean()
    if not (box[0] <= cx <= box[2] and box[1] <= cy <= box[3]):
        return None
    return points
