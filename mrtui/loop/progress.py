"""How the loop reports progress, without knowing who draws it (Rich bar, TUI, nothing)."""

from __future__ import annotations

from typing import Protocol


class ProgressSink(Protocol):
    def stage_started(self, iteration: int, stage: str, total: int, done: int) -> None: ...

    def advanced(self, n: int = 1, tokens: int = 0, failed: bool = False) -> None: ...

    def stage_finished(self, iteration: int, stage: str, done: int, failed: int) -> None: ...

    def message(self, text: str) -> None: ...


class NullProgress:
    def stage_started(self, iteration: int, stage: str, total: int, done: int) -> None:
        pass

    def advanced(self, n: int = 1, tokens: int = 0, failed: bool = False) -> None:
        pass

    def stage_finished(self, iteration: int, stage: str, done: int, failed: int) -> None:
        pass

    def message(self, text: str) -> None:
        pass
