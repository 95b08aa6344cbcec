"""The likeness benchmark's parts (bench/bench_likeness.py).

The descriptor tests run dlib's real models on real photos: they need the ``bench`` extra
(``dlib-bin``, ``face-recognition-models``) and the HRN examples in ``../shared/data``, and are
skipped without them. The identification, table and camera tests run everywhere.
"""
from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench import bench_likeness as lk
from engine.result import Camera

EXAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "hrn_examples"


@pytest.fixture(scope="module")
def describer():
    pytest.importorskip("dlib", reason="dlib-bin (the bench extra) is not installed")
    try:
        return lk.Describer(lk.model_dir())
    except FileNotFoundError as err:
        pytest.skip(str(err))


@pytest.fixture(scope="module")
def multi_view_faces(describer):
    photos = sorted((EXAMPLES / "multi_view_images").glob("*.jpg"))
    if len(photos) != 3:
        pytest.skip(f"the three multi-view HRN examples are not in {EXAMPLES}")
    return [describer.describe_file(p) for p in photos]


def test_photos_of_one_person_are_within_the_threshold(multi_view_faces):
    """The three multi-view examples show one person (a frontal and two turned photos)."""
    assert all(f is not None and f.detector == "hog" for f in multi_view_faces)
    for a, b in itertools.combinations(multi_view_faces, 2):
        assert np.linalg.norm(a.descriptor - b.descriptor) < lk.THRESHOLD


def test_photos_of_different_people_are_beyond_the_threshold(describer, multi_view_faces, astronaut_rgb):
    others = [describer.describe(astronaut_rgb)]
    others += [describer.describe_file(p) for p in sorted((EXAMPLES / "single_view_image").glob("*.png"))]
    assert len(others) == 6 and all(f is not None for f in others)
    for a, b in itertools.combinations(others, 2):
        assert np.linalg.norm(a.descriptor - b.descriptor) > lk.THRESHOLD
    for a, b in itertools.product(multi_view_faces, others):
        assert np.linalg.norm(a.descriptor - b.descriptor) > lk.THRESHOLD


def test_no_face_is_none(describer):
    """A flat grey image has no face for either detector."""
    assert describer.describe(np.full((200, 200, 3), 128, np.uint8)) is None


def test_descriptor_ignores_the_image_file_format(describer, astronaut_rgb, tmp_path):
    """The same face through a PNG file and from memory gives the same descriptor."""
    path = tmp_path / "a.png"
    Image.fromarray(astronaut_rgb).save(path)
    a, b = describer.describe(astronaut_rgb), describer.describe_file(path)
    assert a.box == b.box and np.allclose(a.descriptor, b.descriptor)


# ---------------------------------------------------------------- identification, on made-up vectors
def _gallery() -> dict[str, np.ndarray]:
    """Three people in 4-D: ann (two photos), bob, cy."""
    return {"ann": np.array([[1.0, 0, 0, 0], [0.8, 0.2, 0, 0]]),
            "bob": np.array([[0.0, 1, 0, 0]]),
            "cy": np.array([[0.0, 0, 1, 0]])}


def test_identify_uses_each_persons_nearest_photo():
    ident = lk.identify(np.array([0.7, 0.3, 0, 0]), "ann", _gallery())
    assert ident.own == pytest.approx(np.hypot(0.1, 0.1))            # ann's second photo
    assert ident.own_mean == pytest.approx((np.hypot(0.3, 0.3) + np.hypot(0.1, 0.1)) / 2)
    assert ident.other_person == "bob" and ident.other == pytest.approx(np.hypot(0.7, 0.7))
    assert ident.identified


def test_a_face_nearer_another_person_is_not_identified():
    ident = lk.identify(np.array([0.3, 0.9, 0, 0]), "ann", _gallery())
    assert ident.other_person == "bob" and ident.other < ident.own
    assert not ident.identified
    # A tie is not an identification either.
    tie = lk.identify(np.array([0.5, 0.5, 0, 0]), "cy", {"cy": np.array([[1.0, 0, 0, 0]]),
                                                           "dan": np.array([[0.0, 1, 0, 0]])})
    assert tie.own == tie.other and not tie.identified


