"""Write files in the EXACT formats of the official HRN release, filled with random weights
and synthetic values (OFFICIAL-LAYOUT.md: every key, shape, dtype, index base).

Nothing written here is a reconstruction model: outputs of these weights are noise and must
never be shown as a face. Real shapes are large (~690 MB in all), so tests write them once
per session; the UV albedo basis (252 MB) is non-zero only in a band of map rows, which
keeps that file sparse on disk and quick to write.

Two deliberate non-random parts, so that tests can check the photo -> camera chain: the
pose heads of ``net_recon`` (angles, translation) have zero weights and fixed biases (a
small rotation, zero translation), and the 68-point template puts the five alignment points
where a face has them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from scipy.io import savemat

from engine.hrn_official import bfm, layout
from engine.hrn_official.deretouch import DeRetouchUNet
from engine.hrn_official.net_recon import ReconNet
from engine.hrn_official.pix2pix import high_net, mid_net


def _randomise_bn(module: torch.nn.Module, gen: torch.Generator) -> None:
    """Give BatchNorm layers non-trivial running statistics (as a trained net has)."""
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
            m.num_batches_tracked.fill_(1000)


#: Rotation angles (x, y, z; radians) the fake ``net_recon`` always predicts.
FAKE_ANGLES = (0.1, -0.25, 0.05)


def hrn_checkpoint_content(seed: int = 0, train_state: bool = False) -> dict:
    """The dict ``epoch_10.pth`` holds: three state dicts + alpha, beta ((1,) float32).
    ``net_recon`` predicts the fixed pose :data:`FAKE_ANGLES` and zero translation."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    recon = ReconNet()
    _randomise_bn(recon, gen)
    with torch.no_grad():
        for head in (3, 5, 6):                      # angles, translation xy, translation z
            recon.final_layers[head].weight.zero_()
            recon.final_layers[head].bias.zero_()
        recon.final_layers[3].bias.copy_(torch.tensor(FAKE_ANGLES))
    content = {"net_recon": recon.state_dict(), "mid_net": mid_net().state_dict(),
               "high_net": high_net().state_dict(),
               "alpha": torch.tensor([0.37], dtype=torch.float32),
               "beta": torch.tensor([0.21], dtype=torch.float32)}
    if train_state:
        content["opt_00"] = {"state": {}, "param_groups": [{"lr": 1e-4, "params": [0, 1]}]}
        content["sched_00"] = {"step_size": 10, "gamma": 0.1, "last_epoch": 10}
    return content


def write_hrn_checkpoint(path: Path, seed: int = 0, train_state: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(hrn_checkpoint_content(seed, train_state), path)
    return path


def write_deretouch(path: Path, seed: int = 1) -> Path:
    torch.manual_seed(seed)
    net = DeRetouchUNet()
    _randomise_bn(net, torch.Generator().manual_seed(seed))
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"generator": net.state_dict()}, path)
    return path


def ring_disk_mesh() -> tuple[np.ndarray, np.ndarray]:
    """A triangulated disk with exactly the BFM front counts (35 709 vertices, 70 789
    triangles, 627 boundary vertices, every vertex in 1..8 triangles), as concentric rings.

    Returns ``([N, 2] float64 positions in the unit disk, [F, 3] int64 0-based triangles)``,
    counter-clockwise seen from +z.
    """
    sizes = [597] + [627] * 56                       # 35 709 vertices, outer ring 627
    starts = np.cumsum([0] + sizes[:-1])
    pos = []
    for k, (n, s) in enumerate(zip(sizes, starts)):
        r = 0.15 + 0.85 * k / (len(sizes) - 1)
        ang = 2 * np.pi * (np.arange(n) + 0.5 * (k % 2)) / n
        pos.append(np.stack([r * np.cos(ang), r * np.sin(ang)], 1))
    pos = np.concatenate(pos)
    tris = []
    n0 = sizes[0]                                   # zig-zag strip fills the innermost ring
    lo, hi = 0, n0 - 1
    while hi - lo > 1:
        tris.append((lo, lo + 1, hi)); lo += 1
        if hi - lo > 1:
            tris.append((lo, hi - 1, hi)); hi -= 1
    for k in range(len(sizes) - 1):                 # bands between consecutive rings
        a, b, sa, sb = sizes[k], sizes[k + 1], starts[k], starts[k + 1]
        ang_a = (np.arange(a + 1) + 0.5 * (k % 2)) / a
        ang_b = (np.arange(b + 1) + 0.5 * ((k + 1) % 2)) / b
        i = j = 0
        while i < a or j < b:
            if j >= b or (i < a and ang_a[i + 1] < ang_b[j + 1]):
                tris.append((sa + i % a, sa + (i + 1) % a, sb + j % b)); i += 1
            else:
                tris.append((sa + i % a, sb + (j + 1) % b, sb + j % b)); j += 1
    tris = np.asarray(tris, dtype=np.int64)
    e1, e2 = pos[tris[:, 1]] - pos[tris[:, 0]], pos[tris[:, 2]] - pos[tris[:, 0]]
    flip = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0] < 0
    tris[flip] = tris[flip][:, [0, 2, 1]]
    return pos, tris


