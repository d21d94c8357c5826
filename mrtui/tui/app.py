"""``mrtui tui``: the Textual app that ties the screens to the log and to a live run.

The app reads the log in worker threads and keeps what it read in a :class:`TuiState`; it tells
the screens about new data with the messages of :mod:`mrtui.tui.messages`, and the screens ask it
for actions through the :class:`~mrtui.tui.state.Controller` protocol, which it implements.
Prompts opened in the detail screens are read by :class:`FocusCache`.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec

from rich.text import Text
from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen

from mrtui.loop.progress import CancelToken
from mrtui.store.health import Health
from mrtui.untrusted import safe

from .base import AppScreen, StatusBar
from .battle import BattleScreen
from .compare import CompareScreen, RunPicker
from .detail import PromptDetailScreen
from .eval_model import EvalReader
from .evaluation import EvaluationScreen
from .focus_cache import FocusCache
from .indexer import PromptIndexer
from .items import judgement_item, write_item
from .label_modal import LabelChoice, LabelModal, LabelsRead, read_labels
from .live import RunEnded, RunUpdate, drive
from .messages import (
    BattlesReady,
    CostsRead,
    HealthRead,
    IndexReady,
    OverviewRead,
    RecentRead,
    RunLogLine,
    SignalRead,
)
from .modal import TextModal
from .model import (
    EventRow,
    IterationFocus,
    JudgementInfo,
    JudgeSignal,
    LabelTarget,
    Overview,
    PromptFocus,
    WriterInfo,
)
from .overview import OverviewScreen
from .palette import PromptSearch
from .prompts import PromptListScreen
from .scores import dist_line, score_head
from .source import READ_TIMEOUT_S, LogSource, writer_info
from .state import Controller, Index, Losses, TuiState
from .text import as_markup, lit

POLL_S = 1.0
LABEL_RETRY_S = 2.0  # a label that waits for the writer lock is tried again this often

P = ParamSpec("P")


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
        Binding("m", "evaluation", "Evaluation"),
        Binding("r", "refresh", "Refresh"),
        Binding("s", "start_run", "Run/resume"),
        Binding("x", "stop_run", "Stop run"),
        Binding("c", "copy", "Copy"),
        Binding("e", "export", "Export"),
        Binding("C", "compare", "Compare runs"),
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
        compare: tuple[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.db = Path(db)
        self.source = LogSource(self.db, run_id)
        self.state = TuiState(self.db)
        self.run_settings = settings
        self.export_dir = Path(export_dir)
        self.poll_enabled = poll
        self.clock = clock  # wall clock for the status line (tests pin it)
        self.focus_cache = FocusCache(
            self,
            self.source,
            self.state.seq,
            ready=self._prompt_read,
            battles=lambda focus: self.tell(BattlesReady, focus),
            failed=self.read_failed,
        )
        self.eval_reader = EvalReader(self.db)
        self.indexer = PromptIndexer(
            self,
            self.source,
            ready=self._got_index,
            failed=self.read_failed,
            signal=self._got_signal,
        )
        self._refreshing = False
        self._refresh_again = False
        self._complete_seq: int | None = None  # max seq of the last read that went through
        self._cancel = CancelToken()
        self.compare_runs = compare  # `--compare A B`: opened over the overview at start
        self._quitting = False
        # human labels made here: saved in a worker; kept while another process writes the log
        self._pending_labels: list[Any] = []  # mrtui.store.labels.Label, oldest first
        self._labels_saving = False
        self._labels_warned = False  # the person was told that labels wait
        self._labels_quit = False  # q was pressed with labels waiting: quit once they are in
        self._labels_mark: tuple[Any, ...] | None = None  # what the last label read saw

    # -- what tests and bench/bench_tui.py read (the state is the place to look) ---------------
    @property
    def overview(self) -> Overview | None:
        return self.state.overview

    @property
    def health(self) -> dict[int, Health] | None:
        return self.state.health

    @property
    def losses(self) -> Losses:
        return self.state.losses

    @property
    def index(self) -> Index | None:
        return self.state.index

    @property
    def index_judge(self) -> bool:
        return self.state.index_judge

    @property
    def last_error(self) -> str | None:
        return self.state.last_error

    @property
    def first_screen_s(self) -> float | None:
        return self.state.first_screen_s

    @property
    def running(self) -> bool:
        return self.state.run.running

    @property
    def run_state(self) -> str:
        return self.state.run.state

    # -- telling the screens ----------------------------------------------------------------
    def tell(self, message: Callable[P, Message], *args: P.args, **kwargs: P.kwargs) -> None:
        """Post ``message(*args, **kwargs)`` to every screen on the stack (a fresh one each);
        the screens that care handle it."""
        for screen in self.screen_stack:
            screen.post_message(message(*args, **kwargs))

    # -- lifecycle and reads ----------------------------------------------------------------
    def on_mount(self) -> None:
        self.push_screen(OverviewScreen())
        if self.compare_runs is not None:
            self.open_compare(*self.compare_runs)
        self.refresh_data(full=True)
        if self.poll_enabled:
            self.set_interval(POLL_S, self._poll)
        self.set_interval(1.0, self.update_status)
        self.set_interval(LABEL_RETRY_S, self._flush_labels)

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
            health, losses = self._read_health()
            self.call_from_thread(self._got_health, health, losses)
            self.call_from_thread(self._got_costs, self.source.costs())
            self.call_from_thread(self._complete, ov.max_seq)
            labels = self._read_labels()
            if labels is not None:
                self.call_from_thread(self._got_labels, *labels)
        except Exception as exc:  # shown as stale data, never a crash
            self.call_from_thread(self.read_failed, exc)
        finally:
            self.call_from_thread(self._refresh_done)

    def _read_labels(self) -> tuple[Any, ...] | None:
        """The run's human labels and judge-human agreement (in the refresh worker), or None
        when no label was added since the last read (a count over the events only)."""
        from mrtui.store import connect

        run = self.source.run_id
        with connect(self.db, timeout=READ_TIMEOUT_S) as con:
            count, top = con.execute(
                "SELECT count(*), coalesce(max(seq), 0) FROM events "
                "WHERE event_type = 'HumanLabelRecorded' AND run_id = ?",
                [run],
            ).fetchall()[0]
            mark = (run, count, top)
            if mark == self._labels_mark:
                return None
            labels, agreement = read_labels(con, run) if count else ({}, {})
        return labels, agreement, mark

    def _got_labels(self, labels: Any, agreement: Any, mark: tuple[Any, ...]) -> None:
        self._labels_mark = mark
        self.state.labels, self.state.agreement = labels, agreement
        self.tell(LabelsRead)

    def _read_health(self) -> tuple[dict[int, Health], Losses]:
        """Run-health counters and DPO losses of the current run (in the refresh worker).
        The app's one call of ``LogSource.health``: swap the health definition here."""
        return self.source.health(), self.source.losses()

    def _unchanged(self, writer: WriterInfo | None) -> None:
        ov = self.state.overview
        if ov is not None and ov.writer != writer:
            ov.writer = writer
        self._mark_ok()
        if ov is not None:
            self.indexer.maybe_start(ov, self.state.index is not None)

    def _complete(self, seq: int) -> None:
        self._complete_seq = seq

    def _refresh_done(self) -> None:
        self._refreshing = False
        if self._refresh_again:
            again, self._refresh_again = self._refresh_again, False
            self.refresh_data(full=again)

    def _mark_ok(self) -> None:
        self.state.last_ok = self.clock()
        self.state.last_error = None
        self.update_status()

    def _got_overview(self, ov: Overview) -> None:
        self.state.overview = ov
        self._mark_ok()
        self.tell(OverviewRead, ov, self.state.health)
        self.refresh_bindings()  # C (compare runs) shows once the log holds two runs
        self.indexer.maybe_start(ov, self.state.index is not None)

    def _got_recent(self, recent: list[EventRow]) -> None:
        self.tell(RecentRead, recent)

    def _got_health(self, health: dict[int, Health], losses: Losses) -> None:
        self.state.health, self.state.losses = health, losses
        if self.state.overview is not None:
            self.tell(HealthRead, self.state.overview, health, losses)

    def _got_costs(self, costs: dict[int, dict[str, dict[str, Any]]]) -> None:
        self.state.costs = costs
        self.tell(CostsRead)

    def _got_index(self, index: Index, judge_pairs: bool) -> None:
        self.state.set_index(index, judge_pairs)
        self.tell(IndexReady)

    def _got_signal(self, signal: dict[int, JudgeSignal]) -> None:
        self.state.signal = signal
        self.tell(SignalRead)

    def read_failed(self, exc: BaseException) -> None:
        self.state.last_error = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        self.update_status()

    # -- status line ------------------------------------------------------------------------
    def status_text(self) -> tuple[str, bool]:
        return self.state.status_text(self.clock())

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
        self.action_overview()
        self.push_screen(PromptListScreen(iteration))

    def action_evaluation(self) -> None:
        self.action_overview()
        self.push_screen(EvaluationScreen(self.eval_reader))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "compare":  # on the overview, when the log holds two runs or more
            ov = self.state.overview
            return isinstance(self.screen, OverviewScreen) and ov is not None and len(ov.runs) > 1
        return True

    def action_compare(self) -> None:
        """Compare two runs of the log: the only two at once, else ask which (RunPicker)."""
        runs = self.state.overview.runs if self.state.overview is not None else []
        if len(runs) < 2:
            self.notify("this log holds one run: nothing to compare", severity="warning")
        elif len(runs) == 2:
            self.open_compare(runs[1], runs[0])  # the older run as A
        else:
            self.push_screen(RunPicker(runs), lambda ab: self.open_compare(*ab) if ab else None)

    def open_compare(self, run_a: str, run_b: str) -> None:
        self.push_screen(CompareScreen(run_a, run_b))

    def prefetch(self, *prompt_keys: str) -> None:
        self.focus_cache.prefetch(*prompt_keys)

    def open_prompt(self, prompt_key: str, iteration: int | None = None) -> None:
        self.focus_cache.open(prompt_key, iteration)

    def _prompt_read(self, focus: PromptFocus, iteration: int | None, origin: Screen[Any]) -> None:
        """A prompt the user opened is read: show it, but only where the user still is."""
        if isinstance(self.screen, PromptListScreen) or self.screen is origin:
            self.push_screen(PromptDetailScreen(focus, iteration))

    def open_battle(self, focus: PromptFocus, it: IterationFocus) -> None:
        self.push_screen(BattleScreen(focus, it))

    def show_text(self, title: str, text: str, meta: str = "", item: Any = None) -> None:
        self.push_screen(TextModal(title, text, meta, item))

    def show_judgement(self, j: JudgementInfo) -> None:
        dist = dist_line(j)
        meta = (
            f"{j.key} · {score_head(j)}"
            + (f" · {j.parse_error}" if j.parse_error else "")
            + (f"\n{dist}" if dist else "")
        )
        self.show_text(f"judgement {j.judge_index}", j.text, meta, judgement_item(j))

    def action_refresh(self) -> None:
        self.focus_cache.clear()
        self.refresh_data(full=True)

    def switch_run(self, run_id: str) -> None:
        self.source.run_id = run_id
        self.state.forget_run()
        self._labels_mark = None
        self.indexer.reset()
        self.focus_cache.clear()
        self.action_overview()
        self.refresh_data(full=True)

    # -- copy / export ----------------------------------------------------------------------
    def _current_item(self) -> dict[str, Any] | None:
        screen = self.screen
        return screen.export_current() if isinstance(screen, AppScreen) else None

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
        try:
            path = write_item(self.export_dir, item)
        except OSError as exc:
            self.notify(
                safe(f"export failed: {exc}; pass --export-dir"), severity="error", markup=False
            )
            return None
        self.notify(safe(f"exported to {path}"), markup=False)
        return path

    # -- human labels -------------------------------------------------------------------------
    def label(self, targets: list[LabelTarget]) -> None:
        """Ask for a label of one of ``targets`` (LabelModal); the choice is saved to the log."""
        if not targets:
            self.notify("nothing here to label", severity="warning")
            return
        self.push_screen(LabelModal(targets), self._label_chosen)

    def _label_chosen(self, choice: LabelChoice | None) -> None:
        if choice is None:
            return
        from mrtui.store.labels import Label, default_author

        self._pending_labels.append(Label(choice.key, choice.label, default_author(), choice.note))
        self._flush_labels()

    def _flush_labels(self) -> None:
        """Save the labels that wait, one attempt at a time (also every LABEL_RETRY_S)."""
        self.state.pending_labels = len(self._pending_labels)
        if self._pending_labels and not self._labels_saving:
            self._labels_saving = True
            self._label_worker(list(self._pending_labels))
        self.update_status()

    @work(thread=True, group="labels")
    def _label_worker(self, batch: list[Any]) -> None:
        """Append ``batch``; a label the log rejects is dropped (with its reason), the others
        are kept while the log cannot be written (another writer holds it, say)."""
        from mrtui.store.labels import LabelError, record_labels

        saved: list[Any] = []
        rejected: list[tuple[Any, str]] = []
        waiting: str | None = None
        try:
            record_labels(self.db, batch)
            saved = batch
        except LabelError:  # one is bad: find it, keep the others
            for lab in batch:
                try:
                    record_labels(self.db, [lab])
                    saved.append(lab)
                except LabelError as exc:
                    rejected.append((lab, str(exc)))
                except Exception as exc:
                    waiting = str(exc) or type(exc).__name__
                    break
        except Exception as exc:  # WriterLocked (a run writes the log), LogBusy, ...
            waiting = str(exc) or type(exc).__name__
        with contextlib.suppress(Exception):  # the app may be gone
            self.call_from_thread(self._labels_done, saved, rejected, waiting)

    def _labels_done(
        self, saved: list[Any], rejected: list[tuple[Any, str]], waiting: str | None
    ) -> None:
        self._labels_saving = False
        done = {id(x) for x in saved} | {id(x) for x, _ in rejected}
        self._pending_labels = [x for x in self._pending_labels if id(x) not in done]
        self.state.pending_labels = len(self._pending_labels)
        for _lab, why in rejected:
            self.notify(safe(f"label not saved: {why}"), severity="error", markup=False)
        if saved:
            what = ", ".join(f"{lab.label} for {lab.key[:12]}" for lab in saved)
            self.notify(safe(f"label saved: {what}"), markup=False)
            self.refresh_data(full=True)
        n = len(self._pending_labels)
        if n and waiting and (not self._labels_warned or self._labels_quit):
            self._labels_warned = True
            reason = (
                "the run started here is writing the log; they are saved once it stops"
                if self.state.run.running
                else waiting.splitlines()[0][:200]
            )
            tail = (
                "q again quits and writes them to a file for `mrtui labels import`"
                if self._labels_quit
                else f"retried every {LABEL_RETRY_S:.0f} s"
            )
            self.notify(
                safe(f"{n} label(s) waiting to be saved: {reason}; {tail}"),
                severity="warning",
                timeout=10,
                markup=False,
            )
        if not n:
            self._labels_warned = False
            if self._labels_quit:
                self.exit()
                return
        self.update_status()

    def _write_unsaved_labels(self) -> Text | None:
        """At exit: the labels still waiting, written as JSONL for `mrtui labels import`; what
        to print about them (None when none wait)."""
        labels = self._pending_labels
        if not labels:
            return None
        lines = "".join(
            json.dumps({"key": x.key, "label": x.label, "author": x.author, "note": x.note}) + "\n"
            for x in labels
        )
        path = self.export_dir / f"unsaved-labels-{time.strftime('%Y%m%d-%H%M%S')}.jsonl"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(lines, encoding="utf-8")
        except OSError as exc:
            return Text(f"{len(labels)} label(s) were not saved ({exc}); as JSONL:\n{lines}")
        return Text(
            f"{len(labels)} label(s) were not saved (another process was writing the log); "
            f"they are in {path}: `mrtui labels import --db {self.db} {path}` adds them"
        )

    # -- running ----------------------------------------------------------------------------
    def action_start_run(self) -> None:
        if self.state.run.running:
            self.notify("a run is already going; x stops it", severity="warning")
            return
        run_id = self.source.run_id
        if self.run_settings is None and run_id is None:
            self.notify(
                "nothing to run: start `mrtui tui` with --prompts (and --model) to begin a run",
                severity="warning",
            )
            return
        writer = self.state.overview.writer if self.state.overview is not None else None
        if writer and not writer.in_process:
            self.notify(
                f"another process writes this log ({safe(writer.describe())}); "
                "wait for it to finish",
                severity="warning",
                markup=False,
            )
            return
        self._cancel.reset()
        self.state.run.start()
        self._drive(run_id)

    async def action_quit(self) -> None:
        """Quit; with a run going, stop it after the current unit first (a second ``q`` quits
        at once: `mrtui tui` then ends the process, and the run resumes from the log)."""
        if self.state.run.running and not self._quitting:
            self._quitting = True
            self.action_stop_run()
            self.notify("stopping the run after the current unit, then quitting; q again quits now")
            return
        self._quit()

    def _quit(self) -> None:
        """Exit; with labels waiting (and no run of ours holding the log), try them once more
        first and exit once they are saved (``q`` again exits anyway, writing them to a file)."""
        running = self.state.run.running
        if self._pending_labels and not running and not self._labels_quit:
            self._labels_quit = True
            n = len(self._pending_labels)
            self.notify(f"saving {n} waiting label(s) before quitting…")
            self._flush_labels()
            return
        self.exit(return_code=130 if running else 0, message=self._write_unsaved_labels())

    def action_stop_run(self) -> None:
        if self.state.run.running:
            self._cancel.cancel()
            self.state.run.stopping()
            self.update_status()

    def _drive(self, run_id: str | None) -> None:
        """Drive the run in a daemon thread (not a Textual worker, whose executor thread the
        interpreter would wait for at exit, so that quitting twice really quits). The app's
        one call of ``live.drive`` (the shared run session): progress messages and the run's end
        go to :meth:`_run_event`; ``self._cancel`` stops it after the unit in flight."""

        def emit(e: RunUpdate) -> None:
            with contextlib.suppress(Exception):  # the app may be gone when the loop ends
                self.call_from_thread(self._run_event, e)

        def target() -> None:
            drive(self.db, self.run_settings, run_id, emit, self._cancel)

        threading.Thread(target=target, name="mrtui-tui-run", daemon=True).start()

    def _run_event(self, e: RunUpdate) -> None:
        line = self.state.run.apply(e)
        if isinstance(e, RunEnded):
            if self._quitting:
                self._quit()
                return
            self.notify(
                safe(e.text),
                severity="error" if e.kind == "failed" else "information",
                markup=False,
            )
            self.refresh_data(full=True)
        if line:
            self.tell(RunLogLine, line)
        self.update_status()

    # -- command palette --------------------------------------------------------------------
    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Overview", "Iterations and run-health plots", self.action_overview)
        yield SystemCommand("Prompts", "Browse, filter and search prompts", self.action_prompts)
        yield SystemCommand(
            "Evaluation",
            "Benchmark results per iteration, samples, what changed (mrtui eval)",
            self.action_evaluation,
        )
        yield SystemCommand("Refresh", "Read the log again now", self.action_refresh)
        if self.state.overview is not None and len(self.state.overview.runs) > 1:
            yield SystemCommand(
                "Compare runs",
                "Two runs side by side: health, pairs, evaluation, prompts",
                self.action_compare,
            )
        yield SystemCommand(
            "Start or resume run", "Drive the loop from here", self.action_start_run
        )
        yield SystemCommand("Stop run", "Stop after the current unit", self.action_stop_run)
        yield SystemCommand("Export current item", "Write it as JSON", self.action_export)
        yield SystemCommand("Copy current item", "Copy its text", self.action_copy)
        if hasattr(screen, "action_label"):
            yield SystemCommand(
                "Label current item (l)",
                "Record your own score or verdict in the log",
                lambda: screen.run_action("label"),
            )
        ov = self.state.overview
        for run in ov.runs if ov else []:
            if run != self.source.run_id:
                yield SystemCommand(
                    f"Show run {as_markup(run)}",
                    "Switch the screens to another run in this log",
                    lambda r=run: self.switch_run(r),
                )


if TYPE_CHECKING:
    _APP_IS_A_CONTROLLER: type[Controller] = MrtuiApp  # checked by mypy, not at run time
