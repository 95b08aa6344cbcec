"""De-lit, de-retouched albedo in UV space, with unseen texels filled.

The photo is divided by the irradiance of the (detail) normals, then split into a robust
local reference (block medians, a few millimetres wide) and per-texel detail relative to it.
Detail that is coloured (it changes the channels differently: freckles, moles, redness,
lips) is albedo and kept; detail that is grey (shading the geometry did not explain, cast
shadow edges, photo noise) is dropped; bright detail that washes colour out (specular
highlights) is dropped too. Texels the photo does not show are filled from their mirror
texel where that one was seen, then by pyramid (push-pull) inpainting that fades toward the
mean skin tone far from any observation. Every blend is weighted by a feathered visibility,
so the fill has no seam.
"""
from __future__ import annotations

import warnings
from typing import NamedTuple, Optional

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from ..geometry.sh import irradiance
from ..uv.observation import UVObservation, masked_lowpass
from .high import CHROMA_SIGMA, OUTLIER_MARGIN_M, colour_contrast

#: Visibility from which a texel's own observation is fully trusted; below it, it is blended
#: with the fill (grazing views are blurred and badly de-lit).
FULL_TRUST_VISIBILITY = 0.3

#: Confidence given to mirror fills (times the mirror texel's visibility) and to pyramid
#: fills next to observed skin (fading with distance).
MIRROR_CONFIDENCE = 0.5
INPAINT_CONFIDENCE = 0.1


class AlbedoEstimate(NamedTuple):
    """Result of :func:`estimate_albedo`; unpacks as ``(albedo_srgb, confidence)``.

    Attributes:
        albedo_srgb: ``[H, W, 3]`` float32 in [0, 1], sRGB-encoded albedo.
        confidence: ``[H, W]`` float32 in [0, 1]: the visibility where the photo shows the
            texel, lower where the value was filled in, 0 outside the layout.
    """

    albedo_srgb: np.ndarray
    confidence: np.ndarray


def srgb_to_linear(srgb: np.ndarray) -> np.ndarray:
    """sRGB-encoded values in [0, 1] -> linear (IEC 61966-2-1), float32."""
    x = np.asarray(srgb, np.float32)
    return np.where(x <= 0.04045, x / 12.92, ((np.maximum(x, 0.04045) + 0.055) / 1.055) ** 2.4).astype(np.float32)


def linear_to_srgb(linear: np.ndarray) -> np.ndarray:
    """Linear values in [0, 1] -> sRGB-encoded (IEC 61966-2-1), float32."""
    x = np.asarray(linear, np.float32)
    return np.where(x <= 0.0031308, x * 12.92, 1.055 * np.maximum(x, 0.0031308) ** (1 / 2.4) - 0.055).astype(np.float32)


