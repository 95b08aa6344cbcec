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
    """The coarse fit's noise model and priors, in physical units.

    Landmark residuals are measured in metres at the face (pixels x depth / focal length),
    so the balance with the unit-Gaussian identity prior does not depend on the photo's
    resolution or the face's size in it. MediaPipe's errors are not independent from one
    landmark to the next (they follow the face's shape), so the 478 landmarks count as
    ``effective_landmarks`` independent observations.

    Attributes:
        landmark_sigma_m: noise of a landmark's image position (x, y), metres at the face.
        depth_sigma_m: noise of MediaPipe's relative depth (z), metres: larger than x, y (on a
            render of the ICT head it deviates 4.8 mm on average against 3 mm in x, y).
        effective_landmarks: how many independent observations the landmarks are worth.
        robust_sigmas: residuals beyond this many sigmas weigh less and less (Cauchy loss),
            so a few landmarks MediaPipe misplaces do not bend the head.
        expression_l1: sparsity prior of blendshape weights (per unit weight, in the same
            units as one landmark's squared residual over its sigma squared, x effective count):
            a shape is used only when it explains the landmarks clearly. Blendshape weights
            left free soak up identity and landmark noise (a fit with free weights was 1.6-1.9
            mm from a held-out scan, with weights near zero 1.06-1.13 mm). Measured with 1, 3,
            10, 30: the scan benchmark's seven shots barely move (coarse 2.50, 2.49, 2.52, 2.53
            mm mean); on renders of a known neutral head 3 lowered the error of three photos
            from 0.995 to 0.955 mm (frontal alone 0.957 -> 0.952) while the astronaut's smile
            stays at 0.97-0.98.
    """

    landmark_sigma_m: float = 0.002
    depth_sigma_m: float = 0.004
    effective_landmarks: float = 150.0
    robust_sigmas: float = 3.0
    expression_l1: float = 3.0


def _landmark_bases(model: HeadModel):
    """Model bases at the landmarks: mean [L,3], identity [Ki,L,3], expression [Ke,L,3], and
    the landmark triangles' edge vectors' bases (for their normals): ``[2, ..., L, 3]``
    each for the mean, identity and expression."""
    tri = model.triangles()[model.landmark_faces]            # [L, 3] vertex ids
    bary = model.landmark_barycentrics[:, :, None]            # [L, 3, 1]

    def at(arr):  # arr [..., V, 3] -> [..., L, 3]
        return (arr[..., tri, :] * bary).sum(-2)

    def edges(arr):  # arr [..., V, 3] -> [2, ..., L, 3]
        return np.stack([arr[..., tri[:, 1], :] - arr[..., tri[:, 0], :],
                         arr[..., tri[:, 2], :] - arr[..., tri[:, 0], :]])

    return ((at(model.mean), at(model.identity), at(model.expression)),
            (edges(model.mean), edges(model.identity), edges(model.expression)))


