"""What the photo says about each texel of the head's UV map, and filters on such maps.

The detail stages (:mod:`engine.levels.high`, :mod:`engine.levels.albedo`) work in UV space: the
fitted mid-level head is rasterised into its UV layout and every texel is projected into the
photo. :class:`UVObservation` holds the result. Maps follow :mod:`engine.conventions` (row 0
at v = 1; texel (i, j) centred at u = (j + 0.5) / W, v = 1 - (i + 0.5) / H).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class UVObservation:
    """Per-texel observation of one photo, on an ``[H, W]`` UV map.

    Arrays are numpy float32 unless stated (they are converted on construction); vectors are
    in camera space (see engine.conventions). Texels outside the UV layout may hold anything
    finite (zeros from a rasterizer are fine): every consumer masks them with ``coverage``.

    Attributes:
        color: ``[H, W, 3]`` photo colour at the texel's projection, linear RGB in [0, 1].
        position: ``[H, W, 3]`` surface point of the smooth (mid-level) head, metres.
        normal: ``[H, W, 3]`` unit normal of the smooth surface.
        tangent_u: ``[H, W, 3]`` dP/du, metres per unit of U.
        tangent_v: ``[H, W, 3]`` dP/dv, metres per unit of V (v up).
        visibility: ``[H, W]`` in [0, 1]; 0 where occluded, back-facing or outside the photo,
            otherwise a weight falling with the view angle.
        coverage: ``[H, W]`` bool, True where the texel lies inside the UV layout.
        mirror: ``[H, W, 2]`` int32 (row, col) of the bilaterally symmetric texel, -1 where none.
    """

    color: np.ndarray
    position: np.ndarray
    normal: np.ndarray
    tangent_u: np.ndarray
    tangent_v: np.ndarray
    visibility: np.ndarray
    coverage: np.ndarray
    mirror: np.ndarray

    def __post_init__(self) -> None:
        h, w = np.shape(self.visibility)[:2]
        for name in ("color", "position", "normal", "tangent_u", "tangent_v"):
            _set_checked(self, name, np.float32, (h, w, 3))
        _set_checked(self, "visibility", np.float32, (h, w))
        _set_checked(self, "coverage", bool, (h, w))
        _set_checked(self, "mirror", np.int32, (h, w, 2))
        if np.any(self.mirror >= np.array([h, w])):
            raise ValueError("UVObservation.mirror holds texel indices outside the map.")

    @property
    def size(self) -> tuple[int, int]:
        """Map size ``(H, W)`` in texels."""
        return self.visibility.shape

    @property
    def seen(self) -> np.ndarray:
        """``[H, W]`` bool: texels inside the layout that the photo shows."""
        return self.coverage & (self.visibility > 0.0)

    def texel_size_m(self) -> float:
        """Typical edge length of one texel on the surface, metres (median over the layout)."""
        h, w = self.size
        du = np.linalg.norm(self.tangent_u[self.coverage], axis=-1) / w
        dv = np.linalg.norm(self.tangent_v[self.coverage], axis=-1) / h
        if du.size == 0:
            raise ValueError("UVObservation has no covered texel.")
        return float(np.sqrt(np.median(du) * np.median(dv)))


def _set_checked(obs: UVObservation, name: str, dtype, shape: tuple[int, ...]) -> None:
    value = np.ascontiguousarray(getattr(obs, name), dtype=dtype)
    if value.shape != shape:
        raise ValueError(f"UVObservation.{name} has shape {value.shape}, expected {shape}.")
    if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
        raise ValueError(f"UVObservation.{name} holds NaN or infinite values.")
    object.__setattr__(obs, name, value)


def masked_lowpass(values: torch.Tensor, weight: torch.Tensor, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian low-pass of a map, counting each texel by ``weight`` (normalised convolution).

    Fast at any sigma: the weighted map is box-pooled by a power of two no larger than
    sigma / 2, blurred there, and bilinearly upsampled, which is smooth because the coarse
    blur spans at least two coarse texels.

    Args:
        values: ``[C, H, W]`` float32 tensor.
        weight: ``[H, W]`` float32 tensor, >= 0 (0 = ignore the texel).
        sigma: Gaussian standard deviation in texels.
    Returns:
        ``(lowpass [C, H, W], density [H, W])``: the weighted mean around each texel (0 where
        no weight is near) and the blurred weight, which says how much data backs it.
    """
    c, h, w = values.shape
    factor = 1
    while factor * 4 <= sigma and h % (factor * 2) == 0 and w % (factor * 2) == 0:
        factor *= 2
    stack = torch.cat([values * weight, weight[None]], 0)[None]
    if factor > 1:
        stack = F.avg_pool2d(stack, factor)
    stack = _gaussian_blur(stack, sigma / factor)
    if factor > 1:
        stack = F.interpolate(stack, size=(h, w), mode="bilinear", align_corners=False)
    density = stack[0, c]
    lowpass = stack[0, :c] / density.clamp_min(1e-6)
    return torch.where(density > 1e-6, lowpass, torch.zeros_like(lowpass)), density


def _gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``[N, C, H, W]`` with replicated borders."""
    n, c, h, w = images.shape
    radius = max(1, min(int(np.ceil(3.0 * sigma)), h - 1, w - 1))
    x = torch.arange(-radius, radius + 1, dtype=images.dtype)
    kernel = torch.exp(-0.5 * (x / max(sigma, 1e-3)) ** 2)
    kernel = kernel / kernel.sum()
    flat = images.reshape(n * c, 1, h, w)
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1))
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="replicate"), kernel.view(1, 1, -1, 1))
    return flat.reshape(n, c, h, w)
