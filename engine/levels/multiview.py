"""Multi-view rules: which photos show the same person, and how per-view maps are fused.

MV-HRN (FACTS section 4) shares identity and the mid-frequency deformation across photos
and keeps pose, expression, lighting and high-frequency displacement per photo. It writes
no fused result; the engine needs one canonical displacement and albedo for Blender, made
here from the per-view maps.

Fusion rule (displacement and albedo alike): texel ``t`` of the canonical map is the
weighted mean over views ``k`` of the per-view maps, with weight ``w_k(t) = c_k(t)²``, where
``c_k`` is that view's per-texel confidence: its UV visibility (0 where occluded, outside
the photo or off the skin, else the view-angle ramp of :func:`engine.uv.unwrap.observe`, 1
head-on falling to 0 at grazing angles) for displacement, and the albedo confidence of
:func:`engine.levels.albedo.estimate_albedo` (that visibility where the photo saw the texel, low
where it was filled in) for albedo. Squaring lets the most head-on view dominate a texel
(a 60-degree view weighs about a fifth of a frontal one there), so an extreme profile
photo adds cheek, jaw and ear detail where the others do not see, without blurring the
frontal detail. Weights vary smoothly over the map, so the fusion leaves no seams at the
edges of a view's coverage. Albedo is fused in linear RGB after each view's de-lighting,
and each view's albedo is first scaled per channel to the reference view's (the one with
the most confidence) over the texels both see well, so exposure and white-balance
differences between photos do not show as patches.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..head.model import HeadModel
from .albedo import linear_to_srgb, srgb_to_linear

#: RMS distance (metres, over the face) between one photo's identity and the median identity
#: of all photos above which the photo is taken to show a different person. Measured on
#: renders of the built-in ICT head (tests/test_multiview.py): the same person's identity
#: fitted alone from views 0-35 degrees apart under different lights lies 0.9-1.5 mm from the
#: median; another person (100 random modes at 1.5 std) 2.3 mm. Landmarks pin identity only
#: loosely, so only clearly different faces are caught.
OUTLIER_DISTANCE_M = 0.002

#: ... and it must also exceed the typical distance of the photos by this factor.
OUTLIER_RATIO = 1.5


@dataclass(frozen=True)
class IdentityCheck:
    """Agreement of the identities fitted to each photo alone.

    Attributes:
        distances_m: ``[N]`` RMS distance over the face (metres, after removing a similarity
            transform) between each photo's identity shape and the median identity's.
        outliers: indices of the photos probably showing a different person.
    """

    distances_m: np.ndarray
    outliers: tuple[int, ...]


def check_identities(model: HeadModel, identities: Sequence[np.ndarray]) -> IdentityCheck:
    """Find photos whose identity (fitted alone) disagrees with the others.

    A photo is an outlier when its face shape lies more than :data:`OUTLIER_DISTANCE_M` from
    the median identity's and more than :data:`OUTLIER_RATIO` times the median of all the
    photos' distances. Shapes are compared after a similarity transform, so scale and pose
    differences (which depth ambiguity puts into the identity) do not count. With fewer than
    three photos no single photo can be blamed, so none is an outlier; the distances are
    still reported.
    """
    from ..geometry.transforms import similarity_transform

    face = model.regions["face"]
    ids = np.stack([np.asarray(i, np.float64) for i in identities])
    centre = model.shape(np.median(ids, axis=0))[face].astype(np.float64)
    distances = []
    for ident in ids:
        shape = model.shape(ident)[face].astype(np.float64)
        s, r, t = similarity_transform(shape, centre)
        distances.append(np.sqrt((((s * shape @ r.T + t) - centre) ** 2).sum(-1).mean()))
    d = np.asarray(distances)
    if len(d) < 3:
        return IdentityCheck(d, ())
    typical = np.median(d)
    outliers = tuple(int(k) for k in np.where((d > OUTLIER_DISTANCE_M) & (d > OUTLIER_RATIO * typical))[0])
    return IdentityCheck(d, outliers)


def fuse_weighted(maps: Sequence[np.ndarray], confidences: Sequence[np.ndarray]) -> np.ndarray:
    """Weighted mean of per-view maps ``[H, W]`` or ``[H, W, C]`` with weights
    ``confidence² [H, W]`` (see the module docstring); 0 where no view has weight."""
    w = np.stack([np.asarray(c, np.float32) ** 2 for c in confidences])          # [K, H, W]
    m = np.stack([np.asarray(x, np.float32) for x in maps])
    if m.ndim == 4:
        w = w[..., None]
    total = w.sum(0)
    return np.where(total > 1e-8, (w * m).sum(0) / np.maximum(total, 1e-8), 0.0).astype(np.float32)


def fuse_albedo(albedos_srgb: Sequence[np.ndarray], confidences: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Canonical albedo from de-lit per-view albedos (module docstring rule).

    Args:
        albedos_srgb: per view ``[H, W, 3]`` sRGB albedo in [0, 1] (estimate_albedo).
        confidences: per view ``[H, W]`` confidence in [0, 1].
    Returns:
        ``(albedo_srgb [H, W, 3], confidence [H, W])``, the confidence being the largest of
        the views' at each texel.
    """
    linear = [srgb_to_linear(a) for a in albedos_srgb]
    conf = [np.asarray(c, np.float32) for c in confidences]
    ref = int(np.argmax([c.sum() for c in conf]))
    balanced = []
    for lin, c in zip(linear, conf):
        both = (c > 0.5) & (conf[ref] > 0.5)
        gain = np.ones(3, np.float32)
        if both.sum() >= 50:
            gain = np.median(linear[ref][both], axis=0) / np.maximum(np.median(lin[both], axis=0), 1e-4)
        balanced.append(lin * gain)
    # Texels no view saw well still get a value: every view's fill-in, weighted evenly.
    eps = [np.full_like(c, 1e-3) for c in conf]
    fused = fuse_weighted(balanced, [np.maximum(c, e) for c, e in zip(conf, eps)])
    return linear_to_srgb(np.clip(fused, 0.0, 1.0)), np.max(np.stack(conf), axis=0)


def reference_view(rotations: Sequence[np.ndarray]) -> int:
    """Index of the most frontal view: the camera whose viewing axis is closest to the
    face's forward direction (+Z of the model), i.e. the largest ``R[2, 2]``. Ties go to
    the earlier view; order-independent otherwise."""
    return int(np.argmax([np.asarray(r)[2, 2] for r in rotations]))
