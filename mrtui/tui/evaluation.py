"""The Evaluation screen (``m``): a run's benchmark results per iteration with a plot of the
highlighted metric, the samples of its suite, and the items whose outcome changed between two
iterations, side by side. Reads go through :class:`~mrtui.tui.eval_model.EvalReader` in thread
workers; a result that arrives after the user moved on (an older generation) is dropped."""

from __future__ import annotations

import time
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import DataTable, Footer, Static
from textual_plotext import PlotextPlot

from .base import AppScreen, StatusBar
from .eval_model import ChangedRow, EvalData, EvalReader, MetricLine, SampleDetail, SampleRow
from .eval_view import (
    data_info,
    fill_results,
    fill_samples,
    list_info,
    outcome_text,
    paired_text,
    plot_metric,
    prompt_text,
    response_text,
    sample_item,
)
from .messages import OverviewRead
from .text import lit

RESULTS_EVERY_S = 10.0


class EvaluationScreen(AppScreen):
    DEFAULT_CSS = """
    EvaluationScreen #eval-info { height: auto; padding: 0 1; color: $text-muted; }
    EvaluationScreen #eval-body.-empty { display: none; }
    EvaluationScreen #eval-top { height: 14; }
    EvaluationScreen #eval-results { width: 2fr; }
    EvaluationScreen #eval-plot { width: 1fr; min-width: 30; }
    EvaluationScreen #eval-paired { height: auto; max-height: 2; padding: 0 1; }
    EvaluationScreen #eval-list-info { height: 1; padding: 0 1; color: $text-muted; }
    EvaluationScreen #eval-samples { height: 1fr; min-height: 5; }
    EvaluationScreen #eval-prompt {
        height: auto; max-height: 5; padding: 0 1; border-top: solid $panel;
    }
    EvaluationScreen #eval-detail { height: 2fr; border-top: solid $panel; }
    EvaluationScreen #eval-left { width: 1fr; padding: 0 1; border-right: solid $panel; }
    EvaluationScreen #eval-right { width: 1fr; padding: 0 1; }
    """
    BINDINGS = [
        Binding("i", "cycle_iteration", "Iteration"),
        Binding("c", "toggle_changed", "Changed A→B"),
        Binding("b", "cycle_compare", "Iteration B"),
        Binding("escape", "app.pop_screen", "Back"),
    ]

    def __init__(self, reader: EvalReader) -> None:
        super().__init__()
        self.reader = reader
        self.data: EvalData | None = None
        self.line: MetricLine | None = None  # the highlighted results row
        self.iteration: int | None = None  # the samples shown (A in the changed view)
        self.compare: int | None = None  # B in the changed view
        self.changed = False  # c: only the items whose outcome differs between A and B
        self.rows: list[SampleRow] | list[ChangedRow] = []
        self.details: tuple[SampleDetail | None, SampleDetail | None] = (None, None)
        self.list_ready = False  # the samples list shows what was last asked for
        self.detail_ready = False  # so do the detail panes
        self._list_gen = 0
        self._detail_gen = 0
        self._reading = False  # a read of the results is in flight
        self._again: tuple[str | None] | None = None  # asked for meanwhile (the run)
        self._read_at = 0.0  # when the last read of the results started (monotonic)

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status")
        yield Static(id="eval-info")
        with Vertical(id="eval-body", classes="-empty"):
            with Horizontal(id="eval-top"):
                yield DataTable(id="eval-results", cursor_type="cell", zebra_stripes=True)
                yield PlotextPlot(id="eval-plot")
            yield Static(id="eval-paired")
            yield Static(id="eval-list-info")
            yield DataTable(id="eval-samples", cursor_type="row", zebra_stripes=True)
            with VerticalScroll(id="eval-prompt"):
                yield Static(id="eval-prompt-text")
            with Horizontal(id="eval-detail"):
                with VerticalScroll(id="eval-left"):
                    yield Static(id="eval-left-text")
                with VerticalScroll(id="eval-right"):
                    yield Static(id="eval-right-text")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#eval-info", Static).update(lit("reading the evaluation…"))
        self.request_data(self.controller.source.run_id)

    # -- the results table -------------------------------------------------------------------
    def request_data(self, run_id: str | None) -> None:
        """Read the results (one read at a time; asked again meanwhile: once more after)."""
        if self._reading:
            self._again = (run_id,)
            return
        self._reading, self._again, self._read_at = True, None, time.monotonic()
        self.read_data(run_id)

    @work(thread=True, group="eval-data")
    def read_data(self, run_id: str | None) -> None:
        try:
            data = self.reader.data(run_id)
        except Exception as exc:  # shown as stale data, never raised into the UI
            self.app.call_from_thread(self._data_failed, exc)
            return
        self.app.call_from_thread(self._got_data, data)

    def _data_failed(self, exc: BaseException) -> None:
        self._reading = False
        self.controller.read_failed(exc)

    def _got_data(self, data: EvalData) -> None:
        self._reading = False
        if self._again is not None:
            self.request_data(*self._again)
        if not self.is_attached or data is self.data:
            return
        self.data = data
        body = self.query_one("#eval-body")
        body.set_class(data.empty, "-empty")
        self.query_one("#eval-info", Static).update(data_info(data, self.controller.source.path))
        if data.empty:
            return
        if self.iteration not in data.iterations:
            self.iteration = data.iterations[-1]
        table = self.query_one("#eval-results", DataTable)
        cursor = table.cursor_coordinate
        fill_results(table, data)
        cols = data.columns
        if data.lines:
            table.move_cursor(row=min(cursor.row, len(data.lines) - 1), column=cursor.column)
            if self.line is None:  # first read: the newest iteration's headline metric
                col = 3 + cols.index(self.iteration) if self.iteration in cols else 0
                table.move_cursor(row=0, column=col)
                table.focus()
        self._select_line(force=True)

    @on(DataTable.CellHighlighted, "#eval-results")
    def _cell(self, event: DataTable.CellHighlighted) -> None:
        data = self.data
        if data is None or data.empty:
            return
        cols, col = data.columns, event.coordinate.column - 3
        if not self.changed and 0 <= col < len(cols) and cols[col] != self.iteration:
            self.iteration = cols[col]
            self._select_line(force=True)
        else:
            self._select_line()

    @on(DataTable.CellSelected, "#eval-results")
    def _cell_selected(self, _: DataTable.CellSelected) -> None:
        self.query_one("#eval-samples", DataTable).focus()

    def _select_line(self, force: bool = False) -> None:
        data = self.data
        if data is None or not data.lines:
            return
        row = self.query_one("#eval-results", DataTable).cursor_coordinate.row
        line = data.lines[min(max(row, 0), len(data.lines) - 1)]
        before, self.line = self.line, line
        plot = self.query_one("#eval-plot", PlotextPlot)
        plot_metric(plot.plt, line)
        plot.refresh()
        self.query_one("#eval-paired", Static).update(paired_text(data, line, self.iteration))
        if force or before is None or (before.suite, before.judge) != (line.suite, line.judge):
            self.load_list()

    # -- the samples list ------------------------------------------------------------------
    def load_list(self) -> None:
        line, data = self.line, self.data
        if line is None or data is None or self.iteration is None:
            return
        self._list_gen += 1
        self.list_ready = False
        a = self.iteration
        b = (self.compare if self.compare is not None else a) if self.changed else None
        self.query_one("#eval-list-info", Static).update(list_info(line, a, b))
        self.read_list(self._list_gen, data.run_id, line.suite, a, b, line.judge)

    @work(thread=True, exclusive=True, group="eval-list")
    def read_list(
        self, gen: int, run_id: str | None, suite: str, a: int, b: int | None, judge: str
    ) -> None:
        try:
            rows: list[Any] = (
                self.reader.samples(run_id, suite, a, judge)
                if b is None
                else self.reader.changed(run_id, suite, a, b, judge)
            )
        except Exception as exc:
            self.app.call_from_thread(self.controller.read_failed, exc)
            return
        self.app.call_from_thread(self._got_list, gen, rows)

    def _got_list(self, gen: int, rows: list[Any]) -> None:
        if gen != self._list_gen or not self.is_attached or self.line is None:
            return
        self.rows = rows
        table = self.query_one("#eval-samples", DataTable)
        cursor = table.cursor_row
        fill_samples(table, rows, self.changed)
        if rows:
            table.move_cursor(row=min(max(cursor, 0), len(rows) - 1))
        b = self.compare if self.changed else None
        self.query_one("#eval-list-info", Static).update(
            list_info(self.line, self.iteration, b, len(rows))
        )
        self.list_ready = True
        self._show_current()

    @on(DataTable.RowHighlighted, "#eval-samples")
    def _row(self, _: DataTable.RowHighlighted) -> None:
        self._show_current()

    def current(self) -> SampleRow | ChangedRow | None:
        row = self.query_one("#eval-samples", DataTable).cursor_row
        return self.rows[row] if 0 <= row < len(self.rows) else None

    # -- one sample (or two, side by side) ---------------------------------------------------
    def _show_current(self) -> None:
        self._detail_gen += 1
        self.detail_ready = False
        r = self.current()
        if r is None:
            self._show_details(self._detail_gen, None, None)
            return
        pair = (r.a, r.b) if isinstance(r, ChangedRow) else (r, None)
        self.read_details(self._detail_gen, *pair)

    @work(thread=True, exclusive=True, group="eval-detail")
    def read_details(self, gen: int, a: SampleRow, b: SampleRow | None) -> None:
        try:
            da = self.reader.detail(a.sample_key, a.judge_sha256)
            db = None if b is None else self.reader.detail(b.sample_key, b.judge_sha256)
        except Exception as exc:
            self.app.call_from_thread(self.controller.read_failed, exc)
            return
        self.app.call_from_thread(self._show_details, gen, da, db)

    def _show_details(self, gen: int, a: SampleDetail | None, b: SampleDetail | None) -> None:
        if gen != self._detail_gen or not self.is_attached:
            return
        self.details = (a, b)
        self.detail_ready = True
        left = self.query_one("#eval-left-text", Static)
        right = self.query_one("#eval-right-text", Static)
        self.query_one("#eval-prompt-text", Static).update(prompt_text(a))
        if a is None:
            left.update(lit("" if self.rows else "no samples here"))
            right.update("")
        elif b is None:
            left.update(response_text(a))
            right.update(outcome_text(a))
        else:
            for pane, d in ((left, a), (right, b)):
                text = response_text(d, header=True)
                text.append("\n\n")
                text.append_text(outcome_text(d))
                pane.update(text)

    # -- keys ------------------------------------------------------------------------------
    def _step(self, it: int | None) -> int | None:
        its = self.data.iterations if self.data else []
        if not its:
            return None
        return its[(its.index(it) + 1) % len(its)] if it in its else its[0]

    def action_cycle_iteration(self) -> None:
        self.iteration = self._step(self.iteration)
        self.load_list()

    def action_cycle_compare(self) -> None:
        if not self.changed:
            self.notify("b picks the second iteration of the changed view (c)")
            return
        self.compare = self._step(self.compare)
        self.load_list()

    def action_toggle_changed(self) -> None:
        its = self.data.iterations if self.data else []
        if not its:
            return
        self.changed = not self.changed
        if self.changed:  # the first and the last evaluated iteration
            self.iteration, self.compare = its[0], its[-1]
        self.load_list()

    def on_overview_read(self, message: OverviewRead) -> None:
        """The log grew (or the overview settled on a run): read the results again; while a
        writer holds the log, at most every ``RESULTS_EVERY_S`` (the intervals are
        bootstrapped on every read)."""
        data, ov = self.data, message.overview
        if data is None or (ov.max_seq, ov.run_id) == (data.seq, data.run_id):
            return
        recent = time.monotonic() - self._read_at < RESULTS_EVERY_S
        if ov.writer is None or not recent or ov.run_id != data.run_id:
            self.request_data(ov.run_id)

    def export_current(self) -> dict[str, Any] | None:
        a = self.details[0]
        return None if a is None else sample_item(a)
