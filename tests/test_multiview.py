"""Multi-view reconstruction (MV-HRN) on renders of a known head, and on real photos.

The known head is the built-in model itself: an identity sample plus known bumps (2 mm
Gaussian bumps along the normal), with a skin-coloured albedo, lips, brows and eyeballs, so
MediaPipe finds it; it is rendered with the engine's own rasterizer from several yaw angles
under different SH lights. Geometric error = mean vertex distance to the known mesh after
removing the best similarity transform.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from benchmark.align import Surface
from engine import render
from engine.errors import Cancelled, NoFaceError
from engine.geometry.sh import ambient_sh, irradiance
from engine.geometry.transforms import similarity_transform, vertex_normals
from engine.head.linear import load_head
from engine.levels.albedo import linear_to_srgb
from engine.levels.multiview import check_identities, fuse_weighted
from engine.pipeline import QUALITY, ReconstructionOptions, reconstruct
from engine.progress import Stage, stage_of
from engine.render.view import View, interpolate_top_down, render_rast
from engine.result import Camera, FaceReconstruction, ViewRecord, triangulate

SIZE = 384                      # render side, px
FOCAL = SIZE * 50 / 36.0        # 50 mm-equivalent lens, as the engine assumes without EXIF
DISTANCE = 0.55                 # metres from the camera to the head origin
REAL_SET = Path(__file__).resolve().parents[2] / "shared" / "data" / "hrn_examples" / "multi_view_images"


def _identity(sign: float) -> np.ndarray:
    """A person: the first three identity components at ``sign`` std."""
    ident = np.zeros(load_head().n_identity, np.float32)
    ident[:3] = sign
    return ident


def _sphere(centre, radius, n=24):
    th, ph = np.meshgrid(np.linspace(0, np.pi, n), np.linspace(0, 2 * np.pi, 2 * n))
    d = np.stack([np.sin(th) * np.sin(ph), np.cos(th), np.sin(th) * np.cos(ph)], -1).reshape(-1, 3)
    idx = np.arange(2 * n * n).reshape(2 * n, n)
    a, b, c, e = idx[:-1, :-1], idx[1:, :-1], idx[1:, 1:], idx[:-1, 1:]
    tris = np.concatenate([np.stack([a, c, b], -1).reshape(-1, 3), np.stack([a, e, c], -1).reshape(-1, 3)])
    return centre + radius * d, d, tris


def known_head(identity: np.ndarray):
    """``(parts, truth)``: coloured meshes to render ``[(verts, colours, tris)]`` and the true
    head vertices ``[V, 3]`` (model subdivided once, identity + bumps)."""
    head = load_head().subdivided(1)
    verts = head.shape(identity, None).astype(np.float64)
    tris = triangulate(head.faces[head.mapped_faces()])      # the skin; eyes are drawn below
    n = vertex_normals(torch.as_tensor(verts), torch.as_tensor(tris).long()).numpy()
    rng = np.random.default_rng(1)
    skin = np.where(head.regions["face"] & ~head.regions["eyes"] & ~head.regions["lips"] & (n[:, 2] > 0.3))[0]
    bumps = np.zeros(len(verts))
    for c in verts[rng.choice(skin, 12, replace=False)]:
        bumps += 0.002 * np.exp(-((verts - c) ** 2).sum(1) / (2 * 0.008 ** 2))
    verts = verts + bumps[:, None] * n
    colour = np.tile([0.55, 0.32, 0.24], (len(verts), 1))
    colour[head.regions["lips"]] = [0.45, 0.12, 0.1]
    parts = [(verts, colour, tris)]
    for side in (1, -1):
        eye = head.regions["eyes"] & (np.sign(verts[:, 0]) == side)
        centre, top = verts[eye].mean(0), verts[eye][:, 1].max()
        brow = (head.regions["face"] & (np.abs(verts[:, 0] - centre[0]) < 0.022) & (n[:, 2] > 0.4)
                & (verts[:, 1] > top + 0.003) & (verts[:, 1] < top + 0.011))
        colour[brow] = [0.12, 0.07, 0.05]
        sv, sd, st = _sphere(np.array([centre[0], centre[1], verts[eye][:, 2].max() - 0.0155]), 0.0125)
        angle = np.degrees(np.arccos(np.clip(sd[:, 2], -1, 1)))
        sc = np.tile([0.8, 0.78, 0.75], (len(sv), 1))
        sc[angle < 38] = [0.25, 0.15, 0.08]
        sc[angle < 16] = [0.02, 0.02, 0.02]
        parts.append((sv, sc, st))
    return parts, verts


def render_photo(parts, yaw_deg: float, light: tuple[float, float, float], path: Path) -> Path:
    """Render ``parts`` seen from ``yaw_deg`` under a white SH light from direction
    ``light = (x, y, strength)``, sRGB, saved to ``path``."""
    v = np.concatenate([p[0] for p in parts])
    c = np.concatenate([p[1] for p in parts])
    offsets = np.cumsum([0] + [len(p[0]) for p in parts])[:-1]
    t = np.concatenate([p[2] + o for p, o in zip(parts, offsets)])
    y = np.radians(yaw_deg)
    rot = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    cam = Camera(rotation=rot, translation=np.array([0.0, -0.03, -DISTANCE]), focal_px=FOCAL,
                 principal_px=(SIZE / 2, SIZE / 2), image_size=(SIZE, SIZE))
    view = View(camera=cam, box=(0.0, 0.0, float(SIZE)), size=SIZE)
    vt, tt = torch.as_tensor(v, dtype=torch.float32), torch.as_tensor(t, dtype=torch.int32)
    with torch.no_grad():
        rast = render_rast(render.make_context(torch.device("cpu")), vt, tt, view)
        normals = vertex_normals(vt, tt.long()) @ torch.as_tensor(rot, dtype=torch.float32).T
        attr = torch.cat([torch.as_tensor(c, dtype=torch.float32), normals], -1)[None].contiguous()
        pix = interpolate_top_down(attr, rast, tt)[0].numpy()
    sh = ambient_sh(0.75)
    sh[1], sh[2], sh[3] = -light[1] * light[2], 0.4, -light[0] * light[2]
    nrm = pix[..., 3:] / (np.linalg.norm(pix[..., 3:], axis=-1, keepdims=True) + 1e-9)
    img = pix[..., :3] * np.clip(irradiance(nrm, sh), 0, None)
    img = np.where((rast[0, :, :, 3].numpy() > 0)[..., None], img, [0.35, 0.4, 0.45])
    Image.fromarray((linear_to_srgb(np.clip(img, 0, 1)) * 255 + 0.5).astype(np.uint8)).save(path)
    return path


def shape_errors_mm(result: FaceReconstruction, truth: np.ndarray, level: str = "mid"
                    ) -> tuple[float, float]:
    """``(vertex, surface)`` mean errors (mm) over the face of the known mesh ``truth``
    (subdivided once: the first vertices of the twice-subdivided result are the
    once-subdivided ones) and the result without expression, coarse (``level="coarse"``) or
    with the mid-frequency deformation, after the best similarity transform of corresponding
    vertices. Vertex error: distance between corresponding vertices (it also counts sliding
    along the surface). Surface error: distance from each true face vertex to the closest
    point of the fitted surface, as REALY and NoW measure."""
    model = load_head()
    expr = np.tensordot(result.expression, result.expression_deltas, axes=1)
    verts = result.detailed_vertices if level == "mid" else result.vertices
    fitted = (verts - expr).astype(np.float64)
    face = model.subdivided(1).regions["face"]
    s, r, t = similarity_transform(fitted[: len(truth)][face], truth[face])
    aligned = s * fitted @ r.T + t
    vertex = np.linalg.norm(aligned[: len(truth)][face] - truth[face], axis=1).mean()
    surface = Surface(aligned, result.triangles()).closest(truth[face]).distances.mean()
    return float(vertex * 1e3), float(surface * 1e3)


@pytest.fixture(scope="module")
def known_set(tmp_path_factory, no_face_path):
    """Frontal, two side views at ±35° and one at 60°, different lights; truth vertices."""
    folder = tmp_path_factory.mktemp("views")
    parts, truth = known_head(_identity(1.5))
    shots = [(0, (0.3, 0.3, 0.5)), (35, (-0.6, 0.2, 0.6)), (-35, (0.6, 0.4, 0.4)), (60, (0.3, 0.2, 0.5))]
    paths = [render_photo(parts, yaw, light, folder / f"yaw{yaw}.png") for yaw, light in shots]
    # Another person: every identity mode random, at 1.5 standard deviations.
    other_parts, _ = known_head(np.random.default_rng(7).normal(size=100).astype(np.float32) * 1.5)
    other = render_photo(other_parts, 0, (0.3, 0.3, 0.5), folder / "other_person.png")
    return paths, truth, other


@pytest.fixture(scope="module")
def multi_run(known_set, no_face_path):
    paths, truth, _ = known_set
    events = []
    photos = [paths[0], no_face_path, *paths[1:]]
    result = reconstruct(photos, ReconstructionOptions(device="cpu"),
                         progress=lambda stage, f: events.append((stage, f)))
    return photos, result, events


@pytest.fixture(scope="module")
def single_run(known_set):
    return reconstruct([known_set[0][0]], ReconstructionOptions(device="cpu"))


def test_mid_level_lowers_the_geometric_error(known_set, single_run):
    _, truth, _ = known_set
    coarse = shape_errors_mm(single_run, truth, "coarse")
    mid = shape_errors_mm(single_run, truth, "mid")
    print(f"frontal photo, error vertex/surface: coarse {coarse[0]:.3f}/{coarse[1]:.3f} mm, "
          f"+mid {mid[0]:.3f}/{mid[1]:.3f} mm")
    # The mid level fades out where no photo sees the surface squarely (engine.levels.mid.
    # vertex_confidence): here it gains 3 % (0.96 -> 0.93 mm; 6 % without the fade), on the
    # scan benchmark's real-texture frontal render the fade is what keeps the outer cheeks.
    assert mid[1] < 0.98 * coarse[1]
    assert mid[0] < coarse[0]


@pytest.mark.xfail(strict=True, reason=(
    "Known regression with the ICT head (2026-12-08): on these renders the side views' "
    "landmarks pull the shared identity away (surface error: frontal alone 0.90 mm, "
    "0/±35/60 degrees 0.98 mm after the mid level); see the issue notes."))
def test_multi_view_beats_the_frontal_photo_alone(known_set, single_run, multi_run):
    _, truth, _ = known_set
    _, multi, _ = multi_run
    e_single, e_multi = shape_errors_mm(single_run, truth), shape_errors_mm(multi, truth)
    print(f"error vertex/surface: single view {e_single[0]:.3f}/{e_single[1]:.3f} mm, "
          f"multi view {e_multi[0]:.3f}/{e_multi[1]:.3f} mm")
    assert e_multi[1] < e_single[1]


def test_no_face_photo_is_skipped_and_every_photo_has_a_record(multi_run, tmp_path):
    photos, result, events = multi_run
    assert [v.image_path for v in result.views] == [str(p) for p in photos]
    assert [v.used for v in result.views] == [True, False, True, True, True]
    assert "No face" in result.views[1].note
    assert any("coffee" in w and "skipped" in w for w in result.warnings)
    # The frontal render is the reference view; every used view has its own pose.
    assert result.metadata["reference_view"] == 0
    yaws = [np.degrees(np.arctan2(v.camera.rotation[0, 2], v.camera.rotation[2, 2]))
            for v in result.views if v.used]
    # Views up to 35° get their yaw within 5°. At 60° MediaPipe's mesh of the half-hidden face
    # is biased toward frontal and the fit measured 49.8°: allowed 12°, a known limitation.
    assert np.allclose(yaws[:3], [0, 35, -35], atol=5)
    assert abs(yaws[3] - 60) < 12
    saved = FaceReconstruction.load(result.save(tmp_path / "out"))
    assert len(saved.views) == 5 and not saved.views[1].used


def test_progress_is_per_view_and_monotonic(multi_run):
    _, _, events = multi_run
    fractions = [f for _, f in events]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    stages = {s for s, _ in events}
    assert {"Detecting face (photo 2 of 5)", "Fitting high-frequency detail (photo 5 of 5)",
            "Comparing faces", "Fitting mid-frequency detail", "Fusing views"} <= stages
    assert {stage_of(name) for name in stages} <= set(Stage)  # every name reported is declared


def test_fused_maps_are_sane(multi_run):
    _, result, _ = multi_run
    seen = result.albedo_confidence > 0.5
    assert np.abs(result.displacement_map).max() < 3e-3
    # Each used photo keeps its own displacement map; the canonical one is fused from them.
    maps = [v.displacement_map for v in result.views if v.used]
    assert all(m.shape == result.displacement_map.shape for m in maps)
    assert not np.allclose(maps[0], maps[1])
    assert np.abs(result.displacement_map).max() <= max(np.abs(m).max() for m in maps) + 1e-9
    r, g, b = result.albedo[seen].mean(0)
    assert r > g > b


@pytest.fixture
def cheap_quality(monkeypatch):
    """Fewer iterations and smaller maps for the tests that only compare runs."""
    monkeypatch.setitem(QUALITY, "fast", QUALITY["fast"].__class__(200, 15, 192, 64, 128, 10, 1, 1))


def test_order_of_photos_does_not_change_the_shape(known_set, cheap_quality):
    paths, _, _ = known_set
    a = reconstruct(paths[:3], ReconstructionOptions(device="cpu"))
    b = reconstruct(paths[:3][::-1], ReconstructionOptions(device="cpu"))
    np.testing.assert_allclose(a.identity, b.identity, atol=1e-3)
    diff = np.linalg.norm(a.detailed_vertices - b.detailed_vertices, axis=1)
    assert diff.max() < 2e-4                            # 0.2 mm
    assert [v.image_path for v in b.views] == [str(p) for p in paths[:3][::-1]]


def test_a_different_person_is_flagged_and_left_out(known_set, cheap_quality):
    paths, _, other = known_set
    result = reconstruct([paths[0], paths[1], other, paths[2]], ReconstructionOptions(device="cpu"))
    assert [v.used for v in result.views] == [True, True, False, True]
    assert "different person" in result.views[2].note
    assert any("other_person" in w for w in result.warnings)


def test_identity_check_needs_three_photos_to_blame_one():
    model = load_head()
    same = [np.zeros(model.n_identity), np.full(model.n_identity, 0.05)]
    assert check_identities(model, same + [_identity(-2.5) * 2]).outliers == (2,)
    assert check_identities(model, [same[0], _identity(-2.5) * 2]).outliers == ()


def test_fusion_weights_favour_the_head_on_view():
    frontal, oblique = np.ones((4, 4)), np.full((4, 4), 3.0)
    fused = fuse_weighted([frontal, oblique], [np.full((4, 4), 1.0), np.full((4, 4), 0.5)])
    assert np.allclose(fused, (1 * 1 + 0.25 * 3) / 1.25)
    assert np.all(fuse_weighted([frontal], [np.zeros((4, 4))]) == 0)


def test_cancel_during_the_shared_fit(known_set):
    paths, _, _ = known_set
    stop = lambda stage, f: stage != Stage.COMPARING_FACES  # noqa: E731
    with pytest.raises(Cancelled):
        reconstruct(paths[:2], progress=stop)


def test_no_face_in_any_photo_is_an_error(no_face_path):
    with pytest.raises(NoFaceError, match="any of the 2 photos"):
        reconstruct([no_face_path, no_face_path])


@pytest.mark.skipif(not REAL_SET.is_dir(), reason="../shared multi-view photos absent")
def test_real_multi_view_photos_end_to_end(tmp_path):
    photos = sorted(REAL_SET.glob("*.jpg"))
    result = reconstruct(photos, ReconstructionOptions(device="cpu"))
    assert all(v.used for v in result.views) and len(result.views) == len(photos)
    assert not any("different" in w for w in result.warnings)
    band = (result.vertices[:, 1] > 0.0) & (result.vertices[:, 1] < 0.06)   # ear height
    assert 0.14 < np.ptp(result.vertices[band, 0]) < 0.21
    assert all(m["landmark_rms_px"] < 0.03 * max(v.camera.image_size)
               for m, v in zip(result.metadata["views"], result.views))
    out = result.save(tmp_path / "real")
    assert (out / "detailed.obj").stat().st_size > 0


def test_skipped_photos_keep_their_place_whatever_the_reason():
    """Photo 2 has no face (skipped while detecting), photo 0 is another person (skipped
    later): the records still come out photo by photo (issue 15, item 7)."""
    from engine.pipeline import with_skipped

    photos = ["p0.jpg", "p1.jpg", "p2.jpg", "p3.jpg"]
    used = [ViewRecord(image_path=p, used=True) for p in ("p1.jpg", "p3.jpg")]
    skipped = {2: "no face", 0: "different person"}           # the order they were found in
    records = with_skipped(used, skipped, photos)
    assert [r.image_path for r in records] == photos
    assert [r.used for r in records] == [False, True, False, True]
    assert records[0].note == "different person" and records[2].note == "no face"
