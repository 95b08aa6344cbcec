"""High-frequency detail: a displacement map fitted to the photo's fine shading.

The mid-level head explains the photo's shape down to a few millimetres. What is left of the
shading (wrinkles, pores, creases) is explained here by a scalar displacement ``d`` along the
smooth normal, per UV texel: the displaced surface ``P' = P + d n`` has the detail normal
``n'`` and is lit as ``albedo * irradiance(n', sh)``. The albedo used is a low-pass of the
de-lit photo, so fine shading must come from geometry, not colour; fine *colour* changes
(freckles, redness, specular highlights) differ between the RGB channels, which shading of
near-white light does not, and are weighted out of the fit.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch
from scipy import ndimage

from ..errors import Cancelled
from ..geometry.sh import irradiance
from ..progress import ProgressCallback, Stage
from ..uv.observation import UVObservation, masked_lowpass

#: Standard deviation (metres on the surface) of the low-pass that splits detail from the
#: mid level: the displacement holds no content smoother than this, the smooth albedo none finer.
BAND_SIGMA_M = 0.003

#: Scale of the per-channel differences of the de-lit log ratio above which a texel's fine
#: contrast is read as colour (freckle, redness, highlight) rather than shading.
CHROMA_SIGMA = 0.06

#: Margin (metres) around coloured texels also left out of the displacement fit.
OUTLIER_MARGIN_M = 0.0025


def colour_contrast(log_ratio: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """How coloured a fine change is: ``[H, W]`` length of the part of a per-channel log
    ratio ``[H, W, 3]`` (photo over a smooth prediction) that differs between channels.

    Shading under near-white light scales all channels alike (contrast ~ 0); albedo changes
    and highlights do not. Photo noise is coloured too, so the ratio is first averaged over
    each texel's neighbours (Gaussian, 1 texel), counting each by ``weight [H, W]``.
    """
    ratio = torch.from_numpy(np.ascontiguousarray(log_ratio.transpose(2, 0, 1), np.float32))
    smooth, _ = masked_lowpass(ratio, torch.from_numpy(np.asarray(weight, np.float32)), 1.0)
    smooth = smooth.numpy()
    return np.linalg.norm(smooth - smooth.mean(0, keepdims=True), axis=0)


def detail_normals(obs: UVObservation, displacement: np.ndarray) -> np.ndarray:
    """Unit normals ``[H, W, 3]`` float32 (camera space) of the surface ``P + d n``.

    Args:
        obs: the smooth surface (normal and UV tangents) on the map.
        displacement: ``[H, W]`` metres along the normal, + outward.
    Returns:
        ``obs.normal`` where d is flat; zero vectors where ``obs.normal`` is zero.
    """
    frame = _DetailFrame(*(torch.from_numpy(a) for a in (obs.normal, obs.tangent_u, obs.tangent_v)))
    with torch.no_grad():
        return frame.normals(torch.from_numpy(np.asarray(displacement, np.float32))).numpy()


class _DetailFrame:
    """Precomputed per-texel terms of the detail normal, so each fit step is cheap.

    Args: the smooth surface's ``normal``, ``tangent_u``, ``tangent_v``, ``[H, W, 3]`` tensors.

    With t_u' = t_u + d_u n and t_v' = t_v + d_v n,
    t_u' x t_v' = t_u x t_v + d_u (n x t_v) + d_v (t_u x n). Dividing by |t_u x t_v| and
    using the smooth normal n in place of the normalised t_u x t_v (equal up to the
    rasterizer's interpolation of normals) gives n' ~ n + d_u a + d_v b, which is exactly n
    when d is flat. d_u, d_v are central differences, per unit of U and V (rows run down V).
    """

    def __init__(self, n: torch.Tensor, tu: torch.Tensor, tv: torch.Tensor) -> None:
        h, w = n.shape[:2]
        cross = torch.linalg.cross(tu, tv)
        area = cross.norm(dim=-1, keepdim=True)
        orient = torch.sign((cross * n).sum(-1, keepdim=True))
        scale = torch.where(area > 1e-12, orient / area.clamp_min(1e-12), torch.zeros_like(area))
        self.normal = n
        # Per-texel finite differences: du = W * (d[j+1] - d[j-1]) / 2, dv = -H * (d[i+1] - d[i-1]) / 2.
        self.a = torch.linalg.cross(n, tv) * scale * (0.5 * w)
        self.b = torch.linalg.cross(tu, n) * scale * (-0.5 * h)

    def normals(self, d: torch.Tensor) -> torch.Tensor:
        """Detail normals ``[H, W, 3]`` for displacement ``d [H, W]`` (metres)."""
        padded = torch.nn.functional.pad(d[None, None], (1, 1, 1, 1), mode="replicate")[0, 0]
        diff_u = padded[1:-1, 2:] - padded[1:-1, :-2]
        diff_v = padded[2:, 1:-1] - padded[:-2, 1:-1]
        return self.combine(self.normal, self.a, self.b, diff_u, diff_v)

    @staticmethod
    def combine(normal: torch.Tensor, a: torch.Tensor, b: torch.Tensor, diff_u: torch.Tensor,
                diff_v: torch.Tensor) -> torch.Tensor:
        """Unit ``n + diff_u a + diff_v b`` ``[..., 3]`` from the frame terms ``[..., 3]`` and
        the central differences of d ``[...]`` (metres) along U and V."""
        raw = normal + diff_u[..., None] * a + diff_v[..., None] * b
        return raw / raw.norm(dim=-1, keepdim=True).clamp_min(1e-8)


def lowpass_albedo(obs: UVObservation, sh: np.ndarray, *, band_sigma_m: float = BAND_SIGMA_M) -> np.ndarray:
    """Smooth linear albedo ``[H, W, 3]`` float32: the de-lit photo, low-passed.

    The photo is divided by the irradiance of the smooth normals and low-passed over seen
    texels with the visibility as weight; a second pass leaves out texels whose ratio to the
    first pass is an outlier (highlights, deep shadows, strong spots) so they do not bias it.
    """
    sigma = band_sigma_m / obs.texel_size_m()
    shading = np.maximum(irradiance(obs.normal, sh), 1e-3)
    delit = torch.from_numpy(np.ascontiguousarray((obs.color / shading).transpose(2, 0, 1)))
    weight = torch.from_numpy(obs.visibility * obs.coverage)
    first, _ = masked_lowpass(delit, weight, sigma)
    ratio = np.log((delit.numpy() + 1e-4) / (first.numpy() + 1e-4)).transpose(1, 2, 0)
    inlier = (np.abs(ratio.mean(-1)) < np.log(1.5)) & (colour_contrast(ratio, weight.numpy()) < 3.0 * CHROMA_SIGMA)
    second, density = masked_lowpass(delit, weight * torch.from_numpy(inlier.astype(np.float32)), sigma)
    smooth = torch.where(density > 1e-3, second, first)
    return np.ascontiguousarray(smooth.numpy().transpose(1, 2, 0), dtype=np.float32)


def shading_error(obs: UVObservation, sh: np.ndarray, albedo_linear_smooth: np.ndarray,
                  normal: Optional[np.ndarray] = None) -> float:
    """Mean colour error (linear RGB) of the photo against ``albedo * irradiance(normal, sh)``
    over the seen skin texels (weighted by visibility), with the smooth (mid-level) normals,
    or with ``normal [H, W, 3]`` when given (e.g. :func:`detail_normals` of the displacement):
    how much of the photo's shading a level explains, in UV space."""
    normal = obs.normal if normal is None else normal
    diff = obs.color - albedo_linear_smooth * irradiance(normal, sh)
    weight = obs.visibility * obs.seen
    return float((np.linalg.norm(diff, axis=-1) * weight).sum() / max(weight.sum(), 1e-6))


def fit_displacement(
    obs: UVObservation,
    sh: np.ndarray,
    albedo_linear_smooth: Optional[np.ndarray] = None,
    *,
    iterations: int = 40,
    strength_prior: float = 0.02,
    smoothness_prior: float = 0.1,
    band_sigma_m: float = BAND_SIGMA_M,
    progress: Optional[ProgressCallback] = None,
) -> np.ndarray:
    """Fit a displacement map to the fine shading of the photo.

    Minimises, over visible texels, a robust (Charbonnier) relative photometric error
    between the photo and ``albedo * irradiance(detail normal of d, sh)``, plus a soft-L1
    magnitude prior and a squared-slope (smoothness) prior, by L-BFGS on CPU, coarse to
    fine: maps of 384 texels or more are first fitted at half resolution (a better start,
    as the fine level alone converges slowly). Texels whose fine contrast is coloured rather
    than grey (freckles, highlights, see :func:`colour_contrast`) are weighted out, so the
    map holds relief and not colour. The result is band-limited (its own low-pass over
    visible texels is subtracted, as the mid level owns that band) and 0 where unseen.

    Args:
        obs: the UV observation of the photo.
        sh: ``[9, 3]`` SH lighting (camera space, engine.geometry.sh convention).
        albedo_linear_smooth: ``[H, W, 3]`` linear albedo without fine detail; default
            :func:`lowpass_albedo`.
        iterations: L-BFGS iterations at the coarsest level; finer levels get half.
        strength_prior: weight of the magnitude prior (per millimetre of |d|).
        smoothness_prior: weight of the squared-slope prior (mm of d per mm of surface).
        band_sigma_m: the detail / mid-level split, metres (see BAND_SIGMA_M).
        progress: ``(stage, fraction)`` callback, checked every few steps; returning False
            raises :class:`engine.errors.Cancelled`.
    Returns:
        ``[H, W]`` float32 displacement, metres, + outward along ``obs.normal``; 0 where
        ``obs.visibility`` is 0 or outside the layout.
    """
    _report(progress, 0.0)
    if albedo_linear_smooth is None:
        albedo_linear_smooth = lowpass_albedo(obs, sh, band_sigma_m=band_sigma_m)
    levels = [_FitLevel.from_observation(obs, albedo_linear_smooth, sh)]
    while min(levels[-1].visible.shape) >= 2 * _COARSEST_SIZE and band_sigma_m / levels[-1].texel_m >= 2 * _COARSEST_SIGMA:
        levels.append(levels[-1].downsampled())
    levels.reverse()
    budgets = [iterations] + [max(iterations // 2, 1)] * (len(levels) - 1)
    costs = np.array([b * lv.visible.numel() for b, lv in zip(budgets, levels)], np.float64)
    starts = np.concatenate([[0.0], np.cumsum(costs)]) / costs.sum()
    sh_t = torch.from_numpy(np.asarray(sh, np.float32))
    d_mm = torch.zeros(levels[0].visible.shape)
    for index, (level, budget) in enumerate(zip(levels, budgets)):
        if index > 0:
            d_mm = torch.nn.functional.interpolate(d_mm[None, None], size=level.visible.shape, mode="bilinear",
                                                   align_corners=False)[0, 0]

        def report(fraction: float, index: int = index) -> None:
            _report(progress, starts[index] + (starts[index + 1] - starts[index]) * fraction)

        d_mm = level.fit(d_mm, sh_t, budget, strength_prior, smoothness_prior, report)
    with torch.no_grad():  # the mid level owns the low band; unseen texels stay 0
        lowpass, _ = masked_lowpass(d_mm[None], levels[-1].visible, band_sigma_m / levels[-1].texel_m)
        d = (d_mm - lowpass[0]) * levels[-1].visible * 1e-3
    _report(progress, 1.0)
    return np.ascontiguousarray(d.numpy(), dtype=np.float32)


#: Coarse-to-fine stops above this map size (texels) ...
_COARSEST_SIZE = 192
#: ... or when the band split would span fewer texels than this at the next level down.
_COARSEST_SIGMA = 1.5


@dataclass
class _FitLevel:
    """The displacement fit's inputs at one resolution (tensors ``[H, W, ...]``)."""

    color: torch.Tensor  # photo, linear RGB
    albedo: torch.Tensor  # smooth linear albedo
    normal: torch.Tensor
    tangent_u: torch.Tensor
    tangent_v: torch.Tensor
    weight: torch.Tensor  # data weight, [H, W]
    visible: torch.Tensor  # 1 where the displacement is free, 0 where it is held at 0
    texel_m: float

    @classmethod
    def from_observation(cls, obs: UVObservation, albedo: np.ndarray, sh: np.ndarray) -> "_FitLevel":
        base = np.asarray(albedo, np.float32) * np.maximum(irradiance(obs.normal, sh), 0.0)
        t = torch.from_numpy
        return cls(
            color=t(obs.color), albedo=t(np.asarray(albedo, np.float32)), normal=t(obs.normal),
            tangent_u=t(obs.tangent_u), tangent_v=t(obs.tangent_v),
            weight=t(_data_weight(obs, base)), visible=t(obs.seen.astype(np.float32)),
            texel_m=obs.texel_size_m(),
        )

    def downsampled(self) -> "_FitLevel":
        """The same problem at half resolution (2x2 texel averages; visible only where all 4 are)."""

        def pool(a: torch.Tensor) -> torch.Tensor:
            moved = a.permute(2, 0, 1) if a.dim() == 3 else a[None]
            pooled = torch.nn.functional.avg_pool2d(moved[None], 2)[0]
            return pooled.permute(1, 2, 0) if a.dim() == 3 else pooled[0]

        visible = (pool(self.visible) > 0.999).float()
        normal = pool(self.normal)
        return _FitLevel(
            color=pool(self.color), albedo=pool(self.albedo),
            normal=normal / normal.norm(dim=-1, keepdim=True).clamp_min(1e-8),
            tangent_u=pool(self.tangent_u), tangent_v=pool(self.tangent_v),
            weight=pool(self.weight) * visible, visible=visible, texel_m=2.0 * self.texel_m,
        )

    def fit(self, d_mm: torch.Tensor, sh: torch.Tensor, iterations: int, strength_prior: float,
            smoothness_prior: float, report: Callable[[float], None]) -> torch.Tensor:
        """Refine ``d_mm`` ``[H, W]`` (millimetres) by L-BFGS; returns the new map, detached.

        Only visible texels are free and only they carry data weight, so the fit runs on
        those texels alone (a packed list, often under half the map): neighbours that are
        not visible read as 0, exactly as in the full map, so the loss is the same.
        """
        h, w = self.visible.shape
        visible = self.visible.reshape(-1) > 0
        texel = visible.nonzero().squeeze(1)                                  # [K]
        if texel.numel() == 0:
            return torch.zeros_like(d_mm)
        pick = lambda a: a.reshape(h * w, -1).index_select(0, texel)         # noqa: E731
        frame = _DetailFrame(self.normal, self.tangent_u, self.tangent_v)
        normal, frame_a, frame_b = pick(frame.normal), pick(frame.a), pick(frame.b)
        albedo, color = pick(self.albedo), pick(self.color)
        base = albedo * irradiance(normal, sh).clamp_min(0.0)
        # Relative error: fine shading changes brightness by a factor, in dark and bright skin alike.
        inv_scale = 1.0 / (base + 0.02)
        weight = pick(self.weight) / (3.0 * self.weight.sum().clamp_min(1e-6))
        count = self.visible.sum().clamp_min(1.0)
        texel_mm = self.texel_m * 1e3
        # Packed position of each texel (K = the zero slot for texels held at 0) and of the
        # four neighbours of each visible texel; map borders repeat the texel (replicate pad).
        slot = torch.full((h * w + 1,), texel.numel(), dtype=torch.long)
        slot[texel] = torch.arange(texel.numel())
        row, col = torch.div(texel, w, rounding_mode="floor"), texel % w
        left, right = row * w + (col - 1).clamp_min(0), row * w + (col + 1).clamp_max(w - 1)
        up, down = (row - 1).clamp_min(0) * w + col, (row + 1).clamp_max(h - 1) * w + col
        left, right, up, down = (slot[i] for i in (left, right, up, down))
        # Squared slopes: each visible texel's pair with its right / lower neighbour, plus
        # the pair with a left / upper neighbour held at 0 (those pairs have no visible owner).
        has_right, has_down = col < w - 1, row < h - 1
        lone_left = (col > 0) & (left == texel.numel())
        lone_up = (row > 0) & (up == texel.numel())
        free = pick(d_mm).squeeze(1).clone().requires_grad_(True)
        optimizer = torch.optim.LBFGS([free], lr=1.0, max_iter=iterations, history_size=10)
        evaluations = [0]

        def closure() -> torch.Tensor:
            if evaluations[0] % 4 == 0:
                report(min(evaluations[0] / (1.25 * iterations), 1.0))
            evaluations[0] += 1
            optimizer.zero_grad(set_to_none=True)
            d = torch.cat([free, free.new_zeros(1)])
            # index_select: its backward (index_add) is far faster than advanced indexing's.
            d_right, d_down = d.index_select(0, right), d.index_select(0, down)
            diff_u = (d_right - d.index_select(0, left)) * 1e-3
            diff_v = (d_down - d.index_select(0, up)) * 1e-3
            shaded = albedo * irradiance(_DetailFrame.combine(normal, frame_a, frame_b, diff_u, diff_v), sh)
            residual = (color - shaded) * inv_scale
            data = (weight * torch.sqrt(residual**2 + 0.03**2)).sum()
            magnitude = torch.sqrt(free**2 + 0.01**2).sum() / count
            slope_u = torch.where(has_right, free - d_right, 0.0) / texel_mm
            slope_v = torch.where(has_down, free - d_down, 0.0) / texel_mm
            lone = (lone_left.to(free.dtype) + lone_up.to(free.dtype)) * free**2 / texel_mm**2
            smooth = ((slope_u**2).sum() + (slope_v**2).sum() + lone.sum()) / count
            loss = data + strength_prior * magnitude + smoothness_prior * smooth
            loss.backward()
            return loss

        optimizer.step(closure)
        return d_mm.new_zeros(h * w).index_copy(0, texel, free.detach()).view(h, w)


def _data_weight(obs: UVObservation, base: np.ndarray) -> np.ndarray:
    """``[H, W]`` weight of each texel's photometric error: visibility, times a falloff on
    how coloured its fine contrast is (grey = shading, kept; coloured = albedo or highlight,
    dropped), spread to a margin around coloured texels, whose faint rims are still biased."""
    ratio = np.log((obs.color + 1e-3) / (np.maximum(base, 0.0) + 1e-3))
    colour_free = np.exp(-((colour_contrast(ratio, obs.seen) / CHROMA_SIGMA) ** 2))
    margin = 2 * int(round(OUTLIER_MARGIN_M / obs.texel_size_m())) + 1
    colour_free = ndimage.minimum_filter(colour_free, size=margin)
    return (obs.visibility * obs.seen * colour_free).astype(np.float32)


def _report(progress: Optional[ProgressCallback], fraction: float) -> None:
    if progress is not None and progress(Stage.FITTING_HIGH, fraction) is False:
        raise Cancelled(f"Cancelled during '{Stage.FITTING_HIGH}'.")
