"""The prompt list: paged from the log, filtered by iteration, pairs and full-text search."""

from __future__ import annotations

from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import DataTable, Footer, Input, Static

from .base import AppScreen, StatusBar
from .messages import IndexReady
from .model import PromptRow
from .source import LogSource
from .text import lit, num, one_line

PAGE = 100
# what LogSource.prompts and prompt_count filter on: iteration, search, keys, exclude the keys
Query = tuple[int | None, str, list[str] | None, bool]
PAIR_FILTERS = ("all", "has pair", "no pair", "actor pair", "judge pair")


class PromptListScreen(AppScreen):
    DEFAULT_CSS = """
    PromptListScreen #filters { height: 3; }
    PromptListScreen #search { width: 1fr; }
    PromptListScreen #filter-info { width: auto; padding: 1 1; color: $text-muted; }
    PromptListScreen #prompts { height: 2fr; }
    PromptListScreen #preview { height: 1fr; border-top: solid $panel; padding: 0 1; }
    """
    BINDINGS = [
        Binding("slash", "search", "Search"),
        Binding("i", "cycle_iteration", "Iteration"),
        Binding("f", "cycle_pairs", "Pair filter"),
        Binding("enter", "open", "Open", show=False),
        Binding("escape", "leave", "Back"),
    ]

    def __init__(self, iteration: int | None = None) -> None:
        super().__init__()
        self.iteration = iteration
        self.pair_filter = "all"
        self.search = ""
        self.rows: list[PromptRow] = []
        self.total = 0
        self._loading = False
        self._filtered_without_index = False
        self.generation = 0

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status")
        with Horizontal(id="filters"):
            yield Input(placeholder="/ search prompt text or id", id="search")
            yield Static(id="filter-info")
        yield DataTable(id="prompts", cursor_type="row", zebra_stripes=True)
        with VerticalScroll(id="preview"):
            yield Static(id="preview-text")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#prompts", DataTable)
        for c in ("#", "id", "prompt", "responses", "best", "worst", "pairs"):
            table.add_column(c, key=c)
        self.reload()
        table.focus()

    # -- loading -------------------------------------------------------------------------
    @property
    def page_loading(self) -> bool:
        """A page of prompts is being read in a worker (the rows shown are not all yet)."""
        return self._loading

    def _filter_keys(self) -> tuple[list[str] | None, bool]:
        if self.pair_filter == "all":
            return None, False
        index, judged = self.state.index, self.state.index_judge
        if index is None or (self.pair_filter != "actor pair" and not judged):
            return None, False
        want = {
            "has pair": lambda s: s.actor_pair or s.judge_pair,
            "no pair": lambda s: s.actor_pair or s.judge_pair,
            "actor pair": lambda s: s.actor_pair,
            "judge pair": lambda s: s.judge_pair,
        }[self.pair_filter]
        keys = sorted(
            {k for (k, it), s in index.items() if (self.iteration in (None, it)) and want(s)}
        )
        return keys, self.pair_filter == "no pair"

    def reload(self) -> None:
        self.generation += 1
        self.rows = []
        self.query_one("#prompts", DataTable).clear()
        self._load(0, fresh=True)
        self._update_info()

    def _load(self, offset: int, fresh: bool = False) -> None:
        """Fetch a page in a worker; filters are captured here, on the UI thread, and a page
        that arrives for an older generation (a filter changed since) is dropped."""
        keys, exclude = self._filter_keys()
        self._filtered_without_index = self.pair_filter != "all" and keys is None
        self._loading = True
        query: Query = (self.iteration, self.search, keys, exclude)
        self.load_page(self.controller.source, self.generation, query, offset, fresh)

    @work(thread=True, group="prompt-page")
    def load_page(
        self, src: LogSource, generation: int, query: Query, offset: int, fresh: bool
    ) -> None:
        try:
            total = src.prompt_count(*query) if fresh else None
            rows = src.prompts(*query, offset, PAGE)
        except Exception as exc:  # shown, never raised into the UI
            self.app.call_from_thread(self._page_failed, generation, exc)
            return
        self.app.call_from_thread(self._add_rows, generation, offset, rows, total)

    def _page_failed(self, generation: int, exc: BaseException) -> None:
        if generation == self.generation:
            self._loading = False
        self.controller.read_failed(exc)

    def _add_rows(
        self, generation: int, offset: int, rows: list[PromptRow], total: int | None
    ) -> None:
        if generation != self.generation or offset != len(self.rows):
            return  # a page from before a filter change, or one already added
        if total is not None:
            self.total = total
        table = self.query_one("#prompts", DataTable)
        for r in rows:
            best, worst, pairs = self._stat_cells(r.prompt_key)
            table.add_row(
                str(r.index),
                one_line(r.source_id, 16),
                one_line(r.preview, 100),
                str(r.responses),
                best,
                worst,
                pairs,
                key=r.prompt_key,
            )
        self.rows.extend(rows)
        self._loading = False
        self._update_info()
        if offset == 0:
            self._preview()

    def _stat_cells(self, key: str) -> tuple[str, str, str]:
        stats = self.state.prompt_stats(key, self.iteration)
        if stats is None:
            return "…", "…", "…"
        pairs = ("A" if stats.actor_pair else "·") + (
            ("J" if stats.judge_pair else "·") if self.state.index_judge else "…"
        )
        return num(stats.best), num(stats.worst), pairs

    def _update_info(self) -> None:
        it = "all" if self.iteration is None else str(self.iteration)
        pairs = self.pair_filter
        if self._filtered_without_index:
            pairs += " (pairs still computing: showing all)"
        info = f"iteration {it} · {pairs} · {len(self.rows)}/{self.total} shown"
        self.query_one("#filter-info", Static).update(lit(info))

    # -- events --------------------------------------------------------------------------
    @on(DataTable.RowHighlighted, "#prompts")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._preview()
        near_end = event.cursor_row >= len(self.rows) - 10
        if near_end and len(self.rows) < self.total and not self._loading:
            self._load(len(self.rows))

    def _preview(self) -> None:
        row = self.current()
        text = self.query_one("#preview-text", Static)
        if row is None:
            text.update(lit("no prompts match" if self.total == 0 else ""))
            return
        text.update(lit(row.preview + ("…" if len(row.preview) >= 400 else "")))
        i = self.query_one("#prompts", DataTable).cursor_row
        after = [self.rows[i + 1].prompt_key] if 0 <= i < len(self.rows) - 1 else []
        self.controller.prefetch(row.prompt_key, *after)

    def current(self) -> PromptRow | None:
        table = self.query_one("#prompts", DataTable)
        if not self.rows or table.cursor_row < 0 or table.cursor_row >= len(self.rows):
            return None
        return self.rows[table.cursor_row]

    @on(DataTable.RowSelected, "#prompts")
    def _selected(self, _: DataTable.RowSelected) -> None:
        self.action_open()

    @on(Input.Submitted, "#search")
    def _search(self, event: Input.Submitted) -> None:
        self.search = event.value.strip()
        self.reload()
        self.query_one("#prompts", DataTable).focus()

    def action_search(self) -> None:
        self.query_one("#search", Input).focus()

    def action_open(self) -> None:
        row = self.current()
        if row is not None:
            self.controller.open_prompt(row.prompt_key, self.iteration)

    def action_cycle_iteration(self) -> None:
        its = [None, *self.state.iterations()]
        i = its.index(self.iteration) if self.iteration in its else 0
        self.iteration = its[(i + 1) % len(its)]
        self.reload()

    def action_cycle_pairs(self) -> None:
        i = PAIR_FILTERS.index(self.pair_filter)
        self.pair_filter = PAIR_FILTERS[(i + 1) % len(PAIR_FILTERS)]
        self.reload()

    def action_leave(self) -> None:
        if self.focused is self.query_one("#search", Input):
            self.query_one("#prompts", DataTable).focus()
        else:
            self.app.pop_screen()

    def on_index_ready(self, _: IndexReady) -> None:
        """The app computed (or refreshed) the pair index: fill the score and pair columns in
        place, keeping the cursor and the loaded pages; only a pair filter that was waiting
        for the index reloads the list."""
        if self.pair_filter != "all" and self._filtered_without_index:
            self.reload()
            return
        table = self.query_one("#prompts", DataTable)
        for r in self.rows:
            for col, value in zip(
                ("best", "worst", "pairs"), self._stat_cells(r.prompt_key), strict=True
            ):
                table.update_cell(r.prompt_key, col, value)
        self._update_info()

    def export_current(self) -> dict[str, Any] | None:
        row = self.current()
        return None if row is None else {"prompt_key": row.prompt_key, "index": row.index}
