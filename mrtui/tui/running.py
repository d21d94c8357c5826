"""A run driven from the TUI, as the status line and the run log tell it: the loop's progress
messages and the run's end folded into a short state. No Textual imports."""

from __future__ import annotations

from dataclasses import dataclass

from mrtui.loop.progress import Note, StageBegan, StageEnded, UnitsDone

from .live import RunEnded, RunUpdate

ENDED = {"done": "run finished", "failed": "run FAILED", "stopped": "run stopped"}


@dataclass
class RunProgress:
    running: bool = False
    state: str = ""  # shown in the status line ("" when no run was started here)
    stage: str = ""  # "iteration N stage" of the stage in progress
    stage_total: int = 0  # units of the current stage
    done: int = 0
    failed: int = 0
    alert: str = ""  # the last alert note (a server down or back), kept in the status line

    def start(self) -> None:
        self.running = True
        self.state = "run starting"

    def stopping(self) -> None:
        self.state = "stopping after the current unit…"

    def apply(self, e: RunUpdate) -> str | None:
        """Fold ``e`` in; returns the line it adds to the run log, if any."""
        if isinstance(e, StageBegan):
            self.stage = f"iteration {e.iteration} {e.stage}"
            self.stage_total, self.done, self.failed = e.total, e.done, 0
            self.state = self._line()
            return f"iteration {e.iteration} · {e.stage}: {e.total} units ({e.done} already logged)"
        if isinstance(e, UnitsDone):
            self.done += e.n
            self.failed += e.n if e.failed else 0
            self.state = self._line()
            return None
        if isinstance(e, StageEnded):
            how = "stopped" if e.stopped else "finished"
            return f"iteration {e.iteration} · {e.stage} {how}: {e.done} done, {e.failed} failed"
        if isinstance(e, RunEnded):
            self.running = False
            self.state = ENDED[e.kind]
            return e.text or None
        assert isinstance(e, Note)
        if e.alert:
            self.alert = e.text
            if self.stage:
                self.state = self._line()
        return e.text or None

    def _line(self) -> str:
        """The stage's status: units done of planned, failures, the last alert."""
        failed = f" ({self.failed} failed)" if self.failed else ""
        alert = f" · {self.alert}" if self.alert else ""
        return f"{self.stage}: {self.done}/{self.stage_total}{failed}{alert}"
