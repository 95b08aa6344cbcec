"""Differentiable rasterization with nvdiffrast's torch API, on CPU (pure torch) or nvdiffrast.

Usage, identical on both backends::

    from engine import render
    ctx = render.make_context(device)
    rast, rast_db = render.rasterize(ctx, pos_clip, tri, (H, W))
    color, _ = render.interpolate(vertex_colors, rast, tri)
    color = render.antialias(color, rast, pos_clip, tri)

Where the torch backend differs from nvdiffrast (all documented at the function):
``antialias`` is a pass-through (no silhouette gradients); ``texture`` has no mipmaps or cube
maps ('auto' means 'linear'); triangles with a vertex at ``w <= 0`` are dropped instead of
clipped; ``pos`` may also be float64 (for gradient checks).

Modules: ``context`` (backend choice), ``ops`` (the dispatching verbs), ``torch_raster`` and
``torch_shading`` (the pure-torch backend, also the reference implementation), and ``view``
(the posed head rendered into a square crop of the photo; imported as
``engine.render.view``, not re-exported here).
"""
from .context import BACKENDS, TorchRasterContext, make_context, nvdiffrast_available
from .ops import antialias, interpolate, rasterize, texture

__all__ = ["BACKENDS", "TorchRasterContext", "antialias", "interpolate", "make_context",
           "nvdiffrast_available", "rasterize", "texture"]
