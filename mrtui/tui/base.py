"""What every screen of the TUI shares: the typed way to the app, the status line, and what
``c``/``e`` take from the screen."""

from __future__ import annotations

from typing import Any

from textual.screen import Screen
from textual.widgets import Static

from .state import Controller, TuiState, controller_of


class StatusBar(Static):
    DEFAULT_CSS = """
    StatusBar { height: 1; background: $boost; color: $text; padding: 0 1; }
    StatusBar.-stale { background: $warning 40%; }
    """

    def on_mount(self) -> None:
        controller_of(self.app).update_status()


class AppScreen(Screen[None]):
    """A screen of the TUI. It reads :attr:`state` and asks :attr:`controller` for actions
    (opening other screens included); the app tells it about new data with messages."""

    @property
    def controller(self) -> Controller:
        return controller_of(self.app)

    @property
    def state(self) -> TuiState:
        return self.controller.state

    def export_current(self) -> dict[str, Any] | None:
        """The item ``c`` copies and ``e`` exports here; None when nothing is selected."""
        return None
