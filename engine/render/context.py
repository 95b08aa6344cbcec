"""Choosing the rasterizer backend: our torch rasterizer or, where present, nvdiffrast.

nvdiffrast (NVlabs) is an optional accelerator the user installs themselves: it is not on
PyPI, needs the CUDA toolkit to build, and its licence allows non-commercial use only, so it
is never bundled or required. When ``nvdiffrast.torch`` imports and the device is CUDA,
:func:`make_context` returns its ``RasterizeCudaContext``; otherwise a
:class:`TorchRasterContext`. The context passed to ``rasterize`` decides that call's backend.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from ..errors import DeviceError

BACKENDS = ("auto", "torch", "nvdiffrast")

NVDIFFRAST_INSTALL_HINT = (
    "nvdiffrast is an optional GPU accelerator that is not installed. Install it into this "
    "Python environment with a CUDA build of torch and the CUDA toolkit: "
    "`pip install --no-build-isolation git+https://github.com/NVlabs/nvdiffrast` "
    "(non-commercial licence), or choose the 'torch' backend.")


@dataclass(frozen=True)
class TorchRasterContext:
    """Context of the pure-torch rasterizer: plays the part of nvdiffrast's
    ``RasterizeCudaContext``. Runs on any device; the CPU path of the engine."""

    device: torch.device = torch.device("cpu")
    """Device the context was made for (inputs decide where work actually runs)."""
    output_db = True
    """Like nvdiffrast's contexts: ``rasterize`` returns pixel derivatives of (u, v)."""


@functools.lru_cache(maxsize=None)
def _nvdiffrast_module():
    """``nvdiffrast.torch`` or None; imported once (a failed import is slow to repeat)."""
    try:
        import nvdiffrast.torch as dr
    except ImportError:
        return None
    return dr


def nvdiffrast_available() -> bool:
    """Whether ``nvdiffrast.torch`` imports in this environment (it needs CUDA to run)."""
    return _nvdiffrast_module() is not None


@functools.lru_cache(maxsize=None)
def _nvdiffrast_context(device: torch.device):
    # One context per device, as creating one allocates GPU buffers.
    return _nvdiffrast_module().RasterizeCudaContext(device=device)


def make_context(device: str | torch.device = "cpu", backend: str = "auto"):
    """Rasterizer context for ``device``.

    Args:
        device: where rendering runs, e.g. ``"cpu"`` or ``"cuda:0"``.
        backend: ``"auto"`` (nvdiffrast on a CUDA device when it imports, else torch),
            ``"torch"`` or ``"nvdiffrast"``.

    Returns:
        ``nvdiffrast.torch.RasterizeCudaContext`` or :class:`TorchRasterContext`.

    Raises:
        ValueError: unknown ``backend``.
        DeviceError: a CUDA device without CUDA, or ``backend="nvdiffrast"`` but it is not
            installed or ``device`` is not CUDA.
    """
    if backend not in BACKENDS:
        raise ValueError(f"Unknown rasterizer backend {backend!r}; valid backends: {', '.join(BACKENDS)}")
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"CUDA device {device} requested, but this torch build has no CUDA "
                              f"or no GPU is visible; choose the CPU device.")
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
    if backend == "nvdiffrast":
        if not nvdiffrast_available():
            raise DeviceError(NVDIFFRAST_INSTALL_HINT)
        if device.type != "cuda":
            raise DeviceError(f"nvdiffrast renders on CUDA devices only, not {device}; "
                              f"choose a CUDA device or the 'torch' backend.")
        return _nvdiffrast_context(device)
    if backend == "auto" and device.type == "cuda" and nvdiffrast_available():
        return _nvdiffrast_context(device)
    return TorchRasterContext(device)
