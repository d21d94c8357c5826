"""Pilot tests of the TUI: navigation, what each screen shows, copy/export, the palette, and
hostile model text shown literally. Expected values come from the views, not from the TUI."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import DataTable, Static

from mrtui.store import connect
from mrtui.tui.app import MrtuiApp
from mrtui.tui.battle import BattleScreen
from mrtui.tui.detail import PromptDetailScreen, ResponseDetailScreen
from mrtui.tui.modal import TextModal
from mrtui.tui.overview import COLUMNS, OverviewScreen
from mrtui.tui.prompts import PromptListScreen

from .conftest import HOSTILE, HOSTILE_INDEX, K, N

SIZE = (160, 50)


async def until(pilot: Any, cond: Callable[[], Any], timeout: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {cond}")
        await pilot.pause(0.05)


def _statics(app: MrtuiApp) -> str:
    parts = []
    for w in app.screen.query(Static):
        r = w.render()
        parts.append(getattr(r, "plain", str(r)))
    return "\n".join(parts)


async def ready(pilot: Any, app: MrtuiApp) -> None:
    await until(pilot, lambda: app.health is not None and app.index_judge)


async def open_list(pilot: Any, app: MrtuiApp) -> PromptListScreen:
    """The prompt list (``p``) once the first page and the pair index are in."""
    await ready(pilot, app)
    await pilot.press("p")
    await until(pilot, lambda: isinstance(app.screen, PromptListScreen) and app.screen.rows)
    return app.screen  # type: ignore[return-value]


def q(db: Path, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    with connect(db) as con:
        return con.execute(sql, params or []).fetchall()


@pytest.mark.asyncio
async def test_overview_shows_iterations_and_health(tui_log: Path) -> None:
    app = MrtuiApp(tui_log, poll=False)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        assert isinstance(app.screen, OverviewScreen)
        table = app.screen.query_one("#iterations", DataTable)
        assert table.row_count == 2
        counts = dict(
            q(tui_log, "SELECT iteration, count(*) FROM judgements WHERE run_id='main' GROUP BY 1")
        )
        row = table.get_row_at(0)
        assert row[0] == "1" and row[2] == f"{K}×{N}"
        assert row[4].startswith(f"{counts[1]}/")
        training = str(row[COLUMNS.index("training")])
        assert "done" in training or "checkpoint" in training
        status, stale = app.status_text()
        assert "run main" in status and not stale
        assert set(app.health) == {1, 2}
        assert app.losses[1] and len(app.losses[1]) == 3
        assert app.first_screen_s is not None


@pytest.mark.asyncio
async def test_navigate_prompt_list_detail_response_battle(tui_log: Path) -> None:
    app = MrtuiApp(tui_log, poll=False)
    async with app.run_test(size=SIZE) as pilot:
        lst = await open_list(pilot, app)
        assert isinstance(lst, PromptListScreen)
        assert lst.total == 6 and [r.index for r in lst.rows] == list(range(6))
        await pilot.press("down")
        assert lst.current().index == 1
        assert "50% of 10" in _statics(app)

        # a prompt with a meta-judged response in iteration 1
        key, it = q(
            tui_log,
            "SELECT m.prompt_key, m.iteration FROM meta_targets m JOIN prompts p USING "
            "(prompt_key) WHERE m.run_id='main' ORDER BY p.prompt_index, m.iteration LIMIT 1",
        )[0]
        pos = next(i for i, r in enumerate(lst.rows) if r.prompt_key == key)
        lst.query_one("#prompts", DataTable).move_cursor(row=pos)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, PromptDetailScreen))
        detail = app.screen
        assert isinstance(detail, PromptDetailScreen)
        while detail.iteration != it:
            await pilot.press("left_square_bracket")
        responses = detail.query_one("#responses", DataTable)
        assert responses.row_count == K
        chosen, rejected = q(
            tui_log,
            "SELECT chosen_key, rejected_key FROM actor_pairs WHERE prompt_key=? AND iteration=?",
            [key, it],
        )[0]
        roles = {r.key: r.role for r in detail.it.responses}
        assert roles[chosen] == "chosen" and roles[rejected] == "rejected"
        assert list(roles.values()).count(None) == K - 2

        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ResponseDetailScreen))
        assert len(app.screen.query(".judgement")) == N
        await pilot.press("right", "v")
        await until(pilot, lambda: isinstance(app.screen, TextModal))
        await pilot.press("escape", "escape")
        await until(pilot, lambda: isinstance(app.screen, PromptDetailScreen))

        await pilot.press("b")
        await until(pilot, lambda: isinstance(app.screen, BattleScreen))
        battle = app.screen
        target = q(
            tui_log,
            "SELECT response_key FROM meta_targets WHERE prompt_key=? AND iteration=?",
            [key, it],
        )[0][0]
        assert battle.battle.response_key == target
        matrix = battle.query_one("#matrix", DataTable)
        valid = len([j for j in battle.battle.judgements if j.score is not None])
        assert matrix.row_count == valid and len(matrix.columns) == valid + 1
        v = battle.current_verdict()
        assert v is not None
        expected = q(
            tui_log,
            "SELECT winner, verdict FROM meta_verdicts WHERE response_key=? AND first_key=? "
            "AND second_key=?",
            [target, v.first_key, v.second_key],
        )[0]
        assert (v.winner, v.text) == expected
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, TextModal))
        assert app.screen.body == expected[1]
        await pilot.press("escape")
        await pilot.press("escape", "escape")
        await until(pilot, lambda: isinstance(app.screen, PromptListScreen))
        await pilot.press("o")
        assert isinstance(app.screen, OverviewScreen)
        await pilot.press("q")
    assert app.return_code in (0, None)


@pytest.mark.asyncio
async def test_filters_and_search(tui_log: Path) -> None:
    app = MrtuiApp(tui_log, poll=False)
    async with app.run_test(size=SIZE) as pilot:
        lst = await open_list(pilot, app)
        await pilot.press("slash")
        await pilot.press(*"BOOM", "enter")
        await until(pilot, lambda: lst.search == "BOOM" and lst.total == 1 and lst.rows)
        assert lst.rows[0].index == HOSTILE_INDEX
        await pilot.press("slash", "ctrl+a", "ctrl+k", *"50%", "enter")
        await until(pilot, lambda: lst.search == "50%" and lst.rows)
        assert lst.total == 1 and lst.rows[0].index == 1
        await pilot.press("slash", "ctrl+a", "ctrl+k", "enter")
        await until(pilot, lambda: lst.search == "" and lst.total == 6)

        with_pair = {
            r[0]
            for r in q(
                tui_log,
                "SELECT prompt_key FROM actor_pairs WHERE run_id='main' AND iteration=2 UNION "
                "SELECT prompt_key FROM judge_pairs WHERE run_id='main' AND iteration=2",
            )
        }
        await pilot.press("i", "i")  # all -> 1 -> 2
        assert lst.iteration == 2
        await pilot.press("f")  # has pair
        await until(pilot, lambda: lst.pair_filter == "has pair" and len(lst.rows) == lst.total)
        assert {r.prompt_key for r in lst.rows} == with_pair
        await pilot.press("f")  # no pair
        await until(pilot, lambda: lst.pair_filter == "no pair" and len(lst.rows) == lst.total)
        assert lst.total == 6 - len(with_pair)
        assert not {r.prompt_key for r in lst.rows} & with_pair


@pytest.mark.asyncio
async def test_hostile_text_is_shown_literally(tui_log: Path) -> None:
    app = MrtuiApp(tui_log, poll=False)
    async with app.run_test(size=SIZE) as pilot:
        await open_list(pilot, app)
        app.screen.query_one("#prompts", DataTable).move_cursor(row=HOSTILE_INDEX)
        await pilot.pause(0.1)
        shown = _statics(app)
        literal = HOSTILE.replace("\x1b", "\\x1b").replace("\x07", "\\x07")
        assert literal in shown  # markup kept as text, ESC and BEL made visible
        assert "\x1b" not in shown and "\x07" not in shown
        cell = app.screen.query_one("#prompts", DataTable).get_row_at(HOSTILE_INDEX)[2]
        assert "[bold red]BOOM[/]" in cell.plain and not cell.spans
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, PromptDetailScreen))
        shown = _statics(app)
        assert "[bold red]BOOM[/]" in shown and "[@click=app.quit]quit[/]" in shown
        # the response body echoes the hostile text; its Text has no styles from markup
        body = app.screen.query_one("#response-body", Static).render()
        assert not getattr(body, "spans", [])
        await pilot.click("#response-body")  # a click on [@click=app.quit] text must not quit
        await pilot.pause(0.1)
        assert app.is_running
        # the rendered screen shows the brackets themselves
        svg = app.export_screenshot()
        assert "[bold&#160;red]BOOM[/]" in svg or "[bold red]BOOM[/]" in svg


@pytest.mark.asyncio
async def test_copy_export_and_palette(tui_log: Path, tmp_path: Path) -> None:
    app = MrtuiApp(tui_log, poll=False, export_dir=tmp_path / "out")
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await pilot.press("ctrl+p")
        await pilot.pause(0.2)
        await pilot.press(*"BOOM")
        await pilot.pause(1.0)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, PromptDetailScreen))
        detail = app.screen
        assert detail.focus_data.index == HOSTILE_INDEX
        r = detail.current()
        await pilot.press("c")
        assert app.clipboard == r.text
        await pilot.press("e")
        files = list((tmp_path / "out").glob("response-*.json"))
        assert len(files) == 1
        item = json.loads(files[0].read_text())
        assert item["key"] == r.key and item["text"] == r.text
        assert len(item["judgements"]) == N
        await pilot.press("v")
        await until(pilot, lambda: isinstance(app.screen, TextModal))
        await pilot.press("c")
        assert app.clipboard == r.text


@pytest.mark.asyncio
async def test_bad_log_reads_are_shown_as_stale_not_raised(tui_log_copy: Path) -> None:
    app = MrtuiApp(tui_log_copy, poll=False)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        # no read in flight: one that the write below cut short would fail another way first
        await app.workers.wait_for_complete()
        tui_log_copy.write_bytes(b"this is not a duckdb file" * 100)
        app.action_refresh()
        await until(pilot, lambda: app.last_error is not None)
        status, stale = app.status_text()
        assert stale and "not a DuckDB event log" in status
        assert isinstance(app.screen, OverviewScreen)  # still up, still showing the old data
        assert app.screen.query_one("#iterations", DataTable).row_count == 2


@pytest.mark.asyncio
async def test_palette_switches_between_runs(tui_log_iteration: Path) -> None:
    app = MrtuiApp(tui_log_iteration, poll=False)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        assert app.overview.run_id == "wide"  # the latest run by default
        assert app.overview.iterations[0].weights_scope == "iteration"
        await pilot.press("ctrl+p")
        await pilot.pause(0.2)
        await pilot.press(*"Show run other")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await until(pilot, lambda: app.overview.run_id == "other" and app.health is not None)
        assert "run other" in app.status_text()[0]
        assert app.overview.iterations[0].weights_scope == "response"
        expected = q(
            tui_log_iteration,
            "SELECT count(*) FROM judgements WHERE run_id = 'other' AND iteration = 1",
        )[0][0]
        assert app.health[1].judgements == expected


@pytest.mark.asyncio
async def test_list_score_columns_match_the_views(tui_log: Path) -> None:
    app = MrtuiApp(tui_log, poll=False)
    async with app.run_test(size=SIZE) as pilot:
        await open_list(pilot, app)
        table = app.screen.query_one("#prompts", DataTable)
        for it in (None, 1, 2):
            where = "" if it is None else f"AND iteration = {it}"
            expected = {
                k: (f"{best:.2f}", f"{worst:.2f}")
                for k, best, worst in q(
                    tui_log,
                    "SELECT prompt_key, max(mean_score), min(mean_score) FROM response_scores "
                    f"WHERE run_id = 'main' {where} GROUP BY 1",
                )
            }
            for r in app.screen.rows:
                row = table.get_row(r.prompt_key)
                assert (row[4], row[5]) == expected[r.prompt_key], (it, r.index)
            await pilot.press("i")
            await until(pilot, lambda: len(app.screen.rows) == 6)


@pytest.mark.asyncio
async def test_mouse_selects_and_opens(tui_log: Path) -> None:
    app = MrtuiApp(tui_log, poll=False)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await pilot.click("#iterations", offset=(5, 2))  # header row, then iteration 1, 2
        assert app.screen.query_one("#iterations", DataTable).cursor_row == 1
        await pilot.press("p")
        await until(pilot, lambda: isinstance(app.screen, PromptListScreen) and app.screen.rows)
        lst = app.screen
        await pilot.click("#prompts", offset=(10, 1 + HOSTILE_INDEX))
        assert lst.current().index == HOSTILE_INDEX
        await pilot.click("#prompts", offset=(10, 1 + HOSTILE_INDEX))  # a second click opens
        await until(pilot, lambda: isinstance(app.screen, PromptDetailScreen))
        assert app.screen.focus_data.index == HOSTILE_INDEX
