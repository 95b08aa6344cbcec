"""Write a file in the exact format of ``retinaface_resnet50_2020-07-20_old_torch.pth`` with
random weights: a flat state dict (every key and shape of the official detector, float32
tensors, int64 ``num_batches_tracked``) saved with torch's legacy non-zip serialisation, as
the official "old_torch" re-save was (``_use_new_zipfile_serialization=False``).

Outputs of these weights are noise: never present one as a detected face.
"""
from __future__ import annotations

from pathlib import Path

import torch

from engine.hrn_official.retinaface import RetinaFace


def fake_retinaface_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random-weight state dict of the official detector (BN statistics non-trivial)."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # default module initialisation draws from the global generator
    net = RetinaFace()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
            m.num_batches_tracked.fill_(1000)
    return net.state_dict()


def write_fake_retinaface(path: str | Path, seed: int = 0,
                          state: dict[str, torch.Tensor] | None = None) -> Path:
    """Save ``state`` (default :func:`fake_retinaface_state`) to ``path`` in the legacy format."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(fake_retinaface_state(seed) if state is None else state, path,
               _use_new_zipfile_serialization=False)
    return path
