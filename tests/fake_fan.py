"""Files in the EXACT formats of ``face-alignment``'s S3FD and 3DFAN4 weights, with random or
hand-set contents, for :mod:`engine.hrn_official.s3fd` / :mod:`engine.hrn_official.fan` tests.

Nothing here detects faces or landmarks: outputs of these networks are noise and must never
be presented as a face.

Formats (face-alignment source): ``s3fd-619a316812.pth`` is a plain state dict loaded with
``load_state_dict`` into ``detection/sfd/net_s3fd.py``'s ``s3fd`` (``sfd_detector.py``);
``3DFAN4-4a694010b9.zip`` is a TorchScript archive read with ``torch.jit.load`` (``api.py``),
called on a ``[1, 3, 256, 256]`` float image in [0, 1] and returning ONE tensor of heatmaps
``[1, 68, 64, 64]`` (``api.py`` calls ``.detach()`` on the result directly).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from engine.hrn_official.s3fd import S3FD

S3FD_NAME = "s3fd-619a316812.pth"
FAN_NAME = "3DFAN4-4a694010b9.zip"


def s3fd_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Every key/shape of the real S3FD state dict, random weights; the L2Norm scales get
    noise around their initial values (10, 8, 5)."""
    torch.manual_seed(seed)
    state = S3FD().state_dict()
    for key in ("conv3_3_norm.weight", "conv4_3_norm.weight", "conv5_3_norm.weight"):
        state[key] = state[key] * (1 + 0.1 * torch.randn_like(state[key]))
    return state


def write_fake_s3fd(folder: str | Path, seed: int = 0) -> Path:
    """Write ``s3fd-619a316812.pth`` (random weights) into ``folder``; return its path."""
    path = Path(folder) / S3FD_NAME
    torch.save(s3fd_state(seed), path)
    return path


class _TinyFAN(nn.Module):
    """Random convolutions with the 3DFAN4 I/O contract: ``[1, 3, 256, 256]`` → ``[1, 68, 64, 64]``."""

    def __init__(self):
        super().__init__()
        self.down = nn.Conv2d(3, 16, 3, stride=2, padding=1)
        self.head = nn.Conv2d(16, 68, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.down(x)))


class _FixedHeatmaps(nn.Module):
    """Returns a stored heatmap tensor whatever the image (the image is still consumed, at
    zero weight, so the traced graph takes it as input)."""

    def __init__(self, heatmaps: torch.Tensor):
        super().__init__()
        self.register_buffer("heatmaps", heatmaps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.heatmaps + 0.0 * x.mean()


def _save_traced(module: nn.Module, path: Path) -> Path:
    module.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        traced = torch.jit.trace(module, torch.zeros(1, 3, 256, 256))
        torch.jit.save(traced, str(path))
    return path


def write_fake_fan(folder: str | Path, seed: int = 0) -> Path:
    """Write ``3DFAN4-4a694010b9.zip``: a TorchScript archive with the real I/O, random
    weights; return its path."""
    torch.manual_seed(seed)
    return _save_traced(_TinyFAN(), Path(folder) / FAN_NAME)


def write_peak_fan(path: str | Path, heatmaps: np.ndarray) -> Path:
    """Write a TorchScript "FAN" that always returns ``heatmaps`` (``[68, 64, 64]``) as
    ``[1, 68, 64, 64]``."""
    hm = torch.from_numpy(np.asarray(heatmaps, np.float32))[None]
    return _save_traced(_FixedHeatmaps(hm), Path(path))
