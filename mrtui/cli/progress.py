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

from mrtui.loop.progress import Note, ProgressMessage, StageBegan, StageEnded, UnitsDone

from .output import safe


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        elapsed = _stage_elapsed(task)
        done = task.fields.get("new", 0)
        tokens = task.fields.get("tokens", 0)
        if elapsed <= 0 or done == 0:
            return Text("", style="progress.data.speed")
        return Text(
            f"{done / elapsed:.2f} it/s {tokens / elapsed:.0f} tok/s", style="progress.data.speed"
        )


def _stage_elapsed(task: Task) -> float:
    frozen = task.fields.get("elapsed_s")
    if frozen is not None:
        return float(frozen)
    now = time.monotonic()
    return now - task.fields.get("t0", now)


class _FailedColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        failed = task.fields.get("failed", 0)
        return Text(f"{failed} failed" if failed else "", style="red")


class RichProgress:
    """A ``mrtui.loop.progress.ProgressSink`` drawn on a Rich console (stderr)."""

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

    def __call__(self, message: ProgressMessage) -> None:
        """The loop's ``ProgressSink``: draw one typed progress message."""
        if isinstance(message, StageBegan):
            self._began(message)
        elif isinstance(message, UnitsDone):
            self._units(message)
        elif isinstance(message, StageEnded):
            self._ended()
        elif isinstance(message, Note):
            self.note(message.text, alert=message.alert)

    def _began(self, m: StageBegan) -> None:
        # Rich's ETA uses the rate of completed steps; starting at `done` would count the
        # skipped (already logged) units as instant work, so the bar starts at done with a
        # fresh speed estimate.
        self._start()
        fresh: dict[str, Any] = {"t0": time.monotonic(), "new": 0, "tokens": 0, "failed": 0}
        self._task = self._progress.add_task(
            f"iter {m.iteration} {m.stage:<5}", total=m.total, completed=m.done, **fresh
        )
        self._progress.reset(self._task, total=m.total, completed=m.done, **fresh)

    def _units(self, m: UnitsDone) -> None:
        if self._task is None:
            return
        fields = self._progress.tasks[-1].fields
        self._progress.update(
            self._task,
            advance=m.n,
            new=fields["new"] + m.n,
            tokens=fields["tokens"] + m.tokens,
            failed=fields["failed"] + (m.n if m.failed else 0),
        )

    def _ended(self) -> None:
        if self._task is None:
            return
        task = self._progress.tasks[-1]
        self._progress.update(self._task, elapsed_s=_stage_elapsed(task))
        self._progress.stop_task(self._task)
        self._task = None

    def note(self, text: str, *, alert: bool = False) -> None:
        self._start()
        self._progress.console.print(Text(safe(text), style="bold yellow" if alert else "dim"))
