"""Progress reporting and cancellation for long engine work.

A progress callback has the signature ``callback(stage: str, fraction: float) -> bool | None``:
``stage`` is a short human-readable name ("Detecting face", "Fitting mid-frequency detail"),
``fraction`` the overall progress in [0, 1]. Returning ``False`` asks the engine to stop; it
then raises :class:`engine.errors.Cancelled` at the next check, before producing any result.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

from .errors import Cancelled

ProgressCallback = Callable[[str, float], Optional[bool]]


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
