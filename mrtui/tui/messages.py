"""What the app tells the screens: posted to each screen on the stack (``MrtuiApp.tell``);
a screen that cares handles it (``on_<name>``), the others ignore it. None bubble up."""

from __future__ import annotations

from textual.message import Message

from mrtui.store.health import Health

from .model import EventRow, Overview, PromptFocus
from .state import Losses


class OverviewRead(Message, bubble=False):
    """The iterations table was read (health may be older or None)."""

    def __init__(self, overview: Overview, health: dict[int, Health] | None) -> None:
        super().__init__()
        self.overview = overview
        self.health = health


class CostsRead(Message, bubble=False):
    """Wall time and tokens per role (``TuiState.costs``) were read."""


class RecentRead(Message, bubble=False):
    """The newest events of the run."""

    def __init__(self, rows: list[EventRow]) -> None:
        super().__init__()
        self.rows = rows


class HealthRead(Message, bubble=False):
    """Run-health counters and DPO losses, for the overview last read."""

    def __init__(self, overview: Overview, health: dict[int, Health], losses: Losses) -> None:
        super().__init__()
        self.overview = overview
        self.health = health
        self.losses = losses


class IndexReady(Message, bubble=False):
    """The prompt index (score ranges and pairs, ``TuiState.index``) was computed or updated."""


class SignalRead(Message, bubble=False):
    """The judge signal of each iteration (``TuiState.signal``) was computed or updated."""


class BattlesReady(Message, bubble=False):
    """ω, Elo and judge pairs of ``focus`` arrived (after its responses)."""

    def __init__(self, focus: PromptFocus) -> None:
        super().__init__()
        self.focus = focus


class RunLogLine(Message, bubble=False):
    """A line for the run log of a run started here."""

    def __init__(self, line: str) -> None:
        super().__init__()
        self.line = line
