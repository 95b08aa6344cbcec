"""A synthetic UV-space observation with known truth, for the detail-stage tests.

A cylinder patch (radius 9 cm, 180 degrees of arc, 25 cm tall: roughly a head's front
unwrapped) parametrised by UV, turned 40 degrees so the photo misses part of one side, seen
by a camera at the origin looking down -Z. Its albedo (a smooth, left-right symmetric skin
tone plus freckle-like spots), displacement (wrinkle lines and pore bumps, 0.1-0.4 mm) and
SH lighting are known; the photo colour is albedo * irradiance(true detail normal), plus
noise and one specular highlight. The true detail normals come from finite differences of
the displaced positions, independently of engine.levels.high.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.geometry.sh import irradiance, sh_basis
from engine.uv.observation import UVObservation

RADIUS = 0.09
HEIGHT = 0.25
DISTANCE = 0.6
LIGHT_COLOR = np.array([1.0, 0.96, 0.9], np.float32)


@dataclass(frozen=True)
class Scene:
    obs: UVObservation
    sh: np.ndarray  # [9, 3]
    albedo: np.ndarray  # [H, W, 3] linear truth
    displacement: np.ndarray  # [H, W] metres truth
    detail_normal: np.ndarray  # [H, W, 3] truth
    spots: np.ndarray  # [H, W] bool, freckle texels
    specular: np.ndarray  # [H, W] bool, highlight texels
    arc: np.ndarray  # [H, W] signed arc angle theta (radians), 0 = front of the unturned patch


def make_scene(size: int = 256, *, yaw_deg: float = 40.0, noise: float = 0.004, seed: int = 0) -> Scene:
    rng = np.random.default_rng(seed)
    h = w = size
    u = (np.arange(w) + 0.5) / w
    v = 1.0 - (np.arange(h) + 0.5) / h
    uu, vv = np.meshgrid(u, v)
    theta = (uu - 0.5) * np.pi
    y = (vv - 0.5) * HEIGHT
    s = RADIUS * theta  # arc length, metres
    yaw = np.deg2rad(yaw_deg)
    rot = np.array([[np.cos(yaw), 0, np.sin(yaw)], [0, 1, 0], [-np.sin(yaw), 0, np.cos(yaw)]])

    def place(p, translate=True):
        out = p @ rot.T
        return out + np.array([0.0, 0.0, -DISTANCE]) if translate else out

    radial = np.stack([np.sin(theta), np.zeros_like(theta), np.cos(theta)], -1)
    position = place(radial * RADIUS + np.stack([0 * y, y, 0 * y], -1))
    normal = place(radial, False)
    tangent_u = place(np.stack([np.cos(theta), 0 * theta, -np.sin(theta)], -1) * RADIUS * np.pi, False)
    tangent_v = np.broadcast_to(np.array([0.0, HEIGHT, 0.0]), position.shape).copy()

    disp = _wrinkles(s, y) + _pores(s, y, rng)
    displaced = position + disp[..., None] * normal
    # dP'/du, dP'/dv by finite differences over the grid (rows run down v).
    dpdu = np.gradient(displaced, axis=1) * w
    dpdv = -np.gradient(displaced, axis=0) * h
    true_normal = np.cross(dpdu, dpdv)
    true_normal /= np.linalg.norm(true_normal, axis=-1, keepdims=True)

    base = np.array([0.62, 0.36, 0.26]) * (1.0 + 0.08 * np.cos(theta))[..., None]
    base = base * (1.0 + 0.06 * np.cos(2.0 * np.pi * y / HEIGHT))[..., None]
    spot_field = np.zeros_like(s)
    for ts, ys in [(-0.35, 0.02), (-0.1, -0.04), (0.05, 0.05), (0.2, -0.01), (0.3, 0.06), (-0.25, -0.07)]:
        spot_field = np.maximum(spot_field, np.exp(-((s - ts * RADIUS * 2) ** 2 + (y - ys) ** 2) / (2 * 0.002**2)))
    albedo = base * (1.0 - spot_field[..., None] * np.array([0.3, 0.5, 0.6]))

    light_dir = np.array([0.1, 0.5, 0.85])
    light_dir /= np.linalg.norm(light_dir)
    sh = np.zeros((9, 3))
    bands = np.array([np.pi] + [2 * np.pi / 3] * 3 + [np.pi / 4] * 5)
    sh += 0.3 * (sh_basis(light_dir) / bands)[:, None] * LIGHT_COLOR  # directional light
    sh[0] += 0.35 / (np.pi / np.sqrt(4 * np.pi))  # plus a uniform ambient 0.35
    color = albedo * irradiance(true_normal, sh)
    blob = np.exp(-((s + 0.02) ** 2 + (y + 0.02) ** 2) / (2 * 0.004**2))
    color = color + 0.4 * blob[..., None] * LIGHT_COLOR + rng.normal(0.0, noise, color.shape)
    color = np.clip(color, 0.0, 1.0)

    view = -position / np.linalg.norm(position, axis=-1, keepdims=True)
    cos_view = np.sum(normal * view, -1)
    coverage = (theta / (np.pi / 2)) ** 2 + (y / (HEIGHT * 0.55)) ** 2 <= 1.0
    visibility = np.where((cos_view > 0.1) & coverage, np.clip(cos_view, 0.0, 1.0), 0.0)
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    mirror = np.stack([rows, w - 1 - cols], -1)
    mirror[~coverage] = -1
    blank = ~coverage[..., None]
    obs = UVObservation(
        color=np.where(blank, 0.0, color),
        position=np.where(blank, 0.0, position),
        normal=np.where(blank, 0.0, normal),
        tangent_u=np.where(blank, 0.0, tangent_u),
        tangent_v=np.where(blank, 0.0, tangent_v),
        visibility=visibility,
        coverage=coverage,
        mirror=mirror,
    )
    return Scene(
        obs=obs,
        sh=sh.astype(np.float32),
        albedo=albedo.astype(np.float32),
        displacement=disp.astype(np.float32),
        detail_normal=true_normal.astype(np.float32),
        spots=spot_field > 0.3,
        specular=blob > 0.3,
        arc=theta,
    )


def _wrinkles(s: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Wrinkle furrows (0.3-0.4 mm deep, ~1.5 mm wide): horizontal lines and two diagonals."""
    d = np.zeros_like(s)
    for y0 in (0.06, 0.075, 0.09):  # forehead lines
        d -= 0.0003 * np.exp(-((y - y0) ** 2) / (2 * 0.0012**2)) * (np.abs(s) < 0.06)
    for s0, slope in ((-0.05, 1.2), (0.04, -1.0)):  # nasolabial-like diagonals
        dist = ((s - s0) - (y + 0.03) / slope) / np.sqrt(1 + 1 / slope**2)
        d -= 0.0004 * np.exp(-(dist**2) / (2 * 0.0015**2)) * (np.abs(y + 0.03) < 0.04)
    return d


def _pores(s: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Pore-like bumps and pits (0.1-0.2 mm, ~1.2 mm wide) scattered over the patch."""
    d = np.zeros_like(s)
    for _ in range(120):
        s0, y0 = rng.uniform(-0.12, 0.12), rng.uniform(-0.1, 0.1)
        amp = rng.uniform(0.0001, 0.0002) * rng.choice([-1.0, 1.0])
        d += amp * np.exp(-((s - s0) ** 2 + (y - y0) ** 2) / (2 * 0.0012**2))
    return d
