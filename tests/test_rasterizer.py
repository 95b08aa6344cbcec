"""Torch rasterizer backend: nvdiffrast conventions, visibility, and gradients."""
from __future__ import annotations

import itertools

import pytest
import torch

from engine import render
from engine.errors import DeviceError
from engine.render import torch_raster

CTX = render.TorchRasterContext()


def tri32(rows):
    return torch.tensor(rows, dtype=torch.int32)


def clip(xy, z=0.0, w=1.0, dtype=torch.float32):
    """[V, 4] clip positions from NDC xy, scaled by w so that x/w, y/w are ``xy``."""
    xy = torch.as_tensor(xy, dtype=torch.float64)
    n = xy.shape[0]
    z = torch.as_tensor(z, dtype=torch.float64).expand(n)
    w = torch.as_tensor(w, dtype=torch.float64).expand(n)
    return torch.stack([xy[:, 0] * w, xy[:, 1] * w, z * w, w], 1).to(dtype)


def pixel_ndc(row, col, height, width):
    return (2 * col + 1) / width - 1.0, (2 * row + 1) / height - 1.0


def brute_force(pos, tri, height, width):
    """Reference: per pixel, the nearest triangle whose interior holds the centre, and its
    perspective-correct (u, v), by direct float64 evaluation. Ids are 0 where empty."""
    pos = pos.double()
    ids = torch.zeros(height, width, dtype=torch.long)
    uv = torch.zeros(height, width, 2, dtype=torch.float64)
    best = torch.full((height, width), float("inf"), dtype=torch.float64)
    for t, (a, b, c) in enumerate(tri.long().tolist()):
        p = pos[[a, b, c]]
        ndc = p[:, :2] / p[:, 3:]
        for row, col in itertools.product(range(height), range(width)):
            x, y = pixel_ndc(row, col, height, width)
            d = ndc - torch.tensor([x, y], dtype=torch.float64)
            e = torch.stack([d[1, 0] * d[2, 1] - d[1, 1] * d[2, 0],
                             d[2, 0] * d[0, 1] - d[2, 1] * d[0, 0],
                             d[0, 0] * d[1, 1] - d[0, 1] * d[1, 0]])
            if not ((e > 0).all() or (e < 0).all()):
                continue
            screen = e / e.sum()
            persp = screen / p[:, 3]
            persp = persp / persp.sum()
            depth = (screen * p[:, 2] / p[:, 3]).sum()
            if depth < best[row, col]:
                best[row, col], ids[row, col] = depth, t + 1
                uv[row, col] = persp[:2]
    return ids, uv


# ----- conventions -------------------------------------------------------------------------

def test_single_triangle_coverage_barycentrics_depth_and_id():
    pos = clip([[-0.8, -0.8], [0.8, -0.8], [-0.8, 0.8]], z=0.25)
    rast, _ = render.rasterize(CTX, pos.unsqueeze(0), tri32([[0, 1, 2]]), (8, 8))
    assert rast.shape == (1, 8, 8, 4) and rast.dtype == torch.float32
    # Pixel (row 1, col 1) has centre (-0.625, -0.625): weights of vertices 1 and 2 are
    # (x + 0.8) / 1.6 and (y + 0.8) / 1.6; u belongs to the first vertex, v to the second.
    u, v, zw, tid = rast[0, 1, 1].tolist()
    assert u == pytest.approx(1 - 2 * 0.175 / 1.6, abs=1e-6)
    assert v == pytest.approx(0.175 / 1.6, abs=1e-6)
    assert zw == pytest.approx(0.25, abs=1e-6)
    assert tid == 1.0
    assert (rast[0, 0] == 0).all() and (rast[0, :, 0] == 0).all()   # outside: all zeros
    assert rast[0, 6, 6].abs().sum() == 0                            # beyond the hypotenuse
    assert int((rast[..., 3] > 0).sum()) == 15                       # 5 + 4 + 3 + 2 + 1 centres


