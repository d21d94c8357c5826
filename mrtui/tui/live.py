"""Driving a run from the TUI: the same :class:`~mrtui.loop.session.RunSession` as `mrtui run`,
in a worker thread. The loop's typed progress messages are forwarded as they are; the end of
the run is one :class:`RunEnded`. No Textual imports.

The run's ``EventLog`` lives in this process, so the TUI's reads share its lock (see
``mrtui.store.db``) instead of fighting it for the file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mrtui.loop.progress import CancelToken, ProgressMessage


@dataclass(frozen=True)
class RunEnded:
    kind: str  # done / failed / stopped
    text: str


RunUpdate = ProgressMessage | RunEnded


def drive(
    db: Path,
    settings: Any,
    run_id: str | None,
    emit: Callable[[RunUpdate], None],
    cancel: CancelToken,
) -> None:
    """Run (or resume) ``settings`` on ``db``; with ``settings`` None, resume the logged run
    ``run_id`` with the settings it was configured with. Blocks (call it from a worker
    thread); emits progress, then exactly one :class:`RunEnded`."""
    from mrtui.loop.session import RunSession

    try:
        result = RunSession(db, settings, run_id=run_id, progress=emit, cancel=cancel).run()
    except Exception as exc:  # shown in the run log; the log stays whole
        emit(RunEnded("failed", f"{type(exc).__name__}: {exc}"))
        return
    if result.stopped:
        emit(RunEnded("stopped", "stopped from the TUI; finished units are in the log"))
    elif result.failed:
        emit(RunEnded("failed", "some units failed; s retries them"))
    else:
        emit(RunEnded("done", "run finished"))
