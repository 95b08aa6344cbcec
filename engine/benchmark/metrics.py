"""Benchmark metrics: per-region surface error, detail score, albedo error.

Inputs are numpy arrays in metres (geometry) and sRGB [0, 1] (colour); outputs are plain
floats: millimetres, a correlation in [-1, 1], 8-bit colour levels.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
from scipy.ndimage import gaussian_filter

from .align import Surface

#: Detail band compared by :func:`detail_score`: Gaussian difference between these blurs
#: (metres on the surface): wrinkles and folds, coarser than pores, finer than the mid level.
DETAIL_BAND_M = (0.001, 0.005)


def surface_distances(points: np.ndarray, surface: Surface) -> np.ndarray:
    """``[N]`` float64: distance (metres) from each point ``[N, 3]`` to the closest surface point."""
    return surface.closest(points).distances


def region_errors(distances: np.ndarray, masks: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Mean distance in millimetres per region, plus "all" over the union of the regions.

    Args:
        distances: ``[N]`` metres, one per scan point.
        masks: region name -> ``[N]`` bool over the same points.
    Raises:
        ValueError: a region selects no point (its mean would be meaningless).
    """
    out = {}
    union = np.zeros(len(distances), bool)
    for name, mask in masks.items():
        mask = np.asarray(mask, bool)
        if mask.shape != distances.shape:
            raise ValueError(f"Region '{name}' mask has shape {mask.shape}, expected {distances.shape}.")
        if not mask.any():
            raise ValueError(f"Region '{name}' selects no scan point; check the region definition "
                             "or the visibility of that region in this view.")
        out[name] = float(distances[mask].mean() * 1000.0)
        union |= mask
    out["all"] = float(distances[union].mean() * 1000.0)
    return out


def texel_size(vertices: np.ndarray, triangles: np.ndarray, corner_uvs: np.ndarray,
               map_side: int) -> float:
    """Median surface length of one texel (metres) of a ``map_side``² map on a mesh:
    ``sqrt(3D area / UV area)`` per triangle; ``corner_uvs`` is ``[F, 3, 2]``."""
    v = np.asarray(vertices, np.float64)[triangles]
    area3 = 0.5 * np.linalg.norm(np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0]), axis=1)
    e1, e2 = corner_uvs[:, 1] - corner_uvs[:, 0], corner_uvs[:, 2] - corner_uvs[:, 0]
    area_uv = 0.5 * np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0])
    ok = area_uv > 1e-12
    return float(np.median(np.sqrt(area3[ok] / area_uv[ok])) / map_side)


def band_pass(height_map: np.ndarray, texel_m: float, band_m: tuple[float, float] = DETAIL_BAND_M
              ) -> np.ndarray:
    """Difference of Gaussians of a ``[H, W]`` height map: blur(lo) - blur(hi), with the band's
    sigmas in metres converted by ``texel_m`` (metres per texel)."""
    lo, hi = (s / texel_m for s in band_m)
    img = np.asarray(height_map, np.float64)
    return gaussian_filter(img, lo, mode="nearest") - gaussian_filter(img, hi, mode="nearest")


def detail_score(truth: np.ndarray, recovered: np.ndarray) -> float:
    """Pearson correlation of the scan's band-passed displacement and the reconstruction's,
    sampled at corresponding points ``[N]``: 1 = the same detail, 0 = unrelated, < 0 = inverted.

    Raises:
        ValueError: fewer than 10 points, or one side has no variation (score undefined).
    """
    t, r = np.asarray(truth, np.float64), np.asarray(recovered, np.float64)
    if t.shape != r.shape or t.size < 10:
        raise ValueError(f"detail_score needs two equal [N>=10] arrays, got {t.shape} and {r.shape}.")
    t, r = t - t.mean(), r - r.mean()
    den = np.sqrt((t * t).sum() * (r * r).sum())
    if den <= 0:
        raise ValueError("detail_score: one of the detail signals is constant; no detail to compare.")
    return float((t * r).sum() / den)


def albedo_error(truth: np.ndarray, recovered: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean absolute colour error in 8-bit levels after removing a global per-channel gain.

    Args:
        truth, recovered: ``[N, 3]`` sRGB in [0, 1] at corresponding points.
    Returns:
        (error, gain ``[3]``): the least-squares gain applied to ``recovered``.
    """
    t, r = np.asarray(truth, np.float64), np.asarray(recovered, np.float64)
    if t.shape != r.shape or t.ndim != 2 or t.shape[1] != 3 or len(t) == 0:
        raise ValueError(f"albedo_error needs two equal [N>0, 3] arrays, got {t.shape} and {r.shape}.")
    gain = (t * r).sum(0) / np.maximum((r * r).sum(0), 1e-12)
    return float(np.abs(t - r * gain).mean() * 255.0), gain