def test_perspective_correct_barycentrics_and_depth():
    # A triangle with very different w per vertex: interpolating clip coordinates with the
    # barycentrics must land on the pixel centre after the divide, and z/w must match.
    pos = clip([[-0.9, -0.7], [0.8, -0.9], [0.1, 0.9]], z=[0.2, -0.5, 0.6], w=[0.5, 2.0, 4.0])
    tri = tri32([[0, 1, 2]])
    rast, _ = render.rasterize(CTX, pos.unsqueeze(0), tri, (16, 16))
    interp, _ = render.interpolate(pos, rast, tri)
    rows, cols = (rast[0, ..., 3] > 0).nonzero().unbind(1)
    assert len(rows) > 50
    x, y = pixel_ndc(rows.double(), cols.double(), 16, 16)
    p = interp[0, rows, cols].double()
    torch.testing.assert_close(p[:, 0] / p[:, 3], x, atol=1e-5, rtol=0)
    torch.testing.assert_close(p[:, 1] / p[:, 3], y, atol=1e-5, rtol=0)
    torch.testing.assert_close(rast[0, rows, cols, 2].double(), p[:, 2] / p[:, 3], atol=1e-5, rtol=0)


def test_rows_are_bottom_up():
    pos = clip([[-0.5, 0.2], [0.5, 0.2], [0.0, 0.9]])                  # top half of clip space
    rast, _ = render.rasterize(CTX, pos.unsqueeze(0), tri32([[0, 1, 2]]), (16, 16))
    rows = (rast[0, ..., 3] > 0).nonzero()[:, 0]
    assert len(rows) > 0 and rows.min() >= 8


def test_matches_brute_force_on_random_scene():
    gen = torch.Generator().manual_seed(3)
    xy = torch.rand(30, 2, generator=gen) * 2.4 - 1.2
    w = torch.rand(30, generator=gen) * 2 + 0.5
    z = torch.rand(30, generator=gen) * 1.6 - 0.8
    pos = clip(xy, z=z, w=w)
    tri = torch.randint(0, 30, (25, 3), generator=gen, dtype=torch.int32)
    rast, _ = render.rasterize(CTX, pos.unsqueeze(0), tri, (12, 14))
    ids, uv = brute_force(pos, tri, 12, 14)
    assert (ids > 0).sum() > 40
    assert torch.equal(rast[0, ..., 3].long(), ids)
    torch.testing.assert_close(rast[0, ..., :2].double(), uv, atol=1e-4, rtol=0)


# ----- visibility --------------------------------------------------------------------------

@pytest.mark.parametrize("flip_second", [False, True])
def test_adjacent_triangles_have_no_cracks_or_overlap(flip_second):
    # A grid of quads whose vertices sit on pixel centres and whose diagonals cross many
    # centres: every centre strictly inside the grid must belong to exactly one triangle.
    h = w = 24
    coords = (torch.tensor([2, 9, 21]) * 2 + 1) / w - 1.0                       # on centres
    verts = [[x, y] for y in coords.tolist() for x in coords.tolist()]
    tris = []
    for i, j in itertools.product(range(2), range(2)):
        a, b, c, d = 3 * i + j, 3 * i + j + 1, 3 * i + j + 3, 3 * i + j + 4
        tris += [[a, b, d], [a, c, d] if flip_second else [a, d, c]]
    pos = clip(verts, z=0.0)
    counts = torch.zeros(h, w, dtype=torch.long)
    for t in tris:
        rast, _ = render.rasterize(CTX, pos.unsqueeze(0), tri32([t]), (h, w))
        counts += (rast[0, ..., 3] > 0).long()
    lo, hi = coords[0], coords[-1]
    cols = (torch.arange(w) * 2 + 1) / w - 1
    rows = (torch.arange(h) * 2 + 1) / h - 1
    strictly_inside = ((rows > lo + 1e-6) & (rows < hi - 1e-6)).unsqueeze(1) \
        & ((cols > lo + 1e-6) & (cols < hi - 1e-6)).unsqueeze(0)
    assert (counts <= 1).all()
    assert (counts[strictly_inside] == 1).all()
    rast, _ = render.rasterize(CTX, pos.unsqueeze(0), tri32(tris), (h, w))
    assert torch.equal(rast[0, ..., 3] > 0, counts == 1)


