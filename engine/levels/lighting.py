"""Second-order SH lighting and a base skin albedo from the coarse fit.

The photo colour of a visible skin point is modelled as ``albedo * irradiance(normal, sh)``
in linear RGB. With one albedo per channel this is linear in ``albedo_c * sh[:, c]``, solved
by robust (iteratively reweighted) least squares over visible face vertices. The
albedo/light intensity ambiguity is settled the way HRN's lighting prior leans: the light is
taken to be white (equal DC term in R, G, B) with mean irradiance 1 over the face, so the
colour of the skin goes into the albedo, not the light.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..geometry.sh import sh_basis


@dataclass(frozen=True)
class LightingFit:
    """Attributes:
        sh: ``[9, 3]`` float32 SH coefficients (camera space normals, linear RGB).
        base_albedo: ``[3]`` float32 linear RGB albedo of the skin.
        residual_rms: RMS colour residual of the fit (linear RGB units).
    """

    sh: np.ndarray
    base_albedo: np.ndarray
    residual_rms: float


def fit_lighting(normals_cam: np.ndarray, colors_linear: np.ndarray, weights: np.ndarray,
                 ridge: float = 1e-2, iterations: int = 4) -> LightingFit:
    """Fit SH lighting and a constant albedo to samples of a lit surface.

    Args:
        normals_cam: ``[N, 3]`` unit normals in camera space.
        colors_linear: ``[N, 3]`` observed linear RGB colours.
        weights: ``[N]`` sample weights (0 = ignore), e.g. visibility times skin likelihood.
        ridge: Tikhonov weight on the order-1 and order-2 coefficients (relative to the data).
        iterations: reweighting rounds of the robust (Cauchy-like) fit.
    """
    basis = sh_basis(np.asarray(normals_cam, np.float64))          # [N, 9]
    col = np.asarray(colors_linear, np.float64)
    w = np.asarray(weights, np.float64).copy()
    if (w > 0).sum() < 20:
        raise ValueError("fit_lighting: fewer than 20 usable samples")
    reg = np.diag([0.0] + [ridge] * 8)
    prod = np.zeros((9, 3))
    for _ in range(iterations):
        sw = w / w.sum()
        lhs = basis.T @ (basis * sw[:, None]) + reg
        prod = np.linalg.solve(lhs, basis.T @ (col * sw[:, None]))   # albedo_c * sh_c
        res = np.linalg.norm(basis @ prod - col, axis=1)
        scale = np.median(res[w > 0]) * 2.0 + 1e-6
        w = np.asarray(weights, np.float64) / (1.0 + (res / scale) ** 2)
    # White light: equal DC across channels; mean irradiance over the samples = 1.
    albedo = prod[0] / prod[0].mean()
    sh = prod / albedo[None, :]
    sw = np.asarray(weights, np.float64)
    mean_irr = float(((basis @ sh).mean(1) * sw).sum() / sw.sum())
    sh, albedo = sh / mean_irr, albedo * mean_irr
    res = np.linalg.norm(basis @ prod - col, axis=1)
    rms = float(np.sqrt((res ** 2 * sw).sum() / sw.sum()))
    return LightingFit(sh=sh.astype(np.float32), base_albedo=albedo.astype(np.float32), residual_rms=rms)


def shading_free_albedo(albedo: np.ndarray, skin: np.ndarray,
                        feature_ratio: tuple[float, float] = (0.6, 1.6)) -> np.ndarray:
    """Per-vertex albedo ``[V, 3]`` with the luminance of the skin made constant.

    The light is white, so shading changes a skin point's brightness, not its chromaticity.
    A de-lit albedo taken from the photo through the coarse head still holds the shading of
    every shape the coarse head lacks; analysis-by-synthesis against it could not see those
    shapes. Here skin vertices (``skin [V]`` bool) keep their chromaticity (redness, tan) and
    take the median skin luminance, so brightness variations are left to geometry. Vertices
    far darker or brighter than the skin (ratio to the median outside ``feature_ratio``:
    brows, moles, stubble) are colour features and keep their albedo.
    """
    albedo = np.asarray(albedo, np.float32)
    luminance = albedo.mean(1, keepdims=True)
    median = float(np.median(luminance[skin]))
    ratio = luminance[:, 0] / max(median, 1e-6)
    flat = skin & (ratio > feature_ratio[0]) & (ratio < feature_ratio[1])
    return np.where(flat[:, None], albedo / np.maximum(luminance, 1e-6) * median, albedo).astype(np.float32)
