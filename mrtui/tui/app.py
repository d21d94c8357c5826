"""``mrtui tui``: the Textual app that ties the screens to the log and to a live run."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.command import Hit, Hits, Provider
from textual.screen import Screen
from textual.worker import get_current_worker

from mrtui.cli.output import safe

from .live import RunEvent, RunStopped, drive
from .modal import TextModal
from .model import EventRow, Health, JudgementInfo, Overview, PromptFocus, PromptStats
from .overview import OverviewScreen, StatusBar
from .source import LogSource, writer_info
from .text import as_markup, lit

POLL_S = 1.0
STALE_AFTER_S = 5.0
INDEX_EVERY_S = 30.0
PREFETCH_DELAY_S = 0.06
FOCUS_CACHE = 64  # prompts kept in memory (a prompt with K=7, N=11 is ~0.3 MB)


def _pick(fn: Callable[..., float], a: float | None, b: float | None) -> float | None:
    """``fn(a, b)`` over the values that are there (a score of 0.0 is there)."""
    vals = [v for v in (a, b) if v is not None]
    return fn(vals) if vals else None


class PromptSearch(Provider):
    """Command-palette search over the run's prompts (opens the prompt)."""

    async def search(self, query: str) -> Hits:
        app: MrtuiApp = self.app  # type: ignore[assignment]
        if len(query) < 2:
            return
        try:
            rows = await asyncio.to_thread(app.source.prompts, None, query, None, False, 0, 20)
        except Exception:
            return
        for r in rows:
            preview = r.preview.replace("\n", " ")[:70]
            yield Hit(
                1.0,
                lit(f"prompt #{r.index}: {preview}"),
                lambda key=r.prompt_key: app.open_prompt(key),
                help=as_markup(r.prompt_key),
            )


