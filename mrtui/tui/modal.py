"""A full-screen modal for one long text (response, judgement, verdict), with copy and export."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Static

from .state import controller_of
from .text import lit


class TextModal(ModalScreen[None]):
    DEFAULT_CSS = """
    TextModal { align: center middle; }
    TextModal > Vertical { width: 90%; height: 90%; border: thick $accent; background: $surface; }
    TextModal #modal-title { background: $accent; color: $text; padding: 0 1; }
    TextModal #modal-meta { color: $text-muted; padding: 0 1; }
    TextModal VerticalScroll { padding: 0 1; }
    """
    BINDINGS = [
        Binding("escape,q", "dismiss_modal", "Close"),
        Binding("c", "copy", "Copy"),
        Binding("e", "export", "Export"),
    ]

    def __init__(self, title: str, text: str, meta: str = "", item: dict[str, Any] | None = None):
        super().__init__()
        self.title_text = title
        self.body = text
        self.meta = meta
        self.item = item or {"title": title, "text": text}

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(lit(self.title_text), id="modal-title")
            if self.meta:
                yield Static(lit(self.meta), id="modal-meta")
            with VerticalScroll():
                yield Static(lit(self.body), id="modal-body")
        yield Footer()

    def action_dismiss_modal(self) -> None:
        self.dismiss(None)

    def action_copy(self) -> None:
        self.app.copy_to_clipboard(self.body)
        self.notify(f"copied {len(self.body)} characters to the clipboard")

    def action_export(self) -> None:
        controller_of(self.app).export_item(self.item)
