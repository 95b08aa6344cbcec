"""Benchmark metrics: per-region surface error, detail score, albedo error.

Inputs are numpy arrays in metres (geometry) and sRGB [0, 1] (colour); outputs are plain
floats: millimetres, a correlation in [-1, 1], 8-bit colour levels. Every mean over scan points
can be weighted by the surface area each point stands for (the scan's vertices are far denser
around the nose and lips than on the cheeks, so unweighted means would mostly score those).
"""
from __future__ import annotations

from typing import Mapping, Optional

import numpy as np
import scipy.sparse as sp
from scipy.spatial import cKDTree

from engine.levels.albedo import linear_to_srgb, srgb_to_linear

from .align import Surface

#: Detail band compared by :func:`detail_score`: Gaussian difference between these blurs
#: (metres on the surface): wrinkles and folds, coarser than pores, finer than the mid level.
DETAIL_BAND_M = (0.001, 0.005)


def surface_distances(points: np.ndarray, surface: Surface) -> np.ndarray:
    """``[N]`` float64: distance (metres) from each point ``[N, 3]`` to the closest surface point."""
    return surface.closest(points).distances


def _weights(weights: Optional[np.ndarray], n: int) -> np.ndarray:
    w = np.ones(n) if weights is None else np.asarray(weights, np.float64)
    if w.shape != (n,) or (w < 0).any():
        raise ValueError(f"weights must be [N={n}] and non-negative, got shape {w.shape}.")
    return w


def region_errors(distances: np.ndarray, masks: Mapping[str, np.ndarray],
                  weights: Optional[np.ndarray] = None) -> dict[str, float]:
    """Mean distance in millimetres per region, plus "all" over the union of the regions.

    Args:
        distances: ``[N]`` metres, one per scan point.
        masks: region name -> ``[N]`` bool over the same points.
        weights: ``[N]`` surface area per point (any unit), or None for a plain mean.
    Raises:
        ValueError: a region selects no point (its mean would be meaningless).
    """
    w = _weights(weights, len(distances))
    out = {}
    union = np.zeros(len(distances), bool)
    for name, mask in masks.items():
        mask = np.asarray(mask, bool)
        if mask.shape != distances.shape:
            raise ValueError(f"Region '{name}' mask has shape {mask.shape}, expected {distances.shape}.")
        if not mask.any():
            raise ValueError(f"Region '{name}' selects no scan point; check the region definition "
                             "or the visibility of that region in this view.")
        out[name] = float(np.average(distances[mask], weights=w[mask]) * 1000.0)
        union |= mask
    out["all"] = float(np.average(distances[union], weights=w[union]) * 1000.0)
    return out


class SurfaceBandPass:
    """Band-pass of scalar fields sampled at points of a surface, filtered on the surface itself.

    The field is smoothed twice, at the scales ``band_m`` (metres), and the two are
    subtracted: ``smooth(fine) - smooth(coarse)``. Each smoothing is a locally linear fit,
    weighted by a Gaussian of the 3D distance between points and by each point's area: a
    plain Gaussian average would be biased wherever its window is cut by the edge of the
    point set and the field slopes (the scan's displacement has smooth content), while a
    local linear fit reproduces any linear trend, edges included. Both the scan's displacement
    and a reconstruction's (read at the corresponding points) pass through the same filter,
    so the band compared is the same in millimetres on the face whatever each UV layout's
    distortion.

    Args:
        points: ``[N, 3]`` metres, spaced well below ``band_m[0]``.
        areas: ``[N]`` surface area each point stands for (any unit).
        band_m: (fine, coarse) Gaussian sigmas, metres.
    """

    def __init__(self, points: np.ndarray, areas: np.ndarray,
                 band_m: tuple[float, float] = DETAIL_BAND_M):
        self.points = np.asarray(points, np.float64)
        self.band_m = band_m
        areas = _weights(areas, len(self.points))
        self._smooths = [_LocalLinear(self.points, areas, s) for s in band_m]

    def __call__(self, values: np.ndarray) -> np.ndarray:
        """``[N]`` or ``[N, K]`` values at the points -> the band-passed values, same shape."""
        v = np.asarray(values, np.float64)
        return self._smooths[0](v) - self._smooths[1](v)


