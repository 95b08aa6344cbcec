"""Rigid + scale alignment of a reconstruction to the scan: landmark initialisation, then ICP.

All points are ``float64`` metres. A :class:`Similarity` maps reconstruction space onto scan
space: ``x -> scale * R x + t``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
from scipy.spatial import cKDTree

from engine.geometry.transforms import similarity_transform


@dataclass(frozen=True)
class Similarity:
    """``x -> scale * rotation @ x + translation``; rotation ``[3, 3]``, translation ``[3]``."""

    scale: float
    rotation: np.ndarray
    translation: np.ndarray

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Points ``[N, 3]`` -> transformed points ``[N, 3]`` float64."""
        return self.scale * np.asarray(points, np.float64) @ self.rotation.T + self.translation

    def then(self, other: "Similarity") -> "Similarity":
        """``other ∘ self``: apply self first, then other."""
        return Similarity(other.scale * self.scale, other.rotation @ self.rotation,
                          other.scale * other.rotation @ self.translation + other.translation)

    def inverse(self) -> "Similarity":
        inv_rot = self.rotation.T
        return Similarity(1.0 / self.scale, inv_rot, -(inv_rot @ self.translation) / self.scale)

    @staticmethod
    def identity() -> "Similarity":
        return Similarity(1.0, np.eye(3), np.zeros(3))


