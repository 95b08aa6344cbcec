"""Benchmark metric code on cases with known answers (no scan files, no Blender needed)."""
from __future__ import annotations

import numpy as np
import pytest

from engine.benchmark.align import (Similarity, Surface, align, closest_on_triangles,
                                    fit_similarity)
from engine.benchmark.metrics import albedo_error, detail_score, region_errors
from engine.benchmark.scan import sample_map


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
    err, gain = albedo_error(colours, colours / np.array([2.0, 1.0, 0.5]))
    assert err == pytest.approx(0.0, abs=1e-9) and np.allclose(gain, [2.0, 1.0, 0.5])
    err, _ = albedo_error(colours, np.clip(colours + 0.1 * (np.arange(200) % 2)[:, None], 0, 1))
    assert err > 1.0


def test_sample_map_uses_engine_uv_convention():
    image = np.zeros((4, 4), np.float32)
    image[0, 3] = 1.0                          # top-right texel: u ~ 1, v ~ 1
    assert sample_map(image, np.array([[0.875, 0.875]]))[0] == pytest.approx(1.0)
    assert sample_map(image, np.array([[0.875, 0.125]]))[0] == pytest.approx(0.0)
