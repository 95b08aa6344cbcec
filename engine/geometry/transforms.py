"""Small geometric helpers shared by the fitting stages (torch, differentiable)."""
from __future__ import annotations

import numpy as np
import torch


def axis_angle_to_matrix(rotvec: torch.Tensor) -> torch.Tensor:
    """Rodrigues' formula: axis-angle ``[3]`` (radians) -> rotation matrix ``[3, 3]``."""
    theta = torch.sqrt((rotvec * rotvec).sum() + 1e-20)
    k = rotvec / theta
    zero = torch.zeros((), dtype=rotvec.dtype)
    kx = torch.stack([torch.stack([zero, -k[2], k[1]]), torch.stack([k[2], zero, -k[0]]),
                      torch.stack([-k[1], k[0], zero])])
    eye = torch.eye(3, dtype=rotvec.dtype)
    return eye + torch.sin(theta) * kx + (1.0 - torch.cos(theta)) * (kx @ kx)


def similarity_transform(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None):
    """Umeyama: ``dst ≈ s * R @ src + t`` for point sets ``[N, 3]``.

    Returns:
        (s, R [3, 3], t [3]), R a proper rotation.
    """
    w = np.ones(len(src)) if weights is None else np.asarray(weights, np.float64)
    w = w / w.sum()
    mu_s, mu_d = w @ src, w @ dst
    xs, xd = src - mu_s, dst - mu_d
    cov = (xd * w[:, None]).T @ xs
    u, sig, vt = np.linalg.svd(cov)
    d = np.ones(3)
    d[2] = np.sign(np.linalg.det(u @ vt))
    rot = u @ np.diag(d) @ vt
    var_s = (w * (xs ** 2).sum(1)).sum()
    s = (sig * d).sum() / var_s
    return s, rot, mu_d - s * rot @ mu_s


def project(points_cam: torch.Tensor, focal_px: float, principal_px: tuple[float, float]) -> torch.Tensor:
    """Camera-space points ``[..., 3]`` (OpenGL, looking down -Z) -> image pixels ``[..., 2]``
    (top-left origin, y down)."""
    depth = -points_cam[..., 2]
    x = focal_px * points_cam[..., 0] / depth + principal_px[0]
    y = -focal_px * points_cam[..., 1] / depth + principal_px[1]
    return torch.stack([x, y], -1)


def vertex_normals(vertices: torch.Tensor, triangles: torch.Tensor) -> torch.Tensor:
    """Area-weighted unit vertex normals ``[V, 3]`` of a triangle mesh (counter-clockwise = outward)."""
    # index_select: several times faster than advanced indexing on CPU, forward and backward.
    a, b, c = (vertices.index_select(0, triangles[:, i]) for i in range(3))
    face_n = torch.cross(b - a, c - a, dim=-1)
    normals = torch.zeros_like(vertices).index_add_(0, triangles.reshape(-1),
                                                    face_n.unsqueeze(1).expand(-1, 3, -1).reshape(-1, 3))
    return normals / (normals.norm(dim=-1, keepdim=True) + 1e-12)
