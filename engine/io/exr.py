"""Minimal OpenEXR reader/writer for float32 maps (uncompressed scanline files).

Enough for the deformation map (RGB = model-space XYZ offsets in metres) to open in
Blender, Nuke or any EXR tool, and to be read back bit-exactly, without an extra binary
dependency. Only what :func:`write_exr` writes is guaranteed readable by :func:`read_exr`.
"""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from ..errors import ModelFilesError

_MAGIC = 20000630
_FLOAT = 2


def _attr(name: str, kind: str, payload: bytes) -> bytes:
    return name.encode() + b"\0" + kind.encode() + b"\0" + struct.pack("<i", len(payload)) + payload


def write_exr(path: str | Path, image: np.ndarray) -> None:
    """Write ``[H, W, C]`` (C = 1, 3 or 4) or ``[H, W]`` float32 as an uncompressed EXR.

    Channels are named Y (C = 1), R G B (C = 3) or R G B A (C = 4). Row 0 is the top row.
    """
    img = np.asarray(image, dtype="<f4")
    if img.ndim == 2:
        img = img[:, :, None]
    h, w, c = img.shape
    names = {1: ["Y"], 3: ["R", "G", "B"], 4: ["R", "G", "B", "A"]}.get(c)
    if names is None:
        raise ValueError(f"write_exr: expected 1, 3 or 4 channels, got {c}")
    order = sorted(range(c), key=lambda i: names[i])  # EXR stores channels alphabetically
    chlist = b"".join(names[i].encode() + b"\0" + struct.pack("<iB3xii", _FLOAT, 0, 1, 1) for i in order)
    box = struct.pack("<iiii", 0, 0, w - 1, h - 1)
    header = b"".join([
        struct.pack("<ii", _MAGIC, 2),
        _attr("channels", "chlist", chlist + b"\0"),
        _attr("compression", "compression", b"\0"),
        _attr("dataWindow", "box2i", box),
        _attr("displayWindow", "box2i", box),
        _attr("lineOrder", "lineOrder", b"\0"),
        _attr("pixelAspectRatio", "float", struct.pack("<f", 1.0)),
        _attr("screenWindowCenter", "v2f", struct.pack("<ff", 0.0, 0.0)),
        _attr("screenWindowWidth", "float", struct.pack("<f", 1.0)),
        b"\0",
    ])
    line_bytes = w * c * 4
    first = len(header) + 8 * h
    offsets = np.arange(h, dtype="<u8") * (8 + line_bytes) + first
    planar = np.ascontiguousarray(img[:, :, order].transpose(0, 2, 1))  # [H, C, W]
    with open(path, "wb") as f:
        f.write(header)
        f.write(offsets.tobytes())
        for y in range(h):
            f.write(struct.pack("<ii", y, line_bytes))
            f.write(planar[y].tobytes())


def read_exr(path: str | Path) -> np.ndarray:
    """Read an EXR written by :func:`write_exr`; returns ``[H, W, C]`` float32 (R, G, B[, A] order)."""
    data = Path(path).read_bytes()
    try:
        magic, version = struct.unpack_from("<ii", data, 0)
        if magic != _MAGIC or version & 0xFF != 2:
            raise ValueError("not an OpenEXR file")
        pos, attrs = 8, {}
        while data[pos] != 0:
            end = data.index(b"\0", pos)
            name = data[pos:end].decode()
            end2 = data.index(b"\0", end + 1)
            (size,) = struct.unpack_from("<i", data, end2 + 1)
            attrs[name] = data[end2 + 5:end2 + 5 + size]
            pos = end2 + 5 + size
        pos += 1
        if attrs["compression"] != b"\0":
            raise ValueError("compressed EXR files are not supported by this reader")
        chans, p, raw = [], 0, attrs["channels"]
        while raw[p] != 0:
            end = raw.index(b"\0", p)
            ptype = struct.unpack_from("<i", raw, end + 1)[0]
            if ptype != _FLOAT:
                raise ValueError("only float32 channels are supported by this reader")
            chans.append(raw[p:end].decode())
            p = end + 17
        x0, y0, x1, y1 = struct.unpack("<iiii", attrs["dataWindow"])
        w, h, c = x1 - x0 + 1, y1 - y0 + 1, len(chans)
        offsets = np.frombuffer(data, "<u8", h, pos)
        out = np.empty((h, c, w), np.float32)
        for off in offsets:
            y, nbytes = struct.unpack_from("<ii", data, int(off))
            out[y - y0] = np.frombuffer(data, "<f4", c * w, int(off) + 8).reshape(c, w)
    except (ValueError, KeyError, IndexError, struct.error) as err:
        raise ModelFilesError(f"Cannot read EXR file {path}: {err}") from err
    order = [chans.index(n) for n in ("R", "G", "B", "A", "Y") if n in chans]
    return np.ascontiguousarray(out.transpose(0, 2, 1)[:, :, order])
