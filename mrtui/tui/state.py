"""What the screens may see and ask of the app, typed.

:class:`TuiState` holds what the app has read (overview, health, the prompt index) and how the
reads and a run started here are going; the app changes it, screens read it. :class:`Controller`
is what the app does for a screen (open a prompt, show a text, export an item). Screens reach it
through :func:`controller_of` (or ``AppScreen.controller``), never through the app's class, so
no screen module imports :mod:`mrtui.tui.app`. The app tells screens about new data with the
messages of :mod:`mrtui.tui.messages`. No Textual imports here.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from mrtui.store.health import Health

from .model import (
    HumanLabel,
    IterationFocus,
    JudgementInfo,
    JudgeSignal,
    LabelTarget,
    Overview,
    PromptFocus,
    PromptStats,
)
from .running import RunProgress
from .source import LogSource

STALE_AFTER_S = 5.0

Index = dict[tuple[str, int], PromptStats]  # (prompt key, iteration) -> stats
Losses = dict[int, list[tuple[int, float]]]  # iteration -> (step, DPO loss)


def _pick(fn: Callable[..., float], a: float | None, b: float | None) -> float | None:
    """``fn(a, b)`` over the values that are there (a score of 0.0 is there)."""
    vals = [v for v in (a, b) if v is not None]
    return fn(vals) if vals else None


@dataclass
class TuiState:
    db: Path
    overview: Overview | None = None
    health: dict[int, Health] | None = None
    losses: Losses = field(default_factory=dict)
    # iteration -> role -> units, tokens, wall_s, share (role_costs; {} until read)
    costs: dict[int, dict[str, dict[str, Any]]] = field(default_factory=dict)
    index: Index | None = None  # score ranges and pairs per prompt and iteration
    index_all: dict[str, PromptStats] = field(default_factory=dict)  # the same over iterations
    index_judge: bool = False  # the index holds judge pairs too (they come last)
    signal: dict[int, JudgeSignal] | None = None  # per iteration, read with the index
    last_ok: float | None = None  # wall clock of the last read that went through
    last_error: str | None = None
    run: RunProgress = field(default_factory=RunProgress)
    first_screen_s: float | None = None  # launch to the overview filled (bench/bench_tui.py)
    labels: dict[str, HumanLabel] = field(default_factory=dict)  # human_labels by target key
    # judge_human_agreement per iteration: measure -> {n, value, lo, hi} (store.labels.agreement)
    agreement: dict[int, dict[str, dict[str, Any]]] = field(default_factory=dict)
    pending_labels: int = 0  # labels made here that wait for the writer lock
    started: float = field(default_factory=time.perf_counter)

    def iterations(self) -> list[int]:
        return [r.iteration for r in self.overview.iterations] if self.overview else []

    def seq(self) -> int:
        """The log's size as last read: what cached reads are keyed by."""
        return self.overview.max_seq if self.overview else 0

    def mark_first_screen(self) -> None:
        if self.first_screen_s is None:
            self.first_screen_s = time.perf_counter() - self.started

    def set_index(self, index: Index, judge_pairs: bool) -> None:
        self.index, self.index_judge = dict(index), judge_pairs
        merged: dict[str, PromptStats] = {}
        for (key, _), s in index.items():
            m = merged.setdefault(key, PromptStats())
            m.best = _pick(max, m.best, s.best)
            m.worst = _pick(min, m.worst, s.worst)
            m.actor_pair |= s.actor_pair
            m.judge_pair |= s.judge_pair
        self.index_all = merged

    def prompt_stats(self, key: str, iteration: int | None) -> PromptStats | None:
        """What the index knows about prompt ``key`` (in ``iteration``, or over all); None
        while the index is not in."""
        if not self.index:
            return None
        if iteration is not None:
            return self.index.get((key, iteration), PromptStats())
        return self.index_all.get(key, PromptStats())

    def forget_run(self) -> None:
        """Drop what was read for the current run (the user switched runs)."""
        self.index, self.index_all, self.index_judge = None, {}, False
        self.health = None
        self.signal = None
        self.labels, self.agreement = {}, {}
        self.costs = {}

    def status_text(self, now: float) -> tuple[str, bool]:
        """The status line and whether it says the data is stale."""
        ov = self.overview
        parts = [str(self.db)]
        if ov is not None:
            parts.append(f"run {ov.run_id or '-'}")
            parts.append(f"{ov.max_seq} events")
            if ov.writer is not None:
                parts.append(f"writer: {ov.writer.describe()}")
        if self.run.state:
            parts.append(self.run.state)
        if self.pending_labels:
            parts.append(f"{self.pending_labels} label(s) waiting to be saved")
        age = None if self.last_ok is None else now - self.last_ok
        stale = self.last_error is not None or (age is not None and age > STALE_AFTER_S)
        if self.last_ok is None:
            parts.append("reading…" if self.last_error is None else "NOT READ")
        elif stale:
            parts.append(f"STALE: data from {age:.0f} s ago")
        else:
            parts.append(f"read {dt.datetime.fromtimestamp(self.last_ok, dt.UTC):%H:%M:%S} UTC")
        if self.last_error:
            parts.append(f"({self.last_error})")
        return " · ".join(parts), stale


@runtime_checkable
class Controller(Protocol):
    """What a screen may ask of the app (``MrtuiApp`` implements it)."""

    @property
    def state(self) -> TuiState: ...

    @property
    def source(self) -> LogSource: ...

    def update_status(self) -> None: ...

    def read_failed(self, exc: BaseException) -> None:
        """Show a failed read as stale data."""

    def open_prompts(self, iteration: int | None = None) -> None: ...

    def open_prompt(self, prompt_key: str, iteration: int | None = None) -> None:
        """Open a prompt's detail screen once it is read (at once when it was prefetched)."""

    def prefetch(self, *prompt_keys: str) -> None:
        """Read these prompts in the background, soon, so opening them is quick."""

    def open_battle(self, focus: PromptFocus, it: IterationFocus) -> None: ...

    def show_text(self, title: str, text: str, meta: str = "", item: Any = None) -> None: ...

    def show_judgement(self, j: JudgementInfo) -> None: ...

    def export_item(self, item: dict[str, Any]) -> Path | None: ...

    def label(self, targets: list[LabelTarget]) -> None:
        """Ask the person for a label of one of ``targets`` and save it to the log."""


def controller_of(app: object) -> Controller:
    """``app`` as the :class:`Controller` screens talk to (a screen's ``self.app``)."""
    if not isinstance(app, Controller):
        raise TypeError(f"{type(app).__name__} is not an mrtui TUI app")
    return app
