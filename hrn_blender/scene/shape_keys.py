"""Shape keys: Basis (coarse head), the mid-frequency detail, and the expression targets."""
from typing import Sequence

import bpy
import numpy as np

BASIS = "Basis"
MID_FREQUENCY = "Mid-frequency detail"


def add_shape_keys(obj: bpy.types.Object, basis: np.ndarray, detailed: np.ndarray,
                   expression_names: Sequence[str], expression_deltas: np.ndarray) -> bpy.types.Key:
    """Add ``Basis``, ``Mid-frequency detail`` (value 1) and one key per expression (value 0).

    Keys are relative to Basis and add up, so mid detail and expressions combine.

    Args:
        basis: ``[V, 3]`` coarse positions, Blender space (metres).
        detailed: ``[V, 3]`` coarse + mid-frequency offsets, Blender space.
        expression_names: ``Ke`` key names (ARKit names for the default head model).
        expression_deltas: ``[Ke, V, 3]`` per-unit offsets in Blender space (key value 1 = full).
    """
    _add(obj, BASIS, basis)
    _add(obj, MID_FREQUENCY, detailed).value = 1.0
    for name, delta in zip(expression_names, expression_deltas):
        _add(obj, name, basis + delta).value = 0.0
    return obj.data.shape_keys


def _add(obj: bpy.types.Object, name: str, positions: np.ndarray) -> bpy.types.ShapeKey:
    key = obj.shape_key_add(name=name, from_mix=False)
    if key.name != name:  # Blender renamed it: duplicate names would break face-capture mapping
        raise ValueError(f"Duplicate shape key name '{name}' in the reconstruction.")
    key.data.foreach_set("co", np.ascontiguousarray(positions, dtype=np.float32).ravel())
    return key
