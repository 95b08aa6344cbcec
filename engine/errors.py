"""Errors a user can act on.

Every problem that is the user's to fix (an unreadable photo, no face in it, missing
model files, a cancelled run) raises a subclass of :class:`EngineError` with a message
that says what happened and what to do. Anything else escaping the engine is a bug and
keeps its traceback. The Blender extension catches only ``EngineError``.
"""
from __future__ import annotations


class EngineError(RuntimeError):
    """Base class for problems the user can fix; ``str(err)`` is shown to them as is."""


class ImageReadError(EngineError):
    """The input file is missing, not an image, or corrupt."""


class NoFaceError(EngineError):
    """No face was found in the photo."""


class ModelFilesError(EngineError):
    """Model files (weights, face model assets) are missing, truncated or malformed."""


class DeviceError(EngineError):
    """The requested compute device or backend is not available."""


class Cancelled(EngineError):
    """The run was cancelled through the progress callback; no result was produced."""
