"""The prompt index: score ranges and pairs of every prompt, for the prompt list's columns and
pair filter, and the judge signal of every iteration (tied prompts, the score-length
correlation), for the overview. Both read the whole log (seconds at a million judgements), so
they run in a thread worker of the app, and hand their results back on the UI thread through
``ready`` and ``signal``."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from textual.app import App

from .model import JudgeSignal, Overview, PromptStats
from .source import LogSource
from .state import Index

INDEX_EVERY_S = 30.0


class PromptIndexer:
    def __init__(
        self,
        app: App[Any],
        source: LogSource,
        *,
        ready: Callable[[Index, bool], None],
        failed: Callable[[BaseException], None],
        signal: Callable[[dict[int, JudgeSignal]], None] | None = None,
    ) -> None:
        """``ready(index, judge_pairs)``: an index of the current run, first without judge
        pairs (``judge_pairs`` False), then with them; ``signal``: the judge signal of each
        iteration of the current run (between the two); ``failed``: a read failed."""
        self._app = app
        self._source = source
        self._ready, self._failed, self._signal = ready, failed, signal
        self._seq = -1  # the log's size the last index was computed for
        self._started = 0.0
        self._running = False

    def reset(self) -> None:
        """Forget the last index (the user switched runs)."""
        self._seq = -1

    def maybe_start(self, ov: Overview, have_index: bool) -> None:
        """Start the index if the log changed since it was computed. It holds the file while it
        reads, so while a run writes (here or elsewhere) it is refreshed at most every
        ``INDEX_EVERY_S``."""
        if self._running or ov.max_seq == self._seq:
            return
        recent = time.monotonic() - self._started < INDEX_EVERY_S
        if have_index and ov.writer is not None and recent:
            return
        self._running = True
        self._started = time.monotonic()
        self._app.run_worker(
            partial(self._compute, ov.max_seq, ov.run_id), thread=True, group="index"
        )

    def _compute(self, seq: int, run_id: str | None) -> None:
        """Worker thread: scores and actor pairs first (about a second at 1M judgements),
        then the judge signal (as long again), judge pairs last."""
        call = self._app.call_from_thread
        try:
            index = self._source.prompt_index(judge_pairs=False, run_id=run_id)
            call(self._got, seq, run_id, index, False)
            if self._signal is not None:
                signal = self._source.judge_signal(run_id)
                call(self._got_signal, run_id, signal)
            judged = self._source.judge_pair_prompts(run_id)
            index = {k: dataclasses.replace(v) for k, v in index.items()}  # the UI has the first
            for k in judged:
                index.setdefault(k, PromptStats()).judge_pair = True
            call(self._got, seq, run_id, index, True)
        except Exception as exc:
            call(self._failed, exc)
        finally:
            call(self._done)

    def _done(self) -> None:
        self._running = False

    def _got_signal(self, run_id: str | None, signal: dict[int, JudgeSignal]) -> None:
        if run_id == self._source.run_id and self._signal is not None:
            self._signal(signal)

    def _got(self, seq: int, run_id: str | None, index: Index, judge_pairs: bool) -> None:
        if run_id != self._source.run_id:
            return  # computed for a run the user switched away from
        self._seq = seq
        self._ready(index, judge_pairs)