class MrtuiApp(App[None]):
    TITLE = "mrtui"
    CSS = """
    Screen { layout: vertical; }
    """
    COMMANDS = App.COMMANDS | {PromptSearch}
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("o", "overview", "Overview"),
        Binding("p", "prompts", "Prompts"),
        Binding("r", "refresh", "Refresh"),
        Binding("s", "start_run", "Run/resume"),
        Binding("x", "stop_run", "Stop run"),
        Binding("c", "copy", "Copy"),
        Binding("e", "export", "Export"),
    ]

    def __init__(
        self,
        db: str | Path,
        *,
        run_id: str | None = None,
        settings: Any = None,
        export_dir: str | Path = "mrtui-export",
        poll: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.db = Path(db)
        self.source = LogSource(self.db, run_id)
        self.run_settings = settings
        self.export_dir = Path(export_dir)
        self.poll_enabled = poll
        self.clock = clock  # wall clock for the status line (tests pin it)
        self.overview: Overview | None = None
        self.health: dict[int, Health] | None = None
        self.losses: dict[int, list[tuple[int, float]]] = {}
        self.index: dict[tuple[str, int], PromptStats] | None = None
        self.index_all: dict[str, PromptStats] = {}
        self.index_judge = False  # the index holds judge pairs too (they come last)
        self._index_seq = -1
        self._index_started = 0.0
        self._indexing = False
        self._refreshing = False
        self._refresh_again = False
        self._complete_seq: int | None = None  # max seq of the last read that went through
        self.last_ok: float | None = None
        self.last_error: str | None = None
        self._focus_cache: OrderedDict[str, tuple[int, PromptFocus]] = OrderedDict()  # LRU
        self._inflight: set[str] = set()
        self._open_pending: tuple[str, int | None, Any] | None = None
        self._prefetch_timer: Any = None
        self._stop = threading.Event()
        self.running = False
        self._quitting = False
        self.run_state = ""
        self.first_screen_s: float | None = None
        self._t0 = time.perf_counter()

    # -- lifecycle --------------------------------------------------------------------------
    def on_mount(self) -> None:
        self.push_screen(OverviewScreen())
        self.refresh_data(full=True)
        if self.poll_enabled:
            self.set_interval(POLL_S, self._poll)
        self.set_interval(1.0, self.update_status)

    def _poll(self) -> None:
        self.refresh_data(full=False)

    def refresh_data(self, full: bool = True) -> None:
        """Read what changed since the last complete read (one read at a time)."""
        if self._refreshing:
            self._refresh_again = self._refresh_again or full
            return
        self._refreshing = True
        self._refresh_worker(full)

    @work(thread=True, group="refresh")
    def _refresh_worker(self, full: bool) -> None:
        """Never raises into the UI: a failure is shown as stale data."""
        try:
            if not full and self._complete_seq is not None:
                top = self.source.sql("SELECT coalesce(max(seq), 0) FROM events")[0][0]
                writer = writer_info(self.db)
                if top == self._complete_seq:
                    self.call_from_thread(self._unchanged, writer)
                    return
            ov = self.source.overview()
            self.call_from_thread(self._got_overview, ov)
            recent = self.source.recent()
            self.call_from_thread(self._got_recent, recent)
            health = self.source.health()
            losses = self.source.losses()
            self.call_from_thread(self._got_health, health, losses)
            self.call_from_thread(self._complete, ov.max_seq)
        except Exception as exc:  # shown as stale data, never a crash
            self.call_from_thread(self.read_failed, exc)
        finally:
            self.call_from_thread(self._refresh_done)

    def _unchanged(self, writer: Any) -> None:
        if self.overview is not None and self.overview.writer != writer:
            self.overview.writer = writer
        self._mark_ok()
        if self.overview is not None and self._index_seq != self.overview.max_seq:
            self._maybe_index(self.overview)

    def _complete(self, seq: int) -> None:
        self._complete_seq = seq

    def _refresh_done(self) -> None:
        self._refreshing = False
        if self._refresh_again:
            again, self._refresh_again = self._refresh_again, False
            self.refresh_data(full=again)

    def _mark_ok(self) -> None:
        self.last_ok = self.clock()
        self.last_error = None
        self.update_status()

    def _got_overview(self, ov: Overview) -> None:
        self.overview = ov
        self._mark_ok()
        screen = self._overview_screen()
        if screen is not None:
            screen.show(ov, self.health)
        if self.first_screen_s is None:
            self.first_screen_s = time.perf_counter() - self._t0
        self._maybe_index(ov)

    def _got_recent(self, recent: list[EventRow]) -> None:
        screen = self._overview_screen()
        if screen is not None:
            screen.show_recent(recent)

    def _got_health(self, health: dict[int, Health], losses: dict[int, Any]) -> None:
        self.health, self.losses = health, losses
        screen = self._overview_screen()
        if screen is not None and self.overview is not None:
            screen.show(self.overview, health)
            screen.show_plots(health, losses)

    def _maybe_index(self, ov: Overview) -> None:
        """Start the pair index if the log changed since it was computed. It reads the whole
        log (seconds at a million judgements) and holds the file that long, so while a run
        writes (here or elsewhere) it is refreshed at most every ``INDEX_EVERY_S``."""
        if self._indexing or ov.max_seq == self._index_seq:
            return
        recent = time.monotonic() - self._index_started < INDEX_EVERY_S
        if self.index is not None and ov.writer is not None and recent:
            return
        self._indexing = True
        self._index_started = time.monotonic()
        self.compute_index(ov.max_seq, ov.run_id)

    @work(thread=True, group="index")
    def compute_index(self, seq: int, run_id: str | None) -> None:
        """Score ranges and pairs of every prompt, for the list's columns and pair filter:
        scores and actor pairs first (about a second at 1M judgements), judge pairs after."""
        try:
            index = self.source.prompt_index(judge_pairs=False, run_id=run_id)
            self.call_from_thread(self._got_index, seq, run_id, index, False)
            judged = self.source.judge_pair_prompts(run_id)
            index = {k: dataclasses.replace(v) for k, v in index.items()}  # the UI has the first
            for k in judged:
                index.setdefault(k, PromptStats()).judge_pair = True
            self.call_from_thread(self._got_index, seq, run_id, index, True)
        except Exception as exc:
            self.call_from_thread(self.read_failed, exc)
        finally:
            self.call_from_thread(self._index_done)

    def _index_done(self) -> None:
        self._indexing = False

    def _got_index(
        self,
        seq: int,
        run_id: str | None,
        index: dict[tuple[str, int], PromptStats],
        judge_pairs: bool,
    ) -> None:
        if run_id != self.source.run_id:
            return  # computed for a run the user switched away from
        self.index, self._index_seq, self.index_judge = dict(index), seq, judge_pairs
        merged: dict[str, PromptStats] = {}
        for (key, _), s in index.items():
            m = merged.setdefault(key, PromptStats())
            m.best = _pick(max, m.best, s.best)
            m.worst = _pick(min, m.worst, s.worst)
            m.actor_pair |= s.actor_pair
            m.judge_pair |= s.judge_pair
        self.index_all = merged
        from .prompts import PromptListScreen

        for screen in self.screen_stack:
            if isinstance(screen, PromptListScreen):
                screen.index_ready()

    def read_failed(self, exc: BaseException) -> None:
        self.last_error = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        self.update_status()

    def _overview_screen(self) -> OverviewScreen | None:
        for screen in self.screen_stack:
            if isinstance(screen, OverviewScreen):
                return screen
        return None

    def iterations(self) -> list[int]:
        return [r.iteration for r in self.overview.iterations] if self.overview else []

    # -- status line ------------------------------------------------------------------------
    def status_text(self) -> tuple[str, bool]:
        ov = self.overview
        parts = [str(self.db)]
        if ov is not None:
            parts.append(f"run {ov.run_id or '-'}")
            parts.append(f"{ov.max_seq} events")
            if ov.writer is not None:
                parts.append(f"writer: {ov.writer.describe()}")
        if self.run_state:
            parts.append(self.run_state)
        age = None if self.last_ok is None else self.clock() - self.last_ok
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

    def update_status(self) -> None:
        text, stale = self.status_text()
        for bar in self.screen.query(StatusBar):
            bar.update(lit(text))
            bar.set_class(stale, "-stale")

    # -- navigation -------------------------------------------------------------------------
    def action_overview(self) -> None:
        while len(self.screen_stack) > 2:
            self.pop_screen()

    def action_prompts(self) -> None:
        self.open_prompts(None)

    def open_prompts(self, iteration: int | None = None) -> None:
        from .prompts import PromptListScreen

        self.action_overview()
        self.push_screen(PromptListScreen(iteration))

    def prefetch(self, *prompt_keys: str) -> None:
        """Read the highlighted prompt (then the next one) in the background so opening it is
        instant; a short delay lets held-down arrow keys pass without starting reads."""
        if self._prefetch_timer is not None:
            self._prefetch_timer.stop()
        keys = [k for k in prompt_keys if self._cached(k) is None]
        if keys:
            self._prefetch_timer = self.set_timer(
                PREFETCH_DELAY_S, lambda: self._prefetch_worker(keys, self._seq())
            )

    @work(thread=True, exclusive=True, group="prefetch")
    def _prefetch_worker(self, keys: list[str], seq: int) -> None:
        worker = get_current_worker()
        for key in keys:  # one at a time; a newer highlight cancels the rest
            if worker.is_cancelled:
                return
            if self.call_from_thread(self._claim, key):
                self._read_focus(key, seq)

    def _claim(self, prompt_key: str) -> bool:
        """Mark a read of ``prompt_key`` as started; False if one is running or done."""
        if prompt_key in self._inflight or self._cached(prompt_key) is not None:
            return False
        self._inflight.add(prompt_key)
        return True

    def open_prompt(self, prompt_key: str, iteration: int | None = None) -> None:
        cached = self._cached(prompt_key)
        if cached is not None:
            self._open_pending = None
            self._show_prompt(cached, iteration)
            return
        self._open_pending = (prompt_key, iteration, self.screen)
        self._start_focus(prompt_key)  # joins a read already in flight for this prompt

    def _cached(self, prompt_key: str) -> PromptFocus | None:
        hit = self._focus_cache.get(prompt_key)
        if hit is not None:
            self._focus_cache.move_to_end(prompt_key)
        return hit[1] if hit is not None and hit[0] == self._seq() else None

    def _seq(self) -> int:
        return self.overview.max_seq if self.overview else 0

    def _start_focus(self, prompt_key: str) -> None:
        if self._claim(prompt_key):
            self._load_focus(prompt_key, self._seq())

    @work(thread=True, group="focus")
    def _load_focus(self, prompt_key: str, seq: int) -> None:
        self._read_focus(prompt_key, seq)

    def _read_focus(self, prompt_key: str, seq: int) -> None:
        """Read one prompt (in a worker thread): responses first, battles after."""

        def partial(focus: PromptFocus) -> None:
            self.call_from_thread(self._focus_loaded, seq, focus)

        got: list[PromptFocus] = []
        try:
            focus = self.source.focus(prompt_key, on_partial=lambda f: (got.append(f), partial(f)))
        except Exception as exc:
            self.call_from_thread(self._focus_failed, prompt_key, exc, got[0] if got else None)
            return
        self.call_from_thread(self._battles_loaded, focus)

    def _focus_loaded(self, seq: int, focus: PromptFocus) -> None:
        """The responses are in (battles follow): cache, and show if the user asked."""
        self._focus_cache[focus.prompt_key] = (seq, focus)
        self._focus_cache.move_to_end(focus.prompt_key)
        while len(self._focus_cache) > FOCUS_CACHE:
            self._focus_cache.popitem(last=False)
        pending = self._open_pending
        if pending is not None and pending[0] == focus.prompt_key:
            self._open_pending = None
            from .prompts import PromptListScreen

            if isinstance(self.screen, PromptListScreen) or self.screen is pending[2]:
                self._show_prompt(focus, pending[1])  # only where the user still is

    def _battles_loaded(self, focus: PromptFocus) -> None:
        from .focus import apply_battles

        self._inflight.discard(focus.prompt_key)
        if focus.pending is not None:
            apply_battles(focus, focus.pending)
            focus.pending = None
        for screen in self.screen_stack:
            if getattr(screen, "focus_data", None) is focus and hasattr(screen, "battles_ready"):
                screen.battles_ready()

    def _focus_failed(
        self, prompt_key: str, exc: BaseException, partial: PromptFocus | None = None
    ) -> None:
        self._inflight.discard(prompt_key)
        if partial is not None:  # responses shown, battles not: forget it, say why
            self._focus_cache.pop(prompt_key, None)
            for itf in partial.iterations.values():
                if itf.battle is not None:
                    itf.battle.ready = True
                    itf.battle.drop_reason = itf.battle.drop_reason or "battle not read (r retries)"
        if self._open_pending and self._open_pending[0] == prompt_key:
            self._open_pending = None
        self.read_failed(exc)

    def _show_prompt(self, focus: PromptFocus, iteration: int | None) -> None:
        from .detail import PromptDetailScreen

        self.push_screen(PromptDetailScreen(focus, iteration))

    def show_text(self, title: str, text: str, meta: str = "", item: Any = None) -> None:
        self.push_screen(TextModal(title, text, meta, item))

    def show_judgement(self, j: JudgementInfo) -> None:
        from .detail import judgement_item

        score = "unparsed" if j.score is None else f"score {j.score:.0f}"
        meta = f"{j.key} · {score}" + (f" · {j.parse_error}" if j.parse_error else "")
        self.show_text(f"judgement {j.judge_index}", j.text, meta, judgement_item(j))

    def action_refresh(self) -> None:
        self._focus_cache.clear()
        self.refresh_data(full=True)

    # -- copy / export ----------------------------------------------------------------------
    def _current_item(self) -> dict[str, Any] | None:
        fn = getattr(self.screen, "export_current", None)
        return fn() if fn else None

    def action_copy(self) -> None:
        item = self._current_item()
        if item is None:
            self.notify("nothing selected to copy", severity="warning")
            return
        text = item.get("text") if isinstance(item.get("text"), str) else None
        self.copy_to_clipboard(text if text is not None else json.dumps(item, indent=2))
        self.notify(safe(f"copied {item.get('kind', 'item')} {item.get('key', '')}"), markup=False)

    def action_export(self) -> None:
        item = self._current_item()
        if item is None:
            self.notify("nothing selected to export", severity="warning")
            return
        self.export_item(item)

    def export_item(self, item: dict[str, Any]) -> Path | None:
        """Write ``item`` as JSON under the export folder; returns the file."""
        key = str(item.get("key") or item.get("prompt_key") or "item")
        name = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in key)
        try:
            self.export_dir.mkdir(parents=True, exist_ok=True)
            path = self.export_dir / f"{item.get('kind', 'item')}-{name}.json"
            path.write_text(json.dumps(item, indent=2, ensure_ascii=False, default=str) + "\n")
        except OSError as exc:
            self.notify(
                safe(f"export failed: {exc}; pass --export-dir"), severity="error", markup=False
            )
            return None
        self.notify(safe(f"exported to {path}"), markup=False)
        return path

    # -- running ----------------------------------------------------------------------------
    def action_start_run(self) -> None:
        if self.running:
            self.notify("a run is already going; x stops it", severity="warning")
            return
        run_id = self.source.run_id
        if self.run_settings is None and run_id is None:
            self.notify(
                "nothing to run: start `mrtui tui` with --prompts (and --model) to begin a run",
                severity="warning",
            )
            return
        if (
            self.overview is not None
            and self.overview.writer
            and not self.overview.writer.in_process
        ):
            self.notify(
                f"another process writes this log ({safe(self.overview.writer.describe())}); "
                "wait for it to finish",
                severity="warning",
                markup=False,
            )
            return
        self._stop.clear()
        self.running = True
        self.run_state = "run starting"
        self._run_worker(run_id)

    async def action_quit(self) -> None:
        """Quit; with a run going, stop it after the current unit first (a second ``q`` quits
        at once: `mrtui tui` then ends the process, and the run resumes from the log)."""
        if self.running and not self._quitting:
            self._quitting = True
            self.action_stop_run()
            self.notify("stopping the run after the current unit, then quitting; q again quits now")
            return
        self.exit(return_code=130 if self.running else 0)

    def action_stop_run(self) -> None:
        if self.running:
            self._stop.set()
            self.run_state = "stopping after the current unit…"
            self.update_status()

    def _run_worker(self, run_id: str | None) -> None:
        """The loop runs in a daemon thread (not a Textual worker, whose executor thread the
        interpreter would wait for at exit), so that quitting twice really quits."""

        def emit(e: RunEvent) -> None:
            with contextlib.suppress(Exception):  # the app may be gone when the loop ends
                self.call_from_thread(self._run_event, e)

        def target() -> None:
            try:
                drive(self.db, self.run_settings, run_id, emit, self._stop)
            except RunStopped as exc:
                emit(RunEvent("stopped", text=str(exc)))
            except Exception as exc:  # shown in the run log; the log stays whole
                emit(RunEvent("failed", text=f"{type(exc).__name__}: {exc}"))
            else:
                emit(RunEvent("done", text="run finished"))

        threading.Thread(target=target, name="mrtui-tui-run", daemon=True).start()

    def _run_event(self, e: RunEvent) -> None:
        screen = self._overview_screen()
        line = None
        if e.kind == "stage":
            self.run_state = f"iteration {e.iteration} {e.stage}: {e.done}/{e.total}"
            self._stage_total = e.total
            line = f"iteration {e.iteration} · {e.stage}: {e.total} units ({e.done} already logged)"
        elif e.kind == "advanced":
            stage = self.run_state.split(":")[0]
            self.run_state = f"{stage}: {e.done}/{getattr(self, '_stage_total', 0)}" + (
                f" ({e.failed} failed)" if e.failed else ""
            )
        elif e.kind == "finished":
            line = f"iteration {e.iteration} · {e.stage} finished: {e.done} done, {e.failed} failed"
        elif e.kind in ("done", "failed", "stopped"):
            self.running = False
            self.run_state = {
                "done": "run finished",
                "failed": "run FAILED",
                "stopped": "run stopped",
            }[e.kind]
            if self._quitting:
                self.exit()
                return
            line = e.text
            self.notify(
                safe(e.text),
                severity="error" if e.kind == "failed" else "information",
                markup=False,
            )
            self.refresh_data(full=True)
        else:
            line = e.text
        if line and screen is not None:
            screen.run_log(line)
        self.update_status()

    # -- command palette --------------------------------------------------------------------
    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Overview", "Iterations and run-health plots", self.action_overview)
        yield SystemCommand("Prompts", "Browse, filter and search prompts", self.action_prompts)
        yield SystemCommand("Refresh", "Read the log again now", self.action_refresh)
        yield SystemCommand(
            "Start or resume run", "Drive the loop from here", self.action_start_run
        )
        yield SystemCommand("Stop run", "Stop after the current unit", self.action_stop_run)
        yield SystemCommand("Export current item", "Write it as JSON", self.action_export)
        yield SystemCommand("Copy current item", "Copy its text", self.action_copy)
        for run in self.overview.runs if self.overview else []:
            if run != self.source.run_id:
                yield SystemCommand(
                    f"Show run {as_markup(run)}",
                    "Switch the screens to another run in this log",
                    lambda r=run: self.switch_run(r),
                )

    def switch_run(self, run_id: str) -> None:
        self.source.run_id = run_id
        self.index, self.index_all, self._index_seq = None, {}, -1
        self.index_judge = False
        self.health = None
        self._focus_cache.clear()
        self.action_overview()
        self.refresh_data(full=True)
