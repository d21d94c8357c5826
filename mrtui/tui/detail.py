"""One prompt (its K responses per iteration) and one response (its N judgements)."""

from __future__ import annotations

from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import DataTable, Footer, Static

from .base import AppScreen, StatusBar
from .items import response_item
from .label_modal import LabelsRead, label_lines
from .messages import BattlesReady
from .model import HumanLabel, IterationFocus, LabelTarget, PromptFocus, ResponseInfo
from .scores import dist_line, score_cell, score_head
from .text import lit, num, one_line

ROLE = {"chosen": "✓ chosen", "rejected": "✗ rejected", None: ""}


def _last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else ""


class PromptDetailScreen(AppScreen):
    DEFAULT_CSS = """
    PromptDetailScreen #prompt {
        height: auto; max-height: 8; padding: 0 1; border-bottom: solid $panel;
    }
    PromptDetailScreen #it-info { height: 1; padding: 0 1; color: $text-muted; }
    PromptDetailScreen #responses { height: auto; max-height: 14; }
    PromptDetailScreen #body { height: 1fr; }
    PromptDetailScreen #response-text { width: 3fr; padding: 0 1; border-right: solid $panel; }
    PromptDetailScreen #judgements { width: 2fr; }
    """
    BINDINGS = [
        Binding("enter", "open_response", "Judgements"),
        Binding("b", "battle", "Battle"),
        Binding("left_square_bracket", "iteration(-1)", "Prev iter"),
        Binding("right_square_bracket", "iteration(1)", "Next iter"),
        Binding("v", "view_text", "Full text"),
        Binding("l", "label", "Label"),
        Binding("escape", "app.pop_screen", "Back"),
    ]

    def __init__(self, focus: PromptFocus, iteration: int | None = None) -> None:
        super().__init__()
        self.focus_data = focus
        self._battle_wanted = False
        its = sorted(focus.iterations)
        self.iteration = iteration if iteration in focus.iterations else (its[-1] if its else None)

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status")
        with VerticalScroll(id="prompt"):
            yield Static(id="prompt-text")
        yield Static(id="it-info")
        yield DataTable(id="responses", cursor_type="row", zebra_stripes=True)
        with Horizontal(id="body"):
            with VerticalScroll(id="response-text"):
                yield Static(id="response-body")
            yield DataTable(id="judgements", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        f = self.focus_data
        head = f"prompt #{f.index} {f.source_id} · {f.prompt_key}\n"
        self.query_one("#prompt-text", Static).update(lit(head + f.text))
        t = self.query_one("#responses", DataTable)
        for c in ("#", "mean", "var", "valid/N", "chars", "tokens", "finish", "pair", "meta"):
            t.add_column(c, key=c)
        j = self.query_one("#judgements", DataTable)
        for c in ("j", "score", "elo", "chars", "judgement"):
            j.add_column(c, key=c)
        self.show_iteration()
        t.focus()

    @property
    def it(self) -> IterationFocus | None:
        return None if self.iteration is None else self.focus_data.iterations.get(self.iteration)

    def show_iteration(self) -> None:
        t = self.query_one("#responses", DataTable)
        t.clear()
        it = self.it
        its = sorted(self.focus_data.iterations)
        if it is None:
            self.query_one("#it-info", Static).update(lit("no responses in the log yet"))
            self._show_response()
            return
        pair = "no actor pair" if it.actor_pair is None else "actor pair ✓/✗ marked"
        battle = "meta-judged: ⚔ (b)" if it.battle else "no meta-judged response"
        info = (
            f"iteration {it.iteration} of {its} · {len(it.responses)} responses · {pair} · {battle}"
        )
        self.query_one("#it-info", Static).update(lit(info))
        for r in it.responses:
            t.add_row(
                str(r.sample_index),
                num(r.mean),
                num(r.variance),
                f"{r.valid}/{r.judged}",
                str(r.chars),
                "-" if r.completion_tokens is None else str(r.completion_tokens),
                lit(r.finish_reason or "-"),
                ROLE[r.role],
                "⚔" if r.meta_target else "",
                key=r.key,
            )
        self._show_response()

    def current(self) -> ResponseInfo | None:
        it = self.it
        t = self.query_one("#responses", DataTable)
        if it is None or not it.responses or not 0 <= t.cursor_row < len(it.responses):
            return None
        return it.responses[t.cursor_row]

    def _show_response(self) -> None:
        r = self.current()
        body = self.query_one("#response-body", Static)
        j = self.query_one("#judgements", DataTable)
        j.clear()
        if r is None:
            body.update("")
            return
        labelled = label_lines(
            self.state.labels,
            [("response", r.key)] + [(f"judge {x.judge_index}", x.key) for x in r.judgements],
        )
        body.update(lit(labelled + "\n\n", "italic") + lit(r.text) if labelled else lit(r.text))
        for x in r.judgements:
            j.add_row(
                str(x.judge_index),
                score_cell(x, bar=True),
                num(x.elo, "{:.0f}"),
                str(x.chars),
                one_line(x.parse_error or _last_line(x.text), 60),
                key=x.key,
            )

    @on(DataTable.RowHighlighted, "#responses")
    def _highlighted(self, _: DataTable.RowHighlighted) -> None:
        self._show_response()

    @on(DataTable.RowSelected, "#responses")
    def _selected(self, _: DataTable.RowSelected) -> None:
        self.action_open_response()

    @on(DataTable.RowSelected, "#judgements")
    def _judgement_selected(self, event: DataTable.RowSelected) -> None:
        r = self.current()
        if r is not None and 0 <= event.cursor_row < len(r.judgements):
            self.controller.show_judgement(r.judgements[event.cursor_row])

    def action_iteration(self, step: int) -> None:
        its = sorted(self.focus_data.iterations)
        if self.iteration in its:
            i = its.index(self.iteration) + step
            if 0 <= i < len(its):
                self.iteration = its[i]
                self.show_iteration()

    def action_open_response(self) -> None:
        r = self.current()
        if r is not None:
            self.app.push_screen(ResponseDetailScreen(self.focus_data, r))

    def action_battle(self) -> None:
        it = self.it
        if it is None or it.battle is None:
            self.notify("this prompt has no meta-judged response in this iteration")
            return
        if not it.battle.ready:
            self._battle_wanted = True  # opens as soon as the battles are read
            self.notify("reading the battle…")
            return
        self.controller.open_battle(self.focus_data, it)

    def on_battles_ready(self, message: BattlesReady) -> None:
        """ω, Elo and judge pairs arrived after the responses: refresh, open if asked."""
        if message.focus is not self.focus_data:
            return
        self._show_response()
        if self._battle_wanted and self.app.screen is self:
            self._battle_wanted = False
            self.action_battle()

    def action_view_text(self) -> None:
        r = self.current()
        if r is not None:
            self.controller.show_text(
                f"response {r.sample_index} · iteration {r.iteration}",
                r.text,
                f"{r.key} · mean {num(r.mean)} · {r.chars} chars · {ROLE[r.role]}",
                response_item(r),
            )

    def export_current(self) -> dict[str, Any] | None:
        r = self.current()
        return None if r is None else response_item(r)

    def action_label(self) -> None:
        """``l``: the highlighted response's human label."""
        r = self.current()
        self.controller.label([] if r is None else [response_target(self.state.labels, r)])

    def on_labels_read(self, _: LabelsRead) -> None:
        self._show_response()


def response_target(labels: dict[str, HumanLabel], r: ResponseInfo) -> LabelTarget:
    return LabelTarget(
        "response",
        r.key,
        f"response {r.sample_index} · iteration {r.iteration} · mean judge score {num(r.mean)}",
        labels.get(r.key),
    )


class ResponseDetailScreen(AppScreen):
    """A response and its N judgements side by side, ``WINDOW`` at a time (←/→ scroll)."""

    WINDOW = 4
    DEFAULT_CSS = """
    ResponseDetailScreen #response { height: 1fr; padding: 0 1; border-bottom: solid $panel; }
    ResponseDetailScreen #window { height: 1; padding: 0 1; color: $text-muted; }
    ResponseDetailScreen #columns { height: 2fr; }
    ResponseDetailScreen .judgement { width: 1fr; border: round $panel; padding: 0 1; }
    ResponseDetailScreen .judgement.-selected { border: round $accent; }
    ResponseDetailScreen .judgement.-invalid { border: round $error; }
    ResponseDetailScreen .judgement.-empty { display: none; }
    ResponseDetailScreen .jhead { text-style: bold; }
    """
    BINDINGS = [
        Binding("left", "move(-1)", "Prev judgement"),
        Binding("right", "move(1)", "Next judgement"),
        Binding("v,enter", "view_text", "Full text"),
        Binding("l", "label", "Label"),
        Binding("escape", "app.pop_screen", "Back"),
    ]

    def __init__(self, focus: PromptFocus, response: ResponseInfo) -> None:
        super().__init__()
        self.focus_data = focus
        self.response = response
        self.selected = 0

    def compose(self) -> ComposeResult:
        r = self.response
        yield StatusBar(id="status")
        with VerticalScroll(id="response"):
            yield Static(classes="jhead", id="response-head")
            yield Static(lit(r.text))
        yield Static(id="window")
        with Horizontal(id="columns"):
            for i in range(min(self.WINDOW, max(1, len(r.judgements)))):
                with VerticalScroll(classes="judgement", id=f"slot{i}"):
                    yield Static(classes="jhead", id=f"head{i}")
                    yield Static(id=f"body{i}")
        yield Footer()

    def on_mount(self) -> None:
        self._draw()

    def _draw(self) -> None:
        r = self.response
        head = (
            f"response {r.sample_index} · iteration {r.iteration} · mean {num(r.mean)} "
            f"· var {num(r.variance)} · {r.chars} chars {ROLE[r.role]}"
        )
        labelled = label_lines(self.state.labels, [("response", r.key)])
        self.query_one("#response-head", Static).update(
            lit(head) + lit("\n" + labelled, "italic") if labelled else lit(head)
        )
        js = r.judgements
        n = len(js)
        start = min(max(0, self.selected - self.WINDOW // 2), max(0, n - self.WINDOW))
        window = (
            f"judgements {start + 1}–{min(n, start + self.WINDOW)} of {n} · ←/→ move · v full text"
            if n
            else "no judgements yet"
        )
        self.query_one("#window", Static).update(lit(window))
        for i, slot in enumerate(self.query(".judgement")):
            k = start + i
            slot.set_class(k >= n, "-empty")
            if k >= n:
                continue
            j = js[k]
            slot.set_class(k == self.selected, "-selected")
            slot.set_class(j.score is None, "-invalid")
            dist = dist_line(j)
            head = (
                f"judge {j.judge_index}: {score_head(j)}"
                + (f" · elo {j.elo:.0f}" if j.elo is not None else "")
                + (" · fallback" if j.fallback_used else "")
                + (f"\n{dist}" if dist else "")
            )
            human = self.state.labels.get(j.key)
            self.query_one(f"#head{i}", Static).update(
                lit(head) + lit("\n" + human.describe(), "italic") if human else lit(head)
            )
            self.query_one(f"#body{i}", Static).update(lit(j.text))

    def action_move(self, step: int) -> None:
        n = len(self.response.judgements)
        if n:
            self.selected = (self.selected + step) % n
            self._draw()

    def action_view_text(self) -> None:
        if self.response.judgements:
            self.controller.show_judgement(self.response.judgements[self.selected])

    def on_battles_ready(self, message: BattlesReady) -> None:
        if message.focus is self.focus_data:
            self._draw()

    def export_current(self) -> dict[str, Any] | None:
        return response_item(self.response)

    def action_label(self) -> None:
        """``l``: a human label of the response, or of the selected judgement."""
        targets = [response_target(self.state.labels, self.response)]
        js = self.response.judgements
        if js:
            j = js[self.selected]
            targets.append(
                LabelTarget(
                    "judgement",
                    j.key,
                    f"judge {j.judge_index}'s judgement (selected) · {score_head(j)}",
                    self.state.labels.get(j.key),
                )
            )
        self.controller.label(targets)

    def on_labels_read(self, _: LabelsRead) -> None:
        self._draw()