def test_identify_needs_the_person_and_someone_else():
    with pytest.raises(ValueError):
        lk.identify(np.zeros(4), "zed", _gallery())
    with pytest.raises(ValueError):
        lk.identify(np.zeros(4), "bob", {"bob": _gallery()["bob"]})


def test_reference_scale_splits_pairs_by_person():
    same, different = lk.reference_scale(_gallery())
    assert same == pytest.approx([np.hypot(0.2, 0.2)])               # ann's two photos
    assert len(different) == 5                                       # 4 photos: 6 pairs, 1 same
    # ann-1/bob, ann-1/cy, bob/cy: sqrt 2; ann-2/bob: |(0.8, -0.8, 0)|; ann-2/cy: |(0.8, 0.2, -1)|
    assert sorted(different) == pytest.approx(sorted([np.sqrt(2)] * 3 + [np.hypot(0.8, 0.8),
                                                                      np.sqrt(1.68)]))
    assert (different > same.max()).all()


def test_table_cell_says_distance_rival_and_verdict():
    yes = lk.identify(np.array([0.9, 0.1, 0, 0]), "ann", _gallery())
    no = lk.identify(np.array([0.1, 0, 0.95, 0]), "ann", _gallery())
    assert lk.cell(yes) == f"{yes.own:.2f} ({yes.other:.2f} bob) ✓"
    assert lk.cell(no) == f"{no.own:.2f} ({no.other:.2f} cy) ✗"
    assert lk.cell(None) == "no face ✗"


def test_report_counts_and_tables(tmp_path):
    """The report on made-up descriptors: one render identified, one nearer a stranger, one
    with no face, a cross-view render; the counts and rows follow."""
    photos = [lk.Photo("ann", tmp_path / "a1.png"), lk.Photo("ann", tmp_path / "a2.png"),
              lk.Photo("bob", tmp_path / "b.png")]
    vec = {"a1": [1.0, 0, 0], "a2": [0.9, 0.1, 0], "b": [0, 1.0, 0]}
    faces = {p.path: lk.Face(np.array(vec[p.name]), (0, 0, 1, 1), "hog") for p in photos}
    shots = [lk.Shot(photos[0], "camera", tmp_path / "r1.png", photos[0]),
             lk.Shot(photos[0], "yaw-30", tmp_path / "r2.png", photos[0]),
             lk.Shot(photos[0], "yaw+30", tmp_path / "r3.png", photos[0]),
             lk.Shot(photos[0], "at a2", tmp_path / "r4.png", photos[1])]
    faces[shots[0].path] = lk.Face(np.array([0.95, 0.05, 0]), (0, 0, 1, 1), "hog")
    faces[shots[1].path] = lk.Face(np.array([0.2, 0.8, 0]), (0, 0, 1, 1), "mmod")
    faces[shots[2].path] = None
    faces[shots[3].path] = lk.Face(np.array([0.9, 0.3, 0]), (0, 0, 1, 1), "hog")
    text = lk.report(photos, shots, faces, "HEADER")
    assert text.startswith("HEADER")
    assert "Renders identified as their person: 1/3" in text
    assert "nearest own photo within 0.5: 1/3, within 0.6: 1/3" in text
    assert "Cross-view within 0.55 of the photo: 1/1, identified: 1/1" in text
    row = next(line for line in text.splitlines() if line.startswith("| ann | a1 |"))
    assert "✓" in row.split("|")[3] and "✗" in row.split("|")[4] and "no face" in row.split("|")[5]
    assert "| a1 | a2 | 0.20 |" in text                                # cross-view: render vs a2
    assert "same person 1 pairs, 0.14–0.14" in text


