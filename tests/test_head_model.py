"""Tests of the packaged parametric head model (engine/head/data/head_model.npz)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.errors import ModelFilesError
from engine.head.model import ARKIT_NAMES, HeadModel, load_head_model


@pytest.fixture(scope="module")
def model() -> HeadModel:
    return load_head_model()


@pytest.fixture(scope="module")
def fine(model) -> HeadModel:
    return model.subdivided(1)


def _outward_fraction(vertices: np.ndarray, faces: np.ndarray) -> float:
    """Area-weighted fraction of quads whose normal points away from the bbox centre."""
    v = vertices[faces]
    normal = np.cross(v[:, 2] - v[:, 0], v[:, 3] - v[:, 1])
    centre = 0.5 * (vertices.min(0) + vertices.max(0))
    outward = (normal * (v.mean(1) - centre)).sum(1) > 0
    area = np.linalg.norm(normal, axis=1)
    return float((area * outward).sum() / area.sum())


def _uv_overlaps(uvs: np.ndarray, face_uvs: np.ndarray, n: int = 20000) -> int:
    """Number of random sample points covered by more than one UV triangle."""
    tri = np.stack([face_uvs[:, [0, 1, 2]], face_uvs[:, [0, 2, 3]]], 1).reshape(-1, 3)
    a, b, c = (uvs[tri[:, k]].astype(np.float64) for k in range(3))
    pts = np.random.default_rng(0).random((n, 2))
    cover = np.zeros(n, int)
    def cross(o, p, q):
        return (p[:, None, 0] - o[:, None, 0]) * (q[None, :, 1] - o[:, None, 1]) - \
            (p[:, None, 1] - o[:, None, 1]) * (q[None, :, 0] - o[:, None, 0])
    for s in range(0, len(tri), 2000):
        ta, tb, tc = a[s:s + 2000], b[s:s + 2000], c[s:s + 2000]
        d1 = cross(ta, tb, pts)
        d2 = cross(tb, tc, pts)
        d3 = cross(tc, ta, pts)
        eps = 1e-9  # points strictly inside (shared edges are not overlaps)
        inside = ((d1 > eps) & (d2 > eps) & (d3 > eps)) | ((d1 < -eps) & (d2 < -eps) & (d3 < -eps))
        cover += inside.sum(0)
    return int((cover > 1).sum())


def test_shapes_consistent(model):
    v, f = model.n_vertices, len(model.faces)
    assert model.faces.shape == (f, 4) and model.faces.dtype == np.int32
    assert model.faces.min() >= 0 and model.faces.max() < v
    assert len(np.unique(model.faces)) == v                 # no unused vertices
    assert model.face_uvs.shape == (f, 4) and model.face_uvs.max() < len(model.uvs)
    assert model.mean.shape == (v, 3) and model.mean.dtype == np.float32
    assert model.identity_basis.shape == (model.n_identity, v, 3)
    assert 10 <= model.n_identity <= 100
    assert model.expression_basis.shape == (52, v, 3)
    assert model.triangles().shape == (2 * f, 3)
    assert model.landmark_faces.shape == (478,) and model.landmark_barycentrics.shape == (478, 3)
    assert model.landmark_faces.max() < 2 * f
    np.testing.assert_allclose(model.landmark_barycentrics.sum(1), 1, atol=1e-5)


def test_expression_names_are_arkit(model):
    assert model.expression_names == ARKIT_NAMES
    assert len(set(ARKIT_NAMES)) == 52 and list(ARKIT_NAMES) == sorted(ARKIT_NAMES)
    jaw = model.expression_basis[ARKIT_NAMES.index("jawOpen")]
    assert np.linalg.norm(jaw, axis=1).max() > 0.005          # opens by centimetres
    lips = model.regions["lips"]
    assert jaw[lips, 1].min() < -0.005                         # the lower lip moves down


def test_quads_face_outward(model):
    assert _outward_fraction(model.mean.astype(np.float64), model.faces) > 0.75


def test_head_has_human_size(model):
    m = model.mean
    ears = m[model.regions["ears"]]
    width = ears[:, 0].max() - ears[:, 0].min()
    assert 0.13 <= width <= 0.19
    face = m[model.regions["face"]]
    chin_to_crown = m[:, 1].max() - face[:, 1].min()
    assert 0.20 <= chin_to_crown <= 0.26
    # Origin between the ears: on the midline, inside the head.
    assert abs(m[:, 0].max() + m[:, 0].min()) < 1e-3
    assert m[:, 2].min() < 0 < m[:, 2].max() and m[:, 1].min() < 0 < m[:, 1].max()


def test_face_looks_forward_and_left_is_plus_x(model):
    m = model.mean
    nose_tip = m[model.regions["nose"]][np.argmax(m[model.regions["nose"], 2])]
    assert nose_tip[2] == pytest.approx(m[:, 2].max(), abs=0.01)   # nose is the front
    assert abs(nose_tip[0]) < 0.005


def test_mirror_is_involution_and_mirrors_x(model):
    mirror = model.mirror
    assert (mirror[mirror] == np.arange(model.n_vertices)).all()
    flipped = model.mean[mirror] * np.array([-1, 1, 1])
    assert np.abs(flipped - model.mean).max() < 0.002
    assert (mirror == np.arange(model.n_vertices)).sum() > 20            # midline vertices
    assert np.abs(model.mean[mirror == np.arange(model.n_vertices), 0]).max() < 1e-3


def test_regions_partition_the_head(model):
    r = model.regions
    base = np.stack([r["face"], r["scalp"], r["ears"], r["neck"], r["eyeballs"]]).sum(0)
    assert (base == 1).all()
    for sub in ("eyes", "nose", "mouth", "lips"):
        assert r[sub].any() and not (r[sub] & ~r["face"]).any()
    m = model.mean
    assert m[r["neck"], 1].mean() < m[r["face"], 1].mean() < m[r["scalp"], 1].max()
    assert m[r["eyes"], 1].mean() > m[r["nose"], 1].mean() > m[r["lips"], 1].mean()


def test_uvs_valid_non_overlapping_face_biggest(model):
    uv = model.uvs
    assert uv.min() >= 0 and uv.max() <= 1
    assert uv.max(0).min() > 0.9                    # the layout fills the square
    assert _uv_overlaps(uv, model.face_uvs) == 0
    # UV area of each island; the one holding the face is the biggest.
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    tri = model.face_uvs
    a, b, c, d = (uv[tri[:, k]] for k in range(4))
    area = 0.5 * np.abs(np.cross(b - a, c - a)) + 0.5 * np.abs(np.cross(c - a, d - a))
    rows = np.repeat(np.arange(len(tri)), 4)
    adj = coo_matrix((np.ones(rows.size), (rows, tri.ravel()))).tocsr()
    _, island = connected_components(adj @ adj.T, directed=False)
    island_area = np.bincount(island, weights=area)
    face_quads = model.regions["face"][model.faces].all(1)
    face_island = np.bincount(island[face_quads]).argmax()
    assert island_area.argmax() == face_island


def test_uv_face_texel_share_and_fill(model):
    """The face gets most of the texture: >= 45% of the UV square, islands fill >= 65%."""
    uv, fuv = model.uvs.astype(np.float64), model.face_uvs
    a, b, c, d = (uv[fuv[:, k]] for k in range(4))
    area = 0.5 * np.abs(np.cross(b - a, c - a)) + 0.5 * np.abs(np.cross(c - a, d - a))
    face_quads = model.regions["face"][model.faces].all(1)
    assert area[face_quads].sum() >= 0.45
    assert area.sum() >= 0.65
    # Texel density (UV length per metre) of the face is several times the scalp's.
    def density(sel):
        corners = model.mean[model.faces[sel]].astype(np.float64)
        area3d = 0.5 * np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1) \
            + 0.5 * np.linalg.norm(np.cross(corners[:, 2] - corners[:, 0], corners[:, 3] - corners[:, 0]), axis=1)
        return np.sqrt(area[sel].sum() / area3d.sum())
    assert density(face_quads) > 3 * density(model.regions["scalp"][model.faces].all(1))
    # The face island is upright: UV v grows with height (forehead towards v = 1).
    face_centres = model.mean[model.faces[face_quads]].mean(1)
    face_uv = uv[fuv[face_quads]].mean(1)
    assert np.corrcoef(face_uv[:, 1], face_centres[:, 1])[0, 1] > 0.8


def test_uv_margins(model):
    """Distinct islands stay several texels apart at 512²."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    fuv = model.face_uvs
    rows = np.repeat(np.arange(len(fuv)), 4)
    adj = coo_matrix((np.ones(rows.size), (rows, fuv.ravel()))).tocsr()
    n, island = connected_components(adj @ adj.T, directed=False)
    assert n >= 2
    point_island = np.empty(len(model.uvs), int)
    point_island[fuv.ravel()] = np.repeat(island, 4)
    from scipy.spatial import cKDTree
    trees = [cKDTree(model.uvs[point_island == i]) for i in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            d, _ = trees[j].query(model.uvs[point_island == i])
            assert d.min() * 512 > 2.0


def test_identity_samples_stay_plausible(model):
    rng = np.random.default_rng(1)
    for _ in range(5):
        shape = model.shape(rng.standard_normal(model.n_identity), None)
        assert np.isfinite(shape).all()
        width = np.ptp(shape[model.regions["ears"], 0])
        assert 0.11 <= width <= 0.21
        moved = np.linalg.norm(shape - model.mean, axis=1)
        assert moved.max() < 0.06 and moved[model.regions["face"]].max() < 0.03
        assert _outward_fraction(shape.astype(np.float64), model.faces) > 0.75
    # Components vary and are orthonormal.
    flat = model.identity_basis.reshape(model.n_identity, -1)
    np.testing.assert_allclose(flat @ flat.T, np.eye(model.n_identity), atol=2e-2)
    assert (np.diff(model.identity_std) <= 1e-6).all()


def test_shape_numpy_and_torch_agree(model):
    rng = np.random.default_rng(2)
    ident = rng.standard_normal(model.n_identity).astype(np.float32)
    expr = rng.random(52).astype(np.float32) * 0.5
    a = model.shape(ident, expr)
    b = model.shape(torch.from_numpy(ident), torch.from_numpy(expr))
    assert isinstance(b, torch.Tensor)
    np.testing.assert_allclose(a, b.numpy(), atol=1e-5)
    np.testing.assert_array_equal(model.shape(), model.mean)
    lm_np = model.landmarks(a)
    lm_t = model.landmarks(b)
    np.testing.assert_allclose(lm_np, lm_t.numpy(), atol=1e-5)


def test_landmarks_on_mean_head(model):
    lm = model.landmarks(model.mean)
    w = model.landmark_weights
    assert (w >= 0).all() and (w <= 1).all()
    assert (w[468:] == 0).all()                      # irises are not on the skin
    assert (w[:468] > 0).mean() > 0.9
    # MediaPipe: 33 / 263 outer eye corners (subject's right / left), 1 nose tip,
    # 13 / 14 inner lips, 152 chin.
    right_eye, left_eye, nose, mouth, chin = lm[33], lm[263], lm[1], 0.5 * (lm[13] + lm[14]), lm[152]
    assert left_eye[0] > 0.02 and right_eye[0] < -0.02        # +X = subject's left
    assert min(left_eye[1], right_eye[1]) > nose[1] > mouth[1] > chin[1]
    assert nose[2] > mouth[2] and abs(nose[0]) < 0.005
    # Landmarks lie on the surface: within 5 mm of a mesh vertex-neighbourhood.
    from scipy.spatial import cKDTree
    d, _ = cKDTree(model.mean).query(lm[w > 0])
    assert d.max() < 0.02                     # coarse vertex spacing is about 1 cm
    tri = model.triangles()[model.landmark_faces]
    corners = model.mean[tri]
    normal = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    off_plane = np.abs(((lm - corners[:, 0]) * normal).sum(1))
    assert off_plane.max() < 0.005


def test_landmark_uv_matches_faces(model):
    tri_uv = np.stack([model.face_uvs[:, [0, 1, 2]], model.face_uvs[:, [0, 2, 3]]], 1).reshape(-1, 3)
    uv = (model.uvs[tri_uv[model.landmark_faces]] * model.landmark_barycentrics[..., None]).sum(1)
    np.testing.assert_allclose(uv, model.landmark_uv, atol=1e-5)


def test_subdivision_keeps_surface(model, fine):
    v, f = model.n_vertices, len(model.faces)
    assert len(fine.faces) == 4 * f
    assert fine.n_vertices > 3.5 * v
    assert fine.identity_basis.shape == (model.n_identity, fine.n_vertices, 3)
    assert fine.expression_basis.shape == (52, fine.n_vertices, 3)
    # Every new point stays near its polygonal position (vertex, edge midpoint, quad centre).
    from engine.head.subdivision import catmull_clark
    polygonal = catmull_clark(model.faces, v).linear @ model.mean
    assert np.abs(fine.mean - polygonal).max() < 0.006
    assert np.abs(fine.mean[:v] - model.mean).max() < 0.006
    assert _outward_fraction(fine.mean.astype(np.float64), fine.faces) > 0.75
    # Same coefficients, same shape change (the operator is linear and shared).
    ident = np.random.default_rng(3).standard_normal(model.n_identity)
    coarse_delta = model.shape(ident) - model.mean
    fine_delta = fine.shape(ident) - fine.mean
    assert np.abs(fine_delta[:v] - coarse_delta).max() < 0.005
    assert model.subdivided(1) is fine                         # cached


def test_subdivision_uvs_mirror_regions_landmarks(model, fine):
    assert fine.uvs.min() >= 0 and fine.uvs.max() <= 1
    assert _uv_overlaps(fine.uvs, fine.face_uvs, n=5000) == 0
    mirror = fine.mirror
    assert (mirror[mirror] == np.arange(fine.n_vertices)).all()
    assert np.abs(fine.mean[mirror] * np.array([-1, 1, 1]) - fine.mean).max() < 0.002
    for name, mask in model.regions.items():
        assert (fine.regions[name][:model.n_vertices] == mask).all()
    np.testing.assert_array_equal(fine.landmark_uv, model.landmark_uv)
    moved = np.linalg.norm(fine.landmarks(fine.mean) - model.landmarks(model.mean), axis=1)
    assert np.median(moved[model.landmark_weights > 0]) < 0.003


def _eyeballs(model: HeadModel, vertices: np.ndarray) -> list[tuple[np.ndarray, float, np.ndarray]]:
    """(centre, mean radius, radii) of the left (+X) and right eyeball of ``vertices``."""
    out = []
    for side in (1, -1):
        sel = model.regions["eyeballs"] & (np.sign(model.mean[:, 0]) == side)
        pts = vertices[sel].astype(np.float64)
        centre = pts.mean(0)
        radii = np.linalg.norm(pts - centre, axis=1)
        out.append((centre, radii.mean(), radii))
    return out


def test_eyeballs_are_closed_spheres_with_own_uv_islands(model):
    eyeball = model.regions["eyeballs"]
    quads = eyeball[model.faces]
    assert (quads.all(1) | ~quads.any(1)).all()              # no quad joins eyeball and skin
    for side, (centre, radius, radii) in zip((1, -1), _eyeballs(model, model.mean)):
        assert 0.02 < side * centre[0] < 0.045                # under the brows, either side
        assert 0.010 < radius < 0.017 and np.ptp(radii) < 0.05 * radius
    # Closed: every edge of the eyeball quads is shared by exactly two of them.
    f = model.faces[quads.all(1)]
    edges = np.sort(np.stack([f, np.roll(f, -1, 1)], -1).reshape(-1, 2), 1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    assert (counts == 2).all()
    # Mirror pairs the two eyeballs vertex by vertex.
    left = np.nonzero(eyeball & (model.mean[:, 0] > 0))[0]
    right = model.mirror[left]
    assert eyeball[right].all() and (model.mean[right, 0] < 0).all()
    np.testing.assert_allclose(model.mean[right] * [-1, 1, 1], model.mean[left], atol=1e-4)
    # Own UV islands: no UV point shared with the skin.
    eye_points = np.unique(model.face_uvs[quads.all(1)])
    skin_points = np.unique(model.face_uvs[~quads.any(1)])
    assert not np.intersect1d(eye_points, skin_points).size


def test_eyeballs_stay_in_their_sockets(model):
    """For identity samples within +-2 sigma the eyeballs move and scale with the sockets:
    the eyeball centre relative to the socket ("eyes" region) follows the socket's size."""
    def socket(vertices):
        out = []
        for side, (centre, radius, _) in zip((1, -1), _eyeballs(model, vertices)):
            sel = model.regions["eyes"] & (np.sign(model.mean[:, 0]) == side)
            middle = vertices[sel].mean(0)
            size = np.linalg.norm(vertices[sel] - middle, axis=1).mean()
            out.append((centre - middle, radius, size))
        return out
    rest = socket(model.mean)
    rng = np.random.default_rng(4)
    samples = [2.0 * np.eye(model.n_identity)[k] * sign for k in range(8) for sign in (1, -1)]
    samples += [np.clip(rng.standard_normal(model.n_identity) * 2, -2, 2) for _ in range(4)]
    for ident in samples:
        for (offset, radius, size), (offset0, radius0, size0) in zip(socket(model.shape(ident)), rest):
            scale = size / size0
            # Lid and brow targets (bags, folds) reshape the socket around a still eyeball:
            # a few millimetres, well under the eyeball's radius.
            assert np.linalg.norm(offset - offset0 * scale) < 0.005
            assert abs(radius / (radius0 * scale) - 1) < 0.25      # macro targets size eyes


def test_eye_look_turns_the_eyeball(model):
    look_in = np.zeros(52)
    look_in[ARKIT_NAMES.index("eyeLookInLeft")] = 1.0
    shape = model.shape(None, look_in)
    (c0, r0, _), (c0r, _, _) = _eyeballs(model, model.mean)
    (c1, r1, _), (c1r, _, _) = _eyeballs(model, shape)
    assert np.linalg.norm(c1 - c0) < 0.0025 and abs(r1 / r0 - 1) < 0.05   # turns in place
    np.testing.assert_allclose(c1r, c0r, atol=1e-6)           # the right eye does not move
    left = model.regions["eyeballs"] & (model.mean[:, 0] > 0)
    pupil = np.nonzero(left)[0][np.argmax(model.mean[left, 2])]
    assert shape[pupil, 0] - model.mean[pupil, 0] < -0.002    # looks towards the nose


def test_eyeballs_round_after_subdivision(model, fine):
    for (_, radius, radii), (_, radius_fine, radii_fine) in zip(
            _eyeballs(model, model.mean), _eyeballs(fine, fine.mean)):
        assert abs(radius_fine / radius - 1) < 0.03
        # As round as the coarse sphere (the targets make it a slight ellipsoid): no
        # flattening at the cube corners of the quad sphere.
        assert np.ptp(radii_fine) < np.ptp(radii) + 0.002 * radius


def test_missing_or_corrupt_file_raises(tmp_path):
    with pytest.raises(ModelFilesError, match="missing.*build_head_model"):
        load_head_model(tmp_path / "nope.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file")
    with pytest.raises(ModelFilesError, match="corrupt"):
        load_head_model(bad)
    partial = tmp_path / "partial.npz"
    np.savez(partial, mean=np.zeros((3, 3)))
    with pytest.raises(ModelFilesError, match="faces"):
        load_head_model(partial)
