"""The battle view: the meta-judged response's AB/BA verdict matrix, ω, Elo and judge pair."""

from __future__ import annotations

from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Footer, Static

from mrtui.store.health import orders_agree

from .base import AppScreen, StatusBar
from .items import judgement_item, verdict_item
from .label_modal import LabelsRead, label_lines
from .model import Battle, IterationFocus, JudgementInfo, LabelTarget, PromptFocus, Verdict
from .orders import OrdersScreen
from .scores import prob, score_cell
from .text import lit, num


def cell(v: Verdict | None) -> str:
    """The verdict with the row's judgement shown first: A = row wins, B = column wins; under
    expected meta scoring followed by P(the row's judgement, shown first, is better)."""
    if v is None:
        return "·"
    if v.winner == "A":
        text = "A ◀"
    elif v.winner == "B":
        text = "B ▲"
    else:
        text = "tie" if v.parse_error == "tie" else "?"
    return text if v.p_first is None else f"{text} {v.p_first:.2f}"


def disagrees(b: Battle, m: str, n: str) -> bool:
    """Whether judgements m and n were compared in both orders and the two verdicts do not name
    the same winner (a tie or unparsed verdict in either order included): the pairs that
    ``position_consistency`` counts as inconsistent."""
    mn, nm = b.verdicts.get((m, n)), b.verdicts.get((n, m))
    return mn is not None and nm is not None and not orders_agree(mn.winner, nm.winner)