def test_nearer_triangle_wins_in_either_order():
    near = clip([[-1, -1], [1, -1], [0, 1]], z=-0.2)
    far = clip([[-1, 1], [1, 1], [0, -1]], z=0.4)
    pos = torch.cat([far, near]).unsqueeze(0)
    for tri in (tri32([[0, 1, 2], [3, 4, 5]]), tri32([[3, 4, 5], [0, 1, 2]])):
        rast, _ = render.rasterize(CTX, pos, tri, (16, 16))
        near_id = 1 + int((tri[:, 0] == 3).nonzero())
        both = rast[0, 7:9, 6:10]                     # middle: both triangles cover it
        assert (both[..., 3] == near_id).all()
        torch.testing.assert_close(both[..., 2], torch.full_like(both[..., 2], -0.2))


def test_near_far_and_behind_camera_are_discarded():
    tri = tri32([[0, 1, 2]])
    behind = clip([[-1, -1], [1, -1], [0, 1]], w=[1.0, 1.0, -0.5])
    assert render.rasterize(CTX, behind.unsqueeze(0), tri, (8, 8))[0].abs().sum() == 0
    # z/w from -1.5 at the bottom to 1.5 at the top: only the middle band is kept.
    slanted = torch.tensor([[-3, -1, -1.5, 1], [3, -1, -1.5, 1], [0, 3, 4.5, 1]])
    rast, _ = render.rasterize(CTX, slanted.unsqueeze(0), tri, (16, 16))
    kept = rast[0, ..., 3] > 0
    assert kept[4:12].all() and not kept[:2].any() and not kept[14:].any()
    assert (rast[0, ..., 2][kept].abs() <= 1).all()


def test_big_triangles_and_chunking(monkeypatch):
    pos = torch.cat([clip([[-50, -50], [60, -40], [-5, 80]], z=0.1),
                     clip([[-0.3, -0.3], [0.5, -0.2], [0.1, 0.6]], z=-0.1),
                     clip([[-0.9, 0.5], [-0.8, 0.52], [-0.85, 0.6]], z=-0.3)]).unsqueeze(0)
    tri = tri32([[0, 1, 2], [3, 4, 5], [6, 7, 8]])
    reference, reference_db = render.rasterize(CTX, pos, tri, (64, 48))
    assert (reference[0, ..., 3] > 0).all()                          # full-screen triangle
    assert set(reference[0, ..., 3].unique().tolist()) == {1.0, 2.0, 3.0}
    monkeypatch.setattr(torch_raster, "_CHUNK", 16)                 # tile rows, many chunks
    rast, rast_db = render.rasterize(CTX, pos, tri, (64, 48))
    assert torch.equal(rast, reference) and torch.equal(rast_db, reference_db)


def test_instanced_batch_and_range_mode():
    a = clip([[-0.9, -0.9], [0.9, -0.9], [0.0, 0.9]], z=0.1)
    b = clip([[-0.5, 0.9], [0.5, 0.9], [0.0, -0.9]], z=0.3)
    tri = tri32([[0, 1, 2], [2, 1, 0]])
    batch, _ = render.rasterize(CTX, torch.stack([a, b]), tri, (10, 12))
    for i, p in enumerate((a, b)):
        single, _ = render.rasterize(CTX, p.unsqueeze(0), tri, (10, 12))
        assert torch.equal(batch[i], single[0])
    # Range mode: one [V, 4] buffer, each image draws its own slice of tri; ids stay global.
    pos = torch.cat([a, b])
    tri_all = tri32([[0, 1, 2], [3, 4, 5], [3, 5, 4]])
    ranges = torch.tensor([[0, 1], [1, 2]], dtype=torch.int32)
    rast, _ = render.rasterize(CTX, pos, tri_all, (10, 12), ranges=ranges)
    assert rast.shape == (2, 10, 12, 4)
    assert set(rast[0, ..., 3].unique().tolist()) == {0.0, 1.0}
    assert set(rast[1, ..., 3].unique().tolist()) == {0.0, 2.0}      # equal depth: lower id
    only_b, _ = render.rasterize(CTX, b.unsqueeze(0), tri32([[0, 1, 2]]), (10, 12))
    torch.testing.assert_close(rast[1, ..., :3], only_b[0, ..., :3])


