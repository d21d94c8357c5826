"""How the loop reports progress and is asked to stop, without knowing who draws it.

The loop sends typed messages to a ``ProgressSink`` (any callable taking one message: a Rich
bar, the TUI, nothing) and checks a :class:`CancelToken` between units of work.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class StageBegan:
    iteration: int
    stage: str  # actor / judge / meta / train
    total: int  # units planned
    done: int  # already in the log


@dataclass(frozen=True)
class UnitsDone:
    iteration: int
    stage: str
    n: int = 1
    tokens: int = 0
    failed: bool = False


@dataclass(frozen=True)
class StageEnded:
    iteration: int
    stage: str
    done: int
    failed: int
    wall_s: float
    tokens: int = 0
    stopped: bool = False


@dataclass(frozen=True)
class Note:
    text: str
    # Something the user should see until the next one (a server down or back): the TUI
    # keeps it in the status line, the CLI prints it in colour.
    alert: bool = False


ProgressMessage = StageBegan | UnitsDone | StageEnded | Note
ProgressSink = Callable[[ProgressMessage], None]


def ignore(message: ProgressMessage) -> None:
    """A sink that draws nothing."""


class CancelToken:
    """Set by a front end to stop a run after the unit in flight; finished units stay logged."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def reset(self) -> None:
        self._event.clear()