class BattleScreen(AppScreen):
    DEFAULT_CSS = """
    BattleScreen #summary { height: auto; padding: 0 1; border-bottom: solid $panel; }
    BattleScreen #top { height: 1fr; }
    BattleScreen #matrix { width: 3fr; }
    BattleScreen #ranking { width: 2fr; }
    BattleScreen #verdict { height: 1fr; padding: 0 1; border-top: solid $panel; }
    """
    BINDINGS = [
        Binding("enter,v", "view_verdict", "Verdict text"),
        Binding("j", "view_judgement", "Judgement text"),
        Binding("f", "toggle_disagreeing", "Only AB≠BA"),
        Binding("l", "label", "Label"),
        Binding("2", "both_orders", "Both orders"),
        Binding("escape", "app.pop_screen", "Back"),
    ]

    def __init__(self, focus: PromptFocus, it: IterationFocus) -> None:
        super().__init__()
        assert it.battle is not None
        self.focus_data = focus
        self.it = it
        self.battle: Battle = it.battle
        self.only_disagreeing = False  # f: show only the pairs whose two orders disagree

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status")
        yield Static(id="summary")
        with Horizontal(id="top"):
            yield DataTable(id="matrix", cursor_type="cell")
            yield DataTable(id="ranking", cursor_type="row", zebra_stripes=True)
        with Vertical(id="verdict"):
            yield Static(id="verdict-text")
        yield Footer()

    def on_mount(self) -> None:
        b = self.battle
        js = self.compared
        label = {j.key: f"J{j.judge_index}" for j in b.judgements}
        pair = (
            f"judge pair: chosen {label.get(b.chosen_key or '', '?')} / rejected "
            f"{label.get(b.rejected_key or '', '?')}"
            if b.chosen_key and not b.drop_reason
            else f"no judge pair ({b.drop_reason or 'no valid judgements'})"
        )
        self._pair = pair
        self._label = label
        self._show_summary()
        m = self.query_one("#matrix", DataTable)
        m.add_column("first \\ second", key="row")
        for j in js:
            m.add_column(label[j.key], key=j.key)
        self._fill_matrix()
        r = self.query_one("#ranking", DataTable)
        for c in ("judge", "score", "elo", "wins", "pair"):
            r.add_column(c, key=c)
        ranked = sorted(b.judgements, key=lambda j: -(j.elo if j.elo is not None else -1e9))
        for j in ranked:
            role = (
                "chosen" if j.key == b.chosen_key else "rejected" if j.key == b.rejected_key else ""
            )
            if b.drop_reason and role:
                role += " (dropped)"
            if j.score is None:
                role = "unparsed: not compared"
            r.add_row(
                label[j.key],
                score_cell(j),
                num(j.elo, "{:.0f}"),
                "-" if j.wins is None else str(j.wins),
                role,
                key=j.key,
            )
        if len(js) > 1:
            m.move_cursor(row=0, column=2)
        m.focus()
        self._show_cell()

    def _show_summary(self) -> None:
        b = self.battle
        keys = [j.key for j in self.compared]
        both = [(m, n) for i, m in enumerate(keys) for n in keys[i + 1 :] if self._both(m, n)]
        split = sum(disagrees(b, m, n) for m, n in both)
        shown = "only these are shown (f: all)" if self.only_disagreeing else "f shows only these"
        head = (
            f"prompt #{self.focus_data.index} · iteration {self.it.iteration} · response "
            f"{b.response_key}\n"
        )
        tail = (
            f"AB≠BA: the two orders do not name the same winner for {split} of {len(both)} "
            f"pairs judged both ways; {shown}"
        )
        if b.expected:
            ps = [v.p_first for v in b.verdicts.values() if v.p_first is not None]
            summary = (
                f"{head}expected meta scoring: mean P(first shown better) "
                f"{sum(ps) / len(ps):.2f} over {len(ps)} verdicts (0.50: no position "
                f"preference) · position wins: first {b.win_1st}, second {b.win_2nd} · "
                f"{self._pair}\n"
                "cell = the more likely winner with the row's judgement shown first (A ◀ row, "
                "B ▲ column) and P(row better) in that order; a pair's soft outcome b = "
                "(P(row better, row first) + 1 − P(column better, column first)) / 2\n" + tail
            )
        else:
            summary = (
                f"{head}position wins ({b.scope} scope): first {b.win_1st}, second "
                f"{b.win_2nd} · ω1 = {num(b.omega1, '{:.3f}')} (weight of a first-shown win), "
                f"ω2 = {num(b.omega2, '{:.3f}')} · {self._pair}\n"
                "cell = verdict with the row's judgement shown first (A ◀ row wins, B ▲ column "
                "wins); its mirror cell is the same pair in the other order\n" + tail
            )
        self.query_one("#summary", Static).update(lit(summary))

    def _both(self, m: str, n: str) -> bool:
        v = self.battle.verdicts
        return (m, n) in v and (n, m) in v

    def _hidden(self, m: str, n: str) -> bool:
        """Whether the filter hides the cell of m shown first, n second."""
        return self.only_disagreeing and not disagrees(self.battle, m, n)

    def _cell_text(self, m: str, n: str) -> str:
        if m == n:
            return "—"
        return "" if self._hidden(m, n) else cell(self.battle.verdicts.get((m, n)))

    def _fill_matrix(self) -> None:
        js = self.compared
        m = self.query_one("#matrix", DataTable)
        cursor = m.cursor_coordinate
        m.clear()
        for a in js:
            cells = [self._cell_text(a.key, c.key) for c in js]
            m.add_row(f"{self._label[a.key]} ({score_cell(a)})", *cells, key=a.key)
        if js:
            m.move_cursor(row=cursor.row, column=cursor.column)

    def action_toggle_disagreeing(self) -> None:
        self.only_disagreeing = not self.only_disagreeing
        self._show_summary()
        self._fill_matrix()
        self._show_cell()

    @property
    def compared(self) -> list[JudgementInfo]:
        """The judgements the meta-judge compared: those with a valid score."""
        return [j for j in self.battle.judgements if j.score is not None]

    def current_verdict(self) -> Verdict | None:
        m = self.query_one("#matrix", DataTable)
        row, col = m.cursor_coordinate.row, m.cursor_coordinate.column
        js = self.compared
        if not (0 <= row < len(js)) or not (1 <= col <= len(js)):
            return None
        if self._hidden(js[row].key, js[col - 1].key):
            return None
        return self.battle.verdicts.get((js[row].key, js[col - 1].key))

    @on(DataTable.CellHighlighted, "#matrix")
    def _cell(self, _: DataTable.CellHighlighted) -> None:
        self._show_cell()

    @on(DataTable.CellSelected, "#matrix")
    def _cell_selected(self, _: DataTable.CellSelected) -> None:
        self.action_view_verdict()

    def _show_cell(self) -> None:
        v = self.current_verdict()
        out = self.query_one("#verdict-text", Static)
        if v is None:
            out.update(
                lit(
                    "only the pairs whose two orders disagree are shown (f: all pairs)"
                    if self.only_disagreeing
                    else "move onto a cell to see its verdict"
                )
            )
            return
        tail = v.text.strip().splitlines()[-3:]
        text = lit(
            f"verdict {v.key}: winner {v.winner or '-'}"
            + (f" ({v.parse_error})" if v.parse_error else "")
            + self._probabilities(v)
        )
        first = self._label.get(v.first_key, "?")
        labelled = label_lines(
            self.state.labels, [("this verdict", v.key), (f"{first}'s judgement", v.first_key)]
        )
        if labelled:
            text += lit("\n" + labelled, "italic")
        out.update(text + lit("\n…\n" + "\n".join(tail)))

    def _probabilities(self, v: Verdict) -> str:
        """Under expected meta scoring: this order's P(first better), the other order's, and
        the pair's soft outcome; "" for a sampled verdict."""
        if v.p_first is None:
            return ""
        first, second = self._label.get(v.first_key, "?"), self._label.get(v.second_key, "?")
        other = self.battle.verdicts.get((v.second_key, v.first_key))
        b = self.battle.outcomes.get((v.first_key, v.second_key))
        return (
            f" · P({first} better, {first} shown first) {v.p_first:.2f}"
            f" · P({second} better, {second} shown first) "
            f"{prob(other.p_first if other is not None else None)}"
            f" · soft outcome b({first} over {second}) {num(b, '{:.3f}')}"
        )

    def action_view_verdict(self) -> None:
        v = self.current_verdict()
        if v is None:
            return
        self.controller.show_text(
            "meta-judge verdict",
            v.text,
            f"{v.key} · first {v.first_key} · second {v.second_key} · winner {v.winner or '-'}"
            + self._probabilities(v),
            verdict_item(self.battle, v),
        )

    def action_both_orders(self) -> None:
        """The selected cell's pair in both orders, side by side (mrtui.tui.orders)."""
        m = self.query_one("#matrix", DataTable)
        row, col = m.cursor_coordinate.row, m.cursor_coordinate.column
        js = self.compared
        if not (0 <= row < len(js)) or not (1 <= col <= len(js)) or row == col - 1:
            self.notify("move onto a cell off the diagonal", severity="warning")
            return
        a, b = js[row].key, js[col - 1].key
        if (a, b) not in self.battle.verdicts and (b, a) not in self.battle.verdicts:
            self.notify("this pair has no verdict in either order", severity="warning")
            return
        self.app.push_screen(OrdersScreen(self.focus_data, self.it.iteration, self.battle, a, b))

    def action_view_judgement(self) -> None:
        m = self.query_one("#matrix", DataTable)
        js = self.compared
        if 0 <= m.cursor_coordinate.row < len(js):
            self.controller.show_judgement(js[m.cursor_coordinate.row])

    def action_label(self) -> None:
        """``l``: a human label of the verdict under the cursor (which judgement is better) or
        of its row's judgement (agree / disagree)."""
        labels = self.state.labels
        targets = []
        v = self.current_verdict()
        if v is not None:
            a, b = self._label.get(v.first_key, "?"), self._label.get(v.second_key, "?")
            targets.append(
                LabelTarget(
                    "verdict",
                    v.key,
                    f"verdict: A = {a} (shown first) vs B = {b} (shown second), meta-judge "
                    f"said {v.winner or '-'}",
                    labels.get(v.key),
                )
            )
        m = self.query_one("#matrix", DataTable)
        js = self.compared
        if 0 <= m.cursor_coordinate.row < len(js):
            j = js[m.cursor_coordinate.row]
            targets.append(
                LabelTarget(
                    "judgement",
                    j.key,
                    f"{self._label[j.key]}'s judgement (this row) · score {score_cell(j)}",
                    labels.get(j.key),
                )
            )
        self.controller.label(targets)

    def on_labels_read(self, _: LabelsRead) -> None:
        self._show_cell()

    def export_current(self) -> dict[str, Any] | None:
        v = self.current_verdict()
        if v is not None:
            return verdict_item(self.battle, v)
        js = self.compared
        return judgement_item(js[0]) if js else None
