"""Driving a run from the TUI: the loop runs in a worker thread and reports through callbacks.

The run's ``EventLog`` lives in this process, so the TUI's reads share its lock (see
``mrtui.store.db``) instead of fighting it for the file.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class RunStopped(Exception):
    """Raised inside the loop when the user asks the TUI to stop the run."""


@dataclass
class RunEvent:
    kind: str  # started / stage / advanced / finished / message / done / failed / stopped
    text: str = ""
    iteration: int | None = None
    stage: str | None = None
    total: int = 0
    done: int = 0
    failed: int = 0


class TuiProgress:
    """A ``ProgressSink`` that forwards to ``emit`` and stops the loop between units."""

    def __init__(self, emit: Callable[[RunEvent], None], stop: threading.Event) -> None:
        self.emit = emit
        self.stop = stop
        self._done = 0
        self._failed = 0

    def _check(self) -> None:
        if self.stop.is_set():
            raise RunStopped("stopped from the TUI; finished units are in the log")

    def stage_started(self, iteration: int, stage: str, total: int, done: int) -> None:
        self._check()
        self._done, self._failed = done, 0
        self.emit(RunEvent("stage", iteration=iteration, stage=stage, total=total, done=done))

    def advanced(self, n: int = 1, tokens: int = 0, failed: bool = False) -> None:
        self._done += n
        self._failed += n if failed else 0
        self.emit(RunEvent("advanced", done=self._done, failed=self._failed))
        self._check()

    def stage_finished(self, iteration: int, stage: str, done: int, failed: int) -> None:
        self.emit(RunEvent("finished", iteration=iteration, stage=stage, done=done, failed=failed))
        self._check()

    def message(self, text: str) -> None:
        self.emit(RunEvent("message", text=text))


def drive(
    db: Path,
    settings: Any,
    run_id: str | None,
    emit: Callable[[RunEvent], None],
    stop: threading.Event,
) -> None:
    """Run (or resume) ``settings`` on ``db``; with ``settings`` None, resume the logged run
    ``run_id`` with the settings it was configured with. Blocks; call from a worker thread."""
    from mrtui.loop.runner import Runner, default_resolver, settings_from_log
    from mrtui.store import EventLog

    progress = TuiProgress(emit, stop)
    with EventLog(db) as log:
        if settings is None:
            if run_id is None:
                raise RuntimeError(
                    "nothing to run: start the TUI with --prompts (and --model) or open a log "
                    "that holds a run"
                )
            settings = settings_from_log(log, run_id)
        emit(RunEvent("started", text=f"run {settings.run_id} on {settings.model}"))
        model = default_resolver(settings.model)
        runner = Runner(log, settings, progress=progress, resolver=lambda _: model)
        try:
            runner.run()
        finally:
            runner.close()
