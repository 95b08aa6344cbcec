"""Runs the engine in a child process and reads its JSON-lines messages (no bpy here).

Why a subprocess rather than a thread: torch and its OpenMP/CUDA runtimes stay out of
Blender's process (no clashing libraries, memory returns to the system when the run ends),
cancelling is simply terminating the child, and a crash in native code cannot take Blender
down with it. The protocol is the engine CLI's ``--progress jsonl`` stream, whose events are
typed once in the engine (:mod:`engine.progress`, imported through ``engine_api``).
"""
from __future__ import annotations

import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

from .engine_api import ENGINE_PARENT, progress


@dataclass(frozen=True)
class ReconstructionRequest:
    """What to reconstruct and how; mirrors the engine CLI's options.

    Attributes:
        photos: the main photo first, then reference photos of the same person.
        device: "auto", "cpu" or "cuda".
        quality: "fast" or "high".
        weights_dir: folder of the official HRN weights, or None for the built-in model.
    """

    photos: tuple[str, ...]
    device: str = "auto"
    quality: str = "fast"
    weights_dir: Optional[str] = None


class _Exited:
    """Queue marker: the child exited (the reader threads are done)."""


class EngineRun:
    """One engine run in a child process writing into a fresh temporary folder.

    ``poll()`` never blocks, so a modal operator can call it from a timer; ``wait()`` is the
    blocking path for background mode and scripts. The output folder is deleted by
    ``cancel()`` and by ``cleanup()`` (call it once the result is loaded into the scene).
    """

    def __init__(self, request: ReconstructionRequest,
                 command: Optional[Sequence[str]] = None) -> None:
        """``command`` replaces ``[python, -m, engine]`` (tests use it to run another program)."""
        self.out_dir = Path(tempfile.mkdtemp(prefix="hrn_blender_"))
        args = list(command or [sys.executable, "-s", "-m", "engine"])
        photos = [os.path.abspath(photo) for photo in request.photos]
        args += ["reconstruct", *photos, "--out", str(self.out_dir), "--device",
                 request.device, "--quality", request.quality, "--progress", "jsonl", "--no-preview"]
        if request.weights_dir:
            args += ["--weights", os.path.abspath(request.weights_dir)]
        self._events: "queue.Queue[Union[progress.Event, _Exited]]" = queue.Queue()
        self._stderr: list[str] = []
        self._finished = False
        flags = subprocess.CREATE_NEW_PROCESS_GROUP if os.name == "nt" else 0
        self._process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, encoding="utf-8", errors="replace", env=_child_env(), creationflags=flags,
            # ``-m`` puts the working folder first on the child's path: start it beside this
            # engine, so an unrelated ``engine`` package where Blender was started cannot win.
            cwd=str(ENGINE_PARENT))
        # Reader threads only move text into queues; bpy is never touched off the main thread.
        self._stderr_reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._stderr_reader.start()
        threading.Thread(target=self._read_stdout, daemon=True).start()

    # ---------------------------------------------------------------- reading
    def _read_stdout(self) -> None:
        for line in self._process.stdout:
            event = progress.Event.from_json(line)
            if event is not None:
                self._events.put(event)
        self._process.wait()
        self._stderr_reader.join(timeout=2.0)
        self._events.put(_Exited())

    def _read_stderr(self) -> None:
        for line in self._process.stderr:
            self._stderr.append(line.rstrip())
            del self._stderr[:-20]  # keep the tail for crash reports

    def _exit_event(self) -> progress.ErrorEvent:
        """The error a child exit that no done/error message explained means."""
        code = self._process.returncode
        if code == progress.EXIT_CANCELLED or code < 0:
            return progress.CANCELLED
        if code == 0:
            return progress.ErrorEvent(kind="EngineCrash",
                                       message="The engine exited without producing a result.")
        tail = "\n".join(self._stderr[-5:]) or "no error output"
        return progress.ErrorEvent(kind="EngineCrash",
                          message=f"The engine stopped unexpectedly (exit code {code}): {tail}")

    # ---------------------------------------------------------------- control
    def poll(self) -> list[progress.Event]:
        """Messages received since the last call (non-blocking). A run ends with exactly one
        :class:`DoneEvent` or :class:`ErrorEvent`."""
        events = []
        while (event := self._next(block=False)) is not None:
            events.append(event)
        return events

    def wait(self, on_event: Optional[Callable[[progress.Event], Optional[bool]]] = None
             ) -> Union[progress.DoneEvent, progress.ErrorEvent]:
        """Block until the run ends; return the final :class:`DoneEvent` or :class:`ErrorEvent`.

        ``on_event(event)`` sees every message first; returning False cancels the run.
        """
        while True:
            event = self._next(block=True)
            if event is None:  # already finished (cancelled) before this call
                return progress.CANCELLED
            if on_event is not None and on_event(event) is False:
                self.cancel()
                return progress.CANCELLED
            if isinstance(event, (progress.DoneEvent, progress.ErrorEvent)):
                return event

    def _next(self, block: bool) -> Optional[progress.Event]:
        while not self._finished:
            try:
                event = self._events.get(block=block)
            except queue.Empty:
                return None
            if isinstance(event, _Exited):
                event = self._exit_event()
            self._finished = isinstance(event, (progress.DoneEvent, progress.ErrorEvent))
            return event
        return None

    @property
    def running(self) -> bool:
        return self._process.poll() is None

    def cancel(self) -> None:
        """Stop the child (terminate, then kill if it lingers) and delete its output."""
        if self.running:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._finished = True
        self.cleanup()

    def cleanup(self) -> None:
        """Delete the run's output folder (the scene keeps its own packed copies)."""
        shutil.rmtree(self.out_dir, ignore_errors=True)


def _child_env() -> dict[str, str]:
    """The child's environment: this process' module path, so the bundled wheels (Blender's
    extension site-packages) and the engine import there too.

    The child runs with ``-s`` (no user site-packages) but not Blender's ``-I`` from
    ``bpy.app.python_args``, because ``-I`` would also drop PYTHONPATH.
    """
    paths = [str(ENGINE_PARENT)] + [p for p in sys.path if p and os.path.isdir(p)]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env["PYTHONIOENCODING"] = "utf-8"
    return env
