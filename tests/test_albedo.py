"""Albedo estimation on synthetic UV-space data with known albedo (tests/uv_scene.py)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import ndimage

from engine.levels.albedo import estimate_albedo, linear_to_srgb, srgb_to_linear
from uv_scene import make_scene


@pytest.fixture(scope="module")
def scene():
    return make_scene(256)


@pytest.fixture(scope="module")
def estimate(scene):
    return estimate_albedo(scene.obs, scene.sh, scene.detail_normal)


def _mirror_filled(obs) -> np.ndarray:
    """Texels the photo misses whose mirror texel it shows well."""
    rows, cols = obs.mirror[..., 0], obs.mirror[..., 1]
    mirror_seen = (rows >= 0) & (obs.visibility[rows.clip(0), cols.clip(0)] > 0.3)
    return obs.coverage & ~obs.seen & mirror_seen


def test_srgb_round_trip_and_reference_values():
    x = np.linspace(0.0, 1.0, 101, dtype=np.float32)
    np.testing.assert_allclose(srgb_to_linear(linear_to_srgb(x)), x, atol=1e-6)
    np.testing.assert_allclose(linear_to_srgb(np.array([0.0, 0.002, 0.5, 1.0])),
                               [0.0, 0.02584, 0.735357, 1.0], atol=1e-5)


def test_output_is_well_formed(scene, estimate):
    albedo, confidence = estimate
    h, w = scene.obs.size
    assert albedo.shape == (h, w, 3) and albedo.dtype == np.float32
    assert confidence.shape == (h, w) and confidence.dtype == np.float32
    assert np.isfinite(albedo).all() and np.isfinite(confidence).all()
    assert albedo.min() >= 0.0 and albedo.max() <= 1.0
    assert confidence.min() >= 0.0 and confidence.max() <= 1.0
    assert np.all(confidence[~scene.obs.coverage] == 0.0)


def test_recovers_albedo_where_seen_keeping_freckles(scene, estimate):
    truth = linear_to_srgb(scene.albedo)
    error = np.abs(estimate.albedo_srgb - truth).mean(-1)
    seen = scene.obs.seen
    assert error[seen].mean() < 0.03
    assert error[scene.spots & seen].mean() < 0.03
    # The freckles are albedo: they must stay, not be smoothed away as shading.
    spot_contrast = truth[scene.spots].mean() - truth[seen & ~scene.spots].mean()
    found = estimate.albedo_srgb[scene.spots].mean() - estimate.albedo_srgb[seen & ~scene.spots].mean()
    assert found < 0.7 * spot_contrast < 0.0


def test_removes_specular_highlight(scene, estimate):
    truth = linear_to_srgb(scene.albedo)
    photo_error = np.abs(linear_to_srgb(np.clip(scene.obs.color, 0, 1)) - truth).mean(-1)
    error = np.abs(estimate.albedo_srgb - truth).mean(-1)
    assert photo_error[scene.specular].mean() > 0.1  # the highlight is strong in the photo
    assert error[scene.specular].mean() < 0.03
    assert estimate.confidence[scene.specular].mean() < estimate.confidence[scene.obs.seen].mean()


def test_fills_unseen_side_from_mirror(scene, estimate):
    filled = _mirror_filled(scene.obs)
    assert filled.sum() > 0.1 * scene.obs.coverage.sum()
    truth = linear_to_srgb(scene.albedo)
    assert np.abs(estimate.albedo_srgb - truth).mean(-1)[filled].mean() < 0.03
    seen_well = scene.obs.visibility > 0.3
    assert estimate.confidence[filled].max() < estimate.confidence[seen_well].mean()
    assert estimate.confidence[filled].min() > 0.0


def test_no_seam_at_the_confidence_border(scene, estimate):
    # Neighbouring texels differ no more across the seen / filled border than the truth does
    # (away from the freckles and their mirror copies, which have edges of their own).
    albedo, truth = estimate.albedo_srgb, linear_to_srgb(scene.albedo)
    spots = ndimage.binary_dilation(scene.spots | scene.spots[:, ::-1], iterations=3)
    calm = scene.obs.coverage & ~spots
    pairs = calm[:, 1:] & calm[:, :-1]
    step = np.abs(np.diff(albedo, axis=1)).max(-1)[pairs]
    true_step = np.abs(np.diff(truth, axis=1)).max(-1)[pairs]
    assert step.max() < true_step.max() + 0.01


def test_fills_without_mirror_toward_skin_tone(scene):
    no_mirror = dataclasses.replace(scene.obs, mirror=np.full_like(scene.obs.mirror, -1))
    albedo, confidence = estimate_albedo(no_mirror, scene.sh, scene.detail_normal)
    unseen = scene.obs.coverage & ~scene.obs.seen
    truth = linear_to_srgb(scene.albedo)
    assert np.isfinite(albedo).all()
    assert np.abs(albedo - truth).mean(-1)[unseen].mean() < 0.05
    assert confidence[unseen].max() < 0.2 * confidence[scene.obs.visibility > 0.3].mean()


def test_light_colour_is_held_to_what_well_seen_skin_shows():
    """Where the SH light is extrapolated (texels the photo barely sees) a channel may fall
    near zero; the de-lighting keeps each texel's light colour within the range it has on
    well-seen skin, so the albedo there does not turn violet."""
    from engine.levels.albedo import _plausible_colour

    shading = np.full((4, 4, 3), 0.8, np.float32)
    shading[..., 0] *= np.linspace(0.95, 1.05, 16).reshape(4, 4)    # mild warm/cool variation
    shading[3, 3] = (0.9, 0.05, 0.9)                                  # extrapolated: no green
    seen = np.ones((4, 4), bool)
    seen[3, 3] = False
    held = _plausible_colour(shading, seen)
    ratio = held[3, 3] / held[3, 3].mean()
    assert ratio.min() > 0.9 and ratio.max() < 1.1                    # grey-ish again
    np.testing.assert_allclose(held[3, 3].mean(), shading[3, 3].mean(), rtol=1e-5)  # brightness kept
    np.testing.assert_allclose(held[seen], shading[seen], rtol=0.02)  # well-seen texels barely move
