"""Write ``large_base_net.pth`` and ``BBRegressorParam_r.mat`` in the exact official formats,
with random (landmark net) or chosen (regressor) values.

``large_base_net.pth``: ``torch.save({"state_dict": sd})`` where ``sd`` is the state dict of
the net wrapped in ``nn.DataParallel`` (keys ``module.block1.0.weight``, ... with
``_metadata``), as the official training saved it; BatchNorm running statistics are
measured, not default. Outputs of these weights are noise, never a face.

``BBRegressorParam_r.mat``: fields W1 (200x10), B1 (200x1), W2 (3x200), B2 (3x1), float64
("double", what MATLAB writes).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch
from scipy.io import savemat

from engine.hrn_official.landmark106 import Landmark106Net


def landmark106_checkpoint(seed: int = 0) -> dict:
    """The dict ``large_base_net.pth`` holds: ``{"state_dict": <DataParallel state dict>}``."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = Landmark106Net()
    # Running statistics measured on noise crops (one cumulative train-mode pass), as
    # training leaves them: with made-up statistics the 19 random layers lose the input
    # and every crop gives the same points.
    norms = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    with torch.no_grad():
        net.train()(torch.randn(4, 3, 224, 224, generator=gen) * 0.3)
    net.eval()
    for m in norms:
        m.momentum = 0.1
    return {"state_dict": torch.nn.DataParallel(net).state_dict()}


def write_landmark106(path: str | Path, seed: int = 0) -> Path:
    """Write a random-weight ``large_base_net.pth`` at ``path``."""
    path = Path(path)
    torch.save(landmark106_checkpoint(seed), path)
    return path


def write_bbox_regressor(path: str | Path, w1: Optional[np.ndarray] = None,
                         b1: Optional[np.ndarray] = None, w2: Optional[np.ndarray] = None,
                         b2: Optional[np.ndarray] = None, seed: int = 0) -> Path:
    """Write ``BBRegressorParam_r.mat``; fields not given are random (float64)."""
    rng = np.random.default_rng(seed)
    fields = {"W1": w1 if w1 is not None else rng.normal(0, 0.3, (200, 10)),
              "B1": b1 if b1 is not None else rng.normal(0, 0.1, (200, 1)),
              "W2": w2 if w2 is not None else rng.normal(0, 0.05, (3, 200)),
              "B2": b2 if b2 is not None else np.array([[-1.0], [-1.2], [2.0]])}
    path = Path(path)
    savemat(str(path), {k: np.asarray(v, dtype=np.float64) for k, v in fields.items()})
    return path
