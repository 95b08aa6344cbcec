"""Catmull-Clark subdivision of mixed triangle/quad meshes, as sparse linear operators.

Faces are ``[F, 4]`` int arrays whose triangles carry -1 in their last column (the padded
layout of :mod:`engine.head.model`). One step turns a face of n corners into n quads, so the
result is all quads; positions (and every shape basis) go through the same sparse operator,
per-vertex labels through a plain-average one, and UVs through the operator of the UV
topology (seams stay split).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.spatial import cKDTree

from ..result import triangle_faces, triangulate


def corner_counts(faces: np.ndarray) -> np.ndarray:
    """``[F]`` number of corners (3 or 4) of each padded face."""
    return np.where(np.asarray(faces)[:, 3] < 0, 3, 4)


@dataclass(frozen=True)
class SubdivisionStep:
    """One Catmull-Clark step of a mesh with V vertices, E edges and F faces.

    New vertices are ordered [old vertices (V), edge points (E), face points (F)].
    Attributes:
        operator: ``[V+E+F, V]`` sparse smoothing operator (Catmull-Clark weights, boundary
            rules on open borders).
        linear: ``[V+E+F, V]`` sparse operator placing new points at plain averages (vertex
            copies, edge midpoints, face centres), for carrying per-vertex labels.
        faces: ``[C, 4]`` int32 child quads (n per parent face of n corners, in parent
            order), same orientation as their parents.
        parent: ``[C]`` int64 parent face of each child quad.
        edges: ``[E, 2]`` int64 sorted vertex pairs, edge point i belongs to edges[i].
    """

    operator: sparse.csr_matrix
    linear: sparse.csr_matrix
    faces: np.ndarray
    parent: np.ndarray
    edges: np.ndarray


def catmull_clark(faces: np.ndarray, n_vertices: int) -> SubdivisionStep:
    """The sparse operators and child quads of one Catmull-Clark step (see
    :class:`SubdivisionStep`) of a mesh of triangles and quads (``[F, 4]``, -1 pads
    triangles; ``[F, 3]`` all triangles). Boundary edges use midpoints and boundary vertices
    the (1/8, 6/8, 1/8) curve rule, so open borders (neck cut, eye and mouth openings) stay
    clean."""
    f = np.asarray(faces, np.int64)
    if f.shape[1] == 3:
        f = np.concatenate([f, np.full((len(f), 1), -1)], 1)
    nf, v = len(f), n_vertices
    n_corners = corner_counts(f)
    valid = f >= 0                                                  # [F, 4]
    nxt = np.where(np.arange(4)[None] + 1 < n_corners[:, None], np.roll(f, -1, 1), f[:, :1])
    prv_col = (np.arange(4)[None] - 1) % n_corners[:, None]         # previous corner's column
    face_of = np.broadcast_to(np.arange(nf)[:, None], f.shape)[valid]
    a, b = f[valid], nxt[valid]                                     # directed half-edges
    edges, half_edge = np.unique(np.sort(np.stack([a, b], 1), 1), axis=0, return_inverse=True)
    half_edge = half_edge.ravel()
    ne = len(edges)
    face_avg = sparse.csr_matrix((1.0 / n_corners[face_of], (face_of, a)), shape=(nf, v))
    edge_mid = sparse.csr_matrix((np.full(2 * ne, 0.5), (np.repeat(np.arange(ne), 2),
                                  edges.ravel())), shape=(ne, v))
    edge_face = sparse.csr_matrix((np.ones(len(a)), (half_edge, face_of)), shape=(ne, nf))
    boundary_edge = np.asarray(edge_face.sum(1)).ravel() == 1
    interior = sparse.diags((~boundary_edge).astype(float))
    edge_point = (sparse.diags(np.where(boundary_edge, 1.0, 0.5)) @ edge_mid
                  + 0.25 * interior @ edge_face @ face_avg)

    vert_edge = sparse.csr_matrix((np.ones(2 * ne), (edges.ravel(), np.repeat(np.arange(ne), 2))),
                                  shape=(v, ne))
    vert_face = sparse.csr_matrix((np.ones(len(a)), (a, face_of)), shape=(v, nf))
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

    edge_of = np.full(f.shape, -1, np.int64)                        # edge point of (k, k+1)
    edge_of[valid] = half_edge + v
    prev_edge = np.take_along_axis(edge_of, prv_col, 1)
    centre = np.broadcast_to((np.arange(nf) + v + ne)[:, None], f.shape)
    children = np.stack([f, edge_of, centre, prev_edge], -1)[valid]   # [sum n, 4], parent order
    return SubdivisionStep(operator, linear, children.astype(np.int32), face_of.astype(np.int64), edges)


def subdivide_uvs(uvs: np.ndarray, face_uvs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Linear subdivision of per-corner UVs matching :func:`catmull_clark`'s child quads:
    UV edges are keyed by their UV point pair, so seams stay split."""
    step = catmull_clark(face_uvs, len(uvs))
    return (step.linear @ uvs.astype(np.float64)).astype(np.float32), step.faces


def locate_uv(uvs: np.ndarray, face_uvs: np.ndarray, queries: np.ndarray,
              faces: np.ndarray | None = None, candidates: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """Triangle index (row of :func:`triangulate` of ``face_uvs``) and barycentrics ``[N,3]``
    of the UV triangle containing each query UV ``[N,2]`` (the nearest one when none does),
    searching only the triangles of ``faces`` (indices into ``face_uvs``; default all)."""
    rows = np.arange(len(triangulate(face_uvs)))
    if faces is not None:
        rows = rows[np.isin(triangle_faces(face_uvs), faces)]
    corners = uvs[triangulate(face_uvs)[rows]].astype(np.float64)         # [T,3,2]
    tree = cKDTree(corners.mean(1))
    _, near = tree.query(queries, k=min(candidates, len(rows)))
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
        best_tri[i] = rows[cand[j]]
        best_bary[i] = np.clip(bary[j], 0, 1) / np.clip(bary[j], 0, 1).sum()
    return best_tri, best_bary
