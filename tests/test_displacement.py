"""Displacement fitting on synthetic UV-space data with known relief (tests/uv_scene.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.errors import Cancelled
from engine.levels.high import BAND_SIGMA_M, detail_normals, fit_displacement
from engine.uv.observation import masked_lowpass
from uv_scene import make_scene


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    # The fit is many small element-wise ops; on a shared, busy CPU torch's thread pool
    # spends more time waiting than working, so the tests pin one thread (and restore it).
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def scene():
    return make_scene(256)


@pytest.fixture(scope="module")
def fitted(scene):
    return fit_displacement(scene.obs, scene.sh)


def _high_pass(scene) -> np.ndarray:
    seen = torch.from_numpy(scene.obs.seen.astype(np.float32))
    low, _ = masked_lowpass(torch.from_numpy(scene.displacement)[None], seen, BAND_SIGMA_M / scene.obs.texel_size_m())
    return scene.displacement - low[0].numpy()


def test_detail_normals_match_the_displaced_surface(scene):
    seen = scene.obs.seen
    normals = detail_normals(scene.obs, scene.displacement)
    angle = np.degrees(np.arccos(np.clip((normals * scene.detail_normal).sum(-1), -1.0, 1.0)))
    tilt = np.degrees(np.arccos(np.clip((scene.obs.normal * scene.detail_normal).sum(-1), -1.0, 1.0)))
    assert tilt[seen].max() > 3.0  # the relief does tilt the normals
    assert np.percentile(angle[seen], 99) < 0.2
    flat = detail_normals(scene.obs, np.zeros(scene.obs.size, np.float32))
    np.testing.assert_allclose(flat, scene.obs.normal, atol=1e-6)


def test_recovers_wrinkles_and_pores(scene, fitted):
    seen = scene.obs.seen
    assert fitted.shape == scene.obs.size and fitted.dtype == np.float32
    assert np.isfinite(fitted).all()
    truth = _high_pass(scene)
    assert np.corrcoef(truth[seen], fitted[seen])[0, 1] > 0.6
    # Depth in the right range: not a scaled-down shadow of the truth, not exaggerated.
    assert 0.4 < fitted[seen].std() / truth[seen].std() < 1.5


def test_colour_spots_and_highlight_are_not_relief(scene, fitted):
    seen = scene.obs.seen
    spots = scene.spots[seen].astype(float)
    assert abs(np.corrcoef(spots, fitted[seen])[0, 1]) < 0.1
    assert abs(np.corrcoef(spots, np.abs(fitted[seen]))[0, 1]) < 0.1  # no rings around them either
    deepest = np.abs(scene.displacement).max()
    assert np.abs(fitted[scene.spots]).max() < 0.3 * deepest
    assert np.abs(fitted[scene.specular]).max() < 0.3 * deepest


def test_band_limited_and_zero_where_unseen(scene, fitted):
    seen = scene.obs.seen
    assert np.all(fitted[~seen] == 0.0)
    # Content smoother than the band split belongs to the mid level: twice the split's
    # low-pass keeps a third of the true relief but almost nothing of the fitted one.
    sigma = 2.0 * BAND_SIGMA_M / scene.obs.texel_size_m()
    weight = torch.from_numpy(seen.astype(np.float32))

    def smooth_share(relief: np.ndarray) -> float:
        low, _ = masked_lowpass(torch.from_numpy(relief)[None], weight, sigma)
        return low[0].numpy()[seen].std() / relief[seen].std()

    assert smooth_share(scene.displacement) > 0.3
    assert smooth_share(fitted) < 0.05


def test_deterministic():
    small = make_scene(128)
    first = fit_displacement(small.obs, small.sh, iterations=10)
    second = fit_displacement(small.obs, small.sh, iterations=10)
    np.testing.assert_array_equal(first, second)


def test_progress_reports_and_cancels():
    small = make_scene(128)
    seen = []
    fit_displacement(small.obs, small.sh, iterations=10, progress=lambda stage, f: seen.append((stage, f)))
    fractions = [f for _, f in seen]
    assert fractions[0] == 0.0 and fractions[-1] == 1.0
    assert fractions == sorted(fractions) and len(fractions) > 3

    calls = []

    def stop_after_three(stage: str, fraction: float) -> bool:
        calls.append(fraction)
        return len(calls) < 3

    with pytest.raises(Cancelled):
        fit_displacement(small.obs, small.sh, iterations=20, progress=stop_after_three)
    assert len(calls) == 3
