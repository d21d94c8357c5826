"""Two runs of one log side by side: health and pair counts per iteration, evaluation results,
and the prompts both runs share with the response each run's actor pair chose.

Prompts are matched across runs by their text (prompt keys include the run, so they never
match); a text that occurs several times in a run is matched occurrence by occurrence. The
chosen responses of a prompt are compared by their text in one iteration at a time: keys differ
between runs and a sample index says nothing about two different samplings, while two runs that
sample the same model with the same seed (iteration 1 of two runs from one base model) draw the
same texts, so there equal text means the same sample was chosen. A prompt where one run made
an actor pair and the other did not counts as differing.

Health comes from :mod:`mrtui.store.health` (``read``, the definition `mrtui status` and the
overview use), evaluation from :class:`~mrtui.tui.eval_model.EvalReader` (formatted by
:mod:`mrtui.evaluation.report`); nothing is recomputed here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, OptionList, Static
from textual.widgets.option_list import Option

from mrtui.loop.report import COST_ROLES, cost_cell
from mrtui.store.health import ALARMS, Health

from .base import AppScreen, StatusBar
from .eval_model import EvalData, EvalReader
from .source import READ_TIMEOUT_S
from .text import lit, num, one_line, pct

MARK = " !"  # after a rate whose alarm is on, as on the overview
DIFFERS = "≠"


def _count(name: str) -> Callable[[Health], str]:
    return lambda h: f"{h.counts[name]:.0f}"


def _rate(name: str, fmt: str | None = None) -> Callable[[Health], str]:
    def cell(h: Health) -> str:
        value = h.rate(name)
        text = pct(value) if fmt is None else num(value, fmt)
        alarm = any(ALARMS[a].rate == name for a in h.alarms())
        return text + (MARK if alarm else "")

    return cell


# health rows: label -> the cell of one iteration's Health (store/health.py's counters/rates)
HEALTH_ROWS: dict[str, Callable[[Health], str]] = {
    "responses": _count("responses"),
    "judgements": _count("judgements"),
    "verdicts": _count("verdicts"),
    "failed requests": _count("failures"),
    "mean length (chars)": _rate("mean_response_chars", "{:.0f}"),
    "cut at token limit": _rate("truncated_share"),
    "judge parse failures": _rate("judge_parse_failure_rate"),
    "mean judge score": _rate("mean_judge_score", "{:.2f}"),
    "share of 5s": _rate("share_of_fives"),
    "no rationale": _rate("no_rationale_share"),
    "meta parse failures": _rate("meta_parse_failure_rate"),
    "meta ties": _rate("meta_tie_rate"),
    "1st-shown wins": _rate("first_position_win_rate"),
    "mean P(1st better)": _rate("mean_p_first", "{:.2f}"),
    "AB=BA consistency": _rate("position_consistency"),
}
PAIR_ROWS = ("actor pairs", "judge pairs")


@dataclass(frozen=True)
class Chosen:
    """The chosen response of a prompt's actor pair in one run and iteration."""

    key: str
    sample_index: int | None
    score: float | None
    text: str


@dataclass
class SharedPrompt:
    """A prompt text both runs hold, with each run's chosen response per iteration (a missing
    iteration: no actor pair)."""

    index: int  # its position in run A's file
    text: str
    keys: tuple[str, str]  # its prompt key in run A, in run B
    chosen: dict[int, tuple[Chosen | None, Chosen | None]] = field(default_factory=dict)

    def pair(self, iteration: int) -> tuple[Chosen | None, Chosen | None]:
        return self.chosen.get(iteration, (None, None))

    def differs(self, iteration: int) -> bool:
        """Whether the two runs chose different response texts in ``iteration`` (or only one
        of them made an actor pair)."""
        a, b = self.pair(iteration)
        return (a.text if a else None) != (b.text if b else None)


@dataclass
class RunSide:
    run_id: str
    health: dict[int, Health]
    actor_pairs: dict[int, int]
    judge_pairs: dict[int, int] | None  # None: not read yet (read last: the Elo fits are slow)
    evaluation: EvalData
    # iteration -> role -> units, tokens, wall_s, share (role_costs; {} where the log has none)
    costs: dict[int, dict[str, dict[str, Any]]] = field(default_factory=dict)


