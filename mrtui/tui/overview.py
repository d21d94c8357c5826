"""The first screen: iterations with their progress, run-health plots, and the live run."""

from __future__ import annotations

import datetime as dt

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Footer, Log, Static

from mrtui.loop.report import COST_ROLES, cost_cell, cost_total
from mrtui.store.health import ALARMS, Health

from .base import AppScreen, StatusBar
from .label_modal import LabelsRead, agreement_line
from .messages import CostsRead, HealthRead, OverviewRead, RecentRead, RunLogLine, SignalRead
from .model import EventRow, Overview
from .plots import HealthPlots
from .state import Losses
from .text import lit, num, one_line, pct

# column -> the health rate it shows, as a percentage; marked "!" when its alarm is on
PERCENT = {
    "judge fail": "judge_parse_failure_rate",
    "cut": "truncated_share",
    "5s": "share_of_fives",
    "no rationale": "no_rationale_share",
    "1st wins": "first_position_win_rate",
    "AB=BA": "position_consistency",
}
# the score-length correlation (judge_signal view, read in the background with the prompt
# index) and the meta-judge's mean P(first shown better) (health, expected meta scoring only)
LENGTH_R, P_FIRST = "len r", "P(1st)"
COLUMNS = (
    "iter",
    "model",
    "K×N",
    "responses",
    "judgements",
    "verdicts",
    "failed",
    "judge fail",
    "cut",
    "5s",
    LENGTH_R,
    "no rationale",
    "1st wins",
    P_FIRST,
    "AB=BA",
    "training",
)
MARK = " !"  # after a percentage whose alarm is on (text, so it shows without colour too)
# the columns whose values arrive after the counts (health; len r with the prompt index), with
# the width each reserves so that the table does not jump when they arrive
WIDTHS = {c: max(len(c), len("100%" + MARK)) for c in PERCENT} | {
    LENGTH_R: len("-0.00"),
    P_FIRST: len(P_FIRST),
}
LATE = tuple(c for c in COLUMNS if c in WIDTHS)


