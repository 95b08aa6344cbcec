"""Mesh helpers on numpy/scipy: adjacency, smoothing, per-vertex UVs."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def vertex_adjacency(triangles: np.ndarray, num_vertices: int) -> sp.csr_matrix:
    """Symmetric 0/1 vertex adjacency ``[V, V]`` of a triangle mesh."""
    t = np.asarray(triangles)
    i = np.concatenate([t[:, 0], t[:, 1], t[:, 2], t[:, 1], t[:, 2], t[:, 0]])
    j = np.concatenate([t[:, 1], t[:, 2], t[:, 0], t[:, 0], t[:, 1], t[:, 2]])
    adj = sp.csr_matrix((np.ones(len(i)), (i, j)), shape=(num_vertices, num_vertices))
    adj.data[:] = 1.0
    return adj


def smooth_weighted(values: np.ndarray, weights: np.ndarray, adjacency: sp.csr_matrix,
                    iterations: int, fill: np.ndarray) -> np.ndarray:
    """Confidence-weighted diffusion of per-vertex ``values [V, C]`` over the mesh.

    Vertices with weight 0 take their value from their neighbours; after ``iterations``
    rounds of neighbour averaging (each vertex with its neighbours, weighted by confidence),
    vertices still without any support get ``fill [C]``.
    """
    w = np.asarray(weights, np.float64)[:, None]
    acc, wacc = np.asarray(values, np.float64) * w, w.copy()
    step = adjacency + sp.identity(adjacency.shape[0], format="csr")
    for _ in range(iterations):
        acc, wacc = step @ acc, step @ wacc
    out = acc / np.maximum(wacc, 1e-12)
    out[wacc[:, 0] < 1e-9] = fill
    return out.astype(np.float32)


def first_uv_index(faces: np.ndarray, face_uvs: np.ndarray, num_vertices: int) -> np.ndarray:
    """``[V]`` int64: for each vertex, the UV index of its first face corner (-1 when the
    vertex is in no face)."""
    flat_v, flat_t = np.asarray(faces).ravel(), np.asarray(face_uvs).ravel()
    flat_v, flat_t = flat_v[flat_v >= 0], flat_t[flat_v >= 0]     # -1 pads triangles
    first = np.full(num_vertices, -1, np.int64)
    first[flat_v[::-1]] = flat_t[::-1]   # reversed so the first corner wins
    return first


def vertex_uvs(faces: np.ndarray, face_uvs: np.ndarray, uvs: np.ndarray, num_vertices: int) -> np.ndarray:
    """One UV per vertex ``[V, 2]``: the UV of the vertex's first face corner
    (:func:`first_uv_index`; zeros for a vertex in no face).

    Vertices on a UV seam have several UVs; any one of them addresses a UV map consistently
    for that vertex (maps are dilated across seams before sampling).
    """
    first = first_uv_index(faces, face_uvs, num_vertices)
    return np.where((first >= 0)[:, None], np.asarray(uvs)[first], 0.0).astype(np.float32)


def seam_uv_pairs(faces: np.ndarray, face_uvs: np.ndarray, uvs: np.ndarray) -> np.ndarray:
    """``[P, 2, 2]`` float32: for each vertex on a UV seam, its first UV (as
    :func:`vertex_uvs`) paired with each of its other UVs. A UV map meant as one continuous
    field on the surface must agree at both UVs of a pair."""
    flat_v, flat_t = np.asarray(faces).ravel(), np.asarray(face_uvs).ravel()
    flat_v, flat_t = flat_v[flat_v >= 0], flat_t[flat_v >= 0]     # -1 pads triangles
    pairs = np.unique(np.stack([flat_v, flat_t], 1), axis=0)          # distinct (vertex, uv)
    first = first_uv_index(faces, face_uvs, int(flat_v.max()) + 1)
    other = pairs[pairs[:, 1] != first[pairs[:, 0]]]
    return np.stack([uvs[first[other[:, 0]]], uvs[other[:, 1]]], 1).astype(np.float32)