@dataclass
class Comparison:
    a: RunSide
    b: RunSide
    shared: list[SharedPrompt]
    only_a: int  # prompts (texts) in run A only
    only_b: int

    @property
    def iterations(self) -> list[int]:
        """The iterations either run has events in."""
        return sorted(set(self.a.health) | set(self.b.health))

    @property
    def shared_iterations(self) -> list[int]:
        """The iterations both runs have (where chosen responses can be compared)."""
        both = sorted(set(self.a.health) & set(self.b.health))
        return both or self.iterations

    def differing(self, iteration: int) -> list[SharedPrompt]:
        return [p for p in self.shared if p.differs(iteration)]


@contextlib.contextmanager
def _con(db: Path) -> Iterator[Any]:
    from mrtui.store import connect

    with connect(db, timeout=READ_TIMEOUT_S) as con:
        yield con


def _counts(con: Any, view: str, runs: list[str]) -> dict[str, dict[int, int]]:
    out: dict[str, dict[int, int]] = {r: {} for r in runs}
    for run, it, n in con.execute(
        f"SELECT run_id, iteration, count(*) FROM {view} WHERE list_contains(?, run_id) "
        "GROUP BY ALL",
        [runs],
    ).fetchall():
        out[run][it] = n
    return out


def _costs(con: Any, runs: list[str]) -> dict[tuple[str, int], dict[str, dict[str, Any]]]:
    """Wall time and tokens per role (mrtui status's reading of ``role_costs``); {} where the
    log's views have no ``role_costs``."""
    from mrtui.loop.report import costs

    try:
        every = costs(con)
    except Exception:  # a log whose stored views predate role_costs
        return {}
    return {k: v for k, v in every.items() if k[0] in runs}


def read_judge_pairs(db: Path, runs: list[str]) -> dict[str, dict[int, int]]:
    """Judge pairs per run and iteration (the Elo fit of every meta-judged response: the
    slowest read here, so the screen makes it after the rest)."""
    with _con(db) as con:
        return _counts(con, "judge_pairs", runs)


def read_comparison(db: Path, a: str, b: str, judge_pairs: bool = True) -> Comparison:
    """Everything the compare screen shows about runs ``a`` and ``b`` of log ``db`` (whole-log
    reads: seconds on a large log, so the screen calls it in a thread); without
    ``judge_pairs``, their counts are left None (see :func:`read_judge_pairs`)."""
    from mrtui.store import health as store_health

    runs = [a, b]
    with _con(db) as con:
        health = store_health.read(con)
        actor = _counts(con, "actor_pairs", runs)
        judge = _counts(con, "judge_pairs", runs) if judge_pairs else None
        spent = _costs(con, runs)
        prompts = con.execute(
            "SELECT run_id, prompt_key, prompt FROM prompts WHERE list_contains(?, run_id) "
            "ORDER BY prompt_index, seq",
            [runs],
        ).fetchall()
        chosen = con.execute(
            "SELECT ap.run_id, ap.iteration, ap.prompt_key, r.response_key, r.sample_index, "
            "ap.chosen_score, r.response FROM actor_pairs ap JOIN responses r "
            "ON r.response_key = ap.chosen_key AND r.run_id = ap.run_id "
            "WHERE list_contains(?, ap.run_id)",
            [runs],
        ).fetchall()
    reader = EvalReader(db)
    sides = [
        RunSide(
            run,
            {it: h for (r, it), h in health.items() if r == run},
            actor[run],
            judge[run] if judge is not None else None,
            reader.data(run),
            {it: roles for (r, it), roles in spent.items() if r == run},
        )
        for run in runs
    ]
    picks: dict[str, dict[int, Chosen]] = {}
    for run, it, prompt_key, key, sample, score, text in chosen:
        picks.setdefault(f"{run}\0{prompt_key}", {})[it] = Chosen(key, sample, score, text or "")
    # match texts occurrence by occurrence: (text, n-th time in the run) -> prompt key
    by_text: dict[str, dict[tuple[str, int], str]] = {a: {}, b: {}}
    seen: dict[tuple[str, str], int] = {}
    order: list[tuple[str, int]] = []
    for run, key, text in prompts:
        nth = seen.get((run, text or ""), 0)
        seen[(run, text or "")] = nth + 1
        by_text[run][(text or "", nth)] = key
        if run == a:
            order.append((text or "", nth))
    shared = []
    for i, occurrence in enumerate(order):
        kb = by_text[b].get(occurrence)
        if kb is None:
            continue
        ka = by_text[a][occurrence]
        pa, pb = picks.get(f"{a}\0{ka}", {}), picks.get(f"{b}\0{kb}", {})
        shared.append(
            SharedPrompt(
                i,
                occurrence[0],
                (ka, kb),
                {it: (pa.get(it), pb.get(it)) for it in sorted(set(pa) | set(pb))},
            )
        )
    n = len(shared)
    return Comparison(sides[0], sides[1], shared, len(by_text[a]) - n, len(by_text[b]) - n)


