"""Snapshots of the main screens (SVG under __snapshots__/, reviewed by eye when accepted).

Update after a deliberate change with ``.venv/bin/pytest tests/tui/test_snapshots.py
--snapshot-update`` and look at every changed SVG before committing it.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import DataTable

from mrtui.tui.app import MrtuiApp
from mrtui.tui.battle import BattleScreen
from mrtui.tui.detail import PromptDetailScreen, ResponseDetailScreen
from mrtui.tui.modal import TextModal
from mrtui.tui.prompts import PromptListScreen
from mrtui.tui.source import LogSource

from .conftest import HOSTILE_INDEX
from .test_app import until

SIZE = (140, 42)
NOON = 1_800_000_000.0  # a pinned clock: the status line says "read 08:00:00 UTC"


def units_as_seconds(costs: dict[Any, dict[str, dict[str, Any]]]) -> dict[Any, Any]:
    """Wall times differ between builds of a log: each role's time stands in from its units."""
    for roles in costs.values():
        total = sum(c["units"] for c in roles.values()) or 1
        for c in roles.values():
            c["wall_s"], c["share"] = float(c["units"]), c["units"] / total
    return costs


@pytest.fixture
def app(tui_log: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> MrtuiApp:
    shutil.copyfile(tui_log, tmp_path / "log.duckdb")
    monkeypatch.chdir(tmp_path)  # the status line shows the relative path
    # event times differ between builds of the log: draw the "latest events" without them
    recent = LogSource.recent
    monkeypatch.setattr(
        LogSource,
        "recent",
        lambda self, limit=8: [
            dataclasses.replace(r, created_at=None) for r in recent(self, limit)
        ],
    )
    real = LogSource.costs
    monkeypatch.setattr(LogSource, "costs", lambda self: units_as_seconds(real(self)))
    return MrtuiApp("log.duckdb", poll=False, clock=lambda: NOON)


async def _ready(pilot: Any) -> None:
    app = pilot.app
    await until(pilot, lambda: app.health is not None and app.index_judge and app.state.costs)
    await pilot.pause(0.2)


async def _prompt(pilot: Any, index: int) -> None:
    await _ready(pilot)
    await pilot.press("p")
    await until(
        pilot, lambda: isinstance(pilot.app.screen, PromptListScreen) and pilot.app.screen.rows
    )
    pilot.app.screen.query_one("#prompts", DataTable).move_cursor(row=index)
    await pilot.press("enter")
    await until(pilot, lambda: isinstance(pilot.app.screen, PromptDetailScreen))
    await pilot.pause(0.1)


def test_overview(snap_compare: Any, app: MrtuiApp) -> None:
    assert snap_compare(app, terminal_size=SIZE, run_before=_ready)


def test_prompt_list(snap_compare: Any, app: MrtuiApp) -> None:
    async def before(pilot: Any) -> None:
        await _ready(pilot)
        await pilot.press("p")
        await until(pilot, lambda: isinstance(app.screen, PromptListScreen) and app.screen.rows)
        await pilot.press("down", "down")  # the hostile prompt, in the preview pane too
        await until(pilot, lambda: app.screen.current().index == HOSTILE_INDEX)
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=SIZE, run_before=before)


def test_prompt_detail(snap_compare: Any, app: MrtuiApp) -> None:
    async def before(pilot: Any) -> None:
        await _prompt(pilot, HOSTILE_INDEX)

    assert snap_compare(app, terminal_size=SIZE, run_before=before)


def test_response_detail(snap_compare: Any, app: MrtuiApp) -> None:
    async def before(pilot: Any) -> None:
        await _prompt(pilot, HOSTILE_INDEX)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ResponseDetailScreen))
        await pilot.pause(0.1)

    assert snap_compare(app, terminal_size=SIZE, run_before=before)


async def _battle(pilot: Any) -> None:
    """The battle view of the hostile prompt, in an iteration that has one."""
    app = pilot.app
    await _prompt(pilot, HOSTILE_INDEX)
    while app.screen.it is None or app.screen.it.battle is None:
        await pilot.press("left_square_bracket")
    await pilot.press("b")
    await until(pilot, lambda: isinstance(app.screen, BattleScreen))
    await pilot.pause(0.1)


def test_battle(snap_compare: Any, app: MrtuiApp) -> None:
    assert snap_compare(app, terminal_size=SIZE, run_before=_battle)


def test_verdict_modal(snap_compare: Any, app: MrtuiApp) -> None:
    async def before(pilot: Any) -> None:
        await _battle(pilot)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, TextModal))
        await pilot.pause(0.1)

    assert snap_compare(app, terminal_size=SIZE, run_before=before)