def facing_weights(normals_cam: np.ndarray, points_cam: np.ndarray, low: float = 0.1,
                   high: float = 0.4):
    """``[..., L]`` in [0, 1]: how squarely the camera sees each landmark's surface: 0 where
    its normal ``[..., L, 3]`` (camera space) is turned away by more than ``acos(low)``, 1
    from ``acos(high)`` on. MediaPipe still places the landmarks of the hidden side of a
    turned face, but by guesswork (numpy or torch)."""
    lib = np if isinstance(normals_cam, np.ndarray) else __import__("torch")
    n = normals_cam / ((normals_cam ** 2).sum(-1, keepdims=True) ** 0.5 + 1e-12)
    d = points_cam / ((points_cam ** 2).sum(-1, keepdims=True) ** 0.5 + 1e-12)
    return lib.clip((-(n * d).sum(-1) - low) / (high - low), 0.0, 1.0)


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

    Maximum a posteriori under :class:`CoarseWeights`' noise model: robust (Cauchy) landmark
    terms in metres, the unit-Gaussian identity prior, and the expression prior of the model
    (blendshape heads: weights in [0, 1] with an L1 sparsity prior; PCA expressions: unit
    Gaussian). The landmark terms are averaged over photos: the photos' landmark errors are
    alike (MediaPipe's bias follows the face), so several photos do not make the landmarks
    more trustworthy than one, and the identity does not follow their noise (on renders of a
    known head a sum gave 1.99 mm mean vertex error with 4 photos, the mean 1.53 mm, one photo
    1.50 mm). Nothing depends on the photos' order. Landmarks MediaPipe cannot see on this
    head (weight 0) are left out, as is the ``tongueOut`` shape.

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
    (mean_l, id_l, exp_l), edge_bases = _landmark_bases(model)
    mean_l, id_l, exp_l = (a[..., use, :] for a in (mean_l, id_l, exp_l))
    mean_e, id_e, exp_e = (torch.as_tensor(a[..., use, :], dtype=torch.float64) for a in edge_bases)
    principal = np.array([(lm.image_size[0] / 2.0, lm.image_size[1] / 2.0) for lm in landmarks])
    lm = np.stack([lmk.points[use].astype(np.float64) for lmk in landmarks])        # [N, L, 3]
    poses = [initial_pose(mean_l, p, lw, f, tuple(c)) for p, f, c in zip(lm, focal_px, principal)]
    n = len(landmarks)
    blendshape = model.expression_prior == "blendshape"
    free = np.array([name != "tongueOut" for name in model.expression_names], np.float64)

    dt = torch.float64
    T = lambda a: torch.as_tensor(np.asarray(a), dtype=dt)  # noqa: E731
    mean_t, id_t, exp_t = T(mean_l), T(id_l), T(exp_l)
    target, lw_t, free_t = T(lm), T(lw / lw.sum()), T(free)
    focal_t, principal_t = T(focal_px)[:, None], T(principal)[:, None, :]
    rot0_t = T(np.stack([r for r, _ in poses]))
    rvec = torch.zeros(n, 3, dtype=dt, requires_grad=True)
    trans = T(np.stack([t for _, t in poses])).clone().requires_grad_(True)
    ident = torch.zeros(id_l.shape[0], dtype=dt, requires_grad=True)
    # Blendshape weights through a sigmoid (kept in [0, 1]); sigmoid(-4) = 0.02.
    expr_raw = torch.full((n, exp_l.shape[0]), -4.0 if blendshape else 0.0, dtype=dt, requires_grad=True)
    count, robust2 = weights.effective_landmarks, weights.robust_sigmas ** 2
    # Views weigh by how frontal they are (cos² of the angle between the face's forward axis
    # and the camera's), summing to 1: MediaPipe's landmarks of a turned face are biased.
    frontal = np.array([max(r[2, 2], 0.05) ** 2 for r, _ in poses])
    view_w = T(frontal / frontal.sum())

    def rotations() -> torch.Tensor:
        return torch.stack([axis_angle_to_matrix(r) for r in rvec]) @ rot0_t

    def expressions() -> torch.Tensor:
        return (torch.sigmoid(expr_raw) if blendshape else expr_raw) * free_t

    def cauchy(r2: torch.Tensor) -> torch.Tensor:
        return robust2 * torch.log1p(r2 / robust2)

    def loss_fn(full: bool):
        expr = expressions()
        pts = mean_t + torch.einsum("k,klc->lc", ident, id_t) + torch.einsum("nk,klc->nlc", expr, exp_t)
        rot = rotations()
        cam = torch.einsum("nlc,ndc->nld", pts, rot) + trans[:, None]
        with torch.no_grad():   # landmarks on surface turned away from the camera count less
            e = ((mean_e + torch.einsum("k,eklc->elc", ident, id_e))[:, None]
                 + torch.einsum("nk,eklc->enlc", expr, exp_e))                    # [2, N, L, 3]
            normal = torch.einsum("nlc,ndc->nld", torch.cross(e[0], e[1], dim=-1), rot)
            seen = facing_weights(normal, cam)                                     # [N, L]
        depth = -cam[..., 2]
        uv = torch.stack([focal_t * cam[..., 0] / depth, -focal_t * cam[..., 1] / depth], -1) + principal_t
        mean_depth = (lw_t * depth).sum(-1, keepdim=True)                              # [N, 1]
        metres_per_px = mean_depth.detach() / focal_t                                  # [N, 1]
        err2d = ((uv - target[..., :2]) ** 2).sum(-1) * metres_per_px ** 2             # [N, L] m²
        z_obs = (target[..., 2] - (lw_t * target[..., 2]).sum(-1, keepdim=True)) * metres_per_px
        err_z = (depth - mean_depth - z_obs) ** 2
        data = (lw_t * seen * (cauchy(err2d / weights.landmark_sigma_m ** 2)
                               + cauchy(err_z / weights.depth_sigma_m ** 2))).sum(-1)  # [N]
        loss = 0.5 * count * (view_w * data).sum()
        if full:
            prior = (weights.expression_l1 * expr.sum(-1) if blendshape
                     else 0.5 * (expr ** 2).sum(-1))
            loss = loss + prior.mean() + 0.5 * (ident ** 2).sum()
        return loss, err2d / metres_per_px ** 2

    with _single_thread():
        _optimise(loss_fn, rvec, trans, ident, expr_raw, iterations, progress)
    with torch.no_grad():
        _, err2d = loss_fn(True)
        rms = torch.sqrt((err2d * lw_t).sum(-1)).numpy()
        rot = rotations().numpy()
        expr = expressions().numpy().astype(np.float32)
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
    """Focal length in pixels: from the 35 mm-equivalent focal length when known (EXIF
    ``FocalLengthIn35mmFilm``, :attr:`engine.io.image_io.Photo.focal_35mm`), else a 50 mm
    equivalent portrait lens. 35 mm film is 36 mm wide along the long side."""
    return max(image_size) * (focal_35mm or 50.0) / 36.0


