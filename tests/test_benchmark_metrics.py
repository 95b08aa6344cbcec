"""Benchmark metric code on cases with known answers (no scan files, no Blender needed)."""
from __future__ import annotations

import numpy as np
import pytest

from benchmark.align import (Similarity, Surface, align, closest_on_triangles,
                                    fit_similarity)
from benchmark.metrics import (SurfaceBandPass, albedo_error, detail_noise_floor,
                                      detail_score, region_errors)
from benchmark.scan import front_most, head_length, sample_map, vertex_areas
from engine.levels.albedo import linear_to_srgb, srgb_to_linear


def bumpy_patch(n: int = 60, size: float = 0.12) -> tuple[np.ndarray, np.ndarray]:
    """A face-sized asymmetric height field (metres): ``[n*n, 3]`` vertices, ``[2(n-1)², 3]`` tris."""
    xs = np.linspace(-size / 2, size / 2, n)
    x, y = np.meshgrid(xs, xs)
    z = (0.03 * np.exp(-((x - 0.01) ** 2 + (y + 0.005) ** 2) / 0.0004)     # a "nose"
         - 0.3 * x ** 2 - 0.5 * (y - 0.02) ** 2 + 0.01 * np.sin(60 * x + 20 * y) * (y > 0))
    verts = np.stack([x, y, z], -1).reshape(-1, 3)
    idx = np.arange(n * n).reshape(n, n)
    a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, 1:], idx[1:, :-1]
    tris = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])
    return verts, tris


def random_rotation(rng: np.random.Generator, angle: float) -> np.ndarray:
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def test_mesh_against_itself_has_zero_error():
    verts, tris = bumpy_patch()
    surface = Surface(verts, tris)
    rng = np.random.default_rng(0)
    # Vertices and random points inside triangles both lie on the surface.
    bary = rng.dirichlet(np.ones(3), size=500)
    inside = np.einsum("nk,nkd->nd", bary, verts[tris[rng.integers(0, len(tris), 500)]])
    pts = np.concatenate([verts, inside])
    d = surface.closest(pts).distances
    assert d.max() < 1e-12
    errors = region_errors(d, {"nose": np.arange(len(pts)) % 2 == 0, "cheeks": np.arange(len(pts)) % 2 == 1})
    assert set(errors) == {"nose", "cheeks", "all"}
    assert max(errors.values()) < 1e-9


def test_alignment_recovers_known_rigid_and_scale_transform():
    verts, tris = bumpy_patch(40)
    rng = np.random.default_rng(1)
    truth = Similarity(1.13, random_rotation(rng, 0.4), np.array([0.02, -0.01, 0.05]))
    target = truth.apply(verts)
    landmarks = verts[rng.choice(len(verts), 12, replace=False)]
    # Landmarks a few millimetres off, as detected ones are: ICP must do the rest.
    noisy = truth.apply(landmarks) + rng.normal(scale=0.003, size=landmarks.shape)
    result = align(Surface(verts, tris), landmarks, noisy, target, iterations=60, trim=1.0,
                   tolerance_m=1e-8)
    assert abs(result.transform.scale - truth.scale) < 2e-3
    assert np.abs(result.transform.apply(verts) - target).max() < 5e-4
    assert result.rms < 2e-4


def test_fit_similarity_is_exact_on_exact_pairs_and_inverse_undoes_it():
    rng = np.random.default_rng(2)
    src = rng.normal(size=(20, 3))
    truth = Similarity(0.7, random_rotation(rng, 2.0), rng.normal(size=3))
    fit = fit_similarity(src, truth.apply(src))
    assert fit.scale == pytest.approx(0.7, abs=1e-12)
    assert np.allclose(fit.rotation, truth.rotation, atol=1e-12)
    assert np.allclose(fit.inverse().apply(truth.apply(src)), src, atol=1e-12)
    assert np.allclose(truth.then(truth.inverse()).apply(src), src, atol=1e-12)


def test_uniform_offset_gives_error_equal_to_offset():
    n = 30
    xs = np.linspace(-0.05, 0.05, n)
    x, y = np.meshgrid(xs, xs)
    verts = np.stack([x, y, np.zeros_like(x)], -1).reshape(-1, 3)
    _, tris = bumpy_patch(n)
    rng = np.random.default_rng(3)
    pts = np.column_stack([rng.uniform(-0.04, 0.04, (800, 2)), np.full(800, 0.0025)])
    errors = region_errors(Surface(verts, tris).closest(pts).distances,
                           {"forehead": pts[:, 0] < 0, "mouth": pts[:, 0] >= 0})
    for value in errors.values():
        assert value == pytest.approx(2.5, abs=1e-9)


def test_empty_region_is_a_clear_error():
    with pytest.raises(ValueError, match="Region 'nose' selects no scan point"):
        region_errors(np.ones(5), {"nose": np.zeros(5, bool), "mouth": np.ones(5, bool)})


