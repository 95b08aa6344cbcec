"""Low-frequency level: fit the parametric head to MediaPipe's 478 landmarks.

Unknowns: identity coefficients (unit-Gaussian prior), shared by all photos of the person;
per photo, head pose (rotation, translation) and expression weights (ARKit face units in
[0, 1], sparse prior). One photo is the single-view case. The camera's focal length is
given (from EXIF or a default field of view). Data terms: 2D landmark reprojection and
MediaPipe's relative landmark depth (its z), both normalised by the face size so the weights
do not depend on the photo's resolution.

Only the landmark triangles' vertices enter the optimisation, so the fit costs milliseconds
per iteration whatever the mesh size.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator, Optional, Sequence

import numpy as np
import torch

from ..detect.landmarks import FaceLandmarks
from ..errors import Cancelled
from ..geometry.transforms import axis_angle_to_matrix, similarity_transform
from ..head.model import HeadModel
from ..progress import ProgressCallback, Stage
from ..result import Camera


@dataclass(frozen=True)
class ViewPose:
    """What the coarse fit found for one photo.

    Attributes:
        expression: ``[Ke]`` float32 expression weights in [0, 1].
        camera: the fitted camera (pose of the head and intrinsics).
        landmark_rms_px: RMS 2D landmark error in pixels over the used landmarks.
    """

    expression: np.ndarray
    camera: Camera
    landmark_rms_px: float


@dataclass(frozen=True)
class CoarseFit:
    """Result of the coarse fit of one or more photos of one person.

    Attributes:
        identity: ``[Ki]`` float32 identity coefficients (units of the model's std), shared
            by all photos.
        views: one :class:`ViewPose` per photo, in the order given.
    """

    identity: np.ndarray
    views: tuple[ViewPose, ...]


@dataclass(frozen=True)
class CoarseWeights:
    """Relative weights of the coarse-fit terms (data terms are in face-size units)."""

    depth: float = 0.3
    identity_prior: float = 2e-5
    expression_l1: float = 2e-5
    expression_l2: float = 2e-5


def _landmark_bases(model: HeadModel):
    """Model bases restricted to the landmarks: mean [L,3], identity [Ki,L,3], expression [Ke,L,3]."""
    tri = model.triangles()[model.landmark_faces]            # [L, 3] vertex ids
    bary = model.landmark_barycentrics[:, :, None]            # [L, 3, 1]

    def at(arr):  # arr [..., V, 3] -> [..., L, 3]
        return (arr[..., tri, :] * bary).sum(-2)

    id_basis = model.identity_basis * model.identity_std[:, None, None]
    return at(model.mean), at(id_basis), at(model.expression_basis)


def initial_pose(model_points: np.ndarray, lm: np.ndarray, weights: np.ndarray, focal_px: float,
                 principal_px: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Closed-form pose from MediaPipe's 3D landmarks (pixels) by a similarity transform.

    Returns:
        rotation [3, 3] and translation [3] (metres), model -> camera space.
    """
    cx, cy = principal_px
    # MediaPipe (x right, y down, z away from camera) in px -> camera-aligned axes.
    q = np.stack([lm[:, 0] - cx, -(lm[:, 1] - cy), -lm[:, 2]], -1)
    s, rot, _ = similarity_transform(model_points, q, weights)
    depth = focal_px / s                     # distance of the landmark centroid, metres
    w = weights / weights.sum()
    centre_px = w @ lm[:, :2]
    centre_cam = np.array([(centre_px[0] - cx) * depth / focal_px,
                           -(centre_px[1] - cy) * depth / focal_px, -depth])
    return rot, centre_cam - rot @ (w @ model_points)


@contextlib.contextmanager
def _single_thread() -> Iterator[None]:
    """Run tiny tensor ops on one thread: a thread pool only adds overhead at this size
    (measured here: 0.16 ms per step on one thread vs 28 ms on two busy cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def fit_coarse(model: HeadModel, landmarks: Sequence[FaceLandmarks], focal_px: Sequence[float],
               iterations: int = 400, weights: CoarseWeights = CoarseWeights(),
               progress: Optional[ProgressCallback] = None) -> CoarseFit:
    """Fit one identity and, per photo, pose and expression of ``model`` to the landmarks.

    The loss is the mean over photos of each photo's landmark terms and expression priors,
    plus one identity prior; one photo is the single-view fit. With the mean, the balance
    between the landmarks and the identity prior does not grow with the number of photos:
    with a sum, the identity of 3-4 photos followed the landmarks' noise (on renders of a
    known head, tests/test_multiview.py, 4 photos gave 1.99 mm mean vertex error with a sum
    and 1.53 mm with the mean, against 1.50 mm for the frontal photo alone). The mean does
    not depend on the photos' order.

    Args:
        model: the head model.
        landmarks: per photo, its detected 478 landmarks (pixels; z in pixels, smaller = nearer).
        focal_px: per photo, its focal length in pixels.
        iterations: Adam iterations of the joint fit (a pose-only warm-up of a quarter of
            that runs first).
        progress: callback ``(stage, fraction)``; returning False cancels.
    """
    if len(landmarks) == 0 or len(landmarks) != len(focal_px):
        raise ValueError("fit_coarse: give one focal length per set of landmarks (at least one).")
    use = model.landmark_weights > 0
    lw = model.landmark_weights[use].astype(np.float64)
    mean_l, id_l, exp_l = (a[..., use, :] for a in _landmark_bases(model))
    principal = np.array([(lm.image_size[0] / 2.0, lm.image_size[1] / 2.0) for lm in landmarks])
    lm = np.stack([lmk.points[use].astype(np.float64) for lmk in landmarks])        # [N, L, 3]
    poses = [initial_pose(mean_l, p, lw, f, tuple(c)) for p, f, c in zip(lm, focal_px, principal)]
    face_px = np.linalg.norm(lm[:, :, :2].max(1) - lm[:, :, :2].min(1), axis=-1)      # [N]
    n = len(landmarks)

    dt = torch.float64
    T = lambda a: torch.as_tensor(np.asarray(a), dtype=dt)  # noqa: E731
    mean_t, id_t, exp_t = T(mean_l), T(id_l), T(exp_l)
    target, lw_t = T(lm), T(lw / lw.sum())
    focal_t, principal_t, face_t = T(focal_px)[:, None], T(principal)[:, None, :], T(face_px)[:, None]
    rot0_t = T(np.stack([r for r, _ in poses]))
    rvec = torch.zeros(n, 3, dtype=dt, requires_grad=True)
    trans = T(np.stack([t for _, t in poses])).clone().requires_grad_(True)
    ident = torch.zeros(id_l.shape[0], dtype=dt, requires_grad=True)
    expr_raw = torch.full((n, exp_l.shape[0]), -4.0, dtype=dt, requires_grad=True)  # sigmoid(-4) ≈ 0.02

    def rotations() -> torch.Tensor:
        return torch.stack([axis_angle_to_matrix(r) for r in rvec]) @ rot0_t

    def loss_fn(full: bool):
        expr = torch.sigmoid(expr_raw)
        pts = mean_t + torch.einsum("k,klc->lc", ident, id_t) + torch.einsum("nk,klc->nlc", expr, exp_t)
        cam = torch.einsum("nlc,ndc->nld", pts, rotations()) + trans[:, None]
        depth = -cam[..., 2]
        uv = torch.stack([focal_t * cam[..., 0] / depth, -focal_t * cam[..., 1] / depth], -1) + principal_t
        err2d = ((uv - target[..., :2]) ** 2).sum(-1) / face_t ** 2                   # [N, L]
        mean_depth = (lw_t * depth).sum(-1, keepdim=True)
        z_pred = focal_t * (depth - mean_depth) / mean_depth
        z_obs = target[..., 2] - (lw_t * target[..., 2]).sum(-1, keepdim=True)
        err_z = (z_pred - z_obs) ** 2 / face_t ** 2
        loss = (lw_t * (err2d + weights.depth * err_z)).sum()
        if full:
            loss = loss + weights.expression_l1 * expr.sum() + weights.expression_l2 * (expr ** 2).sum()
        loss = loss / n
        if full:
            loss = loss + weights.identity_prior * (ident ** 2).sum()
        return loss, err2d

    with _single_thread():
        _optimise(loss_fn, rvec, trans, ident, expr_raw, iterations, progress)
    with torch.no_grad():
        _, err2d = loss_fn(True)
        rms = torch.sqrt((err2d * face_t ** 2 * lw_t).sum(-1)).numpy()
        rot = rotations().numpy()
        expr = torch.sigmoid(expr_raw).numpy().astype(np.float32)
    views = tuple(
        ViewPose(expression=expr[k], landmark_rms_px=float(rms[k]),
                 camera=Camera(rotation=rot[k], translation=trans[k].detach().numpy().copy(),
                               focal_px=float(focal_px[k]), principal_px=tuple(principal[k]),
                               image_size=tuple(int(v) for v in landmarks[k].image_size)))
        for k in range(n))
    return CoarseFit(identity=ident.detach().numpy().astype(np.float32), views=views)


def _optimise(loss_fn, rvec, trans, ident, expr_raw, iterations, progress) -> None:
    """Adam: a pose-only warm-up, then pose + identity + expression."""
    warmup = max(iterations // 4, 1)
    schedule = [(False, warmup, [rvec, trans]), (True, iterations, [rvec, trans, ident, expr_raw])]
    done, total = 0, warmup + iterations
    for full, steps, params in schedule:
        opt = torch.optim.Adam([{"params": [rvec], "lr": 0.01}, {"params": [trans], "lr": 0.002},
                                {"params": [p for p in params if p is ident], "lr": 0.05},
                                {"params": [p for p in params if p is expr_raw], "lr": 0.05}])
        for p in (ident, expr_raw):
            p.requires_grad_(full)
        for it in range(steps):
            opt.zero_grad()
            loss, _ = loss_fn(full)
            loss.backward()
            opt.step()
            done += 1
            if progress is not None and it % 20 == 0 and progress(Stage.FITTING_HEAD_SHAPE, done / total) is False:
                raise Cancelled("Cancelled during the coarse fit.")


def default_focal_px(image_size: tuple[int, int], focal_35mm: Optional[float] = None) -> float:
    """Focal length in pixels: from the 35 mm-equivalent focal length (EXIF) when known,
    else a 50 mm-equivalent portrait lens. 35 mm film is 36 mm wide along the long side."""
    return max(image_size) * (focal_35mm or 50.0) / 36.0