class _LocalLinear:
    """Gaussian-weighted locally linear smoothing of values at ``points [N, 3]`` (see
    :class:`SurfaceBandPass`). The values are first averaged (area-weighted) into cubic cells
    of a quarter sigma, which changes the result negligibly and keeps the number of weights
    per point bounded (~2000) whatever the points' density."""

    def __init__(self, pts: np.ndarray, areas: np.ndarray, sigma: float):
        cell = np.floor((pts - pts.min(0)) / (0.25 * sigma)).astype(np.int64)
        _, which = np.unique(cell, axis=0, return_inverse=True)
        which = which.ravel()
        cell_area = np.bincount(which, weights=areas)
        self._pool = sp.csr_matrix((areas / cell_area[which], (which, np.arange(len(pts)))),
                                   shape=(len(cell_area), len(pts)))   # [M, N] cell means
        src = self._pool @ pts
        pairs = cKDTree(pts).sparse_distance_matrix(cKDTree(src), 3.0 * sigma, output_type="coo_matrix")
        # sparse_distance_matrix drops zero distances: a point at its cell's mean is re-added.
        exact = np.flatnonzero(np.all(pts == src[which], axis=1))
        rows = np.concatenate([pairs.row, exact])
        cols = np.concatenate([pairs.col, which[exact]])
        dist = np.concatenate([pairs.data, np.zeros(len(exact))])
        w = sp.csr_matrix((np.exp(-0.5 * (dist / sigma) ** 2) * cell_area[cols], (rows, cols)),
                          shape=(len(pts), len(src)))
        s0 = np.asarray(w.sum(1)).ravel()
        wp = w @ src                                                  # [N, 3]
        s2 = np.empty((len(pts), 3, 3))
        for a in range(3):
            for b in range(a, 3):
                wab = w @ (src[:, a] * src[:, b])
                s2[:, a, b] = s2[:, b, a] = (wab - pts[:, a] * wp[:, b] - pts[:, b] * wp[:, a]
                                             + pts[:, a] * pts[:, b] * s0)
        s1 = wp - pts * s0[:, None]                                   # sum w (p_j - p_i)
        moments = np.zeros((len(pts), 4, 4))
        moments[:, 0, 0], moments[:, 0, 1:], moments[:, 1:, 0], moments[:, 1:, 1:] = s0, s1, s1, s2
        # A small ridge keeps the slope along the surface normal (no spread there) bounded.
        moments[:, 1:, 1:] += 1e-3 * sigma ** 2 * s0[:, None, None] * np.eye(3)
        self._w, self._src, self._pts = w, src, pts
        self._coef = np.linalg.inv(moments)[:, 0, :]                 # [N, 4]

    def __call__(self, v: np.ndarray) -> np.ndarray:
        """The fitted value at each point: ``coef . [sum w v, sum w (p_j - p_i) v]``."""
        pooled = self._pool @ v
        col = (slice(None), None) if v.ndim == 2 else (slice(None),)
        wv = self._w @ pooled
        out = self._coef[:, 0][col] * wv
        for a in range(3):
            out = out + self._coef[:, a + 1][col] * (self._w @ (self._src[:, a][col] * pooled)
                                                     - self._pts[:, a][col] * wv)
        return out




def detail_score(truth: np.ndarray, recovered: np.ndarray,
                 weights: Optional[np.ndarray] = None) -> float:
    """Pearson correlation (weighted by ``weights [N]``, e.g. point areas) of the scan's
    band-passed displacement and the reconstruction's, sampled at corresponding points ``[N]``:
    1 = the same detail, 0 = unrelated, < 0 = inverted.

    Raises:
        ValueError: fewer than 10 points, or one side has no variation (score undefined).
    """
    t, r = np.asarray(truth, np.float64), np.asarray(recovered, np.float64)
    if t.shape != r.shape or t.ndim != 1 or t.size < 10:
        raise ValueError(f"detail_score needs two equal [N>=10] arrays, got {t.shape} and {r.shape}.")
    w = _weights(weights, len(t))
    t, r = t - np.average(t, weights=w), r - np.average(r, weights=w)
    den = np.sqrt((w * t * t).sum() * (w * r * r).sum())
    if den <= 1e-30 * max(w.sum(), 1e-30):
        raise ValueError("detail_score: one of the detail signals is constant; no detail to compare.")
    return float((w * t * r).sum() / den)


def detail_noise_floor(truth: np.ndarray, band_pass: SurfaceBandPass,
                       weights: Optional[np.ndarray] = None, subset: Optional[np.ndarray] = None,
                       trials: int = 64, seed: int = 0) -> float:
    """95th percentile of ``|detail_score|`` of random displacement (white noise at the filter's
    points through the same ``band_pass``, kept on the ``subset [N_filter]`` bool of scored
    points when given) against ``truth [N]``: scores below it are not distinguishable from
    chance. Band-passed fields vary smoothly, so the floor is far above ``1/sqrt(N)``."""
    noise = band_pass(np.random.default_rng(seed).normal(size=(len(band_pass.points), trials)))
    if subset is not None:
        noise = noise[np.asarray(subset, bool)]
    scores = [abs(detail_score(truth, noise[:, k], weights)) for k in range(trials)]
    return float(np.quantile(scores, 0.95))


def albedo_error(truth: np.ndarray, recovered: np.ndarray,
                 weights: Optional[np.ndarray] = None) -> tuple[float, np.ndarray]:
    """Mean absolute colour error in 8-bit sRGB levels after removing a global per-channel gain.

    The gain is an unknown light intensity and colour, so it is fitted (least squares) and
    applied in linear light; the error is measured on the sRGB-encoded result, clipped to [0, 1].

    Args:
        truth, recovered: ``[N, 3]`` sRGB in [0, 1] at corresponding points.
        weights: ``[N]`` surface area per point, or None for a plain mean.
    Returns:
        (error, gain ``[3]``): the gain applied to ``recovered`` in linear light.
    """
    t, r = np.asarray(truth, np.float64), np.asarray(recovered, np.float64)
    if t.shape != r.shape or t.ndim != 2 or t.shape[1] != 3 or len(t) == 0:
        raise ValueError(f"albedo_error needs two equal [N>0, 3] arrays, got {t.shape} and {r.shape}.")
    w = _weights(weights, len(t))[:, None]
    tl, rl = srgb_to_linear(t).astype(np.float64), srgb_to_linear(r).astype(np.float64)
    gain = (w * tl * rl).sum(0) / np.maximum((w * rl * rl).sum(0), 1e-12)
    fitted = linear_to_srgb(np.clip(rl * gain, 0.0, 1.0)).astype(np.float64)
    return float(np.average(np.abs(t - fitted).mean(1), weights=w[:, 0]) * 255.0), gain