def test_closest_point_on_triangle_matches_brute_force():
    rng = np.random.default_rng(4)
    a, b, c = rng.normal(size=(3, 300, 3))
    p = 2 * rng.normal(size=(300, 3))
    q, bary = closest_on_triangles(p, a, b, c)
    assert np.allclose(bary.sum(1), 1) and bary.min() >= 0
    u, v = np.meshgrid(np.linspace(0, 1, 80), np.linspace(0, 1, 80))
    keep = u + v <= 1
    grid = a[:, None] + u[keep][None, :, None] * (b - a)[:, None] + v[keep][None, :, None] * (c - a)[:, None]
    brute = np.linalg.norm(grid - p[:, None], axis=-1).min(1)
    exact = np.linalg.norm(q - p, axis=1)
    assert np.all(exact <= brute + 1e-12) and np.all(brute - exact < 0.03)


def test_detail_score_and_albedo_error_known_values():
    rng = np.random.default_rng(5)
    t = rng.normal(size=1000)
    assert detail_score(t, 3 * t + 1) == pytest.approx(1.0)
    assert detail_score(t, -t) == pytest.approx(-1.0)
    assert abs(detail_score(t, rng.normal(size=1000))) < 0.1
    with pytest.raises(ValueError, match="constant"):
        detail_score(t, np.zeros(1000))
    colours = rng.uniform(0.1, 0.9, size=(200, 3))
    err, _ = albedo_error(colours, np.clip(colours + 0.1 * (np.arange(200) % 2)[:, None], 0, 1))
    assert err > 1.0


def test_weighted_detail_score_ignores_zero_weight_points():
    rng = np.random.default_rng(6)
    t = rng.normal(size=400)
    r = np.where(np.arange(400) < 200, t, -t)          # agrees on the first half only
    w = (np.arange(400) < 200).astype(float)
    assert detail_score(t, r) == pytest.approx(0.0, abs=0.15)
    assert detail_score(t, r, w) == pytest.approx(1.0)


def test_albedo_gain_is_removed_in_linear_light():
    rng = np.random.default_rng(7)
    colours = rng.uniform(0.05, 0.95, size=(300, 3))
    # The same albedo under a dimmer, tinted light: a gain in linear light, not in sRGB.
    gain = np.array([0.5, 0.8, 0.3])
    darker = linear_to_srgb(srgb_to_linear(colours) * gain).astype(np.float64)
    err, fitted = albedo_error(colours, darker)
    assert err < 0.05 and np.allclose(fitted, 1.0 / gain, rtol=1e-3)
    # A gain fitted in sRGB space would leave an error of several levels here.
    srgb_gain = (colours * darker).sum(0) / (darker * darker).sum(0)
    assert np.abs(colours - darker * srgb_gain).mean() * 255 > 2.0


def test_region_errors_weight_points_by_area():
    d = np.array([0.001, 0.003, 0.002])
    masks = {"nose": np.array([True, True, False]), "mouth": np.array([False, False, True])}
    errors = region_errors(d, masks, weights=np.array([3.0, 1.0, 2.0]))
    assert errors["nose"] == pytest.approx(1.5) and errors["mouth"] == pytest.approx(2.0)
    assert errors["all"] == pytest.approx((3 + 3 + 4) / 6)


def wrinkled_patch(spacing: float = 0.001, size: float = 0.044):
    """Points of a gently curved patch ``[N, 3]``, their areas ``[N]``, the patch's smooth
    height ``[N]`` (bowl, metres) and its wrinkles ``[N]`` (a few 0.1 mm, 3-6 mm apart)."""
    xs = np.arange(-size / 2, size / 2, spacing)
    x, y = (a.ravel() for a in np.meshgrid(xs, xs))
    bowl = -2.0 * (x ** 2 + y ** 2)
    wrinkles = 1e-4 * (np.sin(2 * np.pi * y / 0.006) + 0.7 * np.sin(2 * np.pi * (x + 0.3 * y) / 0.0045))
    points = np.column_stack([x, y, bowl + wrinkles])
    return points, np.full(len(x), spacing ** 2), bowl, wrinkles


def test_detail_score_on_the_surface_positive_and_negative_controls():
    points, areas, bowl, wrinkles = wrinkled_patch()
    band = SurfaceBandPass(points, areas, (0.001, 0.005))
    truth = band(wrinkles + 0.2 * bowl)      # the scan's map holds smooth content too
    rng = np.random.default_rng(8)
    # A linear trend passes both smoothings unchanged, up to the edges (locally linear fits).
    assert np.abs(band(0.05 * points[:, 0])).max() < 0.1 * band(wrinkles).std()
    # Positive control: the same wrinkles at half the amplitude over another smooth shape,
    # with fine noise (finer than the band) -> strongly positive.
    recovered = 0.5 * wrinkles - 0.3 * bowl + 2e-5 * rng.normal(size=len(points))
    assert detail_score(truth, band(recovered), areas) > 0.85
    # Inverted relief (the sign convention of the map) -> strongly negative.
    assert detail_score(truth, band(-recovered), areas) < -0.85
    # Negative control: shuffled detail has no relation to the truth -> within chance.
    floor = detail_noise_floor(truth, band, areas, trials=32)
    assert 0.0 < floor < 0.5
    shuffled = rng.permutation(wrinkles)
    assert abs(detail_score(truth, band(shuffled), areas)) < floor
    # Detail displaced by half a wrinkle period along y is not "the same detail".
    shifted = 1e-4 * (np.sin(2 * np.pi * (points[:, 1] + 0.003) / 0.006)
                      + 0.7 * np.sin(2 * np.pi * (points[:, 0] + 0.3 * points[:, 1]) / 0.0045))
    assert detail_score(truth, band(shifted), areas) < 0.5


