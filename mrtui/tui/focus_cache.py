"""Prompts read for the detail screens: the cache, the reads in flight, and the prefetch of the
highlighted row.

A prompt is read in two steps (responses, then battles; see ``LogSource.focus``), in a thread
worker of the app; the results come back on the UI thread through the callbacks the app gives.
A cached prompt counts only while the log has not grown since it was read.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from functools import partial
from typing import Any

from textual.app import App
from textual.screen import Screen
from textual.timer import Timer
from textual.worker import get_current_worker

from .focus import apply_battles
from .model import PromptFocus
from .source import LogSource

FOCUS_CACHE = 64  # prompts kept in memory (a prompt with K=7, N=11 is ~0.3 MB)
PREFETCH_DELAY_S = 0.06

# (the prompt read, the iteration asked for, the screen the user asked from)
Ready = Callable[[PromptFocus, int | None, Screen[Any]], None]


class FocusCache:
    def __init__(
        self,
        app: App[Any],
        source: LogSource,
        seq: Callable[[], int],
        *,
        ready: Ready,
        battles: Callable[[PromptFocus], None],
        failed: Callable[[BaseException], None],
    ) -> None:
        """``seq``: the log's size as last read; ``ready``: a prompt the user opened is read
        (its responses); ``battles``: a prompt's battles are in; ``failed``: a read failed."""
        self._app = app
        self._source = source
        self._seq = seq
        self._ready, self._battles, self._failed = ready, battles, failed
        self._entries: OrderedDict[str, tuple[int, PromptFocus]] = OrderedDict()  # LRU
        self._inflight: set[str] = set()
        self._pending: tuple[str, int | None, Screen[Any]] | None = None
        self._timer: Timer | None = None

    def __contains__(self, prompt_key: object) -> bool:
        """Whether ``prompt_key`` was read (for the log as it was then)."""
        return prompt_key in self._entries

    def clear(self) -> None:
        self._entries.clear()

    def cached(self, prompt_key: str) -> PromptFocus | None:
        """The prompt as read for the log's current size, if it was."""
        hit = self._entries.get(prompt_key)
        if hit is not None:
            self._entries.move_to_end(prompt_key)
        return hit[1] if hit is not None and hit[0] == self._seq() else None

    def open(self, prompt_key: str, iteration: int | None) -> None:
        """Call ``ready`` as soon as the prompt is read: now when it is cached."""
        cached = self.cached(prompt_key)
        if cached is not None:
            self._pending = None
            self._ready(cached, iteration, self._app.screen)
            return
        self._pending = (prompt_key, iteration, self._app.screen)
        if self._claim(prompt_key):  # else: joins the read already in flight
            self._app.run_worker(
                partial(self._read, prompt_key, self._seq()), thread=True, group="focus"
            )

    def prefetch(self, *prompt_keys: str) -> None:
        """Read the highlighted prompt (then the next one) in the background so opening it is
        quick; the short delay lets a held arrow key pass without starting reads."""
        if self._timer is not None:
            self._timer.stop()
        keys = [k for k in prompt_keys if self.cached(k) is None]
        if keys:
            self._timer = self._app.set_timer(PREFETCH_DELAY_S, lambda: self._start(keys))

    def _start(self, keys: list[str]) -> None:
        self._app.run_worker(
            partial(self._prefetch, keys, self._seq()),
            thread=True,
            exclusive=True,  # a newer highlight cancels the rest
            group="prefetch",
        )

    def _prefetch(self, keys: list[str], seq: int) -> None:
        """Worker thread: one prompt at a time."""
        worker = get_current_worker()
        for key in keys:
            if worker.is_cancelled:
                return
            if self._app.call_from_thread(self._claim, key):
                self._read(key, seq)

    def _claim(self, prompt_key: str) -> bool:
        """Mark a read of ``prompt_key`` as started; False if one is running or done."""
        if prompt_key in self._inflight or self.cached(prompt_key) is not None:
            return False
        self._inflight.add(prompt_key)
        return True

    def _read(self, prompt_key: str, seq: int) -> None:
        """Worker thread: read one prompt, responses first, battles after."""
        got: list[PromptFocus] = []

        def partial_read(focus: PromptFocus) -> None:
            got.append(focus)
            self._app.call_from_thread(self._responses_read, seq, focus)

        try:
            focus = self._source.focus(prompt_key, on_partial=partial_read)
        except Exception as exc:
            self._app.call_from_thread(self._read_failed, prompt_key, exc, got[0] if got else None)
            return
        self._app.call_from_thread(self._battles_read, focus)

    def _responses_read(self, seq: int, focus: PromptFocus) -> None:
        """The responses are in (battles follow): cache, and show if the user asked."""
        self._entries[focus.prompt_key] = (seq, focus)
        self._entries.move_to_end(focus.prompt_key)
        while len(self._entries) > FOCUS_CACHE:
            self._entries.popitem(last=False)
        pending = self._pending
        if pending is not None and pending[0] == focus.prompt_key:
            self._pending = None
            self._ready(focus, pending[1], pending[2])

    def _battles_read(self, focus: PromptFocus) -> None:
        self._inflight.discard(focus.prompt_key)
        if focus.pending is not None:
            apply_battles(focus, focus.pending)
            focus.pending = None
        self._battles(focus)

    def _read_failed(
        self, prompt_key: str, exc: BaseException, partial: PromptFocus | None = None
    ) -> None:
        self._inflight.discard(prompt_key)
        if partial is not None:  # responses shown, battles not: forget it, say why
            self._entries.pop(prompt_key, None)
            for itf in partial.iterations.values():
                if itf.battle is not None:
                    itf.battle.ready = True
                    itf.battle.drop_reason = itf.battle.drop_reason or "battle not read (r retries)"
        if self._pending and self._pending[0] == prompt_key:
            self._pending = None
        self._failed(exc)
