"""The overview's "where the time went" table: one row per iteration, a column per role, the
cells `mrtui status` prints, read from ``role_costs`` (checked here against the view with SQL)."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import DataTable

from mrtui.loop.report import COST_ROLES, cost_cell, cost_total
from mrtui.tui.app import MrtuiApp
from mrtui.tui.overview import OverviewScreen

from .test_app import SIZE, q, until


def _from_the_view(db: Path) -> dict[int, dict[str, dict[str, float]]]:
    rows = q(
        db,
        "SELECT iteration, role, units, prompt_tokens, completion_tokens, wall_s, share "
        "FROM role_costs WHERE run_id = 'main' AND iteration IS NOT NULL",
    )
    out: dict[int, dict[str, dict[str, float]]] = {}
    for it, role, units, pt, ct, wall, share in rows:
        out.setdefault(it, {})[role] = {
            "units": units,
            "prompt_tokens": pt,
            "completion_tokens": ct,
            "wall_s": wall,
            "share": share,
        }
    return out


@pytest.mark.asyncio
async def test_the_overview_shows_each_roles_time_and_tokens_as_status_does(
    tui_log_copy: Path,
) -> None:
    want = _from_the_view(tui_log_copy)
    assert set(want) == {1, 2} and all("judge" in roles for roles in want.values())
    roles = [r for r in COST_ROLES if any(r in c for c in want.values())]

    app = MrtuiApp(tui_log_copy, poll=False)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.state.costs)
        assert isinstance(app.screen, OverviewScreen)
        table = app.screen.query_one("#costs", DataTable)
        await until(pilot, lambda: table.row_count == 2)
        assert table.display and table.has_class("-on")
        header = [str(c.label) for c in table.columns.values()]
        assert header == ["time", *(r.replace("_", "-") for r in roles), "total"]
        for row, (it, c) in enumerate(sorted(want.items())):
            cells = [str(v) for v in table.get_row_at(row)]
            assert cells[0] == f"iteration {it}"
            assert cells[1:-1] == [cost_cell(c.get(r)) for r in roles]
            assert cells[-1] == cost_total(c)
            # tokens show where the role spent any: the judge always does here
            assert "tok" in cells[1 + roles.index("judge")]


@pytest.mark.asyncio
async def test_a_log_with_no_run_shows_no_table(tmp_path: Path) -> None:
    from mrtui.store import EventLog

    db = tmp_path / "log.duckdb"
    EventLog(db).close()
    app = MrtuiApp(db, poll=False)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.state.overview is not None)
        await pilot.pause(0.2)
        assert isinstance(app.screen, OverviewScreen)
        table = app.screen.query_one("#costs", DataTable)
        assert table.row_count == 0 and not table.has_class("-on")