def bfm_fields(seed: int = 2) -> dict[str, np.ndarray]:
    """Every field of ``BFM_model_front.mat`` with the real shapes and on-disk dtypes."""
    rng = np.random.default_rng(seed)
    disk, tri = ring_disk_mesh()
    n, f = len(disk), len(tri)
    assert (n, f) == (bfm.NUM_VERTICES, bfm.NUM_FACES)
    # A dome ~1.8 x 2.2 dm, bulging towards the camera (+z), off-centre so recentering matters.
    rr = (disk ** 2).sum(1)
    shape = np.stack([disk[:, 0] * 0.9, disk[:, 1] * 1.1, 0.6 * np.sqrt(1.0 - 0.9 * rr)], 1) + [0.05, 0.1, 0.3]
    adj = [[] for _ in range(n)]
    for t, corners in enumerate(tri):
        for v in corners:
            adj[v].append(t)
    assert max(map(len, adj)) <= 8
    point_buf = np.full((n, 8), f + 1, np.float32)
    for v, faces in enumerate(adj):
        point_buf[v, :len(faces)] = np.asarray(faces) + 1
    front = np.flatnonzero(rr < 0.5)
    inside = np.isin(tri, front).all(1)
    remap = np.full(n, -1)
    remap[front] = np.arange(len(front))
    tri_mask2 = remap[tri[inside]] + 1
    center = np.flatnonzero(rr < 0.3)
    return {
        "meanshape": shape.reshape(1, -1).astype(np.float32),
        "meantex": rng.uniform(40, 220, (1, 3 * n)).astype(np.float32),
        "idBase": (rng.standard_normal((3 * n, 80)) * 3e-3).astype(np.float32),
        "exBase": rng.standard_normal((3 * n, 64)) * 3e-3,                       # float64
        "texBase": (rng.standard_normal((3 * n, 80)) * 8).astype(np.float32),
        "tri": (tri + 1).astype(np.float32),
        "point_buf": point_buf,
        "tri_mask2": tri_mask2.astype(np.float32),
        "keypoints": (rng.choice(center, 68, replace=False) + 1).reshape(1, 68).astype(np.float32),
        "frontmask2_idx": (front + 1).reshape(-1, 1).astype(np.float32),
        "skinmask": (rr < 0.6).astype(np.float32).reshape(1, -1),
        "_uv": 0.5 + 0.48 * disk,                    # not a .mat field: the matching UVs
    }


def write_face_model_files(root: Path, paths: dict[str, str], seed: int = 2) -> dict[str, np.ndarray]:
    """Write BFM .mat, landmark template, UVs, template obj and albedo basis under ``root``
    at the layout paths ``paths[key]``. Returns the BFM fields written (plus ``_uv``)."""
    rng = np.random.default_rng(seed + 1)
    fields = bfm_fields(seed)
    p = {k: root / v for k, v in paths.items()}
    for path in p.values():
        path.parent.mkdir(parents=True, exist_ok=True)
    savemat(p["bfm"], {k: v for k, v in fields.items() if not k.startswith("_")})
    # 68-point template (float32, decimetres); the points the alignment uses sit where a face
    # has them (1-based: eye corners 37/40 and 43/46, nose tip 31, mouth corners 49/55).
    lm = np.concatenate([rng.uniform(-0.6, 0.6, (68, 2)), rng.uniform(-0.1, 0.2, (68, 1))], 1)
    for index, point in {37: (-0.43, 0.29, 0.1), 40: (-0.19, 0.29, 0.15), 43: (0.19, 0.29, 0.15),
                         46: (0.43, 0.29, 0.1), 31: (0.0, -0.05, 0.55), 49: (-0.25, -0.38, 0.22),
                         55: (0.25, -0.38, 0.22)}.items():
        lm[index - 1] = point
    savemat(p["lm3d"], {"lm": lm.astype(np.float32)})
    np.save(p["uvs"], fields["_uv"].astype(np.float64))
    verts = fields["meanshape"].reshape(-1, 3)
    tri = fields["tri"].astype(np.int64)
    with open(p["template_obj"], "w") as fh:
        fh.write("".join(f"v {x:.6f} {y:.6f} {z:.6f}\n" for x, y, z in verts))
        fh.write("".join(f"f {a} {b} {c}\n" for a, b, c in tri))
    size = bfm.ALBEDO_MAP_SIZE
    np.save(p["tex_mean"], rng.uniform(60, 200, (size, size, 3)).astype(np.float32))
    basis = np.lib.format.open_memmap(p["tex_basis"], mode="w+", dtype=np.float32, shape=(size, size, 3, 80))
    band = slice(size // 4, size // 2)              # rows left untouched stay sparse zeros
    basis[band] = rng.standard_normal((size // 4, size, 3, 80), dtype=np.float32) * 5
    basis.flush()
    del basis
    return fields


def write_official_tree(root: Path, modelscope: bool = False, train_state: bool = False) -> dict:
    """All needed official files under ``root`` in the GitHub tree or the flat ModelScope layout."""
    key = (lambda e: e.modelscope_path) if modelscope else (lambda e: e.github_path)
    paths = {e.key: key(e) for e in layout.FILES}
    write_hrn_checkpoint(root / paths["hrn"], train_state=train_state)
    write_deretouch(root / paths["deretouch"])
    return write_face_model_files(root, paths)