def estimate_albedo(
    obs: UVObservation,
    sh: np.ndarray,
    detail_normal: Optional[np.ndarray] = None,
    *,
    reference_cell_m: float = 0.006,
    fill_falloff_m: float = 0.03,
) -> AlbedoEstimate:
    """Albedo map of the head from one photo.

    Args:
        obs: the UV observation of the photo.
        sh: ``[9, 3]`` SH lighting (camera space, engine.geometry.sh convention).
        detail_normal: ``[H, W, 3]`` normals to de-light with, e.g.
            ``detail_normals(obs, fit_displacement(obs, sh))``; default the smooth normals.
        reference_cell_m: cell size (metres) of the robust local reference that detail is
            measured against; it takes medians over 3x3 cells, so outliers (highlights,
            shadows) up to about this wide do not bias it.
        fill_falloff_m: distance (metres on the surface) over which inpainted texels fade
            from the nearby skin to the mean skin tone.
    Returns:
        :class:`AlbedoEstimate` ``(albedo_srgb [H, W, 3], confidence [H, W])``.
    """
    normals = obs.normal if detail_normal is None else np.asarray(detail_normal, np.float32)
    shading = _plausible_colour(irradiance(normals, sh).astype(np.float32), obs.seen & (obs.visibility > 0.5))
    typical = np.median(shading[obs.seen], axis=0) if obs.seen.any() else np.ones(3, np.float32)
    delit = obs.color / np.maximum(shading, 0.05 * typical)
    # Texels in attached shadow carry little signal and amplified noise once de-lit.
    lit = np.clip(shading.mean(-1) / (0.25 * typical.mean()), 0.0, 1.0)
    seen_weight = obs.visibility * obs.seen * lit

    texel_m = obs.texel_size_m()
    cell, margin = reference_cell_m / texel_m, 2 * int(round(OUTLIER_MARGIN_M / texel_m)) + 1
    # Highlights wider than the median window pull the reference up; find them against a
    # first reference and leave them out of the second.
    reference = _robust_reference(delit, seen_weight, cell)
    highlight = _highlight_score(delit, reference, margin)
    reference = _robust_reference(delit, seen_weight * (highlight < 0.05), cell)
    highlight = _highlight_score(delit, reference, margin)
    log_ratio = np.log(delit + 1e-4) - np.log(reference + 1e-4)
    keep = 1.0 - np.exp(-((colour_contrast(log_ratio, seen_weight > 0) / CHROMA_SIGMA) ** 2))
    keep *= 1.0 - highlight
    observed = _cap_brightness(reference * np.exp(keep[..., None] * log_ratio), delit, seen_weight)

    trust = _smoothstep(seen_weight / FULL_TRUST_VISIBILITY)
    has_mirror = (obs.mirror[..., 0] >= 0) & (obs.mirror[..., 1] >= 0)
    rows, cols = np.where(has_mirror, obs.mirror[..., 0], 0), np.where(has_mirror, obs.mirror[..., 1], 0)
    mirror_trust = trust[rows, cols] * has_mirror
    known_weight = trust + (1.0 - trust) * mirror_trust
    known = (trust[..., None] * observed + ((1.0 - trust) * mirror_trust)[..., None] * observed[rows, cols])
    known = known / np.maximum(known_weight, 1e-6)[..., None]

    filled, nearness = _inpaint(known, known_weight, texel_m, fill_falloff_m)
    albedo = known_weight[..., None] * known + (1.0 - known_weight[..., None]) * filled

    confidence = trust * obs.visibility * (1.0 - 0.5 * highlight) + (1.0 - trust) * (
        mirror_trust * MIRROR_CONFIDENCE * obs.visibility[rows, cols]
        + (1.0 - mirror_trust) * INPAINT_CONFIDENCE * nearness
    )
    confidence = np.clip(confidence * obs.coverage, 0.0, 1.0).astype(np.float32)
    return AlbedoEstimate(linear_to_srgb(np.clip(albedo, 0.0, 1.0)), confidence)


def _plausible_colour(shading: np.ndarray, well_seen: np.ndarray) -> np.ndarray:
    """``shading [H, W, 3]`` with each texel's colour (channel over mean) kept within the
    range (2nd-98th percentile) it has where the photo sees the surface well (``[H, W]``
    bool). The SH light may be coloured, but where it is extrapolated to normals the photo
    barely shows (the outer cheeks, under the jaw) a channel can fall near zero, and the
    de-lit albedo there came out violet or blue (two symmetric patches on the cheeks)."""
    if well_seen.sum() < 10:
        return shading
    mean = np.maximum(shading.mean(-1, keepdims=True), 1e-6)
    ratio = shading / mean
    lo, hi = np.percentile(ratio[well_seen], [2, 98], axis=0)
    held = np.clip(ratio, lo, hi)
    return (mean * held / held.mean(-1, keepdims=True)).astype(np.float32)   # brightness kept


#: Brightest de-lit albedo kept, as a multiple of the face's median luminance. Where the
#: surface turns away from the light (the jaw's sides, seen at a grazing angle) small errors in
#: the normals or the lighting divide the photo by too little light; uncapped, those texels
#: and the fill grown from them came out white.
MAX_BRIGHTNESS = 1.6