def test_detail_score_survives_a_different_uv_layout():
    """The reconstruction's detail arrives through its own UV map: a map of the same wrinkles
    in another layout (rotated, squashed, 0.5 mm texels), read back at the points, still
    correlates strongly once both are band-passed on the surface."""
    points, areas, _, wrinkles = wrinkled_patch()
    band = SurfaceBandPass(points, areas, (0.001, 0.005))

    def to_uv(p):            # a rotated, anisotropic layout of the patch inside [0, 1]²
        c, s = np.cos(0.6), np.sin(0.6)
        return np.column_stack([0.5 + 6.0 * (c * p[:, 0] - s * p[:, 1]),
                                0.5 + 9.0 * (s * p[:, 0] + c * p[:, 1])])

    side = 1024
    texel_uv = (np.arange(side) + 0.5) / side
    u, v = np.meshgrid(texel_uv, 1.0 - texel_uv)       # row 0 = top = v near 1
    c, s = np.cos(0.6), np.sin(0.6)
    a, b = (u - 0.5) / 6.0, (v - 0.5) / 9.0             # invert the layout
    x, y = c * a + s * b, -s * a + c * b
    height_map = 1e-4 * (np.sin(2 * np.pi * y / 0.006) + 0.7 * np.sin(2 * np.pi * (x + 0.3 * y) / 0.0045))
    read = sample_map(height_map.astype(np.float32), to_uv(points))
    truth = band(wrinkles)
    assert detail_score(truth, band(read), areas) > 0.95
    # Reading the map upside down (a v-flip bug) breaks the correspondence.
    flipped = to_uv(points) * [1, -1] + [0, 1]
    assert detail_score(truth, band(sample_map(height_map.astype(np.float32), flipped)), areas) < 0.5


def test_front_most_drops_surfaces_hidden_behind_the_face():
    xs = np.linspace(-0.02, 0.02, 41)
    x, y = (a.ravel() for a in np.meshgrid(xs, xs))
    face = np.column_stack([x, y, 0.09 + 0 * x])
    inside = np.column_stack([x, y, 0.02 + 0 * x])       # e.g. the inside of the mouth
    keep = front_most(np.concatenate([face, inside]))
    assert keep[:len(face)].all() and not keep[len(face):].any()


def test_head_length_measures_the_skull_not_the_nose():
    """An ellipsoidal head 0.2 m long with a brow ridge (4 mm) and a nose sticking out 2.5 cm
    below it: the length is the skull's (glabella to back, 0.204 m), not nose tip to back."""
    theta, phi = np.meshgrid(np.linspace(0, np.pi, 400), np.linspace(0, 2 * np.pi, 400))
    x, y, z = (0.075 * np.sin(theta) * np.cos(phi), 0.11 * np.cos(theta), 0.1 * np.sin(theta) * np.sin(phi))
    z = z + 0.004 * np.exp(-((y - 0.015) / 0.008) ** 2) * (z > 0.09)     # brow ridge
    head = np.column_stack([x.ravel(), y.ravel(), z.ravel()])
    ny, nz = np.meshgrid(np.linspace(-0.04, 0.0, 60), np.linspace(0.0, 0.025, 30))
    nose = np.column_stack([0 * ny.ravel(), ny.ravel() - 0.01 * nz.ravel() / 0.025, 0.098 + nz.ravel()])
    length = head_length(np.concatenate([head, nose]))
    assert length == pytest.approx(0.204, abs=0.002)


def test_vertex_areas_sum_to_the_surface_area():
    verts, tris = bumpy_patch(20)
    v = verts[tris]
    total = 0.5 * np.linalg.norm(np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0]), axis=1).sum()
    assert vertex_areas(verts, tris).sum() == pytest.approx(total)


def test_sample_map_uses_engine_uv_convention():
    image = np.zeros((4, 4), np.float32)
    image[0, 3] = 1.0                          # top-right texel: u ~ 1, v ~ 1
    assert sample_map(image, np.array([[0.875, 0.875]]))[0] == pytest.approx(1.0)
    assert sample_map(image, np.array([[0.875, 0.125]]))[0] == pytest.approx(0.0)
