"""UV-space rasterization: world2uv, map lookups at UV points, dilation."""
from __future__ import annotations

import pytest
import torch

from engine.uv.raster import UVRaster, dilate, rasterize_uv, sample_map

H, W = 12, 16


def texel_centres(height=H, width=W):
    """``[H, W, 2]`` UV of texel centres (row 0 at the top, v = 1)."""
    i, j = torch.meshgrid(torch.arange(height, dtype=torch.float64),
                          torch.arange(width, dtype=torch.float64), indexing="ij")
    return torch.stack([(j + 0.5) / width, 1 - (i + 0.5) / height], -1)


def island_layout():
    """Two UV islands (a quad and a triangle) with gaps between them; separate UV indices
    for the mesh's 5 vertices, as a seam would produce."""
    uvs = torch.tensor([[0.05, 0.05], [0.55, 0.08], [0.5, 0.6], [0.07, 0.52],   # quad island
                        [0.65, 0.3], [0.95, 0.35], [0.8, 0.95]], dtype=torch.float64)
    face_uvs = torch.tensor([[0, 1, 2], [0, 2, 3], [4, 5, 6]])
    faces = torch.tensor([[0, 1, 2], [0, 2, 3], [1, 4, 2]])   # mesh vertex indices
    return uvs, face_uvs, faces


def test_linear_function_of_uv_is_reproduced_at_texel_centres():
    uvs, face_uvs, faces = island_layout()
    raster = rasterize_uv(uvs, face_uvs, (H, W))
    assert isinstance(raster, UVRaster) and raster.size == (H, W)
    assert raster.triangle.dtype == torch.int64 and raster.barycentric.shape == (H, W, 3)
    # A per-UV-corner attribute linear in (u, v), stored per mesh vertex: build it through
    # a mesh whose vertices are the UV corners (face_uvs used as faces).
    attr = torch.stack([3 * uvs[:, 0] - uvs[:, 1] + 0.5, 2 * uvs[:, 1]], 1)
    out = raster.to_uv(attr, face_uvs)
    assert out.shape == (H, W, 2) and out.dtype == torch.float64
    uv = texel_centres()
    expected = torch.stack([3 * uv[..., 0] - uv[..., 1] + 0.5, 2 * uv[..., 1]], -1)
    cov = raster.coverage
    assert 40 < int(cov.sum()) < H * W
    torch.testing.assert_close(out[cov], expected[cov], atol=1e-6, rtol=0)
    assert (out[~cov] == 0).all()
    # Each covered texel lies inside its face's UV triangle (same-side test).
    corners = uvs[face_uvs[raster.triangle[cov]]]
    recon = (raster.barycentric[cov].double().unsqueeze(-1) * corners).sum(1)
    torch.testing.assert_close(recon, uv[cov], atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match=r"\[3, 3\]"):
        raster.to_uv(attr, faces[:2])


def test_rows_are_top_down_and_coverage_of_full_square():
    top = rasterize_uv([[0, 0.5], [1, 0.5], [0.5, 1]], [[0, 1, 2]], (H, W))
    rows = top.coverage.nonzero()[:, 0]
    assert len(rows) > 0 and rows.max() < H // 2                     # v > 0.5 is the top half
    full = rasterize_uv([[0, 0], [1, 0], [1, 1], [0, 1]], [[0, 1, 2], [0, 2, 3]], (H, W))
    assert full.coverage.all()


def test_to_uv_batched_and_differentiable():
    uvs, face_uvs, faces = island_layout()
    raster = rasterize_uv(uvs, face_uvs, (6, 8))
    attr = torch.rand(2, 5, 3, dtype=torch.float64, requires_grad=True)
    out = raster.to_uv(attr, faces)
    assert out.shape == (2, 6, 8, 3)
    torch.testing.assert_close(out[1], raster.to_uv(attr[1], faces))
    assert torch.autograd.gradcheck(lambda a: raster.to_uv(a, faces), (attr,))
    # The vertex only face 2 uses (vertex 4) shapes only texels of face 2.
    grad, = torch.autograd.grad(out[0, ..., 0].sum(), attr)
    on_face2 = raster.triangle == 2
    assert on_face2.any()
    assert grad[0, 4, 0] == pytest.approx(raster.barycentric[..., 1][on_face2].double().sum().item())


def test_sample_map_reads_texels_at_centres_and_clamps():
    uv_map = torch.rand(H, W, 3, dtype=torch.float64)
    uv = texel_centres().reshape(-1, 2)
    torch.testing.assert_close(sample_map(uv_map, uv), uv_map.reshape(-1, 3))
    # Halfway between texels (row 2, col 3) and (row 2, col 4): their mean.
    mid = torch.tensor([[4 / W, 1 - 2.5 / H]], dtype=torch.float64)
    torch.testing.assert_close(sample_map(uv_map, mid)[0], (uv_map[2, 3] + uv_map[2, 4]) / 2)
    corner = torch.tensor([[0.0, 1.0], [1.0, 0.0], [-0.3, 1.4]], dtype=torch.float64)
    torch.testing.assert_close(sample_map(uv_map, corner),
                               torch.stack([uv_map[0, 0], uv_map[-1, -1], uv_map[0, 0]]))


def test_sample_map_gradient():
    uv_map = torch.rand(4, 5, 2, dtype=torch.float64, requires_grad=True)
    uv = torch.tensor([[0.31, 0.27], [0.77, 0.58], [0.02, 0.93]], dtype=torch.float64,
                      requires_grad=True)
    assert torch.autograd.gradcheck(sample_map, (uv_map, uv))


def test_dilate_fills_a_border_ring_and_keeps_covered_texels():
    uv_map = torch.zeros(7, 7, 1, dtype=torch.float64)
    coverage = torch.zeros(7, 7, dtype=torch.bool)
    uv_map[3, 2:4, 0] = torch.tensor([2.0, 4.0])
    coverage[3, 2:4] = True
    out = dilate(uv_map, coverage, 1)
    assert out[3, 2, 0] == 2.0 and out[3, 3, 0] == 4.0
    assert out[3, 1, 0] == 2.0 and out[3, 4, 0] == 4.0               # one neighbour each
    assert out[2, 2, 0] == 3.0 and out[4, 3, 0] == 3.0               # mean of both
    assert out[3, 0, 0] == 0.0 and out[0, 0, 0] == 0.0               # beyond one step
    assert dilate(uv_map, coverage, 2)[3, 0, 0] == 2.0
    grown = dilate(uv_map.requires_grad_(True), coverage, 3)
    grown.sum().backward()
    assert uv_map.grad[3, 2, 0] > 1 and uv_map.grad[0, 0, 0] == 0
