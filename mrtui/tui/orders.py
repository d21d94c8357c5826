"""Both orders of one meta-judged pair side by side: the two verdict texts, the judgement each
picked (named by judge index and score, the same in both columns), P(first better) under
expected meta scoring, and a mark when the orders contradict each other."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Footer, Static

from mrtui.store.health import orders_agree

from .base import AppScreen, StatusBar
from .items import verdict_item
from .model import Battle, JudgementInfo, PromptFocus, Verdict
from .scores import score_cell
from .text import lit, num

CONTRADICTS = "✗ CONTRADICTION"
AGREES = "✓ consistent"


def contradiction(first: Verdict | None, second: Verdict | None) -> str | None:
    """How a pair's two orders contradict each other: "first" when each order picks the
    judgement shown first, "second" when each picks the one shown second; None when they name
    the same judgement, when a verdict is a tie or unparsed, or when an order is missing."""
    if first is None or second is None or first.winner != second.winner:
        return None
    return {"A": "first", "B": "second"}.get(first.winner or "")


def picked(v: Verdict) -> str | None:
    """The key of the judgement verdict ``v`` names as better (None: a tie or unparsed)."""
    return {"A": v.first_key, "B": v.second_key}.get(v.winner or "")


class OrdersScreen(AppScreen):
    """Judgements ``m`` and ``n`` of ``battle``: the verdict with ``m`` shown first on the
    left, the one with ``n`` shown first on the right."""

    DEFAULT_CSS = """
    OrdersScreen #orders-summary { height: auto; padding: 0 1; border-bottom: solid $panel; }
    OrdersScreen #orders-mark { height: auto; padding: 0 1; text-style: bold; }
    OrdersScreen #orders-mark.-contradiction { background: $error 40%; }
    OrdersScreen #orders-mark.-consistent { background: $success 25%; }
    OrdersScreen #orders { height: 1fr; }
    OrdersScreen .order { width: 1fr; border: solid $panel; }
    OrdersScreen .order-head { height: auto; padding: 0 1; background: $boost; }
    OrdersScreen .order-body { padding: 0 1; }
    """
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("v", "view_left", "Left text"),
        Binding("V", "view_right", "Right text"),
    ]

    def __init__(self, focus: PromptFocus, iteration: int, battle: Battle, m: str, n: str):
        super().__init__()
        self.focus_data = focus
        self.iteration = iteration
        self.battle = battle
        self.m, self.n = m, n
        self.verdict_mn = battle.verdicts.get((m, n))
        self.verdict_nm = battle.verdicts.get((n, m))
        self.judgements = {j.key: j for j in battle.judgements}

    # -- naming judgements the same way in both columns -------------------------------------
    def judgement_name(self, key: str | None) -> str:
        j: JudgementInfo | None = self.judgements.get(key or "")
        if j is None:
            return "?" if key else "-"
        return f"J{j.judge_index} (score {score_cell(j)})"

    def short(self, key: str) -> str:
        j = self.judgements.get(key)
        return f"J{j.judge_index}" if j is not None else "?"

    def winner_line(self, v: Verdict) -> str:
        key = picked(v)
        if key is None:
            return "winner: none (" + (v.parse_error or "no winner line") + ")"
        position = "shown first" if v.winner == "A" else "shown second"
        return f"winner: {self.judgement_name(key)}, the judgement {position}"

    # -- screen -----------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield StatusBar(id="status")
        yield Static(id="orders-summary")
        yield Static(id="orders-mark")
        with Horizontal(id="orders"):
            for side in ("left", "right"):
                with Vertical(classes="order", id=f"order-{side}"):
                    yield Static(classes="order-head", id=f"head-{side}")
                    with VerticalScroll():
                        yield Static(classes="order-body", id=f"body-{side}")
        yield Footer()

    def on_mount(self) -> None:
        m, n = self.short(self.m), self.short(self.n)
        self.query_one("#orders-summary", Static).update(
            lit(
                f"prompt #{self.focus_data.index} · iteration {self.iteration} · response "
                f"{self.battle.response_key}\n"
                f"the pair {self.judgement_name(self.m)} and {self.judgement_name(self.n)}: "
                f"left, {m} shown first; right, {n} shown first"
                + (
                    f" · soft outcome b({m} over {n}) "
                    f"{num(self.battle.outcomes.get((self.m, self.n)), '{:.3f}')}"
                    if self.battle.expected
                    else ""
                )
            )
        )
        self._show_mark()
        self._show_side("left", self.verdict_mn, self.m, self.n)
        self._show_side("right", self.verdict_nm, self.n, self.m)

    def mark_text(self) -> str:
        """The line above the two columns: contradiction, consistency, or what is missing."""
        left, right = self.verdict_mn, self.verdict_nm
        if left is None or right is None:
            shown = self.m if left is not None else self.n
            return (
                f"only one order: this pair was meta-judged with {self.short(shown)} shown "
                "first only, so the orders cannot be compared"
            )
        how = contradiction(left, right)
        if how is not None:
            return (
                f"{CONTRADICTS}: each order picks the judgement shown {how} "
                f"({self.short(picked(left) or '')} on the left, "
                f"{self.short(picked(right) or '')} on the right): the position decided, "
                "not the judgements"
            )
        if orders_agree(left.winner, right.winner):
            return f"{AGREES}: both orders pick {self.judgement_name(picked(left))}"
        return (
            "no winner to compare: "
            + " and ".join(
                f"{side} {v.parse_error or 'no winner line'}"
                for side, v in (("left", left), ("right", right))
                if picked(v) is None
            )
            + " (AB≠BA, not a contradiction)"
        )

    def _show_mark(self) -> None:
        box = self.query_one("#orders-mark", Static)
        box.update(lit(self.mark_text()))
        how = contradiction(self.verdict_mn, self.verdict_nm)
        box.set_class(how is not None, "-contradiction")
        box.set_class(
            self.verdict_mn is not None
            and self.verdict_nm is not None
            and orders_agree(self.verdict_mn.winner, self.verdict_nm.winner),
            "-consistent",
        )

    def _show_side(self, side: str, v: Verdict | None, first: str, second: str) -> None:
        head = self.query_one(f"#head-{side}", Static)
        body = self.query_one(f"#body-{side}", Static)
        order = f"{self.short(first)} shown first, {self.short(second)} second"
        if v is None:
            head.update(lit(f"{order}\nno verdict in this order"))
            body.update(
                lit(f"the meta-judge never saw {self.short(first)} before {self.short(second)}")
            )
            return
        lines = [order, f"verdict {v.key}", self.winner_line(v)]
        if v.p_first is not None:
            lines.append(
                f"P({self.short(first)} better, {self.short(first)} shown first) {v.p_first:.2f}"
            )
        head.update(lit("\n".join(lines)))
        body.update(lit(v.text))

    # -- keys -------------------------------------------------------------------------------
    def _view(self, v: Verdict | None) -> None:
        if v is None:
            self.notify("no verdict in this order", severity="warning")
            return
        self.controller.show_text(
            "meta-judge verdict",
            v.text,
            f"{v.key} · first {self.judgement_name(v.first_key)} · second "
            f"{self.judgement_name(v.second_key)} · {self.winner_line(v)}",
            verdict_item(self.battle, v),
        )

    def action_view_left(self) -> None:
        self._view(self.verdict_mn)

    def action_view_right(self) -> None:
        self._view(self.verdict_nm)

    def export_current(self) -> dict[str, Any] | None:
        v = self.verdict_mn or self.verdict_nm
        return verdict_item(self.battle, v) if v is not None else None
