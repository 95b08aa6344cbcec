"""Time the torch rasterizer: rasterize + interpolate, forward and forward+backward.

Renders 40k- and 80k-triangle UV spheres filling most of the frame (both hemispheres
rasterize, as there is no culling) and prints milliseconds per call at 256² and 512².
With ``--compare-nvdiffrast`` (needs CUDA and nvdiffrast) it instead checks the torch
backend against nvdiffrast on the same scenes: triangle-id agreement, (u, v, z/w) and
rast_db differences, and PASS/FAIL against :data:`TOLERANCE` for the interpolated attributes
and the position gradients.

Run from the repository root: ``python -m bench.bench_rasterizer [--threads N] [--repeats N]
[--compare-nvdiffrast]``.
"""
from __future__ import annotations

import argparse
import math
import statistics
import time

import torch

from engine import render
from engine.conventions import camera_to_clip


def uv_sphere(n_lat: int = 100, n_lon: int = 200) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit sphere ``[V, 3]`` float32 and ``[2 * n_lat * n_lon, 3]`` int32 triangles."""
    theta = torch.linspace(0, math.pi, n_lat + 1)
    phi = torch.arange(n_lon) * (2 * math.pi / n_lon)
    t, p = torch.meshgrid(theta, phi, indexing="ij")
    verts = torch.stack([t.sin() * p.cos(), t.cos(), t.sin() * p.sin()], -1).reshape(-1, 3)
    i, j = torch.meshgrid(torch.arange(n_lat), torch.arange(n_lon), indexing="ij")
    a = i * n_lon + j
    b = i * n_lon + (j + 1) % n_lon
    c, d = a + n_lon, b + n_lon
    tri = torch.cat([torch.stack([a, c, b], -1), torch.stack([b, c, d], -1)]).reshape(-1, 3)
    return verts, tri.int()


def time_call(fn, repeats: int) -> str:
    """``"best / median ms"`` over ``repeats`` calls after a warm-up (on a shared machine the
    best is the cost of the code, the median what a run saw)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000.0)
    return f"{min(times):6.1f} / {statistics.median(times):6.1f} ms"


def sphere_clip(verts: torch.Tensor, size: int) -> torch.Tensor:
    """``[1, V, 4]`` clip positions of the unit sphere 3 m in front of a camera whose
    image it mostly fills."""
    cam = verts + torch.tensor([0.0, 0.0, -3.0])
    return camera_to_clip(cam, focal_px=1.2 * size, principal_px=(size / 2, size / 2),
                          image_size=(size, size)).unsqueeze(0).contiguous()


def bench(verts: torch.Tensor, tri: torch.Tensor, size: int, repeats: int) -> None:
    ctx = render.make_context("cpu", backend="torch")
    pos = sphere_clip(verts, size).requires_grad_(True)
    colors = (verts * 0.5 + 0.5).requires_grad_(True)
    weights = torch.rand(1, size, size, 3)

    def raster_only():
        with torch.no_grad():
            render.rasterize(ctx, pos, tri, (size, size))

    def forward():
        with torch.no_grad():
            rast, _ = render.rasterize(ctx, pos, tri, (size, size))
            render.interpolate(colors, rast, tri)

    def forward_backward():
        rast, _ = render.rasterize(ctx, pos, tri, (size, size))
        out, _ = render.interpolate(colors, rast, tri)
        (out * weights).sum().backward()

    rast, _ = render.rasterize(ctx, pos, tri, (size, size))
    coverage = (rast[..., 3] > 0).float().mean().item()
    print(f"{tri.shape[0]} triangles at {size}x{size}, {coverage:.0%} of pixels covered (best / median):")
    print(f"  rasterize forward               {time_call(raster_only, repeats)}")
    print(f"  rasterize+interpolate forward   {time_call(forward, repeats)}")
    print(f"  rasterize+interpolate fwd+bwd   {time_call(forward_backward, repeats)}")


#: What "the same results" means for the two backends (issue 5), judged on what the engine
#: uses: the interpolated attributes (continuous across edges, so a pixel centre on a shared
#: edge going to the other triangle barely matters; nvdiffrast also snaps vertices to a
#: sub-pixel grid) and the position gradients. Triangle ids and barycentrics are reported.
TOLERANCE = {"attribute_mean": 1e-3, "attribute_p99": 1e-2, "gradient": 5e-2}


def compare_with_nvdiffrast(verts: torch.Tensor, tri: torch.Tensor, size: int) -> None:
    """Print how far the torch backend (CPU) is from nvdiffrast (CUDA) on one scene, and
    whether it is within :data:`TOLERANCE`."""
    results = {}
    weights = torch.rand(1, size, size, 3)
    for name, ctx, device in (("torch", render.make_context("cpu", backend="torch"), "cpu"),
                              ("nvdiffrast", render.make_context("cuda", backend="nvdiffrast"), "cuda")):
        pos = sphere_clip(verts, size).to(device).requires_grad_(True)
        rast, rast_db = render.rasterize(ctx, pos, tri.to(device), (size, size))
        out, _ = render.interpolate((verts * 0.5 + 0.5).to(device), rast, tri.to(device))
        (out * weights.to(device)).sum().backward()
        results[name] = (rast.detach().cpu(), rast_db.detach().cpu(), out.detach().cpu(), pos.grad.cpu())
    (ra, da, oa, ga), (rb, db, ob, gb) = results["torch"], results["nvdiffrast"]
    same = ra[..., 3] == rb[..., 3]
    both = same & (ra[..., 3] > 0)
    covered = (ra[..., 3] > 0) & (rb[..., 3] > 0)
    attr = (oa - ob)[covered].abs()
    figures = {"attribute_mean": float(attr.mean()), "attribute_p99": float(attr.flatten().quantile(0.99)),
               "gradient": float((ga - gb).norm() / gb.norm())}
    print(f"{tri.shape[0]} triangles at {size}x{size}: triangle id differs on "
          f"{float((~same).sum() / max(1, int(covered.sum())) ):.4%} of covered pixels; where ids agree, "
          f"max |diff| u,v {(ra - rb)[both][:, :2].abs().max():.2e}, z/w {(ra - rb)[both][:, 2].abs().max():.2e}, "
          f"rast_db {(da - db)[both].abs().max():.2e}")
    for name, limit in TOLERANCE.items():
        print(f"  {'PASS' if figures[name] <= limit else 'FAIL'} {name} {figures[name]:.3e} (tolerance {limit:.0e})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--compare-nvdiffrast", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads")
    for n_lat, n_lon in ((100, 200), (141, 284)):
        verts, tri = uv_sphere(n_lat, n_lon)
        for size in (256, 512):
            if args.compare_nvdiffrast:
                compare_with_nvdiffrast(verts, tri, size)
            else:
                bench(verts, tri, size, args.repeats)


if __name__ == "__main__":
    main()
