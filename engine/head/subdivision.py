"""Catmull-Clark subdivision of a quad mesh with per-corner UVs, and UV point location.

Used by :meth:`engine.head.model.HeadModel.subdivided` and by ``tools/build_head_model.py``. The
operators are sparse and linear, so a head's mean and every basis go through the same matrix.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.spatial import cKDTree

@dataclass(frozen=True)
class SubdivisionStep:
    """One Catmull-Clark step of a quad mesh with V vertices, E edges and F faces.

    New vertices are ordered [old vertices (V), edge points (E), face points (F)].
    Attributes:
        operator: ``[V+E+F, V]`` sparse smoothing operator (Catmull-Clark weights, boundary
            rules on open borders).
        linear: ``[V+E+F, V]`` sparse operator placing new points at plain averages (vertex
            copies, edge midpoints, face centres), for carrying per-vertex labels.
        faces: ``[4F,4]`` int32 child quads, same orientation as their parents.
        edges: ``[E,2]`` int64 sorted vertex pairs, edge point i belongs to edges[i].
    """

    operator: sparse.csr_matrix
    linear: sparse.csr_matrix
    faces: np.ndarray
    edges: np.ndarray

    def carry_mirror(self, mirror: np.ndarray, faces: np.ndarray) -> np.ndarray:
        """The mirror map ``[V+E+F]`` of the subdivided mesh from the coarse one ``[V]``."""
        v = len(mirror)
        e_m = np.sort(mirror[self.edges], 1)
        edge_mirror = _lookup_rows(self.edges, e_m)
        f_sorted = np.sort(faces, 1)
        face_mirror = _lookup_rows(f_sorted, np.sort(mirror[faces], 1))
        return np.concatenate([mirror, v + edge_mirror, v + len(self.edges) + face_mirror]).astype(np.int32)


def _lookup_rows(table: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Index of each row of ``queries`` in ``table`` (rows unique integer tuples)."""
    index = {tuple(row): i for i, row in enumerate(table.tolist())}
    try:
        return np.array([index[tuple(row)] for row in queries.tolist()], np.int64)
    except KeyError as err:
        raise ValueError(f"mirror map is not symmetric on the mesh topology: {err}") from None


