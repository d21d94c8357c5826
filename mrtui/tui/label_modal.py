"""Human labels in the TUI: the modal that asks for one, and the read of the labels views.

``l`` on a response, a judgement or a meta-verdict opens :class:`LabelModal` with what the
screen shows (a response and its selected judgement, or a verdict and the judgement of its row);
each allowed label is one key (and a button), an optional one-line note sits below (Tab), and
Escape cancels. The app saves the choice with :func:`mrtui.store.labels.record_labels` and keeps
it pending while another process holds the writer lock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.events import Key
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Input, Static

from .model import HumanLabel, LabelTarget
from .text import lit

# target kind -> (key, label as logged, what the button says); the keys of the kinds that can
# share a modal (response + judgement, judgement + verdict) differ
CHOICES: dict[str, tuple[tuple[str, str, str], ...]] = {
    "response": (
        *((str(s), str(s), str(s)) for s in range(6)),
        ("g", "good", "g good"),
        ("b", "bad", "b bad"),
    ),
    "judgement": (("y", "agree", "y agree"), ("n", "disagree", "n disagree")),
    "verdict": (("a", "A", "a: A (first shown) better"), ("b", "B", "b: B (second shown) better")),
}
KIND_HEAD = {
    "response": "score it 0–5, or good / bad",
    "judgement": "do you agree with this judgement?",
    "verdict": "which judgement is better?",
}


@dataclass(frozen=True)
class LabelChoice:
    """What the person chose: a label of the target with key ``key``, and an optional note."""

    key: str
    label: str | int  # a score as int, as record_labels takes it
    note: str | None


class LabelsRead(Message, bubble=False):
    """The human labels and the judge-human agreement (``TuiState.labels`` / ``.agreement``)
    were read again."""


class LabelModal(ModalScreen[LabelChoice | None]):
    DEFAULT_CSS = """
    LabelModal { align: center middle; }
    LabelModal > Vertical {
        width: 96; height: auto; max-height: 90%; border: thick $accent; background: $surface;
    }
    LabelModal #label-title { background: $accent; color: $text; padding: 0 1; }
    LabelModal .target { padding: 0 1; margin-top: 1; text-style: bold; }
    LabelModal .current { padding: 0 1; color: $text-muted; }
    LabelModal .choices { height: auto; padding: 0 1; }
    LabelModal .choices Button { min-width: 5; margin-right: 1; }
    LabelModal #note { margin: 1 1 0 1; }
    LabelModal #label-hint { padding: 0 1; color: $text-muted; }
    """
    AUTO_FOCUS = ""  # nothing: keys choose a label; Tab moves to the note
    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("tab", "note", "Note"),
    ]

    def __init__(self, targets: list[LabelTarget]) -> None:
        super().__init__()
        self.targets = targets
        self.keys: dict[str, tuple[LabelTarget, str]] = {}
        for t in targets:
            for key, label, _ in CHOICES[t.kind]:
                assert key not in self.keys, f"label key {key!r} offered twice"
                self.keys[key] = (t, label)

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("label", id="label-title")
            for i, t in enumerate(self.targets):
                yield Static(lit(f"{t.title} · {KIND_HEAD[t.kind]}"), classes="target")
                now = t.current.describe() if t.current else "no human label yet"
                yield Static(lit(now), classes="current")
                with Horizontal(classes="choices", id=f"choices{i}"):
                    for key, _, text in CHOICES[t.kind]:
                        button = Button(text, id=f"choice-{key}", compact=True)
                        button.can_focus = False  # keys go to the modal, not to a button
                        yield button
            yield Input(placeholder="optional note (Tab, then Enter)", id="note", max_length=500)
            yield Static(
                lit("press a label's key (or click it) to save · Tab: note · Escape: cancel"),
                id="label-hint",
            )
        yield Footer()

    def on_key(self, event: Key) -> None:
        """A label's key saves it (not while the note has the keys)."""
        if self.focused is not None or event.character is None:
            return
        if event.character in self.keys:
            event.stop()
            event.prevent_default()
            self.choose(event.character)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        key = (event.button.id or "").removeprefix("choice-")
        if key in self.keys:
            self.choose(key)

    @on(Input.Submitted, "#note")
    def _note_done(self, _: Input.Submitted) -> None:
        self.set_focus(None)  # back to the label keys

    def choose(self, key: str) -> None:
        target, label = self.keys[key]
        note = self.query_one("#note", Input).value.strip() or None
        value: str | int = int(label) if label.isdigit() else label
        self.dismiss(LabelChoice(target.key, value, note))

    def action_note(self) -> None:
        self.query_one("#note", Input).focus()

    def action_cancel(self) -> None:
        """Escape: leave the note (keeping it), or cancel without saving."""
        if self.focused is not None:
            self.set_focus(None)
        else:
            self.dismiss(None)


# -- reading ----------------------------------------------------------------------------------
def read_labels(
    con: Any, run_id: str | None
) -> tuple[dict[str, HumanLabel], dict[int, dict[str, dict[str, Any]]]]:
    """The current labels of ``run_id`` by target key (``human_labels``) and its agreement per
    iteration (``judge_human_agreement``, as :func:`mrtui.store.labels.agreement` gives it)."""
    from mrtui.store.labels import agreement

    labels = {
        key: HumanLabel(target, key, it, label, author, note, revisions or 1)
        for target, key, it, label, author, note, revisions in con.execute(
            "SELECT target, target_key, iteration, label, author, note, revisions "
            "FROM human_labels WHERE run_id = ? ORDER BY seq",
            [run_id],
        ).fetchall()
    }
    return labels, {it: m for (_, it), m in agreement(con, run_id).items()}


def agreement_line(measures: dict[str, dict[str, Any]]) -> str:
    """One iteration's measures, in the store's order and words (as `mrtui status`)."""
    from mrtui.store.labels import MEASURES, format_measure

    return " · ".join(
        f"{title} {format_measure(m, measures[m])}"
        for m, title in MEASURES.items()
        if m in measures
    )


def label_lines(labels: dict[str, HumanLabel], items: list[tuple[str, str]]) -> str:
    """``name: human label ...`` for each (name, key) of ``items`` that has a label, one a line
    ("" when none has one)."""
    return "\n".join(f"{name}: {labels[key].describe()}" for name, key in items if key in labels)
