"""Progress reporting, cancellation, and the progress protocol shared with the extension.

Three parts, each written once here:

* **Stage names** (:class:`Stage`). A progress callback has the signature
  ``callback(stage: str, fraction: float) -> bool | None``: ``stage`` is one of the
  :class:`Stage` names, with " (photo k of n)" appended to per-photo stages of a run on several
  photos (:func:`per_photo`; :func:`stage_of` reads the name back), ``fraction`` the overall
  progress in [0, 1]. Returning ``False`` asks the engine to stop; it then raises
  :class:`engine.errors.Cancelled` at the next check, before producing any result.
* :class:`Progress`: maps the progress of named stages onto that one overall fraction.
* **Events**: the JSON-lines protocol of ``python -m engine reconstruct --progress jsonl``
  (one object per line on stdout), which ``hrn_blender.worker`` reads::

      {"event": "progress", "stage": str, "fraction": float}           ProgressEvent
      {"event": "warning", "message": str}                             WarningEvent
      {"event": "error", "kind": "NoFaceError" | ..., "message": str}  ErrorEvent (exit 2)
      {"event": "done", "result": DIR}                                 DoneEvent (exit 0)

  A run ends with exactly one ``error`` or ``done``; exit code :data:`EXIT_CANCELLED` after a
  cancel, :data:`EXIT_ERROR` after an error the user can fix.

Light on purpose (standard library only): the extension imports it into Blender's process.
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from typing import Callable, ClassVar, Optional, Sequence, get_type_hints

from .errors import Cancelled

ProgressCallback = Callable[[str, float], Optional[bool]]

#: Exit code of ``python -m engine`` after an error the user can fix (bad photo, no face, ...).
EXIT_ERROR = 2
#: Exit code after a cancel (Ctrl-C / SIGINT), as shells report a SIGINT.
EXIT_CANCELLED = 130


class Stage(StrEnum):
    """Every stage name a progress callback can receive (before :func:`per_photo`'s suffix).
    Members are ``str``, so they compare equal to, and serialise as, their text."""

    # The built-in pipeline (engine.pipeline), in run order.
    LOADING_PHOTO = "Loading photo"
    DETECTING_FACE = "Detecting face"
    COMPARING_FACES = "Comparing faces"
    FITTING_HEAD_SHAPE = "Fitting head shape"
    ESTIMATING_LIGHTING = "Estimating lighting"
    FITTING_MID = "Fitting mid-frequency detail"
    UNWRAPPING_TEXTURE = "Unwrapping texture"
    FITTING_HIGH = "Fitting high-frequency detail"
    ESTIMATING_ALBEDO = "Estimating albedo"
    FUSING_VIEWS = "Fusing views"
    ASSEMBLING_RESULT = "Assembling result"
    # The official HRN path (engine.hrn_official.reconstruct); ends with ASSEMBLING_RESULT too.
    LOADING_HRN_FILES = "Loading HRN files"
    ALIGNING_FACE = "Aligning face"
    RUNNING_HRN_NETWORKS = "Running HRN networks"
    UNWRAPPING_ALBEDO = "Unwrapping albedo"
    # Shown by the extension between pressing Reconstruct and the engine's first report.
    STARTING = "Starting"


_PHOTO_SUFFIX = re.compile(r" \(photo (\d+) of (\d+)\)$")


def per_photo(stage: Stage, index: int, count: int) -> str:
    """The progress name of a per-photo stage: ``stage`` alone for one photo, else
    ``"<stage> (photo 2 of 3)"`` for ``index`` 1 (counted from 0) of ``count``."""
    return str(stage) if count == 1 else f"{stage} (photo {index + 1} of {count})"


def stage_of(name: str) -> Stage:
    """The :class:`Stage` of a reported name (``per_photo``'s suffix removed).

    Raises:
        ValueError: ``name`` is no declared stage.
    """
    return Stage(_PHOTO_SUFFIX.sub("", name))


@dataclass
class Progress:
    """Maps the progress of named stages onto one overall fraction.

    Args:
        callback: the user's callback, or None for silent runs.
        stages: ``(name, weight)`` pairs in run order; weights are relative run times.
    """

    callback: Optional[ProgressCallback]
    stages: Sequence[tuple[str, float]]
    _starts: dict[str, float] = field(init=False, default_factory=dict)
    _weights: dict[str, float] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        total = sum(w for _, w in self.stages) or 1.0
        acc = 0.0
        for name, weight in self.stages:
            self._starts[name] = acc / total
            self._weights[name] = weight / total
            acc += weight

    def update(self, stage: str, fraction: float = 0.0) -> None:
        """Report ``fraction`` (0..1) of ``stage`` done; raise Cancelled if the callback says stop."""
        if self.callback is None:
            return
        overall = self._starts[stage] + self._weights[stage] * min(max(fraction, 0.0), 1.0)
        if self.callback(stage, overall) is False:
            raise Cancelled(f"Cancelled during '{stage}'.")

    def sub(self, stage: str, start: float, end: float) -> "ProgressCallback":
        """A callback for a sub-task covering ``[start, end]`` of ``stage``'s share."""

        def report(_: str, fraction: float) -> bool:
            self.update(stage, start + (end - start) * fraction)
            return True

        return report


# --------------------------------------------------------------------------- events

@dataclass(frozen=True)
class Event:
    """One protocol message; subclasses set :attr:`EVENT` and their fields."""

    EVENT: ClassVar[str] = ""

    def to_json(self) -> str:
        """One line of the protocol (no newline)."""
        return json.dumps({"event": self.EVENT, **asdict(self)})

    @staticmethod
    def from_json(line: str) -> Optional["Event"]:
        """The event on one stdout line, or None for anything that is not a protocol message
        (other output, an unknown event, missing or mistyped fields)."""
        try:
            data = json.loads(line)
        except ValueError:
            return None
        if not isinstance(data, dict):
            return None
        cls = _EVENTS.get(data.get("event"))
        if cls is None:
            return None
        values = {}
        types = get_type_hints(cls)
        for f in fields(cls):
            value = data.get(f.name)
            if types[f.name] is float and type(value) in (int, float):
                value = float(value)
            elif not isinstance(value, types[f.name]):
                return None
            values[f.name] = value
        return cls(**values)


@dataclass(frozen=True)
class ProgressEvent(Event):
    """``stage`` (a :class:`Stage` name, maybe with :func:`per_photo`'s suffix) reached;
    ``fraction``: the whole run's progress, 0..1."""

    EVENT: ClassVar[str] = "progress"
    stage: str
    fraction: float


@dataclass(frozen=True)
class WarningEvent(Event):
    """Something the user should know; the run goes on."""

    EVENT: ClassVar[str] = "warning"
    message: str


@dataclass(frozen=True)
class ErrorEvent(Event):
    """The run failed: ``kind`` is the engine's error class name (e.g. "NoFaceError"),
    "Cancelled", or "EngineCrash" (set by the extension when the engine died unexplained);
    ``message`` is text for the user."""

    EVENT: ClassVar[str] = "error"
    kind: str
    message: str

    @property
    def cancelled(self) -> bool:
        return self.kind == CANCELLED.kind


@dataclass(frozen=True)
class DoneEvent(Event):
    """The run succeeded; ``result`` is the folder holding the saved FaceReconstruction."""

    EVENT: ClassVar[str] = "done"
    result: str


_EVENTS = {cls.EVENT: cls for cls in (ProgressEvent, WarningEvent, ErrorEvent, DoneEvent)}
#: The error event of a cancelled run.
CANCELLED = ErrorEvent(kind="Cancelled", message="Cancelled.")