def fit_similarity(source: np.ndarray, target: np.ndarray,
                   weights: Optional[np.ndarray] = None) -> Similarity:
    """Least-squares similarity taking ``source [N, 3]`` onto ``target [N, 3]`` (Umeyama 1991),
    optionally weighted ``[N]``. Needs at least 3 non-collinear pairs."""
    src, dst = np.asarray(source, np.float64), np.asarray(target, np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 3 or len(src) < 3:
        raise ValueError(f"fit_similarity needs two [N>=3, 3] arrays, got {src.shape} and {dst.shape}")
    scale, rot, shift = similarity_transform(src, dst, weights)
    return Similarity(float(scale), rot, shift)


@dataclass(frozen=True)
class Closest:
    """Closest points on a triangle surface, one per query point.

    Attributes: points ``[N, 3]``, distances ``[N]`` (metres), triangle ``[N]`` int64 index,
    barycentrics ``[N, 3]`` of the closest point in that triangle.
    """

    points: np.ndarray
    distances: np.ndarray
    triangle: np.ndarray
    barycentrics: np.ndarray


class Surface:
    """A triangle mesh ``vertices [V, 3]``, ``triangles [F, 3]`` with exact closest-point queries
    (over the triangles around the ``k`` nearest vertices; exact for meshes whose triangles are
    not much larger than the query's distance to them)."""

    def __init__(self, vertices: np.ndarray, triangles: np.ndarray, k: int = 4):
        self.vertices = np.asarray(vertices, np.float64)
        self.triangles = np.asarray(triangles, np.int64)
        # Only vertices of some triangle are on the surface (a mesh may carry others: eyes).
        self._used = np.unique(self.triangles)
        self.k = min(k, len(self._used))
        self._tree = cKDTree(self.vertices[self._used])
        # Padded vertex -> incident-triangle table [V, maxdeg], -1 = none.
        order = np.argsort(self.triangles.ravel(), kind="stable")
        vert_of = self.triangles.ravel()[order]
        counts = np.bincount(vert_of, minlength=len(self.vertices))
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        rank = np.arange(len(order)) - starts[vert_of]
        self._incident = np.full((len(self.vertices), max(int(counts.max()), 1)), -1, np.int64)
        self._incident[vert_of, rank] = order // 3

    def closest(self, points: np.ndarray, chunk: int = 20000) -> Closest:
        """Closest surface point of each query point ``[N, 3]``."""
        pts = np.asarray(points, np.float64)
        parts = [self._closest(pts[i:i + chunk]) for i in range(0, len(pts), chunk)]
        return Closest(*(np.concatenate([getattr(p, f) for p in parts]) for f in
                         ("points", "distances", "triangle", "barycentrics")))

    def _closest(self, pts: np.ndarray) -> Closest:
        _, near = self._tree.query(pts, k=self.k)
        near = self._used[near.reshape(len(pts), -1)]
        cand = self._incident[near].reshape(len(pts), -1)                     # [N, C]
        valid = cand >= 0
        tri = self.triangles[np.where(valid, cand, 0)]                        # [N, C, 3]
        a, b, c = (self.vertices[tri[..., i]] for i in range(3))
        q, bary = closest_on_triangles(np.broadcast_to(pts[:, None], a.shape), a, b, c)
        d = np.linalg.norm(q - pts[:, None], axis=-1)
        d[~valid] = np.inf
        j = np.argmin(d, axis=1)
        rows = np.arange(len(pts))
        return Closest(q[rows, j], d[rows, j], cand[rows, j], bary[rows, j])


def closest_on_triangles(p: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Closest point of triangle (a, b, c) to p, all ``[..., 3]``; returns (points ``[..., 3]``,
    barycentrics ``[..., 3]``). Region-based (Ericson, Real-Time Collision Detection 5.1.5)."""
    ab, ac, ap = b - a, c - a, p - a
    d1, d2 = (ab * ap).sum(-1), (ac * ap).sum(-1)
    bp = p - b
    d3, d4 = (ab * bp).sum(-1), (ac * bp).sum(-1)
    cp = p - c
    d5, d6 = (ab * cp).sum(-1), (ac * cp).sum(-1)
    va = d3 * d6 - d5 * d4
    vb = d5 * d2 - d1 * d6
    vc = d1 * d4 - d3 * d2
    eps = 1e-30
    denom = va + vb + vc
    bu, bv = vb / np.where(np.abs(denom) < eps, eps, denom), vc / np.where(np.abs(denom) < eps, eps, denom)
    bu, bv = 1 - bu - bv, bu
    bw = 1 - bu - bv

    def put(mask, u, v, w):
        nonlocal bu, bv, bw
        bu, bv, bw = np.where(mask, u, bu), np.where(mask, v, bv), np.where(mask, w, bw)

    zero, one = 0.0, 1.0
    # Edge regions (checked before vertices so vertex regions win where they overlap).
    t_ab = d1 / np.where(np.abs(d1 - d3) < eps, eps, d1 - d3)
    put((vc <= 0) & (d1 >= 0) & (d3 <= 0), 1 - t_ab, t_ab, zero)
    t_ac = d2 / np.where(np.abs(d2 - d6) < eps, eps, d2 - d6)
    put((vb <= 0) & (d2 >= 0) & (d6 <= 0), 1 - t_ac, zero, t_ac)
    den_bc = (d4 - d3) + (d5 - d6)
    t_bc = (d4 - d3) / np.where(np.abs(den_bc) < eps, eps, den_bc)
    put((va <= 0) & ((d4 - d3) >= 0) & ((d5 - d6) >= 0), zero, 1 - t_bc, t_bc)
    put((d1 <= 0) & (d2 <= 0), one, zero, zero)
    put((d3 >= 0) & (d4 <= d3), zero, one, zero)
    put((d6 >= 0) & (d5 <= d6), zero, zero, one)
    bary = np.stack([bu, bv, bw], -1)
    q = bary[..., :1] * a + bary[..., 1:2] * b + bary[..., 2:] * c
    return q, bary


@dataclass(frozen=True)
class Alignment:
    """Result of :func:`align`: the transform (reconstruction -> scan), ICP iterations run,
    and the RMS of the kept correspondences at the end (metres)."""

    transform: Similarity
    iterations: int
    rms: float


def align(source: Surface, source_landmarks: np.ndarray, target_landmarks: np.ndarray,
          target_points: np.ndarray, iterations: int = 40, trim: float = 0.9,
          sample: int = 2500, tolerance_m: float = 1e-5, seed: int = 0) -> Alignment:
    """Similarity taking the reconstruction ``source`` onto the scan.

    1. Initialise from landmark pairs ``source_landmarks [L, 3]`` -> ``target_landmarks [L, 3]``
       (rows with a NaN are ignored).
    2. ICP with scale: each scan point of ``target_points [N, 3]`` (a random ``sample`` of them)
       is paired with its closest point on the transformed source surface; the ``trim``
       fraction of nearest pairs refits the similarity. Stops when the transform settles
       (no source point moves more than ``tolerance_m``) or after ``iterations``.
    """
    ok = ~(np.isnan(source_landmarks).any(1) | np.isnan(target_landmarks).any(1))
    transform = fit_similarity(source_landmarks[ok], target_landmarks[ok])
    rng = np.random.default_rng(seed)
    pts = np.asarray(target_points, np.float64)
    if len(pts) > sample:
        pts = pts[rng.choice(len(pts), sample, replace=False)]
    rms, it = float("nan"), 0
    probe = source.vertices[:: max(1, len(source.vertices) // 500)]
    for it in range(1, iterations + 1):
        # Closest points on the transformed surface = transformed closest points of the
        # inverse-transformed queries (a similarity keeps nearest neighbours), so the source
        # surface's search structure is built once.
        hit = source.closest(transform.inverse().apply(pts))
        dist = hit.distances * transform.scale
        keep = dist <= np.quantile(dist, trim)
        new = fit_similarity(hit.points[keep], pts[keep])
        motion = np.abs(new.apply(probe) - transform.apply(probe)).max()
        transform = new
        rms = float(np.sqrt((dist[keep] ** 2).mean()))
        if motion < tolerance_m:
            break
    return Alignment(transform, it, rms)