def test_rejects_bad_inputs():
    pos = clip([[-1, -1], [1, -1], [0, 1]]).unsqueeze(0)
    with pytest.raises(ValueError, match="int32"):
        render.rasterize(CTX, pos, torch.tensor([[0, 1, 2]]), (4, 4))
    with pytest.raises(ValueError, match=r"\[B, V, 4\]"):
        render.rasterize(CTX, pos[..., :3], tri32([[0, 1, 2]]), (4, 4))


# ----- interpolate, texture, antialias -------------------------------------------------------

def test_interpolate_values_and_pixel_derivatives():
    pos = clip([[-0.8, -0.8], [0.8, -0.8], [-0.8, 0.8]]).unsqueeze(0)
    tri = tri32([[0, 1, 2]])
    rast, rast_db = render.rasterize(CTX, pos, tri, (8, 8))
    # Attribute = (NDC x, 3 * NDC y): exact affine function of the screen, so its pixel
    # derivatives are 2/W and 3 * 2/H everywhere on the triangle.
    attr = pos[0, :, :2] * torch.tensor([1.0, 3.0])
    out, out_da = render.interpolate(attr, rast, tri, rast_db, diff_attrs="all")
    x, y = pixel_ndc(1, 2, 8, 8)
    torch.testing.assert_close(out[0, 1, 2], torch.tensor([x, 3 * y]))
    assert out_da.shape == (1, 8, 8, 4)
    covered = rast[0, ..., 3] > 0
    expected = torch.tensor([2 / 8, 0.0, 0.0, 6 / 8])
    torch.testing.assert_close(out_da[0][covered], expected.expand(int(covered.sum()), 4))
    assert (out[0][~covered] == 0).all() and (out_da[0][~covered] == 0).all()
    _, selected = render.interpolate(attr, rast, tri, rast_db, diff_attrs=[-1])
    torch.testing.assert_close(selected, out_da[..., 2:])
    assert render.interpolate(attr, rast, tri)[1].shape == (1, 8, 8, 0)


def test_texture_conventions_and_boundaries():
    tex = torch.arange(12.0).view(1, 3, 4, 1)                        # value = 4 * row + col
    centres = torch.tensor([[[[0.625, 0.5], [0.125, 1 / 6]]]])      # (col 2, row 1), (col 0, row 0)
    for mode in ("linear", "nearest", "auto"):
        out = render.texture(tex, centres, filter_mode=mode)
        assert out.flatten().tolist() == pytest.approx([6.0, 0.0])
    halfway = torch.tensor([[[[0.25, 0.5]]]])                        # between cols 0 and 1, row 1
    assert render.texture(tex, halfway).item() == pytest.approx(4.5)
    outside = torch.tensor([[[[1.125, -0.2]]]])                      # beyond right / bottom edge
    assert render.texture(tex, outside, boundary_mode="clamp").item() == pytest.approx(3.0)
    assert render.texture(tex, outside, filter_mode="nearest", boundary_mode="wrap").item() \
        == pytest.approx(8.0)                                        # wraps to (col 0, row 2)
    assert render.texture(tex, torch.tensor([[[[0.125, -0.5]]]]), boundary_mode="zero").item() == 0.0
    with pytest.raises(NotImplementedError, match="mipmap"):
        render.texture(tex, centres, filter_mode="linear-mipmap-linear")
    with pytest.raises(ValueError, match="boundary_mode"):
        render.texture(tex, centres, boundary_mode="mirror")