class RunPicker(ModalScreen[tuple[str, str] | None]):
    """Asks for the two runs to compare: run A, then run B."""

    DEFAULT_CSS = """
    RunPicker { align: center middle; }
    RunPicker > Vertical { width: 70; height: auto; max-height: 80%; border: thick $accent;
                           background: $surface; }
    RunPicker #picker-title { background: $accent; color: $text; padding: 0 1; }
    RunPicker OptionList { height: auto; max-height: 20; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, runs: list[str]) -> None:
        super().__init__()
        self.runs = runs
        self.first: str | None = None

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(lit("compare runs: pick run A"), id="picker-title")
            yield OptionList(*(Option(lit(r), id=str(i)) for i, r in enumerate(self.runs)))
        yield Footer()

    @on(OptionList.OptionSelected)
    def _picked(self, event: OptionList.OptionSelected) -> None:
        run = self.runs[int(event.option.id or 0)]
        if self.first is None:
            self.first = run
            event.option_list.disable_option(event.option.id or "0")
            self.query_one("#picker-title", Static).update(
                lit(f"compare runs: A = {run}; pick run B")
            )
            return
        self.dismiss((self.first, run))

    def action_cancel(self) -> None:
        self.dismiss(None)


class CompareScreen(AppScreen):
    DEFAULT_CSS = """
    CompareScreen #cmp-info { height: auto; padding: 0 1; border-bottom: solid $panel; }
    CompareScreen #cmp-top { height: auto; max-height: 21; }
    CompareScreen #cmp-health { width: auto; max-width: 50%; height: auto; max-height: 21; }
    CompareScreen #cmp-right { width: 1fr; height: auto; max-height: 21; }
    CompareScreen #cmp-eval { height: auto; max-height: 12; }
    CompareScreen #cmp-costs { height: auto; max-height: 9; margin-top: 1; }
    CompareScreen #cmp-list-info { height: auto; padding: 0 1; color: $text-muted;
                                   border-top: solid $panel; }
    CompareScreen #cmp-prompts { height: 1fr; min-height: 4; }
    CompareScreen #cmp-detail { height: 8; border-top: solid $panel; }
    CompareScreen .cmp-side { width: 1fr; padding: 0 1; }
    CompareScreen #cmp-left { border-right: solid $panel; }
    """
    BINDINGS = [
        Binding("f", "toggle_differing", "Only chosen A≠B"),
        Binding("i", "cycle_iteration", "Iteration"),
        Binding("escape", "app.pop_screen", "Back"),
    ]

    def __init__(self, run_a: str, run_b: str) -> None:
        super().__init__()
        self.runs = (run_a, run_b)
        self.data: Comparison | None = None
        self.iteration: int | None = None  # the iteration whose chosen responses are compared
        self.only_differing = False  # f
        self.rows: list[SharedPrompt] = []  # the prompt list as shown

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status")
        yield Static(id="cmp-info")
        with Horizontal(id="cmp-top"):
            yield DataTable(id="cmp-health", cursor_type="none", zebra_stripes=True)
            with Vertical(id="cmp-right"):
                yield DataTable(id="cmp-eval", cursor_type="none", zebra_stripes=True)
                yield DataTable(id="cmp-costs", cursor_type="none", zebra_stripes=True)
        yield Static(id="cmp-list-info")
        yield DataTable(id="cmp-prompts", cursor_type="row", zebra_stripes=True)
        with Horizontal(id="cmp-detail"):
            with VerticalScroll(classes="cmp-side", id="cmp-left"):
                yield Static(id="cmp-a")
            with VerticalScroll(classes="cmp-side", id="cmp-right"):
                yield Static(id="cmp-b")
        yield Footer()

    def on_mount(self) -> None:
        a, b = self.runs
        self.query_one("#cmp-info", Static).update(lit(f"A = run {a} · B = run {b} · reading…"))
        self._read()

    @work(thread=True, exclusive=True, group="compare")
    def _read(self) -> None:
        try:
            data = read_comparison(self.state.db, *self.runs, judge_pairs=False)
            self.app.call_from_thread(self._got, data)
            judge = read_judge_pairs(self.state.db, list(self.runs))
        except Exception as exc:  # shown as stale data, never a crash
            self.app.call_from_thread(self.controller.read_failed, exc)
            return
        self.app.call_from_thread(self._got_judge_pairs, judge)

    @property
    def complete(self) -> bool:
        """Everything is read (the judge pairs come last)."""
        return self.data is not None and self.data.b.judge_pairs is not None

    def _got_judge_pairs(self, judge: dict[str, dict[int, int]]) -> None:
        if self.data is not None:
            self.data.a.judge_pairs = judge[self.data.a.run_id]
            self.data.b.judge_pairs = judge[self.data.b.run_id]
            self._fill_health()

    def _got(self, data: Comparison) -> None:
        self.data = data
        its = data.shared_iterations
        self.iteration = its[0] if its else None
        self._fill_health()
        self._fill_eval()
        self._fill_costs()
        self._fill_prompts()
        self.query_one("#cmp-prompts", DataTable).focus()

    # -- the two top tables -----------------------------------------------------------------
    def _columns(self, table: DataTable[Any], first: tuple[str, ...], its: list[int]) -> None:
        table.clear(columns=True)
        for c in first:
            table.add_column(c, key=c)
        for it in its:
            for side in "AB":
                table.add_column(f"{it}·{side}", key=f"{it}{side}")

    def _fill_health(self) -> None:
        assert self.data is not None
        d = self.data
        table = self.query_one("#cmp-health", DataTable)
        its = d.iterations
        self._columns(table, ("health (iteration·run)",), its)
        for label, cell in HEALTH_ROWS.items():
            row = [label]
            for it in its:
                for side in (d.a, d.b):
                    h = side.health.get(it)
                    row.append(cell(h) if h is not None else "-")
            table.add_row(*(lit(c) for c in row))
        for label, attr in zip(PAIR_ROWS, ("actor_pairs", "judge_pairs"), strict=True):
            row = [label]
            for it in its:
                for side in (d.a, d.b):
                    counts = getattr(side, attr)
                    row.append(
                        "-"
                        if it not in side.health
                        else "…"
                        if counts is None
                        else str(counts.get(it, 0))
                    )
            table.add_row(*(lit(c) for c in row))

    def _fill_costs(self) -> None:
        """Where the time went, per role (role_costs, as `mrtui status` reads it)."""
        assert self.data is not None
        d = self.data
        table = self.query_one("#cmp-costs", DataTable)
        its = d.iterations
        self._columns(table, ("wall time (share), tokens",), its)
        for role in COST_ROLES:
            if not any(role in side.costs.get(it, {}) for it in its for side in (d.a, d.b)):
                continue
            row = [role.replace("_", "-")]
            for it in its:
                for side in (d.a, d.b):
                    c = side.costs.get(it, {}).get(role)
                    row.append(cost_cell(c))
            table.add_row(*(lit(c) for c in row))
        if not table.row_count:
            table.add_row(lit("no cost data (role_costs) for these runs"))

    def _fill_eval(self) -> None:
        assert self.data is not None
        d = self.data
        table = self.query_one("#cmp-eval", DataTable)
        its = sorted(set(d.a.evaluation.columns) | set(d.b.evaluation.columns))
        self._columns(table, ("evaluation", "metric", "judge"), its)
        lines = {(x.suite, x.metric, x.judge): x for x in d.a.evaluation.lines}
        other = {(x.suite, x.metric, x.judge): x for x in d.b.evaluation.lines}
        for k in [*lines, *(k for k in other if k not in lines)]:
            la, lb = lines.get(k), other.get(k)
            row = list(k)
            for it in its:
                for line in (la, lb):
                    row.append(line.cells.get(it, "-") if line is not None else "-")
            table.add_row(*(lit(c) for c in row))
        if not its:
            table.add_row(lit("neither run is evaluated (mrtui eval)"), "", "")

    # -- the prompt list --------------------------------------------------------------------
    def _fill_prompts(self) -> None:
        d, it = self.data, self.iteration
        if d is None:
            return
        table = self.query_one("#cmp-prompts", DataTable)
        if not table.columns:
            for c, w in (("#", 4), ("prompt", 40), ("A chosen", 34), ("B chosen", 34)):
                table.add_column(c, key=c, width=w)
            table.add_column(DIFFERS, key="differs")
        self.rows = [] if it is None else d.differing(it) if self.only_differing else list(d.shared)
        table.clear()
        for p in self.rows:
            a, b = p.pair(it) if it is not None else (None, None)
            table.add_row(
                str(p.index),
                one_line(p.text, 40),
                one_line(_chosen_label(a), 34),
                one_line(_chosen_label(b), 34),
                DIFFERS if it is not None and p.differs(it) else "",
            )
        n = len(d.differing(it)) if it is not None else 0
        shown = "showing only those (f: all)" if self.only_differing else "f: only those"
        only = f" ({d.only_a} only in A, {d.only_b} only in B)" if d.only_a or d.only_b else ""
        self.query_one("#cmp-list-info", Static).update(
            lit(
                f"iteration {it if it is not None else '-'} (i: next) · {len(d.shared)} prompts "
                f"in both runs, matched by text{only} · chosen response differs for {n}; {shown}"
            )
        )
        run_a, run_b = self.runs
        self.query_one("#cmp-info", Static).update(
            lit(
                f"A = run {run_a} · B = run {run_b} · columns: iteration·run; '!' marks a health "
                "alarm; chosen responses compared by text"
            )
        )
        self._show_detail()

    def current(self) -> SharedPrompt | None:
        table = self.query_one("#cmp-prompts", DataTable)
        row = table.cursor_row
        return self.rows[row] if 0 <= row < len(self.rows) else None

    @on(DataTable.RowHighlighted, "#cmp-prompts")
    def _highlighted(self, _: DataTable.RowHighlighted) -> None:
        self._show_detail()

    def _show_detail(self) -> None:
        p, it = self.current(), self.iteration
        for side, run, box in ((0, self.runs[0], "#cmp-a"), (1, self.runs[1], "#cmp-b")):
            out = self.query_one(box, Static)
            if p is None or it is None:
                out.update(lit("no prompt selected" if self.rows else "no prompts to show"))
                continue
            c = p.pair(it)[side]
            head = f"{'AB'[side]} = run {run}, iteration {it}: "
            if c is None:
                out.update(lit(head + "no actor pair (nothing chosen)"))
                continue
            out.update(
                lit(f"{head}chosen sample #{c.sample_index}, mean score {num(c.score)}\n{c.text}")
            )

    def action_toggle_differing(self) -> None:
        self.only_differing = not self.only_differing
        self._fill_prompts()

    def action_cycle_iteration(self) -> None:
        if self.data is None or self.iteration is None:
            return
        its = self.data.shared_iterations
        self.iteration = its[(its.index(self.iteration) + 1) % len(its)]
        self._fill_prompts()

    def export_current(self) -> dict[str, Any] | None:
        p, it = self.current(), self.iteration
        if p is None or it is None:
            return None
        return {
            "kind": "compared_prompt",
            "key": p.keys[0],
            "prompt": p.text,
            "iteration": it,
            "runs": {
                run: {"prompt_key": key, "chosen": None if c is None else asdict(c)}
                for run, key, c in zip(self.runs, p.keys, p.pair(it), strict=True)
            },
        }


def _chosen_label(c: Chosen | None) -> str:
    if c is None:
        return "- (no actor pair)"
    return f"#{c.sample_index} ({num(c.score)}): {c.text}"
