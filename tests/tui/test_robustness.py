"""Regressions from a review of the TUI: markup in run ids, concurrent health scans, filters
changed faster than pages arrive, Enter on an iteration."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from textual.widgets import DataTable

from mrtui.store import EventLog, NewEvent
from mrtui.tui.app import MrtuiApp
from mrtui.tui.prompts import PromptListScreen
from mrtui.tui.source import LogSource

from .conftest import build_log, write_prompts
from .test_app import SIZE, open_list, q, ready, until


@pytest.mark.asyncio
async def test_a_run_id_with_markup_is_shown_literally_in_the_palette(tmp_path: Path) -> None:
    db = tmp_path / "log.duckdb"
    prompts = write_prompts(tmp_path / "p.jsonl")
    build_log(db, prompts, run_id="plain", iterations=1, defaults={"train": False})
    # mrtui itself only writes plain run ids; another tool writing the log might not
    with EventLog(db) as log:
        log.append([NewEvent("PromptAdded", "[/]evil", {"index": 0}, key="p-evil", text="hi")])
    app = MrtuiApp(db, run_id="plain", poll=False)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        assert app.overview.run_id == "plain"
        await pilot.press("ctrl+p")
        await pilot.pause(0.3)
        await pilot.press(*"Show run")
        await pilot.pause(0.5)
        assert "[/]evil" in app.export_screenshot().replace("&#160;", " ")
        await pilot.press("enter")
        await until(pilot, lambda: app.overview.run_id == "[/]evil" and app.health is not None)
        assert app.is_running and "run [/]evil" in app.status_text()[0]


def test_concurrent_health_scans_count_each_event_once(tui_log: Path) -> None:
    src = LogSource(tui_log, "main")
    results: list[dict] = []
    threads = [threading.Thread(target=lambda: results.append(src.health())) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    expected = dict(q(tui_log, "SELECT iteration, count(*) FROM judgements GROUP BY 1"))
    for r in results:
        assert {it: h.judgements for it, h in r.items()} == expected


@pytest.mark.asyncio
async def test_only_the_latest_filter_fills_the_list(tui_log: Path) -> None:
    app = MrtuiApp(tui_log, poll=False)
    async with app.run_test(size=SIZE) as pilot:
        lst = await open_list(pilot, app)
        for term in ("Question", "snake", "BOOM"):  # faster than pages come back
            lst.search = term
            lst.reload()
        await until(pilot, lambda: not lst._loading)
        await pilot.pause(0.3)
        assert lst.total == 1 and [r.index for r in lst.rows] == [2]
        assert lst.query_one("#prompts", DataTable).row_count == 1


@pytest.mark.asyncio
async def test_enter_on_an_iteration_lists_its_prompts(tui_log: Path) -> None:
    app = MrtuiApp(tui_log, poll=False)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await pilot.press("down", "enter")
        await until(pilot, lambda: isinstance(app.screen, PromptListScreen))
        assert app.screen.iteration == 2