# ------------------------------------------------------------------------------- the yaw camera
def _camera(yaw_deg: float, pitch_deg: float = 10.0, distance: float = 0.6) -> Camera:
    """A camera looking at model point (0, 0.05, 0) from ``yaw_deg`` about +Y and ``pitch_deg``
    above, with the photo's intrinsics (1000 px focal length, 800x600 photo)."""
    yaw, pitch = math.radians(yaw_deg), math.radians(pitch_deg)
    target = np.array([0.0, 0.05, 0.0])
    position = target + distance * np.array([math.sin(yaw) * math.cos(pitch), math.sin(pitch),
                                             math.cos(yaw) * math.cos(pitch)])
    back = (position - target) / distance                             # camera +Z (it looks down -Z)
    right = np.cross([0.0, 1.0, 0.0], back)
    right /= np.linalg.norm(right)
    rotation = np.stack([right, np.cross(back, right), back])        # rows: camera axes in model space
    return Camera(rotation, -rotation @ position, 1000.0, (400.0, 300.0), (800, 600))


@pytest.mark.parametrize("start,goal", [(0.0, 30.0), (12.0, -30.0), (-40.0, 30.0)])
def test_yaw_camera_goes_round_the_head(start, goal):
    camera = _camera(start)
    centre = np.array([0.0, 0.0, 0.0])
    turned = lk.yaw_camera(camera, centre, goal)
    position = -turned.rotation.T @ turned.translation
    assert math.degrees(math.atan2(position[0], position[2])) == pytest.approx(goal)
    old = -camera.rotation.T @ camera.translation
    assert np.hypot(position[0], position[2]) == pytest.approx(np.hypot(old[0], old[2]))
    assert position[1] == pytest.approx(old[1])                       # same height
    assert np.allclose(turned.rotation @ turned.rotation.T, np.eye(3))
    # It still looks at the head: the point it looked at projects where it did.
    target = np.array([[0.0, 0.05, 0.0]])
    assert np.allclose(turned.project(target), camera.project(target))
    # +yaw shows the head's left (+X): the left ear is nearer the camera than the right.
    if goal > 0:
        ears = turned.to_camera(np.array([[0.08, 0.0, 0.0], [-0.08, 0.0, 0.0]]))
        assert ears[0, 2] > ears[1, 2]                               # camera looks down -Z
    assert turned.focal_px == camera.focal_px and turned.image_size == camera.image_size


def test_framed_camera_is_the_square_of_the_photo(tmp_path):
    """A point of the head lands at the same place in the framed camera's image as in the
    photo's square cut out by photo_square; the face centre lands in the middle."""
    camera = _camera(20.0)
    centre = np.array([0.0, 0.05, 0.0])
    frame, square = lk.framed(camera, centre, 200)
    assert frame.image_size == (200, 200)
    assert np.allclose(frame.project(centre[None]), [[100.0, 100.0]])
    # The square is FRAME_M wide at the centre's depth: a point that far to the camera's side
    # (at the same depth) lands on the frame's edge.
    right = camera.rotation[0]                                       # camera +X in model space
    edge = frame.project((centre + right * lk.FRAME_M / 2)[None])[0]
    assert edge == pytest.approx([200.0, 100.0])
    # A bright dot painted into a grey photo at a point's projection shows in photo_square at
    # that point's projection through the framed camera.
    point = np.array([[0.03, 0.08, 0.05]])
    u, v = camera.project(point)[0]
    photo = np.full((600, 800, 3), 40, np.uint8)
    photo[int(v) - 2:int(v) + 3, int(u) - 2:int(u) + 3] = 255
    Image.fromarray(photo).save(tmp_path / "photo.png")
    cut = lk.photo_square(tmp_path / "photo.png", square, 200)
    found = np.unravel_index(cut[..., 0].astype(int).argmax(), cut.shape[:2])[::-1]
    assert np.allclose(found, frame.project(point)[0], atol=2.0)
    # Beyond the photo's edge the square is grey.
    _, outside = lk.framed(camera, np.array([0.5, 0.05, 0.0]), 50)
    assert (lk.photo_square(tmp_path / "photo.png", outside, 50)[0, -1] == np.round(lk.GREY * 255)).all()
