"""Rich progress for the loop: one bar per stage with done/total, units/s, tokens/s, ETA."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from .output import safe


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        elapsed = time.monotonic() - task.fields.get("t0", time.monotonic())
        done = task.fields.get("new", 0)
        tokens = task.fields.get("tokens", 0)
        if elapsed <= 0 or done == 0:
            return Text("", style="progress.data.speed")
        return Text(
            f"{done / elapsed:.2f} it/s {tokens / elapsed:.0f} tok/s", style="progress.data.speed"
        )


class _FailedColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        failed = task.fields.get("failed", 0)
        return Text(f"{failed} failed" if failed else "", style="red")


class RichProgress:
    """Implements mrtui.loop.progress.ProgressSink on a Rich console (stderr)."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            _RateColumn(),
            _FailedColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self._task: Any = None

        self._started = False

    def _start(self) -> None:
        if not self._started:  # nothing is drawn until there is something to show
            self._progress.start()
            self._started = True

    def __enter__(self) -> RichProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._started:
            self._progress.stop()

    def stage_started(self, iteration: int, stage: str, total: int, done: int) -> None:
        # Rich's ETA uses the rate of completed steps; starting at `done` would count the
        # skipped (already logged) units as instant work, so the bar starts at done with a
        # fresh speed estimate.
        self._start()
        self._task = self._progress.add_task(
            f"iter {iteration} {stage:<5}",
            total=total,
            completed=done,
            t0=time.monotonic(),
            new=0,
            tokens=0,
            failed=0,
        )
        self._progress.reset(
            self._task, total=total, completed=done, t0=time.monotonic(), new=0, tokens=0, failed=0
        )

    def advanced(self, n: int = 1, tokens: int = 0, failed: bool = False) -> None:
        if self._task is None:
            return
        task = self._progress.tasks[-1]
        fields = task.fields
        self._progress.update(
            self._task,
            advance=n,
            new=fields["new"] + n,
            tokens=fields["tokens"] + tokens,
            failed=fields["failed"] + (n if failed else 0),
        )

    def stage_finished(self, iteration: int, stage: str, done: int, failed: int) -> None:
        self._task = None

    def message(self, text: str) -> None:
        self._start()
        self._progress.console.print(Text(safe(text), style="dim"))
