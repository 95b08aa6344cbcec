"""engine.progress: the progress protocol both sides use (events, stage names)."""
from __future__ import annotations

import json

import pytest

from engine.hrn_official.reconstruct import STAGES as OFFICIAL_STAGES
from engine.pipeline import stages
from engine.progress import (CANCELLED, DoneEvent, ErrorEvent, Event, ProgressEvent, Stage,
                             WarningEvent, per_photo, stage_of)

EVERY_EVENT = (ProgressEvent(stage="Detecting face (photo 2 of 3)", fraction=0.25),
               WarningEvent(message="Several faces found: ..."),
               ErrorEvent(kind="NoFaceError", message="No face found in 'a.jpg'."),
               DoneEvent(result="/tmp/out"))


@pytest.mark.parametrize("event", EVERY_EVENT, ids=lambda e: e.EVENT)
def test_every_event_round_trips_through_one_json_line(event):
    line = event.to_json()
    assert "\n" not in line and json.loads(line)["event"] == event.EVENT
    assert Event.from_json(line + "\n") == event


def test_the_wire_format_is_the_documented_one():
    assert json.loads(EVERY_EVENT[0].to_json()) == {
        "event": "progress", "stage": "Detecting face (photo 2 of 3)", "fraction": 0.25}
    assert json.loads(CANCELLED.to_json()) == {"event": "error", "kind": "Cancelled",
                                               "message": "Cancelled."}
    assert CANCELLED.cancelled and not EVERY_EVENT[2].cancelled


@pytest.mark.parametrize("line", ["Downloading...", "[1, 2]", '{"stage": "x"}',
                                  '{"event": "later", "x": 1}', '{"event": "done"}',
                                  '{"event": "progress", "stage": "x", "fraction": "half"}',
                                  '{"event": "warning", "message": 3}'])
def test_anything_else_is_not_an_event(line):
    assert Event.from_json(line) is None


def test_integer_fractions_are_read_as_floats():
    event = Event.from_json('{"event": "progress", "stage": "Loading photo", "fraction": 1}')
    assert event == ProgressEvent("Loading photo", 1.0) and isinstance(event.fraction, float)


@pytest.mark.parametrize("count", [1, 2, 5])
def test_every_stage_a_run_can_report_is_declared(count):
    """What the pipeline reports comes from stages(count); real runs are checked against the
    same declaration in test_pipeline and test_multiview."""
    for declared in (stages(count), OFFICIAL_STAGES):
        names = [name for name, _ in declared]
        assert all(isinstance(stage_of(name), Stage) for name in names)
        assert len(set(names)) == len(names)


def test_per_photo_names_read_back():
    assert per_photo(Stage.FITTING_HIGH, 0, 1) == "Fitting high-frequency detail"
    assert per_photo(Stage.FITTING_HIGH, 1, 3) == "Fitting high-frequency detail (photo 2 of 3)"
    assert stage_of(per_photo(Stage.FITTING_HIGH, 1, 3)) is Stage.FITTING_HIGH
    with pytest.raises(ValueError):
        stage_of("Fitting fine detail")
