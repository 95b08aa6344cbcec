"""Second-order spherical-harmonics (SH) lighting, HRN/Deep3D convention.

Irradiance for unit normal n is ``E(n) = sum_j Y_j(n) * gamma[j]`` per colour channel, with
the 9 basis functions below (constants a_k c_k of Ramamoorthi & Hanrahan's irradiance
formula, as in Deep3DFaceRecon and HRN; FACTS section 1.11). Lighting coefficients are
stored as ``[9, 3]`` (coefficient, RGB). HRN's network adds 0.8 to the DC term of its raw
output ("init_lit"); our lighting arrays are the final coefficients, so that offset is
applied only where official network outputs are converted.

Works on numpy arrays and torch tensors alike.
"""
from __future__ import annotations

import math

A0, A1, A2 = math.pi, 2.0 * math.pi / math.sqrt(3.0), 2.0 * math.pi / math.sqrt(8.0)
C0 = 1.0 / math.sqrt(4.0 * math.pi)
C1 = math.sqrt(3.0) / math.sqrt(4.0 * math.pi)
C2 = 3.0 * math.sqrt(5.0) / math.sqrt(12.0 * math.pi)

#: Added to the DC coefficient of HRN network outputs (FACTS 1.11).
HRN_INIT_LIT = 0.8

#: DC coefficient value for which a normal facing any direction gets irradiance 1.
UNIT_AMBIENT = 1.0 / (A0 * C0)


def sh_basis(normals):
    """SH basis ``[..., 9]`` for unit normals ``[..., 3]`` (numpy or torch)."""
    x, y, z = normals[..., 0], normals[..., 1], normals[..., 2]
    one = x * 0.0 + 1.0
    items = [
        A0 * C0 * one,
        -A1 * C1 * y,
        A1 * C1 * z,
        -A1 * C1 * x,
        A2 * C2 * x * y,
        -A2 * C2 * y * z,
        A2 * C2 / (2.0 * math.sqrt(3.0)) * (3.0 * z * z - 1.0),
        -A2 * C2 * x * z,
        A2 * C2 / 2.0 * (x * x - y * y),
    ]
    if hasattr(normals, "detach"):
        import torch

        return torch.stack(items, -1)
    import numpy as np

    return np.stack(items, -1)


def irradiance(normals, sh):
    """Irradiance ``[..., 3]`` for unit normals ``[..., 3]`` and SH coefficients ``[9, 3]``."""
    return sh_basis(normals) @ sh


def ambient_sh(level: float = 1.0):
    """``[9, 3]`` numpy coefficients of uniform white light giving irradiance ``level``."""
    import numpy as np

    sh = np.zeros((9, 3), np.float32)
    sh[0] = level * UNIT_AMBIENT
    return sh