class OverviewScreen(AppScreen):
    DEFAULT_CSS = """
    OverviewScreen #iterations { height: auto; max-height: 12; }
    OverviewScreen #run-log { height: 6; border-top: solid $panel; display: none; }
    OverviewScreen #run-log.-visible { display: block; }
    OverviewScreen #hint { color: $text-muted; padding: 0 1; }
    OverviewScreen #alarms { color: $text-warning; padding: 0 1; display: none; }
    OverviewScreen #alarms.-on { display: block; }
    OverviewScreen #agreement { padding: 0 1; display: none; }
    OverviewScreen #agreement.-on { display: block; }
    OverviewScreen #costs { height: auto; max-height: 6; display: none; }
    OverviewScreen #costs.-on { display: block; }
    OverviewScreen #recent { height: 7; border-top: solid $panel; }
    """
    BINDINGS = [
        Binding("enter", "open_iteration", "Prompts of iteration"),
    ]

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status")
        with Vertical():
            yield DataTable(id="iterations", cursor_type="row", zebra_stripes=True)
            yield Static(id="hint")
            yield Static(id="alarms")
            yield Static(id="agreement")
            yield DataTable(id="costs", cursor_type="none", zebra_stripes=True)
            yield HealthPlots(id="plots")
            yield DataTable(id="recent", cursor_type="none", zebra_stripes=True)
            yield Log(id="run-log", max_lines=500)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#iterations", DataTable)
        for c in COLUMNS:
            table.add_column(c, key=c, width=WIDTHS.get(c))
        self.query_one("#hint", Static).update(lit("reading the log…"))
        recent = self.query_one("#recent", DataTable)
        for c in ("latest events", "at (UTC)", "type", "iter", "key", "text"):
            recent.add_column(c, key=c)

    def show(self, ov: Overview, health: dict[int, Health] | None) -> None:
        table = self.query_one("#iterations", DataTable)
        cursor = table.cursor_row
        table.clear()
        alarms: list[str] = []
        signal = self.state.signal
        for row in ov.iterations:
            h = (health or {}).get(row.iteration)
            on = [ALARMS[name] for name in h.alarms()] if h else []
            late = {
                c: pct(h.rate(rate)) + (MARK if any(a.rate == rate for a in on) else "")
                if h
                else "…"
                for c, rate in PERCENT.items()
            }
            late[P_FIRST] = num(h.rate("mean_p_first")) if h else "…"
            s = signal.get(row.iteration) if signal is not None else None
            late[LENGTH_R] = "…" if signal is None else num(s.score_length_corr if s else None)
            if h:
                alarms += [
                    f"! iteration {row.iteration}: {a.describe(h.rate(a.rate))}; {a.advice}"
                    for a in on
                ]
            prompts = ov.prompts if row.drawn is None else row.drawn
            expected_r = prompts * row.k if row.k else 0
            expected_j = row.responses * row.n if row.n else 0
            table.add_row(
                str(row.iteration),
                lit(row.model_id),
                f"{row.k}×{row.n}",
                f"{row.responses}/{expected_r}" if expected_r else str(row.responses),
                f"{row.judgements}/{expected_j}" if expected_j else str(row.judgements),
                str(row.verdicts),
                f"{row.failures} ({row.skipped} skipped)" if row.skipped else str(row.failures),
                *(lit(late[c]) for c in LATE),
                lit(row.training + (f" ({row.steps} steps)" if row.steps else "")),
                key=str(row.iteration),
            )
        if ov.iterations:
            table.move_cursor(row=min(max(cursor, 0), len(ov.iterations) - 1))
        hint = (
            f"run {ov.run_id} · {ov.prompts} prompts · {len(ov.runs)} run(s) in the log"
            if ov.run_id
            else "this log holds no run yet: press s to start one (needs --prompts)"
        )
        if health:
            last = health[max(health)]
            chars = num(last.mean_response_chars, "{:.0f}")
            hint += f" · mean length {chars} chars in the last iteration"
        # the costly case is named: weights that went through a quantised GGUF
        costly = {r.trained_from for r in ov.iterations if r.trained_from is not None}
        costly.discard("hf weights")
        if costly:
            hint += f" · trained from a {', '.join(sorted(costly))}"
        self.query_one("#hint", Static).update(lit(hint))
        box = self.query_one("#alarms", Static)
        box.update(lit("\n".join(alarms)))
        box.set_class(bool(alarms), "-on")
        self.show_agreement()
        self.show_costs()

    def show_agreement(self) -> None:
        """The judge and meta-judge against the human labels (judge_human_agreement), per
        iteration: only once labels exist."""
        lines = [
            f"human labels, iteration {it}: {line}"
            for it, measures in sorted(self.state.agreement.items())
            if (line := agreement_line(measures))
        ]
        box = self.query_one("#agreement", Static)
        box.update(lit("\n".join(lines)))
        box.set_class(bool(lines), "-on")

    def show_costs(self) -> None:
        """Where the time went: wall time (share of the iteration) and tokens per role, one
        row per iteration (``role_costs``, as `mrtui status` prints it), once there are any."""
        costs = self.state.costs
        table = self.query_one("#costs", DataTable)
        roles = [r for r in COST_ROLES if any(r in c for c in costs.values())]
        table.clear(columns=True)
        table.add_columns("time", *(r.replace("_", "-") for r in roles), "total")
        for it, c in sorted(costs.items()):
            table.add_row(
                f"iteration {it}", *(lit(cost_cell(c.get(r))) for r in roles), cost_total(c)
            )
        table.set_class(bool(costs), "-on")

    def show_recent(self, rows: list[EventRow]) -> None:
        """The newest events, newest first: in a live log, what just arrived."""
        table = self.query_one("#recent", DataTable)
        table.clear()
        for r in rows:
            at = (
                r.created_at.astimezone(dt.UTC).strftime("%H:%M:%S")
                if isinstance(r.created_at, dt.datetime)
                else ""
            )
            table.add_row(
                str(r.seq),
                at,
                lit(r.event_type),
                "" if r.iteration is None else str(r.iteration),
                one_line(r.key, 40),
                one_line(r.preview, 80),
            )

    def show_plots(self, health: dict[int, Health], losses: Losses) -> None:
        self.query_one(HealthPlots).update(health, losses)

    def run_log(self, line: str) -> None:
        log = self.query_one("#run-log", Log)
        log.add_class("-visible")
        log.write_line(line)

    # -- what the app read --------------------------------------------------------------------
    def on_overview_read(self, message: OverviewRead) -> None:
        self.show(message.overview, message.health)
        self.state.mark_first_screen()

    def on_recent_read(self, message: RecentRead) -> None:
        self.show_recent(message.rows)

    def on_health_read(self, message: HealthRead) -> None:
        self.show(message.overview, message.health)
        self.show_plots(message.health, message.losses)

    def on_signal_read(self, _: SignalRead) -> None:
        if self.state.overview is not None:
            self.show(self.state.overview, self.state.health)

    def on_costs_read(self, _: CostsRead) -> None:
        self.show_costs()

    def on_labels_read(self, _: LabelsRead) -> None:
        self.show_agreement()

    def on_run_log_line(self, message: RunLogLine) -> None:
        self.run_log(message.line)

    # -- keys and mouse -------------------------------------------------------------------------
    @on(DataTable.RowSelected, "#iterations")
    def _iteration_selected(self, _: DataTable.RowSelected) -> None:
        self.action_open_iteration()

    def action_open_iteration(self) -> None:
        table = self.query_one("#iterations", DataTable)
        if table.row_count:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
            self.controller.open_prompts(iteration=int(key or 1))