def test_texture_batches():
    tex = torch.stack([torch.zeros(2, 2, 1), torch.ones(2, 2, 1)])   # [2, 2, 2, 1]
    uv = torch.full((2, 3, 3, 2), 0.4)
    assert render.texture(tex, uv).flatten(1).tolist() == [[0.0] * 9, [1.0] * 9]
    assert (render.texture(tex[1:], uv) == 1).all()                 # batch 1 broadcasts
    with pytest.raises(ValueError, match="batch"):
        render.texture(torch.zeros(3, 2, 2, 1), uv)


def test_antialias_is_a_documented_pass_through():
    color = torch.rand(1, 4, 4, 3)
    rast = torch.zeros(1, 4, 4, 4)
    assert render.antialias(color, rast, torch.zeros(1, 3, 4), tri32([[0, 1, 2]])) is color


# ----- gradients (float64, finite differences) ---------------------------------------------

def test_gradcheck_positions_through_rasterize_and_interpolate():
    base = clip([[-0.71, -0.77], [0.83, -0.62], [-0.12, 0.79]], z=[0.1, 0.3, -0.2],
                w=[1.0, 1.5, 0.8], dtype=torch.float64).unsqueeze(0)
    tri = tri32([[0, 1, 2]])
    attr = torch.tensor([[1.0, 0.0], [0.5, 2.0], [-1.0, 1.0]], dtype=torch.float64)

    def f(pos):
        rast, rast_db = render.rasterize(CTX, pos, tri, (6, 6))
        out, out_da = render.interpolate(attr, rast, tri, rast_db, diff_attrs="all")
        return rast[..., :2], rast_db, out, out_da

    assert torch.autograd.gradcheck(f, (base.clone().requires_grad_(True),), eps=1e-6, atol=1e-5)
    pos = base.clone().requires_grad_(True)
    rast, rast_db = render.rasterize(CTX, pos, tri, (6, 6), grad_db=False)
    (rast[..., 2].sum() + rast_db.sum()).backward()                 # z/w never passes gradient
    assert pos.grad is None or (pos.grad == 0).all()


def test_gradcheck_attributes():
    pos = clip([[-0.9, -0.8], [0.9, -0.7], [0.1, 0.9], [0.95, 0.9]], w=[1.0, 2.0, 1.5, 1.0],
               dtype=torch.float64).unsqueeze(0)
    tri = tri32([[0, 1, 2], [1, 3, 2]])
    rast, rast_db = render.rasterize(CTX, pos, tri, (5, 5))
    attr = torch.rand(2, 4, 3, dtype=torch.float64, requires_grad=True)
    rast2 = torch.cat([rast, rast])
    db2 = torch.cat([rast_db, rast_db])
    assert torch.autograd.gradcheck(
        lambda a: render.interpolate(a, rast2, tri, db2, diff_attrs=[0, 2]), (attr,))


@pytest.mark.parametrize("boundary", ["wrap", "clamp", "zero"])
def test_gradcheck_texture_and_uv(boundary):
    gen = torch.Generator().manual_seed(0)
    tex = torch.rand(1, 4, 5, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    # Keep samples off texel-centre lines, where bilinear weights have kinks.
    uv = torch.tensor([[[[0.23, 0.41], [0.87, 0.66], [1.31, -0.2], [0.52, 0.97]]]],
                      dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda t, c: render.texture(t, c, filter_mode="linear", boundary_mode=boundary), (tex, uv))


# ----- backend selection ----------------------------------------------------------------------

def test_make_context():
    assert isinstance(render.make_context("cpu"), render.TorchRasterContext)
    assert isinstance(render.make_context("cpu", backend="torch"), render.TorchRasterContext)
    with pytest.raises(ValueError, match="auto, torch, nvdiffrast"):
        render.make_context("cpu", backend="opengl")
    with pytest.raises(DeviceError):
        render.make_context("cpu", backend="nvdiffrast")   # missing, or not a CUDA device
    if not render.nvdiffrast_available():
        with pytest.raises(DeviceError, match="pip install"):
            render.make_context("cpu", backend="nvdiffrast")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="CPU device"):
            render.make_context("cuda")