def _cap_brightness(albedo: np.ndarray, delit: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """``albedo [H, W, 3]`` scaled down (hue kept) where its luminance exceeds
    :data:`MAX_BRIGHTNESS` times the median luminance of ``delit`` over the texels with ``weight > 0``."""
    luminance = albedo.mean(-1)
    seen = weight > 0
    if not seen.any():
        return albedo
    limit = MAX_BRIGHTNESS * float(np.median(delit[seen].mean(-1)))
    return albedo * np.minimum(1.0, limit / np.maximum(luminance, 1e-6))[..., None]


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _robust_reference(delit: np.ndarray, weight: np.ndarray, cell: float) -> np.ndarray:
    """Smooth local albedo ``[H, W, 3]`` that ignores outliers: medians of blocks about
    ``cell`` texels wide, a 3x3 median of those, gaps filled, upsampled and smoothed."""
    h, w = weight.shape
    block = 1
    while block * 1.5 < cell and h % (block * 2) == 0 and w % (block * 2) == 0:
        block *= 2
    values = np.where((weight > 0.05)[..., None], delit, np.nan)
    blocks = values.reshape(h // block, block, w // block, block, 3).transpose(0, 2, 1, 3, 4)
    blocks = blocks.reshape(h // block, w // block, block * block, 3)
    with warnings.catch_warnings():  # all-NaN cells are expected (unseen skin) and filled below
        warnings.simplefilter("ignore", RuntimeWarning)
        coarse = np.nanmedian(blocks, axis=2)
        padded = np.pad(coarse, ((1, 1), (1, 1), (0, 0)), constant_values=np.nan)
        windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(0, 1))
        coarse = np.nanmedian(windows.reshape(*coarse.shape, 9), axis=-1)
    valid = np.isfinite(coarse).all(-1)
    coarse_t = torch.from_numpy(np.where(valid[..., None], coarse, 0.0).astype(np.float32)).permute(2, 0, 1)
    coarse_t = _push_pull(coarse_t, torch.from_numpy(valid.astype(np.float32)))
    fine = F.interpolate(coarse_t[None], size=(h, w), mode="bilinear", align_corners=False)[0]
    # Bilinear upsampling leaves creases at coarse texel centres; a blur of one block removes them.
    fine, _ = masked_lowpass(fine, torch.ones(h, w), max(block, 1) * 0.5 + 0.5)
    return np.ascontiguousarray(fine.permute(1, 2, 0).numpy())


def _highlight_score(delit: np.ndarray, reference: np.ndarray, margin: int) -> np.ndarray:
    """``[H, W]`` in [0, 1]: how much a texel looks like a specular highlight, i.e. brighter
    than its surroundings and less saturated (light reflected off the surface has the
    light's colour, not the skin's); widened by ``margin`` texels to catch faint rims."""

    def saturation(rgb: np.ndarray) -> np.ndarray:
        return 1.0 - rgb.min(-1) / np.maximum(rgb.max(-1), 1e-6)

    brighter = (np.log(delit + 1e-4) - np.log(reference + 1e-4)).mean(-1)
    washed_out = (saturation(reference) - saturation(delit)) / np.maximum(saturation(reference), 1e-3)
    score = _smoothstep((brighter - 0.01) / np.log(1.15)) * _smoothstep((washed_out - 0.02) / 0.1)
    return ndimage.maximum_filter(score, size=margin)


def _inpaint(values: np.ndarray, weight: np.ndarray, texel_m: float, falloff_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Fill a map everywhere from weighted samples.

    Returns ``(filled [H, W, 3], nearness [H, W])``: the push-pull fill, faded toward the
    median of the well-known texels with ``nearness = exp(-distance / falloff)`` (1 at known
    texels), the distance being to the nearest texel with weight >= 0.5.
    """
    solid = weight >= 0.5
    if not solid.any():
        raise ValueError("estimate_albedo: the photo shows none of the head's texels.")
    smooth = _push_pull(torch.from_numpy(np.ascontiguousarray(values.transpose(2, 0, 1), np.float32)),
                        torch.from_numpy(weight.astype(np.float32)))
    smooth = smooth.permute(1, 2, 0).numpy()
    skin = np.median(values[solid], axis=0)
    nearness = np.exp(-ndimage.distance_transform_edt(~solid) * texel_m / falloff_m)
    return skin + nearness[..., None] * (smooth - skin), nearness


def _push_pull(values: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Fill ``values [C, H, W]`` where ``weight [H, W]`` (in [0, 1]) is low, from a pyramid.

    Push: sums of weighted values and of weights, halved level by level. Pull: from the
    coarsest level down, each level keeps its own mean where its weight reaches 1 and takes
    the bilinearly upsampled coarser level elsewhere, in proportion.
    """
    sums, weights = [values * weight], [weight[None]]
    while min(weights[-1].shape[1:]) > 1:
        pad = (0, weights[-1].shape[2] % 2, 0, weights[-1].shape[1] % 2)
        sums.append(F.avg_pool2d(F.pad(sums[-1], pad)[None], 2)[0] * 4.0)
        weights.append(F.avg_pool2d(F.pad(weights[-1], pad)[None], 2)[0] * 4.0)
    result = sums[-1] / weights[-1].clamp_min(1e-6)
    for level_sum, level_weight in zip(reversed(sums[:-1]), reversed(weights[:-1])):
        up = F.interpolate(result[None], size=level_weight.shape[1:], mode="bilinear", align_corners=False)[0]
        own = level_sum / level_weight.clamp_min(1e-6)
        blend = level_weight.clamp(0.0, 1.0)
        result = blend * own + (1.0 - blend) * up
    return result
