"""Free data-block names, so no user data-block is ever renamed or overwritten."""
from typing import Iterable

MAX_NAME_BYTES = 63  # Blender's ID name limit (MAX_ID_NAME - 2), in UTF-8 bytes


def find_unused_name(taken: Iterable[str], base: str) -> str:
    """``base`` if free, else ``base.001``, ``base.002``, ... (Blender's own suffix style)."""
    taken = set(taken)
    base = _clip(base or "Head", MAX_NAME_BYTES - 4)
    if base not in taken:
        return base
    n = 1
    while f"{base}.{n:03d}" in taken:
        n += 1
    return f"{base}.{n:03d}"


def _clip(name: str, max_bytes: int) -> str:
    encoded = name.encode("utf-8")[:max_bytes]
    return encoded.decode("utf-8", errors="ignore")