def catmull_clark(faces: np.ndarray, n_vertices: int) -> SubdivisionStep:
    """The sparse operators and child quads of one Catmull-Clark step (see
    :class:`SubdivisionStep`). Boundary edges use midpoints and boundary vertices the
    (1/8, 6/8, 1/8) curve rule, so open borders (neck cut, eye and mouth openings) stay
    clean."""
    f = np.asarray(faces, np.int64)
    nf, v = len(f), n_vertices
    half = np.stack([f, np.roll(f, -1, 1)], -1).reshape(-1, 2)          # [4F,2] directed
    und = np.sort(half, 1)
    edges, half_edge = np.unique(und, axis=0, return_inverse=True)
    half_edge = half_edge.ravel()
    ne = len(edges)
    face_of_half = np.repeat(np.arange(nf), 4)
    rows = np.repeat(np.arange(nf), 4)
    face_avg = sparse.csr_matrix((np.full(4 * nf, 0.25), (rows, f.ravel())), shape=(nf, v))
    edge_mid = sparse.csr_matrix((np.full(2 * ne, 0.5), (np.repeat(np.arange(ne), 2),
                                  edges.ravel())), shape=(ne, v))
    edge_face = sparse.csr_matrix((np.ones(4 * nf), (half_edge, face_of_half)), shape=(ne, nf))
    n_edge_faces = np.asarray(edge_face.sum(1)).ravel()
    boundary_edge = n_edge_faces == 1
    interior = sparse.diags((~boundary_edge).astype(float))
    edge_point = (sparse.diags(np.where(boundary_edge, 1.0, 0.5)) @ edge_mid
                  + 0.25 * interior @ edge_face @ face_avg)

    vert_edge = sparse.csr_matrix((np.ones(2 * ne), (edges.ravel(), np.repeat(np.arange(ne), 2))),
                                  shape=(v, ne))
    vert_face = sparse.csr_matrix((np.ones(4 * nf), (f.ravel(), rows)), shape=(v, nf))
    valence = np.asarray(vert_edge.sum(1)).ravel()
    n_faces = np.maximum(np.asarray(vert_face.sum(1)).ravel(), 1)
    vert_bedge = vert_edge @ sparse.diags(boundary_edge.astype(float))
    on_border = np.asarray(vert_bedge.sum(1)).ravel() > 0
    safe_n = np.maximum(valence, 1)
    inner = (sparse.diags(1.0 / (safe_n * n_faces)) @ vert_face @ face_avg
             + sparse.diags(2.0 / safe_n ** 2) @ vert_edge @ edge_mid
             + sparse.diags((safe_n - 3.0) / safe_n))
    border = 0.25 * vert_bedge @ edge_mid + sparse.diags(np.full(v, 0.5))
    vertex_point = sparse.diags((~on_border).astype(float)) @ inner \
        + sparse.diags(on_border.astype(float)) @ border

    operator = sparse.vstack([vertex_point, edge_point, face_avg]).tocsr()
    linear = sparse.vstack([sparse.identity(v), edge_mid, face_avg]).tocsr()

    e = half_edge.reshape(nf, 4) + v                 # edge point of edge (k, k+1)
    c = np.arange(nf) + v + ne
    children = np.stack([np.stack([f[:, k], e[:, k], c, e[:, (k - 1) % 4]], 1)
                         for k in range(4)], 1).reshape(-1, 4)
    return SubdivisionStep(operator, linear, children.astype(np.int32), edges)


def subdivide_uvs(uvs: np.ndarray, face_uvs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Linear subdivision of per-corner UVs matching :func:`catmull_clark`'s child quads:
    UV edges are keyed by their UV point pair, so seams stay split."""
    step = catmull_clark(face_uvs, len(uvs))
    return (step.linear @ uvs.astype(np.float64)).astype(np.float32), step.faces


def locate_uv(uvs: np.ndarray, face_uvs: np.ndarray, queries: np.ndarray,
              candidates: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """Triangle index (into the ``(a,b,c),(a,c,d)`` split) and barycentrics ``[N,3]`` of
    the UV triangle containing each query UV ``[N,2]`` (nearest one when none does)."""
    tri = np.stack([face_uvs[:, [0, 1, 2]], face_uvs[:, [0, 2, 3]]], 1).reshape(-1, 3)
    corners = uvs[tri].astype(np.float64)                                 # [2F,3,2]
    tree = cKDTree(corners.mean(1))
    _, near = tree.query(queries, k=min(candidates, len(tri)))
    best_tri = np.empty(len(queries), np.int32)
    best_bary = np.empty((len(queries), 3), np.float32)
    for i, (q, cand) in enumerate(zip(np.asarray(queries, np.float64), near)):
        a, b, c = corners[cand, 0], corners[cand, 1], corners[cand, 2]
        v0, v1, v2 = b - a, c - a, q - a
        den = v0[:, 0] * v1[:, 1] - v1[:, 0] * v0[:, 1]
        den = np.where(np.abs(den) < 1e-20, 1e-20, den)
        w1 = (v2[:, 0] * v1[:, 1] - v1[:, 0] * v2[:, 1]) / den
        w2 = (v0[:, 0] * v2[:, 1] - v2[:, 0] * v0[:, 1]) / den
        bary = np.stack([1 - w1 - w2, w1, w2], 1)
        j = int(np.argmax(bary.min(1)))                   # inside if min >= 0
        best_tri[i] = cand[j]
        best_bary[i] = np.clip(bary[j], 0, 1) / np.clip(bary[j], 0, 1).sum()
    return best_tri, best_bary
